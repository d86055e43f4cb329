"""`zol2l reproduce fig3` (Figure 3, binary classification) and the train-only alpha tuning."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from zol2l.experiments.options import RunOptions
from zol2l.experiments.reproduce import Context, run_experiment
from zol2l.experiments.reproduce.generalization import TRANSFER, tune_alpha
from zol2l.tasks import make_task


def test_fig3_quick_runs_and_reports(tmp_path: Path) -> None:
    ctx = Context(tmp_path, quick=True, options=RunOptions(progress=False))
    payload = run_experiment("fig3", ctx)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["experiment"] == "fig3" and saved["quick"] is True
    for key in ("protocol", "results", "checks", "figures", "paper", "machine", "seconds"):
        assert key in saved, key
    panel = saved["results"]["a"]["optimizers"]
    assert set(panel) == {"zo-sgd", "zo-signsgd", "zo-adam", "zo-szvrg", "zo-guided-es",
                          "zo-lstm", TRANSFER}
    steps = saved["protocol"]["steps"]
    for block in panel.values():
        assert len(block["loss_mean"]) == steps + 1
        assert len(block["final_loss"]) == saved["protocol"]["instances"] * \
            saved["protocol"]["trials"]
    # (b)-(d): both optimizers at every grid value, at the grid's q/b/d
    for key, grid in saved["protocol"]["grids"].items():
        assert len(grid) >= 2
        assert set(saved["results"]["sweeps"][key]) == {str(v) for v in grid}
        for value, blocks in saved["results"]["sweeps"][key].items():
            assert set(blocks) == {"zo-sgd", "zo-lstm"}
            if key == "q":
                assert blocks["zo-sgd"]["hyperparameters"]["q"] == int(value)
                assert blocks["zo-lstm"]["hyperparameters"]["q"] == int(value)
    assert panel[TRANSFER]["hyperparameters"]["checkpoint"] == "pretrained:mnist-attack"
    assert panel[TRANSFER]["hyperparameters"]["alpha"] == saved["results"]["alpha"]
    # the finetune's alpha was chosen on TRAINING datasets, never on the test ones
    tuning = saved["protocol"]["finetune"]["alpha_tuning"]
    task = make_task("binary-classification")
    assert tuning["split"] == "train" and tuning["instances"]
    assert set(tuning["instances"]) <= set(task.instance_ids("train"))
    assert not set(tuning["instances"]) & set(saved["protocol"]["test_ids"])
    assert set(saved["protocol"]["test_ids"]) <= set(task.instance_ids("test"))
    assert tuning["best"] in tuning["grid"] and len(tuning["scores"]) == len(tuning["grid"])
    assert len(saved["checks"]) == 4
    for check in saved["checks"]:
        assert set(check) == {"claim", "holds", "evidence"}
        assert check["holds"] in (True, False, None) and check["evidence"]
    assert payload["figures"] == ["fig3.png"]
    assert (tmp_path / "fig3.png").stat().st_size > 5000


class FakeContext:
    """Stands in for Context.evaluate: the score of alpha depends on the split, so tuning on
    the test split would pick another alpha."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def evaluate(self, task: Any, optimizers: dict[str, dict[str, Any]], *, tag: str,
                 **kwargs: Any) -> dict[str, Any]:
        self.calls.append({"tag": tag, **kwargs, "optimizers": optimizers})
        alpha = optimizers["zo-lstm"]["alpha"]
        best = 0.5 if kwargs.get("split", "test") == "train" else 2.0
        score = abs(math.log(alpha / best)) + (math.inf if alpha == 10.0 else 0.0)
        ids = task.instance_ids(kwargs.get("split", "test"))[: kwargs["instances"]]
        return {"instances": ids, "optimizers": {"zo-lstm": {"final_loss_mean": score}}}


def test_alpha_tuning_picks_by_train_score_only() -> None:
    task = make_task("binary-classification")
    ctx = FakeContext()
    grid = (0.1, 0.5, 1.0, 2.0, 10.0)
    out = tune_alpha(ctx, task, "pretrained:mnist-attack", grid=grid, instances=3, trials=1,
                     steps=5, q=20, tag="t")  # type: ignore[arg-type]
    assert [c["split"] for c in ctx.calls] == ["train"] * len(grid)
    assert [c["optimizers"]["zo-lstm"]["alpha"] for c in ctx.calls] == list(grid)
    assert all(c["optimizers"]["zo-lstm"]["checkpoint"] == "pretrained:mnist-attack"
               for c in ctx.calls)
    assert out["best"] == 0.5  # the test split would say 2.0
    assert out["split"] == "train" and out["instances"] == task.instance_ids("train")[:3]
    assert out["scores"]["10"] is None  # diverged: recorded as null, never chosen
    assert out["scores"]["0.5"] == pytest.approx(0.0)


def test_alpha_tuning_ties_prefer_alpha_near_one() -> None:
    class Flat(FakeContext):
        def evaluate(self, task: Any, optimizers: Any, *, tag: str, **kwargs: Any) -> Any:
            return {"instances": [0], "optimizers": {"zo-lstm": {"final_loss_mean": math.nan}}}

    out = tune_alpha(Flat(), make_task("binary-classification"), "x", grid=(0.1, 2.0, 1.0),
                     instances=1, trials=1, steps=1, q=1, tag="t")  # type: ignore[arg-type]
    assert out["best"] == 1.0
    with pytest.raises(ValueError):
        tune_alpha(Flat(), make_task("binary-classification"), "x", grid=(), instances=1,
                   trials=1, steps=1, q=1, tag="t")  # type: ignore[arg-type]
