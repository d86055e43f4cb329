"""Stochastic zeroth-order binary classification (section 4.2 of Ruan et al., 2020).

Each instance is a dataset: ``theta* ~ N(0, I_d)``, ``x_i ~ N(0, I_d)``,
``y_i = 1[theta*^T x_i > 0]`` for ``n = 2000`` samples, and the non-convex least-squares loss

    ``f(theta) = 1/n sum_i (y_i - sigmoid(theta^T x_i))^2``.

The oracle sees a minibatch of ``b = 64`` samples drawn (with replacement) per iteration
and shared by all the queries of that iteration; the reported loss uses all ``n`` samples.
100 datasets are generated from the family seed: ids 0-89 train, 90-99 test.  The initial
point of an instance is ``theta_0 ~ N(0, I_d / d)`` (margins of order one), seeded by the
instance id, the same for every trial and every optimizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from zol2l.seeding import seeded_generator
from zol2l.tasks.base import Problem, Protocol, SplitFamily, TaskOption
from zol2l.tasks.registry import register_task


def _gen(*keys: int) -> torch.Generator:
    return seeded_generator(*keys, salt=17, modulus=2**63 - 1)


class BinaryProblem(Problem):
    """A batch of binary-classification instances (rows share nothing but the dimension)."""

    reports_loss = True

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, x0: torch.Tensor,
                 ids: list[int], trials: list[int], batch: int, seed: int) -> None:
        self.features, self.labels, self.x0 = features, labels, x0
        self.ids, self.trials, self.batch = ids, trials, batch
        self._gen = _gen(seed, 7919, *trials, *ids)
        self._xb, self._yb = features, labels

    def next_iteration(self, t: int) -> None:
        nrow, n, _ = self.features.shape
        if self.batch >= n:
            self._xb, self._yb = self.features, self.labels
            return
        idx = torch.randint(0, n, (nrow, self.batch), generator=self._gen)
        self._xb = torch.gather(
            self.features, 1, idx[:, :, None].expand(-1, -1, self.features.shape[2])
        )
        self._yb = torch.gather(self.labels, 1, idx)

    @staticmethod
    def _loss(points: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        logits = torch.bmm(points, xs.transpose(1, 2))  # [B, n, b]
        return (ys[:, None, :] - torch.sigmoid(logits)).square().mean(dim=2)

    def objective(self, points: torch.Tensor) -> torch.Tensor:
        return self._loss(points, self._xb.to(points.dtype), self._yb.to(points.dtype))

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        return self._loss(x[:, None, :], self.features.to(dtype), self.labels.to(dtype))[:, 0]


@register_task
class BinaryClassification(SplitFamily):
    """The family of section 4.2 (``d``, ``n``, ``b`` and the number of datasets are settable)."""

    name = "binary-classification"
    cli_options = (TaskOption("dim", int, 100, "dimension d"),
                   TaskOption("batch", int, 64, "minibatch size b of each iteration's queries",
                              flag="--minibatch"))
    #: the paper's protocol (section 4.2): 100 test instances, 10 trials, 500 steps, q = 20
    protocol = Protocol(steps=500, q=20, log_loss=True, title="(c) binary classification")

    def __init__(self, dim: int = 100, n: int = 2000, batch: int = 64, datasets: int = 100,
                 train: int = 90, seed: int = 0, dtype: torch.dtype = torch.float64) -> None:
        if min(dim, n, batch, datasets) < 1 or not 0 < train < datasets:
            raise ValueError("dim, n, batch, datasets must be >= 1 and 0 < train < datasets")
        self.dim, self.n, self.batch = dim, n, batch
        #: one instance per dataset
        self.instances, self.train, self.seed, self.dtype = datasets, train, seed, dtype

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "dim": self.dim, "n": self.n, "batch": self.batch,
                "datasets": self.instances, "train": self.train, "seed": self.seed}

    def dataset(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(features [n, d], labels [n], theta_0 [d])`` of instance ``i``."""
        g = _gen(self.seed, self.check_id(i))
        theta_star = torch.randn(self.dim, generator=g, dtype=torch.float64)
        feats = torch.randn((self.n, self.dim), generator=g, dtype=torch.float64)
        labels = (feats @ theta_star > 0).to(torch.float64)
        theta0 = torch.randn(self.dim, generator=g, dtype=torch.float64) / self.dim**0.5
        return feats.to(self.dtype), labels.to(self.dtype), theta0.to(self.dtype)

    def problem(self, ids: Sequence[int], trials: int = 1, seed: int = 0,
                **options: Any) -> BinaryProblem:
        if trials < 1 or not len(ids):
            raise ValueError("need at least one instance id and one trial")
        data = [self.dataset(int(i)) for i in ids]
        rows = [(k, t) for k in range(len(ids)) for t in range(trials)]
        feats = torch.stack([data[k][0] for k, _ in rows])
        labels = torch.stack([data[k][1] for k, _ in rows])
        x0 = torch.stack([data[k][2] for k, _ in rows])
        return BinaryProblem(feats, labels, x0, [int(ids[k]) for k, _ in rows],
                             [t for _, t in rows], self.batch, seed)
