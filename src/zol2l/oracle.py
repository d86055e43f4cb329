"""The zeroth-order oracle: counted, batched access to a black-box objective.

Every function value that any optimizer in zol2l sees goes through :class:`Oracle`, which is
therefore the one place where queries are counted and the query budget is enforced.

Points are always handled as a batch of problems: ``points`` has shape ``[B, n, d]`` (``B``
problems solved side by side, ``n`` points each, dimension ``d``) and the oracle returns the
``[B, n]`` values.  How the wrapped objective wants to be called is set by ``mode``:

* ``"problems"``: ``fun(points[B, n, d]) -> [B, n]`` (a task family whose instances differ);
* ``"batch"``: ``fun(X[N, d]) -> [N]``, one vectorized objective shared by all rows
  (``N = B * n``);
* ``"point"``: ``fun(x[d]) -> float``, a plain Python/numpy callable that the oracle loops over.
  It receives a 1-D ``numpy.ndarray`` when ``numpy_inputs`` is true, else a 1-D tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import torch

Mode = Literal["problems", "batch", "point"]
NonFinite = Literal["raise", "inf"]


class BudgetExhausted(RuntimeError):
    """Raised when a call would take the oracle past its query budget (nothing is evaluated)."""


class NonFiniteValueError(ValueError):
    """The objective returned NaN or +-inf and the oracle was asked to raise on it."""


class Oracle:
    """Counted, batched access to ``fun``.

    Args:
        fun: the objective (see the module docstring for the calling conventions).
        dim: dimension ``d`` of a point.
        mode: ``"problems"``, ``"batch"`` or ``"point"``.
        budget: maximum number of queries *per problem*; ``None`` means unlimited.  A call
            that would exceed it raises :class:`BudgetExhausted` before evaluating anything.
        nonfinite: ``"raise"`` (default) raises :class:`NonFiniteValueError` naming the
            iteration and the point; ``"inf"`` maps NaN and -inf/+inf to ``+inf`` so that the
            estimators reject those directions.
        dtype: floating dtype of the returned values and expected points.
        differentiable: keep the autograd graph of ``fun`` (meta-training only).  By default
            values are computed under ``torch.no_grad()`` and detached: only values leave.
            ``"linearized"``: exact values, but their gradient with respect to every point of
            a problem is ``grad f`` at that problem's FIRST point (one extra forward and
            backward pass on ``B`` points, not counted as queries, instead of the backward
            pass through all ``B * n``).  For eq. 1 estimates, whose first point is ``x``
            and the others ``x + mu u``, this is the first-order (small ``mu``) form of the
            reparameterized gradient that reaches the QueryRNN (meta-training stage 2).
        numpy_inputs: in ``"point"`` mode, call ``fun`` with numpy arrays instead of tensors.

    Attributes:
        queries: queries spent so far by each problem (all problems advance in lockstep).
        iteration: the optimizer iteration, set by the optimization loop for error messages.
    """

    def __init__(
        self,
        fun: Callable,
        dim: int,
        *,
        mode: Mode = "batch",
        budget: int | None = None,
        nonfinite: NonFinite = "raise",
        dtype: torch.dtype = torch.float64,
        differentiable: bool | Literal["linearized"] = False,
        numpy_inputs: bool = False,
    ) -> None:
        if not callable(fun):
            raise TypeError(f"the objective must be callable, got {type(fun).__name__}")
        if mode not in ("problems", "batch", "point"):
            raise ValueError(f"unknown oracle mode {mode!r}: use 'problems', 'batch' or 'point'")
        if nonfinite not in ("raise", "inf"):
            raise ValueError(f"nonfinite must be 'raise' or 'inf', got {nonfinite!r}")
        if int(dim) < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if budget is not None and int(budget) < 1:
            raise ValueError(f"budget must be a positive number of queries, got {budget}")
        if not dtype.is_floating_point:
            raise TypeError(f"the oracle needs a floating dtype, got {dtype}")
        if differentiable not in (False, True, "linearized"):
            raise ValueError(f"differentiable must be a bool or 'linearized', got "
                             f"{differentiable!r}")
        self.fun = fun
        self.dim = int(dim)
        self.mode: Mode = mode
        self.budget = None if budget is None else int(budget)
        self.nonfinite: NonFinite = nonfinite
        self.dtype = dtype
        self.differentiable = differentiable
        self.numpy_inputs = numpy_inputs
        self.queries = 0
        self.calls = 0
        self.iteration = 0

    # ------------------------------------------------------------------ budget
    @property
    def remaining(self) -> int | None:
        """Queries left per problem, or ``None`` when there is no budget."""
        return None if self.budget is None else self.budget - self.queries

    def can_afford(self, n: int) -> bool:
        """Whether ``n`` more queries per problem fit in the budget."""
        return self.budget is None or self.queries + n <= self.budget

    # ------------------------------------------------------------------ evaluation
    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        """Evaluate ``points[B, n, d]`` in one call of the objective; returns ``[B, n]``."""
        self.admit(points)
        if self.differentiable == "linearized":
            values = self._linearized(points)
        elif self.differentiable:
            values = self.evaluate(points)
        else:
            with torch.no_grad():
                values = self.evaluate(points).detach()
        return self.accept(points, values)

    def admit(self, points: torch.Tensor) -> None:
        """Check ``points[B, n, d]`` before they are evaluated: their shape and dtype, and
        that their ``n`` queries per problem fit in the budget (else
        :class:`BudgetExhausted`, nothing counted).  The first half of :meth:`__call__`, for
        a caller that evaluates the points itself (:class:`zol2l.loop.Run`)."""
        if not isinstance(points, torch.Tensor):
            raise TypeError(f"oracle points must be a torch.Tensor, got {type(points).__name__}")
        if points.dim() != 3 or points.shape[-1] != self.dim:
            raise ValueError(
                f"oracle points must have shape [B, n, {self.dim}], got {tuple(points.shape)}"
            )
        if points.dtype != self.dtype:
            raise TypeError(f"oracle points have dtype {points.dtype}, expected {self.dtype}")
        if not self.can_afford(points.shape[1]):
            raise BudgetExhausted(
                f"query budget exhausted: {self.queries} of {self.budget} queries used, "
                f"{points.shape[1]} more requested at iteration {self.iteration}"
            )

    def accept(self, points: torch.Tensor, values: object) -> torch.Tensor:
        """Count the queries of the admitted ``points[B, n, d]`` and return their ``values``
        (what ``fun`` returned for them in ``"problems"`` mode) as a checked ``[B, n]`` tensor
        (shape, finiteness per :attr:`nonfinite`).  The second half of :meth:`__call__`."""
        nprob, n, _ = points.shape
        if not isinstance(values, torch.Tensor) or values.dtype != self.dtype or \
                values.device != points.device:
            values = _as_tensor(values, self.dtype, points.device)
        self.queries += n
        self.calls += 1
        return self._check(values, nprob, n)

    def evaluate(self, points: torch.Tensor) -> torch.Tensor:
        """``fun``'s values at ``points[B, n, d]`` as ``[B, n]``, whatever its calling
        convention (:attr:`mode`): an adapter, NOT a query (not counted against the budget,
        no shape, dtype or finiteness checks, grad mode as the caller's); the counted query is
        :meth:`__call__`."""
        nprob, n, d = points.shape
        if self.mode == "problems":
            return _as_tensor(self.fun(points), self.dtype, points.device)
        flat = points.reshape(nprob * n, d)
        if self.mode == "batch":
            return batch_values(self.fun(flat), nprob * n, self.dtype,
                                points.device).reshape(nprob, n)
        rows = flat.detach().cpu().numpy() if self.numpy_inputs else flat
        vals = [_scalar(self.fun(row), i) for i, row in enumerate(rows)]
        return torch.tensor(vals, dtype=self.dtype, device=points.device).reshape(nprob, n)

    def _linearized(self, points: torch.Tensor) -> torch.Tensor:
        """Values of ``points`` whose gradient is that of ``f`` at each problem's first point."""
        with torch.no_grad():
            values = self.evaluate(points.detach()).detach()
        if not points.requires_grad:
            return values
        # the first points are evaluated again, alone, for their gradient: the values keep
        # coming from the one batched call, so that forward differences against them see the
        # same floating-point path (a separately batched f(x) differs by rounding)
        base = points[:, 0].detach().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(self.evaluate(base[:, None, :]).sum(), base)
        return values + ((points - points.detach()) * grad[:, None, :]).sum(dim=2)

    def _check(self, values: torch.Tensor, nprob: int, n: int) -> torch.Tensor:
        if tuple(values.shape) != (nprob, n):
            _bad_shape(values, (nprob, n))
        finite = torch.isfinite(values)
        if bool(finite.all()):
            return values
        if self.nonfinite == "inf":
            return torch.where(finite, values, torch.full_like(values, float("inf")))
        bad = (~finite).nonzero()[0].tolist()
        raise NonFiniteValueError(
            f"the objective returned {values[bad[0], bad[1]].item()} at iteration "
            f"{self.iteration}, problem {bad[0]}, point index {bad[1]} of this batch of {n}; "
            "pass nonfinite='inf' to treat such values as +inf and reject those points"
        )


def batch_values(out: object, count: int, dtype: torch.dtype,
                 device: torch.device) -> torch.Tensor:
    """A vectorized objective's output for ``count`` points as a ``[count]`` tensor (a
    clear error for any other shape)."""
    values = _as_tensor(out, dtype, device)
    if values.shape != (count,):
        _bad_shape(values, (count,))
    return values


def _as_tensor(out: object, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        if not (out.dtype.is_floating_point or out.dtype in (torch.int32, torch.int64)):
            raise TypeError(f"the objective returned a tensor of dtype {out.dtype}")
        return out.to(dtype=dtype, device=device)
    if isinstance(out, np.ndarray | list | tuple | float | int | np.floating):
        arr = np.asarray(out)
        if arr.dtype.kind not in "fiu":
            raise TypeError(f"the objective returned values of dtype {arr.dtype}")
        return torch.as_tensor(arr, device=device).to(dtype)
    raise TypeError(f"the objective returned {type(out).__name__}, expected a tensor or array")


def _scalar(value: object, index: int) -> float:
    if isinstance(value, str | bytes | bool | np.bool_) or (
            isinstance(value, torch.Tensor | np.ndarray) and value.dtype in (torch.bool, bool)):
        raise TypeError(f"the objective must return a number, got {type(value).__name__} "
                        f"{value!r} for point {index}")
    if isinstance(value, torch.Tensor | np.ndarray):
        if int(np.prod(value.shape)) == 1:
            return float(value.reshape(-1)[0])
        raise ValueError(
            f"the objective must return one number per point, got shape "
            f"{tuple(value.shape)} for point {index}"
        )
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"the objective must return a number, got {type(value).__name__} for point {index}"
        ) from exc


def _bad_shape(values: torch.Tensor, expected: tuple[int, ...]) -> torch.Tensor:
    hint = " (squeeze the last dimension: return out[:, 0])" \
        if tuple(values.shape) == (*expected, 1) else ""
    raise ValueError(
        f"the objective returned values of shape {tuple(values.shape)}, expected {expected}: "
        f"one value per queried point{hint}"
    )
