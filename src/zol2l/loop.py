"""The one optimization loop of zol2l: every optimizer, learned or not, steps through it.

:class:`Run` is the loop as :data:`~zol2l.estimators.Queries`: it yields each batch of query
points (checked and counted by its :class:`~zol2l.oracle.Oracle`) to whoever evaluates them
and is sent their values.  :func:`run` answers with the problem's objective (the harness,
:func:`zol2l.minimize`); :class:`zol2l.AskTell` hands the points to its user.  The meta-trainer
unrolls steps with :func:`advance` instead (a differentiable oracle, no loop bookkeeping).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from zol2l.estimators import Queries, drive
from zol2l.optimizers.base import State, StepOutput, ZOOptimizer
from zol2l.oracle import BudgetExhausted, NonFinite, Oracle
from zol2l.tasks.base import Problem


@dataclass
class RunResult:
    """The outcome of :func:`run` on a batch of ``B`` problems.

    Attributes:
        x: ``[B, d]`` final points.
        loss: ``[T + 1, B]`` loss history; row 0 is the initial point, row ``t`` the point after
            ``t`` steps (the task's reported loss, else the queried values).
        queries: queries per problem spent by each of the ``T`` steps.
        seconds: wall time of the whole run.
        step_seconds: wall time of each step (oracle included).
        steps: number of steps taken ``T``.
        stop_reason: ``"steps"`` or a sentence saying why the run ended early.
        nqueries: total queries per problem, the final evaluation included.
        metrics: per-step task metrics, each ``[T + 1, B, ...]``.
        best_x: ``[B, d]`` the best iterate seen (lowest entry of ``loss``; ``x0`` when every
            value was infinite).
        best_loss: ``[B]`` its value (the reported loss, else the queried value).
    """

    x: torch.Tensor
    loss: torch.Tensor
    queries: list[int]
    seconds: float
    step_seconds: list[float]
    steps: int
    stop_reason: str
    nqueries: int = 0
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)
    best_x: torch.Tensor | None = None
    best_loss: torch.Tensor | None = None

    @property
    def best_history(self) -> torch.Tensor:
        """``[T + 1, B]`` best value seen up to each row of ``loss`` (running minimum)."""
        return torch.cummin(self.loss, dim=0).values


@dataclass
class Progress:
    """What an ``on_step`` observer of :func:`run` sees after step ``t``.

    Attributes:
        t: the step just taken (0-based).
        x: ``[B, d]`` the iterate after the step (projected into the problem's box).
        value: ``[B]`` the value of the iterate the step started from (reported or queried).
        best_x, best_loss: the best iterate seen so far and its value.
        nqueries: queries per problem spent so far.
        output: the step's :class:`~zol2l.optimizers.base.StepOutput`.
    """

    t: int
    x: torch.Tensor
    value: torch.Tensor
    best_x: torch.Tensor
    best_loss: torch.Tensor
    nqueries: int
    output: StepOutput


class _Best:
    """Running best iterate of each row (strictly lower values replace it)."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x.clone()
        self.loss = torch.full((x.shape[0],), float("inf"), dtype=x.dtype, device=x.device)

    def update(self, x: torch.Tensor, value: torch.Tensor) -> None:
        better = value.to(self.loss.dtype) < self.loss
        if bool(better.any()):
            self.loss = torch.where(better, value.to(self.loss.dtype), self.loss)
            self.x = torch.where(better[:, None], x, self.x)


def _reported(problem: Problem, x: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    value = problem.loss(x)
    return fallback if value is None else value


def advance(optimizer: ZOOptimizer, problem: Problem, oracle: Oracle, x: torch.Tensor,
            state: State, gen: torch.Generator, t: int) -> StepOutput:
    """Iteration ``t`` with its autograd graph, answered by ``oracle`` (the meta-trainer's,
    differentiable): draw the task's minibatch, let the optimizer step."""
    oracle.iteration = t
    problem.next_iteration(t)
    return drive(optimizer.step(x, state, gen), oracle)


def _final(x: torch.Tensor) -> Queries[torch.Tensor]:
    """The value of ``x[B, d]`` (one query per problem)."""
    return (yield x[:, None, :])[:, 0]


class Run:
    """One run of ``optimizer`` on ``problem`` for ``steps`` iterations; :meth:`queries` is
    the loop, :func:`run` drives it with the problem's objective.

    Args:
        optimizer: any registered optimizer.
        problem: a batch of problems (:class:`~zol2l.tasks.base.Problem`).
        steps: iterations to run.
        seed: seeds the generator of the query directions; same seed, same history.
        budget: query budget per problem.  The loop stops before a step that would exceed it
            (keeping one query for the final value when the task reports no loss of its own).
        nonfinite: what the oracle does with NaN/inf values (see :class:`Oracle`).
        callback: called after every step with ``(t, step_output, state)``.
        on_step: called after every step with a :class:`Progress`; a true return value stops
            the run (``stop_reason``: the returned string, or ``"stopped by the callback
            after T steps"``).

    Attributes (live while the loop runs):
        x: ``[B, d]`` the current iterate (after the last step taken).
        best: the best iterate seen (``best.x``) and its value (``best.loss``).
        oracle: the counting oracle (``oracle.queries``: queries per problem so far).

    Every iterate, ``x0`` included, goes through :meth:`Problem.project
    <zol2l.tasks.base.Problem.project>` (the identity unless the problem has a box), and the
    best iterate by its value is tracked (:attr:`RunResult.best_x`).
    """

    def __init__(self, optimizer: ZOOptimizer, problem: Problem, steps: int, *,
                 seed: int = 0, budget: int | None = None, nonfinite: NonFinite = "raise",
                 callback: Callable[[int, StepOutput, State], None] | None = None,
                 on_step: Callable[[Progress], bool | str | None] | None = None) -> None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
        self.optimizer, self.problem, self.steps = optimizer, problem, steps
        self.callback, self.on_step, self.budget = callback, on_step, budget
        self.x = problem.project(problem.x0.clone())
        self.oracle = Oracle(problem.objective, problem.dim, mode="problems", budget=budget,
                             nonfinite=nonfinite, dtype=self.x.dtype)
        self.final_query = 0 if problem.reports_loss else 1
        if budget is not None and budget < optimizer.queries_at(0) + self.final_query:
            raise ValueError(
                f"budget {budget} is smaller than one step of {optimizer.name} "
                f"({optimizer.queries_at(0)} queries + {self.final_query} for the final "
                f"value)"
            )
        self.gen = torch.Generator(device=self.x.device).manual_seed(int(seed))
        self.state = optimizer.init_state(self.x)
        self.best = _Best(self.x)

    def _counted(self, queries: Queries[Any]) -> Queries[Any]:
        """``queries`` with each batch admitted by the oracle before it is yielded and its
        values accepted (counted, checked) before they are sent on."""
        oracle = self.oracle
        try:
            points = next(queries)
            while True:
                oracle.admit(points)
                values = yield points
                points = queries.send(oracle.accept(points, values))
        except StopIteration as done:
            return done.value

    def queries(self) -> Queries[RunResult]:
        """The loop: yields each batch of points ``[B, n, d]``, to be sent their values (what
        the problem's objective returns for them).  Drive it under ``torch.no_grad()``."""
        optimizer, problem, oracle, state = self.optimizer, self.problem, self.oracle, \
            self.state
        x = self.x
        # The loss and metrics of x_t are recorded AFTER step t, whose queries included f(x_t):
        # a task can then serve them from what it just evaluated instead of evaluating again.
        losses: list[torch.Tensor] = []
        metrics: list[dict[str, torch.Tensor]] = []
        queries: list[int] = []
        step_seconds: list[float] = []
        stop_reason = "steps"
        start = time.perf_counter()
        for t in range(self.steps):
            if not oracle.can_afford(optimizer.queries_at(t) + self.final_query):
                stop_reason = (f"query budget exhausted after {t} steps ({oracle.queries} of "
                               f"{self.budget})")
                break
            tick = time.perf_counter()
            before = oracle.queries
            oracle.iteration = t
            problem.next_iteration(t)
            try:
                out = yield from self._counted(optimizer.step(x, state, self.gen))
            except BudgetExhausted as exc:  # an optimizer that spends more than it announced
                stop_reason = str(exc)
                break
            losses.append(_reported(problem, x, out.fx))
            self.best.update(x, losses[-1])
            metrics.append(problem.metrics(x))
            x = self.x = problem.project(out.x)
            queries.append(oracle.queries - before)
            step_seconds.append(time.perf_counter() - tick)
            if self.callback is not None:
                self.callback(t, out, state)
            stop = self.on_step is not None and self.on_step(Progress(
                t, x, losses[-1], self.best.x, self.best.loss, oracle.queries, out))
            if stop:
                stop_reason = stop if isinstance(stop, str) else \
                    f"stopped by the callback after {t + 1} steps"
                break
        # the optimizer's answer: its last iterate, or the point it accepted (the scale-free
        # ZO-LSTM's last iterate is a proposal it has not evaluated yet)
        x = self.x = problem.project(optimizer.recommend(x, state))
        final = problem.loss(x)
        if final is None:
            oracle.iteration = len(queries)
            problem.next_iteration(len(queries))
            final = yield from self._counted(_final(x))
        losses.append(final)
        self.best.update(x, final)
        metrics.append(problem.metrics(x))
        seconds = time.perf_counter() - start
        stacked = {k: torch.stack([m[k] for m in metrics]) for k in metrics[0]} \
            if metrics[0] else {}
        return RunResult(
            x=x, loss=torch.stack(losses), queries=queries, seconds=seconds,
            step_seconds=step_seconds, steps=len(queries), stop_reason=stop_reason,
            nqueries=oracle.queries, metrics=stacked, best_x=self.best.x,
            best_loss=self.best.loss,
        )


def run(optimizer: ZOOptimizer, problem: Problem, steps: int, **options: Any) -> RunResult:
    """Run ``optimizer`` on ``problem`` for ``steps`` iterations (``options``: those of
    :class:`Run`), every query answered by ``problem.objective`` under ``torch.no_grad()``
    (evaluation: no graph through learned optimizers' state)."""
    loop = Run(optimizer, problem, steps, **options)
    with torch.no_grad():
        return drive(loop.queries(), problem.objective)
