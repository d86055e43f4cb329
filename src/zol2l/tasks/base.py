"""Task families and problem batches.

A :class:`TaskFamily` (e.g. binary classification, a black-box attack) hands out problem
instances by integer id, split into ``"train"`` ids (meta-training, tuning) and ``"test"`` ids
(evaluation).  :meth:`TaskFamily.problem` returns a :class:`Problem`: ``B = len(ids) * trials``
instances stacked as rows (instance-major), which the optimization loop advances together.
The meta-trainer and the evaluator use this same interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch


@dataclass(frozen=True)
class TaskOption:
    """A command-line option of a task family: ``flag`` (default ``--NAME``, underscores as
    dashes) sets the constructor keyword ``name``.  ``default`` is the constructor's (what
    runs when the flag is not given); ``type`` parses the flag's text."""

    name: str
    type: Callable[[str], Any]
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    flag: str = ""

    @property
    def option_string(self) -> str:
        """The command-line flag, e.g. ``--max-batch``."""
        return self.flag or "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class Sizes:
    """How many ``instances``, ``trials`` per instance and ``steps`` per run."""

    instances: int
    trials: int
    steps: int


@dataclass(frozen=True)
class Protocol:
    """The run sizes of a task family.

    Attributes:
        steps, q: iterations and directions per estimate (eq. 1) of a run that gives none
            (``zol2l evaluate``/``tune``/``attack``; the paper's, for the paper's tasks).
        full: the sizes of an experiment at full size (the paper's protocol, section 4);
            ``quick``: those of its small version (``--quick``: tests, smoke checks).
        tune_instances: training instances on which ``zol2l reproduce`` tunes ``alpha``
            (section 4.3); ``None``: the whole train split.  ``quick_tune_instances`` at
            quick size.
        halve_capped_tune_steps: tune ``alpha`` with half the steps when a size cap is set.
        caps: the ``reproduce`` size caps (``Context`` fields) that bound ``full.instances``,
            the first one set wins.
        log_loss: loss plots on a log scale.
        title: a short panel title ("(a) MNIST attack").
    """

    steps: int = 500
    q: int = 20
    full: Sizes = Sizes(instances=100, trials=10, steps=500)
    quick: Sizes = Sizes(instances=2, trials=1, steps=20)
    tune_instances: int | None = None
    quick_tune_instances: int = 2
    halve_capped_tune_steps: bool = False
    caps: tuple[str, ...] = ("instances",)
    log_loss: bool = False
    title: str = ""


class Problem(ABC):
    """A batch of ``B`` optimization problems of dimension ``dim``.

    Attributes:
        x0: ``[B, dim]`` initial points.
        ids: ``B`` instance ids (one per row).
        trials: ``B`` trial indices (one per row).
    """

    x0: torch.Tensor
    ids: list[int]
    trials: list[int]
    #: whether :meth:`loss` reports a loss of its own (else the loop reports queried values)
    reports_loss: ClassVar[bool] = False
    #: the ``q`` its runs use in meta-training, when the batch says (a mixture member's)
    suggested_q: int | None = None

    @property
    def dim(self) -> int:
        """Dimension of one problem."""
        return int(self.x0.shape[1])

    @property
    def size(self) -> int:
        """Number of rows ``B``."""
        return int(self.x0.shape[0])

    @abstractmethod
    def objective(self, points: torch.Tensor) -> torch.Tensor:
        """The black box: ``points[B, n, dim] -> [B, n]`` (only via an oracle)."""

    def next_iteration(self, t: int) -> None:
        """Called by the loop before iteration ``t``: stochastic tasks draw their minibatch."""
        return None

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The feasible point nearest ``x[B, dim]``: the loop projects every iterate with it
        (the identity; a problem with bounds clips to its box)."""
        return x

    def loss(self, x: torch.Tensor) -> torch.Tensor | None:
        """The reported loss of ``x[B, dim]`` (not counted as queries), or ``None`` to report
        the values the optimizer queried."""
        return None

    def differentiable_objective(self, points: torch.Tensor) -> torch.Tensor:
        """The objective with its autograd graph (meta-training with ``--grad autograd``)."""
        return self.objective(points)

    def metrics(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-row task metrics of ``x`` (e.g. attack success), recorded by the loop."""
        return {}

    def state(self) -> dict[str, Any]:
        """What a finished run left in the problem that :meth:`TaskFamily.summary` or saved
        examples need: tensors with one entry per row (merged across work units by
        concatenation) and other values that describe row 0 (taken from the first unit)."""
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        """Put a problem over the same rows back into the :meth:`state` its runs ended in."""
        return None


class TaskFamily(ABC):
    """A family of problem instances."""

    name: ClassVar[str] = ""

    @abstractmethod
    def instance_ids(self, split: str) -> list[int]:
        """The instance ids of ``split`` (``"train"`` or ``"test"``)."""

    @abstractmethod
    def problem(self, ids: Sequence[int], trials: int = 1, seed: int = 0,
                **options: Any) -> Problem:
        """A batch of ``len(ids) * trials`` rows, seeded by ``seed`` and each row's trial.
        ``options`` are task-specific (e.g. ``snapshot_every`` for attacks)."""

    #: whether an optimizer meta-trained on this family is meant for any task (a mixture of
    #: families): its checkpoints raise no task-mismatch warning
    spans_tasks: ClassVar[bool] = False
    #: the family's command-line options (``zol2l evaluate``/``tune``/``attack``/``meta-train``)
    cli_options: ClassVar[tuple[TaskOption, ...]] = ()
    #: its run sizes
    protocol: ClassVar[Protocol] = Protocol()

    @property
    def default_q(self) -> int:
        """Directions per estimate of a run that gives no ``q`` (:attr:`protocol`)."""
        return self.protocol.q

    @property
    def default_steps(self) -> int:
        """Iterations of a run that gives no ``steps`` (:attr:`protocol`)."""
        return self.protocol.steps

    def describe(self) -> dict[str, Any]:
        """JSON-serializable settings of the family."""
        return {"name": self.name}

    def summary(self, result: Any, problem: Problem) -> dict[str, Any]:
        """Task-specific fields added to an optimizer's block of ``results.json``."""
        return {}


def check_split(split: str) -> str:
    """Validate a split name."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return split


class SplitFamily(TaskFamily):
    """A family of ``instances`` seeded ids: ``0 .. train - 1`` train, the rest test; the rows
    of a batch are instance-major (:meth:`rows`)."""

    instances: int = 100
    train: int = 90

    def instance_ids(self, split: str) -> list[int]:
        check_split(split)
        ids = range(self.instances)
        return list(ids[: self.train] if split == "train" else ids[self.train:])

    def check_id(self, i: int) -> int:
        """``i`` if it is an instance id of the family, else a ``ValueError``."""
        if not 0 <= i < self.instances:
            raise ValueError(f"instance id {i} out of range [0, {self.instances})")
        return i

    def rows(self, ids: Sequence[int], trials: int) -> list[tuple[int, int]]:
        """``(instance id, trial)`` of every row, checked."""
        if trials < 1 or not len(ids):
            raise ValueError("need at least one instance id and one trial")
        return [(self.check_id(int(i)), t) for i in ids for t in range(trials)]
