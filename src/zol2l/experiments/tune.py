"""``zol2l tune``: the paper's baseline tuning protocol (section 4).

``lr = delta / d``.  For each optimizer (and, for ``zo-adam``, each ``beta1`` in {0.9, 0.99}
and ``beta2`` in {0.99, 0.996, 0.999}) the coarse grid ``delta in {0.01, 0.1, 1, 10, 100,
1000}`` is run, then a linear refinement ``delta* x {0.2, 0.4, ..., 2.0}`` around the best
coarse value.  Selection is by mean final loss over TRAINING instances only; diverged runs
count as ``inf`` (in ``hparams.json``: ``"final_loss_mean": null`` and the number of
``diverged_runs``, runs whose loss became NaN or infinite).  The grid points run as work
units on a backend (local or Ray), coarse points in parallel, then the refinements.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Sequence
from typing import Any

import torch

from zol2l.experiments.backends import Backend, backend_scope
from zol2l.experiments.evaluate import mean_final_loss, select_ids
from zol2l.experiments.runner import add_stats, run_units
from zol2l.experiments.units import (
    DEFAULT_INSTANCE_CHUNK,
    RunContext,
    digest,
    make_units,
    merge,
    nonfinite_failures,
    torch_threads,
)
from zol2l.tasks.base import TaskFamily

COARSE = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
REFINE = tuple(round(0.2 * k, 1) for k in range(1, 11))
EXTRA_GRIDS: dict[str, dict[str, Sequence[float]]] = {
    "zo-adam": {"beta1": (0.9, 0.99), "beta2": (0.99, 0.996, 0.999)},
}


def _grid(name: str) -> list[dict[str, Any]]:
    extra = EXTRA_GRIDS.get(name, {})
    keys = sorted(extra)
    return [dict(zip(keys, combo, strict=True))
            for combo in itertools.product(*(extra[k] for k in keys))]


def tune(
    task: TaskFamily,
    names: Sequence[str],
    *,
    instances: int | None = None,
    trials: int = 1,
    steps: int = 500,
    q: int = 20,
    seed: int = 0,
    coarse: Sequence[float] = COARSE,
    refine: Sequence[float] = REFINE,
    progress: bool = True,
    backend: Backend | str | None = None,
    workdir: str | os.PathLike | None = None,
    resume: bool = False,
    instance_chunk: int | None = DEFAULT_INSTANCE_CHUNK,
    trial_chunk: int | None = None,
) -> dict[str, Any]:
    """Tune each optimizer in ``names`` on training instances; returns the hparams payload.

    Every grid point is split into work units (see
    :func:`~zol2l.experiments.evaluate.evaluate` for ``backend``, ``workdir``, ``resume`` and
    the chunk sizes): all coarse points of all optimizers run in parallel, then all
    refinements."""
    ids = select_ids(task, "train", instances)
    ctx = RunContext(task, steps, {})
    start = time.perf_counter()

    def point(name: str, hp: dict[str, Any]) -> tuple[str, str]:
        return name, digest(hp)

    scores: dict[tuple[str, str], float] = {}
    diverged: dict[tuple[str, str], int] = {}

    def logged(name: str, hp: dict[str, Any]) -> dict[str, Any]:
        score = scores[point(name, hp)]  # a diverged grid point: null and its run count
        return {**hp, "final_loss_mean": score if math.isfinite(score) else None,
                "diverged_runs": diverged[point(name, hp)]}
    stats: dict[str, Any] = {}

    def score_all(points: list[tuple[str, dict[str, Any]]], desc: str) -> None:
        plan = {point(n, hp): make_units(n, {"q": q, **hp}, ids, trials=trials, seed=seed,
                                         instance_chunk=instance_chunk,
                                         trial_chunk=trial_chunk)
                for n, hp in points}
        nonlocal stats
        outputs, more = run_units(ctx, [u for us in plan.values() for u in us], runner,
                                  workdir=workdir, resume=resume, progress=progress, desc=desc)
        stats = add_stats(stats, more)
        with torch_threads(ctx.threads):
            for key, units in plan.items():
                result, _ = merge(units, [outputs[u.uid] for u in units])
                failed = sum(len(nonfinite_failures(u, outputs[u.uid])) for u in units)
                diverged[key] = failed
                scores[key] = math.inf if failed else mean_final_loss(result)

    grids = {name: _grid(name) for name in names}
    with backend_scope(backend) as runner:
        score_all([(n, {**extra, "delta": d}) for n in names for extra in grids[n]
                   for d in coarse], "tune coarse")
        best_coarse: dict[tuple[str, int], float] = {}
        fine_points: list[tuple[str, dict[str, Any]]] = []
        for n in names:
            for k, extra in enumerate(grids[n]):
                values = {d: scores[point(n, {**extra, "delta": d})] for d in coarse}
                best_coarse[n, k] = d0 = min(values, key=lambda d: values[d])
                fine_points += [(n, {**extra, "delta": d0 * r}) for r in refine if r != 1.0]
        score_all(fine_points, "tune refine")
        info = runner.describe()
    table: dict[str, Any] = {}
    for name in names:
        trials_log: list[dict[str, Any]] = []
        best: tuple[float, dict[str, Any]] = (float("inf"), {})
        for k, extra in enumerate(grids[name]):
            coarse_scores = {}
            for d in coarse:
                coarse_scores[d] = scores[point(name, {**extra, "delta": d})]
                trials_log.append(logged(name, {**extra, "delta": d}))
            d0 = best_coarse[name, k]
            fine = {}
            for r in refine:
                if r != 1.0:
                    fine[d0 * r] = scores[point(name, {**extra, "delta": d0 * r})]
                    trials_log.append(logged(name, {**extra, "delta": d0 * r}))
            fine[d0] = coarse_scores[d0]
            d1 = min(fine, key=lambda d: fine[d])
            if fine[d1] < best[0]:
                best = (fine[d1], {**extra, "delta": d1})
        if not best[1]:
            raise ValueError(f"every grid point of {name} diverged (its loss became NaN or "
                             "infinite): check the objective or target, or widen the grid")
        table[name] = {"hyperparameters": {**best[1], "q": q},
                       "final_loss_mean": best[0], "trials": trials_log}
    return {
        "task": task.name, "task_options": task.describe(), "split": "train",
        "instances": list(ids), "trials": trials, "steps": steps, "q": q, "seed": seed,
        "coarse": list(coarse), "refine": list(refine), "device": str(torch.device("cpu")),
        "seconds": time.perf_counter() - start, "optimizers": table,
        "chunks": {"instances": instance_chunk, "trials": trial_chunk},
        "backend": {**info, **stats},
    }
