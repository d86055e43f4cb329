"""Work units and backends: local vs Ray give identical results, lost workers are retried,
interrupted runs resume with only the missing units."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import DATA, needs_data

from zol2l.cli import main
from zol2l.experiments import backends, runner
from zol2l.experiments.backends import KILL_ENV, LocalBackend, RayBackend, make_backend
from zol2l.experiments.evaluate import evaluate
from zol2l.experiments.options import RunOptions
from zol2l.experiments.runner import Interrupted
from zol2l.experiments.tune import tune
from zol2l.experiments.units import RunContext, digest, execute, make_units, merge
from zol2l.tasks import make_task

OPTS = {"zo-sgd": {"delta": 2.0, "q": 4}, "zo-adam": {"q": 4}}
SMALL = {"instances": 4, "trials": 2, "steps": 30}  # 2 optimizers x 2 chunks = 4 units
HOW = RunOptions(instance_chunk=2, progress=False)


def binary() -> Any:
    return make_task("binary-classification", dim=10, n=200, batch=16)


def numbers(payload: dict[str, Any]) -> dict[str, Any]:
    """``results.json`` without timings and the backend's bookkeeping."""
    out = {k: v for k, v in payload.items() if k not in ("seconds", "backend")}
    out["optimizers"] = {name: {k: v for k, v in block.items() if "seconds" not in k}
                         for name, block in payload["optimizers"].items()}
    return json.loads(json.dumps(out))


@pytest.fixture(scope="module")
def ray_session() -> Iterator[Any]:
    """A private local Ray instance with 2 CPUs for this module."""
    if not os.environ.get("CI"):
        pytest.importorskip("ray")
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", num_cpus=2, include_dashboard=False,
             logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


@pytest.fixture
def ray_backend(ray_session: Any) -> RayBackend:
    backend = make_backend("ray")
    assert isinstance(backend, RayBackend) and not backend.owned
    return backend


# ----------------------------------------------------------------------------- units
def test_units_split_and_seeds_are_stable() -> None:
    units = make_units("zo-sgd", {"q": 4}, [5, 6, 7, 8, 9], trials=3, seed=1, instance_chunk=2,
                       trial_chunk=2)
    assert [(u.ids, u.t0, u.t1) for u in units] == [
        ((5, 6), 0, 2), ((5, 6), 2, 3), ((7, 8), 0, 2), ((7, 8), 2, 3), ((9,), 0, 2),
        ((9,), 2, 3)]
    again = make_units("zo-sgd", {"q": 4}, [5, 6, 7, 8, 9], trials=3, seed=1,
                       instance_chunk=2, trial_chunk=2)
    assert [u.seed for u in units] == [u.seed for u in again]
    assert len({u.seed for u in units}) == len({u.uid for u in units}) == 6
    expected = int(digest({"seed": 1, "optimizer": "zo-sgd", "hyperparameters": {"q": 4},
                           "ids": [5, 6], "trials": [0, 2]})[:16], 16) >> 1
    assert units[0].seed == expected  # SHA-256 of the unit's identity, not hash()
    other = make_units("zo-sgd", {"q": 4, "delta": 2.0}, [5, 6], trials=3, seed=1,
                       instance_chunk=2, trial_chunk=2)
    assert other[0].seed != units[0].seed and other[0].uid != units[0].uid
    with pytest.raises(ValueError, match="chunk sizes"):
        make_units("zo-sgd", {}, [1], trials=1, seed=0, instance_chunk=0)


def test_a_changed_checkpoint_behind_the_same_spec_is_another_unit(tmp_path: Path) -> None:
    """``--resume`` must not reuse units of a learned optimizer whose file changed."""
    from zol2l.learned import UpdateRNN, save_checkpoint

    spec = str(tmp_path / "opt.safetensors")
    save_checkpoint(spec, {"update": UpdateRNN(seed=0)}, {"stage": "update"})
    hp = {"q": 4, "checkpoint": spec}
    first = make_units("zo-lstm-no-query", hp, [1, 2], trials=1, seed=0)
    assert make_units("zo-lstm-no-query", hp, [1, 2], trials=1, seed=0)[0].uid == first[0].uid
    save_checkpoint(spec, {"update": UpdateRNN(seed=1)}, {"stage": "update"})
    second = make_units("zo-lstm-no-query", hp, [1, 2], trials=1, seed=0)
    assert second[0].uid != first[0].uid and second[0].seed == first[0].seed


class ReversedBackend(LocalBackend):
    """Finishes the units in reverse order (as a parallel backend may)."""

    def run(self, ctx, units, done, bar=None):  # noqa: ANN001, ANN201
        super().run(ctx, list(reversed(units)), done, bar)


