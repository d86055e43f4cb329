"""`zol2l reproduce generalization` (section 4.3): the MNIST-trained optimizer on other tasks."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import needs_data, run_quick

from zol2l.experiments.options import RunOptions
from zol2l.experiments.reproduce import Context
from zol2l.experiments.reproduce.generalization import (
    TRANSFER,
    finite,
    rel_diff,
    unavailable,
)
from zol2l.tasks import make_task


@needs_data
def test_generalization_quick_runs_and_reports(tmp_path: Path) -> None:
    ctx, payload, saved, cifar_missing = run_quick("generalization", tmp_path)
    assert saved["protocol"]["source"] == "pretrained:mnist-attack"
    for target in ("binary-classification", "cifar10-attack"):
        res, proto = saved["results"][target], saved["protocol"]["targets"][target]
        if target == "cifar10-attack" and cifar_missing:
            assert "skipped" in res
            continue
        assert set(res["optimizers"]) == {"zo-sgd", "zo-lstm", TRANSFER}
        moved = res["optimizers"][TRANSFER]["hyperparameters"]
        assert moved["checkpoint"] == "pretrained:mnist-attack"
        assert moved["alpha"] == res["alpha"] == proto["alpha_tuning"]["best"]
        assert res["optimizers"]["zo-lstm"]["hyperparameters"]["checkpoint"] == \
            f"pretrained:{target}"
        tuning = proto["alpha_tuning"]
        assert tuning["split"] == "train"
        task = ctx.task(target)
        assert set(tuning["instances"]) <= set(task.instance_ids("train"))
        assert not set(tuning["instances"]) & set(proto["test_ids"])
        assert proto["test_ids"] == task.instance_ids("test")[: proto["instances"]]
    assert len(saved["checks"]) == 4
    for check in saved["checks"]:
        assert set(check) == {"claim", "holds", "evidence"}
        assert check["holds"] in (True, False, None)
        if check["claim"].startswith("CIFAR") and cifar_missing:
            assert check["holds"] is None
    assert payload["figures"] == ["generalization.png"]
    assert (tmp_path / "generalization.png").stat().st_size > 5000


def test_unavailable_names_missing_files(tmp_path: Path) -> None:
    ctx = Context(tmp_path, options=RunOptions(progress=False))
    assert unavailable(ctx, "binary-classification") is None
    reason = unavailable(ctx, "quadratic")  # a learned optimizer but no tuned baselines
    assert reason is not None and "quadratic" in reason


def test_helpers() -> None:
    assert finite(None) == math.inf and finite(float("nan")) == math.inf and finite("2") == 2.0
    assert rel_diff(1.1, 1.0) == pytest.approx(0.1)
    assert rel_diff(math.inf, 1.0) == math.inf
    assert make_task("binary-classification").instance_ids("test") == list(range(90, 100))
