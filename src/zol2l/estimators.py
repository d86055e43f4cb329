"""Zeroth-order gradient estimators.  Each sends all of its queries in ONE oracle call.

* :func:`gaussian` (:func:`gaussian_queries` as :data:`Queries`): the random-direction
  forward difference of eq. 1 of Ruan et al. (2020),

  .. math:: \\hat\\nabla f(x) = \\frac{1}{\\mu q} \\sum_{i=1}^q [f(x + \\mu u_i) - f(x)]\\, u_i,

  with ``f(x)`` queried once and reused (``q + 1`` queries).  Directions are
  ``u = std * z`` with ``z ~ N(0, I)`` (a diagonal sampling covariance ``diag(std^2)``; the
  QueryRNN of eq. 3 drives ``std``) or, with ``guide``, Guided-ES directions (appendix B):
  covariance ``guide_alpha I + (1 - guide_alpha) U U^T`` (Guided ES's ``alpha``) with ``U`` an
  orthonormal basis of the guiding vectors, each direction rescaled to the norm of its plain
  ``z``.  ``antithetic=True`` gives the
  central variant ``[f(x + mu u) - f(x - mu u)] / (2 mu) u`` (``2q + 1`` queries, ``f(x)`` is
  still returned).
* :func:`orthogonal_queries`: central differences along rows of random orthogonal matrices
  in an adapted basis (the scale-free ZO-LSTM's quasi-Newton mode: exact on quadratics when
  the directions form whole blocks).
* :func:`coordinatewise`: the deterministic central difference of eq. 5,
  ``sum_i [f(x + mu e_i) - f(x - mu e_i)] / (2 mu) e_i`` (``2d`` queries, plus ``f(x)``), and
  :class:`CoordinatewiseFn`, the same as a ``torch.autograd.Function`` so that a loss known only
  by its values can be back-propagated through (meta-training, section 3.2).

Expected quality (used by the tests).  For ``f(x) = 1/2 x^T A x`` the forward difference is
unbiased for the gradient of the smoothed ``f_mu(x) = E f(x + mu z)``, i.e. ``A x`` (the
``mu^2 tr(A)/2`` offset has no gradient).  For a fixed gradient ``g`` and ``q`` standard
Gaussian directions in the limit ``mu -> 0`` the estimate is ``(1/q) sum (z_i . g) z_i``; its
cosine with ``g`` satisfies, for large ``d``,
``E cos ~= sqrt(q / (q + d + 1))`` (numerator ``|g|``, squared norm
``|g|^2 (q + d + 1) / q`` in expectation).

How an optimizer step asks for values.  A step is a generator (:data:`Queries`): it yields
each batch of points ``[B, n, d]`` and is sent their values ``[B, n]``; its return value is
its result.  :func:`drive` runs one against an oracle; :class:`zol2l.loop.Run` yields the
points on to whoever evaluates them (``minimize``'s objective, or :class:`zol2l.AskTell`'s
user), with no thread or coroutine library in between.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TypeVar

import torch

from zol2l.oracle import Oracle

T = TypeVar("T")

#: A computation that asks for values: yields points ``[B, n, d]``, is sent their values
#: ``[B, n]``, returns its result.
Queries = Generator[torch.Tensor, torch.Tensor, T]


def drive(queries: Queries[T], oracle: Callable[[torch.Tensor], torch.Tensor]) -> T:
    """Run ``queries`` to its end, answering each batch of points with ``oracle(points)``."""
    try:
        points = next(queries)
        while True:
            points = queries.send(oracle(points))
    except StopIteration as done:
        return done.value

#: Default smoothing ``mu`` per dtype, chosen by ``bench/bench_mu.py``: the power of ten that
#: minimizes the median relative error of the forward-difference directional derivative on
#: three smooth test functions (d = 100).  Measured: float32 1e-4 (error 1.6e-3; 4.6e-3 at
#: 1e-5 where cancellation takes over, 5.9e-3 at 1e-3 from truncation); float64 1e-8 (error
#: 9.8e-8; 6e-7 at 1e-7).  Half precisions follow the same sqrt(eps) rule.
DEFAULT_MU: dict[torch.dtype, float] = {
    torch.float16: 3e-2,
    torch.bfloat16: 1e-1,
    torch.float32: 1e-4,
    torch.float64: 1e-8,
}


def default_mu(dtype: torch.dtype) -> float:
    """The documented default smoothing parameter for ``dtype``."""
    try:
        return DEFAULT_MU[dtype]
    except KeyError:
        raise TypeError(f"no default mu for dtype {dtype}: pass mu explicitly") from None


@dataclass
class Estimate:
    """A gradient estimate for a batch of problems.

    Attributes:
        grad: ``[B, d]`` estimated gradients.
        fx: ``[B]`` values ``f(x)`` queried at the current points.
        queries: queries per problem spent on this estimate.
        values: ``[B, queries]`` every value of the call (``f(x)``, the directions', then
            those of any ``extra`` points).
    """

    grad: torch.Tensor
    fx: torch.Tensor
    queries: int
    values: torch.Tensor | None = None


def check_mu(mu: float) -> float:
    """Validate a smoothing parameter."""
    if not (isinstance(mu, int | float) and math.isfinite(mu) and mu > 0):
        raise ValueError(f"mu must be a positive finite number, got {mu!r}")
    return float(mu)


def check_q(q: int) -> int:
    """Validate a number of query directions."""
    if isinstance(q, bool) or not isinstance(q, int) or q < 1:
        raise ValueError(f"q (number of query directions) must be an integer >= 1, got {q!r}")
    return q


def gaussian_noise(shape: tuple[int, ...], generator: torch.Generator, dtype: torch.dtype,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """Standard normal draws.  Drawn in float32 (5x faster than float64 on CPU) and cast: the
    directions need no more than 24 bits of mantissa."""
    draw_dtype = torch.float32 if dtype == torch.float64 else dtype
    return torch.randn(shape, generator=generator, dtype=draw_dtype, device=device).to(dtype)


def sample_directions(
    shape: tuple[int, int, int],
    generator: torch.Generator,
    *,
    dtype: torch.dtype,
    device: torch.device | str = "cpu",
    std: torch.Tensor | None = None,
    guide: torch.Tensor | None = None,
    guide_alpha: float = 0.5,
) -> torch.Tensor:
    """Draw ``[B, q, d]`` query directions.

    ``std`` (``[B, d]`` or ``[d]``) scales each coordinate (``u = std * z``, covariance
    ``diag(std^2)``); gradients flow through it (the reparameterization trick).  ``guide``
    (``[B, k, d]``) gives the Guided-ES subspace:
    ``u = sqrt(guide_alpha) z + sqrt(1 - guide_alpha) U z_k``, rescaled to ``|z|``.
    Rank-deficient guides (e.g. colinear vectors) drop their null columns.
    """
    nprob, q, d = shape
    z = gaussian_noise(shape, generator, dtype, device)
    if guide is not None:
        if guide.dim() != 3 or guide.shape[0] != nprob or guide.shape[2] != d:
            raise ValueError(f"guide must have shape [{nprob}, k, {d}], got {tuple(guide.shape)}")
        if not 0.0 <= guide_alpha <= 1.0:
            raise ValueError(f"guide_alpha must lie in [0, 1], got {guide_alpha}")
        k = guide.shape[1]
        zk = gaussian_noise((nprob, q, k), generator, dtype, device)
        basis, r = torch.linalg.qr(guide.detach().to(dtype).transpose(1, 2))  # [B, d, k]
        diag = r.diagonal(dim1=1, dim2=2).abs()  # [B, k]
        scale = diag.amax(dim=1, keepdim=True).clamp_min(torch.finfo(dtype).tiny)
        basis = basis * (diag > 1e-6 * scale).to(dtype)[:, None, :]
        iso, sub = math.sqrt(guide_alpha), math.sqrt(1.0 - guide_alpha)
        u = iso * z + sub * zk @ basis.transpose(1, 2)
        u = u * (z.norm(dim=2, keepdim=True) / u.norm(dim=2, keepdim=True).clamp_min(1e-30))
        z = u
    if std is not None:
        if std.shape not in ((nprob, d), (d,)):
            raise ValueError(f"std must have shape [{nprob}, {d}] or [{d}], got {tuple(std.shape)}")
        z = z * (std if std.dim() == 1 else std[:, None, :])
    return z


def directional_average(diffs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``mean_i diffs[:, i] * u[:, i]`` over the valid (finite) differences of each problem.

    Non-finite differences (from values the oracle mapped to ``+inf``) are rejected: they get
    weight zero and the average runs over the remaining directions.
    """
    valid = torch.isfinite(diffs)
    if bool(valid.all()):
        return torch.einsum("bq,bqd->bd", diffs, u) / diffs.shape[1]
    count = valid.sum(dim=1, keepdim=True).clamp_min(1).to(diffs.dtype)
    safe = torch.where(valid, diffs, torch.zeros_like(diffs))
    return torch.einsum("bq,bqd->bd", safe, u) / count


