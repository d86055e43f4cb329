"""Figure 4 of Ruan et al. (2020): ablations and analysis of ZO-LSTM (section 4.4).

(a)-(c) Ablation study on the MNIST attack, the CIFAR-10 attack and binary classification:
    ZO-SGD (tuned), ZO-LSTM, ZO-LSTM-no-query (standard Gaussian directions + UpdateRNN),
    ZO-LSTM-no-update (QueryRNN + the ZO-SGD update with ZO-SGD's tuned ``delta``) and
    ZO-LSTM-GuidedES (Guided-ES directions + UpdateRNN), each learned optimizer with the
    checkpoint trained on that task.
(d) Average cosine similarity between the ZO estimate and the true gradient, with and without
    the QueryRNN, against q in {5, 10, 20, 40}, on MNIST.  Along each ZO-LSTM trajectory the
    estimate at the current point is formed twice (the QueryRNN's std, and standard Gaussian
    directions, q directions each) and compared with the autograd gradient of the attack
    objective at that point (:func:`true_gradient`); averaged over the steps "before
    convergence" (the first steps of the run) and the images.
(e) One coordinate's trajectory when ZO-LSTM attacks one MNIST test image: the QueryRNN's
    predicted variance, the ZO estimate and the UpdateRNN's update; and the updates that
    ZO-SGD and ZO-ADAM (tuned) would make from the same estimate sequence.

The paper's claims (section 4.4): the QueryRNN and the UpdateRNN each improve the optimizer
(convergence rate and/or final loss); the QueryRNN's gain is smaller on binary classification;
Guided ES speeds up the MNIST attack, much less than the QueryRNN, and has negligible effect
on the other tasks; the QueryRNN raises the cosine similarity, more so as q grows; the update
is less noisy than the estimate and the predicted variance smoother still, its trend closer
to the update's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from zol2l.experiments.plots import band
from zol2l.experiments.reproduce import figures
from zol2l.experiments.reproduce.analysis import finite, hyperparameters, rel_diff, unavailable
from zol2l.experiments.reproduce.base import Context
from zol2l.experiments.reproduce.query_analysis import cosine_study, trajectory_study
from zol2l.experiments.reproduce.spec import Check, Payload, Plan, Report, Run, Spec, register
from zol2l.tasks.registry import task_class

ABLATIONS = ("zo-sgd", "zo-lstm", "zo-lstm-no-query", "zo-lstm-no-update", "zo-lstm-guided-es")


@dataclass(frozen=True)
class Panel:
    """What the paper claims on one ablation panel beyond "each module improves ZO-LSTM":
    Guided ES speeds it up (else: negligible effect), and the QueryRNN's gain is the
    smallest of the panels."""

    guided_es_helps: bool = False
    smallest_query_gain: bool = False


#: Figure 4a-4c, one panel per task (titles: the tasks' ``protocol.title``)
PANELS = {"mnist-attack": Panel(guided_es_helps=True), "cifar10-attack": Panel(),
          "binary-classification": Panel(smallest_query_gain=True)}
Q_GRID = (5, 10, 20, 40)
#: "negligible" effect of Guided ES: mean loss over iterations within this relative change
NEGLIGIBLE = 0.05


def ablation_optimizers(ctx: Context, task: str, q: int) -> dict[str, dict[str, Any]]:
    """The five optimizers of Figure 4a-4c on ``task`` (learned ones: ``ctx.learned(task)``;
    ZO-LSTM-no-update takes the tuned ZO-SGD step size)."""
    sgd = {**ctx.baselines(task, ["zo-sgd"])["zo-sgd"], "q": q}
    ckpt = ctx.learned(task)
    step = {k: sgd[k] for k in ("delta", "lr") if sgd.get(k) is not None}
    return {"zo-sgd": sgd, "zo-lstm": {"checkpoint": ckpt, "q": q},
            "zo-lstm-no-query": {"checkpoint": ckpt, "q": q},
            "zo-lstm-no-update": {"checkpoint": ckpt, "q": q, **step},
            "zo-lstm-guided-es": {"checkpoint": ckpt, "q": q}}


class Fig4(Spec):
    """Figure 4a-4e (section 4.4): the five optimizers of each ablation panel through the
    harness; the cosine (d) and trajectory (e) studies run the loop themselves
    (:mod:`~zol2l.experiments.reproduce.query_analysis`)."""

    def plan(self, ctx: Context) -> Plan:
        runs, skipped, sizes = [], {}, {}
        for name in PANELS:
            reason = unavailable(ctx, name)
            if reason:
                skipped[name] = reason
                continue
            size = sizes[name] = ctx.sizes(name)
            runs.append(Run(f"fig4-{name}", ctx.task(name),
                            ablation_optimizers(ctx, name, size.q), split="test",
                            instances=size.instances, trials=size.trials, steps=size.steps,
                            q=size.q))
        return Plan(tuple(runs), {"skipped": skipped, "sizes": sizes})

    def analyze(self, ctx: Context, plan: Plan, done: Mapping[str, Payload]) -> Report:
        panels: dict[str, Any] = {}
        for name in PANELS:
            if name in plan.setup["skipped"]:
                panels[name] = {"skipped": plan.setup["skipped"][name]}
                continue
            size, res = plan.setup["sizes"][name], done[f"fig4-{name}"]
            blocks = res["optimizers"]
            summary = {k: {"final": finite(b["final_loss_mean"]),
                           "auc": float(np.mean(b["loss_mean"])) if all(
                               math.isfinite(v) for v in b["loss_mean"]) else math.inf}
                       for k, b in blocks.items()}
            panels[name] = {
                "protocol": {"instances": size.instances, "test_ids": res["instances"],
                             "trials": size.trials, "steps": size.steps, "q": size.q,
                             "checkpoint": ctx.learned(name),
                             "optimizers": hyperparameters(blocks)},
                "optimizers": blocks, "summary": summary}
        cos_images = ctx.sizes("mnist-attack").instances
        cos_steps = ctx.pick(5, 100)
        q_grid = tuple(ctx.pick((5, 20), Q_GRID))
        cos = cosine_study(ctx, q_grid, cos_images, cos_steps)
        traj = trajectory_study(ctx, ctx.pick(10, 200), ctx.pick(5, 50))
        protocol = {
            "panels": {k: p.get("protocol", p) for k, p in panels.items()},
            "cosine": {"task": "mnist-attack", "split": "test", "images": cos_images,
                       "trials": 1, "steps": cos_steps, "q_grid": list(q_grid),
                       "checkpoint": ctx.learned("mnist-attack"),
                       "method": "along each ZO-LSTM run (q directions), the estimate at x_t "
                                 "with the QueryRNN's normalized std (unmixed) and with "
                                 "N(0, I), vs the autograd gradient; averaged over the first "
                                 "steps and images"},
            "trajectory": {k: traj[k] for k in ("image", "coordinate", "steps", "q", "top",
                                                "hyperparameters")},
            "negligible": NEGLIGIBLE,
        }
        results = {"panels": {k: {kk: p[kk] for kk in ("optimizers", "summary")}
                              if "summary" in p else p for k, p in panels.items()},
                   "cosine": cos, "trajectory": traj}
        return Report(protocol, results, (_figure(ctx, _titles(), panels, cos, traj),))

    def checks(self, report: Report) -> list[Check]:
        r = report.results
        return _checks(_titles(), r["panels"], r["cosine"], r["trajectory"])


def _titles() -> dict[str, str]:
    """The panel titles: each task's ``protocol.title``."""
    return {name: task_class(name).protocol.title for name in PANELS}


