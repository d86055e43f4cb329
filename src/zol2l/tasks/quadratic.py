"""A family of random convex quadratics, the cheap task of the meta-training tests.

Instance ``i``: ``f(x) = 1/2 sum_j a_j (x_j - c_j)^2`` with ``a_j = s U[1, cond]``, ``s``
log-uniform in ``[1 / spread, spread]`` (default ``spread = 1``: ``s = 1``; a spread makes
one fixed learning rate too small for some instances and too large for others),
``c ~ N(0, I_d)`` and the initial point ``x_0 = c + N(0, I_d)`` (so ``x_0 - c`` has the law
of the seeded quadratic of ``tests/conftest.py``, whose instances are not in this family).
Deterministic (no minibatch); the reported loss is ``f`` itself (minimum 0).  Ids 0-89 are
train, 90-99 test; all drawn from the family seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from zol2l.tasks.base import Problem, Protocol, Sizes, SplitFamily, TaskOption
from zol2l.tasks.registry import register_task


class QuadraticProblem(Problem):
    """A batch of quadratics (one row per instance and trial)."""

    reports_loss = True

    def __init__(self, scales: torch.Tensor, centers: torch.Tensor, x0: torch.Tensor,
                 ids: list[int], trials: list[int]) -> None:
        self.scales, self.centers, self.x0 = scales, centers, x0
        self.ids, self.trials = ids, trials

    def objective(self, points: torch.Tensor) -> torch.Tensor:
        diff = points - self.centers[:, None, :].to(points.dtype)
        return 0.5 * (self.scales[:, None, :].to(points.dtype) * diff.square()).sum(dim=2)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return self.objective(x[:, None, :])[:, 0]


@register_task
class QuadraticFamily(SplitFamily):
    """Random diagonal quadratics of dimension ``dim`` with curvatures in ``[1, cond]``."""

    name = "quadratic"
    cli_options = (TaskOption("dim", int, 10, "dimension d"),
                   TaskOption("cond", float, 4.0, "curvatures drawn from U[1, cond]"),
                   TaskOption("spread", float, 1.0, "per-instance curvature scale drawn "
                              "log-uniformly from [1 / spread, spread]"))
    protocol = Protocol(steps=200, q=10, full=Sizes(instances=10, trials=1, steps=200))

    def __init__(self, dim: int = 10, cond: float = 4.0, spread: float = 1.0,
                 instances: int = 100, train: int = 90, seed: int = 0,
                 dtype: torch.dtype = torch.float64) -> None:
        if dim < 1 or cond < 1 or spread < 1 or not 0 < train < instances:
            raise ValueError("need dim >= 1, cond >= 1, spread >= 1 and 0 < train < instances")
        self.dim, self.cond, self.instances, self.train = dim, float(cond), instances, train
        self.spread = float(spread)
        self.seed, self.dtype = seed, dtype

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "dim": self.dim, "cond": self.cond, "spread": self.spread,
                "instances": self.instances, "train": self.train, "seed": self.seed}

    def instance(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(scales, center, x0)`` of instance ``i``."""
        self.check_id(i)
        g = torch.Generator().manual_seed(1_000_003 * (self.seed + 1) + 7919 * i + 13)
        scales = 1.0 + (self.cond - 1.0) * torch.rand(self.dim, generator=g, dtype=torch.float64)
        center = torch.randn(self.dim, generator=g, dtype=torch.float64)
        x0 = center + torch.randn(self.dim, generator=g, dtype=torch.float64)
        if self.spread > 1.0:  # drawn after the rest: spread = 1 keeps the same instances
            u = torch.rand((), generator=g, dtype=torch.float64)
            scales = scales * self.spread ** (2.0 * u - 1.0)
        return scales.to(self.dtype), center.to(self.dtype), x0.to(self.dtype)

    def problem(self, ids: Sequence[int], trials: int = 1, seed: int = 0,
                **options: Any) -> QuadraticProblem:
        rows = self.rows(ids, trials)
        parts = [self.instance(i) for i, _ in rows]
        return QuadraticProblem(*(torch.stack([p[k] for p in parts]) for k in range(3)),
                                [i for i, _ in rows], [t for _, t in rows])
