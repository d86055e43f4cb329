"""Tests for zol2l.targets and zol2l.train_target (tiny synthetic data, CPU, a few seconds)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from zol2l.targets import (
    WeightsError,
    accuracy,
    build_target,
    load_pretrained_target,
    load_target_file,
)
from zol2l.train_target import (
    add_arguments,
    augment,
    load_safetensors,
    save_safetensors,
    train_target,
)


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 48, dtype=np.uint8)
    x = rng.integers(0, 60, (48, 28, 28), dtype=np.uint8)
    for i, label in enumerate(y):  # a learnable signal: a bright bar whose row is the label
        x[i, 4 + 2 * label: 6 + 2 * label, 4:24] = 250
    np.savez(d / "mnist.npz", x_train=x[:32], y_train=y[:32], x_test=x[32:], y_test=y[32:])
    return d


@pytest.mark.parametrize("name,shape,flat", [("mnist", (1, 28, 28), 1024),
                                             ("cifar10", (3, 32, 32), 3200)])
def test_architectures(name: str, shape: tuple[int, ...], flat: int) -> None:
    model = build_target(name).eval()
    assert model.flat_features == flat
    assert model.features(torch.rand(2, *shape)).shape == (2, flat)
    assert model(torch.rand(5, *shape)).shape == (5, 10)
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == ([32, 32, 64, 64] if name == "mnist"
                                                else [64, 64, 128, 128])
    assert all(c.padding == (0, 0) and c.kernel_size == (3, 3) for c in convs)
    fcs = [m for m in model.classifier if isinstance(m, torch.nn.Linear)]
    hidden = 200 if name == "mnist" else 256
    assert [(f.in_features, f.out_features) for f in fcs] == [(flat, hidden), (hidden, hidden),
                                                              (hidden, 10)]
    with pytest.raises(ValueError, match="unknown target"):
        build_target("imagenet")


def test_train_writes_weights_and_metadata(mnist_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "w" / "mnist.safetensors"
    meta = train_target("mnist", mnist_dir, out, epochs=1, batch_size=8, lr=0.05, seed=3,
                        progress=False, command="test")
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved == json.loads(json.dumps(meta))
    for key in ("sha256", "dataset", "recipe", "command", "seed", "epochs", "train_seconds",
                "device", "test_accuracy", "test_images"):
        assert key in saved
    assert saved["test_images"] == 16 and saved["epochs"] == 1 and saved["seed"] == 3
    assert not out.with_suffix(".ckpt").exists()
    state = load_file(str(out))
    assert all(v.dtype == torch.float32 for k, v in state.items() if "num_batches" not in k)
    model = load_pretrained_target("mnist", weights_dir=out.parent)
    assert not model.training
    x, y = np.load(mnist_dir / "mnist.npz")["x_test"], np.load(mnist_dir / "mnist.npz")["y_test"]
    acc = accuracy(model, torch.from_numpy(x)[:, None].float() / 255, torch.from_numpy(y).long(),
                   batch_size=5)
    assert acc == pytest.approx(saved["test_accuracy"])


def test_resume_is_bit_exact(mnist_dir: Path, tmp_path: Path) -> None:
    kw = {"epochs": 2, "batch_size": 8, "lr": 0.05, "seed": 1, "progress": False}
    full = tmp_path / "full.safetensors"
    train_target("mnist", mnist_dir, full, **kw)
    split = tmp_path / "split.safetensors"
    r = train_target("mnist", mnist_dir, split, stop_after=1, **kw)
    assert r["stopped_after_epoch"] == 1 and not split.exists()
    assert split.with_suffix(".ckpt").exists()
    with pytest.raises(ValueError, match="differs"):
        train_target("mnist", mnist_dir, split, resume=True, **{**kw, "seed": 2})
    meta = train_target("mnist", mnist_dir, split, resume=True, **kw)
    a, b = load_file(str(full)), load_file(str(split))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert meta["sha256"] == json.loads(full.with_suffix(".json").read_text())["sha256"]
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train_target("mnist", mnist_dir, tmp_path / "none.safetensors", resume=True, **kw)


def test_pretrained_errors(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"not found.*zol2l train-target --dataset cifar10"):
        load_pretrained_target("cifar10", weights_dir=tmp_path)
    model = build_target("mnist")
    path = tmp_path / "mnist.safetensors"
    save_safetensors(model.state_dict(), path)
    from zol2l.targets import sha256_file

    (tmp_path / "mnist.json").write_text(json.dumps({"sha256": sha256_file(path),
                                                     "dataset": "mnist"}))
    assert not load_pretrained_target("mnist", weights_dir=tmp_path).training
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(WeightsError, match=r"mnist.safetensors: sha256 mismatch"):
        load_pretrained_target("mnist", weights_dir=tmp_path)


def test_fallback_safetensors_writer_matches_library(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    state = build_target("mnist").state_dict()
    lib = tmp_path / "lib.safetensors"
    save_safetensors(state, lib)
    import sys

    monkeypatch.setitem(sys.modules, "safetensors.torch", None)  # import now raises ImportError
    own = tmp_path / "own.safetensors"
    save_safetensors(state, own, {"dataset": "mnist"})
    mine = load_safetensors(own)
    monkeypatch.undo()
    theirs = load_file(str(own))
    assert all(torch.equal(theirs[k], state[k]) and torch.equal(mine[k], state[k]) for k in state)


def test_load_target_file_torchscript(tmp_path: Path) -> None:
    model = build_target("mnist").eval()
    path = tmp_path / "m.pt"
    torch.jit.save(torch.jit.trace(model, torch.rand(2, 1, 28, 28)), str(path))
    loaded = load_target_file(path)
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-5)
    assert loaded.outputs == "logits"
    assert load_target_file(path, outputs="log_probs").outputs == "log_probs"
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="detected no zip archive"):
        load_target_file(bad)
    with pytest.raises(FileNotFoundError):
        load_target_file(tmp_path / "missing.pt")


def test_cli_parser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                    capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="zol2l")
    add_arguments(parser.add_subparsers(dest="command").add_parser("train-target"))
    args = parser.parse_args(["train-target", "--dataset", "mnist", "--out",
                              str(tmp_path / "m.safetensors"), "--epochs", "3", "--device", "cpu"])
    assert args.epochs == 3 and args.batch_size is None and callable(args.func)
    monkeypatch.delenv("ZOL2L_DATA_DIR", raising=False)
    assert args.func(args) == 2
    assert "ZOL2L_DATA_DIR" in capsys.readouterr().err


def test_augment_shifts_and_flips() -> None:
    x = torch.arange(32, dtype=torch.float32).reshape(2, 1, 4, 4)
    offsets = torch.tensor([[1, 1], [0, 2]])  # (1, 1) is the identity for shift 1
    y = augment(x, 1, "constant", offsets, torch.tensor([False, True]))
    assert torch.equal(y[0], x[0])
    expect = torch.tensor([[0, 0, 0, 0], [0, 19, 18, 17], [0, 23, 22, 21], [0, 27, 26, 25.0]])
    assert torch.equal(y[1, 0], expect)
    r = augment(x, 1, "reflect", offsets, None)
    assert torch.equal(r[1, 0, 0], torch.tensor([21, 22, 23, 22.0]))


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_inference_copy_folds_batchnorm_and_matches_values_and_gradients(name: str) -> None:
    torch.manual_seed(0)
    model = build_target(name)
    for module in model.modules():  # non-trivial running statistics and affine parameters
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.uniform_(module.bias, -0.2, 0.2)
    model.eval()
    fast = model.for_inference()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert not any(p.requires_grad for p in fast.parameters()) and not fast.training
    channels = 1 if name == "mnist" else 3
    side = 28 if name == "mnist" else 32
    x = torch.rand(5, channels, side, side, requires_grad=True)
    ref = model(x)
    out = fast(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    (g_ref,) = torch.autograd.grad(ref[:, 3].sum(), x)
    (g_out,) = torch.autograd.grad(out[:, 3].sum(), x)
    torch.testing.assert_close(g_out, g_ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_attack_forward_matches_reference_network(name: str) -> None:
    """The attack's float32 forward (inference copy, CPU sub-batches of CPU_CHUNK images)
    equals the shipped network's eval-mode log-probabilities to float32 rounding, and the
    sub-batching does not change the values of a one-call forward."""
    from safetensors.torch import load_file

    from zol2l.targets import WEIGHTS_DIR, load_pretrained_target
    from zol2l.tasks.attack import CPU_CHUNK
    from zol2l.tasks.registry import make_task

    reference = build_target(name)
    reference.load_state_dict(load_file(str(WEIGHTS_DIR / f"{name}.safetensors")))
    reference.eval()
    channels, side = (1, 28) if name == "mnist" else (3, 32)
    n = 2 * CPU_CHUNK + 22  # two full sub-batches and a partial one
    images = torch.rand(n, channels, side, side, generator=torch.Generator().manual_seed(1))
    task = make_task(f"{name}-attack", images=images, labels=torch.zeros(n, dtype=torch.long))
    got = task.problem([0])._forward(images.reshape(n, -1))
    with torch.no_grad():
        ref = torch.log_softmax(reference(images), dim=1)
        one_call = torch.log_softmax(load_pretrained_target(name)(images), dim=1)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, ref, rtol=2e-5, atol=2e-5)
    torch.testing.assert_close(got, one_call, rtol=1e-6, atol=1e-6)
