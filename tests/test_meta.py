"""Meta-training of ZO-LSTM: gradient paths, eq. 4, truncation, stages, resume, and that a
short meta-training on quadratics learns something."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from zol2l.cli import main
from zol2l.loop import run
from zol2l.meta import MetaConfig, MetaTrainer, window_loss
from zol2l.optimizers import make
from zol2l.tasks import make_task

QUAD = {"task": "quadratic", "task_options": {"dim": 6}, "batch": 4, "q": 5}


def trainer(out: Path, **kw: Any) -> MetaTrainer:
    return MetaTrainer(MetaConfig(out=str(out), **{**QUAD, **kw}), progress=False)


@pytest.fixture(scope="module")
def stage1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small stage-1 checkpoint (quadratics, d = 6)."""
    out = tmp_path_factory.mktemp("stage1")
    trainer(out, stage="update", epochs=2, runs_per_epoch=3, steps=40).fit()
    return out / "update.safetensors"


def graph_size(tensor: torch.Tensor) -> int:
    """Number of autograd nodes reachable from ``tensor``."""
    seen, todo = set(), [tensor.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        todo.extend(n for n, _ in node.next_functions)
    return len(seen)


def start(tr: MetaTrainer, seed: int = 0) -> tuple[Any, ...]:
    problem = tr.task.problem(tr.train_ids[:3], seed=seed)
    opt = tr.optimizer(1.0)
    return problem, opt, tr.oracle(problem), torch.Generator().manual_seed(seed)


def test_gradients_reach_query_rnn_through_directions(tmp_path: Path, stage1: Path) -> None:
    tr = trainer(tmp_path, stage="query", init=str(stage1), steps=20)
    problem, opt, oracle, gen = start(tr)
    x = problem.x0.clone()
    loss, window = tr.unroll_window(opt, problem, oracle, x, opt.init_state(x), gen, 0, 5,
                                    problem.loss(x))
    params = list(tr.query_rnn.parameters())
    grads = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)
    assert all(g is not None and bool(g.abs().sum() > 0) for g in grads)
    assert all(not p.requires_grad for p in tr.update_rnn.parameters())
    # the std enters the loss ONLY through u = std * z: without the f-terms and the
    # regularizer, the gradient is still non-zero via the UpdateRNN's input g_hat(u)
    only_f = window_loss(window.values, window.steps, total_steps=20)
    grads_f = torch.autograd.grad(only_f, params)
    assert all(bool(g.abs().sum() > 0) for g in grads_f)


def test_linearized_query_gradient_is_close_to_the_exact_one(tmp_path: Path,
                                                            stage1: Path) -> None:
    """Stage 2 with ``query_grad="linearized"``: same values, a QueryRNN meta-gradient that is
    the exact one to first order in mu (quadratics: f's gradient is affine in x)."""
    grads = {}
    for mode in ("exact", "linearized"):
        tr = trainer(tmp_path / mode, stage="query", init=str(stage1), steps=20, mu=1e-4,
                     query_grad=mode)
        problem, opt, oracle, gen = start(tr)
        assert oracle.differentiable == (True if mode == "exact" else "linearized")
        x = problem.x0.clone()
        loss, _ = tr.unroll_window(opt, problem, oracle, x, opt.init_state(x), gen, 0, 5,
                                   problem.loss(x))
        grads[mode] = (float(loss), torch.autograd.grad(loss, list(tr.query_rnn.parameters())))
    assert grads["exact"][0] == pytest.approx(grads["linearized"][0], rel=1e-6)
    for exact, linear in zip(grads["exact"][1], grads["linearized"][1], strict=True):
        assert bool(linear.abs().sum() > 0)
        torch.testing.assert_close(linear, exact, rtol=1e-2, atol=1e-3 * float(exact.abs().max()))
    with pytest.raises(ValueError, match="query_grad"):
        MetaConfig(task="quadratic", stage="update", out=str(tmp_path), query_grad="first")


