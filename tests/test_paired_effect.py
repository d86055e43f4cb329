"""``bench/paired_effect.py``: the paired ``ref - optimizer`` differences and its JSON."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "paired_effect.py"


@pytest.fixture(scope="module")
def paired_effect():
    spec = importlib.util.spec_from_file_location("paired_effect", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_effects_are_reference_minus_optimizer(paired_effect) -> None:
    blocks = {"a": {"final_loss": [1.0, 2.0, 3.0, 4.0]},
              "ref": {"final_loss": [2.0, 2.5, 4.0, 4.5]}}
    rows = paired_effect.effects(blocks, "ref")
    diff = [1.0, 0.5, 1.0, 0.5]  # ref - a
    mean = sum(diff) / 4
    se = math.sqrt(sum((d - mean) ** 2 for d in diff) / 3 / 4)
    assert rows["a"]["ref_minus_this_mean"] == pytest.approx(mean)
    assert rows["a"]["ref_minus_this_se"] == pytest.approx(se)
    assert rows["a"]["z"] == pytest.approx(mean / se)
    assert rows["a"]["n"] == 4 and rows["a"]["final_loss_mean"] == pytest.approx(2.5)
    assert "ref_minus_this_mean" not in rows["ref"]


def test_identical_runs_have_no_z(paired_effect) -> None:
    blocks = {"a": {"final_loss": [1.0, 2.0]}, "b": {"final_loss": [1.0, 2.0]}}
    row = paired_effect.effects(blocks, "b")["a"]
    assert row["ref_minus_this_mean"] == 0.0 and row["z"] is None


def test_main_writes_strict_json(paired_effect, tmp_path, capsys) -> None:
    out = tmp_path / "effect.json"
    result = paired_effect.main(["--task", "quadratic", "--optimizers", "zo-sgd,zo-adam",
                                 "--instances", "2", "--trials", "2", "--steps", "5",
                                 "--hparams", "none", "--out", str(out)])
    saved = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(c))
    assert saved == json.loads(json.dumps(result))
    assert saved["reference"] == "zo-adam" and saved["split"] == "test"
    assert saved["instances"] == [90, 91] and saved["trials"] == 2
    assert saved["optimizers"]["zo-sgd"]["n"] == 4
    assert "ref_minus_this_se" in saved["optimizers"]["zo-sgd"]
    assert "zo-adam - this" in capsys.readouterr().out
