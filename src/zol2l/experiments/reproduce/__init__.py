"""``zol2l reproduce``: every experiment of Ruan et al. (2020) as one command.

Importing this package registers the experiments (:data:`EXPERIMENTS`, in the paper's order).
Most are specs (:class:`Spec`, :mod:`zol2l.experiments.reproduce.spec`): the runs they plan go
through the one harness, then their analysis, figures and claim checks.
"""

from zol2l.experiments.reproduce import (  # noqa: F401  (imported to register experiments)
    ablations,
    attack_analysis,
    attack_curves,
    attack_tradeoffs,
    binary,
    generalization,
    quality_bar,
)
from zol2l.experiments.reproduce.base import (
    EXPERIMENTS,
    Context,
    available_experiments,
    experiment,
    run_experiment,
)
from zol2l.experiments.reproduce.spec import Check, Plan, Report, Run, Spec, register, run_spec
from zol2l.experiments.reproduce.suite import reproduce

__all__ = ["EXPERIMENTS", "Check", "Context", "Plan", "Report", "Run", "Spec",
           "available_experiments", "experiment", "register", "reproduce", "run_experiment",
           "run_spec"]
