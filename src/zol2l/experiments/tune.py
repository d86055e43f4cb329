"""``zol2l tune``: the paper's baseline tuning protocol (section 4).

``lr = delta / d``.  For each optimizer (and, for ``zo-adam``, each ``beta1`` in {0.9, 0.99}
and ``beta2`` in {0.99, 0.996, 0.999}) the coarse grid ``delta in {0.01, 0.1, 1, 10, 100,
1000}`` is run, then a linear refinement ``delta* x {0.2, 0.4, ..., 2.0}`` around the best
coarse value.  Learned optimizers with an UpdateRNN (``zo-lstm`` and its ablations but
``zo-lstm-no-update``) take no learning rate: the same protocol tunes their update scale
``alpha`` on :data:`ALPHA_COARSE`.  Every grid can be overridden (``coarse``, ``refine``,
``extra``); a best coarse value on the edge of its grid warns and is recorded
(``"on_edge"``).  The other hyperparameters start from the shipped defaults
(:mod:`zol2l.experiments.defaults`: the task's checkpoint for learned optimizers), overridden
by ``fixed``.  Selection is by mean final loss over TRAINING instances only; diverged runs
count as ``inf`` (in ``hparams.json``: ``"final_loss_mean": null`` and the number of
``diverged_runs``, runs whose loss became NaN or infinite).  The grid points run as work
units on a backend (local or Ray), coarse points in parallel, then the refinements.
"""

from __future__ import annotations

import itertools
import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from zol2l.experiments.backends import backend_scope
from zol2l.experiments.evaluate import common_q, mean_final_loss, select_ids
from zol2l.experiments.options import RunOptions
from zol2l.experiments.runner import add_stats, run_units
from zol2l.experiments.units import (
    RunContext,
    digest,
    make_units,
    merge,
    nonfinite_failures,
    torch_threads,
)
from zol2l.optimizers import get_class
from zol2l.optimizers.registry import base_name
from zol2l.tasks.base import TaskFamily

COARSE = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
ALPHA_COARSE = (0.01, 0.1, 1.0, 10.0)
REFINE = tuple(round(0.2 * k, 1) for k in range(1, 11))
EXTRA_GRIDS: dict[str, dict[str, Sequence[float]]] = {
    "zo-adam": {"beta1": (0.9, 0.99), "beta2": (0.99, 0.996, 0.999)},
}


def knob(name: str) -> str:
    """The tuned step-size hyperparameter of ``name``: ``alpha`` for an UpdateRNN, else
    ``delta``."""
    return "alpha" if getattr(get_class(name), "learned_update", False) else "delta"


def _grid(name: str, extra_grids: Mapping[str, Mapping[str, Sequence[float]]]
          ) -> list[dict[str, Any]]:
    extra = extra_grids.get(base_name(name), {})
    keys = sorted(extra)
    return [dict(zip(keys, combo, strict=True))
            for combo in itertools.product(*(extra[k] for k in keys))]


