"""ZO-ADAM (Chen et al., 2017): Adam moments on the eq. 1 estimate.

``m_t = b1 m_{t-1} + (1 - b1) g_t``, ``v_t = b2 v_{t-1} + (1 - b2) g_t^2``,
``x_{t+1} = x_t - lr * m_hat_t / (sqrt(v_hat_t) + eps)`` with the bias corrections
``m_hat_t = m_t / (1 - b1^t)`` and ``v_hat_t = v_t / (1 - b2^t)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from zol2l.optimizers.base import State, ZOOptimizer
from zol2l.optimizers.registry import register


@dataclass(kw_only=True)
class AdamState(State):
    """ZO-ADAM's state: the moments ``m_t`` and ``v_t`` (``[B, d]``)."""

    m: torch.Tensor
    v: torch.Tensor


@register(label="ZO-ADAM", color="tab:green", role="baseline")
class ZOAdam(ZOOptimizer):
    """Zeroth-order Adam (``eps``, a numerical guard, is not among the recorded
    hyperparameters)."""

    name = "zo-adam"
    default_delta = 8.0
    unrecorded = ("eps",)

    def __init__(
        self, *, beta1: float = 0.9, beta2: float = 0.996, eps: float = 1e-8, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        for label, beta in (("beta1", beta1), ("beta2", beta2)):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"{label} must lie in [0, 1), got {beta}")
        if not eps >= 0:
            raise ValueError(f"eps must be non-negative, got {eps}")
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)

    def init_state(self, x: torch.Tensor) -> AdamState:
        return AdamState(m=torch.zeros_like(x), v=torch.zeros_like(x))

    def update(self, x: torch.Tensor, grad: torch.Tensor, state: AdamState) -> torch.Tensor:  # type: ignore[override]
        t = state.t + 1
        m = state.m.mul_(self.beta1).add_(grad, alpha=1.0 - self.beta1)
        v = state.v.mul_(self.beta2).addcmul_(grad, grad, value=1.0 - self.beta2)
        m_hat = m / (1.0 - self.beta1**t)
        v_hat = v / (1.0 - self.beta2**t)
        return x - self.learning_rate(x.shape[1]) * m_hat / (v_hat.sqrt() + self.eps)
