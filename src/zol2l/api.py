"""``minimize``: apply any registered optimizer to a user's black-box function."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from zol2l.blackbox import MINIMIZE_KEYWORDS, FunctionProblem, Settings, relative_stall, settings
from zol2l.loop import Progress, RunResult, run
from zol2l.oracle import NonFinite

__all__ = ["FunctionProblem", "Iteration", "MinimizeResult", "minimize"]


@dataclass
class Iteration:
    """What ``callback(it)`` sees after each step of :func:`minimize`.

    Attributes:
        t: steps taken so far.
        x: the current iterate; ``fun``: the value of the iterate the step started from.
        best_x, best_f: the best iterate seen and its value.
        nqueries: queries spent so far.
    """

    t: int
    x: Any
    fun: float
    best_x: Any
    best_f: float
    nqueries: int


@dataclass
class MinimizeResult:
    """Result of :func:`minimize`.

    Attributes:
        x: the BEST iterate seen, by its queried value (numpy array if ``x0`` was one, else a
            tensor); ``fun``: that value, so ``fun == f(x)`` for a deterministic ``f``.
        x_last, fun_last: the last iterate and its value.
        history: objective value of each iterate (index 0: at ``x0``; last: ``fun_last``).
        best_history: running minimum of ``history`` (its last entry is ``fun``).
        nqueries: number of objective evaluations spent.
        stop_reason: ``"steps"`` or why the run ended early (budget, callback, tol).
        run: the full :class:`~zol2l.loop.RunResult`.
    """

    x: Any
    fun: float
    history: list[float]
    nqueries: int
    stop_reason: str
    run: RunResult
    x_last: Any = None
    fun_last: float = float("nan")
    best_history: list[float] | None = None


def observer(cfg: Settings, callback: Callable | None, tol: float | None,
             window: int) -> Callable[[Progress], bool | str] | None:
    """The loop's ``on_step`` for a user ``callback(state) -> bool`` and a ``tol`` stop."""
    if callback is None and tol is None:
        return None
    best: list[float] = []

    def on_step(p: Progress) -> bool | str:
        best.append(float(p.best_loss[0]))
        if callback is not None and callback(Iteration(
                p.t + 1, cfg.output(p.x[0]), float(p.value[0]), cfg.output(p.best_x[0]),
                best[-1], p.nqueries)):
            return True
        if tol is not None and relative_stall(best, tol, window):
            return (f"tol: the best value improved by less than {tol:g} (relative) over the "
                    f"last {window} steps, after {p.t + 1} steps")
        return False

    return on_step


def solve(cfg: Settings, problem: FunctionProblem,
          on_step: Callable[[Progress], bool | str] | None = None) -> MinimizeResult:
    """Run ``cfg`` on ``problem`` through the loop (``minimize``'s code path)."""
    return finish(cfg, run(cfg.optimizer(), problem, cfg.steps, seed=cfg.seed,
                           budget=cfg.budget, nonfinite=cfg.nonfinite, on_step=on_step),
                  stacklevel=4)


def finish(cfg: Settings, result: RunResult, *, stacklevel: int = 3) -> MinimizeResult:
    """The :class:`MinimizeResult` of a finished run of ``cfg`` (``minimize`` and
    ``AskTell``); warns, at the caller ``stacklevel`` frames up, when the last iterate is
    worse than the start."""
    history = result.loss[:, 0].tolist()
    assert result.best_x is not None and result.best_loss is not None
    if not (math.isfinite(history[-1]) and history[-1] <= history[0]):
        warnings.warn(f"{cfg.method}: the last iterate's value {history[-1]:.6g} is worse than "
                      f"the start's {history[0]:.6g} (the run diverged, or the step size is "
                      f"too large); x and fun are the best iterate seen", UserWarning,
                      stacklevel=stacklevel)
    return MinimizeResult(
        x=cfg.output(result.best_x[0]), fun=float(result.best_loss[0]), history=history,
        nqueries=result.nqueries, stop_reason=result.stop_reason, run=result,
        x_last=cfg.output(result.x[0]), fun_last=history[-1],
        best_history=result.best_history[:, 0].tolist(),
    )


def minimize(
    fun: Callable,
    x0: Any,
    method: str = "zo-adam",
    *,
    steps: int | None = None,
    q: int = 20,
    mu: float | None = None,
    lr: float | None = None,
    delta: float | None = None,
    seed: int = 0,
    budget: int | None = None,
    vectorized: bool = False,
    nonfinite: NonFinite = "raise",
    bounds: Any = None,
    callback: Callable[[Iteration], bool | None] | None = None,
    tol: float | None = None,
    tol_window: int = 20,
    executor: Executor | None = None,
    workers: int | None = None,
    **options: Any,
) -> MinimizeResult:
    """Minimize the black-box ``fun`` from ``x0`` with the optimizer ``method``.

    Args:
        fun: ``fun(x) -> float`` for a 1-D ``x`` (numpy array when ``x0`` is numpy, else a
            tensor), or with ``vectorized=True`` ``fun(X[n, d]) -> [n]`` on torch tensors.
        x0: 1-D initial point (numpy array, list or tensor).
        method: a registered optimizer name (``zol2l.optimizers.available()``).
        steps: iterations; default 200, or as many as ``budget`` allows when only a budget is
            given (with both, whichever ends first).
        budget: queries never exceeded; the run stops before a step that would exceed it.
        q, lr, delta, seed: see :func:`zol2l.loop.run` and the optimizer.
        mu: smoothing; default :data:`zol2l.blackbox.BLACKBOX_MU` (works with and without
            evaluation noise, see docs/blackbox.md).
        bounds: ``(lower, upper)``, scalars or arrays: every query and iterate is clipped into
            the box (the optimizer minimizes ``f(clip(x))``, see :mod:`zol2l.blackbox`).
        callback: ``callback(it: Iteration)`` after each step; a true return value stops.
        tol: stop when the best value improved by less than ``tol`` (relative) over the last
            ``tol_window`` steps.
        executor: a ``concurrent.futures.Executor`` evaluating the points of a step of a
            non-vectorized ``fun`` in parallel (same values, same order as serial);
            ``workers=N`` makes a thread pool of ``N``.
        options: further optimizer hyperparameters (e.g. ``beta1`` for ``zo-adam``).

    Returns:
        a :class:`MinimizeResult` whose ``x``/``fun`` are the best iterate seen;
        ``nqueries`` counts every call of ``fun``.
    """
    cfg = settings(method, x0, steps=steps, seed=seed, budget=budget, nonfinite=nonfinite,
                   bounds=bounds, extra=MINIMIZE_KEYWORDS,
                   hyperparameters={"q": q, "mu": mu, "lr": lr, "delta": delta, **options})
    if executor is not None and workers is not None:
        raise ValueError("give either executor= or workers=, not both")
    if workers is not None and int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    pool = ThreadPoolExecutor(int(workers)) if workers is not None else nullcontext(executor)
    with pool as chosen:
        problem = cfg.problem(fun, vectorized=vectorized, executor=chosen)
        return solve(cfg, problem, observer(cfg, callback, tol, int(tol_window)))
