"""Experiments as specs: a toy :class:`Spec` on the quadratic task, its plan executed by the one
harness (:meth:`Context.evaluate`), its analysis and its typed checks; the shared analysis
helpers."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zol2l.experiments.evaluate import evaluate
from zol2l.experiments.options import RunOptions
from zol2l.experiments.reproduce import (
    EXPERIMENTS,
    Check,
    Context,
    Plan,
    Report,
    Run,
    Spec,
    figures,
    register,
    run_experiment,
    run_spec,
)
from zol2l.experiments.reproduce.analysis import best, listing, paired, select
from zol2l.experiments.reproduce.spec import Payload, execute
from zol2l.tasks import make_task

FAST, SLOW = {"delta": 0.5}, {"delta": 0.05}


class Toy(Spec):
    """ZO-SGD at two step sizes on two quadratics, and one instance kept for a closer look."""

    def plan(self, ctx: Context) -> Plan:
        task = ctx.task("quadratic", dim=6)
        size = ctx.sizes("quadratic")
        first = task.instance_ids("test")[0]
        return Plan((Run("pair", task, {"zo-sgd": FAST, "zo-sgd@slow": SLOW}, q=4,
                         instances=size.instances, trials=size.trials, steps=size.steps),
                     Run("first", task, {"zo-sgd": FAST}, q=4, ids=[first], trials=2,
                         steps=size.steps, keep=True)), {"size": size})

    def analyze(self, ctx: Context, plan: Plan, done: Mapping[str, Payload]) -> Report:
        blocks = done["pair"]["optimizers"]
        fig, axes = figures.grid(1, 1)
        figures.loss_panel(axes[0][0], blocks, title="toy")
        name = figures.save(fig, ctx.out / "toy.png")
        kept = done["first"]["kept"]
        return Report({"instances": done["pair"]["instances"],
                       "steps": plan.setup["size"].steps},
                      {"final": {n: b["final_loss_mean"] for n, b in blocks.items()},
                       "kept_rows": {n: int(r.loss.shape[1]) for n, (r, _) in kept.items()}},
                      (name,))

    def checks(self, report: Report) -> list[Check]:
        final = report.results["final"]
        return [Check("the larger step ends lower", np.bool_(final["zo-sgd"] < final["slow"]),
                      listing(final)),
                Check("a claim the numbers cannot decide", None, "-")]


TOY = Toy(name="toy-spec", paper="A toy claim.", learned=("quadratic",))


def test_spec_runs_its_plan_through_the_one_harness(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    tags: list[str] = []
    harness = Context.evaluate

    def spy(self: Context, task: Any, optimizers: Any, *, tag: str, **kwargs: Any) -> Any:
        tags.append(tag)
        return harness(self, task, optimizers, tag=tag, **kwargs)

    monkeypatch.setattr(Context, "evaluate", spy)
    ctx = Context(tmp_path, quick=True, options=RunOptions(progress=False))
    out = run_spec(TOY, ctx)
    assert tags == ["pair", "first"]
    assert set(out) == {"protocol", "results", "checks", "figures"}
    steps = ctx.sizes("quadratic").steps
    assert out["protocol"] == {"instances": make_task("quadratic").instance_ids("test")[:2],
                               "steps": steps}
    # the same numbers as the harness called directly; the label runs the named optimizer
    direct = evaluate(make_task("quadratic", dim=6), {"zo-sgd": {**SLOW, "q": 4}}, instances=2,
                      steps=steps, options=RunOptions(progress=False))
    final = out["results"]["final"]
    assert list(final) == ["zo-sgd", "slow"]
    assert final["slow"] == direct["optimizers"]["zo-sgd"]["final_loss_mean"]
    assert out["results"]["kept_rows"] == {"zo-sgd": 2}
    assert out["checks"] == [
        {"claim": "the larger step ends lower", "holds": True,
         "evidence": f"zo-sgd {final['zo-sgd']:.4g}, slow {final['slow']:.4g}"},
        {"claim": "a claim the numbers cannot decide", "holds": None, "evidence": "-"}]
    assert out["figures"] == ["toy.png"] and (tmp_path / "toy.png").stat().st_size > 5000
    # one harness call per run: the units of both labels are kept under units/TAG
    kept = sorted(f.name.split("-i0")[0] for f in (tmp_path / "units" / "pair").glob("*.pt"))
    assert kept == ["zo-sgd", "zo-sgd_slow"] and not (tmp_path / "units" / "pair-slow").exists()


def test_a_registered_spec_is_an_experiment(tmp_path: Path) -> None:
    register(TOY)
    try:
        assert EXPERIMENTS["toy-spec"].learned == ("quadratic",)
        with pytest.raises(ValueError, match="toy-spec"):
            register(TOY)
        ctx = Context(tmp_path, quick=True, options=RunOptions(progress=False))
        payload = run_experiment("toy-spec", ctx)
    finally:
        del EXPERIMENTS["toy-spec"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["experiment"] == "toy-spec" == payload["experiment"]
    assert saved["paper"] == "A toy claim."
    assert [c["holds"] for c in saved["checks"]] == [True, None]


def test_checks_are_plain_json_and_tags_are_unique(tmp_path: Path) -> None:
    check = Check("c", np.bool_(False), "e")
    assert check.holds is False
    assert json.loads(json.dumps(check.to_json())) == {"claim": "c", "holds": False,
                                                       "evidence": "e"}
    ctx = Context(tmp_path, quick=True, options=RunOptions(progress=False))
    run = Run("same", ctx.task("quadratic"), {"zo-sgd": {}}, trials=1, steps=2, instances=1)
    assert set(execute(ctx, [run])) == {"same"}
    with pytest.raises(ValueError, match="same"):
        execute(ctx, [run, run])


def test_analysis_helpers() -> None:
    assert listing({"a": 1.23456, "b": None}) == "a 1.235, b -"
    assert listing({"zo-sgd": 2.0}, ".1f", sep=": ", names=figures.label) == "ZO-SGD: 2.0"
    assert best({"a": 2.0, "b": None, "c": 1.0}) == "c" and best({"a": None}) is None
    assert best({"a": 1.0, "b": 2.0}, lower=False) == "b"
    rows = paired({"ref": {"final_loss": [1.0, 2.0, 3.0]},
                   "x": {"final_loss": [2.0, 2.0, 5.0]}}, "ref")
    assert rows["ref"]["minus_ref_mean"] == 0.0
    assert rows["x"]["minus_ref_mean"] == 1.0
    assert rows["x"]["minus_ref_se"] == pytest.approx(np.std([1, 0, 2], ddof=1) / math.sqrt(3))
    assert paired({"ref": {"final_loss": [1.0]}}, "ref")["ref"]["final_loss_se"] is None
    assert select({"x": {"a": 1, "c": 3}}, ("a", "b")) == {"x": {"a": 1, "b": None}}
