"""`--target` files: the trust model (no pickle ever runs), static-batch exports, input shapes
that do not fit the dataset, and a NaN-returning target (a clear error, strict JSON)."""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import one_line_error

from zol2l.cli import main
from zol2l.modelfiles import UnsafeModelFileError, detect_format
from zol2l.targets import load_target_file


class Tiny(torch.nn.Module):
    """Linear MNIST classifier that predicts class 0 everywhere (a big bias)."""

    def __init__(self, side: int = 28, channels: int = 1) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(channels * side * side, 10)
        with torch.no_grad():
            self.fc.bias[0] = 8.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


class NaNTarget(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 10), float("nan"))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """220 random MNIST-shaped test images, all labelled 0 (Tiny gets every one right)."""
    d = tmp_path_factory.mktemp("mnist")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (220, 28, 28), dtype=np.uint8)
    y = np.zeros(220, dtype=np.uint8)
    np.savez(d / "mnist.npz", x_train=x[:20], y_train=y[:20], x_test=x, y_test=y)
    return d


def export(model: torch.nn.Module, path: Path, batch: int = 2, dynamic: bool = False,
           shape: tuple[int, ...] = (1, 28, 28)) -> Path:
    dims = ({0: torch.export.Dim("batch")},) if dynamic else None
    program = torch.export.export(model.eval(), (torch.rand(batch, *shape),),
                                  dynamic_shapes=dims)
    torch.export.save(program, str(path))
    return path


