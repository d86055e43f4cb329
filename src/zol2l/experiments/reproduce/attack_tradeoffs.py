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

from zol2l.experiments.reproduce.attack_analysis import (
    TASK,
    _common,
    _fmt,
    _iterations,
    _no_update,
    _rank_corr,
    _setup,
)
from zol2l.experiments.reproduce.base import Context, experiment, labelled
from zol2l.experiments.reproduce.figures import color, grid, label, loss_panel, save

#: Figure 10's Bernoulli probabilities
PROBS = (0.0, 0.25, 0.5, 0.75, 1.0)


@experiment("fig10", paper="Figure 10 (appendix C.3). Sampling with the predicted covariance "
                           "more often (larger P) converges faster but to a higher loss; the "
                           "loss is less sensitive to P than the iteration complexity",
            learned=(TASK,))
def fig10(ctx: Context) -> dict[str, Any]:
    """Bias-variance trade-off of the Bernoulli mixture (Figure 10)."""
    setup = _setup(ctx)
    probs = ctx.pick((0.0, 1.0), PROBS)
    table = {f"zo-lstm@P={p:g}": {"checkpoint": setup["checkpoint"], "p_query": p,
                                  "alpha": 1.0} for p in probs}
    kept: dict[str, Any] = {}
    payload = ctx.evaluate(setup["task"], table, tag="fig10", instances=setup["images"],
                           trials=setup["trials"], steps=setup["steps"], q=setup["q"], keep=kept)
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
                        yerr=[v["final_loss_std"] / math.sqrt(v["runs"]) for v in per_p.values()])
    axes[0][1].set_ylabel("final loss (mean +- s.e.)")
    for ax, title in zip(axes[0], ("(a) iteration complexity", "(b) final loss",
                                   "(c) loss curves"), strict=True):
        ax.set_title(title, fontsize=10)
        if title[1] != "c":
            ax.set_xlabel("P (probability of sampling with the QueryRNN)")
            ax.grid(alpha=0.3)
    cmap = colormaps["viridis"]
    for k, (name, block) in enumerate(payload["optimizers"].items()):
        axes[0][2].plot(block["loss_mean"], color=cmap(k / max(len(probs) - 1, 1)), label=name)
    axes[0][2].set(xlabel="iteration", ylabel="loss (mean)", yscale="log")
    axes[0][2].grid(alpha=0.3)
    axes[0][2].legend(frameon=False, fontsize=8)
    figure = save(fig, ctx.out / "fig10.png",
                  suptitle=f"Figure 10: ZO-LSTM vs Bernoulli P (MNIST attack, {setup['images']} "
                           f"images x {setup['trials']} trials, {setup['steps']} steps)")

    rho_i, rho_l = _rank_corr(probs, iters), _rank_corr(probs, finals)
    rel_i = (max(iters) - min(iters)) / min(iters) if min(iters) > 0 else math.inf
    rel_l = (max(finals) - min(finals)) / min(finals) if min(finals) > 0 else math.inf
    checks = [
        {"claim": "larger P needs fewer iterations to the first success",
         "holds": bool(iters[-1] < iters[0] and rho_i < 0),
         "evidence": f"{_fmt(dict(zip(per_p, iters, strict=True)))} (Spearman rho {rho_i:.2f}; "
                     f"largest s.e. {max(v['iters_sem'] for v in per_p.values()):.1f})"},
        {"claim": "larger P ends at a higher final loss",
         "holds": bool(finals[-1] > finals[0] and rho_l > 0),
         "evidence": f"{_fmt(dict(zip(per_p, finals, strict=True)), 3)} "
                     f"(Spearman rho {rho_l:.2f})"},
        {"claim": "the final loss is less sensitive to P than the iteration complexity",
         "holds": bool(rel_l < rel_i),
         "evidence": f"(max - min) / min: final loss {rel_l:.3f}, iterations {rel_i:.3f}"},
    ]
    return {"protocol": {**_common(setup, ctx), "probs": list(probs),
                         "optimizers": labelled(table),
                         "iterations": "failed runs count as `steps`"},
            "results": {"per_p": per_p,
                        "curves": {n: {"loss_mean": b["loss_mean"], "loss_std": b["loss_std"]}
                                   for n, b in payload["optimizers"].items()}},
            "checks": checks, "figures": [figure]}


# ------------------------------------------------------------------ Figure 11
def _loss_at_queries(block: Mapping[str, Any], budget: float) -> float:
    """Mean loss after the last step whose cumulative queries stay within ``budget``."""
    spent = np.concatenate([[0], np.cumsum(block["queries_per_step"])])
    return float(block["loss_mean"][int(np.searchsorted(spent, budget, side="right")) - 1])


