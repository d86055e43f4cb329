"""The quasi-Newton metric of the scale-free ZO-LSTM (zol2l.learned.metric)."""

from __future__ import annotations

import torch

from zol2l.learned.metric import Metric


def _quadratic(d: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return q @ torch.diag(torch.logspace(0, 4, d, dtype=torch.float64)) @ q.T


def _feed(metric: Metric, x: torch.Tensor, hess: torch.Tensor, usable: torch.Tensor) -> None:
    """Give the metric the exact gradient at ``x`` in its coordinates (``A^T H x``)."""
    metric.update(x, torch.einsum("bji,bj->bi", metric.basis, x @ hess), usable)


def test_bfgs_satisfies_the_secant_equation_and_the_basis_is_its_root() -> None:
    hess = _quadratic()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 6, generator=g, dtype=torch.float64)
    metric = Metric.initial(x)
    yes = torch.tensor([True, True])
    _feed(metric, x, hess, yes)
    for _ in range(4):
        x_new = torch.randn(2, 6, generator=g, dtype=torch.float64)
        _feed(metric, x_new, hess, yes)
        s, y = x_new - x, (x_new - x) @ hess
        torch.testing.assert_close(torch.einsum("bij,bj->bi", metric.hinv, y), s)
        x = x_new
    root = metric.basis @ metric.basis.transpose(1, 2)
    trace = metric.hinv.diagonal(dim1=1, dim2=2).sum(dim=1)
    torch.testing.assert_close(root, metric.hinv * (6 / trace)[:, None, None])


def test_unusable_rows_and_negative_curvature_keep_their_metric() -> None:
    hess = _quadratic()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 6, generator=g, dtype=torch.float64)
    metric = Metric.initial(x)
    _feed(metric, x, hess, torch.tensor([True, True]))
    _feed(metric, x + 1.0, hess, torch.tensor([True, False]))  # row 1: too noisy
    assert bool(metric.started[0]) and not bool(metric.started[1])
    torch.testing.assert_close(metric.basis[1], torch.eye(6, dtype=torch.float64))
    before = metric.hinv.clone()
    assert metric.prev_x is not None and metric.prev_g is not None
    s = x - metric.prev_x
    g_x = metric.prev_g - s  # s^T (g_x - prev_g) = -|s|^2 < 0: no curvature to learn
    metric.update(x, torch.einsum("bji,bj->bi", metric.basis, g_x), torch.tensor([True, True]))
    torch.testing.assert_close(metric.hinv, before)
