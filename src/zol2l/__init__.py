"""zol2l: learned zeroth-order optimization (Ruan et al., ICLR 2020) in PyTorch.

The names below are imported on first use (PEP 562), so that ``zol2l --help`` and
``import zol2l.cli`` do not import torch.
"""

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zol2l.api import MinimizeResult, minimize
    from zol2l.asktell import AskTell
    from zol2l.loop import RunResult, run
    from zol2l.optimizers import available, make
    from zol2l.oracle import BudgetExhausted, NonFiniteValueError, Oracle
    from zol2l.zoattack import ZOAttack

#: public name -> the module that defines it
_HOMES = {
    "AskTell": "zol2l.asktell", "BudgetExhausted": "zol2l.oracle",
    "MinimizeResult": "zol2l.api", "NonFiniteValueError": "zol2l.oracle",
    "Oracle": "zol2l.oracle", "RunResult": "zol2l.loop", "ZOAttack": "zol2l.zoattack",
    "available": "zol2l.optimizers", "make": "zol2l.optimizers", "minimize": "zol2l.api",
    "run": "zol2l.loop",
}
__all__ = [
    "AskTell", "BudgetExhausted", "MinimizeResult", "NonFiniteValueError", "Oracle", "RunResult",
    "ZOAttack", "available", "make", "minimize", "run",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """Import a public name from its module on first use."""
    if name not in _HOMES:
        raise AttributeError(f"module 'zol2l' has no attribute {name!r}")
    value = getattr(import_module(_HOMES[name]), name)
    globals()[name] = value
    return value
