"""Zeroth-order optimizers, hand-designed and learned, registered by name."""

from zol2l.optimizers import (  # noqa: F401
    zo_adam,
    zo_guided_es,
    zo_lstm,
    zo_sgd,
    zo_signsgd,
    zo_szvrg,
)
from zol2l.optimizers.base import StepOutput, ZOOptimizer
from zol2l.optimizers.registry import available, get_class, make, register

__all__ = ["StepOutput", "ZOOptimizer", "available", "get_class", "make", "register"]
