"""Running the held-out suite (:mod:`zol2l.benchmark.suite`) and measuring it.

Every (problem, optimizer, budget) runs through :func:`zol2l.experiments.evaluate.evaluate`:
work units (``--backend ray``, ``--resume``), the one loop, the one oracle, the budget
enforced by the loop.  Each budget is a run of its own, ending with the optimizer's answer
(:meth:`~zol2l.optimizers.base.ZOOptimizer.recommend`; a prefix of a longer run would end
on an iterate the optimizer has not judged yet); the budget-aware peers
(:data:`~zol2l.benchmark.suite.BUDGET_AWARE`) are told it.

Metrics per run (relative to the run's initial loss ``f(x_0)``, the reported noiseless
value): the final value, the best value, and the queries spent when the best value first
reached each of :data:`~zol2l.benchmark.suite.TARGETS`.  A problem's score is the mean over
its test instances of ``log10`` of the final relative value; optimizer A wins a problem
against B when its score is lower.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from zol2l.benchmark.suite import (
    BUDGET_AWARE,
    DEFAULTS,
    HELD_OUT,
    PEERS,
    SUBJECT,
    TARGETS,
    BenchProblem,
    Size,
    problems,
)
from zol2l.experiments.evaluate import evaluate
from zol2l.loop import RunResult
from zol2l.optimizers.zo_lstm import DEFAULT_CHECKPOINT
from zol2l.tasks import make_task

#: the coarse delta grid of ``zol2l tune`` (section 4), used for the tuned ZO-ADAM
DELTA_GRID = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
#: queries per run when ``f`` reaches 0 exactly: relative values are floored here
FLOOR = 1e-300


def run_metrics(result: RunResult, budget: int) -> list[dict[str, Any]]:
    """Per-row metrics of ``result`` truncated to the first ``budget`` queries."""
    spent = torch.tensor([0] + list(result.queries)).cumsum(0)
    last = int((spent <= budget).nonzero().max())
    loss = result.loss[: last + 1].double()
    rel = loss / loss[0].abs().clamp_min(FLOOR)
    best = torch.cummin(rel, dim=0).values
    rows = []
    for b in range(rel.shape[1]):
        reached: dict[str, int | None] = {}
        for target in TARGETS:
            hit = (best[:, b] <= target).nonzero()
            reached[f"{target:g}"] = int(spent[int(hit[0])]) if len(hit) else None
        final, low = float(rel[-1, b]), float(best[-1, b])
        rows.append({"final": final if math.isfinite(final) else None,
                     "best": low if math.isfinite(low) else None, "queries_to": reached,
                     "queries": int(spent[last])})
    return rows


def score(rows: list[dict[str, Any]]) -> float | None:
    """Mean ``log10`` final relative value (``None`` when a run diverged)."""
    if any(r["final"] is None for r in rows):
        return None
    return sum(math.log10(max(r["final"], FLOOR)) for r in rows) / len(rows)


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A problem's block for one optimizer."""
    return {
        "score": score(rows),
        "final": [r["final"] for r in rows], "best": [r["best"] for r in rows],
        "queries_to": {f"{t:g}": [r["queries_to"][f"{t:g}"] for r in rows] for t in TARGETS},
        "above_start": sum(1 for r in rows if r["final"] is None or r["final"] > 1.0),
        "queries": [r["queries"] for r in rows],
    }


