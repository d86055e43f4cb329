"""A user's black box as a :class:`~zol2l.tasks.base.Problem`: bounds, parallel evaluation, the
default ``mu``, and the settings that :func:`zol2l.minimize` and :class:`zol2l.AskTell` share.

Bounds (``bounds=(lower, upper)``, scalars or arrays of length ``d``) are handled by
projection: every query point is clipped into the box before the objective sees it, and the
loop clips every iterate (``x0`` included).  The optimizers therefore minimize
``f(clip(x))``, which equals ``f`` inside the box, and their finite differences are those of
that function, so the estimates stay consistent with the values the user returns.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from zol2l.optimizers import make
from zol2l.optimizers.registry import accepted
from zol2l.oracle import NonFinite, Oracle, _scalar
from zol2l.tasks.base import Problem
from zol2l.validation import check_x0

#: Default ``mu`` of ``minimize`` / ``AskTell`` on a user's objective (any dtype), chosen by
#: ``bench/bench_mu_noise.py`` (docs/blackbox.md, "The default mu"): among the powers of ten
#: whose worst case converges on every measured setting (evaluation noise 0 to 0.1), the one
#: with the lowest geometric-mean final gap.  The per-dtype
#: :data:`zol2l.estimators.DEFAULT_MU` (exact directional derivatives) stays the default of
#: the tasks.
BLACKBOX_MU = 1e-2

#: Keywords of :func:`zol2l.minimize` besides the optimizer's hyperparameters.
MINIMIZE_KEYWORDS = ("fun", "x0", "method", "steps", "q", "mu", "lr", "delta", "seed",
                     "budget", "vectorized", "nonfinite", "bounds", "callback", "tol",
                     "tol_window", "executor", "workers")


def as_start(x0: Any) -> tuple[torch.Tensor, bool]:
    """``x0`` as a 1-D floating tensor, and whether the user works with numpy."""
    is_numpy = not isinstance(x0, torch.Tensor)
    start = torch.as_tensor(np.asarray(x0, dtype=np.float64) if is_numpy else x0)
    if start.dim() != 1 or start.numel() == 0:
        raise ValueError(f"x0 must be a non-empty 1-D array, got shape {tuple(start.shape)}")
    if not start.dtype.is_floating_point:
        start = start.to(torch.float64)
    if not bool(torch.isfinite(start).all()):
        raise ValueError("x0 contains NaN or infinite entries")
    return start, is_numpy


def as_bounds(bounds: Any, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(lower, upper)`` broadcast to ``x0``'s shape and dtype (``None``: no box)."""
    if bounds is None:
        return None
    try:
        lower, upper = bounds
    except (TypeError, ValueError):
        raise ValueError("bounds must be a pair (lower, upper) of scalars or arrays") from None
    out = []
    for label, value in (("lower", lower), ("upper", upper)):
        arr = torch.as_tensor(np.asarray(value, dtype=np.float64)).to(x0.dtype)
        try:
            arr = torch.broadcast_to(arr, x0.shape).clone()
        except RuntimeError:
            raise ValueError(f"{label} bound of shape {tuple(arr.shape)} does not match x0 "
                             f"of shape {tuple(x0.shape)}") from None
        if bool(torch.isnan(arr).any()):
            raise ValueError(f"{label} bound contains NaN")
        out.append(arr)
    if bool((out[0] > out[1]).any()):
        raise ValueError("bounds: lower must be <= upper in every coordinate")
    return out[0], out[1]


def parallel(fun: Callable, executor: Executor, numpy_inputs: bool) -> Callable:
    """A batch objective ``[n, d] -> [n]`` that evaluates the rows with ``executor.map`` (in
    order, so the values equal a serial loop's)."""

    def batch(flat: torch.Tensor) -> list[float]:
        rows = flat.detach().cpu().numpy() if numpy_inputs else list(flat)
        return [_scalar(v, i) for i, v in enumerate(executor.map(fun, rows))]

    return batch


class FunctionProblem(Problem):
    """One user objective as a :class:`Problem` with a single row, optionally boxed."""

    def __init__(self, fun: Callable, x0: torch.Tensor, *, vectorized: bool,
                 numpy_inputs: bool, bounds: tuple[torch.Tensor, torch.Tensor] | None = None,
                 executor: Executor | None = None) -> None:
        self.x0, self.ids, self.trials = x0[None, :], [0], [0]
        self.bounds = bounds
        if executor is not None and not vectorized:
            fun, vectorized = parallel(fun, executor, numpy_inputs), True
        mode = "batch" if vectorized else "point"
        self._oracle = Oracle(fun, x0.shape[0], mode=mode, dtype=x0.dtype,
                              numpy_inputs=numpy_inputs)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        if self.bounds is None:
            return x
        return torch.clamp(x, self.bounds[0], self.bounds[1])

    def objective(self, points: torch.Tensor) -> torch.Tensor:
        return self._oracle.evaluate(self.project(points))


@dataclass
class Settings:
    """What a black-box run needs besides the objective (shared by minimize and AskTell)."""

    method: str
    start: torch.Tensor
    is_numpy: bool
    steps: int
    seed: int
    budget: int | None
    nonfinite: NonFinite
    bounds: tuple[torch.Tensor, torch.Tensor] | None
    hyperparameters: dict[str, Any] = field(default_factory=dict)

    def optimizer(self) -> Any:
        """A fresh optimizer of these settings."""
        return make(self.method, **self.hyperparameters)

    def problem(self, fun: Callable, *, vectorized: bool,
                executor: Executor | None = None) -> FunctionProblem:
        """The problem of ``fun`` from the (projected) start."""
        return FunctionProblem(fun, self.start.clone(), vectorized=vectorized,
                               numpy_inputs=self.is_numpy, bounds=self.bounds,
                               executor=executor)

    def output(self, x: torch.Tensor) -> Any:
        """A point in the user's type (numpy or tensor)."""
        return x.detach().cpu().numpy().copy() if self.is_numpy else x.detach().clone()


def settings(method: str, x0: Any, *, steps: int | None, seed: int, budget: int | None,
             nonfinite: NonFinite, bounds: Any, hyperparameters: Mapping[str, Any],
             extra: tuple[str, ...] = ()) -> Settings:
    """Validate the shared settings; ``steps=None`` means 200 without a budget and unlimited
    with one.  Unknown keywords raise a ``ValueError`` naming them and the accepted ones."""
    known = accepted(method)
    unknown = sorted(set(hyperparameters) - set(known))
    if unknown:
        raise ValueError(
            f"bad hyperparameters for {method!r}: unknown keyword {unknown[0]!r}; accepted: "
            f"{', '.join(extra)} and the "
            f"hyperparameters of {method!r}: {', '.join(known)}"
        )
    check_x0(x0)
    start, is_numpy = as_start(x0)
    hp = dict(hyperparameters)
    if hp.get("mu") is None:
        hp["mu"] = BLACKBOX_MU
    if steps is None:
        steps = 200 if budget is None else 2**62
    box = as_bounds(bounds, start)
    if box is not None:
        start = torch.clamp(start, box[0], box[1])
    return Settings(method, start, is_numpy, steps, int(seed), budget, nonfinite, box,
                    {k: v for k, v in hp.items() if v is not None})


def relative_stall(history: list[float], tol: float, window: int) -> bool:
    """Whether the best value improved by less than ``tol`` (relative) over the last
    ``window`` steps."""
    if len(history) <= window:
        return False
    old, new = history[-window - 1], history[-1]
    if not math.isfinite(old):
        return False
    return (old - new) <= tol * max(abs(old), 1e-300)
