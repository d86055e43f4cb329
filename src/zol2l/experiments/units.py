"""Work units: the independent pieces an evaluation or a tuning grid is split into.

A :class:`Unit` is one optimizer (with its hyperparameters) on a chunk of instances and a
chunk of trials.  Its (instance, trial) pairs still advance together in one batch (one oracle
call per step).  The split depends only on the run's parameters (``instance_chunk``,
``trial_chunk``), never on how many workers run it, and each unit carries its own seed, a
SHA-256 digest of ``(run seed, optimizer, hyperparameters, instance chunk, trial chunk)``; the
optimizer says what of it is hashed (:meth:`~zol2l.optimizers.base.ZOOptimizer.identity`).
Units run with a fixed number of torch threads (:data:`UNIT_THREADS`), because CPU kernels
round differently with different thread counts.  :func:`merge` puts the units of one
optimizer back together in the canonical order (instance-major, then trial), so the merged
numbers do not depend on the backend, the number of workers or the order of completion.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from zol2l.experiments.options import DEFAULT_INSTANCE_CHUNK
from zol2l.loop import RunResult, run
from zol2l.optimizers import get_class, make
from zol2l.optimizers.registry import base_name
from zol2l.tasks.base import TaskFamily

#: torch threads inside a unit (every backend): results depend on it, so it is fixed
UNIT_THREADS = 1
#: bumped when the content of a stored unit changes meaning
UNIT_FORMAT = 1


def digest(payload: Any, length: int = 64) -> str:
    """Hex SHA-256 of ``payload`` as canonical JSON (stable across processes and machines,
    unlike Python's ``hash()``)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the body with ``torch.set_num_threads(threads)``, restoring the count afterwards."""
    before = torch.get_num_threads()
    if threads and threads != before:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if threads and threads != before:
            torch.set_num_threads(before)


@dataclass(frozen=True)
class Unit:
    """One optimizer on instances ``ids`` (positions ``start:stop`` of the run's instance list)
    and trials ``t0:t1``; ``seed`` seeds both the problem batch and the query directions."""

    optimizer: str
    hyperparameters: dict[str, Any] = field(hash=False)
    ids: tuple[int, ...]
    start: int
    stop: int
    t0: int
    t1: int
    seed: int
    uid: str

    @property
    def trials(self) -> int:
        """Trials per instance in this unit."""
        return self.t1 - self.t0

    @property
    def rows(self) -> list[tuple[int, int]]:
        """``(position, trial)`` of each row, in the unit's own (instance-major) order."""
        return [(p, t) for p in range(self.start, self.stop) for t in range(self.t0, self.t1)]


def unit_seed(seed: int, optimizer: str, hyperparameters: Mapping[str, Any],
              ids: Sequence[int], trials: tuple[int, int]) -> int:
    """The seed of a unit: 63 bits of a SHA-256 digest of its identity and the run seed.
    The labels ``NAME@LABEL`` of one optimizer are seeded as ``NAME``: runs under two
    settings then differ by their settings only (common random numbers for paired
    comparisons), and a labelled run reproduces the unlabelled one."""
    text = digest({"seed": int(seed), "optimizer": base_name(optimizer),
                   "hyperparameters": dict(hyperparameters),
                   "ids": [int(i) for i in ids], "trials": list(trials)})
    return int(text[:16], 16) >> 1


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:40] or "unit"


def make_units(optimizer: str, hyperparameters: Mapping[str, Any], ids: Sequence[int], *,
               trials: int, seed: int, instance_chunk: int | None = DEFAULT_INSTANCE_CHUNK,
               trial_chunk: int | None = None) -> list[Unit]:
    """Split one optimizer's runs on ``ids x range(trials)`` into units of at most
    ``instance_chunk`` instances (``None``: all) and ``trial_chunk`` trials (``None``: all)."""
    ids = [int(i) for i in ids]
    if not ids or trials < 1:
        raise ValueError("need at least one instance and one trial")
    ichunk = len(ids) if instance_chunk is None else int(instance_chunk)
    tchunk = trials if trial_chunk is None else int(trial_chunk)
    if ichunk < 1 or tchunk < 1:
        raise ValueError(f"chunk sizes must be >= 1, got instances {ichunk}, trials {tchunk}")
    hp = dict(hyperparameters)
    extra = get_class(optimizer).identity(hp)  # what the optimizer says tells runs apart
    hashed = extra.pop("hyperparameters")
    units = []
    for start in range(0, len(ids), ichunk):
        stop = min(start + ichunk, len(ids))
        chunk = tuple(ids[start:stop])
        for t0 in range(0, trials, tchunk):
            t1 = min(t0 + tchunk, trials)
            useed = unit_seed(seed, optimizer, hashed, chunk, (t0, t1))
            identity = {"optimizer": optimizer, "hyperparameters": hashed, "ids": chunk,
                        "positions": [start, stop], "trials": [t0, t1], "seed": useed, **extra}
            key = digest(identity, 12)
            uid = f"{_safe(optimizer)}-i{start:05d}-{stop:05d}-t{t0:04d}-{t1:04d}-{key}"
            units.append(Unit(optimizer, hp, chunk, start, stop, t0, t1, useed, uid))
    return units


@dataclass
class RunContext:
    """What every unit of a run shares: the task (target weights, data), the number of steps,
    the problem options.  Backends send it once (Ray: into the object store)."""

    task: TaskFamily
    steps: int
    problem_options: dict[str, Any]
    threads: int = UNIT_THREADS
    config: str = ""
    budget: int | None = None

    def __post_init__(self) -> None:
        if not self.config:
            identity = {"format": UNIT_FORMAT, "task": self.task.describe(),
                        "steps": self.steps, "threads": self.threads,
                        "problem_options": self.problem_options}
            if self.budget is not None:  # keeps the digests of runs without a budget
                identity["budget"] = self.budget
            self.config = digest(identity, 16)


