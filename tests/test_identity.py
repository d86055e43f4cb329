"""The one Registry, typed optimizer state, derived hyperparameters and unit identities.

``golden_optimizers.json`` was captured from main before optimizer state and hyperparameters
became typed: every construction case below must record the same hyperparameters (same keys,
same order), and every work unit the same uid and seed (seeds are part of the stored-results
format: ``--resume`` finds stored units by uid).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch

from zol2l.experiments.defaults import read_hparams
from zol2l.experiments.reproduce import base as reproduce_base
from zol2l.experiments.units import make_units
from zol2l.learned import QueryRNN, UpdateRNN, save_checkpoint
from zol2l.loop import run
from zol2l.optimizers import State, available, baselines, make
from zol2l.optimizers.registry import OPTIMIZERS, colors, labels, register
from zol2l.optimizers.zo_adam import AdamState
from zol2l.optimizers.zo_lstm import LearnedState
from zol2l.optimizers.zo_sgd import ZOSGD
from zol2l.optimizers.zo_szvrg import SZVRGState
from zol2l.oracle import Oracle
from zol2l.registry import Registry
from zol2l.targets import Float32Target, full_float32
from zol2l.tasks import make_task, register_task
from zol2l.tasks.quadratic import QuadraticFamily

GOLDEN = json.loads((Path(__file__).parent / "golden_optimizers.json").read_text())
TUNED_DIR = Path(__import__("zol2l").__file__).parent / "tuned"

#: construction cases of the golden hyperparameters (``<FILE>``: a checkpoint written here)
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    **{name: (name, {}) for name in GOLDEN["hyperparameters"] if name in available()},
    "sgd-lr": ("zo-sgd", {"lr": 0.1, "q": 7, "mu": 0.01}),
    "sgd-delta": ("zo-sgd", {"delta": 3.0}),
    "signsgd-lr": ("zo-signsgd", {"lr": 0.2}),
    "adam-all": ("zo-adam", {"beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "delta": 2.0}),
    "szvrg-all": ("zo-szvrg", {"epoch": 5, "q0": 30, "lr": 0.01}),
    "ges-alpha": ("zo-guided-es", {"guide_alpha": 0.3, "delta": 5.0}),
    "lstm-none": ("zo-lstm", {"checkpoint": None, "q": 7, "p_query": 0.25, "alpha": 2.0,
                              "mu": 0.01}),
    "lstm-binary": ("zo-lstm", {"checkpoint": "pretrained:binary-classification"}),
    "lstm-mnist": ("zo-lstm", {"checkpoint": "pretrained:mnist-attack", "alpha": 0.5}),
    "lstm-file": ("zo-lstm", {"checkpoint": "<FILE>"}),
    "lstm-file-sha": ("zo-lstm", {"checkpoint": "<FILE>", "checkpoint_sha256": "<SHA>"}),
    "lstm-modules": ("zo-lstm", {"update_rnn": "<UPDATE>", "query_rnn": "<QUERY>"}),
    "noquery-none": ("zo-lstm-no-query", {"checkpoint": None, "init_seed": 3}),
    "noquery-general": ("zo-lstm-no-query", {"checkpoint": "pretrained:general", "alpha": 0.7}),
    "noupdate-delta": ("zo-lstm-no-update", {"delta": 3.0}),
    "noupdate-lr": ("zo-lstm-no-update", {"lr": 0.05, "checkpoint": None}),
    "noupdate-general": ("zo-lstm-no-update", {"checkpoint": "pretrained:general"}),
    "lstmges-none": ("zo-lstm-guided-es", {"checkpoint": None, "guide_alpha": 0.2}),
    "lstmges-binary": ("zo-lstm-guided-es", {"checkpoint": "pretrained:binary-classification"}),
}
#: the settings of the golden units (plus every entry of the shipped tuned files)
UNIT_SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    **{f"{name}-q": (name, {"q": 20}) for name in available()},
    "lstm-pre": ("zo-lstm", {"q": 20, "checkpoint": "pretrained:mnist-attack"}),
    "lstm-gen": ("zo-lstm", {"q": 20, "checkpoint": "pretrained:general", "alpha": 0.5}),
    "noupdate-pre": ("zo-lstm-no-update", {"q": 20,
                                           "checkpoint": "pretrained:binary-classification"}),
    "ges-alpha": ("zo-guided-es", {"q": 20, "guide_alpha": 0.3, "delta": 5.0}),
}


def _checkpoint(tmp_path: Path) -> tuple[str, str]:
    from zol2l.fileio import sha256_file

    path = save_checkpoint(tmp_path / "ckpt.safetensors",
                           {"update": UpdateRNN(seed=3), "query": QueryRNN(seed=4)},
                           {"stage": "query"})
    return str(path), sha256_file(path)


# ----------------------------------------------------------------------------- registries
def _duplicate_optimizer() -> None:
    register(label="X", color="k", role="baseline")(type("Again", (ZOSGD,), {"name": "zo-sgd"}))


def _duplicate_task() -> None:
    register_task(type("Again", (QuadraticFamily,), {"name": "quadratic"}))


def _duplicate_experiment() -> None:
    reproduce_base.experiment("fig3", "again")(lambda ctx: {})


@pytest.mark.parametrize("register_again", [_duplicate_optimizer, _duplicate_task,
                                            _duplicate_experiment],
                         ids=["optimizer", "task", "experiment"])
def test_registering_a_duplicate_name_raises(register_again: Any) -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_again()


def test_registry_lists_names_and_keeps_metadata() -> None:
    reg: Registry[int] = Registry("thing")
    reg.add("b", 2, kind="even")
    reg.add("a", 1, kind="odd")
    assert reg.names() == ["a", "b"] and reg.in_order() == ["b", "a"]
    assert reg.in_order(kind="odd") == ["a"] and reg.meta("b") == {"kind": "even"}
    assert list(reg) == ["b", "a"] and dict(reg.items()) == {"b": 2, "a": 1}
    with pytest.raises(ValueError, match="unknown thing 'c'; available: a, b"):
        reg.entry("c")
    with pytest.raises(ValueError, match="non-empty name"):
        reg.add("", 3)


def test_side_lists_come_from_the_optimizer_registry() -> None:
    from zol2l.experiments.reproduce import figures

    assert baselines() == ("zo-sgd", "zo-signsgd", "zo-adam", "zo-szvrg", "zo-guided-es")
    assert reproduce_base.BASELINES == baselines()
    assert set(labels()) == set(colors()) == set(available())
    assert {OPTIMIZERS.meta(n)["role"] for n in available()} == {"baseline", "learned",
                                                                "ablation"}
    assert figures.LABELS["zo-adam"] == "ZO-ADAM" and figures.color("zo-lstm") == "tab:red"
    assert len(set(colors().values())) == len(available())  # one colour each
    with pytest.raises(ValueError, match="unknown optimizer 'zo-nope'; available: zo-adam"):
        make("zo-nope")
    with pytest.raises(ValueError, match="unknown task 'nope'; available: bbob"):
        make_task("nope")


# ----------------------------------------------------------------------------- hyperparameters
def test_hyperparameters_equal_mains(tmp_path: Path) -> None:
    path, sha = _checkpoint(tmp_path)
    subst = {"<FILE>": path, "<SHA>": sha, "<UPDATE>": UpdateRNN(seed=1),
             "<QUERY>": QueryRNN(seed=2)}
    assert set(CASES) == set(GOLDEN["hyperparameters"])
    for label, (name, kwargs) in CASES.items():
        kwargs = {k: subst.get(v, v) if isinstance(v, str) else v for k, v in kwargs.items()}
        got = [[k, path if v == path else v] for k, v in make(name, **kwargs)
               .hyperparameters().items()]
        want = json.loads(json.dumps(GOLDEN["hyperparameters"][label])
                          .replace("<FILE>", path).replace("<SHA>", sha))
        if name == "zo-guided-es":  # the one rename: Guided ES's alpha is guide_alpha
            want = [["guide_alpha" if k == "alpha" else k, v] for k, v in want]
        assert got == want, label


def test_the_old_guided_es_key_is_refused_naming_the_new_one() -> None:
    with pytest.raises(ValueError, match="'alpha' \\(renamed 'guide_alpha'\\)"):
        make("zo-guided-es", alpha=0.3)
    with pytest.raises(ValueError, match="now called 'guide_alpha'"):
        make_units("zo-guided-es", {"alpha": 0.3}, [0], trials=1, seed=0)
    with pytest.raises(ValueError, match="p_query"):
        make("zo-lstm-guided-es", p_query=0.5)


# ----------------------------------------------------------------------------- unit identity
def test_unit_uids_and_seeds_equal_mains() -> None:
    settings = dict(UNIT_SETTINGS)
    for path in sorted(TUNED_DIR.glob("*.json")):
        for name, hp in read_hparams(path).items():
            settings[f"tuned-{path.stem}-{name}"] = (name, hp)
    assert set(settings) == set(GOLDEN["units"])
    for label, (name, hp) in settings.items():
        units = make_units(name, hp, list(range(7)), trials=3, seed=5, instance_chunk=3,
                           trial_chunk=2)
        assert [[u.uid, u.seed] for u in units] == GOLDEN["units"][label], label
        assert all(u.hyperparameters == hp for u in units)  # what runs: the given keys


def test_guided_es_hashes_guide_alpha_under_its_old_key() -> None:
    from zol2l.experiments.units import digest

    (unit,) = make_units("zo-guided-es", {"guide_alpha": 0.3}, [1], trials=1, seed=2)
    expected = int(digest({"seed": 2, "optimizer": "zo-guided-es",
                           "hyperparameters": {"alpha": 0.3}, "ids": [1],
                           "trials": [0, 1]})[:16], 16) >> 1
    assert unit.seed == expected


def test_a_learned_optimizer_identity_carries_its_weights_sha(tmp_path: Path) -> None:
    path, sha = _checkpoint(tmp_path)
    cls = type(make("zo-lstm", checkpoint=None))
    assert cls.identity({"checkpoint": path}) == {"hyperparameters": {"checkpoint": path},
                                                  "checkpoint_sha256": [sha]}
    assert cls.identity({"checkpoint": None}) == {"hyperparameters": {"checkpoint": None}}
    assert type(make("zo-sgd")).identity({"q": 3}) == {"hyperparameters": {"q": 3}}


# ----------------------------------------------------------------------------- typed state
def test_every_optimizer_keeps_a_typed_state() -> None:
    problem = make_task("quadratic", dim=4).problem([0, 1], trials=1, seed=0)
    kinds = {"zo-adam": AdamState, "zo-szvrg": SZVRGState}
    for name in available():
        opt = make(name, q=3)
        seen: list[State] = []
        run(opt, problem, 3, seed=0, callback=lambda t, out, state, seen=seen: seen.append(state))
        state = seen[-1]
        want = LearnedState if name.startswith("zo-lstm") else kinds.get(name, State)
        assert type(state) is want, name
        assert state.t == 3 and state.prev_grad is not None, name
        assert state.prev_update is not None and state.prev_update.shape == (2, 4), name
    adam = make("zo-adam").init_state(torch.zeros(2, 3))
    assert torch.equal(adam.m, torch.zeros(2, 3)) and adam.t == 0


def test_detach_cuts_every_graph_of_a_state() -> None:
    w = torch.ones(3, requires_grad=True)
    hidden = (w * 2, w * 3)
    state = LearnedState(t=1, prev_grad=w * 4, update_hidden=hidden)
    state.detach()
    assert state.prev_grad is not None and state.prev_grad.grad_fn is None
    assert state.update_hidden is not None
    assert all(h.grad_fn is None for h in state.update_hidden) and state.t == 1


# ----------------------------------------------------------------------------- TF32, oracle
def test_full_float32_is_local_and_restores_the_flags() -> None:
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
        seen = []
        target = Float32Target(lambda x: seen.append(
            (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)) or x)
        assert torch.equal(target(torch.ones(2)), torch.ones(2)) and seen == [(False, False)]
        with pytest.raises(RuntimeError), full_float32():
            raise RuntimeError("inside")
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == \
            (True, True)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before
    module = Float32Target(torch.nn.Linear(2, 1))
    assert module.in_features == 2  # the wrapped target's attributes
    assert pickle.loads(pickle.dumps(module)).out_features == 1  # Ray ships tasks pickled


def test_oracle_evaluate_is_not_a_query() -> None:
    oracle = Oracle(lambda x: float(x.sum()), 2, mode="point", budget=1)
    points = torch.ones(1, 3, 2, dtype=torch.float64)
    assert oracle.evaluate(points).tolist() == [[2.0, 2.0, 2.0]] and oracle.queries == 0
