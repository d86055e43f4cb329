"""Every user mistake is one line ``zol2l: error: ...`` with exit code 2; ``--debug`` adds the
traceback; warnings are one ``zol2l: warning:`` line each."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import one_line_error

from zol2l.cli import main

EVAL = ["evaluate", "--optimizers", "zo-sgd", "--instances", "1", "--steps", "2", "--q", "2",
        "--dim", "4", "--quiet"]


def test_bad_devices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = one_line_error([*EVAL, "--out", str(tmp_path), "--device", "bogus"], capsys)
    assert "--device 'bogus' is not a torch device" in line
    cuda = f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"
    line = one_line_error(["attack", "--images", "1", "--out", str(tmp_path), "--device", cuda],
                          capsys)
    assert f"--device {cuda}:" in line and "--device cpu" in line


def _refuse_writes_under(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where neither ``chattr +i`` nor the mode can stop this user (root on a file system
    without immutable files), make the kernel's answer for ``folder`` explicit."""
    real_open, real_mkdir = os.open, os.mkdir

    def denied(path: object) -> bool:
        return str(path).startswith(str(folder))

    def fake_open(path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if denied(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if denied(path) and Path(path) != folder:
            raise PermissionError(13, "Permission denied", str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)


def test_out_is_a_file_or_read_only(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    afile = tmp_path / "results"
    afile.write_text("x")
    line = one_line_error([*EVAL, "--out", str(afile)], capsys)
    assert f"--out {afile} is an existing file" in line
    frozen = tmp_path / "frozen"
    frozen.mkdir()
    immutable = shutil.which("chattr") is not None and subprocess.run(
        ["chattr", "+i", str(frozen)], capture_output=True).returncode == 0
    if not immutable:  # not root: a read-only mode is enough
        frozen.chmod(0o555)
    try:
        (frozen / "probe").touch()
        (frozen / "probe").unlink()
        _refuse_writes_under(frozen, monkeypatch)  # this user can write anyway
    except PermissionError:
        pass  # really read-only
    try:
        line = one_line_error([*EVAL, "--out", str(frozen)], capsys)
        assert f"--out {frozen} is not writable" in line
        line = one_line_error([*EVAL, "--out", str(frozen / "sub")], capsys)
        assert "cannot create the folder" in line
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(frozen)], check=True)
        frozen.chmod(0o755)


def test_truncated_trainer_state(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "meta"
    out.mkdir()
    torch.save({"config": json.dumps({"task": "binary-classification"})}, out / "state.pt")
    data = (out / "state.pt").read_bytes()
    (out / "trainer_state.pt").write_bytes(data[: len(data) // 2])
    line = one_line_error(["meta-train", "--task", "binary-classification", "--stage",
                           "update", "--out", str(out), "--resume", "--quiet"], capsys)
    assert "trainer_state.pt: the file is truncated or corrupt" in line and "delete it" in line


@pytest.mark.parametrize("sidecar,expected", [
    ([], "is not a zol2l-zo-lstm metadata file"),
    ({"format": "zol2l-zo-lstm", "sha256": "0", "modules": {"encoder": {}}},
     "unknown module kind(s) encoder"),
])
def test_bad_checkpoint_sidecar(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                sidecar: object, expected: str) -> None:
    (tmp_path / "ckpt.safetensors").write_bytes(b"\0" * 16)
    (tmp_path / "ckpt.json").write_text(json.dumps(sidecar))
    hp = tmp_path / "hp.json"
    hp.write_text(json.dumps({"optimizers": {"zo-lstm": {"hyperparameters": {
        "checkpoint": str(tmp_path / "ckpt.safetensors")}}}}))
    line = one_line_error(["evaluate", "--optimizers", "zo-lstm", "--hparams", str(hp),
                           "--instances", "1", "--steps", "1", "--dim", "4", "--quiet",
                           "--out", str(tmp_path / "ev")], capsys)
    assert expected in line and "ckpt.json" in line


def test_value_mistakes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "o")
    line = one_line_error([*EVAL, "--out", out, "--seed", str(2**70)], capsys)
    assert f"--seed {2**70} is out of range" in line
    line = one_line_error(["attack", "--c", "-0.5", "--out", out], capsys)
    assert "--c -0.5: the distortion weight must be >= 0" in line
    hp = tmp_path / "hp.json"
    hp.write_text(json.dumps({"optimizers": {"zo-sgd": {"hyperparameters": {"delta": "ten"}}}}))
    line = one_line_error([*EVAL, "--out", out, "--hparams", str(hp)], capsys)
    assert f"{hp}: optimizers.zo-sgd.hyperparameters: 'delta' is 'ten'" in line
    assert "must be a number" in line
    line = one_line_error(["meta-train", "--task", "binary-classification", "--stage", "update",
                           "--task-option", "dim=notjson", "--out", out, "--quiet"], capsys)
    assert "'dim' is 'notjson'" in line and "must be an integer" in line
    line = one_line_error([*EVAL, "--out", out, "--steps", "many"], capsys)
    assert "argument --steps: invalid int value: 'many'" in line


def test_debug_shows_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*EVAL, "--out", str(tmp_path), "--device", "bogus", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.strip().splitlines()[-1].startswith("zol2l: error: --device 'bogus'")


def test_warnings_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hp = tmp_path / "hp.json"
    hp.write_text(json.dumps({"optimizers": {"zo-sgd": {"hyperparameters": {"delta": 1.0}},
                                             "zo-adam": {"hyperparameters": {"delta": 1.0}}}}))
    assert main(["evaluate", "--optimizers", "zo-sgd", "--instances", "50", "--steps", "1",
                 "--q", "2", "--dim", "4", "--quiet", "--hparams", str(hp),
                 "--out", str(tmp_path / "ev")]) == 0
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert any("has hyperparameters for zo-adam, which are not selected" in ln
               for ln in warnings), warnings
    assert any("50 instances requested but the test split of binary-classification has 10"
               in ln for ln in warnings), warnings
    assert all(ln.startswith("zol2l: warning: ") for ln in warnings), warnings
    data = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert len(data["instances"]) == 10


def test_non_torchscript_target_prints_one_line(tmp_path: Path) -> None:
    """In a fresh process (torch's warnings and logged tracebacks go to the real stderr)."""
    target = tmp_path / "state.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), target)
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, "-c", "import sys; from zol2l.cli import main; "
                           "sys.exit(main(sys.argv[1:]))", "attack", "--target", str(target),
                           "--out", str(tmp_path / "o"), "--quiet"],
                          capture_output=True, text=True, env=env, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("zol2l: error: ") and "torch.save pickle archive" in lines[0]