def _cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _cpu(v) for k, v in value.items()}
    return value


def execute(ctx: RunContext, unit: Unit,
            tick: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run one unit; returns its per-run arrays (CPU tensors) and bookkeeping.  ``tick(t)`` is
    called after each step (progress)."""
    cpu = time.process_time()
    with torch_threads(ctx.threads):
        optimizer = make(base_name(unit.optimizer), **unit.hyperparameters)
        problem = ctx.task.problem(list(unit.ids), trials=unit.trials, seed=unit.seed,
                                   **ctx.problem_options)
        callback = None if tick is None else (lambda t, out, state: tick(t))
        result = run(optimizer, problem, ctx.steps, seed=unit.seed, nonfinite="inf",
                     callback=callback, budget=ctx.budget)
    return {
        "uid": unit.uid, "config": ctx.config, "format": UNIT_FORMAT,
        "hyperparameters": optimizer.hyperparameters(),
        "x": _cpu(result.x), "loss": _cpu(result.loss), "metrics": _cpu(result.metrics),
        "queries": [int(v) for v in result.queries], "nqueries": int(result.nqueries),
        "steps": int(result.steps), "stop_reason": result.stop_reason,
        "seconds": float(result.seconds), "cpu_seconds": time.process_time() - cpu,
        "step_seconds": [float(v) for v in result.step_seconds],
        "state": _cpu(problem.state()), "node": "local", "attempt": 1,
    }


def nonfinite_rows(loss: torch.Tensor) -> list[dict[str, Any]]:
    """The rows of a ``[T + 1, B]`` loss history that became NaN or infinite: each row's
    index, first iteration, value there, and how many iterations were non-finite."""
    bad = ~torch.isfinite(loss.detach().cpu())
    rows = []
    for row in bad.any(dim=0).nonzero().flatten().tolist():
        first = int(bad[:, row].nonzero()[0])
        rows.append({"row": row, "first_iteration": first,
                     "value": str(float(loss[first, row])),
                     "count": int(bad[:, row].sum())})
    return rows


class NonFiniteRunError(ValueError):
    """A run's loss became NaN or infinite (evaluate, attack and reproduce stop on it)."""


def nonfinite_failures(unit: Unit, output: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The runs of a unit's output whose loss became non-finite, with their instance id
    and trial (from the stored loss history: units kept by older versions are checked too)."""
    rows = unit.rows
    return [{**f, "instance": unit.ids[rows[f["row"]][0] - unit.start],
             "trial": rows[f["row"]][1]} for f in nonfinite_rows(output["loss"])]


def raise_nonfinite(unit: Unit, output: Mapping[str, Any]) -> None:
    """Raise :class:`NonFiniteRunError` for the first non-finite run of a unit, if any."""
    failures = nonfinite_failures(unit, output)
    if failures:
        f = failures[0]
        raise NonFiniteRunError(
            f"{unit.optimizer} on instance {f['instance']}, trial {f['trial']}: the loss is "
            f"{f['value']} at iteration {f['first_iteration']} (non-finite at {f['count']} of "
            f"{output['steps'] + 1} recorded iterations; {len(failures)} run(s) of this work "
            "unit are affected): the objective or target returns NaN or inf there; fix it "
            "(e.g. check the target's outputs) or lower the learning rate")


def merge(units: Sequence[Unit], outputs: Sequence[Mapping[str, Any]],
          device: torch.device | str = "cpu") -> tuple[RunResult, dict[str, Any]]:
    """Merge the outputs of one optimizer's units into one :class:`RunResult` over all rows
    (instance-major, then trial) and the merged problem state (for
    :meth:`~zol2l.tasks.base.Problem.restore`).  Row arrays are concatenated; the non-tensor
    state (e.g. row 0's snapshots) comes from the unit holding the first row."""
    if len(units) != len(outputs) or not units:
        raise ValueError("merge needs one output per unit, and at least one unit")
    order = sorted(range(len(units)), key=lambda k: (units[k].start, units[k].t0))
    keys = [row for k in order for row in units[k].rows]
    index = torch.tensor(sorted(range(len(keys)), key=keys.__getitem__), dtype=torch.long)
    outs = [outputs[k] for k in order]
    first = outs[0]
    for out in outs[1:]:
        if out["queries"] != first["queries"] or out["steps"] != first["steps"]:
            raise ValueError(f"units {first['uid']} and {out['uid']} ran different numbers of "
                             "steps or queries; they cannot be merged")

    def rows(parts: list[torch.Tensor], dim: int) -> torch.Tensor:
        return torch.cat(parts, dim).index_select(dim, index).to(device)

    metrics = {k: rows([o["metrics"][k] for o in outs], 1) for k in first["metrics"]}
    state = {k: rows([o["state"][k] for o in outs], 0) if isinstance(v, torch.Tensor) else v
             for k, v in first["state"].items()}
    reasons = sorted({str(o["stop_reason"]) for o in outs})
    result = RunResult(
        x=rows([o["x"] for o in outs], 0), loss=rows([o["loss"] for o in outs], 1),
        queries=list(first["queries"]), seconds=math.fsum(o["seconds"] for o in outs),
        step_seconds=[math.fsum(v) for v in zip(*(o["step_seconds"] for o in outs),
                                                strict=True)],
        steps=int(first["steps"]), stop_reason="; ".join(reasons),
        nqueries=int(first["nqueries"]), metrics=metrics,
    )
    return result, state