def attack(target: Path, data_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["attack", "--dataset", "mnist", "--target", str(target), "--data-dir",
            str(data_dir), "--images", "2", "--steps", "3", "--q", "2", "--out", str(out),
            "--quiet", *extra]


def poison(src: Path, dst: Path, marker: Path) -> None:
    """Copy the archive ``src`` with its weights switched to a pickled payload that would
    create ``marker`` when unpickled."""

    class Payload:
        def __reduce__(self):  # noqa: ANN204
            return (exec, (f"open({str(marker)!r}, 'w').close()",))

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("model_weights_config.json"):
                cfg = json.loads(data)
                for entry in cfg["config"].values():
                    entry["use_pickle"] = True
                data = json.dumps(cfg).encode()
            elif item.filename.endswith("data/weights/weight_0"):
                data = pickle.dumps(Payload())
            zout.writestr(item, data)


def test_pickled_pt2_weights_never_run(tmp_path: Path, data_dir: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    good = export(Tiny(), tmp_path / "good.pt2")
    evil = tmp_path / "evil.pt2"
    marker = tmp_path / "PWNED"
    poison(good, evil, marker)
    # the payload is live: torch's own loader runs it ...
    with pytest.raises(Exception):  # noqa: B017 - whatever torch raises after unpickling
        torch.export.load(str(evil))
    assert marker.exists(), "the crafted archive does not carry a working payload"
    marker.unlink()
    # ... zol2l refuses the archive before any loader reads it, and says why
    line = one_line_error(attack(evil, data_dir, tmp_path / "out"), capsys)
    assert "torch.export archive" in line and "use_pickle" in line and "weight" in line
    assert not marker.exists()
    with pytest.raises(UnsafeModelFileError, match="stored as a pickle"):
        load_target_file(evil)
    assert not marker.exists()


def rewrite_program(src: Path, dst: Path, change: Callable[[dict], None]) -> None:
    """Copy the archive ``src`` with its program JSON (models/model.json) changed."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("models/model.json"):
                program = json.loads(data)
                change(program)
                data = json.dumps(program).encode()
            zout.writestr(item, data)


def test_python_in_a_pt2_program_never_runs(tmp_path: Path, data_dir: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "GUARD"
    good = export(Tiny(), tmp_path / "good.pt2", dynamic=True)
    evil = tmp_path / "guard.pt2"
    code = f"L['x'].size()[0] >= 0 and __import__('os').system('touch {marker}') == 0"
    rewrite_program(good, evil, lambda p: p.update(guards_code=[code]))
    # the payload is live: torch's own loader execs the guard, which runs on the first call
    torch.export.load(str(evil)).module()(torch.rand(2, 1, 28, 28))
    assert marker.exists(), "the crafted guard does not run"
    marker.unlink()
    line = one_line_error(attack(evil, data_dir, tmp_path / "out"), capsys)
    assert "guards_code" in line and "not a plain shape check" in line
    assert not marker.exists()

    def call_os(program: dict) -> None:
        program["graph_module"]["graph"]["nodes"][0]["target"] = "torch.os.system"

    shell = tmp_path / "shell.pt2"
    rewrite_program(good, shell, call_os)
    with pytest.raises(UnsafeModelFileError, match="its graph calls 'torch.os.system'"):
        load_target_file(shell)


def test_other_pickles_and_non_models_are_refused(tmp_path: Path) -> None:
    state = tmp_path / "state.pt"
    torch.save(Tiny().state_dict(), state)
    with pytest.raises(UnsafeModelFileError, match="torch.save pickle archive"):
        load_target_file(state)
    legacy = tmp_path / "legacy.pt"
    legacy.write_bytes(pickle.dumps({"weights": [1.0]}))
    with pytest.raises(UnsafeModelFileError, match="no zip archive"):
        load_target_file(legacy)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("m/archive_format", "pt2")
        z.writestr("m/models/model.json", "{}")
        z.writestr("m/data/aotinductor/model.so", b"\x7fELF")
    with pytest.raises(UnsafeModelFileError, match="compiled code"):
        detect_format(buf.getvalue(), "aoti.pt2")
    script = tmp_path / "ts.pt"
    torch.jit.save(torch.jit.script(Tiny()), str(script))
    assert detect_format(script.read_bytes(), "ts.pt") == "torchscript"
    assert detect_format(export(Tiny(), tmp_path / "ok.pt2").read_bytes(), "ok.pt2") == "export"


def test_static_batch_export_runs_in_padded_chunks(tmp_path: Path, data_dir: Path) -> None:
    model = Tiny().eval()
    static = load_target_file(export(model, tmp_path / "static.pt2", batch=4))
    assert static.batch == (4, 4) and static.input_shape == (1, 28, 28)
    for n in (1, 3, 4, 7, 9):
        x = torch.rand(n, 1, 28, 28)
        with torch.no_grad():
            torch.testing.assert_close(static(x), model(x))
    dynamic = load_target_file(export(model, tmp_path / "dyn.pt2", dynamic=True))
    assert dynamic.batch[1] is None
    out = tmp_path / "run"
    assert main(attack(tmp_path / "static.pt2", data_dir, out)) == 0
    data = json.loads((out / "results.json").read_text())
    assert data["optimizers"]["zo-adam"]["queries_per_step"] == [3] * 3


def test_target_shape_that_does_not_fit_the_dataset(tmp_path: Path, data_dir: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    cifar = export(Tiny(32, 3), tmp_path / "cifar.pt2", shape=(3, 32, 32))
    line = one_line_error(attack(cifar, data_dir, tmp_path / "a"), capsys)
    assert "exported for inputs [N, 3, 32, 32]" in line and "[N, 1, 28, 28]" in line
    script = tmp_path / "cifar.pt"
    torch.jit.save(torch.jit.script(Tiny(32, 3)), str(script))
    line = one_line_error(attack(script, data_dir, tmp_path / "b"), capsys)
    assert "fails on mnist images of shape [N, 1, 28, 28]" in line


def test_nan_target_is_a_clear_error_and_writes_no_bad_json(
        tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "nan.pt"
    torch.jit.save(torch.jit.script(NaNTarget()), str(script))
    out = tmp_path / "nan"
    line = one_line_error(attack(script, data_dir, out, "--optimizer", "zo-sgd"), capsys)
    assert "zo-sgd on instance" in line and "trial 0" in line
    assert "the loss is nan at iteration 0" in line
    assert not (out / "results.json").exists()