def gaussian_queries(
    x: torch.Tensor,
    q: int,
    mu: float | torch.Tensor,
    generator: torch.Generator,
    *,
    std: torch.Tensor | None = None,
    guide: torch.Tensor | None = None,
    guide_alpha: float = 0.5,
    antithetic: bool = False,
    extra: torch.Tensor | None = None,
) -> Queries[Estimate]:
    """Random-direction gradient estimate (eq. 1; central variant with ``antithetic``), as
    :data:`Queries`: one batch of points, all of the step's queries.

    Args:
        x: ``[B, d]`` current points.
        q: number of directions.
        mu: smoothing parameter, or a ``[B]`` tensor of one per problem.
        generator: source of the random directions.
        std, guide, guide_alpha: the sampling distribution (see :func:`sample_directions`).
        antithetic: use ``x +- mu u`` (``2q + 1`` queries) instead of ``x + mu u`` (``q + 1``).
        extra: ``[B, k, d]`` further points to query in the same oracle call (their values
            end ``Estimate.values``; the scale-free ZO-LSTM's repeated points).
    """
    q = check_q(q)
    mu_u, mu_d = _smoothing(mu, x)
    u = sample_directions(
        (x.shape[0], q, x.shape[1]), generator, dtype=x.dtype, device=x.device,
        std=std, guide=guide, guide_alpha=guide_alpha,
    )
    return (yield from _differences(x, u, mu_u * u, mu_d, antithetic, extra))


