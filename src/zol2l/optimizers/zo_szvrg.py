"""ZO-SZVR-G (Liu, Cheng, Hsieh & Tao, 2018), as used in appendix C.4 of Ruan et al.

SVRG with random-direction estimates.  Iterations are split into epochs of length ``m``.  At
the start of an epoch the snapshot ``x~ = x_t`` gets a large estimate ``g~`` with ``q0``
directions (``q0 + 1`` queries) and the step is ``x_{t+1} = x_t - lr g~``.  Each inner step
draws ``q`` directions ``u`` and forms the control-variate estimate

    ``v_t = g(x_t; u) - g(x~; u) + g~``,

both estimates sharing directions and minibatch, in one oracle call of ``2(q + 1)`` queries;
then ``x_{t+1} = x_t - lr v_t``.  The snapshot uses the iteration's minibatch like any other
query (the oracle exposes no larger batch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from zol2l.estimators import (
    Estimate,
    Queries,
    directional_average,
    gaussian_queries,
    sample_directions,
)
from zol2l.optimizers.base import State, ZOOptimizer
from zol2l.optimizers.registry import register


@dataclass(kw_only=True)
class SZVRGState(State):
    """ZO-SZVR-G's state: the epoch's snapshot ``x~`` and its estimate ``g~`` (``[B, d]``,
    ``None`` before the first snapshot step)."""

    snapshot: torch.Tensor | None = None
    snapshot_grad: torch.Tensor | None = None


@register(label="ZO-SZVR-G", color="tab:brown", role="baseline")
class ZOSZVRG(ZOOptimizer):
    """Zeroth-order stochastic variance-reduced gradient (ZO-SZVR-G)."""

    name = "zo-szvrg"
    default_delta = 4.0

    def __init__(self, *, epoch: int = 10, q0: int = 100, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if epoch < 1 or q0 < 1:
            raise ValueError(f"epoch and q0 must be >= 1, got epoch={epoch}, q0={q0}")
        self.epoch, self.q0 = int(epoch), int(q0)

    def init_state(self, x: torch.Tensor) -> SZVRGState:
        return SZVRGState()

    def queries_at(self, t: int) -> int:
        return self.q0 + 1 if t % self.epoch == 0 else 2 * (self.q + 1)

    def estimate(
        self, x: torch.Tensor, state: SZVRGState, gen: torch.Generator,  # type: ignore[override]
        extras: dict[str, torch.Tensor],
    ) -> Queries[Estimate]:
        mu = self.smoothing(x.dtype)
        if state.t % self.epoch == 0:
            snap = yield from gaussian_queries(x, self.q0, mu, gen)
            state.snapshot, state.snapshot_grad = x.clone(), snap.grad
            return snap
        nprob, d = x.shape
        u = sample_directions((nprob, self.q, d), gen, dtype=x.dtype, device=x.device)
        snap, snap_grad = state.snapshot, state.snapshot_grad
        assert snap is not None and snap_grad is not None
        points = torch.cat(
            [x[:, None], x[:, None] + mu * u, snap[:, None], snap[:, None] + mu * u], dim=1
        )
        values = yield points
        here, there = values[:, : self.q + 1], values[:, self.q + 1 :]
        g_here = directional_average((here[:, 1:] - here[:, :1]) / mu, u)
        g_there = directional_average((there[:, 1:] - there[:, :1]) / mu, u)
        return Estimate(g_here - g_there + snap_grad, here[:, 0], values.shape[1])

    def update(self, x: torch.Tensor, grad: torch.Tensor, state: State) -> torch.Tensor:
        return x - self.learning_rate(x.shape[1]) * grad