def test_local_results_do_not_depend_on_completion_order() -> None:
    task = binary()
    a = evaluate(task, OPTS, **SMALL, options=HOW)
    b = evaluate(task, OPTS, options=replace(HOW, backend=ReversedBackend()), **SMALL)
    assert numbers(a) == numbers(b)
    assert a["backend"]["units"] == 4 and a["backend"]["computed"] == 4
    assert a["chunks"] == {"instances": 2, "trials": None}
    assert len(a["optimizers"]["zo-sgd"]["final_loss"]) == 8


def test_trial_chunks_merge_in_instance_major_order() -> None:
    task = binary()
    units = make_units("zo-sgd", {"q": 3}, [93, 91], trials=2, seed=0, instance_chunk=1,
                       trial_chunk=1)
    ctx = RunContext(task, 4, {})
    outputs = {u.uid: execute(ctx, u) for u in units}
    shuffled = [units[k] for k in (3, 0, 2, 1)]
    result, _ = merge(shuffled, [outputs[u.uid] for u in shuffled])
    for row, unit in enumerate(units):  # rows: (93, 0), (93, 1), (91, 0), (91, 1)
        assert torch.equal(result.loss[:, row], outputs[unit.uid]["loss"][:, 0])
    payload = evaluate(task, {"zo-sgd": {"q": 4}}, ids=[93, 91], **{**SMALL, "instances": None},
                       options=replace(HOW, trial_chunk=1))
    assert payload["instances"] == [93, 91] and payload["backend"]["units"] == 1 * 2


