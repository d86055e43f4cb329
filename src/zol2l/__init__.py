"""zol2l: learned zeroth-order optimization (Ruan et al., ICLR 2020) in PyTorch."""

from zol2l.api import MinimizeResult, minimize
from zol2l.asktell import AskTell
from zol2l.loop import RunResult, run
from zol2l.optimizers import available, make
from zol2l.oracle import BudgetExhausted, NonFiniteValueError, Oracle

__all__ = [
    "AskTell", "BudgetExhausted", "MinimizeResult", "NonFiniteValueError", "Oracle", "RunResult",
    "ZOAttack", "available", "make", "minimize", "run",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """``zol2l.ZOAttack`` is imported on first use (it pulls in the attack harness)."""
    if name == "ZOAttack":
        from zol2l.zoattack import ZOAttack

        return ZOAttack
    raise AttributeError(f"module 'zol2l' has no attribute {name!r}")
