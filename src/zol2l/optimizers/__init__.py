"""Zeroth-order optimizers, hand-designed and learned, registered by name."""

# isort: off
# imported in the paper's order, which the registry keeps (figure legends, baselines(), the
# CLI's default optimizers)
from zol2l.optimizers import zo_sgd, zo_signsgd, zo_adam, zo_szvrg  # noqa: F401
from zol2l.optimizers import zo_guided_es, zo_lstm  # noqa: F401
# isort: on
from zol2l.optimizers.base import State, StepOutput, ZOOptimizer
from zol2l.optimizers.registry import available, baselines, get_class, make, register

__all__ = ["State", "StepOutput", "ZOOptimizer", "available", "baselines", "get_class", "make",
           "register"]
