"""``zol2l benchmark``: the held-out suite runs, writes strict JSON and its plot, and counts
its peers through the same oracle."""

from __future__ import annotations

import json
import os

import pytest
import torch

from zol2l.api import FunctionProblem
from zol2l.benchmark import cli as bench_cli
from zol2l.benchmark.peers import available_peers
from zol2l.benchmark.report import quality_bar, wins
from zol2l.benchmark.runner import optimizer_set, run_metrics
from zol2l.benchmark.suite import HELD_OUT, SIZES, problems
from zol2l.cli import main
from zol2l.experiments.options import RunOptions
from zol2l.loop import run
from zol2l.optimizers import available, make
from zol2l.tasks import make_task

PEERS_INSTALLED = len(available_peers()) == 2


@pytest.mark.skipif(not PEERS_INSTALLED and not os.environ.get("CI"),
                    reason="the peers extra (pip install -e '.[peers]') is not installed")
def test_quick_benchmark_with_peers(tmp_path, capsys) -> None:
    assert PEERS_INSTALLED, "CI installs the peers extra"
    assert main(["benchmark", "--quick", "--out", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "ecdf.png").stat().st_size > 0 and (tmp_path / "tables.md").exists()
    assert payload["held_out"] == HELD_OUT and payload["peers"] == ["cma-es", "ngopt"]
    size = SIZES["quick"]
    assert len(payload["problems"]) == len(size.functions) * len(size.noises)
    labels = {"zo-lstm", "zo-sgd", "zo-signsgd", "zo-adam", "zo-szvrg", "zo-guided-es",
              "zo-adam-tuned", "cma-es", "ngopt"}
    for problem in payload["problems"]:
        table = problem["budgets"]["100"]
        assert set(table) == labels
        for block in table.values():  # every run within its budget, one entry per instance
            assert len(block["final"]) == size.instances
            assert all(q <= 100 * problem["options"]["dim"] for q in block["queries"])
    assert set(payload["wins"]) == labels - {"zo-lstm"}
    assert "cma_es" in payload["quality_bar"]
    assert "zo-lstm beats" in capsys.readouterr().out


def test_quick_benchmark_without_peers_says_so(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr("zol2l.benchmark.peers.available_peers", lambda: [])
    assert main(["benchmark", "--quick", "--functions", "sphere", "--noises", "0",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "peer cma-es skipped" in out and "peer ngopt skipped" in out
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["peers"] == [] and (tmp_path / "ecdf.png").exists()
    assert "cma-es" not in payload["problems"][0]["budgets"]["100"]


def test_unknown_peer_is_an_error(tmp_path, capsys) -> None:
    assert main(["benchmark", "--quick", "--peers", "hyperopt", "--out", str(tmp_path)]) == 2
    assert "unknown peer" in capsys.readouterr().err


def test_suite_never_overlaps_the_meta_training_mixture() -> None:
    full = problems(SIZES["full"])
    assert {p.task for p in full} == {"bbob", "binary-classification"}
    assert all(p.options["dim"] == 300 for p in full if p.task == "binary-classification")


def test_peers_query_through_the_oracle_and_stop_at_the_budget() -> None:
    if not PEERS_INSTALLED:
        pytest.skip("the peers extra is not installed") if not os.environ.get("CI") else \
            pytest.fail("CI installs the peers extra")
    problem = make_task("bbob", function="sphere", dim=10).problem([5, 6], seed=0)
    for name in ("peer:cma-es", "peer:ngopt"):
        opt = make(name, dim=10, budget=1000)
        result = run(opt, problem, 10_000, seed=0, budget=1000)
        assert result.nqueries <= 1000 and result.nqueries > 1000 - opt.queries_at(0)
        assert float(result.loss[-1].max()) < float(result.loss[0].min())
    assert not any(n.startswith("peer:") for n in available())


@pytest.mark.skipif(not PEERS_INSTALLED and not os.environ.get("CI"),
                    reason="the peers extra (pip install -e '.[peers]') is not installed")
def test_cma_es_runs_in_float32() -> None:
    def sphere(points: torch.Tensor) -> torch.Tensor:
        return points.square().sum(-1)

    finals = {}
    for dtype in (torch.float32, torch.float64):
        problem = FunctionProblem(sphere, torch.ones(10, dtype=dtype), vectorized=True,
                                  numpy_inputs=False)
        result = run(make("peer:cma-es", dim=10, budget=500), problem, 10_000, seed=0,
                     budget=500)
        assert result.x.dtype == dtype
        finals[dtype] = float(result.loss[-1, 0])
    assert finals[torch.float32] < 1e-2 * 10.0
    assert finals[torch.float32] == pytest.approx(finals[torch.float64], rel=1e-3)


def test_run_metrics_truncate_to_a_budget_and_time_targets() -> None:
    problem = make_task("bbob", function="sphere", dim=4).problem([5], seed=0)
    result = run(make("zo-adam", q=3, delta=10.0), problem, 200, seed=0)
    long, short = run_metrics(result, 800)[0], run_metrics(result, 200)[0]
    assert short["queries"] <= 200 < long["queries"]
    assert long["best"] <= short["best"] <= 1.0
    rel = (result.loss[:, 0] / result.loss[0, 0]).double()
    assert long["best"] == pytest.approx(float(rel[: long["queries"] // 4 + 1].min()))
    hit = long["queries_to"]["0.1"]
    assert hit is None or hit % 4 == 0


def test_wins_and_bar_count_problems() -> None:
    payload = {"problems": [{"options": {"dim": 10, "noise": 0.0}, "budgets": {"100": {
        "zo-lstm": {"score": -2.0, "above_start": 0},
        "zo-adam": {"score": -1.0, "above_start": 0},
        "zo-adam-tuned": {"score": -3.0, "above_start": 0}}}}]}
    w = wins(payload)
    assert w["zo-adam"]["wins"] == 1 and w["zo-adam-tuned"]["wins"] == 0
    bar = quality_bar(payload)
    assert bar["never_above_start"] and bar["beats_zo-adam"]["holds"]
    assert not bar["beats_zo-adam-tuned"]["holds"]
    assert torch.isfinite(torch.tensor(w["zo-adam"]["fraction"]))
    assert bench_cli.add_arguments is not None


def test_binary_problem_runs_the_general_optimizer_and_raw_defaults(monkeypatch) -> None:
    """Binary classification ships a specialist checkpoint and tuned deltas: the suite must
    still run ``pretrained:general`` and every baseline at its own defaults."""
    import zol2l.benchmark.runner as runner

    binary = next(p for p in problems(SIZES["full"]) if p.task == "binary-classification")
    chosen = optimizer_set(binary, 100 * binary.dim, None, [])
    assert chosen["zo-lstm"] == ("zo-lstm", {"checkpoint": "pretrained:general"})
    seen = {}

    def fake(task, table, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop")

    monkeypatch.setattr(runner, "evaluate", fake)
    with pytest.raises(RuntimeError, match="stop"):
        runner._run(binary, "zo-adam", {}, 1000, "test", 1,
                    {"q": 20, "options": RunOptions()}, None)
    assert seen["tuned"] is None
