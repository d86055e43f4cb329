"""ZO-SGD with Guided-ES directions (Maheswaranathan et al., 2018; appendix B of Ruan et al.).

The surrogate gradients are the previous estimate and the previous update; directions have
covariance ``alpha I + (1 - alpha) U U^T`` (``U`` an orthonormal basis of the surrogates,
``alpha = 0.5``), each rescaled to the norm of its plain Gaussian draw.  The first step, which
has no surrogates yet, samples standard Gaussian directions.
"""

from __future__ import annotations

from typing import Any

import torch

from zol2l.optimizers.registry import register
from zol2l.optimizers.zo_sgd import ZOSGD


class GuidedSampling:
    """Mixin: Guided-ES directions around the previous estimate and update, which the
    optimizer loop keeps in ``state`` (``prev_grad``, ``prev_update``)."""

    def guide(self, state: dict[str, Any]) -> torch.Tensor | None:
        """``[B, 2, d]`` surrogate gradients, or ``None`` before the first update."""
        if "prev_grad" not in state:
            return None
        return torch.stack([state["prev_grad"], state["prev_update"]], dim=1)


@register
class ZOGuidedES(GuidedSampling, ZOSGD):
    """ZO-SGD whose query directions come from Guided ES."""

    name = "zo-guided-es"

    def __init__(self, *, alpha: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
        self.guide_alpha = float(alpha)

    def hyperparameters(self) -> dict[str, Any]:
        return {**super().hyperparameters(), "alpha": self.guide_alpha}
