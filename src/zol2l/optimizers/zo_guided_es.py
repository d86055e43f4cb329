"""ZO-SGD with Guided-ES directions (Maheswaranathan et al., 2018; appendix B of Ruan et al.).

The surrogate gradients are the previous estimate and the previous update; directions have
covariance ``guide_alpha I + (1 - guide_alpha) U U^T`` (``U`` an orthonormal basis of the
surrogates, ``guide_alpha = 0.5``; Guided ES's ``alpha``), each rescaled to the norm of its
plain Gaussian draw.  The first step, which has no surrogates yet, samples standard Gaussian
directions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from zol2l.optimizers.base import State
from zol2l.optimizers.registry import register
from zol2l.optimizers.zo_sgd import ZOSGD


class GuidedSampling:
    """Mixin: Guided-ES directions around the previous estimate and update, which the
    optimizer loop keeps in the state (``prev_grad``, ``prev_update``).

    Args:
        guide_alpha: weight of the isotropic part of the directions' covariance (Guided ES's
            ``alpha``), in ``[0, 1]``.
    """

    def __init__(self, *, guide_alpha: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= guide_alpha <= 1.0:
            raise ValueError(f"guide_alpha must lie in [0, 1], got {guide_alpha}")
        self.guide_alpha = float(guide_alpha)

    def guide(self, state: State) -> torch.Tensor | None:
        """``[B, 2, d]`` surrogate gradients, or ``None`` before the first update."""
        if state.prev_grad is None or state.prev_update is None:
            return None
        return torch.stack([state.prev_grad, state.prev_update], dim=1)


@register(label="Guided-ES", color="tab:olive", role="baseline")
class ZOGuidedES(GuidedSampling, ZOSGD):
    """ZO-SGD whose query directions come from Guided ES."""

    name = "zo-guided-es"
    #: the keyword's earlier name (``alpha`` is ZO-LSTM's update scale), which the seeds of
    #: stored work units hash: see :meth:`identity`
    renamed: ClassVar[dict[str, str]] = {"alpha": "guide_alpha"}

    @classmethod
    def identity(cls, hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
        """As :meth:`ZOOptimizer.identity <zol2l.optimizers.base.ZOOptimizer.identity>`, with
        ``guide_alpha`` hashed under its earlier name ``alpha``: unit seeds and ids are part
        of the stored-results format (``--resume`` finds stored units by id), and the units
        of committed results were seeded with that key.  The earlier key itself is refused,
        naming the new one."""
        hp = dict(hyperparameters)
        for old, new in cls.renamed.items():
            if old in hp:
                raise ValueError(f"{cls.name}: the hyperparameter {old!r} is now called "
                                 f"{new!r}; rename it in the tune/hyperparameter file or "
                                 "--set option")
            if new in hp:
                hp = {old if key == new else key: value for key, value in hp.items()}
        return {"hyperparameters": hp}
