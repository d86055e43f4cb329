"""The ZO-LSTM modules and optimizers: batching, sampling std, checkpoints, shipped weights."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from conftest import quadratic

from zol2l.estimators import drive
from zol2l.learned import (
    CheckpointError,
    QueryRNN,
    RNNConfig,
    UpdateRNN,
    load_checkpoint,
    mix_and_normalize,
    resolve,
    save_checkpoint,
)
from zol2l.learned.checkpoint import PRETRAINED_DIR, sha256_file
from zol2l.loop import run
from zol2l.optimizers import make

LEARNED = ("zo-lstm", "zo-lstm-no-query", "zo-lstm-no-update", "zo-lstm-guided-es")
PRETRAINED = sorted({p.stem for p in PRETRAINED_DIR.glob("*.safetensors")})


@pytest.mark.parametrize("preprocess", ["scale", "logsign", "none"])
def test_batched_rows_equal_per_row_results_in_one_cell_call(preprocess: str) -> None:
    config = RNNConfig(preprocess=preprocess, input_scale=(3.0, 0.5))
    rnn = QueryRNN(config, seed=3)
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(4, 7, generator=g, dtype=torch.float64) for _ in range(2))
    calls = []
    rnn.cell.register_forward_hook(lambda *args: calls.append(1))
    out, hidden = rnn(a, b)
    out2, _ = rnn(a, b, hidden)
    assert len(calls) == 2  # one cell call per step for all B x d coordinates
    assert out.shape == (4, 7) and hidden[0].shape == (10, 4 * 7)
    for row in range(4):
        single, h1 = rnn(a[row : row + 1], b[row : row + 1])
        torch.testing.assert_close(single[0], out[row], rtol=1e-6, atol=1e-7)
        single2, _ = rnn(a[row : row + 1], b[row : row + 1], h1)
        torch.testing.assert_close(single2[0], out2[row], rtol=1e-6, atol=1e-7)
    # coordinatewise: permuting the coordinates permutes the output
    perm = torch.randperm(7, generator=g)
    torch.testing.assert_close(rnn(a[:, perm], b[:, perm])[0], out[:, perm])


@pytest.mark.parametrize("forget_bias", [None, 2.0])
def test_feature_major_cell_matches_torch_lstm_cell(forget_bias: float | None) -> None:
    """The feature-major cell computes ``torch.nn.LSTMCell`` (gate order i, f, g, o) with the
    same weights; values and gradients agree with the reference, over several steps."""
    rnn = QueryRNN(RNNConfig(forget_bias=forget_bias), seed=5)
    ref = torch.nn.LSTMCell(2, 10, bias=forget_bias is not None)
    with torch.no_grad():
        ref.weight_ih.copy_(rnn.cell.weight_ih)
        ref.weight_hh.copy_(rnn.cell.weight_hh)
        if forget_bias is not None:
            ref.bias_ih.zero_()
            ref.bias_hh.zero_()
            ref.bias_ih[10:20] = rnn.forget_bias
    g = torch.Generator().manual_seed(0)
    hidden, ref_hidden, outs, ref_outs = None, None, [], []
    for _ in range(3):
        a, b = (torch.randn(3, 5, generator=g) for _ in range(2))
        out, hidden = rnn(a, b, hidden)
        feats = torch.stack([a, b], dim=2).reshape(15, 2) * torch.tensor(rnn.config.input_scale)
        ref_hidden = ref(feats, ref_hidden)
        outs.append(out)
        ref_outs.append(1.0 + (ref_hidden[0] @ rnn.head.weight.T).reshape(3, 5))
        torch.testing.assert_close(hidden[0].T, ref_hidden[0])
        torch.testing.assert_close(hidden[1].T, ref_hidden[1])
    torch.testing.assert_close(torch.stack(outs), torch.stack(ref_outs))
    sum(o.sum() for o in outs).backward()
    sum(o.sum() for o in ref_outs).backward()
    torch.testing.assert_close(rnn.cell.weight_hh.grad, ref.weight_hh.grad)
    torch.testing.assert_close(rnn.cell.weight_ih.grad, ref.weight_ih.grad)


def test_untrained_modules_are_small_and_unbiased() -> None:
    upd, qry = UpdateRNN(seed=0), QueryRNN(seed=1)
    zero = torch.zeros(2, 5, dtype=torch.float64)
    assert torch.equal(upd(zero)[0], zero)  # bias-free: no input, no update
    assert torch.equal(qry(zero, zero)[0], torch.ones_like(zero))  # std = 1 + 0
    assert upd.head.weight.abs().max() <= 0.1 / math.sqrt(10)
    assert all(p.dtype == torch.float32 for p in upd.parameters())


def test_mix_and_normalize() -> None:
    g = torch.Generator().manual_seed(0)
    std = torch.rand(64, 9, generator=g, dtype=torch.float64) * 3 - 1  # some negative
    for p in (0.0, 0.5, 1.0):
        out = mix_and_normalize(std, p, torch.Generator().manual_seed(1))
        torch.testing.assert_close(out.norm(dim=1), torch.full((64,), 3.0, dtype=out.dtype))
    assert torch.equal(mix_and_normalize(std, 0.0), torch.ones_like(std))
    expected = std.abs() * 3 / std.abs().norm(dim=1, keepdim=True)
    torch.testing.assert_close(mix_and_normalize(std, 1.0), expected)
    mixed = mix_and_normalize(std, 0.5, torch.Generator().manual_seed(2))
    is_ones = (mixed == 1.0).all(dim=1)
    is_pred = torch.isclose(mixed, expected).all(dim=1)
    assert bool((is_ones ^ is_pred).all())  # X drawn per row, shared by its coordinates
    assert 15 < int(is_ones.sum()) < 49


def test_sampling_std_is_used_and_gradients_flow_through_it() -> None:
    rnn = QueryRNN(seed=0)
    with torch.no_grad():
        rnn.head.weight.mul_(30)  # a QueryRNN that predicts a clearly non-uniform std
    opt = make("zo-lstm", checkpoint=None, query_rnn=rnn, p_query=1.0, q=4)
    problem = quadratic(rows=2, dim=5)
    state = opt.init_state(problem.x0)
    out = drive(opt.step(problem.x0, state, torch.Generator()), problem_oracle(problem))
    out = drive(opt.step(out.x, state, torch.Generator()), problem_oracle(problem))
    assert out.extras["std"].std() > 0.01
    assert out.extras["std_pred"].requires_grad  # graph kept outside no_grad (meta-training)


def problem_oracle(problem):  # noqa: ANN001, ANN201
    from zol2l.oracle import Oracle

    return Oracle(problem.objective, problem.dim, mode="problems")


def test_hyperparameters_and_errors(tmp_path: Path) -> None:
    hp = make("zo-lstm", checkpoint=None, q=7, p_query=0.25, alpha=2.0).hyperparameters()
    assert hp == {"q": 7, "mu": None, "alpha": 2.0, "p_query": 0.25, "checkpoint": None}
    hp = make("zo-lstm-no-update", checkpoint=None, delta=3.0).hyperparameters()
    assert hp["delta"] == 3.0 and "alpha" not in hp
    assert make("zo-lstm-guided-es", checkpoint=None).hyperparameters()["guide_alpha"] == 0.5
    with pytest.raises(ValueError, match="no learning rate"):
        make("zo-lstm", checkpoint=None, lr=0.1)
    with pytest.raises(ValueError, match="p_query"):
        make("zo-lstm-no-query", checkpoint=None, p_query=0.5)
    path = save_checkpoint(tmp_path / "u.safetensors", {"update": UpdateRNN(seed=4)},
                           {"stage": "update"})
    with pytest.raises(CheckpointError, match="no query module"):
        make("zo-lstm", checkpoint=str(path))
    opt = make("zo-lstm-no-query", checkpoint=str(path))
    assert opt.hyperparameters()["checkpoint_sha256"] == sha256_file(path)
    with pytest.raises(CheckpointError, match="expected"):
        make("zo-lstm-no-query", checkpoint=str(path), checkpoint_sha256="0" * 64)


def test_forget_gate_bias_is_the_only_bias_and_round_trips(tmp_path: Path) -> None:
    plain, biased = UpdateRNN(seed=4), UpdateRNN(RNNConfig(forget_bias=0.0), seed=4)
    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    h_biased = h_plain = None
    for _ in range(3):  # a zero forget bias is the bias-free LSTM, step after step
        out, h_biased = biased(x, h_biased)
        ref, h_plain = plain(x, h_plain)
        torch.testing.assert_close(out, ref)
    rnn = UpdateRNN(RNNConfig(forget_bias=3.0), seed=4)
    zero = torch.zeros(2, 5, dtype=torch.float64)
    assert torch.equal(rnn(zero)[0], zero)  # still no drift: no input, no update
    # the bias sets the memory: after one pulse, a larger forget bias keeps more of it
    pulse = torch.ones(1, 1, dtype=torch.float64)

    def memory(model: UpdateRNN) -> float:
        _, (h, c) = model(pulse)
        for _ in range(10):
            _, (h, c) = model(torch.zeros_like(pulse), (h, c))
        return float(c.abs().sum())
    assert memory(rnn) > 10 * memory(plain)
    out = rnn(x, rnn(x)[1])[0].sum()  # the forget gate acts from the second step on
    out.backward()
    assert rnn.forget_bias.grad is not None and bool(rnn.forget_bias.grad.abs().sum() > 0)
    path = save_checkpoint(tmp_path / "fb", {"update": rnn}, {"stage": "update"})
    loaded = load_checkpoint(path).modules["update"]
    assert loaded.config.forget_bias == 3.0
    torch.testing.assert_close(loaded(x)[0], rnn(x)[0])


def test_checkpoint_roundtrip_and_corruption(tmp_path: Path) -> None:
    upd = UpdateRNN(RNNConfig(input_scale=(7.0,)), seed=1)
    qry = QueryRNN(RNNConfig(preprocess="logsign"), seed=2)
    path = save_checkpoint(tmp_path / "c", {"update": upd, "query": qry}, {"stage": "query"})
    assert path.suffix == ".safetensors" and not list(tmp_path.glob("*.tmp"))
    ckpt = load_checkpoint(path)
    assert ckpt.modules["update"].config == upd.config
    assert ckpt.modules["query"].config.preprocess == "logsign"
    for mod in (upd, qry):
        loaded = ckpt.modules[mod.kind].state_dict()
        assert all(torch.equal(v, loaded[k]) for k, v in mod.state_dict().items())
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupt: sha256"):
        load_checkpoint(path)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="corrupt"):
        make("zo-lstm", checkpoint=str(path))
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError, match="no pretrained optimizer 'nope'"):
        resolve("pretrained:nope")


def test_both_stages_are_shipped_for_the_paper_tasks() -> None:
    for task in ("binary-classification", "mnist-attack", "cifar10-attack"):
        assert {f"{task}-update", f"{task}-query"} <= set(PRETRAINED), task


def test_cifar10_zo_lstm_is_trained_from_scratch() -> None:
    """``pretrained:cifar10-attack`` was meta-trained on the CIFAR-10 attack from scratch (no
    warm start in stage 1, stage 2 from its own stage 1), at the paper's c = 0.25;
    the MNIST optimizer finetuned there ships as ``cifar10-attack-finetune``."""
    update, query = (json.loads((PRETRAINED_DIR / f"cifar10-attack-{s}.json").read_text())
                     for s in ("update", "query"))
    for meta in (update, query):
        assert meta["task"] == "cifar10-attack" and meta["task_options"]["c"] == 0.25
        assert meta["finished"] and "--task cifar10-attack" in meta["command"]
    assert update["config"]["init"] is None and "--init" not in update["command"].split()
    assert query["init_sha256"] == update["sha256"]
    finetune = json.loads((PRETRAINED_DIR / "cifar10-attack-finetune-update.json").read_text())
    assert finetune["config"]["init"] == "pretrained:mnist-attack"


@pytest.mark.parametrize("stem", PRETRAINED)
def test_pretrained_checkpoints_load_and_match_sha256(stem: str, tmp_path: Path) -> None:
    path = PRETRAINED_DIR / f"{stem}.safetensors"
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["sha256"] == sha256_file(path)
    for key in ("command", "seed", "created", "training_seconds", "final_validation_loss",
                "stage", "task"):
        assert key in meta, key
    assert meta["command"].startswith("zol2l meta-train")
    name, stage = stem.rsplit("-", 1)
    assert stage == meta["stage"]
    ckpt = load_checkpoint(f"pretrained:{name}", stage)
    assert set(ckpt.modules) == ({"update"} if stage == "update" else {"update", "query"})
    if stage == "query":  # stage 2 kept the stage-1 UpdateRNN bitwise
        stage1 = load_checkpoint(f"pretrained:{name}", "update").modules["update"].state_dict()
        assert all(torch.equal(v, stage1[k])
                   for k, v in ckpt.modules["update"].state_dict().items())
    # a corrupted copy is refused with a clear error
    bad = tmp_path / path.name
    shutil.copy(path, bad)
    shutil.copy(path.with_suffix(".json"), bad.with_suffix(".json"))
    raw = bytearray(bad.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    bad.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(bad)


def test_shipped_defaults() -> None:
    """The general optimizer is the default; ``zo-lstm-no-update`` (ZO-SGD's update with eq.
    3's QueryRNN) keeps the paper's binary-classification checkpoint."""
    for name in LEARNED:
        hp = make(name).hyperparameters()
        expected = "pretrained:binary-classification" if name == "zo-lstm-no-update" \
            else "pretrained:general"
        assert hp["checkpoint"] == expected, name
        assert len(hp["checkpoint_sha256"]) == 64


@pytest.mark.parametrize("name", LEARNED)
def test_untrained_weights_run_and_batch_rows_independently(name: str) -> None:
    problem = quadratic(rows=3, dim=6, seed=2)
    opt = make(name, checkpoint=None, q=4, **({"lr": 0.01} if "no-update" in name else {}))
    res = run(opt, problem, 15, seed=5)
    assert res.queries == [5] * 15 and bool(torch.isfinite(res.loss).all())