register(Fig4(name="fig4", paper=(
    "Figure 4 (ablations and analysis). The QueryRNN and the UpdateRNN each improve ZO-LSTM "
    "(MNIST, CIFAR-10, binary classification); Guided ES helps much less than the QueryRNN; "
    "the QueryRNN raises the cosine similarity between estimate and gradient, more as q "
    "grows; the UpdateRNN's update is smoother than the estimate."),
    tuned=tuple(PANELS), learned=tuple(PANELS)))


def _fmt(s: dict[str, float]) -> str:
    return f"final {s['final']:.4g} / mean {s['auc']:.4g}"


def _checks(titles: dict[str, str], panels: dict[str, Any], cos: dict[str, Any],
            traj: dict[str, Any]) -> list[Check]:
    """One check per claim of section 4.4, from the measured numbers."""
    checks: list[Check] = []
    gains: dict[str, float] = {}
    for name, title in titles.items():
        short = title.split(" ", 1)[1]
        if "summary" not in panels[name]:
            for module in ("QueryRNN", "UpdateRNN"):
                checks.append(Check(f"{title}: the {module} improves ZO-LSTM", None,
                                    f"skipped: {panels[name]['skipped']}"))
            continue
        s = panels[name]["summary"]
        for module, ablated in (("QueryRNN", "zo-lstm-no-query"),
                                ("UpdateRNN", "zo-lstm-no-update")):
            checks.append(Check(
                f"{title}: the {module} improves ZO-LSTM (lower final loss or faster "
                f"convergence = lower mean loss over iterations than "
                f"{figures.label(ablated)})",
                s["zo-lstm"]["final"] < s[ablated]["final"]
                or s["zo-lstm"]["auc"] < s[ablated]["auc"],
                f"ZO-LSTM {_fmt(s['zo-lstm'])}; {figures.label(ablated)} {_fmt(s[ablated])}"))
        gains[short] = -rel_diff(s["zo-lstm"]["auc"], s["zo-lstm-no-query"]["auc"])
        guided = -rel_diff(s["zo-lstm-guided-es"]["auc"], s["zo-lstm-no-query"]["auc"])
        if PANELS[name].guided_es_helps:
            checks.append(Check(
                f"{title}: Guided ES speeds up convergence over ZO-LSTM-no-query, "
                "but much less than the QueryRNN",
                0 < guided < gains[short],
                f"mean-loss gain over no-query: Guided ES {guided:+.1%}, "
                f"QueryRNN {gains[short]:+.1%}"))
        else:
            checks.append(Check(
                f"{title}: Guided ES has a negligible effect (mean loss within "
                f"{NEGLIGIBLE:.0%} of ZO-LSTM-no-query)",
                abs(guided) <= NEGLIGIBLE, f"mean-loss change vs no-query: {guided:+.1%}"))
    for name, panel in PANELS.items():
        short = titles[name].split(" ", 1)[1]
        if not panel.smallest_query_gain or short not in gains or len(gains) < 2:
            continue
        checks.append(Check(
            f"The QueryRNN's improvement is less significant on {short} than on the "
            f"other tasks",
            all(gains[short] < v for k, v in gains.items() if k != short),
            "relative mean-loss gain over no-query: "
            + ", ".join(f"{k} {v:+.1%}" for k, v in gains.items())))
    qs = list(cos)
    gap = {q: cos[q]["query_mean"] - cos[q]["gaussian_mean"] for q in qs}
    spread = float(np.mean([cos[q]["query_std_spread"] for q in qs]))
    checks.append(Check(
        "(d) The QueryRNN raises the cosine similarity between the ZO estimate and the "
        "true gradient, at every q",
        all(g > 0 for g in gap.values()),
        "; ".join(f"q={q}: {cos[q]['query_mean']:.3f} vs {cos[q]['gaussian_mean']:.3f}"
                  for q in qs)
        + f" (QueryRNN's normalized std: mean spread across coordinates {spread:.3g})"))
    checks.append(Check(
        "(d) The QueryRNN's cosine improvement grows with q (positive, and larger at "
        "the largest q than at the smallest)",
        gap[qs[-1]] > max(gap[qs[0]], 0.0) if len(qs) > 1 else None,
        "gap " + ", ".join(f"q={q}: {g:+.3f}" for q, g in gap.items())))
    st = traj["statistics_top"]
    checks.append(Check(
        "(e) The UpdateRNN's update is less noisy than the ZO estimate, and the "
        "predicted variance is smoother still",
        st["roughness_update"] < st["roughness_estimate"]
        and st["roughness_variance"] < st["roughness_update"],
        f"median roughness over the {traj['top']} most active coordinates: "
        f"estimate {st['roughness_estimate']:.3f}, update "
        f"{st['roughness_update']:.3f}, variance {st['roughness_variance']:.3f}"))
    checks.append(Check(
        "(e) The predicted variance follows the update's magnitude more than the "
        "estimate's",
        st["corr_variance_abs_update"] > st["corr_variance_abs_estimate"],
        f"median correlation with |update| {st['corr_variance_abs_update']:.3f}, "
        f"with |estimate| {st['corr_variance_abs_estimate']:.3f}"))
    return checks