def test_stage2_leaves_update_rnn_bitwise_unchanged(tmp_path: Path, stage1: Path) -> None:
    before = load_file(str(stage1))
    tr = trainer(tmp_path, stage="query", init=str(stage1), epochs=1, runs_per_epoch=2,
                 steps=40)
    query_before = {k: v.clone() for k, v in tr.query_rnn.state_dict().items()}
    tr.fit()
    after = load_file(str(tmp_path / "query.safetensors"))
    for key, value in before.items():
        assert torch.equal(after[key], value), key
        assert torch.equal(tr.update_rnn.state_dict()[key.split(".", 1)[1]], value)
    moved = [not torch.equal(v, tr.query_rnn.state_dict()[k]) for k, v in query_before.items()]
    assert all(moved)  # the QueryRNN did train


@pytest.mark.parametrize("kind", ["eq4", "telescoping"])
def test_meta_loss_matches_hand_computation_over_3_steps(tmp_path: Path, stage1: Path,
                                                         kind: str) -> None:
    lam = 0.3  # large, so that a wrong regularizer would show
    tr = trainer(tmp_path, stage="query", init=str(stage1), steps=3, unroll=3, lam=lam,
                 meta_loss=kind)
    problem, opt, oracle, gen = start(tr, seed=4)
    f0 = problem.loss(problem.x0)
    loss, window = tr.unroll_window(opt, problem, oracle, problem.x0.clone(),
                                    opt.init_state(problem.x0), gen,
                                    0, 3, f0)
    # an independent replay through the evaluation loop, same seed, no graph
    stds: list[torch.Tensor] = []
    with torch.no_grad():
        res = run(tr.optimizer(1.0), tr.task.problem(tr.train_ids[:3], seed=4), 3, seed=4,
                  callback=lambda t, out, st: stds.append(out.extras["std_pred"]))
    f = res.loss  # [4, B]: f(theta_0..theta_3)
    if kind == "eq4":
        by_hand = 1 * f[1] + 2 * f[2] + 3 * f[3]
    else:
        by_hand = 1 * (f[1] - f[0]) + 2 * (f[2] - f[1]) + 3 * (f[3] - f[2])
    for s in stds:
        by_hand = by_hand + lam * ((s.double() ** 2 - 1) ** 2).sum(dim=1)
    by_hand = by_hand.mean() / (1 + 2 + 3)
    assert window.steps == [1, 2, 3]
    torch.testing.assert_close(loss.detach(), by_hand, rtol=1e-6, atol=0)


def test_truncation_detaches_graph_and_counts_t_from_run_start(tmp_path: Path) -> None:
    tr = trainer(tmp_path, stage="update", steps=20, unroll=5)
    problem, opt, oracle, gen = start(tr)
    x = problem.x0.clone()
    state = opt.init_state(x)
    prev = problem.loss(x)
    sizes = []
    for t0 in range(0, 20, 5):
        loss, window = tr.unroll_window(opt, problem, oracle, x, state, gen, t0, 5, prev)
        assert window.steps == list(range(t0 + 1, t0 + 6))
        sizes.append(graph_size(loss))
        loss.backward()
        x, prev = window.x.detach(), window.values[-1].detach()
        state.detach()
        assert all(v.grad_fn is None for v in state.update_hidden)
    assert len(set(sizes)) == 1 and sizes[0] > 50  # flat: nothing from earlier truncations


def test_zo_meta_gradient_matches_autograd_on_quadratics(tmp_path: Path) -> None:
    grads = {}
    for mode in ("autograd", "zo"):
        tr = trainer(tmp_path / mode, stage="update", steps=10, grad=mode)
        problem, opt, oracle, gen = start(tr)
        x = problem.x0.clone()
        loss, _ = tr.unroll_window(opt, problem, oracle, x, opt.init_state(x), gen, 0, 10,
                                   problem.loss(x))
        grads[mode] = torch.autograd.grad(loss, list(tr.update_rnn.parameters()))
        assert tr.grad == mode
    for a, z in zip(grads["autograd"], grads["zo"], strict=True):
        torch.testing.assert_close(z, a, rtol=1e-3, atol=1e-6)


