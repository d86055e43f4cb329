"""Meta-training of the learned ZO optimizer (sections 3.2-3.3 of Ruan et al., 2020)."""

from zol2l.meta.config import MetaConfig
from zol2l.meta.objective import sigma_penalty, window_loss
from zol2l.meta.trainer import MetaTrainer

__all__ = ["MetaConfig", "MetaTrainer", "sigma_penalty", "window_loss"]
