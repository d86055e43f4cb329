"""The oracle: batching modes, exact counting, budget, non-finite values, shape checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zol2l.oracle import BudgetExhausted, NonFiniteValueError, Oracle


def pts(b: int, n: int, d: int) -> torch.Tensor:
    return torch.arange(b * n * d, dtype=torch.float64).reshape(b, n, d) / 10


def test_modes_agree_and_count() -> None:
    batch = Oracle(lambda x: x.square().sum(-1), 3, mode="batch")
    point_np = Oracle(lambda x: float(np.sum(x**2)), 3, mode="point", numpy_inputs=True)
    problems = Oracle(lambda p: p.square().sum(-1), 3, mode="problems")
    p = pts(2, 4, 3)
    out = [o(p) for o in (batch, point_np, problems)]
    for o in out[1:]:
        torch.testing.assert_close(o, out[0])
    assert [o.queries for o in (batch, point_np, problems)] == [4, 4, 4]
    assert all(o.calls == 1 for o in (batch, point_np, problems))


def test_point_mode_calls_once_per_point() -> None:
    calls = []
    oracle = Oracle(lambda x: calls.append(1) or 0.0, 2, mode="point")
    oracle(pts(3, 5, 2))
    assert len(calls) == 15 and oracle.queries == 5


def test_budget_is_never_exceeded() -> None:
    oracle = Oracle(lambda x: x.sum(-1), 2, budget=10)
    oracle(pts(1, 6, 2))
    assert oracle.remaining == 4 and oracle.can_afford(4) and not oracle.can_afford(5)
    with pytest.raises(BudgetExhausted, match="budget"):
        oracle(pts(1, 5, 2))
    assert oracle.queries == 6  # the refused call evaluated nothing


def test_admit_then_accept_is_a_call_evaluated_elsewhere() -> None:
    """The loop's split of a call (zol2l.loop.Run): admit checks and refuses before anything
    is evaluated, accept counts and checks the values the caller computed."""
    fun = lambda p: p.square().sum(-1)  # noqa: E731
    split, whole = Oracle(fun, 2, mode="problems", budget=10), \
        Oracle(fun, 2, mode="problems", budget=10)
    p = pts(2, 6, 2)
    split.admit(p)
    assert split.queries == 0
    assert torch.equal(split.accept(p, fun(p).numpy()), whole(p))  # arrays are converted
    assert split.queries == whole.queries == 6 and split.calls == 1
    with pytest.raises(BudgetExhausted):
        split.admit(pts(2, 5, 2))
    with pytest.raises(ValueError, match=r"shape \[B, n, 2\]"):
        split.admit(pts(2, 5, 3))
    assert split.queries == 6
    with pytest.raises(ValueError, match="expected \\(2, 4\\)"):
        split.accept(pts(2, 4, 2), torch.zeros(2, 3, dtype=torch.float64))


def test_nan_names_iteration_and_point() -> None:
    def f(x: torch.Tensor) -> torch.Tensor:
        out = x.sum(-1)
        out[3] = float("nan")
        return out

    oracle = Oracle(f, 2)
    oracle.iteration = 17
    with pytest.raises(NonFiniteValueError, match=r"iteration 17, problem 0, point index 3"):
        oracle(pts(1, 5, 2))
    lenient = Oracle(f, 2, nonfinite="inf")
    assert torch.isinf(lenient(pts(1, 5, 2))[0, 3])


def test_shape_and_dtype_errors() -> None:
    oracle = Oracle(lambda x: x.sum(-1), 3)
    with pytest.raises(ValueError, match=r"\[B, n, 3\]"):
        oracle(torch.zeros(4, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="dtype"):
        oracle(torch.zeros(1, 4, 3, dtype=torch.float32))
    wrong = Oracle(lambda x: x, 3)
    with pytest.raises(ValueError, match="one value per queried point"):
        wrong(pts(1, 2, 3))
    vector = Oracle(lambda x: np.array([1.0, 2.0]), 3, mode="point", numpy_inputs=True)
    with pytest.raises(ValueError, match="one number per point"):
        vector(pts(1, 1, 3))
    with pytest.raises(TypeError, match="callable"):
        Oracle(3, 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="budget"):
        Oracle(lambda x: x, 2, budget=0)


def test_values_are_detached_by_default() -> None:
    w = torch.ones(3, dtype=torch.float64, requires_grad=True)
    oracle = Oracle(lambda x: x @ w, 3)
    assert not oracle(pts(1, 2, 3)).requires_grad
    diff = Oracle(lambda x: x @ w, 3, differentiable=True)
    assert diff(pts(1, 2, 3)).requires_grad


def test_linearized_values_are_exact_and_their_gradient_is_the_first_points() -> None:
    scale = torch.tensor([1.0, 3.0, 0.5, 2.0], dtype=torch.float64)

    def fun(points: torch.Tensor) -> torch.Tensor:  # [B, n, d] -> [B, n], nonlinear
        return (scale * points.square()).sum(2) + points[..., 0] ** 3

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, generator=g, dtype=torch.float64)
    std = torch.rand(2, 4, generator=g, dtype=torch.float64).add(0.5).requires_grad_(True)
    z = torch.randn(2, 5, 4, generator=g, dtype=torch.float64)
    mu = 1e-5
    exact, linear = (Oracle(fun, 4, mode="problems", differentiable=mode)
                     for mode in (True, "linearized"))

    def estimate(oracle: Oracle) -> tuple[torch.Tensor, torch.Tensor]:
        u = std[:, None, :] * z
        values = oracle(torch.cat([x[:, None, :], x[:, None, :] + mu * u], dim=1))
        est = ((values[:, 1:] - values[:, :1]) / mu)[..., None].mul(u).mean(1)
        (grad,) = torch.autograd.grad(est.square().sum(), std)
        return values, grad

    v_exact, g_exact = estimate(exact)
    v_linear, g_linear = estimate(linear)
    assert torch.equal(v_linear.detach(), v_exact.detach())
    assert linear.queries == exact.queries == 6  # the base-point gradient is not a query
    torch.testing.assert_close(g_linear, g_exact, rtol=1e-3, atol=1e-6)  # O(mu) apart
    # every point's gradient is grad f at the problem's first point
    points = (x[:, None, :] + torch.zeros(2, 3, 4, dtype=torch.float64)).requires_grad_(True)
    points.data[:, 1:] += 0.3
    (grad,) = torch.autograd.grad(linear(points).sum(), points)
    base = x.clone().requires_grad_(True)
    (expect,) = torch.autograd.grad(fun(base[:, None, :]).sum(), base)
    torch.testing.assert_close(grad, expect[:, None, :].expand(2, 3, 4))
    with pytest.raises(ValueError, match="differentiable"):
        Oracle(fun, 4, differentiable="yes")  # type: ignore[arg-type]
