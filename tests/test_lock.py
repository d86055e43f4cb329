"""One run per ``--out``: a second concurrent run is refused naming the first one's pid, a
stale lock is taken over, and ``--resume`` still works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import one_line_error

from zol2l.cli import main
from zol2l.lock import LOCK_NAME, out_lock

SRC = Path(__file__).resolve().parents[1] / "src"


def zol2l(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen([sys.executable, "-c", "import sys; from zol2l.cli import main; "
                             "sys.exit(main(sys.argv[1:]))", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_args(out: Path, seed: int, steps: int) -> list[str]:
    return ["evaluate", "--optimizers", "zo-sgd", "--instances", "2", "--steps", str(steps),
            "--q", "2", "--dim", "8", "--seed", str(seed), "--out", str(out), "--quiet"]


def wait_for_holder(path: Path, pid: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if json.loads(path.read_text() or "{}").get("pid") == pid:
                return
        except (OSError, ValueError):
            pass
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("the first run never took the lock")


def test_two_concurrent_runs_on_one_out(tmp_path: Path) -> None:
    out = tmp_path / "shared"
    first = zol2l(*run_args(out, seed=0, steps=1_000_000))  # killed below
    try:
        wait_for_holder(out / LOCK_NAME, first.pid, first)
        second = zol2l(*run_args(out, seed=1, steps=2))
        _, err = second.communicate(timeout=300)
        lines = err.strip().splitlines()
        assert second.returncode == 2 and len(lines) == 1, err
        assert lines[0].startswith("zol2l: error: ") and f"pid {first.pid}" in lines[0]
        assert "in use by another zol2l run" in lines[0]
        assert not (out / "results.json").exists()
    finally:
        first.kill()
        first.communicate()
    # the first run is dead (kill -9): its lock is stale and the next run takes it over
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == first.pid
    assert main(run_args(out, seed=1, steps=3)) == 0
    assert (out / "results.json").is_file()


def test_resume_takes_the_lock_again(tmp_path: Path) -> None:
    out = tmp_path / "r"
    assert main(run_args(out, seed=0, steps=3)) == 0
    assert main([*run_args(out, seed=0, steps=3), "--resume"]) == 0
    data = json.loads((out / "results.json").read_text())
    assert data["backend"]["reused"] == data["backend"]["units"] == 1


def test_lock_in_process_refuses_a_second_holder(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with out_lock(tmp_path / "x", command="zol2l test"):
        line = one_line_error(run_args(tmp_path / "x", seed=0, steps=1), capsys)
        assert f"pid {os.getpid()}" in line and "zol2l test" in line
    assert main(run_args(tmp_path / "x", seed=0, steps=1)) == 0
