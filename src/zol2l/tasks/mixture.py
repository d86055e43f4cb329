"""``mixture``: a task family that samples, per problem batch, from several families.

Meta-training the general ZO-LSTM draws each run's batch from one member, chosen with the
members' weights from the batch's seed, so a run's rows share a dimension.  A member is a
registered family with options and the ``q`` its runs use (:attr:`Member.q`; the
meta-trainer reads it from the problem).  The mixture's ids are virtual: id ``k`` of a batch
is the member's training (or test) id number ``k mod n``.  :meth:`MixtureFamily.validation`
gives one batch per member, so validation covers every member.

:data:`GENERAL_MEMBERS` is the recipe of ``pretrained:general``.  It never samples the
``bbob`` family of ``zol2l benchmark``, nor binary classification at d = 300 and above.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from zol2l.tasks.base import Problem, Protocol, Sizes, TaskFamily, check_split
from zol2l.tasks.bbob import seeded
from zol2l.tasks.registry import make_task, register_task


@dataclass(frozen=True)
class Member:
    """One member family of a mixture: ``weight``, registered ``task`` and its ``options``,
    and the number of query directions ``q`` of its runs."""

    task: str
    options: dict[str, Any] = field(default_factory=dict)
    weight: float = 1.0
    q: int = 10

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "options": dict(self.options), "weight": self.weight,
                "q": self.q}


def _members() -> tuple[Member, ...]:
    out: list[Member] = []
    for dim, q in ((10, 5), (30, 10), (100, 20), (300, 20), (1000, 50)):
        out.append(Member("rotated-quadratic", {"dim": dim}, 1.0, q))
    for dim in (30, 100):
        out.append(Member("rotated-quadratic", {"dim": dim, "noise": 1e-2}, 0.5, 10))
    # 2 d <= q: the quasi-Newton mode of the scale-free scheme (zol2l.learned.metric)
    out.append(Member("rotated-quadratic", {"dim": 10}, 1.0, 20))
    out.append(Member("rotated-quadratic", {"dim": 5, "noise": 1e-2}, 0.5, 12))
    out.append(Member("regression", {"kind": "least-squares", "dim": 50}, 0.5, 10))
    out.append(Member("regression", {"kind": "least-squares", "dim": 100, "batch": 32},
                      0.5, 20))
    out.append(Member("regression", {"kind": "logistic", "dim": 50, "batch": 64}, 0.5, 10))
    out.append(Member("regression", {"kind": "logistic", "dim": 200}, 0.5, 20))
    for dim, batch in ((20, 16), (50, 64), (100, 64), (200, 128)):
        out.append(Member("binary-classification", {"dim": dim, "batch": batch}, 0.5, 20))
    return tuple(out)


#: the meta-training distribution of ``pretrained:general``
GENERAL_MEMBERS: tuple[Member, ...] = _members()


@register_task
class MixtureFamily(TaskFamily):
    """Batches drawn from weighted member families (see the module docstring).

    Args:
        members: the members (default :data:`GENERAL_MEMBERS`), as :class:`Member` or dicts.
        size: virtual ids per split.
    """

    name = "mixture"
    spans_tasks = True
    protocol = Protocol(steps=200, q=10, full=Sizes(instances=10, trials=1, steps=200))

    def __init__(self, members: Sequence[Member | dict[str, Any]] | None = None,
                 size: int = 90) -> None:
        chosen = GENERAL_MEMBERS if members is None else members
        self.members = tuple(m if isinstance(m, Member) else Member(**m) for m in chosen)
        if not self.members or any(m.weight <= 0 for m in self.members):
            raise ValueError("a mixture needs at least one member, each with a positive weight")
        self.families = [make_task(m.task, **m.options) for m in self.members]
        self.size = int(size)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size,
                "members": [m.to_dict() for m in self.members]}

    def instance_ids(self, split: str) -> list[int]:
        check_split(split)
        return list(range(self.size))

    def pick(self, seed: int) -> int:
        """The member index a batch of seed ``seed`` comes from (weighted, reproducible)."""
        weights = torch.tensor([m.weight for m in self.members], dtype=torch.float64)
        return int(torch.multinomial(weights, 1, generator=seeded(seed, 4441)).item())

    def member_problem(self, index: int, ids: Sequence[int], trials: int = 1,
                       seed: int = 0, split: str = "train") -> Problem:
        """A batch of member ``index``: virtual ids mapped onto the member's ``split`` ids."""
        family = self.families[index]
        pool = family.instance_ids(split)
        problem = family.problem([pool[int(i) % len(pool)] for i in ids], trials=trials,
                                 seed=seed)
        problem.suggested_q = self.members[index].q
        problem.member = index  # type: ignore[attr-defined]
        return problem

    def problem(self, ids: Sequence[int], trials: int = 1, seed: int = 0,
                **options: Any) -> Problem:
        return self.member_problem(self.pick(seed), ids, trials, seed)

    def validation(self, ids: Sequence[int], seed: int) -> list[Problem]:
        """One batch per member on the members' training ids (the meta-trainer's held-out
        validation ids index them)."""
        return [self.member_problem(k, ids, 1, seed) for k in range(len(self.members))]
