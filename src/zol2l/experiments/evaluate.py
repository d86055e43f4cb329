"""``zol2l evaluate``: run several optimizers on the same problem instances and compare.

The JSON schema (stable; later versions add fields, never rename)::

    {"task", "task_options", "split", "steps", "q", "instances": [ids], "trials", "seed",
     "device", "seconds", "chunks": {"instances", "trials"},
     "backend": {"name", "workers", "nodes", "units", "computed", "reused", "retries",
                 "compute_seconds", "cpu_seconds", "units_per_node": {NODE: count}},
     "optimizers": {NAME: {"hyperparameters": {...},
                           "loss_mean": [steps + 1 floats, index 0 = initial loss],
                           "loss_std": [...], "final_loss_mean", "final_loss_std",
                           "final_loss": [one per (instance, trial), instance-major],
                           "queries_per_step": [one int per step], "total_queries",
                           "seconds", "seconds_per_step",
                           "hyperparameter_sources": {KEY: "user" | "tuned:FILE" |
                                                      "pretrained for TASK" | "default" | ...}}}}

``"q"`` is the number of query directions the optimizers share (each block's
``hyperparameters`` holds its own; ``null`` when they differ).  ``total_queries`` is per
(instance, trial) run; ``loss_std`` is over the runs.  The runs are
computed in work units (:mod:`zol2l.experiments.units`); an optimizer's ``seconds`` is the sum
of its units' compute time.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from zol2l.errors import warn
from zol2l.experiments.backends import backend_scope
from zol2l.experiments.options import RunOptions
from zol2l.experiments.runner import run_units
from zol2l.experiments.units import (
    RunContext,
    make_units,
    merge,
    raise_nonfinite,
    torch_threads,
)
from zol2l.fileio import write_json_atomic
from zol2l.loop import RunResult
from zol2l.tasks.base import Problem, TaskFamily


def write_json(path: str | os.PathLike, payload: Any) -> None:
    """Write JSON atomically (temporary file in the same folder, then rename)."""
    write_json_atomic(path, payload)


def _finite_mean(values: torch.Tensor) -> float:
    return float(values.mean()) if bool(torch.isfinite(values).all()) else math.inf


def block(result: RunResult, hyperparameters: Mapping[str, Any], task: TaskFamily,
          problem: Problem | None) -> dict[str, Any]:
    """The per-optimizer block from a (merged) run result; ``problem`` (the rows' problem in
    the state the runs ended in) is needed only by tasks with a :meth:`TaskFamily.summary`."""
    loss = result.loss.double()
    final = loss[-1]
    return {
        "hyperparameters": dict(hyperparameters),
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
        **(task.summary(result, problem) if problem is not None else {}),
    }


def _has_summary(task: TaskFamily) -> bool:
    return type(task).summary is not TaskFamily.summary


def select_ids(task: TaskFamily, split: str, instances: int | None,
               ids: Sequence[int] | None = None) -> list[int]:
    """Explicit ``ids`` (else the ids of ``split``), truncated to the first ``instances``."""
    chosen = [int(i) for i in ids] if ids is not None else task.instance_ids(split)
    if instances is not None:
        if instances < 1:
            raise ValueError(f"instances must be >= 1, got {instances}")
        if instances > len(chosen):
            warn(f"{instances} instances requested but the {split} split of {task.name} has "
                 f"{len(chosen)}: running {len(chosen)}")
        chosen = chosen[:instances]
    if not chosen:
        raise ValueError("no instances to run")
    return chosen


def common_q(table: Mapping[str, Mapping[str, Any]]) -> int | None:
    """The ``q`` every optimizer of ``table`` uses (the top-level ``"q"`` of
    ``results.json`` and ``hparams.json``), or ``None`` when they differ."""
    values = {hp.get("q") for hp in table.values()}
    return values.pop() if len(values) == 1 else None


def evaluate(
    task: TaskFamily,
    optimizers: Mapping[str, Mapping[str, Any]],
    *,
    split: str = "test",
    instances: int | None = None,
    ids: Sequence[int] | None = None,
    trials: int = 1,
    steps: int | None = None,
    options: RunOptions = RunOptions(),
    problem_options: Mapping[str, Any] | None = None,
    keep: dict[str, tuple[RunResult, Problem]] | None = None,
    budget: int | None = None,
    allow_diverged: bool = False,
    tuned: Mapping[str, Mapping[str, Any]] | str | os.PathLike | None = "shipped",
) -> dict[str, Any]:
    """Evaluate each optimizer (name or ``NAME@LABEL`` -> the user's hyperparameters) on the
    first ``instances`` ids of ``split`` (or on the explicit instance ``ids``) for ``steps``
    iterations (``None``: the task's ``default_steps``); returns the ``results.json``
    payload.

    Hyperparameters the user leaves out come from ``tuned`` (default: the task's shipped
    tuning file; a path: a ``zol2l tune`` file; a table; ``None``: the optimizers' own
    defaults) and, for learned optimizers, the task's shipped checkpoint
    (:func:`zol2l.experiments.defaults.resolve`); ``q`` (directions per estimate, eq. 1) is
    a hyperparameter like the others, the task's ``default_q`` where none is given.  Each
    block records its ``hyperparameter_sources``.

    ``options`` says how the run executes (:class:`~zol2l.experiments.options.RunOptions`:
    backend, workdir, resume, chunk sizes, progress, seed); the numbers do not depend on the
    backend.  ``budget`` caps the queries of each run (the loop stops before a step that
    would exceed it).  A run whose loss becomes non-finite is an error unless
    ``allow_diverged`` (``zol2l benchmark`` records divergence as a result).  ``keep``, if
    given, receives each optimizer's merged run result and problem (figures, examples)."""
    from zol2l.experiments.defaults import record_sources, resolve

    steps = task.default_steps if steps is None else steps
    chosen = select_ids(task, split, instances, ids)
    problem_options = dict(problem_options or {})
    ctx = RunContext(task, steps, problem_options, budget=budget)
    table, sources = resolve(task, list(optimizers), user=optimizers, tuned=tuned,
                             q=task.default_q, q_source="task default")
    plan = {name: make_units(name, hp, chosen, trials=trials, seed=options.seed,
                             instance_chunk=options.instance_chunk,
                             trial_chunk=options.trial_chunk)
            for name, hp in table.items()}
    start = time.perf_counter()
    with backend_scope(options.backend) as runner:
        outputs, stats = run_units(ctx, [u for us in plan.values() for u in us], runner,
                                   options, desc="evaluate")
        info = runner.describe()
    blocks: dict[str, Any] = {}
    with torch_threads(ctx.threads):
        for name, units in plan.items():
            parts = [outputs[u.uid] for u in units]
            for unit, part in zip(units, parts, strict=True):
                if not allow_diverged:
                    raise_nonfinite(unit, part)
            device = getattr(task, "device", "cpu")
            result, state = merge(units, parts, device=device)
            problem = None
            if keep is not None or _has_summary(task):
                problem = task.problem(chosen, trials=trials, seed=options.seed,
                                       **problem_options)
                problem.restore(state)
            blocks[name] = block(result, parts[0]["hyperparameters"], task, problem)
            if keep is not None:
                keep[name] = (result, problem)  # type: ignore[assignment]
    payload = {
        "task": task.name, "task_options": task.describe(), "split": split, "steps": steps,
        "q": common_q(table), "instances": list(chosen), "trials": trials,
        "seed": options.seed, "device": task.describe().get("device", "cpu"),
        "seconds": time.perf_counter() - start, "optimizers": blocks,
        "chunks": options.chunks(), "backend": {**info, **stats},
    }
    record_sources(payload, sources)
    return payload


def mean_final_loss(result: RunResult) -> float:
    """Mean final loss over the runs, ``inf`` when any diverged."""
    return _finite_mean(result.loss[-1].double())
