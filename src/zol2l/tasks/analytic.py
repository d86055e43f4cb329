"""Analytic test functions and the problems built from them (meta-training and benchmarks).

Every function here is written on the transformed variable
``z = B P (x - x_opt) / s_x`` (a random permutation ``P``, a random orthogonal ``B`` --
block-diagonal with blocks of at most :data:`FULL_ROTATION` coordinates beyond that size, as
in COCO's large-scale suite -- and a parameter scale ``s_x``) and multiplied by a value scale
``s_f``; each has its minimum 0 at ``x = x_opt``.  The formulas follow the BBOB definitions
of Hansen et al. (COCO, 2009) without their oscillation and asymmetry transforms:

* ``sphere``: ``sum z_i^2``;
* ``ellipsoid``: ``sum 10^(6 i/(d-1)) z_i^2`` (condition number 1e6);
* ``rosenbrock``: ``sum 100 (w_i^2 - w_{i+1})^2 + (w_i - 1)^2``, ``w = max(1, sqrt(d)/8) z + 1``;
* ``rastrigin``: ``10 (d - sum cos 2 pi y_i) + sum y_i^2``, ``y_i = 10^(i/(2(d-1))) z_i``;
* ``different-powers``: ``sqrt(sum |z_i|^(2 + 4 i/(d-1)))``;
* ``sharp-ridge``: ``z_1^2 + 100 sqrt(sum_{i>1} z_i^2)``;
* ``step-ellipsoid``: ``0.1 max(|y_1| / 1e4, sum 10^(2 i/(d-1)) r_i^2)``, ``y = 10^(i/(2(d-1))) z``,
  ``r`` = ``y`` rounded to integers where ``|y| > 0.5``, else to tenths (plateaus);
* ``attractive-sector``: ``(sum (a_i z_i)^2)^0.9`` with ``a_i = 100`` where ``z_i`` has the
  sign of ``x_opt``'s coordinate, else 1;
* ``quadratic``: ``sum c_i z_i^2`` with curvatures ``c`` log-uniform in ``[1, cond]``
  (the meta-training family of random rotated quadratics).

:class:`AnalyticProblem` adds evaluation noise: each queried value gets independent additive
Gaussian noise of standard deviation ``noise * f(x_0)`` (relative to the row's initial value);
the reported loss (:meth:`AnalyticProblem.loss`) is the noiseless value.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from zol2l.tasks.base import Problem

#: dimensions up to this size get a full random rotation; larger ones a block-diagonal one
FULL_ROTATION = 100
#: block size cap of the block-diagonal rotation (COCO's large-scale suite uses 40)
BLOCK = 40


@dataclass
class Transform:
    """The per-row change of variables ``z = B P (x - x_opt) / s_x`` (see the module doc).

    Attributes:
        shift: ``[R, d]`` the optimum ``x_opt``.
        perm: ``[R, d]`` permutation indices.
        blocks: ``[R, k, b, b]`` orthogonal blocks (``k b = d``).
        xscale: ``[R]`` parameter scale ``s_x``.
        fscale: ``[R]`` value scale ``s_f``.
        extra: ``[R, d]`` function-specific coefficients (curvatures, sector signs) or None.
    """

    shift: torch.Tensor
    perm: torch.Tensor
    blocks: torch.Tensor
    xscale: torch.Tensor
    fscale: torch.Tensor
    extra: torch.Tensor | None = None

    def z(self, points: torch.Tensor) -> torch.Tensor:
        """``points[R, n, d] -> z[R, n, d]``."""
        rows, n, d = points.shape
        diff = (points - self.shift[:, None, :].to(points.dtype))
        diff = torch.gather(diff, 2, self.perm[:, None, :].expand(rows, n, d))
        k, b = self.blocks.shape[1], self.blocks.shape[2]
        blocks = self.blocks.to(points.dtype)
        z = torch.einsum("rkij,rnkj->rnki", blocks, diff.reshape(rows, n, k, b))
        return z.reshape(rows, n, d) / self.xscale[:, None, None].to(points.dtype)


def block_size(dim: int) -> int:
    """The rotation's block size: ``dim`` up to :data:`FULL_ROTATION`, else the largest
    divisor of ``dim`` not above :data:`BLOCK`."""
    if dim <= FULL_ROTATION:
        return dim
    return max(b for b in range(1, BLOCK + 1) if dim % b == 0)


def random_rotation(dim: int, gen: torch.Generator) -> torch.Tensor:
    """``[k, b, b]`` Haar-random orthogonal blocks (QR of Gaussian matrices, signs fixed)."""
    b = block_size(dim)
    gauss = torch.randn(dim // b, b, b, generator=gen, dtype=torch.float64)
    q, r = torch.linalg.qr(gauss)
    return q * torch.sign(torch.diagonal(r, dim1=1, dim2=2))[:, None, :]


def _ramp(d: int, like: torch.Tensor) -> torch.Tensor:
    """``i / (d - 1)`` for ``i = 0 .. d-1`` (0 when ``d = 1``)."""
    return torch.arange(d, dtype=like.dtype, device=like.device) / max(d - 1, 1)


def _sphere(z: torch.Tensor, t: Transform) -> torch.Tensor:
    return z.square().sum(-1)


def _ellipsoid(z: torch.Tensor, t: Transform) -> torch.Tensor:
    return (10.0 ** (6.0 * _ramp(z.shape[-1], z)) * z.square()).sum(-1)


def _rosenbrock(z: torch.Tensor, t: Transform) -> torch.Tensor:
    w = max(1.0, math.sqrt(z.shape[-1]) / 8.0) * z + 1.0
    if z.shape[-1] == 1:
        return (w - 1.0).square().sum(-1)
    a, b = w[..., :-1], w[..., 1:]
    return (100.0 * (a.square() - b).square() + (a - 1.0).square()).sum(-1)


def _rastrigin(z: torch.Tensor, t: Transform) -> torch.Tensor:
    y = 10.0 ** (0.5 * _ramp(z.shape[-1], z)) * z
    return 10.0 * (z.shape[-1] - torch.cos(2 * math.pi * y).sum(-1)) + y.square().sum(-1)


def _different_powers(z: torch.Tensor, t: Transform) -> torch.Tensor:
    powers = 2.0 + 4.0 * _ramp(z.shape[-1], z)
    return (z.abs() ** powers).sum(-1).clamp_min(0).sqrt()


def _sharp_ridge(z: torch.Tensor, t: Transform) -> torch.Tensor:
    rest = z[..., 1:].square().sum(-1)
    return z[..., 0].square() + 100.0 * (rest + 1e-300).sqrt()


def _step_ellipsoid(z: torch.Tensor, t: Transform) -> torch.Tensor:
    y = 10.0 ** (0.5 * _ramp(z.shape[-1], z)) * z
    r = torch.where(y.abs() > 0.5, torch.round(y), torch.round(10.0 * y) / 10.0)
    body = (10.0 ** (2.0 * _ramp(z.shape[-1], z)) * r.square()).sum(-1)
    return 0.1 * torch.maximum(y[..., 0].abs() / 1e4, body)


def _attractive_sector(z: torch.Tensor, t: Transform) -> torch.Tensor:
    assert t.extra is not None
    sign = t.extra[:, None, :].to(z.dtype)
    a = torch.where(z * sign > 0, 100.0, 1.0)
    return (a * z).square().sum(-1).clamp_min(0) ** 0.9


def _quadratic(z: torch.Tensor, t: Transform) -> torch.Tensor:
    assert t.extra is not None
    return (t.extra[:, None, :].to(z.dtype) * z.square()).sum(-1)


FUNCTIONS: dict[str, Callable[[torch.Tensor, Transform], torch.Tensor]] = {
    "sphere": _sphere,
    "ellipsoid": _ellipsoid,
    "rosenbrock": _rosenbrock,
    "rastrigin": _rastrigin,
    "different-powers": _different_powers,
    "sharp-ridge": _sharp_ridge,
    "step-ellipsoid": _step_ellipsoid,
    "attractive-sector": _attractive_sector,
    "quadratic": _quadratic,
}


class AnalyticProblem(Problem):
    """A batch of rows of one analytic function (see the module docstring).

    Args:
        function: a name in :data:`FUNCTIONS`.
        transform: the rows' change of variables and scales.
        x0: ``[R, d]`` initial points.
        ids, trials: per-row instance id and trial.
        noise: relative evaluation noise (0: deterministic).
        seed: seeds the evaluation noise.
    """

    reports_loss = True

    def __init__(self, function: str, transform: Transform, x0: torch.Tensor,
                 ids: list[int], trials: list[int], *, noise: float = 0.0,
                 seed: int = 0) -> None:
        if function not in FUNCTIONS:
            raise ValueError(f"unknown function {function!r}; known: {', '.join(FUNCTIONS)}")
        if not (math.isfinite(noise) and noise >= 0):
            raise ValueError(f"noise must be a non-negative number, got {noise!r}")
        self.function, self.transform = function, transform
        self.x0, self.ids, self.trials = x0, ids, trials
        self.noise = float(noise)
        self._gen = torch.Generator().manual_seed(int(seed) % (2**63 - 1))
        with torch.no_grad():
            self.f0 = self.clean(x0[:, None, :])[:, 0].detach()

    def clean(self, points: torch.Tensor) -> torch.Tensor:
        """Noiseless values ``[R, n]`` of ``points[R, n, d]``."""
        fn = FUNCTIONS[self.function]
        return fn(self.transform.z(points), self.transform) * \
            self.transform.fscale[:, None].to(points.dtype)

    def objective(self, points: torch.Tensor) -> torch.Tensor:
        values = self.clean(points)
        if self.noise > 0:
            draw = torch.randn(values.shape, generator=self._gen, dtype=torch.float64)
            values = values + (self.noise * self.f0[:, None] * draw).to(values.dtype)
        return values

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return self.clean(x[:, None, :])[:, 0]


def make_transform(dim: int, gen: torch.Generator, *, xscale: float = 1.0,
                   fscale: float = 1.0, shift_range: float = 4.0,
                   extra: torch.Tensor | None = None) -> Transform:
    """One row's random transform: optimum ``s_x U[-r, r]^d``, random permutation and
    rotation, the given scales."""
    shift = xscale * shift_range * (2.0 * torch.rand(dim, generator=gen, dtype=torch.float64)
                                    - 1.0)
    perm = torch.randperm(dim, generator=gen)
    blocks = random_rotation(dim, gen)
    return Transform(shift[None], perm[None], blocks[None],
                     torch.tensor([float(xscale)], dtype=torch.float64),
                     torch.tensor([float(fscale)], dtype=torch.float64),
                     None if extra is None else extra[None])


def stack_transforms(parts: list[Transform]) -> Transform:
    """Rows of several one-row transforms as one batch."""
    extra = None if parts[0].extra is None else torch.cat([p.extra for p in parts])  # type: ignore
    return Transform(*(torch.cat([getattr(p, k) for p in parts])
                       for k in ("shift", "perm", "blocks", "xscale", "fscale")), extra=extra)
