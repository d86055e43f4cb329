"""The quality bar: ZO-LSTM, its ablations and the tuned baselines on the TEST instances.

On each task, through the one harness (:meth:`Context.evaluate`), at the task's protocol sizes:

* the hand-designed baselines with the hyperparameters ``zol2l tune`` chose on TRAINING
  instances (``src/zol2l/tuned/TASK.json``);
* ``zo-lstm`` (``pretrained:TASK``; on CIFAR-10 meta-trained there from scratch) and its
  ablations ``zo-lstm-no-query``, ``zo-lstm-no-update`` (ZO-SGD's tuned step) and
  ``zo-lstm-guided-es``.

:func:`measure` reports per optimizer the mean final loss with its standard error, the success
rate and the iterations to first success (attacks); the paired difference of each optimizer's
final loss to ZO-LSTM's over the same (instance, trial) rows, with its standard error; and the
bars (``holds`` true/false): ZO-LSTM's mean final loss below every baseline's, its mean
iterations to first success below every baseline's (attacks), and ZO-LSTM-no-query and
ZO-LSTM-no-update both ending above ZO-LSTM (Figure 4a).  ``bench/quality_bar.py`` is its
command line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from zol2l.experiments.options import DEFAULT_INSTANCE_CHUNK
from zol2l.experiments.reproduce import figures
from zol2l.experiments.reproduce.ablations import ablation_optimizers
from zol2l.experiments.reproduce.analysis import (
    hyperparameters,
    listing,
    paired,
    select,
    tune_alpha,
)
from zol2l.experiments.reproduce.base import BASELINES, Context
from zol2l.experiments.reproduce.spec import (
    Check,
    Payload,
    Plan,
    Report,
    Run,
    Spec,
    execute,
    register,
)

#: the tasks of the registered ``quality-bar`` experiment
TASKS = ("mnist-attack", "cifar10-attack", "binary-classification")
ABLATIONS = ("zo-lstm-no-query", "zo-lstm-no-update", "zo-lstm-guided-es")
#: the block numbers reported beside the paired differences
REPORTED = ("success_rate", "iters_to_success_mean", "iters_to_success_median",
            "queries_to_success_mean", "total_queries", "seconds")


def optimizers(ctx: Context, task: str, q: int) -> dict[str, dict[str, Any]]:
    """The tuned baselines the tuning file holds, ZO-LSTM and its three ablations."""
    table = {n: {**hp, "q": q} for n, hp in ctx.baselines(task).items() if hp}
    table.update({k: v for k, v in ablation_optimizers(ctx, task, q).items() if k != "zo-sgd"})
    return table


def summarize(payload: Payload) -> dict[str, Any]:
    """Per-optimizer numbers and paired differences to ZO-LSTM."""
    blocks = payload["optimizers"]
    reported = select(blocks, REPORTED)
    return {name: {**row, **reported[name]} for name, row in paired(blocks, "zo-lstm").items()}


def bars(rows: dict[str, Any]) -> dict[str, Any]:
    """The quality bars (ZO-LSTM below every baseline, ablations worse than ZO-LSTM, ...),
    each with ``holds`` and the numbers it compares."""
    lstm = rows["zo-lstm"]
    base = [n for n in rows if n in BASELINES]
    out: dict[str, Any] = {
        "final_loss_below_every_baseline": {
            "holds": all(lstm["final_loss_mean"] < rows[n]["final_loss_mean"] for n in base),
            "zo-lstm": lstm["final_loss_mean"],
            "baselines": {n: rows[n]["final_loss_mean"] for n in base}},
        "ablations_worse_than_zo_lstm": {
            "holds": all(rows[n]["final_loss_mean"] > lstm["final_loss_mean"]
                         for n in ("zo-lstm-no-query", "zo-lstm-no-update")),
            "zo-lstm": lstm["final_loss_mean"],
            "ablations": {n: rows[n]["final_loss_mean"] for n in ABLATIONS}},
    }
    if lstm.get("iters_to_success_mean") is not None:
        its = {n: rows[n]["iters_to_success_mean"] for n in base}
        out["iters_to_success_below_every_baseline"] = {
            "holds": all(v is None or lstm["iters_to_success_mean"] < v for v in its.values()),
            "zo-lstm": lstm["iters_to_success_mean"], "baselines": its,
            "success_rates": {n: rows[n]["success_rate"] for n in [*base, "zo-lstm"]}}
    return out


def table(rows: dict[str, Any]) -> str:
    """A markdown table of ``rows``."""
    def fmt(v: Any, spec: str = ".4f") -> str:
        return "n/a" if v is None else format(v, spec)

    lines = ["| optimizer | final loss (± se) | minus ZO-LSTM (± se, paired) | success | "
             "iters to success |", "|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {fmt(r['final_loss_mean'])} ± {fmt(r['final_loss_se'])} | "
            f"{fmt(r['minus_zo_lstm_mean'], '+.4f')} ± {fmt(r['minus_zo_lstm_se'])} | "
            f"{fmt(r['success_rate'], '.3f')} | {fmt(r['iters_to_success_mean'], '.1f')} |")
    return "\n".join(lines)


def bar_run(ctx: Context, task_name: str, *, instances: int, trials: int, steps: int,
            alpha_grid: Sequence[float] = (), tune_instances: int = 2,
            instance_chunk: int | None = DEFAULT_INSTANCE_CHUNK, **task_options: Any
            ) -> tuple[Run, dict[str, Any] | None]:
    """The run of the bar on ``task_name``: the optimizers on the first ``instances`` test
    instances x ``trials`` for ``steps`` steps.  With ``alpha_grid``, ZO-LSTM's update scale
    ``alpha`` (section 4.3) is first picked on the first ``tune_instances`` TRAINING instances
    (1 trial) and the learned variants with an UpdateRNN run with it (the tuning is returned
    beside the run)."""
    task = ctx.task(task_name, **task_options)
    q = task.default_q
    table_ = optimizers(ctx, task_name, q)
    tuning = None
    if alpha_grid:
        tuning = tune_alpha(ctx, task, table_["zo-lstm"]["checkpoint"], grid=alpha_grid,
                            instances=tune_instances, trials=1, steps=steps, q=q, tag="alpha")
        for name in ("zo-lstm", "zo-lstm-no-query", "zo-lstm-guided-es"):
            table_[name]["alpha"] = tuning["best"]
    return Run(f"bar-{task_name}", task, table_, split="test", instances=instances,
               trials=trials, steps=steps, q=q, instance_chunk=instance_chunk), tuning


def bar_result(ctx: Context, task_name: str, run: Run, tuning: dict[str, Any] | None,
        payload: Payload) -> dict[str, Any]:
    """The bar on ``task_name`` from the payload of its :func:`bar_run`."""
    rows = summarize(payload)
    return {"task": task_name, "split": "test", "instances": len(payload["instances"]),
            "trials": run.trials, "steps": run.steps, "q": run.q, "seed": ctx.options.seed,
            "device": payload["device"],
            "hyperparameters": hyperparameters(payload["optimizers"]),
            "alpha_tuning": tuning, "optimizers": rows, "bars": bars(rows),
            "curves": payload["optimizers"]}


def measure(ctx: Context, task_name: str, **options: Any) -> dict[str, Any]:
    """:func:`bar_run` (``options``: its keywords) through the harness, then
    :func:`bar_result`."""
    run, tuning = bar_run(ctx, task_name, **options)
    return bar_result(ctx, task_name, run, tuning, execute(ctx, [run])[run.tag])


class QualityBar(Spec):
    """The bar on every task of :data:`TASKS` at its protocol sizes."""

    def plan(self, ctx: Context) -> Plan:
        runs = []
        for name in TASKS:
            size = ctx.sizes(name)
            runs.append(bar_run(ctx, name, instances=size.instances, trials=size.trials,
                                steps=size.steps)[0])
        return Plan(tuple(runs))

    def analyze(self, ctx: Context, plan: Plan, done: Mapping[str, Payload]) -> Report:
        found = {name: bar_result(ctx, name, run, None, done[run.tag])
                 for name, run in zip(TASKS, plan.runs, strict=True)}
        fig, axes = figures.grid(1, len(TASKS))
        for ax, (name, res) in zip(axes[0], found.items(), strict=True):
            figures.loss_panel(ax, res["curves"], log=ctx.task(name).protocol.log_loss,
                               title=f"{name}: {res['instances']} x {res['trials']} trials")
        figure = figures.save(fig, ctx.out / "quality-bar.png",
                              suptitle="Quality bar: tuned baselines, ZO-LSTM and its "
                                       "ablations (test instances)")
        keys = ("instances", "trials", "steps", "q", "hyperparameters")
        return Report({name: {k: res[k] for k in keys} for name, res in found.items()},
                      {name: {"optimizers": res["optimizers"], "bars": res["bars"]}
                       for name, res in found.items()}, (figure,))

    def checks(self, report: Report) -> list[Check]:
        return [Check(f"{name}: {key.replace('_', ' ')}", entry["holds"],
                      f"ZO-LSTM {entry['zo-lstm']}; " + listing(next(
                          v for k, v in entry.items() if k in ("baselines", "ablations")),
                          "", none="None"))
                for name, res in report.results.items() for key, entry in res["bars"].items()]


register(QualityBar(name="quality-bar", paper=(
    "The project's quality bar. On each task ZO-LSTM ends below every tuned baseline, needs "
    "fewer iterations to the first attack success, and beats ZO-LSTM-no-query and "
    "ZO-LSTM-no-update."), tuned=TASKS, learned=TASKS))
