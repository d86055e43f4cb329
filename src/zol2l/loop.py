"""The one optimization loop of zol2l: every optimizer, learned or not, steps through it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

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


def advance(
    optimizer: ZOOptimizer,
    problem: Problem,
    oracle: Oracle,
    x: torch.Tensor,
    state: State,
    gen: torch.Generator,
    t: int,
    *,
    detach: bool = True,
) -> StepOutput:
    """Iteration ``t`` of the loop: draw the task's minibatch, let the optimizer step.

    :func:`run` calls this for evaluation; the meta-trainer calls it with ``detach=False`` (and
    a differentiable oracle) to unroll truncations with their autograd graph.
    """
    oracle.iteration = t
    problem.next_iteration(t)
    out = optimizer.step(oracle, x, state, gen)
    if detach:
        out.x = out.x.detach()
    return out


def run(
    optimizer: ZOOptimizer,
    problem: Problem,
    steps: int,
    *,
    seed: int = 0,
    budget: int | None = None,
    nonfinite: NonFinite = "raise",
    callback: Callable[[int, StepOutput, State], None] | None = None,
    on_step: Callable[[Progress], bool | str | None] | None = None,
) -> RunResult:
    """Run ``optimizer`` on ``problem`` for ``steps`` iterations.

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

    Every iterate, ``x0`` included, goes through :meth:`Problem.project
    <zol2l.tasks.base.Problem.project>` (the identity unless the problem has a box), and the
    best iterate by its value is tracked (:attr:`RunResult.best_x`).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    x = problem.project(problem.x0.clone())
    oracle = Oracle(problem.objective, problem.dim, mode="problems", budget=budget,
                    nonfinite=nonfinite, dtype=x.dtype)
    final_query = 0 if problem.reports_loss else 1
    if budget is not None and budget < optimizer.queries_at(0) + final_query:
        raise ValueError(
            f"budget {budget} is smaller than one step of {optimizer.name} "
            f"({optimizer.queries_at(0)} queries + {final_query} for the final value)"
        )
    gen = torch.Generator(device=x.device).manual_seed(int(seed))
    state = optimizer.init_state(x)
    best = _Best(x)
    # The loss and metrics of x_t are recorded AFTER step t, whose queries included f(x_t):
    # a task can then serve them from what it just evaluated instead of evaluating again.
    losses: list[torch.Tensor] = []
    metrics: list[dict[str, torch.Tensor]] = []
    queries: list[int] = []
    step_seconds: list[float] = []
    stop_reason = "steps"
    start = time.perf_counter()
    for t in range(steps):
        need = optimizer.queries_at(t) + final_query
        if not oracle.can_afford(need):
            stop_reason = f"query budget exhausted after {t} steps ({oracle.queries} of {budget})"
            break
        tick = time.perf_counter()
        before = oracle.queries
        try:
            with torch.no_grad():  # evaluation: no graph through learned optimizers' state
                out = advance(optimizer, problem, oracle, x, state, gen, t)
        except BudgetExhausted as exc:  # an optimizer that spends more than it announced
            stop_reason = str(exc)
            break
        losses.append(_reported(problem, x, out.fx.detach()))
        best.update(x, losses[-1])
        metrics.append(problem.metrics(x))
        x = problem.project(out.x)
        queries.append(oracle.queries - before)
        step_seconds.append(time.perf_counter() - tick)
        if callback is not None:
            callback(t, out, state)
        stop = on_step is not None and on_step(Progress(t, x, losses[-1], best.x, best.loss,
                                                        oracle.queries, out))
        if stop:
            stop_reason = stop if isinstance(stop, str) else \
                f"stopped by the callback after {t + 1} steps"
            break
    # the optimizer's answer: its last iterate, or the point it accepted (the scale-free
    # ZO-LSTM's last iterate is a proposal it has not evaluated yet)
    x = problem.project(optimizer.recommend(x, state))
    final = problem.loss(x)
    if final is None:
        oracle.iteration = len(queries)
        problem.next_iteration(len(queries))
        final = oracle(x[:, None, :])[:, 0]
    losses.append(final)
    best.update(x, final)
    metrics.append(problem.metrics(x))
    seconds = time.perf_counter() - start
    stacked = {k: torch.stack([m[k] for m in metrics]) for k in metrics[0]} if metrics[0] else {}
    return RunResult(
        x=x, loss=torch.stack(losses), queries=queries, seconds=seconds,
        step_seconds=step_seconds, steps=len(queries), stop_reason=stop_reason,
        nqueries=oracle.queries, metrics=stacked, best_x=best.x, best_loss=best.loss,
    )