def test_interrupted_local_run_resumes_only_the_missing_units(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    task = binary()
    fresh = evaluate(task, OPTS, **SMALL, options=HOW)
    calls: list[str] = []
    real = backends.execute

    def interrupt_after_three(ctx, unit, tick=None):  # noqa: ANN001, ANN202
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(unit.uid)
        return real(ctx, unit, tick)

    monkeypatch.setattr(backends, "execute", interrupt_after_three)
    with pytest.raises(Interrupted, match="3 of 4 work units .* --resume"):
        evaluate(task, OPTS, options=replace(HOW, workdir=tmp_path), **SMALL)
    assert len(list(tmp_path.glob("*.pt"))) == 3

    calls.clear()
    monkeypatch.setattr(backends, "execute", lambda ctx, unit, tick=None: (
        calls.append(unit.uid), real(ctx, unit, tick))[1])
    resumed = evaluate(task, OPTS, options=replace(HOW, workdir=tmp_path, resume=True), **SMALL)
    assert len(calls) == 1  # 4 units - 3 kept
    assert resumed["backend"]["computed"] == 1 and resumed["backend"]["reused"] == 3
    assert numbers(resumed) == numbers(fresh)
    calls.clear()
    again = evaluate(task, OPTS, options=replace(HOW, workdir=tmp_path, resume=True), **SMALL)
    assert calls == [] and numbers(again) == numbers(fresh)
    with pytest.raises(ValueError, match="another configuration"):
        evaluate(task, OPTS, options=replace(HOW, workdir=tmp_path, resume=True),
                 **{**SMALL, "steps": 31})


def test_cli_ctrl_c_exits_130_and_says_how_to_resume(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    real = backends.execute
    seen: list[int] = []

    def interrupt_second(ctx, unit, tick=None):  # noqa: ANN001, ANN202
        seen.append(1)
        if len(seen) == 2:
            raise KeyboardInterrupt
        return real(ctx, unit, tick)

    monkeypatch.setattr(backends, "execute", interrupt_second)
    args = ["evaluate", "--optimizers", "zo-sgd", "--instances", "4", "--steps", "5", "--q",
            "3", "--dim", "5", "--instance-chunk", "1", "--out", str(tmp_path), "--quiet"]
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "1 of 4 work units" in err and "--resume" in err
    monkeypatch.setattr(backends, "execute", real)
    assert main([*args, "--resume"]) == 0
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["backend"]["reused"] == 1 and data["backend"]["computed"] == 3


def test_missing_ray_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(ImportError, match=r"pip install -e '\.\[distributed\]'"):
        make_backend("ray")
    assert main(["evaluate", "--optimizers", "zo-sgd", "--instances", "1", "--steps", "2",
                 "--backend", "ray", "--out", str(tmp_path), "--quiet"]) == 2
    assert "--backend ray needs Ray: pip install -e '.[distributed]'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--ray-address needs --backend ray"):
        make_backend("local", address="127.0.0.1:6379")


# ----------------------------------------------------------------------------- Ray
def test_ray_matches_local_on_binary_classification(ray_backend: RayBackend) -> None:
    task = binary()
    local = evaluate(task, OPTS, **SMALL, options=HOW)
    distributed = evaluate(task, OPTS, options=replace(HOW, backend=ray_backend), **SMALL)
    assert numbers(distributed) == numbers(local)
    info = distributed["backend"]
    assert info["name"] == "ray" and info["workers"] == 2 and info["units"] == 4
    assert sum(info["units_per_node"].values()) == 4 and info["retries"] == 0


def test_an_error_inside_a_ray_unit_is_raised_as_itself(ray_backend: RayBackend) -> None:
    with pytest.raises(ValueError, match="out of range"):
        evaluate(binary(), {"zo-sgd": {"q": 2}}, ids=[1000], steps=2,
                 options=RunOptions(progress=False, backend=ray_backend))


def test_killed_worker_is_retried_with_identical_results(
        ray_backend: RayBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    task = binary()
    local = evaluate(task, OPTS, **SMALL, options=HOW)
    monkeypatch.setenv(KILL_ENV, "0,2")  # units 0 and 2 lose their worker mid-run, once
    distributed = evaluate(task, OPTS, options=replace(HOW, backend=ray_backend), **SMALL)
    assert distributed["backend"]["retries"] == 2
    assert numbers(distributed) == numbers(local)


def test_ray_interrupt_then_resume_counts_units(
        ray_backend: RayBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    task = binary()
    real = runner.UnitStore.save
    saved: list[str] = []

    def save_then_interrupt(self, unit, output):  # noqa: ANN001, ANN202
        real(self, unit, output)
        saved.append(unit.uid)
        if len(saved) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(runner.UnitStore, "save", save_then_interrupt)
    with pytest.raises(Interrupted, match="2 of 4"):
        evaluate(task, OPTS, options=replace(HOW, backend=ray_backend, workdir=tmp_path), **SMALL)
    monkeypatch.setattr(runner.UnitStore, "save", real)
    assert len(list(tmp_path.glob("*.pt"))) == 2
    resumed = evaluate(task, OPTS, **SMALL,
                       options=replace(HOW, backend=ray_backend, workdir=tmp_path, resume=True))
    assert resumed["backend"]["computed"] == 2 and resumed["backend"]["reused"] == 2
    assert numbers(resumed) == numbers(evaluate(task, OPTS, **SMALL, options=HOW))


def test_ray_tune_matches_local(ray_backend: RayBackend) -> None:
    task = binary()
    kw: dict[str, Any] = {"instances": 3, "steps": 8, "coarse": (0.1, 1.0, 10.0),
                          "refine": (0.5, 2.0),
                          "fixed": {"zo-sgd": {"q": 3}, "zo-signsgd": {"q": 3}}}
    how = RunOptions(instance_chunk=2, progress=False)
    local = tune(task, ["zo-sgd", "zo-signsgd"], options=how, **kw)
    distributed = tune(task, ["zo-sgd", "zo-signsgd"], options=replace(how, backend=ray_backend),
                       **kw)
    assert numbers(distributed) == numbers(local)
    assert distributed["backend"]["units"] == 2 * (3 + 2) * 2


@needs_data
def test_ray_matches_local_on_an_mnist_attack(ray_session: Any, tmp_path: Path) -> None:
    args = ["attack", "--dataset", "mnist", "--optimizer", "zo-sgd,zo-adam", "--images", "3",
            "--trials", "1", "--steps", "10", "--instance-chunk", "2", "--data-dir",
            str(DATA), "--quiet"]
    assert main([*args, "--out", str(tmp_path / "local")]) == 0
    assert main([*args, "--backend", "ray", "--out", str(tmp_path / "ray")]) == 0
    local, distributed = (json.loads((tmp_path / d / "results.json").read_text())
                          for d in ("local", "ray"))
    assert numbers(distributed) == numbers(local)
    assert distributed["backend"]["name"] == "ray" and distributed["backend"]["units"] == 4
    a, b = (np.load(tmp_path / d / "adversarial.npz") for d in ("local", "ray"))
    assert sorted(a.files) == sorted(b.files)
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key])
    assert (tmp_path / "ray" / "examples.png").stat().st_size > 5_000
    assert len(list((tmp_path / "ray" / "units").glob("*.pt"))) == 4


def test_external_targets_pickle_for_ray_workers(tmp_path: Path) -> None:
    import pickle

    from zol2l.targets import load_target_file

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    torch.jit.save(torch.jit.script(model), tmp_path / "t.pt")
    target = load_target_file(tmp_path / "t.pt")
    copy = pickle.loads(pickle.dumps(target))  # TorchScript modules themselves do not pickle
    x = torch.rand(5, 1, 2, 2)
    assert torch.equal(copy(x), target(x)) and copy.outputs == "logits"


@needs_data
def test_reproduce_on_ray_matches_local(ray_session: Any, tmp_path: Path) -> None:
    """``zol2l reproduce --backend ray``: the experiment's numbers equal the local run's."""
    args = ["reproduce", "fig11", "--quick", "--quiet", "--data-dir", str(DATA)]
    assert main([*args, "--out", str(tmp_path / "local")]) == 0
    assert main([*args, "--backend", "ray", "--out", str(tmp_path / "ray")]) == 0
    local, distributed = (json.loads((tmp_path / d / "results.json").read_text())
                          for d in ("local", "ray"))
    assert distributed["results"] == local["results"]
    assert distributed["checks"] == local["checks"]
    assert list((tmp_path / "ray" / "units").rglob("*.pt"))
