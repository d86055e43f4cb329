"""``zol2l tune``: the paper's baseline tuning protocol (section 4).

``lr = delta / d``.  For each optimizer (and, for ``zo-adam``, each ``beta1`` in {0.9, 0.99}
and ``beta2`` in {0.99, 0.996, 0.999}) the coarse grid ``delta in {0.01, 0.1, 1, 10, 100,
1000}`` is run, then a linear refinement ``delta* x {0.2, 0.4, ..., 2.0}`` around the best
coarse value.  Selection is by mean final loss over TRAINING instances only; diverged runs
count as ``inf``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any

import torch
from tqdm import tqdm

from zol2l.experiments.evaluate import mean_final_loss, run_optimizer
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
) -> dict[str, Any]:
    """Tune each optimizer in ``names`` on training instances; returns the hparams payload."""
    ids = task.instance_ids("train")
    ids = ids[:instances] if instances is not None else ids
    start = time.perf_counter()
    table: dict[str, Any] = {}
    total = sum(len(_grid(n)) * (len(coarse) + len(refine)) for n in names)
    with tqdm(total=total, disable=not progress, desc="tune", unit="run", leave=False) as bar:
        for name in names:
            trials_log: list[dict[str, Any]] = []

            def score(hp: dict[str, Any], name: str = name,
                      log: list[dict[str, Any]] = trials_log) -> float:
                result, _, _ = run_optimizer(task, name, {"q": q, **hp}, ids, trials=trials,
                                          steps=steps, seed=seed)
                value = mean_final_loss(result)
                log.append({**hp, "final_loss_mean": value})
                bar.update(1)
                return value

            best: tuple[float, dict[str, Any]] = (float("inf"), {})
            for extra in _grid(name):
                coarse_scores = {d: score({**extra, "delta": d}) for d in coarse}
                d0 = min(coarse_scores, key=lambda d: coarse_scores[d])
                fine = {d0 * r: score({**extra, "delta": d0 * r}) for r in refine if r != 1.0}
                fine[d0] = coarse_scores[d0]
                d1 = min(fine, key=lambda d: fine[d])
                if fine[d1] < best[0]:
                    best = (fine[d1], {**extra, "delta": d1})
            if not best[1]:
                raise RuntimeError(f"every run of {name} diverged: widen the grid")
            table[name] = {"hyperparameters": {**best[1], "q": q},
                           "final_loss_mean": best[0], "trials": trials_log}
    return {
        "task": task.name, "task_options": task.describe(), "split": "train",
        "instances": list(ids), "trials": trials, "steps": steps, "q": q, "seed": seed,
        "coarse": list(coarse), "refine": list(refine), "device": str(torch.device("cpu")),
        "seconds": time.perf_counter() - start, "optimizers": table,
    }