@experiment("fig11", paper="Figure 11 (appendix C.4). ZO-SZVR-G converges faster than ZO-SGD "
                           "per iteration but to a higher loss and needs many more queries; "
                           "ZO-LSTM-no-update improves on ZO-SGD in rate and final loss",
            tuned=(TASK,), learned=(TASK,))
def fig11(ctx: Context) -> dict[str, Any]:
    """ZO-SZVR-G vs ZO-SGD vs ZO-LSTM-no-update (Figure 11)."""
    setup = _setup(ctx, tuned=("zo-sgd", "zo-szvrg"))
    table = {"zo-szvrg": {"epoch": 10, "q0": 100, **setup["tuned"]["zo-szvrg"]},
             "zo-sgd": setup["tuned"]["zo-sgd"], "zo-lstm-no-update": _no_update(setup)}
    payload = ctx.evaluate(setup["task"], table, tag="fig11", instances=setup["images"],
                           trials=setup["trials"], steps=setup["steps"], q=setup["q"])
    blocks = payload["optimizers"]
    fig, axes = grid(1, 2)
    runs = f"{setup['images']} images x {setup['trials']} trials"
    loss_panel(axes[0][0], blocks, title=f"(a) loss vs iterations ({runs})", log=True)
    loss_panel(axes[0][1], blocks, title="(b) loss vs queries", queries=True, log=True)
    figure = save(fig, ctx.out / "fig11.png",
                  suptitle=f"Figure 11: ZO-SZVR-G vs ZO-SGD vs ZO-LSTM-no-update (MNIST attack, "
                           f"q = {setup['q']})")

    early = max(1, setup["steps"] // 4)
    at_early = {n: b["loss_mean"][early] for n, b in blocks.items()}
    final = {n: b["final_loss_mean"] for n, b in blocks.items()}
    spent = {n: b["total_queries"] for n, b in blocks.items()}
    budget = spent["zo-sgd"]
    at_budget = {n: _loss_at_queries(b, budget) for n, b in blocks.items()}
    lab = {n: label(n) for n in blocks}
    checks = [
        {"claim": f"ZO-SZVR-G converges faster than ZO-SGD per iteration (lower mean loss at "
                  f"iteration {early})",
         "holds": bool(at_early["zo-szvrg"] < at_early["zo-sgd"]),
         "evidence": _fmt({lab[n]: v for n, v in at_early.items()}, 3)},
        {"claim": "ZO-SZVR-G ends at a higher final loss than ZO-SGD",
         "holds": bool(final["zo-szvrg"] > final["zo-sgd"]),
         "evidence": _fmt({lab[n]: v for n, v in final.items()}, 3)},
        {"claim": "ZO-LSTM-no-update beats ZO-SGD in convergence rate and final loss",
         "holds": bool(at_early["zo-lstm-no-update"] < at_early["zo-sgd"]
                       and final["zo-lstm-no-update"] < final["zo-sgd"]),
         "evidence": f"at iteration {early}: {at_early['zo-lstm-no-update']:.3f} vs "
                     f"{at_early['zo-sgd']:.3f}; final: {final['zo-lstm-no-update']:.3f} vs "
                     f"{final['zo-sgd']:.3f}"},
        {"claim": "ZO-SZVR-G needs many more queries than ZO-SGD and ZO-LSTM-no-update "
                  "(more queries per run, higher loss at ZO-SGD's query budget)",
         "holds": bool(spent["zo-szvrg"] > max(spent["zo-sgd"], spent["zo-lstm-no-update"])
                       and at_budget["zo-szvrg"] > max(at_budget["zo-sgd"],
                                                       at_budget["zo-lstm-no-update"])),
         "evidence": f"queries per run {_fmt({lab[n]: v for n, v in spent.items()}, 0)}; loss "
                     f"at {budget} queries {_fmt({lab[n]: v for n, v in at_budget.items()}, 3)}"},
    ]
    keys = ("final_loss_mean", "final_loss_std", "total_queries", "success_rate",
            "iters_to_success_mean")
    return {"protocol": {**_common(setup, ctx), "optimizers": table},
            "results": {"final": {n: {k: b.get(k) for k in keys} for n, b in blocks.items()},
                        "loss_at_iteration": {"iteration": early, **at_early},
                        "loss_at_query_budget": {"queries": budget, **at_budget},
                        "curves": {n: {k: b[k] for k in ("loss_mean", "loss_std",
                                                         "queries_per_step")}
                                   for n, b in blocks.items()}},
            "checks": checks, "figures": [figure]}
