"""ZO-SGD (Ghadimi & Lan, 2013): ``x_{t+1} = x_t - lr * g_t`` with ``g_t`` the eq. 1 estimate."""

from __future__ import annotations

import torch

from zol2l.optimizers.base import State, ZOOptimizer
from zol2l.optimizers.registry import register


@register(label="ZO-SGD", color="tab:blue", role="baseline")
class ZOSGD(ZOOptimizer):
    """Zeroth-order SGD on the Gaussian estimate of eq. 1."""

    name = "zo-sgd"
    default_delta = 4.0

    def update(self, x: torch.Tensor, grad: torch.Tensor, state: State) -> torch.Tensor:
        return x - self.learning_rate(x.shape[1]) * grad
