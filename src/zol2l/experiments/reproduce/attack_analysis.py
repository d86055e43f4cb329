"""Appendix C of Ruan et al. (2020): analyses of ZO-LSTM on the MNIST attack (Figures 8-11).

* ``fig8`` (appendix C.1): iterations to the first attack success against the problem
  dimension ``d``, the perturbation optimized at ``h x w`` and bilinearly resized to 28 x 28
  (the attack task's ``perturbation_size`` option), for ZO-SGD and ZO-LSTM-no-update (ZO-SGD
  with the QueryRNN) at the same ``delta`` (``lr = delta / d``).
* ``fig9`` (C.2): the original image, the final perturbation of ZO-LSTM and of
  ZO-LSTM-no-query, and ZO-LSTM's predicted sampling variance averaged over the iterations.
* ``fig10``, ``fig11`` (C.3, C.4): :mod:`zol2l.experiments.reproduce.attack_tradeoffs`.

"Iterations to the first success" of a run that never succeeds counts as the number of
steps (a lower bound); the mean over the successful runs only and the success rate are
recorded beside it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from zol2l.experiments.reproduce.analysis import listing
from zol2l.experiments.reproduce.base import Context, experiment
from zol2l.experiments.reproduce.figures import color, grid, label, save
from zol2l.experiments.reproduce.spec import (
    Check,
    Payload,
    Plan,
    Report,
    Run,
    Spec,
    body,
    register,
)
from zol2l.learned.rnn import mix_and_normalize
from zol2l.loop import RunResult, run
from zol2l.optimizers import make

TASK = "mnist-attack"
#: Figure 8's perturbation sizes (h, w), d = h * w
SIZES = ((7, 7), (7, 14), (14, 14), (14, 28), (21, 28), (28, 28))


# ------------------------------------------------------------------ shared helpers
def _setup(ctx: Context, trials_full: int = 10, tuned: Sequence[str] = ()) -> dict[str, Any]:
    """Task, sizes (quick or the paper's, capped by the user), checkpoint, tuned baselines."""
    size = ctx.sizes(TASK, quick={"steps": 15}, full={"trials": trials_full})
    return {"task": ctx.task(TASK), "steps": size.steps, "q": size.q,
            "images": size.instances, "trials": size.trials,
            "checkpoint": ctx.learned(TASK),
            "tuned": ctx.baselines(TASK, tuple(tuned)) if tuned else {}}


def _no_update(setup: dict[str, Any]) -> dict[str, Any]:
    """ZO-LSTM-no-update: the QueryRNN + the ZO-SGD update at ZO-SGD's tuned ``delta``."""
    return {"checkpoint": setup["checkpoint"], "p_query": 0.5,
            "delta": setup["tuned"]["zo-sgd"]["delta"]}


def _iterations(block: Mapping[str, Any], steps: int) -> dict[str, Any]:
    """Iterations to the first success of one evaluation block (failures count as ``steps``)."""
    first = np.asarray(block["first_success_iter"], dtype=float)
    ok = first >= 0
    censored = np.where(ok, first, float(steps))
    return {"iters_mean": float(censored.mean()),
            "iters_sem": float(censored.std() / math.sqrt(len(censored))),
            "iters_success_mean": float(first[ok].mean()) if ok.any() else None,
            "success_rate": float(ok.mean()), "final_loss_mean": block["final_loss_mean"],
            "runs": len(first)}


def _ranks(values: Sequence[float]) -> np.ndarray:
    """Ranks with ties averaged."""
    arr = np.asarray(values, dtype=float)
    ranks = np.empty(len(arr))
    ranks[np.argsort(arr, kind="stable")] = np.arange(len(arr), dtype=float)
    for value in np.unique(arr):
        ranks[arr == value] = ranks[arr == value].mean()
    return ranks


def _rank_corr(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Spearman's rank correlation; ``nan`` when undefined (fewer than 2 points, or ties)."""
    rx, ry = _ranks(xs), _ranks(ys)
    if len(rx) < 2 or rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def _fmt(values: Mapping[Any, float | None], digits: int = 1) -> str:
    return listing(values, f".{digits}f", sep=": ")


def _common(setup: dict[str, Any], ctx: Context) -> dict[str, Any]:
    return {"task": TASK, "task_options": setup["task"].describe(), "split": "test",
            "images": setup["images"], "trials": setup["trials"], "steps": setup["steps"],
            "q": setup["q"], "seed": ctx.options.seed, "checkpoint": setup["checkpoint"]}


# ------------------------------------------------------------------ Figure 8
class Fig8(Spec):
    """Iteration complexity against the perturbation's dimension (Figure 8): ZO-SGD and
    ZO-LSTM-no-update at every perturbation size."""

    def plan(self, ctx: Context) -> Plan:
        setup = _setup(ctx, tuned=("zo-sgd",))
        sizes = ctx.pick((SIZES[0], SIZES[-1]), SIZES)
        table = {"zo-sgd": setup["tuned"]["zo-sgd"], "zo-lstm-no-update": _no_update(setup)}
        runs = tuple(Run(f"fig8-{h}x{w}", setup["task"], table, instances=setup["images"],
                         trials=setup["trials"], steps=setup["steps"], q=setup["q"],
                         problem_options={"perturbation_size": [h, w]}) for h, w in sizes)
        return Plan(runs, {**setup, "sizes": sizes, "table": table})

    def analyze(self, ctx: Context, plan: Plan, done: Mapping[str, Payload]) -> Report:
        setup, table = plan.setup, plan.setup["table"]
        per_d = {f"{h}x{w}": {"d": h * w, **{
            n: _iterations(b, setup["steps"])
            for n, b in done[f"fig8-{h}x{w}"]["optimizers"].items()}}
            for h, w in setup["sizes"]}
        dims = [v["d"] for v in per_d.values()]
        fig, axes = grid(1, 2)
        for name in table:
            mean = [v[name]["iters_mean"] for v in per_d.values()]
            sem = [v[name]["iters_sem"] for v in per_d.values()]
            axes[0][0].errorbar(dims, mean, yerr=sem, marker="o", capsize=3, label=label(name),
                                color=color(name))
            axes[0][1].plot(dims, [v[name]["success_rate"] for v in per_d.values()],
                            marker="o", label=label(name), color=color(name))
        for ax, ylabel in zip(axes[0], ("iterations to first success (mean +- s.e.)",
                                        "success rate"), strict=True):
            ax.set_xscale("log")
            ax.set_xticks(dims, [f"{k}\n{v['d']}" for k, v in per_d.items()], fontsize=7)
            ax.minorticks_off()
            ax.set_xlabel("dimension d (h x w of the perturbation; log scale)")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            ax.legend(frameon=False, fontsize=8)
        axes[0][1].set_ylim(-0.05, 1.05)
        runs = f"{setup['images']} images x {setup['trials']} trials"
        figure = save(fig, ctx.out / "fig8.png",
                      suptitle=f"Figure 8: iteration complexity vs dimension (MNIST attack, "
                               f"{runs}, q = {setup['q']}, {setup['steps']} steps)")
        protocol = {**_common(setup, ctx), "sizes": [list(s) for s in setup["sizes"]],
                    "dims": dims, "optimizers": table,
                    "parametrization": "x = (tanh(w0 + up(delta)) + 1) / 2, up = "
                                       "bilinear resize (align_corners=False), delta0 = 0",
                    "delta": "ZO-SGD's tuned delta (d = 784) at every d, lr = delta / d",
                    "iterations": "failed runs count as `steps`"}
        return Report(protocol, {"per_d": per_d}, (figure,))

    def checks(self, report: Report) -> list[Check]:
        per_d = report.results["per_d"]
        dims = [v["d"] for v in per_d.values()]
        sgd = [v["zo-sgd"]["iters_mean"] for v in per_d.values()]
        rnn = [v["zo-lstm-no-update"]["iters_mean"] for v in per_d.values()]
        gap = [a - b for a, b in zip(sgd, rnn, strict=True)]
        rho_sgd, rho_gap = _rank_corr(dims, sgd), _rank_corr(dims, gap)
        sem = max(v[n]["iters_sem"] for v in per_d.values() for n in report.protocol["optimizers"])
        return [
            Check("ZO-SGD needs more iterations to the first success as d grows",
                  sgd[-1] > sgd[0] and rho_sgd > 0,
                  f"ZO-SGD {_fmt(dict(zip(per_d, sgd, strict=True)))} "
                  f"(Spearman rho {rho_sgd:.2f})"),
            Check("ZO-LSTM-no-update needs fewer iterations than ZO-SGD at every d",
                  all(g > 0 for g in gap),
                  f"ZO-LSTM-no-update {_fmt(dict(zip(per_d, rnn, strict=True)))} "
                  f"(largest s.e. {sem:.1f})"),
            Check("the QueryRNN's saving (ZO-SGD minus ZO-LSTM-no-update) grows with d",
                  gap[-1] > gap[0] and rho_gap > 0,
                  f"saving {_fmt(dict(zip(per_d, gap, strict=True)))} "
                  f"(Spearman rho {rho_gap:.2f})"),
        ]


register(Fig8(name="fig8", paper="Figure 8 (appendix C.1). Iterations to the first attack "
                                 "success grow with the dimension for ZO-SGD; "
                                 "ZO-LSTM-no-update (the QueryRNN) needs fewer, the more so "
                                 "the larger d",
              tuned=(TASK,), learned=(TASK,)))


# ------------------------------------------------------------------ Figure 9
def _run_with_variance(name: str, hp: Mapping[str, Any], problem: Any, steps: int,
                       seed: int) -> tuple[RunResult, torch.Tensor | None]:
    """Run one optimizer; also return its QueryRNN's predicted variance ``[B, d]`` (the
    normalized ``Sigma`` before the Bernoulli mixture, squared) averaged over the iterations."""
    optimizer = make(name, **hp)
    total: list[torch.Tensor] = []

    def hook(t: int, out: Any, state: dict[str, Any]) -> None:
        raw = out.extras.get("std_pred")
        if raw is not None:
            var = mix_and_normalize(raw.detach(), 1.0).double().square()
            total[:] = [var if not total else total[0] + var]

    result = run(optimizer, problem, steps, seed=seed, nonfinite="inf", callback=hook)
    return result, (total[0].cpu() / max(result.steps, 1)) if total else None


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    den = float(a.norm() * b.norm())
    return float((a * b).sum()) / den if den > 0 else math.nan


def _top_share(p: torch.Tensor, frac: float = 0.1) -> float:
    """Share of ``sum |p|`` held by the largest ``frac`` of the pixels (concentration)."""
    mags = p.abs().double().sort(descending=True).values
    total = float(mags.sum())
    return float(mags[: max(1, int(frac * len(mags)))].sum()) / total if total > 0 else math.nan


def _nanmean(values: Sequence[float]) -> float | None:
    arr = np.asarray(values, dtype=float)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else None


@experiment("fig9", paper="Figure 9 (appendix C.2). ZO-LSTM's final perturbation is less "
                          "spread out than ZO-LSTM-no-query's, and the QueryRNN's average "
                          "predicted variance resembles both final perturbations",
            learned=(TASK,))
def fig9(ctx: Context) -> dict[str, Any]:
    """Final perturbations and the QueryRNN's average predicted variance (Figure 9)."""
    setup = _setup(ctx, trials_full=1)
    task, steps = setup["task"], setup["steps"]
    ids = task.instance_ids("test")[: setup["images"]]
    shown = ids[: ctx.pick(2, 4)]
    table = {"zo-lstm": {"checkpoint": setup["checkpoint"], "p_query": 0.5, "alpha": 1.0,
                         "q": setup["q"]},
             "zo-lstm-no-query": {"checkpoint": setup["checkpoint"], "alpha": 1.0,
                                  "q": setup["q"]}}
    pert: dict[str, torch.Tensor] = {}
    variance = None
    problem = None
    for name, hp in table.items():
        problem = task.problem(ids, trials=setup["trials"], seed=ctx.options.seed)
        result, var = _run_with_variance(name, hp, problem, steps, ctx.options.seed)
        pert[name] = (problem.to_image(result.x) - problem.flat0).detach().cpu()
        variance = var if var is not None else variance
    assert variance is not None and problem is not None
    rows = range(len(problem.ids))
    stats = {
        "corr_variance_lstm": [_pearson(variance[r], pert["zo-lstm"][r].abs()) for r in rows],
        "corr_variance_no_query": [_pearson(variance[r], pert["zo-lstm-no-query"][r].abs())
                                   for r in rows],
        "corr_lstm_no_query": [_pearson(pert["zo-lstm"][r].abs(),
                                        pert["zo-lstm-no-query"][r].abs()) for r in rows],
        "top10_share_lstm": [_top_share(pert["zo-lstm"][r]) for r in rows],
        "top10_share_no_query": [_top_share(pert["zo-lstm-no-query"][r]) for r in rows],
        "variance_min": variance.min(dim=1).values.tolist(),
        "variance_max": variance.max(dim=1).values.tolist(),
    }
    means = {k: _nanmean(v) for k, v in stats.items()}

    shape = problem.shape[1:]
    fig, axes = grid(len(shown), 4, width=2.6, height=2.6)
    titles = ("(a) original", "(b) ZO-LSTM", "(c) ZO-LSTM-no-query", "(d) avg. pred. variance")
    for r, image in enumerate(shown):
        row = problem.ids.index(image)
        scale = float(max(pert[n][row].abs().max() for n in pert)) or 1.0
        maps = [(problem.flat0[row].cpu(), "gray", 0.0, 1.0),
                (pert["zo-lstm"][row], "seismic", -scale, scale),
                (pert["zo-lstm-no-query"][row], "seismic", -scale, scale),
                (variance[row], "viridis", None, None)]
        for c, (values, cmap, lo, hi) in enumerate(maps):
            ax = axes[r][c]
            shown_map = ax.imshow(values.reshape(shape).numpy(), cmap=cmap, vmin=lo, vmax=hi)
            ax.set_xticks([])
            ax.set_yticks([])
            if c:
                fig.colorbar(shown_map, ax=ax, fraction=0.046, pad=0.04)
            ax.set_title(titles[c] if r == 0 else "", fontsize=9)
        axes[r][3].set_xlabel(f"corr with |b| {stats['corr_variance_lstm'][row]:.2f}, "
                              f"|c| {stats['corr_variance_no_query'][row]:.2f}", fontsize=7)
        axes[r][0].set_ylabel(f"test image {image}", fontsize=8)
    figure = save(fig, ctx.out / "fig9.png",
                  suptitle=f"Figure 9: final perturbations and ZO-LSTM's average predicted "
                           f"variance ({steps} steps)")

    corr_l, corr_n = stats["corr_variance_lstm"], stats["corr_variance_no_query"]
    share_l, share_n = means["top10_share_lstm"], means["top10_share_no_query"]
    checks = [Check(
        "ZO-LSTM's final perturbation is less spread out than ZO-LSTM-no-query's "
        "(larger share of |perturbation| on the top 10% pixels)",
        None if share_l is None or share_n is None else share_l > share_n,
        f"top-10% share: {_fmt({'ZO-LSTM': share_l, 'no-query': share_n}, 4)} "
        f"(mean over {len(rows)} images)")]
    for key, name, corr in (("corr_variance_lstm", "ZO-LSTM's", corr_l),
                            ("corr_variance_no_query", "ZO-LSTM-no-query's", corr_n)):
        positive = float(np.mean([c > 0 for c in corr if math.isfinite(c)] or [math.nan]))
        checks.append(Check(
            f"the average predicted variance resembles {name} final perturbation "
            "(positive pixel correlation with |perturbation| on most images)",
            None if means[key] is None else means[key] > 0 and positive > 0.5,
            f"Pearson r mean {means[key]:.3f}, positive on {positive:.0%} of "
            f"{len(rows)} images; average variance within [{means['variance_min']:.4f}"
            f", {means['variance_max']:.4f}] (mean per-image min, max)"
            if means[key] is not None else "undefined"))
    protocol = {**_common(setup, ctx), "shown_images": shown, "optimizers": table,
                "variance": "QueryRNN std |1 + o| normalized to norm sqrt(d) (before the "
                            "Bernoulli mixture), squared, averaged over all steps",
                "perturbation": "final image minus original image"}
    results = {"means": means, "per_image": {str(i): {k: v[r] for k, v in stats.items()}
                                             for r, i in enumerate(problem.ids)}}
    return body(Report(protocol, results, (figure,)), checks)
