"""bench/reuse_peer.py: a peer's entries carried into a run that left it out."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "reuse_peer.py"


def _entry(score: float) -> dict:
    return {"score": score, "final": [10.0 ** score], "best": [10.0 ** score],
            "queries_to": {"0.1": [5], "0.01": [None], "0.0001": [None]},
            "above_start": 0, "queries": [1000]}


def _payload(peers: list[str], lstm: float, cma: float | None) -> dict:
    table = {"zo-lstm": _entry(lstm), "zo-adam": _entry(-0.5)}
    if cma is not None:
        table["cma-es"] = _entry(cma)
    problem = {"problem": "sphere-d10", "label": "sphere", "task": "bbob",
               "options": {"function": "sphere", "dim": 10, "noise": 0.0},
               "budgets": {"100": table}}
    return {"held_out": {}, "targets": [0.1, 0.01, 0.0001],
            "size": {"functions": ["sphere"], "dims": [10], "noises": [0.0],
                     "budgets": [100], "instances": 1, "binary": False},
            "q": 20, "seed": 0, "tuned_delta": {}, "peers": peers, "problems": [problem],
            "seconds": 1.0}


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,
                          text=True, check=False)


def test_the_peer_is_carried_over_checked_and_the_wins_recomputed(tmp_path: Path) -> None:
    old = _payload(["cma-es"], lstm=-1.0, cma=-3.0)
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "check.json").write_text(json.dumps(old))
    run = tmp_path / "new"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(_payload([], lstm=-4.0, cma=None)))
    done = _run(str(run), "--from", str(tmp_path / "old.json"), "--peer", "cma-es",
                "--check", str(tmp_path / "check.json"))
    assert done.returncode == 0, done.stderr
    new = json.loads((run / "results.json").read_text())
    assert new["problems"][0]["budgets"]["100"]["cma-es"] == old["problems"][0]["budgets"][
        "100"]["cma-es"]
    assert new["peers"] == ["cma-es"] and new["reused"]["cma-es"]["checked_entries"] == 1
    assert new["wins"]["cma-es"]["wins"] == 1  # -4.0 beats the carried -3.0
    assert (run / "tables.md").exists() and (run / "ecdf.png").exists()


def test_a_different_suite_or_a_changed_peer_is_refused(tmp_path: Path) -> None:
    old = _payload(["cma-es"], lstm=-1.0, cma=-3.0)
    (tmp_path / "old.json").write_text(json.dumps(old))
    other = copy.deepcopy(old)
    other["problems"][0]["budgets"]["100"]["cma-es"]["score"] = -2.0
    (tmp_path / "check.json").write_text(json.dumps(other))
    run = tmp_path / "new"
    run.mkdir()
    new = _payload([], lstm=-4.0, cma=None)
    (run / "results.json").write_text(json.dumps(new))
    done = _run(str(run), "--from", str(tmp_path / "old.json"), "--peer", "cma-es",
                "--check", str(tmp_path / "check.json"))
    assert done.returncode != 0 and "cma-es differs on sphere-d10" in done.stderr
    new["seed"] = 1
    (run / "results.json").write_text(json.dumps(new))
    done = _run(str(run), "--from", str(tmp_path / "old.json"), "--peer", "cma-es")
    assert done.returncode != 0 and "the runs differ in seed" in done.stderr
