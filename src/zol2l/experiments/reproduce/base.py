"""The experiment registry of ``zol2l reproduce`` and the context every experiment runs in.

An experiment is a function ``f(ctx) -> dict`` registered with :func:`experiment`.  It reads
its sizes from ``ctx.sizes(TASK)`` (the task's protocol), runs its optimizers through
:meth:`Context.evaluate` (the evaluation harness, any backend) or :func:`zol2l.loop.run`,
writes its figures into ``ctx.out`` and returns::

    {"protocol": {...what ran: instances, trials, steps, q, grids...},
     "results": {...measured numbers...},
     "checks": [{"claim": str, "holds": bool | None, "evidence": str}, ...],
     "figures": ["fig.png", ...]}

:func:`run_experiment` adds the experiment's name, the paper's claim, the machine, the run time
and the sources of the optimizers, and writes ``ctx.out / "results.json"`` atomically.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from zol2l.experiments.options import RunOptions
from zol2l.fileio import undefined_as_null, write_json_atomic
from zol2l.optimizers import baselines
from zol2l.registry import Registry
from zol2l.tasks import make_task
from zol2l.tasks.base import TaskFamily
from zol2l.tasks.registry import task_class

ExperimentFn = Callable[["Context"], dict[str, Any]]


@dataclass(frozen=True)
class Experiment:
    """A registered experiment: ``name``, what the paper shows (``paper``), its function, and
    the tasks whose tuned baselines (``tuned``) and learned optimizers (``learned``) it
    resolves (what ``--retrain`` retrains first)."""

    name: str
    paper: str
    func: ExperimentFn
    tuned: tuple[str, ...] = ()
    learned: tuple[str, ...] = ()


EXPERIMENTS: Registry[Experiment] = Registry("experiment")


def experiment(name: str, paper: str, *, tuned: Sequence[str] = (),
               learned: Sequence[str] = ()) -> Callable[[ExperimentFn], ExperimentFn]:
    """Decorator: register ``func`` as the experiment ``name``; ``paper`` is the claim it
    checks; ``tuned`` / ``learned``: the tasks whose baselines / ZO-LSTMs it resolves."""

    def wrap(func: ExperimentFn) -> ExperimentFn:
        EXPERIMENTS.add(name, Experiment(name, paper, func, tuple(tuned), tuple(learned)))
        return func

    return wrap


#: the paper's order (sections 4.1-4.4, then the appendix figures)
ORDER = ("fig2-mnist", "fig2-cifar10", "table1", "fig3", "fig4", "fig8", "fig9", "fig10",
         "fig11", "generalization")


def available_experiments() -> list[str]:
    """Names of the registered experiments, in the paper's order."""
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(EXPERIMENTS, key=lambda name: (rank.get(name, len(ORDER)), name))


#: the hand-designed optimizers (the registry's role ``"baseline"``), in the paper's order
BASELINES = baselines()


def tuned_file(task: str) -> Path:
    """The shipped ``zol2l tune`` file of ``task``."""
    path = Path(str(resources.files("zol2l") / "tuned" / f"{task}.json"))
    if not path.is_file():
        raise FileNotFoundError(f"no tuned baselines shipped for {task!r} ({path}); run "
                                f"`zol2l reproduce ... --retrain` to tune them")
    return path


@dataclass(frozen=True)
class RunSizes:
    """The sizes one experiment runs a task at (:meth:`Context.sizes`): test ``instances`` x
    ``trials`` runs of ``steps`` steps with ``q`` directions; ``alpha`` is tuned on
    ``tune_instances`` training instances for ``tune_steps`` steps (section 4.3)."""

    instances: int
    trials: int
    steps: int
    q: int
    tune_instances: int
    tune_steps: int


