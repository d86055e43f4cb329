"""Figure 3 of Ruan et al. (2020): stochastic zeroth-order binary classification (section 4.2).

(a) Training loss against iterations of every optimizer on the 10 test datasets: the tuned
    hand-designed ones (ZO-SGD, ZO-signSGD, ZO-ADAM, ZO-SZVR-G, Guided ES), ZO-LSTM trained on
    binary classification, and ZO-LSTM-finetune, the MNIST-attack optimizer with its update
    scale ``alpha`` tuned on the TRAINING datasets (section 4.3).
(b)-(d) ZO-SGD against ZO-LSTM when the number of query directions q, the minibatch size b or
    the dimension d changes (q in {5, 10, 20, 40}, b in {16, 32, 64, 128}, d in
    {50, 100, 150, 200}; the others at q = 20, b = 64, d = 100).  ZO-SGD keeps its tuned
    ``delta`` (``lr = delta / d``); ZO-LSTM is applied as trained (at q = 20, b = 64, d = 100).

The paper's claims: ZO-LSTM outperforms every hand-designed optimizer (a) and "consistently
outperforms ZO-SGD in different optimization settings" (b)-(d).  Each curve averages the test
datasets x trials (the paper: 10 datasets, random initializations).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from zol2l.experiments.reproduce import figures
from zol2l.experiments.reproduce.analysis import (
    ALPHA_GRID,
    TRANSFER,
    best,
    final_losses,
    finite,
    hyperparameters,
    listing,
    select,
    tune_alpha,
)
from zol2l.experiments.reproduce.base import Context
from zol2l.experiments.reproduce.spec import Check, Payload, Plan, Report, Run, Spec, register

TASK = "binary-classification"
#: the sweeps of Figure 3b-3d: task option (or "q") -> (paper grid, quick grid)
SWEEPS = {"q": ((5, 10, 20, 40), (5, 20)), "batch": ((16, 32, 64, 128), (16, 64)),
          "dim": ((50, 100, 150, 200), (50, 100))}
SYMBOL = {"q": "q", "batch": "b", "dim": "d"}
KEEP = ("hyperparameters", "loss_mean", "loss_std", "final_loss_mean", "final_loss_std",
        "final_loss", "total_queries", "seconds")


class Fig3(Spec):
    """Figure 3a-3d (section 4.2): every optimizer at the default setting (a), then ZO-SGD
    and ZO-LSTM at each other grid value of q, b and d (the default reuses panel (a)'s run)."""

    def plan(self, ctx: Context) -> Plan:
        base = ctx.task(TASK)
        size = ctx.sizes(TASK)
        q = size.q
        defaults = {"q": q, "batch": base.batch, "dim": base.dim}
        common = {"split": "test", "instances": size.instances, "trials": size.trials,
                  "steps": size.steps}
        baselines = ctx.baselines(TASK)
        lstm, mnist = ctx.learned(TASK), ctx.learned("mnist-attack")
        # (a) every optimizer, plus the MNIST-trained one with alpha tuned on the train datasets
        tuning = tune_alpha(ctx, base, mnist, grid=ctx.pick((0.5, 1.0), ALPHA_GRID),
                            instances=size.tune_instances, trials=1, steps=size.steps, q=q,
                            tag="fig3-alpha")
        opts = {name: {**hp, "q": q} for name, hp in baselines.items()}
        opts["zo-lstm"] = {"checkpoint": lstm, "q": q}
        opts[f"zo-lstm@{TRANSFER}"] = {"checkpoint": mnist, "alpha": tuning["best"], "q": q}
        runs = [Run("fig3-a", base, opts, q=q, **common)]
        # (b)-(d) ZO-SGD vs ZO-LSTM over q, b, d
        grids = {key: list(ctx.pick(quick, full)) for key, (full, quick) in SWEEPS.items()}
        for key, values in grids.items():
            for value in values:
                if value == defaults[key]:
                    continue
                qq = value if key == "q" else q
                task = base if key == "q" else ctx.task(TASK, **{key: value})
                pair = {"zo-sgd": {**baselines["zo-sgd"], "q": qq},
                        "zo-lstm": {"checkpoint": lstm, "q": qq}}
                runs.append(Run(f"fig3-{key}{value}", task, pair, q=qq, **common))
        return Plan(tuple(runs), {"size": size, "defaults": defaults, "grids": grids,
                                  "baselines": baselines, "tuning": tuning,
                                  "checkpoints": {"zo-lstm": lstm, TRANSFER: mnist}})

    def analyze(self, ctx: Context, plan: Plan, done: Mapping[str, Payload]) -> Report:
        setup = plan.setup
        size, defaults, grids = setup["size"], setup["defaults"], setup["grids"]
        res_a = done["fig3-a"]
        panel_a = res_a["optimizers"]
        sweeps = {key: {str(value): select(
            {k: panel_a[k] for k in ("zo-sgd", "zo-lstm")} if value == defaults[key]
            else done[f"fig3-{key}{value}"]["optimizers"], KEEP) for value in values}
            for key, values in grids.items()}
        final = final_losses(panel_a)
        protocol = {
            "task": ctx.task(TASK).describe(), "split": "test", "test_ids": res_a["instances"],
            "instances": size.instances, "trials": size.trials, "steps": size.steps,
            "q": size.q, "defaults": defaults, "grids": grids,
            "optimizers": hyperparameters(panel_a),
            "checkpoints": setup["checkpoints"],
            "untuned_baselines": sorted(k for k, hp in setup["baselines"].items() if not hp),
            "finetune": {"method": "alpha scale of the MNIST-trained ZO-LSTM (section 4.3)",
                         "alpha_tuning": setup["tuning"]},
            "sweep_note": "ZO-SGD keeps its tuned delta (lr = delta / d); ZO-LSTM as trained; "
                          "the default setting reuses panel (a)'s runs",
        }
        results = {"a": {"optimizers": panel_a, "final_loss_mean": final},
                   "sweeps": sweeps, "alpha": setup["tuning"]["best"]}
        figure = _figure(ctx, panel_a, sweeps, grids, defaults, size.instances, size.trials)
        return Report(protocol, results, (figure,))

    def checks(self, report: Report) -> list[Check]:
        """One check per claim of section 4.2, computed from the measured final losses."""
        final = report.results["a"]["final_loss_mean"]
        hand = {k: v for k, v in final.items() if not k.startswith("zo-lstm")}
        checks = [Check(
            "Fig. 3a: ZO-LSTM reaches a lower final loss than every hand-designed optimizer",
            final["zo-lstm"] < hand[best(hand)],
            f"ZO-LSTM {final['zo-lstm']:.4g}; "
            + listing(dict(sorted(hand.items(), key=lambda kv: kv[1])), names=figures.label))]
        panel = {"q": "3b", "batch": "3c", "dim": "3d"}
        for key, rows in report.results["sweeps"].items():
            pairs = {v: (finite(r["zo-lstm"]["final_loss_mean"]),
                         finite(r["zo-sgd"]["final_loss_mean"])) for v, r in rows.items()}
            checks.append(Check(
                f"Fig. {panel[key]}: ZO-LSTM beats ZO-SGD at every {SYMBOL[key]} in "
                f"{{{', '.join(rows)}}}",
                all(lstm < sgd for lstm, sgd in pairs.values()),
                "; ".join(f"{SYMBOL[key]}={v}: ZO-LSTM {a:.4g} vs ZO-SGD {b:.4g}"
                          for v, (a, b) in pairs.items())))
        return checks


register(Fig3(name="fig3", paper=(
    "Figure 3 (binary classification). ZO-LSTM outperforms every hand-designed ZO optimizer "
    "(a) and beats ZO-SGD for every number of query directions q (b), minibatch size b (c) "
    "and problem dimension d (d)."), tuned=(TASK,), learned=(TASK, "mnist-attack")))


def _figure(ctx: Context, panel_a: dict[str, Any], sweeps: dict[str, dict[str, Any]],
            grids: dict[str, list[int]], defaults: dict[str, int], n: int, trials: int) -> str:
    """The 2 x 2 figure of Figure 3: (a) every optimizer, (b)-(d) loss curves per grid value
    (ZO-LSTM solid, ZO-SGD dashed, one colour per grid value)."""
    fig, axes = figures.grid(2, 2, width=5.2, height=3.9)
    figures.loss_panel(axes[0][0], panel_a, log=True,
                       title=f"(a) all optimizers (q={defaults['q']}, b={defaults['batch']}, "
                             f"d={defaults['dim']})")
    others = {"q": ("batch", "dim"), "batch": ("q", "dim"), "dim": ("q", "batch")}
    for ax, (letter, key) in zip([axes[0][1], axes[1][0], axes[1][1]],
                                 [("b", "q"), ("c", "batch"), ("d", "dim")], strict=True):
        cmap = plt.get_cmap("viridis")
        values = grids[key]
        for i, value in enumerate(values):
            col = cmap(i / max(len(values) - 1, 1) * 0.9)
            for name, style in (("zo-lstm", "-"), ("zo-sgd", "--")):
                mean = np.asarray(sweeps[key][str(value)][name]["loss_mean"], dtype=float)
                ax.plot(np.arange(len(mean)), mean, style, color=col, lw=1.4,
                        label=f"{figures.label(name)} {SYMBOL[key]}={value}")
        fixed = ", ".join(f"{SYMBOL[o]}={defaults[o]}" for o in others[key])
        grid_text = ", ".join(str(v) for v in values)
        ax.set_title(f"({letter}) {SYMBOL[key]} in {{{grid_text}}} ({fixed})\n"
                     "solid: ZO-LSTM, dashed: ZO-SGD", fontsize=10)
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        ax.legend(frameon=False, fontsize=7, ncol=2)
    return figures.save(fig, ctx.out / "fig3.png",
                        suptitle=f"Figure 3: binary classification, {n} test datasets x "
                                 f"{trials} trials")
