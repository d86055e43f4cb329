"""``zol2l reproduce``: every experiment of Ruan et al. (2020) as one command.

Importing this package registers the experiments (:data:`EXPERIMENTS`, in the paper's order).
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
from zol2l.experiments.reproduce.suite import reproduce

__all__ = ["EXPERIMENTS", "Context", "available_experiments", "experiment", "reproduce",
           "run_experiment"]
