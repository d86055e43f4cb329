"""Run one experiment, or ``all`` of them, into an output folder."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from zol2l.experiments.reproduce.base import (
    EXPERIMENTS,
    Context,
    available_experiments,
    machine,
    run_experiment,
)
from zol2l.experiments.reproduce.retrain import retrain
from zol2l.fileio import write_json_atomic


def reproduce(name: str, out: str | os.PathLike, **options: Any) -> dict[str, Any]:
    """Run the experiment ``name`` (or ``"all"``) into ``out``; ``options`` are the
    :class:`~zol2l.experiments.reproduce.base.Context` fields (``quick``, ``retrain``,
    ``data_dir``, ``device``, ``options``: a :class:`~zol2l.experiments.options.RunOptions`,
    the size caps).

    One experiment writes ``out/results.json`` and its figures; ``all`` writes each experiment
    into ``out/NAME/`` and an index ``out/results.json`` with every experiment's checks.  With
    ``retrain`` the retrain step (:func:`~zol2l.experiments.reproduce.retrain.retrain`) first
    makes the files of every task the experiments need."""
    out = Path(out)
    if name != "all" and name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; available: "
                         f"{', '.join(available_experiments())}, all")
    names = available_experiments() if name == "all" else [name]
    start = time.perf_counter()
    ctx = Context(out, **options)
    if ctx.retrain:
        retrain(ctx, tuned=[t for n in names for t in EXPERIMENTS[n].tuned],
                learned=[t for n in names for t in EXPERIMENTS[n].learned])
    if name != "all":
        return run_experiment(name, ctx)
    index: dict[str, Any] = {}
    for exp in names:
        ctx.out = out / exp
        ctx.out.mkdir(parents=True, exist_ok=True)
        payload = run_experiment(exp, ctx)
        index[exp] = {"seconds": payload["seconds"], "checks": payload["checks"],
                      "folder": exp, "figures": payload["figures"]}
    summary = {"experiment": "all", "quick": ctx.quick, "retrain": ctx.retrain,
               "machine": machine(), "seconds": time.perf_counter() - start,
               "experiments": index}
    write_json_atomic(out / "results.json", summary)
    return summary