def _smoothing(mu: float | torch.Tensor, x: torch.Tensor
               ) -> tuple[float | torch.Tensor, float | torch.Tensor]:
    """``mu`` checked and shaped for the directions ``[B, q, d]`` and the differences
    ``[B, q]``: a float, or a ``[B]`` tensor of one per problem (the scale-free ZO-LSTM)."""
    if isinstance(mu, torch.Tensor):
        if mu.shape != (x.shape[0],) or not bool(torch.isfinite(mu).all() & (mu > 0).all()):
            raise ValueError(f"a per-problem mu must be [{x.shape[0]}] positive finite values")
        return mu.detach().to(x.dtype)[:, None, None], mu.detach().to(x.dtype)[:, None]
    mu = check_mu(mu)
    return mu, mu


def _differences(x: torch.Tensor, u: torch.Tensor, step: torch.Tensor,
                 mu_d: float | torch.Tensor, antithetic: bool, extra: torch.Tensor | None
                 ) -> Queries[Estimate]:
    """Query ``x`` and ``x + step`` (and ``x - step`` with ``antithetic``), then ``extra``, in
    ONE batch; return eq. 1's average of the (forward or central) differences times ``u``."""
    q = u.shape[1]
    parts = [x[:, None, :], x[:, None, :] + step]
    if antithetic:
        parts.append(x[:, None, :] - step)
    if extra is not None:
        parts.append(extra.to(x.dtype))
    values = yield torch.cat(parts, dim=1)
    fx = values[:, 0]
    if antithetic:
        diffs = (values[:, 1 : q + 1] - values[:, q + 1 : 2 * q + 1]) / (2.0 * mu_d)
    else:
        diffs = (values[:, 1 : q + 1] - fx[:, None]) / mu_d
    return Estimate(directional_average(diffs, u), fx, values.shape[1], values)


def orthogonal_directions(nprob: int, n: int, d: int, generator: torch.Generator,
                          dtype: torch.dtype, device: torch.device | str = "cpu"
                          ) -> torch.Tensor:
    """``[B, n, d]`` directions of norm ``sqrt(d)``: the rows of random orthogonal matrices,
    one block of ``d`` after another (``E[u u^T] = I`` as for Gaussian directions; a full
    block spans every coordinate exactly once)."""
    blocks = []
    for start in range(0, n, d):
        q, r = torch.linalg.qr(gaussian_noise((nprob, d, d), generator, dtype, device))
        q = q * torch.sign(r.diagonal(dim1=1, dim2=2))[:, None, :]  # Haar-distributed
        blocks.append(q.transpose(1, 2)[:, : min(d, n - start)])
    return torch.cat(blocks, dim=1) * math.sqrt(d)