def _figure(ctx: Context, titles: dict[str, str], panels: dict[str, Any], cos: dict[str, Any],
            traj: dict[str, Any]) -> str:
    """2 x 3 panels: (a)-(c) ablations, (d) cosine vs q, (e) the coordinate's trajectory
    (top: variance, estimate, update; bottom: ZO-LSTM vs replayed ZO-SGD / ZO-ADAM)."""
    fig, axes = figures.grid(2, 3, width=5.0, height=3.8)
    for ax, (name, title) in zip(axes[0], titles.items(), strict=True):
        p = panels[name]
        if "summary" not in p:
            ax.text(0.5, 0.5, f"{title}\nskipped: files missing", ha="center", va="center",
                    transform=ax.transAxes)
            ax.set_axis_off()
            continue
        pr = p["protocol"]
        figures.loss_panel(ax, p["optimizers"], log=ctx.task(name).protocol.log_loss,
                           title=f"{title} ({pr['instances']} x {pr['trials']} trials, "
                                 f"q={pr['q']})")
    ax = axes[1][0]
    qs = [int(q) for q in cos]
    for key, name in (("query", "zo-lstm"), ("gaussian", "zo-lstm-no-query")):
        mean = [cos[str(q)][f"{key}_mean"] for q in qs]
        std = [cos[str(q)][f"{key}_std_over_images"] for q in qs]
        band(ax, qs, mean, std, label=figures.label(name), color=figures.color(name))
        ax.plot(qs, mean, "o", color=figures.color(name))
    ax.plot(qs, [cos[str(q)]["gaussian_theory"] for q in qs], ":", color="k", lw=1,
            label="theory N(0,I): sqrt(q/(q+d+1))")
    ax.set_xticks(qs)
    ax.set_xlabel("query directions q")
    ax.set_ylabel("cosine(estimate, true gradient)")
    ax.set_title("(d) MNIST: with (ZO-LSTM) / without (no-query) QueryRNN", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    ax = axes[1][1]
    t = np.arange(len(traj["estimate"]))
    ax.plot(t, traj["estimate"], color="tab:gray", lw=0.8, label="ZO estimate")
    ax.plot(t, traj["update"], color="tab:red", lw=1.4, label="UpdateRNN update")
    twin = ax.twinx()
    twin.plot(t, traj["variance"], color="tab:olive", lw=1.4, label="predicted variance")
    twin.set_ylabel("predicted variance", color="tab:olive")
    ax.set_xlabel("iteration")
    ax.set_ylabel("estimate / update")
    ax.set_title(f"(e) coordinate {traj['coordinate']} of MNIST image {traj['image']}",
                 fontsize=10)
    ax.grid(alpha=0.3)
    lines = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, framealpha=0.85,
              loc="lower right")
    ax = axes[1][2]
    for key, name in (("update", "zo-lstm"), ("zo-sgd", "zo-sgd"), ("zo-adam", "zo-adam")):
        ax.plot(t, traj[key], color=figures.color(name), lw=1.2, label=figures.label(name))
    ax.set_xlabel("iteration")
    ax.set_ylabel("parameter update")
    ax.set_title("(e) same estimates, different update rules", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    return figures.save(fig, ctx.out / "fig4.png",
                        suptitle="Figure 4: ablations (a-c), cosine similarity (d), "
                                 "one coordinate's trajectory (e)")
