"""``bbob``: seeded instances of the COCO/BBOB-style functions of :mod:`zol2l.tasks.analytic`.

This family is HELD OUT of meta-training: :mod:`zol2l.tasks.mixture` never samples it, and
``zol2l benchmark`` evaluates on its ``"test"`` ids only (the ``"train"`` ids serve the
benchmark's tuned baseline).  Instance ``i`` of a function: a random permutation and
rotation, the optimum ``x_opt = s_x U[-4, 4]^d``, parameter scale ``s_x = 10^U[-1, 1]``,
value scale ``s_f = 10^U[-2, 2]`` and the start ``x_0 = 0`` (as COCO's origin start);
optionally relative evaluation noise (:class:`~zol2l.tasks.analytic.AnalyticProblem`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from zol2l.seeding import seeded_generator
from zol2l.tasks.analytic import FUNCTIONS, AnalyticProblem, make_transform, stack_transforms
from zol2l.tasks.base import Protocol, Sizes, SplitFamily, TaskOption
from zol2l.tasks.registry import register_task

#: the held-out functions of the benchmark (``quadratic`` is the training family's)
BBOB_FUNCTIONS = tuple(f for f in FUNCTIONS if f != "quadratic")


def seeded(*keys: int) -> torch.Generator:
    """The generator of the held-out families' instances, from integer keys."""
    return seeded_generator(*keys, salt=101)


@register_task
class BBOBFamily(SplitFamily):
    """One BBOB-style function at one dimension and noise level.

    Args:
        function: a name in :data:`BBOB_FUNCTIONS`.
        dim: dimension.
        noise: relative evaluation noise (0: deterministic).
        instances, train: ids ``0 .. train-1`` are the training split, the rest test.
        seed: the family seed (rotations, optima, scales).
    """

    name = "bbob"
    cli_options = (TaskOption("function", str, "sphere", "the BBOB-style function",
                          choices=BBOB_FUNCTIONS),
               TaskOption("dim", int, 10, "dimension d"),
               TaskOption("noise", float, 0.0, "relative evaluation noise (0: deterministic)"))
    protocol = Protocol(steps=200, q=20, full=Sizes(instances=10, trials=1, steps=200))

    def __init__(self, function: str = "sphere", dim: int = 10, noise: float = 0.0,
                 instances: int = 15, train: int = 5, seed: int = 0) -> None:
        if function not in BBOB_FUNCTIONS:
            raise ValueError(f"unknown bbob function {function!r}; known: "
                             f"{', '.join(BBOB_FUNCTIONS)}")
        if int(dim) < 2 or not 0 < int(train) < int(instances) or float(noise) < 0:
            raise ValueError("need dim >= 2, 0 < train < instances and noise >= 0")
        self.function, self.dim, self.noise = function, int(dim), float(noise)
        self.instances, self.train, self.seed = int(instances), int(train), int(seed)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "function": self.function, "dim": self.dim,
                "noise": self.noise, "instances": self.instances, "train": self.train,
                "seed": self.seed}

    def problem(self, ids: Sequence[int], trials: int = 1, seed: int = 0,
                **options: Any) -> AnalyticProblem:
        rows = self.rows(ids, trials)
        parts = []
        for i, _ in rows:
            gen = seeded(self.seed, BBOB_FUNCTIONS.index(self.function), self.dim, i)
            xscale = 10.0 ** (2.0 * float(torch.rand((), generator=gen)) - 1.0)
            fscale = 10.0 ** (4.0 * float(torch.rand((), generator=gen)) - 2.0)
            sign = torch.sign(torch.randn(self.dim, generator=gen, dtype=torch.float64))
            parts.append(make_transform(self.dim, gen, xscale=xscale, fscale=fscale,
                                        extra=sign))
        x0 = torch.zeros(len(rows), self.dim, dtype=torch.float64)
        return AnalyticProblem(self.function, stack_transforms(parts), x0,
                               [i for i, _ in rows], [t for _, t in rows], noise=self.noise,
                               seed=int(seed) * 7919 + sum(i for i, _ in rows))
