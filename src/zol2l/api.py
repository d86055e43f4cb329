"""``minimize``: apply any registered optimizer to a user's black-box function."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from zol2l.loop import RunResult, run
from zol2l.optimizers import make
from zol2l.oracle import NonFinite, Oracle
from zol2l.tasks.base import Problem
from zol2l.validation import check_x0


class FunctionProblem(Problem):
    """One user objective as a :class:`Problem` with a single row."""

    def __init__(self, fun: Callable, x0: torch.Tensor, *, vectorized: bool,
                 numpy_inputs: bool) -> None:
        self.x0, self.ids, self.trials = x0[None, :], [0], [0]
        mode = "batch" if vectorized else "point"
        self._oracle = Oracle(fun, x0.shape[0], mode=mode, dtype=x0.dtype,
                              numpy_inputs=numpy_inputs)

    def objective(self, points: torch.Tensor) -> torch.Tensor:
        return self._oracle._evaluate(points)


@dataclass
class MinimizeResult:
    """Result of :func:`minimize`.

    Attributes:
        x: the final point (numpy array if ``x0`` was one, else a tensor).
        fun: objective value at ``x``.
        history: objective value after each step (index 0: at ``x0``).
        nqueries: number of objective evaluations spent.
        stop_reason: ``"steps"`` or why the run ended early (e.g. the budget).
        run: the full :class:`~zol2l.loop.RunResult`.
    """

    x: Any
    fun: float
    history: list[float]
    nqueries: int
    stop_reason: str
    run: RunResult


def minimize(
    fun: Callable,
    x0: Any,
    method: str = "zo-adam",
    *,
    steps: int = 200,
    q: int = 20,
    mu: float | None = None,
    lr: float | None = None,
    delta: float | None = None,
    seed: int = 0,
    budget: int | None = None,
    vectorized: bool = False,
    nonfinite: NonFinite = "raise",
    **options: Any,
) -> MinimizeResult:
    """Minimize the black-box ``fun`` from ``x0`` with the optimizer ``method``.

    Args:
        fun: ``fun(x) -> float`` for a 1-D ``x`` (numpy array when ``x0`` is numpy, else a
            tensor), or with ``vectorized=True`` ``fun(X[n, d]) -> [n]`` on torch tensors.
        x0: 1-D initial point (numpy array, list or tensor).
        method: a registered optimizer name (``zol2l.optimizers.available()``).
        steps, q, mu, lr, delta, seed, budget: see :func:`zol2l.loop.run` and the optimizer.
        options: further optimizer hyperparameters (e.g. ``beta1`` for ``zo-adam``).

    Returns:
        a :class:`MinimizeResult`; ``nqueries`` counts every call of ``fun``.
    """
    check_x0(x0)
    is_numpy = not isinstance(x0, torch.Tensor)
    start = torch.as_tensor(np.asarray(x0, dtype=np.float64) if is_numpy else x0)
    if start.dim() != 1 or start.numel() == 0:
        raise ValueError(f"x0 must be a non-empty 1-D array, got shape {tuple(start.shape)}")
    if not start.dtype.is_floating_point:
        start = start.to(torch.float64)
    if not bool(torch.isfinite(start).all()):
        raise ValueError("x0 contains NaN or infinite entries")
    optimizer = make(method, q=q, mu=mu, lr=lr, delta=delta, **options)
    problem = FunctionProblem(fun, start.clone(), vectorized=vectorized,
                              numpy_inputs=is_numpy)
    result = run(optimizer, problem, steps, seed=seed, budget=budget, nonfinite=nonfinite)
    x = result.x[0]
    history = result.loss[:, 0].tolist()
    return MinimizeResult(
        x=x.numpy() if is_numpy else x, fun=history[-1], history=history,
        nqueries=result.nqueries, stop_reason=result.stop_reason, run=result,
    )