def _numeric_log(out: Path) -> list[dict[str, str]]:
    with open(out / "log.csv") as fh:
        return [{k: v for k, v in row.items() if k != "elapsed_s"} for row in csv.DictReader(fh)]


def test_resume_reproduces_uninterrupted_run_bit_for_bit(tmp_path: Path) -> None:
    kw = {"stage": "update", "epochs": 2, "runs_per_epoch": 3, "steps": 30, "unroll": 10}
    full = trainer(tmp_path / "full", **kw)
    full.fit()
    part = trainer(tmp_path / "part", **kw)
    assert not part.fit(stop_after_runs=4)["finished"]
    with pytest.raises(ValueError, match="--resume"):
        trainer(tmp_path / "part", **kw)
    with pytest.raises(ValueError, match="different settings"):
        MetaTrainer(MetaConfig(out=str(tmp_path / "part"), **{**QUAD, **kw, "lr": 0.1}),
                    progress=False, resume=True)
    resumed = MetaTrainer(MetaConfig(out=str(tmp_path / "part"), **{**QUAD, **kw}),
                          progress=False, resume=True)
    assert resumed.done == 4
    assert resumed.fit()["finished"]
    for a, b in ((full.update_rnn, resumed.update_rnn),):
        for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert torch.equal(va, vb), k
    for k, v in full.best_state.items():
        assert torch.equal(v, resumed.best_state[k])
    sa, sb = full.adam.state_dict()["state"], resumed.adam.state_dict()["state"]
    assert all(torch.equal(sa[i][m], sb[i][m]) for i in sa for m in sa[i])
    assert _numeric_log(tmp_path / "full") == _numeric_log(tmp_path / "part")
    best = load_file(str(tmp_path / "full" / "update.safetensors"))
    assert all(torch.equal(v, load_file(str(tmp_path / "part" / "update.safetensors"))[k])
               for k, v in best.items())


def test_short_meta_training_beats_init_and_tuned_zo_sgd(tmp_path: Path) -> None:
    """~5 s of stage-1 training on quadratics (d = 10, curvatures in [1, 4] times a per-instance
    scale log-uniform in [0.1, 10]) vs its untrained UpdateRNN and vs ZO-SGD with its learning
    rate tuned on training instances, on the 10 held-out test instances (3 trials each).

    The spread is what a learned optimizer can exploit and one fixed learning rate cannot.
    Measured without it (spread = 1, same budget): tuned ZO-SGD wins, eq. 4-weighted loss
    0.025 vs 0.069, so this test would not hold there."""
    opts = {"task": "quadratic", "task_options": {"spread": 10.0}, "batch": 8, "q": 5}
    tr = MetaTrainer(MetaConfig(out=str(tmp_path), stage="update", epochs=4,
                                runs_per_epoch=8, steps=100, lr=3e-3, **opts), progress=False)
    untrained = {k: v.clone() for k, v in tr.update_rnn.state_dict().items()}
    tr.fit()
    task = make_task("quadratic", spread=10.0)
    w = torch.arange(1, 101, dtype=torch.float64)

    def score(name: str, ids: list[int], **hp: Any) -> tuple[float, float]:
        res = run(make(name, q=5, **hp), task.problem(ids, trials=3, seed=9), 100, seed=9)
        loss = res.loss.double()
        weighted = (w[:, None] * loss[1:]).sum(0) / w.sum()
        return float(loss[-1].mean()), float(weighted.mean())

    train_ids, test_ids = task.instance_ids("train")[:30], task.instance_ids("test")
    grid = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
    best_lr = min(grid, key=lambda lr: score("zo-sgd", train_ids, lr=lr)[0])
    assert best_lr not in (grid[0], grid[-1])  # an interior optimum: the grid is wide enough
    sgd = score("zo-sgd", test_ids, lr=best_lr)
    learned = score("zo-lstm-no-query", test_ids, checkpoint=str(tmp_path / "update"))
    init_rnn = type(tr.update_rnn)(tr.update_rnn.config)
    init_rnn.load_state_dict(untrained)
    init = score("zo-lstm-no-query", test_ids, checkpoint=None, update_rnn=init_rnn)
    assert learned[0] < 0.25 * sgd[0] and learned[1] < 0.8 * sgd[1], (learned, sgd, best_lr)
    assert learned[0] < 0.01 * init[0] and learned[1] < 0.05 * init[1], (learned, init)


