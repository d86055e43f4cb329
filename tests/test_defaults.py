"""The CLI and the harness default to the shipped tuned and pretrained settings; --ids, --set,
--checkpoint, labels, tune's alpha and --grid, meta-train's flags, --init-noise, ZOAttack."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from conftest import DATA, needs_data

import zol2l
from zol2l.cli import build_parser, main
from zol2l.cli_options import parse_ids, parse_set
from zol2l.experiments.defaults import read_hparams, tuned_path
from zol2l.experiments.evaluate import evaluate
from zol2l.experiments.options import RunOptions
from zol2l.meta.cli import config_from_args
from zol2l.optimizers import get_class
from zol2l.optimizers.zo_lstm import DEFAULT_CHECKPOINT
from zol2l.tasks import make_task

QUICK = ["--instances", "1", "--steps", "2", "--q", "3", "--quiet"]


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def test_evaluate_records_the_shipped_tuned_deltas(tmp_path: Path) -> None:
    assert main(["evaluate", "--task", "binary-classification", *QUICK,
                 "--out", str(tmp_path)]) == 0
    shipped = read_hparams(tuned_path("binary-classification"))
    blocks = results(tmp_path)["optimizers"]
    assert set(blocks) == set(shipped)
    for name, block in blocks.items():
        for key, value in shipped[name].items():
            if key == "q":
                assert block["hyperparameters"]["q"] == 3
                assert block["hyperparameter_sources"]["q"] == "user"
                continue
            assert block["hyperparameters"][key] == value, (name, key)
            assert block["hyperparameter_sources"][key].startswith("tuned:"), (name, key)


def test_hparams_none_gives_the_raw_defaults(tmp_path: Path) -> None:
    assert main(["evaluate", "--optimizers", "zo-sgd", "--hparams", "none", *QUICK,
                 "--out", str(tmp_path)]) == 0
    block = results(tmp_path)["optimizers"]["zo-sgd"]
    assert block["hyperparameters"]["delta"] == get_class("zo-sgd").default_delta
    assert block["hyperparameter_sources"]["delta"] == "default"


def test_labels_set_checkpoint_and_ids(tmp_path: Path) -> None:
    assert main(["evaluate", "--optimizers", "zo-lstm@small,zo-lstm,zo-sgd", "--ids", "91,93",
                 "--set", "zo-lstm@small.alpha=0.2", "--set", "zo-sgd.delta=3",
                 "--checkpoint", "zo-lstm=pretrained:binary-classification",
                 "--steps", "3", "--q", "3", "--quiet", "--out", str(tmp_path)]) == 0
    payload = results(tmp_path)
    assert payload["instances"] == [91, 93]
    small, plain = payload["optimizers"]["zo-lstm@small"], payload["optimizers"]["zo-lstm"]
    assert small["hyperparameters"]["alpha"] == 0.2 and plain["hyperparameters"]["alpha"] == 1.0
    assert small["hyperparameter_sources"]["alpha"] == "user"
    assert plain["hyperparameter_sources"]["checkpoint"] == "user"
    assert small["final_loss"] != plain["final_loss"]
    assert payload["optimizers"]["zo-sgd"]["hyperparameters"]["delta"] == 3
    assert main(["evaluate", "--optimizers", "zo-sgd", "--set", "zo-adam.delta=1", *QUICK,
                 "--out", str(tmp_path)]) == 2  # names an optimizer the run does not have


def test_learned_optimizer_gets_its_task_checkpoint_or_the_general_default() -> None:
    binary = make_task("binary-classification")
    quad = make_task("quadratic")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = evaluate(binary, {"zo-lstm": {"q": 3}}, instances=1, steps=1,
                     options=RunOptions(progress=False))
        b = evaluate(quad, {"zo-lstm-no-query": {"q": 3}}, instances=1, steps=1,
                     options=RunOptions(progress=False))
    assert a["optimizers"]["zo-lstm"]["hyperparameters"]["checkpoint"] == \
        "pretrained:binary-classification"
    got = b["optimizers"]["zo-lstm-no-query"]
    expected = "pretrained:quadratic" if (Path(zol2l.__file__).parent / "pretrained" /
                                          "quadratic-query.safetensors").exists() \
        else DEFAULT_CHECKPOINT
    assert got["hyperparameters"]["checkpoint"] == expected


def test_checkpoint_of_another_task_warns() -> None:
    with pytest.warns(UserWarning, match="trained with task 'mnist-attack'"):
        evaluate(make_task("binary-classification"),
                 {"zo-lstm": {"checkpoint": "pretrained:mnist-attack", "q": 3}}, instances=1,
                 steps=1, options=RunOptions(progress=False))


def test_tune_alpha_of_zo_lstm_with_a_grid_override_warns_on_the_edge(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["tune", "--optimizers", "zo-lstm,zo-sgd", "--ids", "0", "--steps", "3",
                 "--q", "3", "--grid", "coarse=0.5,2", "--grid", "refine=1",
                 "--quiet", "--out", str(tmp_path)])
    assert code == 0
    err = capsys.readouterr().err  # the CLI prints each warning as one line
    assert "zol2l: warning:" in err and "zo-lstm: the best coarse alpha lies on the edge" in err
    payload = json.loads((tmp_path / "hparams.json").read_text())
    entry = payload["optimizers"]["zo-lstm"]
    assert entry["tuned"] == "alpha" and entry["hyperparameters"]["alpha"] in (0.5, 2.0)
    assert entry["on_edge"] and payload["instances"] == [0]
    assert entry["hyperparameters"]["checkpoint"] == "pretrained:binary-classification"
    assert payload["optimizers"]["zo-sgd"]["hyperparameters"]["delta"] in (0.5, 2.0)


def test_option_parsing() -> None:
    assert parse_ids("3,17,40-42") == [3, 17, 40, 41, 42]
    assert parse_set("zo-lstm@a0.2.alpha=0.2") == ("zo-lstm@a0.2", "alpha", 0.2)
    assert parse_set("zo-lstm.checkpoint=pretrained:x") == ("zo-lstm", "checkpoint",
                                                           "pretrained:x")
    args = build_parser().parse_args(
        ["meta-train", "--task", "mnist-attack", "--stage", "update", "--out", "o",
         "--box", "clamp", "--target", "t.pt", "--ids", "1,2,3", "--no-progress"])
    cfg = config_from_args(args)
    assert cfg.ids == [1, 2, 3] and cfg.task_options == {"box": "clamp", "target": "t.pt"}
    assert args.quiet and "--ids 1,2,3" in cfg.command()
    args = build_parser().parse_args(["attack", "--optimizers", "zo-sgd", "--out", "o",
                                      "--no-progress"])
    assert args.quiet and args.optimizers == "zo-sgd"


@needs_data
def test_attack_zo_lstm_records_the_mnist_checkpoint(tmp_path: Path) -> None:
    assert main(["attack", "--dataset", "mnist", "--optimizer", "zo-lstm", "--ids", "0",
                 "--steps", "2", "--data-dir", str(DATA), "--out", str(tmp_path),
                 "--quiet"]) == 0
    block = results(tmp_path)["optimizers"]["zo-lstm"]
    assert block["hyperparameters"]["checkpoint"] == "pretrained:mnist-attack"
    assert block["hyperparameter_sources"]["checkpoint"] == "pretrained for mnist-attack"
    assert results(tmp_path)["instances"] == [0]


@needs_data
def test_init_noise_perturbs_the_start() -> None:
    task = make_task("mnist-attack", data_dir=str(DATA), box="clamp")
    ids = task.instance_ids("test")[:2]
    plain, noisy = task.problem(ids, seed=3), task.problem(ids, seed=3, init_noise=1e-4)
    spread = (noisy.x0 - plain.x0).std().item()
    assert 0.5e-4 < spread < 2e-4
    assert torch.equal(noisy.x0, task.problem(ids, seed=3, init_noise=1e-4).x0)


@needs_data
def test_zoattack_misclassified_wherever_it_reports_success() -> None:
    task = make_task("mnist-attack", data_dir=str(DATA))
    rows = task.problem(task.instance_ids("test")[:3])
    images = rows.images.reshape(-1, 1, 28, 28)
    atk = zol2l.ZOAttack(task.target, optimizer="zo-lstm", steps=60, q=20, c=0.1)
    adv = atk(images, rows.labels)
    success = torch.tensor(atk.last_result["success"])
    assert adv.shape == images.shape and success.any()
    with torch.no_grad():
        pred = task.target(adv).argmax(1)
    assert bool((pred[success] != rows.labels[success]).all())
    assert torch.equal(adv[~success], images[~success])
    assert atk.last_result["hyperparameters"]["checkpoint"] == "pretrained:mnist-attack"
    assert atk.last_result["success_rate"] == pytest.approx(float(success.double().mean()))
    with pytest.raises(ValueError, match="'bogus'"):
        zol2l.ZOAttack(task.target, bogus=1)


@needs_data
def test_checkpoint_trained_with_another_box_warns() -> None:
    task = make_task("mnist-attack", data_dir=str(DATA), box="clamp")
    with pytest.warns(UserWarning, match="box 'tanh' \\(this run: 'clamp'\\)"):
        evaluate(task, {"zo-lstm": {}}, instances=1, steps=1, options=RunOptions(progress=False))
