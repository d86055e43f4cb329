"""Appendix C.3-C.4 of Ruan et al. (2020): trade-offs of ZO-LSTM on the MNIST attack.

* ``fig10`` (C.3): iterations to the first success and final loss of ZO-LSTM against the
  probability ``P`` of sampling with the QueryRNN's covariance (``P = 0``: no QueryRNN); the
  Bernoulli mixture of the sampling distribution (section 3).
* ``fig11`` (C.4): ZO-SZVR-G, ZO-SGD and ZO-LSTM-no-update, loss against iterations and
  against queries.

Sizes and helpers: :mod:`zol2l.experiments.reproduce.attack_analysis`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps

from zol2l.experiments.reproduce.analysis import CURVES, select
from zol2l.experiments.reproduce.attack_analysis import (
    TASK,
    _common,
    _fmt,
    _iterations,
    _no_update,
    _rank_corr,
    _setup,
)
from zol2l.experiments.reproduce.base import Context, labelled
from zol2l.experiments.reproduce.figures import color, grid, label, loss_panel, save
from zol2l.experiments.reproduce.spec import Check, Payload, Plan, Report, Run, Spec, register

#: Figure 10's Bernoulli probabilities
PROBS = (0.0, 0.25, 0.5, 0.75, 1.0)


class Fig10(Spec):
    """Bias-variance trade-off of the Bernoulli mixture (Figure 10): ZO-LSTM at every ``P``."""

    def plan(self, ctx: Context) -> Plan:
        setup = _setup(ctx)
        probs = ctx.pick((0.0, 1.0), PROBS)
        table = {f"zo-lstm@P={p:g}": {"checkpoint": setup["checkpoint"], "p_query": p,
                                      "alpha": 1.0} for p in probs}
        run = Run("fig10", setup["task"], table, instances=setup["images"],
                  trials=setup["trials"], steps=setup["steps"], q=setup["q"], keep=True)
        return Plan((run,), {**setup, "probs": probs, "table": table})

    def analyze(self, ctx: Context, plan: Plan, done: Mapping[str, Payload]) -> Report:
        setup, probs = plan.setup, plan.setup["probs"]
        payload = done["fig10"]
        kept = payload["kept"]
        per_p: dict[str, dict[str, Any]] = {}
        for name, block in payload["optimizers"].items():
            entry = _iterations(block, setup["steps"])
            first = torch.tensor(block["first_success_iter"])
            loss = kept[name][0].loss.double().cpu() if name in kept else None
            ok = (first >= 0).nonzero().flatten()
            entry["loss_at_first_success_mean"] = (
                float(loss[first[ok], ok].mean()) if loss is not None and len(ok) else None)
            entry["final_loss_std"] = block["final_loss_std"]
            per_p[name] = entry
        iters = [v["iters_mean"] for v in per_p.values()]
        finals = [v["final_loss_mean"] for v in per_p.values()]

        fig, axes = grid(1, 3)
        axes[0][0].errorbar(probs, iters, yerr=[v["iters_sem"] for v in per_p.values()],
                            marker="o", capsize=3, color=color("zo-lstm"))
        axes[0][0].set_ylabel("iterations to first success (mean +- s.e.)")
        axes[0][1].errorbar(probs, finals, marker="o", capsize=3, color=color("zo-lstm"),
                            yerr=[v["final_loss_std"] / math.sqrt(v["runs"])
                                  for v in per_p.values()])
        axes[0][1].set_ylabel("final loss (mean +- s.e.)")
        for ax, title in zip(axes[0], ("(a) iteration complexity", "(b) final loss",
                                       "(c) loss curves"), strict=True):
            ax.set_title(title, fontsize=10)
            if title[1] != "c":
                ax.set_xlabel("P (probability of sampling with the QueryRNN)")
                ax.grid(alpha=0.3)
        cmap = colormaps["viridis"]
        for k, (name, block) in enumerate(payload["optimizers"].items()):
            axes[0][2].plot(block["loss_mean"], color=cmap(k / max(len(probs) - 1, 1)),
                            label=name)
        axes[0][2].set(xlabel="iteration", ylabel="loss (mean)", yscale="log")
        axes[0][2].grid(alpha=0.3)
        axes[0][2].legend(frameon=False, fontsize=8)
        figure = save(fig, ctx.out / "fig10.png",
                      suptitle=f"Figure 10: ZO-LSTM vs Bernoulli P (MNIST attack, "
                               f"{setup['images']} images x {setup['trials']} trials, "
                               f"{setup['steps']} steps)")
        protocol = {**_common(setup, ctx), "probs": list(probs),
                    "optimizers": labelled(setup["table"]),
                    "iterations": "failed runs count as `steps`"}
        results = {"per_p": per_p, "curves": select(payload["optimizers"], CURVES)}
        return Report(protocol, results, (figure,))

    def checks(self, report: Report) -> list[Check]:
        probs, per_p = report.protocol["probs"], report.results["per_p"]
        iters = [v["iters_mean"] for v in per_p.values()]
        finals = [v["final_loss_mean"] for v in per_p.values()]
        rho_i, rho_l = _rank_corr(probs, iters), _rank_corr(probs, finals)
        rel_i = (max(iters) - min(iters)) / min(iters) if min(iters) > 0 else math.inf
        rel_l = (max(finals) - min(finals)) / min(finals) if min(finals) > 0 else math.inf
        return [
            Check("larger P needs fewer iterations to the first success",
                  iters[-1] < iters[0] and rho_i < 0,
                  f"{_fmt(dict(zip(per_p, iters, strict=True)))} (Spearman rho {rho_i:.2f}; "
                  f"largest s.e. {max(v['iters_sem'] for v in per_p.values()):.1f})"),
            Check("larger P ends at a higher final loss", finals[-1] > finals[0] and rho_l > 0,
                  f"{_fmt(dict(zip(per_p, finals, strict=True)), 3)} "
                  f"(Spearman rho {rho_l:.2f})"),
            Check("the final loss is less sensitive to P than the iteration complexity",
                  rel_l < rel_i,
                  f"(max - min) / min: final loss {rel_l:.3f}, iterations {rel_i:.3f}"),
        ]


register(Fig10(name="fig10", paper="Figure 10 (appendix C.3). Sampling with the predicted "
                                   "covariance more often (larger P) converges faster but to "
                                   "a higher loss; the loss is less sensitive to P than the "
                                   "iteration complexity",
               learned=(TASK,)))


# ------------------------------------------------------------------ Figure 11
def _loss_at_queries(block: Mapping[str, Any], budget: float) -> float:
    """Mean loss after the last step whose cumulative queries stay within ``budget``."""
    spent = np.concatenate([[0], np.cumsum(block["queries_per_step"])])
    return float(block["loss_mean"][int(np.searchsorted(spent, budget, side="right")) - 1])


class Fig11(Spec):
    """ZO-SZVR-G vs ZO-SGD vs ZO-LSTM-no-update (Figure 11), against iterations and queries."""

    def plan(self, ctx: Context) -> Plan:
        setup = _setup(ctx, tuned=("zo-sgd", "zo-szvrg"))
        table = {"zo-szvrg": {"epoch": 10, "q0": 100, **setup["tuned"]["zo-szvrg"]},
                 "zo-sgd": setup["tuned"]["zo-sgd"], "zo-lstm-no-update": _no_update(setup)}
        run = Run("fig11", setup["task"], table, instances=setup["images"],
                  trials=setup["trials"], steps=setup["steps"], q=setup["q"])
        return Plan((run,), {**setup, "table": table})

    def analyze(self, ctx: Context, plan: Plan, done: Mapping[str, Payload]) -> Report:
        setup = plan.setup
        blocks = done["fig11"]["optimizers"]
        fig, axes = grid(1, 2)
        runs = f"{setup['images']} images x {setup['trials']} trials"
        loss_panel(axes[0][0], blocks, title=f"(a) loss vs iterations ({runs})", log=True)
        loss_panel(axes[0][1], blocks, title="(b) loss vs queries", queries=True, log=True)
        figure = save(fig, ctx.out / "fig11.png",
                      suptitle=f"Figure 11: ZO-SZVR-G vs ZO-SGD vs ZO-LSTM-no-update (MNIST "
                               f"attack, q = {setup['q']})")
        early = max(1, setup["steps"] // 4)
        budget = blocks["zo-sgd"]["total_queries"]
        keys = ("final_loss_mean", "final_loss_std", "total_queries", "success_rate",
                "iters_to_success_mean")
        results = {"final": select(blocks, keys),
                   "loss_at_iteration": {"iteration": early, **{
                       n: b["loss_mean"][early] for n, b in blocks.items()}},
                   "loss_at_query_budget": {"queries": budget, **{
                       n: _loss_at_queries(b, budget) for n, b in blocks.items()}},
                   "curves": select(blocks, (*CURVES, "queries_per_step"))}
        return Report({**_common(setup, ctx), "optimizers": setup["table"]}, results,
                      (figure,))

    def checks(self, report: Report) -> list[Check]:
        r = report.results
        names = list(r["final"])
        early, budget = r["loss_at_iteration"]["iteration"], r["loss_at_query_budget"]["queries"]
        at_early = {n: r["loss_at_iteration"][n] for n in names}
        at_budget = {n: r["loss_at_query_budget"][n] for n in names}
        final = {n: r["final"][n]["final_loss_mean"] for n in names}
        spent = {n: r["final"][n]["total_queries"] for n in names}
        lab = {n: label(n) for n in names}
        return [
            Check(f"ZO-SZVR-G converges faster than ZO-SGD per iteration (lower mean loss at "
                  f"iteration {early})", at_early["zo-szvrg"] < at_early["zo-sgd"],
                  _fmt({lab[n]: v for n, v in at_early.items()}, 3)),
            Check("ZO-SZVR-G ends at a higher final loss than ZO-SGD",
                  final["zo-szvrg"] > final["zo-sgd"],
                  _fmt({lab[n]: v for n, v in final.items()}, 3)),
            Check("ZO-LSTM-no-update beats ZO-SGD in convergence rate and final loss",
                  at_early["zo-lstm-no-update"] < at_early["zo-sgd"]
                  and final["zo-lstm-no-update"] < final["zo-sgd"],
                  f"at iteration {early}: {at_early['zo-lstm-no-update']:.3f} vs "
                  f"{at_early['zo-sgd']:.3f}; final: {final['zo-lstm-no-update']:.3f} vs "
                  f"{final['zo-sgd']:.3f}"),
            Check("ZO-SZVR-G needs many more queries than ZO-SGD and ZO-LSTM-no-update "
                  "(more queries per run, higher loss at ZO-SGD's query budget)",
                  spent["zo-szvrg"] > max(spent["zo-sgd"], spent["zo-lstm-no-update"])
                  and at_budget["zo-szvrg"] > max(at_budget["zo-sgd"],
                                                  at_budget["zo-lstm-no-update"]),
                  f"queries per run {_fmt({lab[n]: v for n, v in spent.items()}, 0)}; loss "
                  f"at {budget} queries {_fmt({lab[n]: v for n, v in at_budget.items()}, 3)}"),
        ]


register(Fig11(name="fig11", paper="Figure 11 (appendix C.4). ZO-SZVR-G converges faster "
                                   "than ZO-SGD per iteration but to a higher loss and needs "
                                   "many more queries; ZO-LSTM-no-update improves on ZO-SGD "
                                   "in rate and final loss",
               tuned=(TASK,), learned=(TASK,)))
