"""``zol2l evaluate``: run several optimizers on the same problem instances and compare.

The JSON schema (stable; later versions add fields, never rename)::

    {"task", "task_options", "split", "steps", "q", "instances": [ids], "trials", "seed",
     "device", "seconds",
     "optimizers": {NAME: {"hyperparameters": {...},
                           "loss_mean": [steps + 1 floats, index 0 = initial loss],
                           "loss_std": [...], "final_loss_mean", "final_loss_std",
                           "final_loss": [one per (instance, trial), instance-major],
                           "queries_per_step": [one int per step], "total_queries",
                           "seconds", "seconds_per_step"}}}

``total_queries`` is per (instance, trial) run; ``loss_std`` is over the runs.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from zol2l.fileio import write_json_atomic
from zol2l.loop import RunResult, run
from zol2l.optimizers import make
from zol2l.tasks.base import Problem, TaskFamily


def write_json(path: str | os.PathLike, payload: Any) -> None:
    """Write JSON atomically (temporary file in the same folder, then rename)."""
    write_json_atomic(path, payload)


def _finite_mean(values: torch.Tensor) -> float:
    return float(values.mean()) if bool(torch.isfinite(values).all()) else math.inf


def run_optimizer(
    task: TaskFamily, name: str, hyperparameters: Mapping[str, Any], ids: Sequence[int],
    *, trials: int, steps: int, seed: int, bar: tqdm | None = None,
    problem_options: Mapping[str, Any] | None = None,
) -> tuple[RunResult, Any, Problem]:
    """Run one optimizer on all ``(instance, trial)`` pairs of ``ids`` as one batch."""
    optimizer = make(name, **dict(hyperparameters))
    problem = task.problem(ids, trials=trials, seed=seed, **dict(problem_options or {}))

    def tick(t: int, out: Any, state: Any) -> None:
        if bar is not None:
            bar.update(1)

    result = run(optimizer, problem, steps, seed=seed, nonfinite="inf", callback=tick)
    return result, optimizer, problem


def summarize(result: RunResult, optimizer: Any, task: TaskFamily,
              problem: Problem) -> dict[str, Any]:
    """The per-optimizer block of ``results.json`` (task-specific fields included)."""
    loss = result.loss.double()
    final = loss[-1]
    return {
        "hyperparameters": optimizer.hyperparameters(),
        "loss_mean": loss.mean(dim=1).tolist(),
        "loss_std": loss.std(dim=1, unbiased=False).tolist(),
        "final_loss_mean": float(final.mean()),
        "final_loss_std": float(final.std(unbiased=False)),
        "final_loss": final.tolist(),
        "queries_per_step": result.queries,
        "total_queries": result.nqueries,
        "seconds": result.seconds,
        "seconds_per_step": result.seconds / max(result.steps, 1),
        "stop_reason": result.stop_reason,
        **task.summary(result, problem),
    }


def evaluate(
    task: TaskFamily,
    optimizers: Mapping[str, Mapping[str, Any]],
    *,
    split: str = "test",
    instances: int | None = None,
    trials: int = 1,
    steps: int = 500,
    q: int = 20,
    seed: int = 0,
    progress: bool = True,
    problem_options: Mapping[str, Any] | None = None,
    keep: dict[str, tuple[RunResult, Problem]] | None = None,
) -> dict[str, Any]:
    """Evaluate each optimizer (name -> hyperparameters) on the first ``instances`` ids of
    ``split``; returns the ``results.json`` payload.  ``keep``, if given, receives each
    optimizer's run result and problem (for figures and saved examples)."""
    ids = task.instance_ids(split)
    if instances is not None:
        if instances < 1:
            raise ValueError(f"instances must be >= 1, got {instances}")
        ids = ids[:instances]
    start = time.perf_counter()
    blocks: dict[str, Any] = {}
    with tqdm(total=steps * len(optimizers), disable=not progress, desc="evaluate",
              unit="step", leave=False) as bar:
        for name, hp in optimizers.items():
            bar.set_postfix_str(name)
            result, opt, problem = run_optimizer(
                task, name, {"q": q, **hp}, ids, trials=trials, steps=steps, seed=seed,
                bar=bar, problem_options=problem_options)
            blocks[name] = summarize(result, opt, task, problem)
            if keep is not None:
                keep[name] = (result, problem)
    return {
        "task": task.name, "task_options": task.describe(), "split": split, "steps": steps,
        "q": q, "instances": list(ids), "trials": trials, "seed": seed,
        "device": task.describe().get("device", "cpu"), "seconds": time.perf_counter() - start,
        "optimizers": blocks,
    }


def read_hparams(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Read the hyperparameter file written by ``zol2l tune``."""
    try:
        payload = json.loads(Path(path).read_text())
        table = payload["optimizers"]
        return {name: dict(entry["hyperparameters"]) for name, entry in table.items()}
    except FileNotFoundError:
        raise FileNotFoundError(f"hyperparameter file {path} does not exist") from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(
            f"{path} is not a zol2l tune file (expected {{'optimizers': {{NAME: "
            f"{{'hyperparameters': {{...}}}}}}}}): {exc}"
        ) from None


def mean_final_loss(result: RunResult) -> float:
    """Mean final loss over the runs, ``inf`` when any diverged."""
    return _finite_mean(result.loss[-1].double())
