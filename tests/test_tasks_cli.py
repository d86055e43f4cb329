"""Every registered task through ``zol2l evaluate`` and ``zol2l tune``; task options built
from the families' declarations; every option's default in ``--help``; a lazy ``zol2l``."""

from __future__ import annotations

import argparse
import inspect
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA, needs_data

from zol2l.cli import DefaultsFormatter, build_parser, main
from zol2l.tasks import available_tasks, task_class
from zol2l.tasks.attack import AttackFamily

TASKS = [pytest.param(name, marks=needs_data) if issubclass(task_class(name), AttackFamily)
         else name for name in available_tasks()]


def _task_args(name: str) -> list[str]:
    data = ["--data-dir", str(DATA)] if issubclass(task_class(name), AttackFamily) else []
    return ["--task", name, "--instances", "1", "--steps", "2", "--q", "2", "--optimizers",
            "zo-sgd", "--quiet", *data]


def _finite(values: list[float]) -> bool:
    return all(math.isfinite(v) for v in values)


@pytest.mark.parametrize("name", TASKS)
def test_every_task_runs_through_evaluate_and_tune(name: str, tmp_path: Path) -> None:
    assert main(["evaluate", *_task_args(name), "--out", str(tmp_path / "e")]) == 0
    payload = json.loads((tmp_path / "e" / "results.json").read_text())
    block = payload["optimizers"]["zo-sgd"]
    assert payload["task"] == name and payload["steps"] == 2 and payload["q"] == 2
    assert len(block["loss_mean"]) == 3 and _finite(block["loss_mean"])
    assert len(block["final_loss"]) == 1 and _finite(block["final_loss"])
    assert block["hyperparameters"]["q"] == 2
    assert block["hyperparameter_sources"]["q"] == "user"
    assert (tmp_path / "e" / "loss.png").stat().st_size > 1000

    assert main(["tune", *_task_args(name), "--grid", "coarse=0.1,1", "--grid", "refine=1",
                 "--out", str(tmp_path / "t")]) == 0
    tuned = json.loads((tmp_path / "t" / "hparams.json").read_text())
    entry = tuned["optimizers"]["zo-sgd"]
    assert tuned["task"] == name and tuned["q"] == 2 and entry["hyperparameters"]["q"] == 2
    assert entry["hyperparameters"]["delta"] in (0.1, 1.0) and len(entry["trials"]) == 2
    assert math.isfinite(entry["final_loss_mean"])


def test_q_defaults_to_the_task_and_is_recorded(tmp_path: Path) -> None:
    assert main(["evaluate", "--task", "quadratic", "--instances", "1", "--steps", "1",
                 "--optimizers", "zo-sgd,zo-adam", "--set", "zo-adam.q=3", "--quiet",
                 "--out", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "results.json").read_text())
    sgd, adam = (payload["optimizers"][n] for n in ("zo-sgd", "zo-adam"))
    assert sgd["hyperparameters"]["q"] == task_class("quadratic").protocol.q
    assert sgd["hyperparameter_sources"]["q"] == "task default"
    assert adam["hyperparameters"]["q"] == 3 and adam["hyperparameter_sources"]["q"] == "user"
    assert payload["q"] is None  # the optimizers differ


def test_a_shared_flag_applies_to_each_task_that_declares_it(tmp_path: Path) -> None:
    for name, dim in (("quadratic", 3), ("binary-classification", 5)):
        out = tmp_path / name
        assert main(["evaluate", "--task", name, "--dim", str(dim), "--instances", "1",
                     "--steps", "1", "--optimizers", "zo-sgd", "--quiet", "--out",
                     str(out)]) == 0
        assert json.loads((out / "results.json").read_text())["task_options"]["dim"] == dim


def test_a_flag_the_task_does_not_accept_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--task", "quadratic", "--c", "0.5", "--steps", "1",
                 "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("zol2l: error:")
    assert "--c is not an option of task quadratic" in err and "--dim" in err
    assert main(["tune", "--task", "mixture", "--dim", "3", "--out", str(tmp_path / "b")]) == 2
    assert "--dim is not an option of task mixture (its options: none)" in \
        capsys.readouterr().err
    assert not (tmp_path / "a" / "results.json").exists()


def test_declared_defaults_are_the_constructors() -> None:
    for name in available_tasks():
        cls = task_class(name)
        params = inspect.signature(cls.__init__).parameters
        for option in cls.cli_options:
            assert option.name in params, (name, option.name)
            default = params[option.name].default
            # None: the family picks its own (AttackFamily's c is its default_c)
            assert default in (option.default, None), (name, option.name)
            if default is None and option.default is not None:
                assert getattr(cls, f"default_{option.name}") == option.default


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(found[0].choices) if found else {}


def test_every_option_of_every_subcommand_shows_its_default() -> None:
    parser = build_parser()
    commands = _subparsers(parser)
    assert set(commands) >= {"evaluate", "tune", "attack", "meta-train", "reproduce",
                             "benchmark", "train-target"}
    missing = []
    for name, sub in [("zol2l", parser), *commands.items()]:
        formatter = DefaultsFormatter(name)
        for action in sub._actions:
            if (not action.option_strings or action.required
                    or isinstance(action, argparse._HelpAction)):
                continue
            text = formatter._expand_help(action) if action.help else ""
            if "default" not in text.lower():
                missing.append(f"{name} {action.option_strings[0]}")
    assert not missing, missing


def test_top_level_help_and_the_cli_module_do_not_import_torch() -> None:
    code = ("import sys, contextlib, io\n"
            "import zol2l.cli\n"
            "assert 'torch' not in sys.modules, 'import zol2l.cli imported torch'\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "    code = zol2l.cli.main(['--help'])\n"
            "assert code == 0 and 'evaluate' in out.getvalue(), out.getvalue()\n"
            "assert 'torch' not in sys.modules, 'zol2l --help imported torch'\n")
    subprocess.run([sys.executable, "-c", code], check=True)
