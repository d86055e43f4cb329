"""Analysis helpers shared by the ``zol2l reproduce`` experiments.

Numbers from evaluation blocks (:func:`select`, :func:`hyperparameters`,
:func:`final_losses`, :func:`finite`, :func:`rel_diff`, :func:`paired`, :func:`best`),
evidence strings (:func:`listing`), whether a task's files are there (:func:`unavailable`),
and the train-split selection of ZO-LSTM's update scale ``alpha`` (section 4.3,
:func:`tune_alpha`) through the one harness.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from zol2l.experiments.reproduce.base import Context
from zol2l.experiments.reproduce.spec import Run, execute
from zol2l.learned.checkpoint import CheckpointError, resolve
from zol2l.tasks.base import TaskFamily

#: the attack numbers of one optimizer's block that the experiments report
FINALS = ("final_loss_mean", "final_loss_std", "success_rate", "iters_to_success_mean",
          "iters_to_success_median", "queries_to_success_mean", "total_queries")
#: a block's mean loss curve and its std band
CURVES = ("loss_mean", "loss_std")
#: the alpha grid of section 4.3's scaling, a log grid from 0.002 to 10: the MNIST optimizer
#: needs alpha ~ 0.01 on CIFAR-10 (its steps are ~100x too large there) and ~1 on binary
#: classification
ALPHA_GRID = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
#: the MNIST-trained optimizer with tuned alpha is reported under the paper's name for it
TRANSFER = "zo-lstm-finetune"


def select(blocks: Mapping[str, Mapping[str, Any]], keys: Iterable[str]
           ) -> dict[str, dict[str, Any]]:
    """``keys`` of every optimizer's evaluation block (``None`` where a block lacks one)."""
    keys = tuple(keys)
    return {name: {k: block.get(k) for k in keys} for name, block in blocks.items()}


def hyperparameters(blocks: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The hyperparameters each optimizer ran with (as the harness resolved them)."""
    return {name: block["hyperparameters"] for name, block in blocks.items()}


def final_losses(blocks: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """Each optimizer's mean final loss, ``inf`` where it diverged (:func:`finite`)."""
    return {name: finite(block["final_loss_mean"]) for name, block in blocks.items()}


def finite(value: Any) -> float:
    """``value`` as a float, ``inf`` when missing or not finite (diverged runs)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.inf
    return value if math.isfinite(value) else math.inf


def rel_diff(value: float, reference: float) -> float:
    """``(value - reference) / |reference|`` (``inf`` when either is not finite)."""
    if not (math.isfinite(value) and math.isfinite(reference)) or reference == 0:
        return math.inf
    return (value - reference) / abs(reference)


def best(values: Mapping[str, float | None], lower: bool = True) -> str | None:
    """The key of the lowest (``lower``) or highest value; ``None`` values never win."""
    valid = {k: v for k, v in values.items() if v is not None}
    if not valid:
        return None
    return min(valid, key=valid.__getitem__) if lower else max(valid, key=valid.__getitem__)


def paired(blocks: Mapping[str, Mapping[str, Any]], ref: str) -> dict[str, dict[str, Any]]:
    """Per optimizer the mean final loss with its standard error, and the paired difference
    of its final losses to ``ref``'s over the same (instance, trial) rows with its standard
    error (``minus_REF_mean``, ``minus_REF_se``; ``REF`` with ``_`` for ``-``)."""
    key = ref.replace("-", "_")
    base = np.asarray(blocks[ref]["final_loss"], dtype=np.float64)
    rows: dict[str, dict[str, Any]] = {}
    for name, block in blocks.items():
        final = np.asarray(block["final_loss"], dtype=np.float64)
        diff, n = final - base, final.size
        rows[name] = {
            "final_loss_mean": float(final.mean()),
            "final_loss_se": float(final.std(ddof=1) / math.sqrt(n)) if n > 1 else None,
            f"minus_{key}_mean": float(diff.mean()),
            f"minus_{key}_se": float(diff.std(ddof=1) / math.sqrt(n)) if n > 1 else None}
    return rows


def listing(values: Mapping[Any, Any], spec: str = ".4g", *, sep: str = " ",
            names: Callable[[Any], str] = str, none: str = "-") -> str:
    """``"name value, ..."``: each value formatted with ``spec`` (``none`` for ``None``),
    each key through ``names`` (e.g. :func:`~zol2l.experiments.reproduce.figures.label`)."""
    return ", ".join(f"{names(k)}{sep}{none if v is None else format(v, spec)}"
                     for k, v in values.items())


def unavailable(ctx: Context, task: str) -> str | None:
    """Why ``task``'s tuned baselines or learned optimizer cannot be used; ``None`` if both
    exist (with ``--retrain``: if the retrain step made them)."""
    try:
        ctx.baselines(task)
        path = resolve(ctx.learned(task), "query")
    except (FileNotFoundError, CheckpointError) as exc:
        return str(exc)
    return None if path.is_file() else f"checkpoint {path} does not exist"


def tune_alpha(ctx: Context, task: TaskFamily, checkpoint: str, *, grid: Sequence[float],
               instances: int, trials: int, steps: int, q: int, tag: str) -> dict[str, Any]:
    """Pick the update scale ``alpha`` of the ZO-LSTM ``checkpoint`` on ``task`` (section 4.3).

    Every grid value runs on the first ``instances`` ids of the TRAINING split only; the
    lowest mean final loss wins (ties and diverged runs: the value closest to 1).  Returns the
    grid, the train scores, the chosen ``alpha`` and the ids it was chosen on."""
    if not grid:
        raise ValueError("the alpha grid is empty")
    runs = {float(alpha): Run(f"{tag}-alpha{alpha:g}", task,
                              {"zo-lstm": {"checkpoint": checkpoint, "alpha": float(alpha),
                                           "q": q}},
                              split="train", instances=instances, trials=trials, steps=steps,
                              q=q) for alpha in grid}
    done = execute(ctx, list(runs.values()))
    scores = {a: finite(done[r.tag]["optimizers"]["zo-lstm"]["final_loss_mean"])
              for a, r in runs.items()}
    chosen = min(scores, key=lambda a: (scores[a], abs(math.log(a))))
    return {"split": "train", "grid": [float(a) for a in grid],
            "scores": {f"{a:g}": (s if math.isfinite(s) else None) for a, s in scores.items()},
            "best": chosen, "instances": list(done[runs[float(grid[-1])].tag]["instances"]),
            "trials": trials, "steps": steps, "q": q, "checkpoint": checkpoint,
            "selection": "lowest mean final loss on train instances"}
