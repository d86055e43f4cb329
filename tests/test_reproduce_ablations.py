"""`zol2l reproduce fig4` (Figure 4: ablations, cosine similarity, one coordinate's trajectory)
and the analysis helpers (true gradient by autograd, cosine, replayed update rules)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import needs_data, quadratic, run_quick

from zol2l.estimators import coordinatewise, gaussian
from zol2l.experiments.reproduce.ablations import ABLATIONS, PANELS
from zol2l.experiments.reproduce.query_analysis import (
    cosine,
    replay,
    roughness,
    true_gradient,
)
from zol2l.oracle import Oracle
from zol2l.tasks import make_task


@needs_data
def test_fig4_quick_runs_and_reports(tmp_path: Path) -> None:
    ctx, payload, saved, cifar_missing = run_quick("fig4", tmp_path)
    for key in ("protocol", "results", "checks", "figures"):
        assert key in saved
    for name in PANELS:
        panel = saved["results"]["panels"][name]
        if name == "cifar10-attack" and cifar_missing:
            assert "skipped" in panel
            continue
        assert set(panel["optimizers"]) == set(ABLATIONS)
        hp = panel["optimizers"]
        assert hp["zo-lstm-no-update"]["hyperparameters"]["delta"] == \
            hp["zo-sgd"]["hyperparameters"]["delta"]
        assert hp["zo-lstm"]["hyperparameters"]["checkpoint"] == f"pretrained:{name}"
        steps = saved["protocol"]["panels"][name]["steps"]
        assert all(len(b["loss_mean"]) == steps + 1 for b in hp.values())
    cos = saved["results"]["cosine"]
    assert list(cos) == [str(q) for q in saved["protocol"]["cosine"]["q_grid"]]
    for entry in cos.values():
        assert -1 <= entry["query_mean"] <= 1 and -1 <= entry["gaussian_mean"] <= 1
        assert len(entry["query_per_step"]) == saved["protocol"]["cosine"]["steps"]
    traj = saved["results"]["trajectory"]
    for key in ("variance", "estimate", "update", "zo-sgd", "zo-adam"):
        assert len(traj[key]) == traj["steps"], key
    # ZO-SGD replayed on the recorded estimates: -lr * estimate, lr = delta / d
    lr = traj["hyperparameters"]["zo-sgd"]["delta"] / 784
    assert np.allclose(traj["zo-sgd"], -lr * np.asarray(traj["estimate"]), rtol=1e-6)
    for check in saved["checks"]:
        assert set(check) == {"claim", "holds", "evidence"}
        assert check["holds"] in (True, False, None)
    assert payload["figures"] == ["fig4.png"]
    assert (tmp_path / "fig4.png").stat().st_size > 5000


def test_true_gradient_matches_the_analytic_gradient() -> None:
    problem = quadratic(rows=3, dim=10, seed=1)
    x = torch.randn(3, 10, dtype=torch.float64)
    assert torch.allclose(true_gradient(problem, x), problem.scales * x)


def test_true_gradient_matches_central_differences_on_binary_classification() -> None:
    task = make_task("binary-classification", dim=12, n=200, batch=32)
    problem = task.problem([90, 91], trials=1, seed=3)
    problem.next_iteration(0)  # draw a minibatch: the objective is that minibatch's loss
    x = problem.x0 + 0.3
    grad = true_gradient(problem, x)
    oracle = Oracle(problem.objective, problem.dim, mode="problems", dtype=x.dtype)
    fd = coordinatewise(oracle, x, 1e-6).grad
    assert grad.abs().max() > 1e-3
    assert torch.allclose(grad, fd, rtol=1e-5, atol=1e-8)


def test_estimate_with_many_queries_aligns_with_the_true_gradient() -> None:
    problem = quadratic(rows=4, dim=10, seed=2)
    x = problem.x0
    oracle = Oracle(problem.objective, problem.dim, mode="problems", dtype=x.dtype)
    gen = torch.Generator().manual_seed(0)
    truth = true_gradient(problem, x)
    many = cosine(gaussian(oracle, x, 4000, 1e-6, gen).grad, truth)
    few = cosine(gaussian(oracle, x, 2, 1e-6, gen).grad, truth)
    assert bool((many > 0.98).all()), many  # theory: sqrt(q / (q + d + 1)) = 0.9986
    assert float(few.mean()) < float(many.mean())
    assert torch.allclose(cosine(truth, 2.0 * truth), torch.ones(4, dtype=torch.float64))
    assert torch.allclose(cosine(truth, -truth), -torch.ones(4, dtype=torch.float64))


def test_replayed_update_rules() -> None:
    est = torch.tensor([[2.0, -0.5, 0.0]] * 3, dtype=torch.float64)
    sgd = replay("zo-sgd", {"delta": 3.0}, est)
    assert torch.allclose(sgd, -1.0 * est)  # lr = delta / d = 1
    adam = replay("zo-adam", {"delta": 3.0, "beta1": 0.9, "beta2": 0.99}, est)
    # a constant estimate: bias-corrected Adam steps by -lr * sign(g) every iteration
    assert torch.allclose(adam[:, :2], -torch.sign(est[:, :2]), atol=1e-6)
    assert torch.equal(adam[:, 2], torch.zeros(3, dtype=torch.float64))


def test_roughness_separates_noise_from_trends() -> None:
    rng = np.random.default_rng(0)
    t = np.linspace(0, 3, 400)[:, None]
    noise, trend = rng.normal(size=(400, 1)), np.sin(t)
    assert roughness(noise)[0] == pytest.approx(2 / math.sqrt(math.pi), rel=0.1)
    assert roughness(trend)[0] < 0.05
