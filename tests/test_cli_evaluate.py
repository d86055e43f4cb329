"""`zol2l evaluate` and `zol2l tune` end to end on small binary-classification runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from zol2l.cli import main
from zol2l.tasks import make_task

SCHEMA = {"task", "steps", "q", "instances", "trials", "seed", "device", "seconds", "optimizers"}
BLOCK = {"hyperparameters", "loss_mean", "loss_std", "final_loss_mean", "final_loss_std",
         "queries_per_step", "total_queries", "seconds"}


def test_binary_task_definition() -> None:
    task = make_task("binary-classification", dim=7, n=50, batch=8)
    assert task.instance_ids("train") == list(range(90))
    assert task.instance_ids("test") == list(range(90, 100))
    feats, labels, theta0 = task.dataset(3)
    assert feats.shape == (50, 7) and theta0.shape == (7,)
    assert set(labels.unique().tolist()) <= {0.0, 1.0}
    p = task.problem([90, 91], trials=2, seed=0)
    assert p.ids == [90, 90, 91, 91] and p.trials == [0, 1, 0, 1]
    assert torch.equal(p.x0[0], p.x0[1]) and not torch.equal(p.x0[0], p.x0[2])
    # the loss by hand, at theta0 of row 0
    sig = torch.sigmoid(task.dataset(90)[0] @ p.x0[0])
    by_hand = (task.dataset(90)[1] - sig).square().mean()
    torch.testing.assert_close(p.loss(p.x0)[0], by_hand)
    # one minibatch per iteration, shared by all the queries of the iteration
    p.next_iteration(0)
    pts = p.x0[:, None, :].expand(-1, 3, -1)
    vals = p.objective(pts)
    assert torch.equal(vals[:, 0], vals[:, 1])
    p.next_iteration(1)
    assert not torch.equal(p.objective(pts), vals)


def test_evaluate_writes_json_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "ev"
    code = main(["evaluate", "--optimizers", "zo-sgd,zo-adam,zo-szvrg", "--instances", "2",
                 "--trials", "2", "--steps", "15", "--q", "4", "--dim", "10", "--out",
                 str(out), "--quiet"])
    assert code == 0
    data = json.loads((out / "results.json").read_text())
    assert SCHEMA <= set(data)
    assert data["instances"] == [90, 91] and data["trials"] == 2 and data["steps"] == 15
    for name, block in data["optimizers"].items():
        assert BLOCK <= set(block), name
        assert len(block["loss_mean"]) == 16 and len(block["queries_per_step"]) == 15
        assert block["total_queries"] == sum(block["queries_per_step"])
    assert data["optimizers"]["zo-sgd"]["queries_per_step"] == [5] * 15
    assert (out / "loss.png").stat().st_size > 10_000


def test_tune_then_evaluate_with_hparams(tmp_path: Path) -> None:
    assert main(["tune", "--optimizers", "zo-sgd", "--instances", "2", "--steps", "10",
                 "--q", "4", "--dim", "10", "--out", str(tmp_path), "--quiet"]) == 0
    hp = json.loads((tmp_path / "hparams.json").read_text())
    assert hp["split"] == "train" and hp["instances"] == [0, 1]
    entry = hp["optimizers"]["zo-sgd"]
    tried = [t["final_loss_mean"] for t in entry["trials"]]
    assert len(tried) == 6 + 9 and entry["final_loss_mean"] == min(tried)
    assert main(["evaluate", "--optimizers", "zo-sgd", "--instances", "1", "--steps", "5",
                 "--q", "4", "--dim", "10", "--hparams", str(tmp_path / "hparams.json"),
                 "--out", str(tmp_path / "ev"), "--quiet"]) == 0
    ev = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert ev["optimizers"]["zo-sgd"]["hyperparameters"]["delta"] == \
        entry["hyperparameters"]["delta"]


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["evaluate", "--optimizers", "zo-nope", "--out", str(tmp_path)]) == 2
    assert "unknown optimizer 'zo-nope'" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["evaluate", "--hparams", str(bad), "--out", str(tmp_path)]) == 2
    assert "not a zol2l tune file" in capsys.readouterr().err
