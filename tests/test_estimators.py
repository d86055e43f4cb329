"""Numerical checks of the estimators against autograd and against theory."""

from __future__ import annotations

import math

import pytest
import torch

from zol2l.estimators import (
    CoordinatewiseFn,
    coordinatewise,
    default_mu,
    drive,
    gaussian,
    orthogonal_directions,
    orthogonal_queries,
    sample_directions,
    zo_value,
)
from zol2l.oracle import Oracle


def quad_oracle(a: torch.Tensor) -> Oracle:
    return Oracle(lambda p: 0.5 * (a * p.square()).sum(-1), a.shape[0], mode="problems",
                  dtype=torch.float64)


def test_gaussian_mean_is_smoothed_gradient_within_its_standard_error() -> None:
    # f = 1/2 x^T A x: the forward difference is unbiased for grad f_mu(x) = A x, for ANY mu
    # (the mu/2 u^T A u u term has zero mean); a large mu makes that term matter.
    d, q, reps, mu = 8, 50, 400, 0.5
    g = torch.Generator().manual_seed(1)
    a = torch.linspace(1.0, 3.0, d, dtype=torch.float64)
    x = torch.randn(1, d, generator=g, dtype=torch.float64).expand(reps, d).contiguous()
    est = gaussian(quad_oracle(a), x, q, mu, g)
    mean = est.grad.mean(0)
    stderr = est.grad.std(0) / math.sqrt(reps)
    z = (mean - a * x[0]) / stderr
    assert z.abs().max() < 4.5, z  # d = 8 coordinates, each ~N(0, 1)
    assert est.queries == q + 1


def test_gaussian_cosine_matches_theory_d784_q20() -> None:
    # E cos(g_hat, g) ~= sqrt(q / (q + d + 1)) (derivation in zol2l.estimators' docstring)
    d, q, reps = 784, 20, 300
    g = torch.Generator().manual_seed(2)
    a = 1.0 + torch.rand(d, generator=g, dtype=torch.float64)
    x = torch.randn(reps, d, generator=g, dtype=torch.float64)
    est = gaussian(quad_oracle(a), x, q, 1e-6, g)
    cos = torch.nn.functional.cosine_similarity(est.grad, a * x, dim=1)
    theory = math.sqrt(q / (q + d + 1))
    assert abs(float(cos.mean()) - theory) < 0.03 * theory + 3 * float(cos.std()) / reps**0.5
    # and it is clearly worse with fewer directions: the formula is not vacuous
    est5 = gaussian(quad_oracle(a), x, 5, 1e-6, g)
    cos5 = torch.nn.functional.cosine_similarity(est5.grad, a * x, dim=1).mean()
    assert abs(float(cos5) - math.sqrt(5 / (5 + d + 1))) < 0.05 * math.sqrt(5 / 790) + 0.01


def test_one_oracle_call_per_estimate_and_query_counts() -> None:
    a = torch.ones(5, dtype=torch.float64)
    oracle = quad_oracle(a)
    x = torch.zeros(3, 5, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    gaussian(oracle, x, 7, 1e-3, g)
    assert (oracle.calls, oracle.queries) == (1, 8)
    gaussian(oracle, x, 7, 1e-3, g, antithetic=True)
    assert (oracle.calls, oracle.queries) == (2, 8 + 15)
    coordinatewise(oracle, x, 1e-3)
    assert (oracle.calls, oracle.queries) == (3, 8 + 15 + 11)


def test_antithetic_is_exact_on_quadratic_directional_derivative() -> None:
    a = torch.linspace(1, 2, 6, dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 6, generator=g, dtype=torch.float64)
    g1 = torch.Generator().manual_seed(4)
    est = gaussian(quad_oracle(a), x, 4, 0.7, g1, antithetic=True)
    u = sample_directions((2, 4, 6), torch.Generator().manual_seed(4), dtype=torch.float64)
    expected = torch.einsum("bq,bqd->bd", (u * (a * x)[:, None, :]).sum(-1), u) / 4
    torch.testing.assert_close(est.grad, expected)


def test_coordinatewise_matches_autograd_float64() -> None:
    g = torch.Generator().manual_seed(5)
    w = torch.randn(12, 12, generator=g, dtype=torch.float64)

    def f(p: torch.Tensor) -> torch.Tensor:
        return torch.log1p(torch.tanh(p @ w).square().sum(-1)) + torch.sin(p).sum(-1)

    x = torch.randn(3, 12, generator=g, dtype=torch.float64, requires_grad=True)
    (auto,) = torch.autograd.grad(f(x[:, None, :]).sum(), x)
    oracle = Oracle(f, 12, mode="problems", dtype=torch.float64)
    est = coordinatewise(oracle, x.detach(), default_mu(torch.float64) * 10)
    rel = (est.grad - auto).norm() / auto.norm()
    assert rel < 1e-6, rel
    # through the autograd.Function
    x2 = x.detach().clone().requires_grad_(True)
    zo_value(x2, f, 1e-5).sum().backward()
    assert ((x2.grad - auto).norm() / auto.norm()) < 1e-6


def test_coordinatewise_function_gradcheck() -> None:
    w = torch.randn(5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(6))

    def f(p: torch.Tensor) -> torch.Tensor:
        return torch.tanh(p @ w).sum(-1) + 0.3 * p.square().sum(-1)

    x = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: CoordinatewiseFn.apply(v, f, 1e-6), (x,),
                                    eps=1e-6, atol=1e-5, rtol=1e-4)


