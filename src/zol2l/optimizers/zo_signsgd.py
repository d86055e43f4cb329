"""ZO-signSGD (Liu et al., 2019): ``x_{t+1} = x_t - lr * sign(g_t)``."""

from __future__ import annotations

import torch

from zol2l.optimizers.base import State, ZOOptimizer
from zol2l.optimizers.registry import register


@register(label="ZO-signSGD", color="tab:orange", role="baseline")
class ZOSignSGD(ZOOptimizer):
    """Zeroth-order signSGD: the sign of the eq. 1 estimate."""

    name = "zo-signsgd"
    default_delta = 8.0

    def update(self, x: torch.Tensor, grad: torch.Tensor, state: State) -> torch.Tensor:
        return x - self.learning_rate(x.shape[1]) * torch.sign(grad)
