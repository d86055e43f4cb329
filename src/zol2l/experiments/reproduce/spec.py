"""Experiments as specs: what to run, the one harness, the analysis, the claim checks.

A :class:`Spec` says what one experiment runs (:meth:`Spec.plan`: a :class:`Plan` of
:class:`Run`\\ s, each one call of the evaluation harness :meth:`Context.evaluate`), how its
numbers and figures follow from the runs' payloads (:meth:`Spec.analyze`: a :class:`Report`)
and which claims of the paper they support (:meth:`Spec.checks`: :class:`Check`\\ s).
:func:`run_spec` executes it (:func:`execute`, the one harness) and returns the experiment's
dict (:func:`body`); :func:`register` registers it with
:func:`~zol2l.experiments.reproduce.base.experiment`.  A new figure is one small ``Spec``
subclass: its plan, its analysis and its checks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from zol2l.experiments.options import DEFAULT_INSTANCE_CHUNK
from zol2l.experiments.reproduce.base import Context, experiment
from zol2l.tasks.base import TaskFamily

#: one evaluation payload (``results.json`` of ``zol2l evaluate``), keyed by optimizer label
Payload = dict[str, Any]


@dataclass(frozen=True)
class Run:
    """One call of the harness: ``optimizers`` (``NAME`` or ``NAME@LABEL`` -> hyperparameters,
    see :meth:`Context.evaluate`) on ``task`` for ``trials`` runs of ``steps`` steps per
    instance, on the first ``instances`` ids of ``split`` or on the explicit ``ids``, with
    ``q`` directions per estimate (eq. 1; ``None``: each table's own or the task's).

    ``problem_options`` go to the task's problems (e.g. the attack's ``perturbation_size``),
    ``instance_chunk`` sets the instances per work unit, and ``keep`` adds the merged run
    results and problems to the payload under ``"kept"`` (label -> ``(RunResult, Problem)``).
    ``tag`` names the run's work units (``out/units/TAG``) and its payload."""

    tag: str
    task: TaskFamily
    optimizers: Mapping[str, Mapping[str, Any]]
    trials: int
    steps: int
    q: int | None = None
    instances: int | None = None
    ids: Sequence[int] | None = None
    split: str = "test"
    problem_options: Mapping[str, Any] | None = None
    instance_chunk: int | None = DEFAULT_INSTANCE_CHUNK
    keep: bool = False


def execute(ctx: Context, runs: Sequence[Run]) -> dict[str, Payload]:
    """The one harness: every run through :meth:`Context.evaluate`, payloads by tag."""
    done: dict[str, Payload] = {}
    for run in runs:
        if run.tag in done:
            raise ValueError(f"two runs are tagged {run.tag!r}")
        kept: dict[str, Any] | None = {} if run.keep else None
        payload = ctx.evaluate(run.task, run.optimizers, tag=run.tag, split=run.split,
                               instances=run.instances, ids=run.ids, trials=run.trials,
                               steps=run.steps, q=run.q, problem_options=run.problem_options,
                               instance_chunk=run.instance_chunk, keep=kept)
        if kept is not None:
            payload["kept"] = kept
        done[run.tag] = payload
    return done


@dataclass(frozen=True)
class Check:
    """One claim of the paper, whether the measured numbers support it (``None``: they cannot
    say, e.g. a skipped task or an undefined statistic) and the numbers themselves."""

    claim: str
    holds: bool | None
    evidence: str

    def __post_init__(self) -> None:
        if self.holds is not None:
            object.__setattr__(self, "holds", bool(self.holds))

    def to_json(self) -> dict[str, Any]:
        """The ``checks`` entry of ``results.json``."""
        return {"claim": self.claim, "holds": self.holds, "evidence": self.evidence}


@dataclass(frozen=True)
class Plan:
    """What an experiment runs: the harness calls ``runs`` and whatever else the analysis
    needs to know about them (``setup``: sizes, optimizer tables, tuned ``alpha``)."""

    runs: tuple[Run, ...]
    setup: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Report:
    """What an experiment found: ``protocol`` (what ran: instances, trials, steps, q, grids),
    ``results`` (the measured numbers) and the ``figures`` it wrote into ``ctx.out``."""

    protocol: dict[str, Any]
    results: dict[str, Any]
    figures: tuple[str, ...]


def body(report: Report, checks: Sequence[Check]) -> dict[str, Any]:
    """The dict an experiment returns (see :mod:`zol2l.experiments.reproduce.base`)."""
    return {"protocol": report.protocol, "results": report.results,
            "checks": [c.to_json() for c in checks], "figures": list(report.figures)}


@dataclass(frozen=True, kw_only=True)
class Spec(ABC):
    """An experiment: ``name``, the paper's claim (``paper``) and the tasks whose tuned
    baselines (``tuned``) and learned optimizers (``learned``) it resolves; subclasses say
    what it runs, how it is analysed and what it checks.

    :meth:`plan` may resolve files (tuned baselines, checkpoints) and run a selection step
    through the same harness first (``alpha`` on the training instances, section 4.3:
    :func:`~zol2l.experiments.reproduce.analysis.tune_alpha`); it never trains."""

    name: str
    paper: str
    tuned: tuple[str, ...] = ()
    learned: tuple[str, ...] = ()

    @abstractmethod
    def plan(self, ctx: Context) -> Plan:
        """The runs of the experiment in ``ctx`` (quick or paper sizes)."""

    @abstractmethod
    def analyze(self, ctx: Context, plan: Plan, done: Mapping[str, Payload]) -> Report:
        """Numbers and figures from the payloads ``done`` of ``plan``'s runs (by tag)."""

    @abstractmethod
    def checks(self, report: Report) -> list[Check]:
        """The paper's claims, checked on ``report``."""


def run_spec(spec: Spec, ctx: Context) -> dict[str, Any]:
    """Plan, execute, analyse and check ``spec`` in ``ctx``; the experiment's dict."""
    plan = spec.plan(ctx)
    report = spec.analyze(ctx, plan, execute(ctx, plan.runs))
    return body(report, spec.checks(report))


def register(spec: Spec) -> Spec:
    """Register ``spec`` as the experiment ``spec.name`` (run by :func:`run_spec`)."""
    experiment(spec.name, spec.paper, tuned=spec.tuned, learned=spec.learned)(
        partial(run_spec, spec))
    return spec
