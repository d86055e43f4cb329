"""minimize on a user's black box: budget, best-so-far, bounds, callback, tol, executors, the
default mu on noisy objectives, unknown keywords."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from test_optimizers import settings

import zol2l
from zol2l.optimizers import available, make

TARGET = np.linspace(-2.0, 2.0, 6)


def sphere(x: np.ndarray) -> float:
    return float(np.sum((x - TARGET) ** 2))


@pytest.mark.parametrize("name", available())
def test_budget_alone_is_spent_and_fun_is_the_best(name: str) -> None:
    calls = []

    def f(x: np.ndarray) -> float:
        calls.append(1)
        return sphere(x)

    budget = 600
    res = zol2l.minimize(f, np.zeros(6), name, budget=budget, seed=1, **settings(name))
    opt = make(name, **settings(name))
    largest_step = max(opt.queries_at(t) for t in range(res.run.steps + 1))
    # ZO-SZVR-G's snapshot step spends q0 + 1 = 101 queries: it is its "q + 1"
    assert budget - largest_step <= res.nqueries == len(calls) <= budget
    assert "budget" in res.stop_reason
    assert res.fun == f(res.x) == min(res.best_history)
    assert res.best_history == list(np.minimum.accumulate(res.history))
    assert res.fun_last == res.history[-1] == f(res.x_last)


def test_steps_and_budget_whichever_first() -> None:
    few = zol2l.minimize(sphere, np.zeros(6), "zo-sgd", steps=5, budget=10_000, q=10)
    assert few.stop_reason == "steps" and few.run.steps == 5
    capped = zol2l.minimize(sphere, np.zeros(6), "zo-sgd", steps=10_000, budget=120, q=10)
    assert "budget" in capped.stop_reason and capped.nqueries <= 120


def test_best_is_kept_after_divergence() -> None:
    with pytest.warns(UserWarning, match="worse than the start"):
        res = zol2l.minimize(sphere, np.zeros(6), "zo-sgd", steps=60, q=10, lr=3.0, seed=0,
                             nonfinite="inf")
    assert res.fun_last > res.history[0]  # lr = 3 on |x - t|^2 diverges
    assert res.fun <= res.history[0] and res.fun == sphere(res.x)


@pytest.mark.parametrize("name", available())
def test_bounds_never_left_by_any_query(name: str) -> None:
    lower, upper = np.full(6, -0.5), np.array([0.5, 0.5, 0.5, 1.0, 3.0, 0.25])
    seen = []

    def f(x: np.ndarray) -> float:
        seen.append(x.copy())
        return sphere(x)

    res = zol2l.minimize(f, np.full(6, 2.0), name, steps=30, seed=0,
                         bounds=(lower, upper), **settings(name))
    pts = np.stack(seen)
    assert (pts >= lower).all() and (pts <= upper).all()
    assert (res.x >= lower).all() and (res.x <= upper).all()
    assert (res.x_last >= lower).all() and (res.x_last <= upper).all()
    assert res.fun == sphere(res.x)


def test_bounds_scalars_and_errors() -> None:
    res = zol2l.minimize(sphere, np.zeros(6), "zo-adam", steps=100, q=10, bounds=(-1.0, 1.0))
    assert np.abs(res.x).max() <= 1.0
    # the box's best point is clip(TARGET): the optimizer gets there on f(clip(x))
    assert res.fun < sphere(np.zeros(6))
    with pytest.raises(ValueError, match="lower must be <= upper"):
        zol2l.minimize(sphere, np.zeros(6), bounds=(1.0, -1.0))
    with pytest.raises(ValueError, match="does not match x0"):
        zol2l.minimize(sphere, np.zeros(6), bounds=(np.zeros(3), np.ones(3)))


def test_callback_stops_and_sees_the_state() -> None:
    states = []

    def callback(state: zol2l.api.Iteration) -> bool:
        states.append(state)
        return state.t >= 7

    res = zol2l.minimize(sphere, np.zeros(6), "zo-adam", steps=100, q=10, callback=callback)
    assert res.run.steps == 7 and "callback" in res.stop_reason
    assert [s.t for s in states] == list(range(1, 8))
    assert states[-1].best_f == min(res.history[:7])
    assert states[-1].nqueries == 7 * 11


def test_tol_stops_a_converged_run() -> None:
    res = zol2l.minimize(sphere, np.zeros(6), "zo-adam", steps=5000, q=10, tol=1e-3,
                         tol_window=20)
    assert res.stop_reason.startswith("tol:") and res.run.steps < 5000
    window = res.best_history[-21], res.best_history[-1]
    assert window[0] - window[1] <= 1e-3 * abs(window[0])


@pytest.mark.parametrize("name", ["zo-adam", "zo-szvrg", "zo-lstm"])
def test_executor_same_result_as_serial(name: str) -> None:
    serial = zol2l.minimize(sphere, np.zeros(6), name, steps=25, seed=4, **settings(name))
    with ThreadPoolExecutor(3) as pool:
        par = zol2l.minimize(sphere, np.zeros(6), name, steps=25, seed=4, executor=pool,
                             **settings(name))
    workers = zol2l.minimize(sphere, np.zeros(6), name, steps=25, seed=4, workers=2,
                             **settings(name))
    for other in (par, workers):
        assert other.history == serial.history and other.fun == serial.fun
        assert np.array_equal(other.x, serial.x)


# Noisy quadratic: |x - 1|^2 in d = 20 (f(x0) = 20) plus N(0, sigma^2) noise at every query,
# sigma = 0.01.  With the old float64 default mu = 1e-8 the difference noise is ~1e6 times
# the signal and every method fails.
NOISE, DIM = 0.01, 20


@pytest.mark.parametrize("name", ["zo-sgd", "zo-adam", "zo-lstm"])
def test_default_mu_converges_on_a_noisy_quadratic(name: str) -> None:
    gen = torch.Generator().manual_seed(7)

    def noisy(x: torch.Tensor) -> torch.Tensor:
        return (x - 1.0).square().sum(-1) + NOISE * torch.randn(x.shape[0], generator=gen,
                                                               dtype=x.dtype)

    x0 = torch.zeros(DIM, dtype=torch.float64)
    res = zol2l.minimize(noisy, x0, name, steps=300, seed=0, vectorized=True)
    clean = float((res.x - 1.0).square().sum())
    assert clean < 0.05 * DIM, f"{name}: noise-free value {clean} of the returned point"
    if name == "zo-lstm":  # the general optimizer ties mu to its step and the noise
        same = zol2l.minimize(noisy, x0, name, steps=300, seed=0, vectorized=True, mu=1e-8)
        assert float((same.x - 1.0).square().sum()) < 0.05 * DIM
        return
    with pytest.raises(AssertionError):  # the old default fails on the same problem
        old = zol2l.minimize(noisy, x0, name, steps=300, seed=0, vectorized=True, mu=1e-8,
                             nonfinite="inf")
        assert float((old.x - 1.0).square().sum()) < 0.05 * DIM


def test_unknown_keyword_names_it_and_the_accepted_ones() -> None:
    with pytest.raises(ValueError, match=r"'bogus'.*accepted: .*bounds.*beta1"):
        zol2l.minimize(sphere, np.zeros(3), "zo-adam", bogus=1)
    with pytest.raises(ValueError, match=r"'beta1'.*accepted: .*zo-sgd.*delta"):
        zol2l.minimize(sphere, np.zeros(3), "zo-sgd", beta1=0.9)
