"""zol2l: learned zeroth-order optimization (Ruan et al., ICLR 2020) in PyTorch."""

from zol2l.api import MinimizeResult, minimize
from zol2l.asktell import AskTell
from zol2l.loop import RunResult, run
from zol2l.optimizers import available, make
from zol2l.oracle import BudgetExhausted, NonFiniteValueError, Oracle

__all__ = [
    "AskTell", "BudgetExhausted", "MinimizeResult", "NonFiniteValueError", "Oracle", "RunResult",
    "available", "make", "minimize", "run",
]
__version__ = "0.1.0"
