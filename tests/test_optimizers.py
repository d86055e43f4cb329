"""Every registered optimizer: convergence, exact query counts, budget, determinism, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import quadratic

import zol2l
from zol2l.loop import run
from zol2l.optimizers import available, make

# Hyperparameters under which each optimizer must reach 1% of the initial loss on the seeded
# quadratic of conftest (d = 10, eigenvalues in [1, 4]) within CONVERGENCE_STEPS steps.
CONVERGENCE_STEPS = 400
SETTINGS = {"zo-signsgd": {"lr": 0.01}}
# The learned optimizers run with the shipped ZO-LSTM meta-trained on the `quadratic` task
# family (src/zol2l/pretrained/quadratic-*.json records the command): an untrained LSTM
# cannot be expected to converge, and conftest's quadratic is not one of that family's
# instances.  tests/test_meta.py checks that meta-training itself produces such optimizers.
_QUADRATIC_ZO_LSTM = {"checkpoint": "pretrained:quadratic"}
SETTINGS |= {name: _QUADRATIC_ZO_LSTM for name in
             ("zo-lstm", "zo-lstm-no-query", "zo-lstm-guided-es")}
SETTINGS["zo-lstm-no-update"] = {"lr": 0.05, **_QUADRATIC_ZO_LSTM}
DEFAULT = {"lr": 0.05}


def settings(name: str) -> dict:
    return {"q": 10, **SETTINGS.get(name, DEFAULT)}


def test_registry_has_the_baselines() -> None:
    assert {"zo-sgd", "zo-signsgd", "zo-adam", "zo-szvrg", "zo-guided-es"} <= set(available())


@pytest.mark.parametrize("name", available())
def test_converges_on_quadratic(name: str) -> None:
    problem = quadratic(rows=3, dim=10, seed=0)
    result = run(make(name, **settings(name)), problem, CONVERGENCE_STEPS, seed=1)
    ratio = result.loss[-1] / result.loss[0]
    assert bool((ratio <= 0.01).all()), f"{name}: final/initial = {ratio.tolist()}"


@pytest.mark.parametrize("name", available())
def test_exact_query_counts(name: str) -> None:
    calls = []

    def f(x: np.ndarray) -> float:
        calls.append(1)
        return float(np.sum(x**2))

    opt = make(name, **settings(name))
    steps = 23
    res = zol2l.minimize(f, np.ones(6), name, steps=steps, seed=0, **settings(name))
    expected_steps = [opt.queries_at(t) for t in range(steps)]
    assert res.run.queries == expected_steps
    assert res.nqueries == sum(expected_steps) + 1 == len(calls)  # + the final value
    if name == "zo-szvrg":
        assert expected_steps[0] == 101 and expected_steps[1] == 2 * (10 + 1)
    else:
        assert set(expected_steps) == {10 + 1}


@pytest.mark.parametrize("name", available())
def test_budget_never_exceeded(name: str) -> None:
    calls = []

    def f(x: np.ndarray) -> float:
        calls.append(1)
        return float(np.sum(x**2))

    budget = 250
    res = zol2l.minimize(f, np.ones(4), name, steps=10_000, budget=budget, **settings(name))
    assert len(calls) == res.nqueries <= budget
    assert "budget" in res.stop_reason
    assert res.nqueries > budget - max(make(name, **settings(name)).queries_at(t)
                                       for t in range(12)) - 1


@pytest.mark.parametrize("name", available())
def test_same_seed_same_history_bit_for_bit(name: str) -> None:
    a = run(make(name, **settings(name)), quadratic(seed=3), 30, seed=11)
    b = run(make(name, **settings(name)), quadratic(seed=3), 30, seed=11)
    c = run(make(name, **settings(name)), quadratic(seed=3), 30, seed=12)
    assert torch.equal(a.loss, b.loss) and torch.equal(a.x, b.x)
    assert not torch.equal(a.loss, c.loss)


def test_learning_rate_conventions() -> None:
    assert make("zo-sgd", delta=5.0).learning_rate(100) == pytest.approx(0.05)
    assert make("zo-sgd", lr=0.3).learning_rate(100) == 0.3
    with pytest.raises(ValueError, match="not both"):
        make("zo-sgd", lr=0.1, delta=1.0)


def test_adam_matches_hand_computation() -> None:
    opt = make("zo-adam", lr=0.1, beta1=0.5, beta2=0.75, eps=0.0)
    x = torch.zeros(1, 2, dtype=torch.float64)
    state = opt.init_state(x)
    g1 = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    x1 = opt.update(x, g1, state)
    torch.testing.assert_close(x1, -0.1 * torch.sign(g1))  # first Adam step = lr * sign
    state.t = 1
    g2 = torch.tensor([[3.0, 2.0]], dtype=torch.float64)
    x2 = opt.update(x1, g2, state)
    m = (0.5 * 0.5 * g1 + 0.5 * g2) / (1 - 0.25)
    v = (0.75 * 0.25 * g1**2 + 0.25 * g2**2) / (1 - 0.75**2)
    torch.testing.assert_close(x2, x1 - 0.1 * m / v.sqrt())


def test_minimize_numpy_function() -> None:
    target = np.linspace(-1, 1, 8)
    res = zol2l.minimize(lambda x: float(np.sum((x - target) ** 2)), np.zeros(8), "zo-adam",
                         steps=300, q=10, lr=0.05, seed=0)
    assert isinstance(res.x, np.ndarray) and res.x.shape == (8,)
    assert res.fun < 1e-3 * res.history[0]
    assert len(res.history) == 301
    assert res.fun == pytest.approx(float(np.sum((res.x - target) ** 2)))


def test_minimize_vectorized_torch_function() -> None:
    res = zol2l.minimize(lambda X: X.square().sum(-1), torch.ones(5), "zo-sgd", steps=50,
                         q=4, lr=0.1, vectorized=True)
    assert isinstance(res.x, torch.Tensor) and res.fun < 0.5 * res.history[0]


def test_clear_errors() -> None:
    f = lambda x: float(np.sum(x**2))  # noqa: E731
    with pytest.raises(ValueError, match="unknown optimizer 'zo-nope'.*zo-adam"):
        zol2l.minimize(f, np.ones(3), "zo-nope")
    with pytest.raises(ValueError, match="1-D"):
        zol2l.minimize(f, np.ones((3, 2)))
    with pytest.raises(ValueError, match="q"):
        zol2l.minimize(f, np.ones(3), q=0)
    with pytest.raises(ValueError, match="mu"):
        zol2l.minimize(f, np.ones(3), mu=0.0)
    with pytest.raises(ValueError, match="smaller than one step"):
        zol2l.minimize(f, np.ones(3), q=20, budget=20)
    with pytest.raises(zol2l.NonFiniteValueError, match="iteration 0"):
        zol2l.minimize(lambda x: float("nan"), np.ones(3))
    with pytest.raises(ValueError, match="bad hyperparameters"):
        zol2l.minimize(f, np.ones(3), "zo-sgd", beta1=0.9)


def test_nonfinite_inf_rejects_points() -> None:
    # f is +inf outside the unit ball: those directions are rejected, the run goes on
    f = lambda x: float(np.sum(x**2)) if np.sum(x**2) < 1 else float("nan")  # noqa: E731
    res = zol2l.minimize(f, np.full(4, 0.45), "zo-sgd", steps=100, q=8, lr=0.05, mu=0.2,
                         nonfinite="inf")
    assert np.isfinite(res.fun) and res.fun < res.history[0]