def orthogonal_queries(
    x: torch.Tensor,
    pairs: int,
    mu: torch.Tensor,
    generator: torch.Generator,
    basis: torch.Tensor,
    *,
    extra: torch.Tensor | None = None,
) -> Queries[Estimate]:
    """Eq. 1 with central differences along orthogonal directions in the coordinates ``y``
    of ``x + A y``, as :data:`Queries` (``2 pairs + 1`` points, then ``extra``, in one call).

    The points are ``x +- mu A u`` with ``u`` from :func:`orthogonal_directions` and the
    estimate is of ``A^T grad f``, the gradient in ``y``.  When ``pairs`` is a multiple of
    ``d`` it is exact on quadratics whatever ``mu`` (every coordinate of ``y`` is differenced
    once per block and the curvature cancels): the scale-free ZO-LSTM's quasi-Newton metric
    (:mod:`zol2l.learned.metric`) takes secants of it.

    Args:
        x: ``[B, d]`` current points.
        pairs: number of directions (each queried at ``+mu`` and ``-mu``).
        mu: ``[B]`` smoothing per problem.
        generator: source of the directions.
        basis: ``[B, d, d]`` the matrix ``A`` of each problem.
        extra: ``[B, k, d]`` further points queried in the same call.
    """
    pairs = check_q(pairs)
    mu_u, mu_d = _smoothing(mu, x)
    u = orthogonal_directions(x.shape[0], pairs, x.shape[1], generator, x.dtype, x.device)
    step = mu_u * torch.einsum("bij,bqj->bqi", basis.to(x.dtype), u)
    return (yield from _differences(x, u, step, mu_d, True, extra))


def gaussian(oracle: Oracle, x: torch.Tensor, q: int, mu: float | torch.Tensor,
             generator: torch.Generator, **options: object) -> Estimate:
    """:func:`gaussian_queries` answered by ``oracle`` (the counted objective); ``options``:
    its keywords."""
    return drive(gaussian_queries(x, q, mu, generator, **options), oracle)  # type: ignore[arg-type]


def coordinatewise(oracle: Oracle, x: torch.Tensor, mu: float) -> Estimate:
    """The coordinatewise central difference of eq. 5 (``2d + 1`` queries in one call)."""
    mu = check_mu(mu)
    nprob, d = x.shape
    eye = torch.eye(d, dtype=x.dtype, device=x.device) * mu
    points = torch.cat([x[:, None, :], x[:, None, :] + eye, x[:, None, :] - eye], dim=1)
    values = oracle(points)
    grad = (values[:, 1 : d + 1] - values[:, d + 1 :]) / (2.0 * mu)
    grad = torch.where(torch.isfinite(grad), grad, torch.zeros_like(grad))
    return Estimate(grad, values[:, 0], 2 * d + 1)


class CoordinatewiseFn(torch.autograd.Function):
    """``f(x)`` whose backward pass is the eq. 5 estimate instead of autograd.

    ``CoordinatewiseFn.apply(x, fun, mu)`` with ``x`` of shape ``[B, d]`` and ``fun`` mapping
    ``[B, n, d] -> [B, n]`` returns ``f(x)`` of shape ``[B]``; the forward pass queries the
    ``2d + 1`` points in one call and keeps the estimate for the backward pass.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, fun: Callable | Oracle, mu: float) -> torch.Tensor:  # type: ignore[override]
        oracle = fun if isinstance(fun, Oracle) else Oracle(
            fun, x.shape[1], mode="problems", dtype=x.dtype
        )
        est = coordinatewise(oracle, x.detach(), mu)
        ctx.save_for_backward(est.grad)
        return est.fx

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return grad_out[:, None] * grad, None, None


def zo_value(x: torch.Tensor, fun: Callable | Oracle, mu: float) -> torch.Tensor:
    """``f(x)`` for ``x[B, d]``, differentiable through the eq. 5 estimator."""
    return CoordinatewiseFn.apply(x, fun, mu)