def optimizer_set(problem: BenchProblem, budget: int, tuned: float | None,
                  peers: list[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Label -> (registered name, hyperparameters) for one problem.  The learned subject is
    the general optimizer on every problem, also on a task with a checkpoint of its own
    (binary classification: ``pretrained:binary-classification`` is the specialist)."""
    chosen: dict[str, tuple[str, dict[str, Any]]] = {name: (name, {}) for name in DEFAULTS}
    chosen[SUBJECT] = (SUBJECT, {"checkpoint": DEFAULT_CHECKPOINT})
    if tuned is not None:
        chosen["zo-adam-tuned"] = ("zo-adam", {"delta": tuned})
    for label in peers:
        hp: dict[str, Any] = {"dim": problem.dim}
        if label in BUDGET_AWARE:
            hp["budget"] = budget
        chosen[label] = (PEERS[label], hp)
    return chosen


def _run(problem: BenchProblem, name: str, hp: Mapping[str, Any], budget: int, split: str,
         instances: int, ctx: Mapping[str, Any], workdir: Path | None) -> RunResult:
    task = make_task(problem.task, **problem.options)
    keep: dict[str, Any] = {}
    # tuned=None: every optimizer at its own defaults, never a task's shipped tuned file
    evaluate(task, {name: {"q": ctx["q"], **hp}}, split=split, instances=instances,
             steps=budget, budget=budget, keep=keep, tuned=None,
             options=replace(ctx["options"], workdir=workdir), allow_diverged=True)
    return keep[name][0]


def tune_delta(problem_set: list[BenchProblem], budget_factor: int, ctx: Mapping[str, Any],
               workdir: Path | None) -> float:
    """ZO-ADAM's ``delta`` on the TRAINING ids of ``problem_set`` (one dimension and noise):
    the coarse grid, then ``x {0.3, 3}`` around the best, by the mean score."""
    def mean_score(delta: float) -> float:
        scores = []
        for p in problem_set:
            budget = budget_factor * p.dim
            where = None if workdir is None else workdir / p.key() / f"delta{delta:g}"
            rows = run_metrics(_run(p, "zo-adam", {"delta": delta}, budget, "train",
                                    ctx["tune_instances"], ctx, where), budget)
            value = score(rows)
            scores.append(math.inf if value is None else value)
        return sum(scores) / len(scores)

    results = {d: mean_score(d) for d in DELTA_GRID}
    best = min(results, key=lambda d: results[d])
    for delta in (best * 0.3, best * 3.0):
        results[delta] = mean_score(delta)
    return min(results, key=lambda d: results[d])


def run_suite(size: Size, ctx: Mapping[str, Any], *, peers: list[str],
              workdir: Path | None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the suite at ``size``; returns the ``results.json`` payload."""
    start = time.perf_counter()
    suite = problems(size)
    top = max(size.budgets)
    tuned: dict[str, float] = {}
    for dim in size.dims:
        for noise in size.noises:
            group = [p for p in suite if p.tunes_baseline and p.dim == dim and p.noise == noise]
            if group:
                key = f"d{dim}-noise{noise:g}"
                tuned[key] = tune_delta(group, top, ctx, workdir and workdir / "tune")
                log(f"tuned zo-adam delta {tuned[key]:g} for {key}")
    blocks = []
    for problem in suite:
        key = f"d{problem.dim}-noise{problem.noise:g}"
        entry: dict[str, Any] = {"problem": problem.key(), "label": problem.label,
                                 "task": problem.task, "options": problem.options,
                                 "budgets": {}}
        chosen = optimizer_set(problem, top * problem.dim, tuned.get(key), peers)
        for factor in sorted(size.budgets, reverse=True):
            budget = factor * problem.dim
            table = {}
            for label, (name, hp) in chosen.items():
                hp = {**hp, "budget": budget} if label in BUDGET_AWARE else hp
                where = None if workdir is None else \
                    workdir / "units" / problem.key() / (label if factor == top
                                                          else f"{label}-b{factor}")
                history = _run(problem, name, hp, budget, "test", size.instances, ctx, where)
                table[label] = summarize(run_metrics(history, budget))
            entry["budgets"][str(factor)] = table
        blocks.append(entry)
        scores = {k: v["score"] for k, v in entry["budgets"][str(top)].items()}
        log(f"{problem.key()}: " + ", ".join(
            f"{k} {v:.2f}" if v is not None else f"{k} diverged" for k, v in scores.items()))
    return {"held_out": HELD_OUT, "targets": list(TARGETS), "size": {
        "functions": list(size.functions), "dims": list(size.dims),
        "noises": list(size.noises), "budgets": list(size.budgets),
        "instances": size.instances, "binary": size.binary},
        "q": ctx["q"], "seed": ctx["options"].seed, "tuned_delta": tuned, "peers": peers,
        "problems": blocks, "seconds": time.perf_counter() - start}
