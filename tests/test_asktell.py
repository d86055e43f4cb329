"""AskTell: the same optimizer and loop as minimize, bit for bit, and a strict protocol."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_blackbox import sphere
from test_optimizers import settings

import zol2l
from zol2l.optimizers import available


def drive(opt: zol2l.AskTell, f, asks: list | None = None) -> zol2l.AskTell:
    while opt.stop_reason is None:
        points = opt.ask()
        if asks is not None:
            asks.append(points.shape[0])
        opt.tell([f(x) for x in points])
    return opt


@pytest.mark.parametrize("budget", [None, 700])
@pytest.mark.parametrize("name", available())
def test_reproduces_minimize_bit_for_bit(name: str, budget: int | None) -> None:
    steps = 24 if budget is None else None
    ref = zol2l.minimize(sphere, np.zeros(6), name, steps=steps, budget=budget, seed=5,
                         **settings(name))
    asks: list[int] = []
    opt = drive(zol2l.AskTell(name, np.zeros(6), seed=5, budget=budget, steps=steps,
                              **settings(name)), sphere, asks)
    assert opt.best_f == ref.fun and np.array_equal(opt.best_x, ref.x)
    assert np.array_equal(opt.x, ref.x_last) and opt.result.history == ref.history
    assert opt.nqueries == ref.nqueries == sum(asks)
    assert asks[:-1] == ref.run.queries and asks[-1] == 1  # the final value is asked alone
    assert opt.stop_reason == ref.stop_reason
    if name == "zo-szvrg":  # snapshot steps ask for q0 + 1 points, inner steps 2 (q + 1)
        assert asks[0] == 101 and asks[1] == 22


@pytest.mark.parametrize("name", available())
def test_asked_points_are_the_users_to_modify(name: str) -> None:
    """ask()'s points are not read again by the run: overwriting them after evaluating (numpy
    and torch) leaves every iterate as minimize's."""
    def f(x):  # numpy or torch
        return float(((x - 0.5) ** 2).sum())

    for x0 in (np.zeros(6), torch.zeros(6, dtype=torch.float64)):
        ref = zol2l.minimize(f, x0, name, steps=12, seed=2, **settings(name))
        opt = zol2l.AskTell(name, x0, seed=2, steps=12, **settings(name))
        while opt.stop_reason is None:
            points = opt.ask()
            values = [f(x) for x in points]
            points[:] = 123.0
            opt.tell(values)
        assert opt.result.history == ref.history and opt.best_f == ref.fun


def test_torch_points_for_torch_x0_and_bounds() -> None:
    opt = zol2l.AskTell("zo-sgd", torch.zeros(4), budget=200, bounds=(-0.1, 0.1), q=5)
    points = opt.ask()
    assert isinstance(points, torch.Tensor) and points.shape == (6, 4)
    opt.tell(points.square().sum(-1))
    while opt.stop_reason is None:
        points = opt.ask()
        assert bool((points.abs() <= 0.1).all())
        opt.tell((points - 1).square().sum(-1))
    assert "budget" in opt.stop_reason and opt.nqueries <= 200
    assert isinstance(opt.best_x, torch.Tensor) and bool((opt.best_x.abs() <= 0.1).all())


def test_protocol_errors_are_clear() -> None:
    opt = zol2l.AskTell("zo-adam", np.zeros(6), steps=2, q=4)
    with pytest.raises(RuntimeError, match="tell\\(\\) without a pending ask"):
        opt.tell(np.zeros(5))
    points = opt.ask()
    with pytest.raises(RuntimeError, match="ask\\(\\) called twice"):
        opt.ask()
    with pytest.raises(ValueError, match="got 2 values for the 5 points"):
        opt.tell([1.0, 2.0])
    with pytest.raises(ValueError, match="squeeze the last dimension"):
        opt.tell(torch.zeros(5, 1, dtype=torch.float64))
    opt.tell([sphere(p) for p in points])
    assert opt.best_f < float("inf") and opt.nqueries == 5
    drive(opt, sphere)
    with pytest.raises(RuntimeError, match="the run has ended \\(steps\\)"):
        opt.ask()
    with pytest.raises(ValueError, match="'bogus'"):
        zol2l.AskTell("zo-adam", np.zeros(3), bogus=1)


def test_errors_of_the_run_surface_in_tell_and_close_ends_it() -> None:
    opt = zol2l.AskTell("zo-sgd", np.zeros(3), steps=5, q=2)
    opt.ask()
    with pytest.raises(zol2l.NonFiniteValueError, match="iteration 0"):
        opt.tell([np.nan, 1.0, 1.0])
    assert opt.stop_reason.startswith("error: the objective returned nan")
    with pytest.raises(RuntimeError, match="ended"):
        opt.ask()
    other = zol2l.AskTell("zo-sgd", np.zeros(3), steps=5, q=2)
    other.ask()
    other.close()
    assert other.stop_reason == "closed"
    with pytest.raises(RuntimeError, match="ended"):
        other.ask()


def test_grad_mode_does_not_leak_out_of_the_run() -> None:
    assert torch.is_grad_enabled()
    opt = zol2l.AskTell("zo-sgd", np.zeros(3), steps=3, q=2)
    assert torch.is_grad_enabled()  # the run is suspended inside torch.no_grad()
    opt.tell([float(np.sum(p**2)) for p in opt.ask()])
    assert torch.is_grad_enabled()