def test_diagonal_std_scales_directions_and_carries_gradients() -> None:
    std = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64, requires_grad=True)
    u = sample_directions((1, 4000, 3), torch.Generator().manual_seed(7), dtype=torch.float64,
                          std=std)
    emp = u.detach().std(dim=1)[0]
    assert emp[0] == 0 and abs(float(emp[1]) - 1) < 0.05 and abs(float(emp[2]) - 3) < 0.15
    u.square().sum().backward()
    assert std.grad is not None and bool((std.grad[1:] > 0).all())


def test_guided_directions_covariance_and_norm() -> None:
    d, k, n = 20, 2, 20000
    g = torch.Generator().manual_seed(8)
    guide = torch.randn(1, k, d, generator=g, dtype=torch.float64)
    u = sample_directions((1, n, d), g, dtype=torch.float64, guide=guide, guide_alpha=0.5)[0]
    basis, _ = torch.linalg.qr(guide[0].T)
    # variance along the guiding subspace ~ alpha + (1 - alpha) = 1 * (norm rescale) vs alpha
    along = (u @ basis).var(0).mean()
    ortho = torch.randn(d, 1, generator=g, dtype=torch.float64)
    ortho = ortho - basis @ (basis.T @ ortho)
    ortho = ortho / ortho.norm()
    across = (u @ ortho).var()
    assert float(along / across) > 1.6  # guide_alpha=0.5 makes the subspace ~2x as likely
    # colinear guides (ZO-SGD: update = -lr * estimate) do not produce NaN
    colinear = torch.stack([guide[:, 0], -3 * guide[:, 0]], dim=1)
    u2 = sample_directions((1, 10, d), g, dtype=torch.float64, guide=colinear)
    assert bool(torch.isfinite(u2).all())


@pytest.mark.parametrize("bad", [0, -1, 2.5])
def test_q_validation(bad: object) -> None:
    with pytest.raises(ValueError, match="q"):
        gaussian(quad_oracle(torch.ones(2, dtype=torch.float64)),
                 torch.zeros(1, 2, dtype=torch.float64), bad, 1e-3,  # type: ignore[arg-type]
                 torch.Generator())


@pytest.mark.parametrize("bad", [0.0, -1e-3, float("nan")])
def test_mu_validation(bad: float) -> None:
    with pytest.raises(ValueError, match="mu"):
        gaussian(quad_oracle(torch.ones(2, dtype=torch.float64)),
                 torch.zeros(1, 2, dtype=torch.float64), 3, bad, torch.Generator())


def test_default_mu_per_dtype() -> None:
    assert default_mu(torch.float32) > default_mu(torch.float64)
    with pytest.raises(TypeError):
        default_mu(torch.int64)


def test_orthogonal_directions_are_whole_blocks_of_norm_sqrt_d() -> None:
    u = orthogonal_directions(3, 11, 4, torch.Generator().manual_seed(0), torch.float64)
    assert u.shape == (3, 11, 4)
    torch.testing.assert_close(u.norm(dim=2), torch.full((3, 11), 2.0, dtype=torch.float64))
    for start in (0, 4):  # two whole blocks, then a partial one
        block = u[:, start : start + 4]
        gram = block @ block.transpose(1, 2)
        torch.testing.assert_close(gram, 4.0 * torch.eye(4, dtype=torch.float64).expand(3, -1, -1))


def test_orthogonal_central_estimate_is_the_gradient_in_the_basis_on_quadratics() -> None:
    """Whole blocks of central differences: exactly ``A^T grad f`` whatever ``mu``."""
    g = torch.Generator().manual_seed(1)
    d = 5
    m = torch.randn(d, d, generator=g, dtype=torch.float64)
    hess = m @ m.T + torch.eye(d, dtype=torch.float64)
    basis = torch.randn(2, d, d, generator=g, dtype=torch.float64)
    x = torch.randn(2, d, generator=g, dtype=torch.float64, requires_grad=True)

    def f(p: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.einsum("...i,ij,...j->...", p, hess, p) + p.sum(-1)

    grad = torch.autograd.grad(f(x).sum(), x)[0]
    oracle = Oracle(f, d, mode="problems", dtype=torch.float64)
    mu = torch.tensor([0.3, 2.0], dtype=torch.float64)
    est = drive(orthogonal_queries(x.detach(), 2 * d, mu, g, basis,
                                   extra=x.detach()[:, None]), oracle)
    torch.testing.assert_close(est.grad, torch.einsum("bji,bj->bi", basis, grad))
    assert (oracle.calls, oracle.queries) == (1, 4 * d + 2)
    torch.testing.assert_close(est.values[:, -1], est.fx)