def test_cli_meta_train_writes_a_loadable_checkpoint(tmp_path: Path, stage1: Path) -> None:
    out = tmp_path / "q"
    code = main(["meta-train", "--task", "quadratic", "--task-option", "dim=6", "--stage",
                 "query", "--init", str(stage1), "--out", str(out), "--epochs", "1",
                 "--runs-per-epoch", "1", "--steps", "20", "--batch", "2", "--q", "5",
                 "--quiet"])
    assert code == 0
    assert (out / "log.csv").exists() and (out / "trainer_state.pt").exists()
    opt = make("zo-lstm", checkpoint=str(out / "query.safetensors"), q=5)
    hp = opt.hyperparameters()
    assert hp["checkpoint"].endswith("query.safetensors") and len(hp["checkpoint_sha256"]) == 64
    meta = opt_meta = __import__("json").loads((out / "query.json").read_text())
    assert meta["stage"] == "query" and meta["command"].startswith("zol2l meta-train")
    assert {"seed", "created", "training_seconds", "final_validation_loss"} <= set(opt_meta)
    assert main(["meta-train", "--task", "quadratic", "--stage", "query", "--out",
                 str(tmp_path / "x")]) == 2  # no --init: a clear error, exit code 2


def test_init_alpha_warm_start_equals_the_alpha_scaled_optimizer(tmp_path: Path,
                                                                  stage1: Path) -> None:
    """``init_alpha`` scales the warm start's head: the untrained-yet trainer's optimizer makes
    the same steps as the ``init`` optimizer run with update scale ``alpha`` (section 4.3)."""
    tr = trainer(tmp_path, stage="update", init=str(stage1), init_alpha=0.25, epochs=1,
                 runs_per_epoch=1, steps=10)
    problem = tr.task.problem(tr.train_ids[:2], seed=1)
    scaled = run(tr.optimizer(), problem, 10, seed=3).loss
    reference = run(make("zo-lstm-no-query", checkpoint=str(stage1), alpha=0.25, q=5),
                    tr.task.problem(tr.train_ids[:2], seed=1), 10, seed=3).loss
    torch.testing.assert_close(scaled, reference, rtol=1e-6, atol=1e-9)
    assert tr.update_rnn.config.output_scale == 0.25  # a fixed factor, saved with the weights
    warm = load_file(str(stage1))["update.head.weight"]
    assert torch.equal(tr.update_rnn.head.weight.detach(), warm)  # Adam's scale stays sane
    assert "--init-alpha 0.25" in tr.cfg.command()
    with pytest.raises(ValueError, match="init_alpha"):
        MetaConfig(out=str(tmp_path / "x"), task="quadratic", stage="query",
                   init=str(stage1), init_alpha=0.5)


def test_init_alpha_scales_a_fresh_update_rnn(tmp_path: Path) -> None:
    """From scratch, ``init_alpha`` is the fresh UpdateRNN's fixed output scale: its steps are
    ``alpha`` times those of the same seeded network at scale 1."""
    fresh = {alpha: trainer(tmp_path / str(alpha), stage="update", init_alpha=alpha, epochs=1,
                            runs_per_epoch=1, steps=10, input_scale=[1.0])
             for alpha in (1.0, 0.01)}
    assert fresh[0.01].update_rnn.config.output_scale == 0.01
    assert "--init-alpha 0.01" in fresh[0.01].cfg.command()
    problem = fresh[1.0].task.problem(fresh[1.0].train_ids[:2], seed=1)
    steps = {}
    for alpha, tr in fresh.items():
        out = run(tr.optimizer(), problem, 1, seed=3)
        steps[alpha] = out.x - problem.x0
    torch.testing.assert_close(steps[0.01], 0.01 * steps[1.0], rtol=1e-5, atol=1e-12)