def tune(
    task: TaskFamily,
    names: Sequence[str],
    *,
    instances: int | None = None,
    ids: Sequence[int] | None = None,
    trials: int = 1,
    steps: int | None = None,
    options: RunOptions = RunOptions(),
    coarse: Sequence[float] | None = None,
    refine: Sequence[float] = REFINE,
    extra: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
    fixed: Mapping[str, Mapping[str, Any]] | None = None,
    start: Mapping[str, Mapping[str, Any]] | str | os.PathLike | None = "shipped",
) -> dict[str, Any]:
    """Tune each optimizer in ``names`` on training instances for ``steps`` iterations
    (``None``: the task's ``default_steps``); returns the hparams payload.

    Every grid point is split into work units run as ``options`` says
    (:class:`~zol2l.experiments.options.RunOptions`): all coarse points of all optimizers
    run in parallel, then all refinements.  ``q`` is a hyperparameter like the others
    (``fixed``, else the task's ``default_q``).  ``coarse`` defaults to :data:`COARSE` for
    ``delta`` and :data:`ALPHA_COARSE` for ``alpha``; ``extra`` replaces :data:`EXTRA_GRIDS`
    entries (e.g. ``{"zo-adam": {"beta1": [0.9]}}``); ``ids`` picks the training instances;
    ``start`` is the starting point of the keys off the grids (see
    :func:`~zol2l.experiments.defaults.resolve`'s ``tuned``)."""
    from zol2l.experiments.defaults import resolve

    steps = task.default_steps if steps is None else steps
    ids = select_ids(task, "train", instances, ids)
    base, _ = resolve(task, list(names), user=fixed, tuned=start, q=task.default_q)
    knobs = {n: knob(n) for n in names}
    grids_1d = {n: tuple(coarse) if coarse is not None else
                (ALPHA_COARSE if knobs[n] == "alpha" else COARSE) for n in names}
    extra_grids = {**EXTRA_GRIDS, **(extra or {})}
    for n in names:  # the tuned keys come from the grid, not from the starting point
        for key in ("lr", "delta", knobs[n], *extra_grids.get(base_name(n), {})):
            base[n].pop(key, None)
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
        plan = {point(n, hp): make_units(n, {**base[n], **hp}, ids, trials=trials,
                                         seed=options.seed,
                                         instance_chunk=options.instance_chunk,
                                         trial_chunk=options.trial_chunk)
                for n, hp in points}
        nonlocal stats
        outputs, more = run_units(ctx, [u for us in plan.values() for u in us], runner,
                                  options, desc=desc)
        stats = add_stats(stats, more)
        with torch_threads(ctx.threads):
            for key, units in plan.items():
                result, _ = merge(units, [outputs[u.uid] for u in units])
                failed = sum(len(nonfinite_failures(u, outputs[u.uid])) for u in units)
                diverged[key] = failed
                scores[key] = math.inf if failed else mean_final_loss(result)

    grids = {name: _grid(name, extra_grids) for name in names}
    edges: set[tuple[str, int]] = set()
    with backend_scope(options.backend) as runner:
        score_all([(n, {**ex, knobs[n]: d}) for n in names for ex in grids[n]
                   for d in grids_1d[n]], "tune coarse")
        best_coarse: dict[tuple[str, int], float] = {}
        fine_points: list[tuple[str, dict[str, Any]]] = []
        for n in names:
            for k, ex in enumerate(grids[n]):
                values = {d: scores[point(n, {**ex, knobs[n]: d})] for d in grids_1d[n]}
                best_coarse[n, k] = d0 = min(values, key=lambda d: values[d])
                if len(values) > 1 and d0 in (min(values), max(values)):
                    edges.add((n, k))
                fine_points += [(n, {**ex, knobs[n]: d0 * r}) for r in refine if r != 1.0]
        score_all(fine_points, "tune refine")
        info = runner.describe()
    table: dict[str, Any] = {}
    for name in names:
        trials_log: list[dict[str, Any]] = []
        best: tuple[float, dict[str, Any]] = (float("inf"), {})
        on_edge = False
        key = knobs[name]
        for k, ex in enumerate(grids[name]):
            coarse_scores = {}
            for d in grids_1d[name]:
                coarse_scores[d] = scores[point(name, {**ex, key: d})]
                trials_log.append(logged(name, {**ex, key: d}))
            d0 = best_coarse[name, k]
            fine = {}
            for r in refine:
                if r != 1.0:
                    fine[d0 * r] = scores[point(name, {**ex, key: d0 * r})]
                    trials_log.append(logged(name, {**ex, key: d0 * r}))
            fine[d0] = coarse_scores[d0]
            d1 = min(fine, key=lambda d: fine[d])
            if fine[d1] < best[0]:
                best, on_edge = (fine[d1], {**ex, key: d1}), (name, k) in edges
        if not best[1]:
            raise ValueError(f"every grid point of {name} diverged (its loss became NaN or "
                             "infinite): check the objective or target, or widen the grid")
        if on_edge:
            warnings.warn(f"{name}: the best coarse {key} lies on the edge of the grid "
                          f"{list(grids_1d[name])}; widen it (--grid coarse=...)",
                          UserWarning, stacklevel=2)
        chosen = {**base[name], **best[1]}
        chosen["q"] = chosen.pop("q")  # last, as the files written so far
        table[name] = {"hyperparameters": chosen,
                       "final_loss_mean": best[0], "trials": trials_log, "tuned": key,
                       "coarse": list(grids_1d[name]), "on_edge": on_edge}
    return {
        "task": task.name, "task_options": task.describe(), "split": "train",
        "instances": list(ids), "trials": trials, "steps": steps,
        "q": common_q({n: base[n] for n in names}), "seed": options.seed,
        "coarse": list(coarse if coarse is not None else COARSE), "refine": list(refine),
        "device": str(torch.device("cpu")),
        "seconds": time.perf_counter() - start, "optimizers": table,
        "chunks": options.chunks(),
        "backend": {**info, **stats},
    }