@dataclass
class Context:
    """Everything an experiment needs: sizes, tasks, tuned baselines, learned checkpoints.

    Resolving tuned baselines (:meth:`baselines`) and checkpoints (:meth:`learned`) only reads
    files: the shipped ones, or with ``retrain`` those that the retrain step
    (:func:`zol2l.experiments.reproduce.retrain.retrain`) wrote into ``root/retrained/TASK``.

    Attributes:
        out: the experiment's output folder.
        quick: run the small version (tests, smoke checks).
        retrain: use the baselines tuned and the ZO-LSTMs meta-trained by the retrain step
            instead of the shipped files.
        data_dir, device: passed to the tasks that take them (the attacks).
        options: how the runs execute (:class:`~zol2l.experiments.options.RunOptions`: the
            run seed of every evaluation, the backend, ``resume``, progress bars); each
            evaluation keeps its units in ``out/units/TAG``.
        images, instances, trials: caps on the paper's protocol sizes (attack images, binary
            classification instances, trials per instance) for machines where the full
            protocol does not fit; ``None`` runs the paper's sizes.  What ran is recorded.
            Which cap bounds a task's instances is the task's ``protocol.caps``.
        cifar_images: a separate cap for CIFAR-10 images (``images`` when ``None``).
        root: folder of the whole ``reproduce`` call (``retrained/`` lives there); ``out``
            by default.
    """

    out: Path
    quick: bool = False
    retrain: bool = False
    data_dir: str | None = None
    device: str = "cpu"
    options: RunOptions = field(default_factory=RunOptions)
    root: Path | None = None
    images: int | None = None
    cifar_images: int | None = None
    instances: int | None = None
    trials: int | None = None
    sources: dict[str, Any] = field(default_factory=dict)
    _tasks: dict[tuple[str, str], TaskFamily] = field(default_factory=dict, repr=False)
    _tuned: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.root = Path(self.root) if self.root is not None else self.out

    def pick(self, quick: Any, full: Any) -> Any:
        """``quick`` in a quick run, else ``full``."""
        return quick if self.quick else full

    def sizes(self, name: str, *, quick: Mapping[str, int] | None = None,
              full: Mapping[str, int] | None = None) -> RunSizes:
        """The sizes of task ``name``: its :class:`~zol2l.tasks.base.Protocol` at quick or
        paper size (``quick`` / ``full`` override ``instances``, ``trials``, ``steps``,
        ``tune_instances``), paper sizes bounded by the user's caps, instances by the splits."""
        task = self.task(name)
        p = task.protocol
        test, train = len(task.instance_ids("test")), len(task.instance_ids("train"))
        cap = next((getattr(self, c) for c in p.caps if getattr(self, c)), None)
        if self.quick:
            v = {"instances": p.quick.instances, "trials": p.quick.trials,
                 "steps": p.quick.steps, "tune_instances": p.quick_tune_instances,
                 **(quick or {})}
            tune_steps = v["steps"]
        else:
            v = {"instances": p.full.instances, "trials": p.full.trials, "steps": p.full.steps,
                 "tune_instances": p.tune_instances or train, **(full or {})}
            v["instances"] = min(v["instances"], cap or v["instances"])
            v["tune_instances"] = min(v["tune_instances"], cap or v["tune_instances"])
            v["trials"] = min(v["trials"], self.trials or v["trials"])
            # tuning on every training image is hours of CPU for CIFAR-10: with a cap, half
            tune_steps = max(v["steps"] // 2, 1) if p.halve_capped_tune_steps and cap \
                else v["steps"]
        return RunSizes(instances=min(v["instances"], test), trials=v["trials"], steps=v["steps"],
                        q=task.default_q, tune_instances=min(v["tune_instances"], train),
                        tune_steps=tune_steps)

    def machine_options(self, name: str) -> dict[str, Any]:
        """The context's ``data_dir`` and ``device`` for the options of task ``name`` that
        take them (those its family declares, e.g. the attacks')."""
        declared = {o.name for o in task_class(name).cli_options}
        return {k: v for k, v in (("data_dir", self.data_dir), ("device", self.device))
                if k in declared}

    def task(self, name: str, **options: Any) -> TaskFamily:
        """The task family ``name`` (cached per options), with :meth:`machine_options`."""
        options = {**self.machine_options(name), **options}
        key = (name, json.dumps(options, sort_keys=True, default=str))
        if key not in self._tasks:
            self._tasks[key] = make_task(name, **options)
        return self._tasks[key]

    def retrained(self, task: str) -> Path:
        """The folder the retrain step writes ``task``'s files into."""
        return Path(self.root or self.out) / "retrained" / task

    def tuned_path(self, task: str) -> Path:
        """The tuning file of ``task`` this context resolves (shipped, or retrained)."""
        if not self.retrain:
            return tuned_file(task)
        path = self.retrained(task) / "hparams.json"
        if not path.is_file():
            raise FileNotFoundError(f"no retrained baselines for {task!r} ({path}); the retrain "
                                    f"step (`zol2l reproduce ... --retrain`) writes them")
        return path

    def baselines(self, task: str, names: Sequence[str] = BASELINES) -> dict[str, dict[str, Any]]:
        """Tuned hyperparameters of the hand-designed optimizers ``names`` on ``task``
        (``{}`` for a name the tuning file lacks: the optimizer's defaults)."""
        if task not in self._tuned:
            path = self.tuned_path(task)
            payload = json.loads(path.read_text())
            self._tuned[task] = {n: dict(e["hyperparameters"])
                                 for n, e in payload["optimizers"].items()}
            self.sources[f"tuned:{task}"] = {"file": str(path), "split": payload.get("split"),
                                             "instances": len(payload.get("instances", [])),
                                             "device": payload.get("device")}
        table = self._tuned[task]
        return {n: dict(table.get(n, {})) for n in names}

    def learned(self, task: str) -> str:
        """Checkpoint spec of the ZO-LSTM trained on ``task``: ``pretrained:TASK`` or, with
        ``retrain``, the stage-2 file the retrain step meta-trained."""
        spec = f"pretrained:{task}"
        if self.retrain:
            path = self.retrained(task) / "query" / "query.safetensors"
            if not path.is_file():
                raise FileNotFoundError(f"no retrained ZO-LSTM for {task!r} ({path}); the "
                                        f"retrain step (`zol2l reproduce ... --retrain`) "
                                        f"writes it")
            spec = str(path)
        self.sources[f"zo-lstm:{task}"] = spec
        return spec

    def evaluate(self, task: TaskFamily, optimizers: Mapping[str, Mapping[str, Any]], *,
                 tag: str, **kwargs: Any) -> dict[str, Any]:
        """:func:`~zol2l.experiments.evaluate.evaluate` through the context's backend; finished
        work units are kept in ``out/units/TAG`` so that ``--resume`` skips them.

        A key ``NAME@LABEL`` of ``optimizers`` (for example ``"zo-lstm@zo-lstm-finetune"``)
        runs the registered optimizer ``NAME`` (a label's units are seeded as ``NAME``'s,
        :func:`~zol2l.experiments.units.unit_seed`) and is reported as ``LABEL`` in the
        returned payload."""
        from zol2l.experiments.evaluate import evaluate

        options = replace(self.options, **{k: kwargs.pop(k) for k in
                                           ("seed", "progress", "instance_chunk", "trial_chunk")
                                           if k in kwargs})
        q = kwargs.pop("q", None)
        keep = kwargs.pop("keep", None)
        table = {key: hp if q is None else {"q": q, **hp} for key, hp in optimizers.items()}
        kept: dict[str, Any] = {}
        payload = evaluate(task, table, keep=kept if keep is not None else None,
                           options=replace(options, workdir=self.out / "units" / tag), **kwargs)
        payload["optimizers"] = labelled(payload["optimizers"])
        if keep is not None:
            keep.update(labelled(kept))
        return payload


def labelled(optimizers: Mapping[str, Any]) -> dict[str, Any]:
    """``optimizers`` keyed as :meth:`Context.evaluate` reports them
    (``NAME@LABEL`` -> ``LABEL``)."""
    return {key.split("@", 1)[-1]: value for key, value in optimizers.items()}


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine(),
                            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "torch": torch.__version__}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def run_experiment(name: str, ctx: Context) -> dict[str, Any]:
    """Run the experiment ``name`` in ``ctx`` and write ``ctx.out / "results.json"``."""
    try:
        exp = EXPERIMENTS[name]
    except KeyError:
        raise ValueError(f"unknown experiment {name!r}; available: "
                         f"{', '.join(available_experiments())}, all") from None
    start = time.perf_counter()
    body = exp.func(ctx)
    missing = {"protocol", "results", "checks", "figures"} - set(body)
    if missing:
        raise RuntimeError(f"experiment {name} returned no {sorted(missing)}")
    for fig in body["figures"]:
        if not (ctx.out / fig).is_file():
            raise RuntimeError(f"experiment {name} lists figure {fig} but did not write it")
    payload = {
        "experiment": name, "paper": exp.paper, "quick": ctx.quick, "retrain": ctx.retrain,
        "seed": ctx.options.seed, "device": ctx.device, "machine": machine(),
        "seconds": time.perf_counter() - start, "sources": dict(ctx.sources), **body,
    }
    # undefined statistics of the analyses (a correlation of a constant map, a ratio to a
    # zero) are null; the losses themselves never are (units raise on a non-finite loss)
    write_json_atomic(ctx.out / "results.json", undefined_as_null(payload))
    return payload
