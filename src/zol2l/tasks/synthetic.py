"""Meta-training families of the general ZO-LSTM (never used by ``zol2l benchmark``).

* ``rotated-quadratic``: ``s_f sum c_i z_i^2`` on ``z`` of :mod:`zol2l.tasks.analytic`, the
  curvatures log-uniform in ``[1, cond]``, ``cond = 10^U[0, 4]``, value scale
  ``s_f = 10^U[-4, 4]``, parameter scale ``s_x = 10^U[-1, 1]``, start ``x_0 = 0``; with
  ``noise > 0``, relative evaluation noise of that level.
* ``regression``: least squares ``s_f mean_i (a_i^T x - b_i)^2`` or logistic regression
  ``s_f mean_i log(1 + exp(-y_i a_i^T x))`` on ``n = 4 d`` Gaussian samples with a planted
  ``x* = s_x N(0, I)``; with ``batch`` each iteration's queries share a minibatch drawn with
  replacement (the reported loss uses all samples), as in section 4.2.

Ids 0-89 are train, 90-99 test, as for the other synthetic families.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from zol2l.tasks.analytic import AnalyticProblem, make_transform, stack_transforms
from zol2l.tasks.base import Problem, Protocol, Sizes, SplitFamily, TaskOption
from zol2l.tasks.bbob import seeded
from zol2l.tasks.registry import register_task


@register_task
class RotatedQuadraticFamily(SplitFamily):
    """Random rotated quadratics with random conditioning and scales (module docstring)."""

    name = "rotated-quadratic"
    cli_options = (TaskOption("dim", int, 20, "dimension d"),
               TaskOption("noise", float, 0.0, "relative evaluation noise (0: deterministic)"))
    protocol = Protocol(steps=200, q=10, full=Sizes(instances=10, trials=1, steps=200))

    def __init__(self, dim: int = 20, noise: float = 0.0, seed: int = 0) -> None:
        if int(dim) < 2 or not (math.isfinite(noise) and noise >= 0):
            raise ValueError("need dim >= 2 and noise >= 0")
        self.dim, self.noise, self.seed = int(dim), float(noise), int(seed)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "dim": self.dim, "noise": self.noise, "seed": self.seed}

    def problem(self, ids: Sequence[int], trials: int = 1, seed: int = 0,
                **options: Any) -> AnalyticProblem:
        rows = self.rows(ids, trials)
        parts = []
        for i, _ in rows:
            gen = seeded(self.seed, 31, self.dim, i)
            cond = 10.0 ** (4.0 * float(torch.rand((), generator=gen)))
            curv = cond ** torch.rand(self.dim, generator=gen, dtype=torch.float64)
            xscale = 10.0 ** (2.0 * float(torch.rand((), generator=gen)) - 1.0)
            fscale = 10.0 ** (8.0 * float(torch.rand((), generator=gen)) - 4.0)
            parts.append(make_transform(self.dim, gen, xscale=xscale, fscale=fscale,
                                        extra=curv))
        x0 = torch.zeros(len(rows), self.dim, dtype=torch.float64)
        return AnalyticProblem("quadratic", stack_transforms(parts), x0,
                               [i for i, _ in rows], [t for _, t in rows], noise=self.noise,
                               seed=int(seed) + 17)


class RegressionProblem(Problem):
    """Least-squares or logistic regression rows with optional minibatches."""

    reports_loss = True

    def __init__(self, kind: str, features: torch.Tensor, targets: torch.Tensor,
                 fscale: torch.Tensor, ids: list[int], trials: list[int],
                 batch: int | None, seed: int) -> None:
        self.kind, self.features, self.targets, self.fscale = kind, features, targets, fscale
        self.x0 = torch.zeros(features.shape[0], features.shape[2], dtype=features.dtype)
        self.ids, self.trials, self.batch = ids, trials, batch
        self._gen = torch.Generator().manual_seed(int(seed) % (2**62))
        self._xb, self._yb = features, targets

    def next_iteration(self, t: int) -> None:
        if self.batch is None:
            return
        rows, n, d = self.features.shape
        idx = torch.randint(0, n, (rows, self.batch), generator=self._gen)
        self._xb = torch.gather(self.features, 1, idx[:, :, None].expand(-1, -1, d))
        self._yb = torch.gather(self.targets, 1, idx)

    def _value(self, points: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        pred = torch.bmm(points, xs.transpose(1, 2).to(points.dtype))  # [B, n, b]
        ys = ys[:, None, :].to(points.dtype)
        per = (pred - ys).square() if self.kind == "least-squares" else \
            torch.nn.functional.softplus(-ys * pred)
        return per.mean(dim=2) * self.fscale[:, None].to(points.dtype)

    def objective(self, points: torch.Tensor) -> torch.Tensor:
        return self._value(points, self._xb, self._yb)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return self._value(x[:, None, :], self.features, self.targets)[:, 0]


@register_task
class RegressionFamily(SplitFamily):
    """Least-squares / logistic regression instances (module docstring)."""

    name = "regression"
    cli_options = (TaskOption("kind", str, "least-squares", "the regression loss",
                          choices=("least-squares", "logistic")),
               TaskOption("dim", int, 20, "dimension d"),
               TaskOption("batch", int, None, "minibatch size b of each iteration's queries",
                          flag="--minibatch"))
    protocol = Protocol(steps=200, q=10, full=Sizes(instances=10, trials=1, steps=200))

    def __init__(self, kind: str = "least-squares", dim: int = 20, batch: int | None = None,
                 seed: int = 0) -> None:
        if kind not in ("least-squares", "logistic"):
            raise ValueError(f"kind must be 'least-squares' or 'logistic', got {kind!r}")
        if int(dim) < 1 or (batch is not None and int(batch) < 1):
            raise ValueError("need dim >= 1 and batch >= 1")
        self.kind, self.dim, self.seed = kind, int(dim), int(seed)
        self.batch = None if batch is None else int(batch)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "dim": self.dim, "batch": self.batch,
                "seed": self.seed}

    def problem(self, ids: Sequence[int], trials: int = 1, seed: int = 0,
                **options: Any) -> RegressionProblem:
        rows = self.rows(ids, trials)
        feats, targets, scales = [], [], []
        n = 4 * self.dim
        for i, _ in rows:
            gen = seeded(self.seed, 37 + (self.kind == "logistic"), self.dim, i)
            xscale = 10.0 ** (2.0 * float(torch.rand((), generator=gen)) - 1.0)
            fscale = 10.0 ** (4.0 * float(torch.rand((), generator=gen)) - 2.0)
            a = torch.randn(n, self.dim, generator=gen, dtype=torch.float64) / xscale
            a = a / math.sqrt(self.dim)
            planted = xscale * torch.randn(self.dim, generator=gen, dtype=torch.float64)
            signal = a @ planted
            if self.kind == "least-squares":
                y = signal + 0.1 * torch.randn(n, generator=gen, dtype=torch.float64)
            else:
                flip = torch.rand(n, generator=gen, dtype=torch.float64) < 0.05
                y = torch.where(flip, -torch.sign(signal), torch.sign(signal))
            feats.append(a)
            targets.append(y)
            scales.append(fscale)
        return RegressionProblem(self.kind, torch.stack(feats), torch.stack(targets),
                                 torch.tensor(scales, dtype=torch.float64),
                                 [i for i, _ in rows], [t for _, t in rows], self.batch,
                                 seed=int(seed) * 31 + 5)
