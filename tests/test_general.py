"""The general (scale-free) ZO-LSTM, its meta-training mixture and the analytic families."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import zol2l
from zol2l.learned import load_checkpoint
from zol2l.learned.checkpoint import PRETRAINED_DIR
from zol2l.learned.scalefree import ScaleFreeUpdateRNN, SchemeConstants
from zol2l.loop import run
from zol2l.optimizers import make
from zol2l.tasks import make_task
from zol2l.tasks.analytic import FUNCTIONS, AnalyticProblem, make_transform, stack_transforms
from zol2l.tasks.base import Problem
from zol2l.tasks.bbob import BBOB_FUNCTIONS
from zol2l.tasks.mixture import GENERAL_MEMBERS

GENERAL = "pretrained:general"


class Scaled(AnalyticProblem):
    """An analytic problem whose values are ``a f + b``."""

    def __init__(self, base: AnalyticProblem, a: float, b: float) -> None:
        self.__dict__.update(base.__dict__)
        self.a, self.b = a, b

    def objective(self, points: torch.Tensor) -> torch.Tensor:
        return self.a * super().objective(points) + self.b

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return self.a * super().loss(x) + self.b


def _rosenbrock(dim: int = 8, rows: int = 3, noise: float = 0.0) -> AnalyticProblem:
    gen = torch.Generator().manual_seed(4)
    parts = [make_transform(dim, gen, xscale=0.5 + i, shift_range=2.0) for i in range(rows)]
    return AnalyticProblem("rosenbrock", stack_transforms(parts),
                           torch.zeros(rows, dim, dtype=torch.float64), list(range(rows)),
                           [0] * rows, noise=noise, seed=1)


@pytest.mark.parametrize("a, b", [(1e-3, 0.0), (1e3, 0.0), (1.0, 7.5), (1e3, -3.0)])
def test_general_iterates_do_not_change_with_the_objective_scale_or_shift(a, b) -> None:
    base = _rosenbrock()
    ref = run(make("zo-lstm", checkpoint=GENERAL, q=6), base, 60, seed=3)
    moved = run(make("zo-lstm", checkpoint=GENERAL, q=6), Scaled(_rosenbrock(), a, b), 60,
                seed=3)
    torch.testing.assert_close(moved.x, ref.x, rtol=1e-6, atol=1e-9)
    assert not torch.equal(ref.x, base.x0)  # it moved


def test_untrained_scheme_is_scale_free_in_x_too() -> None:
    """Rescaling the parameters (x -> s x, with x0 and the optimum) rescales the iterates."""
    def problem(scale: float) -> AnalyticProblem:
        gen = torch.Generator().manual_seed(9)
        t = make_transform(6, gen, xscale=scale, extra=torch.linspace(1, 50, 6,
                                                                     dtype=torch.float64))
        x0 = scale * torch.full((1, 6), 3.0, dtype=torch.float64)
        return AnalyticProblem("quadratic", t, x0, [0], [0])

    def opt():  # sigma_0 = 0.1 * max(rms(x0), 1): proportional while rms(x0) >= 1
        return make("zo-lstm-no-query", checkpoint=None, update_rnn=ScaleFreeUpdateRNN(), q=4)

    small, big = run(opt(), problem(1.0), 40, seed=0), run(opt(), problem(10.0), 40, seed=0)
    torch.testing.assert_close(big.x, 10.0 * small.x, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(big.loss, small.loss, rtol=1e-6, atol=1e-12)


def _small_problems() -> list[tuple[str, object, np.ndarray]]:
    rng = np.random.default_rng(0)
    out = []
    for dim in (5, 20, 60):
        curv = np.logspace(0, 3, dim)
        center = rng.normal(size=dim)
        out.append((f"quadratic-{dim}", lambda x, c=curv, m=center: float(c @ (x - m) ** 2),
                    np.zeros(dim)))
    out.append(("rosenbrock-10", lambda x: float(np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2
                                                       + (1 - x[:-1]) ** 2)), np.zeros(10)))
    noise = np.random.default_rng(1)
    out.append(("noisy-quadratic-20",
                lambda x: float(np.sum((x - 1.0) ** 2) + 0.2 * noise.normal()), np.zeros(20)))
    return out


@pytest.mark.parametrize("label, fun, x0", _small_problems(), ids=lambda v: str(v)[:20])
def test_general_never_ends_above_the_start(label, fun, x0) -> None:
    exact = (lambda x: float(np.sum((x - 1.0) ** 2))) if label.startswith("noisy") else fun
    start = exact(x0)
    for seed in range(3):
        res = zol2l.minimize(fun, x0, method="zo-lstm", steps=150, q=10, seed=seed)
        assert res.run.steps == 150
        final = exact(res.x)
        assert final <= start, (label, seed, final, start)
        assert final < 0.9 * start, (label, seed, final, start)  # it made progress


def test_general_is_the_default_checkpoint_and_verified() -> None:
    opt = make("zo-lstm")
    hp = opt.hyperparameters()
    assert hp["checkpoint"] == GENERAL and hp["scheme"] == "scale-free"
    assert opt.queries_at(0) == opt.q + 3
    # sha256 and a corrupt copy: test_lstm.py's tests over every shipped checkpoint
    for stage in ("update", "query"):
        ckpt = load_checkpoint(GENERAL, stage)
        assert (PRETRAINED_DIR / f"general-{stage}.safetensors").exists()
        assert isinstance(ckpt.modules["update"], ScaleFreeUpdateRNN)
        assert ckpt.metadata["task"] == "mixture" and ckpt.metadata["config"]["scheme"] == \
            "scale-free"
    assert "query" in load_checkpoint(GENERAL, "query").modules


def test_scheme_constants_round_trip_and_refuse_unknown_keys() -> None:
    c = SchemeConstants(mu_ratio=0.05)
    assert SchemeConstants.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown scheme constants"):
        SchemeConstants.from_dict({"learning_rate": 1.0})


def test_mixture_samples_every_member_and_is_reproducible() -> None:
    mix = make_task("mixture")
    picks = [mix.pick(seed) for seed in range(800)]
    assert set(picks) == set(range(len(GENERAL_MEMBERS)))
    assert picks == [mix.pick(seed) for seed in range(800)]
    a, b = mix.problem([0, 1, 2], seed=11), mix.problem([0, 1, 2], seed=11)
    assert a.member == b.member and torch.equal(a.x0, b.x0)
    torch.testing.assert_close(a.loss(a.x0), b.loss(b.x0))
    assert a.suggested_q == GENERAL_MEMBERS[a.member].q
    assert len(mix.validation([0, 1], seed=0)) == len(GENERAL_MEMBERS)
    with pytest.raises(ValueError, match="positive weight"):
        make_task("mixture", members=[{"task": "rotated-quadratic", "weight": 0.0}])


def test_mixture_never_samples_the_benchmark_families() -> None:
    for member in GENERAL_MEMBERS:
        assert member.task != "bbob"
        if member.task == "binary-classification":
            assert member.options["dim"] < 300


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_analytic_functions_have_their_minimum_zero_at_the_optimum(function: str) -> None:
    family = make_task("bbob", function=function if function != "quadratic" else "sphere",
                       dim=12)
    problem = family.problem([0, 3], seed=0)
    if function == "quadratic":
        problem = make_task("rotated-quadratic", dim=12).problem([0, 3], seed=0)
    optimum = problem.transform.shift
    assert torch.allclose(problem.loss(optimum), torch.zeros(2, dtype=torch.float64),
                          atol=1e-9)
    gen = torch.Generator().manual_seed(0)
    near = optimum + 1e-2 * torch.randn(optimum.shape, generator=gen, dtype=torch.float64)
    assert bool((problem.loss(near) >= 0).all())
    assert bool((problem.loss(problem.x0) > problem.loss(optimum)).all())


def test_bbob_instances_are_seeded_and_split() -> None:
    fam = make_task("bbob", function="ellipsoid", dim=200)
    assert set(fam.instance_ids("train")).isdisjoint(fam.instance_ids("test"))
    a, b = fam.problem([5], seed=0), fam.problem([5], seed=0)
    assert torch.equal(a.transform.shift, b.transform.shift)
    assert a.transform.blocks.shape[-1] == 40  # block-diagonal rotation above d = 100
    q = a.transform.blocks[0, 0]
    torch.testing.assert_close(q @ q.T, torch.eye(40, dtype=torch.float64))
    assert "quadratic" not in BBOB_FUNCTIONS


def test_noisy_problem_reports_the_noiseless_loss() -> None:
    problem = _rosenbrock(noise=0.1)
    x = problem.x0[:, None, :].expand(-1, 50, -1)
    values = problem.objective(x)
    assert float(values.std(dim=1).mean()) > 0
    rel_std = values.std(dim=1) / problem.f0
    assert bool(((rel_std > 0.05) & (rel_std < 0.2)).all())
    torch.testing.assert_close(problem.loss(problem.x0), problem.f0)
    assert math.isfinite(float(values.mean()))


def test_scale_free_meta_training_with_es_runs_and_reloads(tmp_path) -> None:
    from zol2l.meta.config import MetaConfig
    from zol2l.meta.trainer import MetaTrainer

    def config(stage: str, out: str, init: str | None = None) -> MetaConfig:
        return MetaConfig(task="rotated-quadratic", stage=stage, out=str(tmp_path / out),
                          init=init, task_options={"dim": 8}, scheme="scale-free",
                          meta_loss="eq4-log", meta_grad="es", es_pairs=2, epochs=1,
                          runs_per_epoch=2, steps=12, batch=2, q=4, lr=0.05)

    trainer = MetaTrainer(config("update", "u"), progress=False)
    before = [p.detach().clone() for p in trainer.trainable.parameters()]
    summary = trainer.fit()
    assert summary["meta_steps"] == 2 and summary["finished"]
    after = list(trainer.trainable.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert float(before[-1].abs().max()) == 0.0  # the head starts at zero: the scheme itself
    ckpt = load_checkpoint(summary["checkpoint"], "update")
    assert isinstance(ckpt.modules["update"], ScaleFreeUpdateRNN)
    stage2 = MetaTrainer(config("query", "q", summary["checkpoint"]), progress=False).fit()
    opt = make("zo-lstm", checkpoint=stage2["checkpoint"], q=4)
    assert opt.scale_free and opt.query_rnn is not None
    problem = make_task("rotated-quadratic", dim=8).problem([0, 1], seed=0)
    result = run(opt, problem, 20, seed=0)
    assert result.queries == [7] * 20 and bool(torch.isfinite(result.loss).all())


class FlatNoisy(Problem):
    """``f(x) = 1 + 0.01 e`` with fresh Gaussian noise ``e`` on every query: no signal."""

    reports_loss = True

    def __init__(self, dim: int = 20) -> None:
        self.x0 = torch.zeros(1, dim, dtype=torch.float64)
        self.ids, self.trials = [0], [0]
        self.gen = torch.Generator().manual_seed(5)

    def objective(self, points: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(points.shape[:2], generator=self.gen, dtype=torch.float64)
        return 1.0 + 0.01 * noise

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones(x.shape[0], dtype=torch.float64)


def _sigmas(constants: SchemeConstants, problem: Problem, steps: int) -> list[float]:
    opt = make("zo-lstm-no-query", checkpoint=None,
               update_rnn=ScaleFreeUpdateRNN(constants=constants), q=10)
    out: list[float] = []
    run(opt, problem, steps, seed=0,
        callback=lambda t, step, state: out.append(float(step.extras["sigma"][0])))
    return out


def test_comparisons_inside_the_noise_leave_the_step_size_alone() -> None:
    """On pure noise every success is a coin flip: the success rule (target 0.7) would
    shrink ``sigma`` by ``0.1 (0.5 - 0.7)`` per step; gated by the measured noise it holds."""
    gated = _sigmas(SchemeConstants(), FlatNoisy(), 300)
    assert 0.1 < gated[-1] / gated[0] < 10.0
    ungated = _sigmas(SchemeConstants(noise_gate=0.0, mu_max=1.0), FlatNoisy(), 300)
    assert ungated[-1] / ungated[0] < 0.05  # what the gate prevents (e^-6 expected)


def test_step_size_does_not_collapse_on_a_noisy_quadratic() -> None:
    problem = make_task("rotated-quadratic", dim=50, noise=1e-3).problem([0], seed=3)
    sigmas = _sigmas(SchemeConstants(), problem, 800)
    assert sigmas[-1] > 1e-3 * sigmas[0]
    result = run(make("zo-lstm", q=10), problem, 800, seed=0)
    assert float(result.loss[-1, 0] / result.loss[0, 0]) < 1e-2


def _rotated_quadratic(dim: int = 8, cond: float = 1e4) -> AnalyticProblem:
    gen = torch.Generator().manual_seed(2)
    curv = cond ** torch.linspace(0, 1, dim, dtype=torch.float64)
    parts = [make_transform(dim, gen, xscale=2.0, fscale=0.1, extra=curv) for _ in range(2)]
    return AnalyticProblem("quadratic", stack_transforms(parts),
                           torch.zeros(2, dim, dtype=torch.float64), [0, 1], [0, 0])


def test_quasi_newton_metric_solves_a_rotated_ill_conditioned_quadratic() -> None:
    """2 d <= q: central differences on orthogonal blocks and BFGS secants; without the
    metric (metric_gate = 0) the diagonal normalization cannot undo the rotation."""
    def final(constants: SchemeConstants) -> torch.Tensor:
        opt = make("zo-lstm-no-query", checkpoint=None,
                   update_rnn=ScaleFreeUpdateRNN(constants=constants), q=16)
        result = run(opt, _rotated_quadratic(), 300, seed=0)
        return result.loss[-1] / result.loss[0]

    with_metric, diagonal = final(SchemeConstants()), final(SchemeConstants(metric_gate=0.0))
    assert bool((with_metric < 1e-20).all()), with_metric
    assert bool((diagonal > 1e-4).all()), diagonal


def test_quasi_newton_mode_spends_q_plus_3_and_is_scale_free() -> None:
    base = _rosenbrock(dim=4)
    ref = run(make("zo-lstm", q=9), base, 60, seed=3)  # odd q: f(x) queried a third time
    assert ref.queries == [12] * 60
    for a, b in ((1e-3, 0.0), (1e3, -3.0)):
        moved = run(make("zo-lstm", q=9), Scaled(_rosenbrock(dim=4), a, b), 60, seed=3)
        torch.testing.assert_close(moved.x, ref.x, rtol=1e-6, atol=1e-8)
    assert float((ref.loss[-1] / ref.loss[0]).max()) < 1e-2


class NoisyBowlPlateau(FlatNoisy):
    """``1 + 1e-6 |x|^2`` under noise 0.01: every comparison is noise, and every move away
    from the start at 0 is truly worse."""

    def objective(self, points: torch.Tensor) -> torch.Tensor:
        return super().objective(points) + 1e-6 * points.square().sum(dim=2)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return 1.0 + 1e-6 * x.square().sum(dim=1)


def test_a_run_whose_accepted_point_never_beat_the_start_beyond_the_noise_ends_there() -> None:
    for q in (10, 40):  # the diagonal and the quasi-Newton mode
        states: list = []
        result = run(make("zo-lstm", q=q), NoisyBowlPlateau(), 200, seed=1,
                     callback=lambda t, out, state, kept=states: kept.append(state))
        sf = states[-1].scale_free
        assert not torch.equal(sf.x_base, sf.x_start)  # noise moved the accepted point
        torch.testing.assert_close(result.x, torch.zeros(1, 20, dtype=torch.float64))
        assert float(result.loss[-1, 0]) == 1.0
