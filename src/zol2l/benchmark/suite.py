"""The held-out suite of ``zol2l benchmark``: what runs, at which sizes, against whom.

**Held out.**  The general ZO-LSTM is meta-trained on :data:`zol2l.tasks.mixture.
GENERAL_MEMBERS` (random rotated quadratics, least-squares and logistic regression, binary
classification at d <= 200).  This suite never enters meta-training nor the choice of the
scheme's constants (``bench/general_scheme.py`` measures those on the mixture; one safety
fix, the path-length rule growing the step only after accepted steps, was prompted by a first
run of this suite and is stated in ``docs/general.md``):

* every ``bbob`` function (:data:`zol2l.tasks.bbob.BBOB_FUNCTIONS`) on its TEST ids, at each
  dimension, deterministic and with relative evaluation noise :data:`NOISE`;
* binary classification (section 4.2) at d = 300, a dimension never trained on, on its test
  datasets.

The ``bbob`` TRAINING ids serve only the tuned peer (``zo-adam-tuned``: ZO-ADAM's ``delta``
chosen on them by :func:`zol2l.benchmark.runner.tune_delta`).

**Peers** (every one through the same oracle, counted the same way, with the same budget):
the zol2l baselines at their defaults, the tuned ZO-ADAM, CMA-ES (pycma; separable from
d = 500) and nevergrad's NGOpt when the ``peers`` extra is installed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zol2l.optimizers import baselines
from zol2l.tasks.bbob import BBOB_FUNCTIONS

#: relative evaluation noise of the noisy problems (std = NOISE * f(x_0))
NOISE = 1e-3
#: fractions of f(x_0) whose first hit is timed
TARGETS = (1e-1, 1e-2, 1e-4)
#: the learned optimizer under test (with ``pretrained:general``)
SUBJECT = "zo-lstm"
#: the learned optimizer and the hand-designed peers, all at their defaults
DEFAULTS = (SUBJECT, *baselines())
#: peers from other libraries (optional extra)
PEERS = {"cma-es": "peer:cma-es", "ngopt": "peer:ngopt"}
#: optimizers whose run depends on the budget they are told (run once per budget)
BUDGET_AWARE = ("ngopt",)

HELD_OUT = {
    "bbob": "all bbob functions (test ids), every dimension, with and without noise",
    "binary-classification@300": "binary classification at d = 300 (meta-training: d <= 200)",
}


@dataclass(frozen=True)
class BenchProblem:
    """One problem of the suite: a registered task with options, and its label."""

    label: str
    task: str
    options: dict[str, Any] = field(default_factory=dict)
    #: one of the problems on whose training instances ZO-ADAM's delta is tuned (per
    #: dimension and noise level)
    tunes_baseline: bool = False

    @property
    def dim(self) -> int:
        return int(self.options["dim"])

    @property
    def noise(self) -> float:
        return float(self.options.get("noise", 0.0))

    def key(self) -> str:
        """A file-name-safe identity."""
        noise = f"-noise{self.noise:g}" if self.noise else ""
        return f"{self.label}-d{self.dim}{noise}"


@dataclass(frozen=True)
class Size:
    """A size of the suite."""

    functions: tuple[str, ...]
    dims: tuple[int, ...]
    noises: tuple[float, ...]
    budgets: tuple[int, ...]  # queries per run, as multiples of d
    instances: int  # test instances per problem
    binary: bool  # include the held-out binary classification


SIZES = {
    "full": Size(BBOB_FUNCTIONS, (10, 100, 1000), (0.0, NOISE), (100, 1000), 10, True),
    "quick": Size(("sphere", "rosenbrock"), (10,), (0.0, NOISE), (100,), 2, False),
}


def problems(size: Size) -> list[BenchProblem]:
    """The suite's problems at ``size``."""
    out = [BenchProblem(fn, "bbob", {"function": fn, "dim": d, "noise": noise},
                        tunes_baseline=True)
           for d in size.dims for noise in size.noises for fn in size.functions]
    if size.binary:
        out.append(BenchProblem("binary-classification", "binary-classification",
                                {"dim": 300, "batch": 64}))
    return out
