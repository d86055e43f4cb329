"""``zol2l reproduce`` resolves tuned baselines and checkpoints without training; ``--retrain``
is one explicit step before the experiments; the package has no import cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import DATA, needs_data

import zol2l
from zol2l.experiments import tune as tune_module
from zol2l.experiments.options import RunOptions
from zol2l.experiments.reproduce import EXPERIMENTS, Context, reproduce, retrain, suite
from zol2l.meta import trainer

SRC = Path(zol2l.__file__).resolve().parent
TASKS = ("binary-classification", "mnist-attack", "cifar10-attack")


def imports(path: Path) -> set[str]:
    """The ``zol2l`` modules ``path`` imports anywhere (lazily inside functions too; not the
    ``if TYPE_CHECKING:`` imports, which never run)."""
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {name for name in found if name.startswith("zol2l")}


def module_graph() -> dict[str, set[str]]:
    """Import edges between the modules of ``zol2l`` (a package stands for its __init__); a
    module's import of a package it belongs to is no edge (Python runs that __init__ first,
    which is what imports the module)."""
    modules: dict[str, Path] = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return {name: {m for m in imports(path)
                   if m in modules and m != name and not name.startswith(m + ".")}
            for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """A cycle through the modules reachable from ``start`` (depth-first), or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    return visit(start)


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}, "a") == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}, "a") is None


def test_reproduce_has_no_import_cycle() -> None:
    graph = module_graph()
    assert "zol2l.experiments.reproduce.retrain" in graph["zol2l.experiments.reproduce.suite"]
    assert "zol2l.experiments.reproduce.base" in graph["zol2l.experiments.reproduce.retrain"]
    inside = {k: {m for m in v if m.startswith("zol2l.experiments.reproduce")}
              for k, v in graph.items() if k.startswith("zol2l.experiments.reproduce")}
    for module in sorted(inside):
        cycle = find_cycle(inside, module)
        assert cycle is None, " -> ".join(cycle or [])


def test_package_has_no_import_cycle() -> None:
    graph = module_graph()
    for module in sorted(graph):
        cycle = find_cycle(graph, module)
        assert cycle is None, " -> ".join(cycle or [])


def forbid_training(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("resolution trained")

    monkeypatch.setattr(tune_module, "tune", refuse)
    monkeypatch.setattr(retrain, "tune", refuse)
    monkeypatch.setattr(retrain, "retune", refuse)
    monkeypatch.setattr(retrain, "meta_train", refuse)
    monkeypatch.setattr(trainer.MetaTrainer, "fit", refuse)


def test_resolution_without_retrain_never_trains(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_training(monkeypatch)
    ctx = Context(tmp_path, quick=True, options=RunOptions(progress=False))
    for task in TASKS:
        assert ctx.baselines(task)["zo-sgd"]["delta"] > 0
        assert ctx.learned(task) == f"pretrained:{task}"
    # with retrain on, resolving before the retrain step is an error, not a training
    ctx = Context(tmp_path, quick=True, retrain=True, options=RunOptions(progress=False))
    for task in TASKS:
        with pytest.raises(FileNotFoundError, match="retrain step"):
            ctx.baselines(task)
        with pytest.raises(FileNotFoundError, match="retrain step"):
            ctx.learned(task)


def test_quick_experiment_without_retrain_never_trains(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_training(monkeypatch)
    payload = reproduce("fig3", tmp_path, quick=True, options=RunOptions(progress=False))
    assert payload["sources"]["zo-lstm:binary-classification"] == \
        "pretrained:binary-classification"


def test_every_experiment_declares_what_it_resolves() -> None:
    for name, exp in EXPERIMENTS.items():
        assert exp.learned, name
        assert set(exp.tuned) <= set(TASKS), name
        for learned in exp.learned:  # a shipped optimizer, meta-trained on one of the tasks
            assert retrain.recipe(learned, "update")["task"] in TASKS, (name, learned)


def test_retrain_step_runs_once_per_needed_task_before_the_experiments(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(retrain, "retune", lambda ctx, task: calls.append(("tune", task)))
    monkeypatch.setattr(retrain, "meta_train", lambda ctx, task: calls.append(("meta", task)))

    def body(ctx: Context) -> dict:
        calls.append(("experiment", ctx.out.name))
        raise RuntimeError("stop after the first experiment")

    exp = EXPERIMENTS["generalization"]
    monkeypatch.setitem(suite.EXPERIMENTS, "generalization",
                        type(exp)(exp.name, exp.paper, body, exp.tuned, exp.learned))
    with pytest.raises(RuntimeError, match="stop"):
        reproduce("generalization", tmp_path, quick=True, retrain=True,
                  options=RunOptions(progress=False))
    # each learned task once, in the experiment's order (cifar10's recipe is from scratch)
    assert calls == [("tune", "binary-classification"), ("tune", "cifar10-attack"),
                     ("meta", "mnist-attack"), ("meta", "binary-classification"),
                     ("meta", "cifar10-attack"), ("experiment", tmp_path.name)]


def test_retrain_of_fig2_cifar10_trains_the_finetune_after_mnist(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fig2-cifar10 shows the from-scratch ZO-LSTM and the finetuned one; the finetune's recipe
    starts from the MNIST optimizer, so with ``--retrain`` MNIST is meta-trained before it."""
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(retrain, "retune", lambda ctx, task: calls.append(("tune", task)))
    monkeypatch.setattr(retrain, "meta_train", lambda ctx, task: calls.append(("meta", task)))
    assert retrain.prerequisite("cifar10-attack") is None
    assert retrain.prerequisite("cifar10-attack-finetune") == "mnist-attack"
    retrain.retrain(Context(tmp_path, quick=True), EXPERIMENTS["fig2-cifar10"].tuned,
                    EXPERIMENTS["fig2-cifar10"].learned)
    assert calls == [("tune", "cifar10-attack"), ("meta", "cifar10-attack"),
                     ("meta", "mnist-attack"), ("meta", "cifar10-attack-finetune")]


def test_retrain_for_all_covers_every_task_once(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(retrain, "retune", lambda ctx, task: calls.append(("tune", task)))
    monkeypatch.setattr(retrain, "meta_train", lambda ctx, task: calls.append(("meta", task)))
    monkeypatch.setattr(suite, "available_experiments", lambda: [])
    reproduce("all", tmp_path, quick=True, retrain=True, options=RunOptions(progress=False))
    assert calls == []  # no experiment, nothing to retrain
    monkeypatch.setattr(suite, "available_experiments", lambda: ["fig3", "fig4"])
    monkeypatch.setattr(suite, "run_experiment", lambda name, ctx: {
        "seconds": 0.0, "checks": [], "figures": []})
    reproduce("all", tmp_path, quick=True, retrain=True, options=RunOptions(progress=False))
    assert sorted(calls) == sorted([("tune", t) for t in TASKS] + [("meta", t) for t in TASKS])


@needs_data
def test_retrain_quick_then_experiment_uses_the_retrained_files(tmp_path: Path) -> None:
    payload = reproduce("fig9", tmp_path, quick=True, retrain=True, data_dir=str(DATA),
                        options=RunOptions(progress=False))
    spec = str(tmp_path / "retrained" / "mnist-attack" / "query" / "query.safetensors")
    assert payload["protocol"]["checkpoint"] == spec
    assert Path(spec).is_file()
