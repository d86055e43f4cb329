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
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from zol2l.estimators import gaussian
from zol2l.experiments.reproduce import figures
from zol2l.experiments.reproduce.base import Context, experiment
from zol2l.experiments.reproduce.generalization import finite, rel_diff, unavailable
from zol2l.learned.rnn import mix_and_normalize
from zol2l.loop import run
from zol2l.optimizers import make
from zol2l.oracle import Oracle
from zol2l.tasks.base import Problem

ABLATIONS = ("zo-sgd", "zo-lstm", "zo-lstm-no-query", "zo-lstm-no-update", "zo-lstm-guided-es")
PANELS = {"mnist-attack": "(a) MNIST attack", "cifar10-attack": "(b) CIFAR-10 attack",
          "binary-classification": "(c) binary classification"}
Q_GRID = (5, 10, 20, 40)
#: "negligible" effect of Guided ES: mean loss over iterations within this relative change
NEGLIGIBLE = 0.05


def true_gradient(problem: Problem, x: torch.Tensor) -> torch.Tensor:
    """The gradient of each row's objective at ``x[B, d]`` by autograd through
    :meth:`~zol2l.tasks.base.Problem.differentiable_objective` (the analysis only; no
    optimizer ever sees it)."""
    with torch.enable_grad():
        point = x.detach().clone().requires_grad_(True)
        value = problem.differentiable_objective(point[:, None, :])[:, 0]
        (grad,) = torch.autograd.grad(value.sum(), point)
    return grad.detach()


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity of ``[B, d]`` tensors (0 for a zero row)."""
    return F.cosine_similarity(a.double(), b.double(), dim=1, eps=1e-30)


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


def _panel(ctx: Context, name: str) -> dict[str, Any]:
    """One ablation panel: the five optimizers on the test instances of ``name``."""
    task = ctx.task(name)
    if name.endswith("-attack"):
        n = ctx.n_images(quick=1 if name == "cifar10-attack" else 2, task=name)
        steps = ctx.pick(5 if name == "cifar10-attack" else 10, task.default_steps)
    else:
        n = min(ctx.n_instances(), len(task.instance_ids("test")))
        steps = ctx.pick(20, task.default_steps)
    q, trials = task.default_q, ctx.n_trials()
    res = ctx.evaluate(task, ablation_optimizers(ctx, name, q), tag=f"fig4-{name}",
                       split="test", instances=n, trials=trials, steps=steps, q=q)
    blocks = res["optimizers"]
    summary = {k: {"final": finite(b["final_loss_mean"]),
                   "auc": float(np.mean(b["loss_mean"])) if all(
                       math.isfinite(v) for v in b["loss_mean"]) else math.inf}
               for k, b in blocks.items()}
    return {"protocol": {"instances": n, "test_ids": res["instances"], "trials": trials,
                         "steps": steps, "q": q, "checkpoint": ctx.learned(name),
                         "optimizers": {k: b["hyperparameters"] for k, b in blocks.items()}},
            "optimizers": blocks, "summary": summary}


def cosine_study(ctx: Context, q_grid: tuple[int, ...], images: int, steps: int
                 ) -> dict[str, Any]:
    """Figure 4d: per q, the cosine between the true gradient and the estimate with the
    QueryRNN's sampling / with standard Gaussian sampling at the points of a ZO-LSTM run."""
    task = ctx.task("mnist-attack")
    ckpt = ctx.learned("mnist-attack")
    ids = task.instance_ids("test")[:images]
    out: dict[str, Any] = {}
    for q in q_grid:
        opt = make("zo-lstm", checkpoint=ckpt, q=q)
        problem = task.problem(ids, trials=1, seed=ctx.seed)
        # a separate oracle and generator: the measurements do not disturb the run
        oracle = Oracle(problem.objective, problem.dim, mode="problems", nonfinite="inf",
                        dtype=problem.x0.dtype)
        gen = torch.Generator(device=problem.x0.device).manual_seed(ctx.seed + 7919)
        mu = opt.smoothing(problem.x0.dtype)
        where = [problem.x0.clone()]
        with_q: list[torch.Tensor] = []
        without: list[torch.Tensor] = []
        spread: list[torch.Tensor] = []

        def hook(t: int, step: Any, state: dict[str, Any], problem: Problem = problem,
                 oracle: Oracle = oracle, gen: torch.Generator = gen, mu: float = mu,
                 q: int = q, where: list[torch.Tensor] = where,
                 with_q: list[torch.Tensor] = with_q, without: list[torch.Tensor] = without,
                 spread: list[torch.Tensor] = spread) -> None:
            x = where[0]
            grad = true_gradient(problem, x)
            std = mix_and_normalize(step.extras["std_pred"], 1.0)  # the QueryRNN, unmixed
            spread.append(std.double().std(dim=1).mean())
            with torch.no_grad():
                with_q.append(cosine(gaussian(oracle, x, q, mu, gen, std=std).grad, grad))
                without.append(cosine(gaussian(oracle, x, q, mu, gen).grad, grad))
            where[0] = step.x

        run(opt, problem, steps, seed=ctx.seed, nonfinite="inf", callback=hook)
        cq, cg = torch.stack(with_q).cpu(), torch.stack(without).cpu()  # [steps, images]
        out[str(q)] = {
            "query_mean": float(cq.mean()), "gaussian_mean": float(cg.mean()),
            "query_std_over_images": float(cq.mean(0).std(unbiased=False)),
            "gaussian_std_over_images": float(cg.mean(0).std(unbiased=False)),
            "query_per_step": cq.mean(1).tolist(), "gaussian_per_step": cg.mean(1).tolist(),
            "gaussian_theory": math.sqrt(q / (q + problem.dim + 1)),
            # how far the QueryRNN's sampling is from isotropic (0: standard Gaussian)
            "query_std_spread": float(torch.stack(spread).mean()),
        }
    return out


def replay(name: str, hyperparameters: dict[str, Any], estimates: torch.Tensor) -> torch.Tensor:
    """The updates ``x_{t+1} - x_t`` that optimizer ``name`` makes from a recorded estimate
    sequence ``[T, d]`` (its own update rule, fed the same estimates)."""
    opt = make(name, **hyperparameters)
    x = torch.zeros(1, estimates.shape[1], dtype=estimates.dtype)
    state = opt.init_state(x)
    updates = []
    for t, grad in enumerate(estimates):
        state["t"] = t
        new = opt.update(x, grad[None], state)
        updates.append((new - x)[0])
        x = new
    return torch.stack(updates)


def roughness(series: np.ndarray) -> np.ndarray:
    """Noisiness of each column of ``[T, k]``: mean absolute step-to-step change over the
    standard deviation (scale free; white noise ~ 1.13, a smooth trend ~ 0)."""
    return np.abs(np.diff(series, axis=0)).mean(0) / (series.std(0) + 1e-30)


def correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each column pair of ``[T, k]`` arrays."""
    a, b = a - a.mean(0), b - b.mean(0)
    return (a * b).sum(0) / (np.sqrt((a * a).sum(0) * (b * b).sum(0)) + 1e-30)


def trajectory_study(ctx: Context, steps: int, top: int) -> dict[str, Any]:
    """Figure 4e: ZO-LSTM on the first MNIST test image; per step the predicted variance
    (squared normalized QueryRNN std), the estimate and the update of every coordinate; the
    ZO-SGD and ZO-ADAM updates replayed on the same estimates.  The plotted coordinate is the
    one with the largest total |update|; the statistics use the ``top`` most active ones."""
    task = ctx.task("mnist-attack")
    image = task.instance_ids("test")[0]
    q = task.default_q
    problem = task.problem([image], trials=1, seed=ctx.seed)
    rec: dict[str, list[torch.Tensor]] = {"variance": [], "estimate": [], "update": []}

    def hook(t: int, step: Any, state: dict[str, Any]) -> None:
        rec["variance"].append(mix_and_normalize(step.extras["std_pred"], 1.0)[0].square())
        rec["estimate"].append(step.estimate[0])
        rec["update"].append(state["prev_update"][0])

    run(make("zo-lstm", checkpoint=ctx.learned("mnist-attack"), q=q), problem, steps,
        seed=ctx.seed, nonfinite="inf", callback=hook)
    var, est, upd = (torch.stack(rec[k]).double().cpu() for k in ("variance", "estimate",
                                                                  "update"))
    tuned = ctx.baselines("mnist-attack", ["zo-sgd", "zo-adam"])
    sgd = replay("zo-sgd", {**tuned["zo-sgd"], "q": q}, est)
    adam = replay("zo-adam", {**tuned["zo-adam"], "q": q}, est)
    active = torch.argsort(upd.abs().sum(0), descending=True)[:top]
    coord = int(active[0])
    v, g, u = (s[:, active].numpy() for s in (var, est, upd))
    stats = {"roughness_variance": float(np.median(roughness(v))),
             "roughness_estimate": float(np.median(roughness(g))),
             "roughness_update": float(np.median(roughness(u))),
             "corr_variance_abs_update": float(np.median(correlation(v, np.abs(u)))),
             "corr_variance_abs_estimate": float(np.median(correlation(v, np.abs(g))))}
    return {"image": image, "coordinate": coord, "steps": steps, "q": q, "top": top,
            "hyperparameters": {"zo-sgd": tuned["zo-sgd"], "zo-adam": tuned["zo-adam"]},
            "variance": var[:, coord].tolist(), "estimate": est[:, coord].tolist(),
            "update": upd[:, coord].tolist(), "zo-sgd": sgd[:, coord].tolist(),
            "zo-adam": adam[:, coord].tolist(), "statistics_top": stats}


@experiment("fig4", paper=(
    "Figure 4 (ablations and analysis). The QueryRNN and the UpdateRNN each improve ZO-LSTM "
    "(MNIST, CIFAR-10, binary classification); Guided ES helps much less than the QueryRNN; "
    "the QueryRNN raises the cosine similarity between estimate and gradient, more as q "
    "grows; the UpdateRNN's update is smoother than the estimate."))
def fig4(ctx: Context) -> dict[str, Any]:
    """Figure 4a-4e (section 4.4)."""
    panels: dict[str, Any] = {}
    for name in PANELS:
        reason = unavailable(ctx, name)
        panels[name] = {"skipped": reason} if reason else _panel(ctx, name)
    cos_images = ctx.n_images()
    cos_steps = ctx.pick(5, 100)
    q_grid = tuple(ctx.pick((5, 20), Q_GRID))
    cos = cosine_study(ctx, q_grid, cos_images, cos_steps)
    traj = trajectory_study(ctx, ctx.pick(10, 200), ctx.pick(5, 50))
    protocol = {
        "panels": {k: p.get("protocol", p) for k, p in panels.items()},
        "cosine": {"task": "mnist-attack", "split": "test", "images": cos_images, "trials": 1,
                   "steps": cos_steps, "q_grid": list(q_grid),
                   "checkpoint": ctx.learned("mnist-attack"),
                   "method": "along each ZO-LSTM run (q directions), the estimate at x_t with "
                             "the QueryRNN's normalized std (unmixed) and with N(0, I), vs the "
                             "autograd gradient; averaged over the first steps and images"},
        "trajectory": {k: traj[k] for k in ("image", "coordinate", "steps", "q", "top",
                                            "hyperparameters")},
        "negligible": NEGLIGIBLE,
    }
    results = {"panels": {k: {kk: p[kk] for kk in ("optimizers", "summary")} if "summary" in p
                          else p for k, p in panels.items()},
               "cosine": cos, "trajectory": traj}
    checks = _checks(panels, cos, traj)
    names = [_figure(ctx, panels, cos, traj)]
    return {"protocol": protocol, "results": results, "checks": checks, "figures": names}


def _fmt(s: dict[str, float]) -> str:
    return f"final {s['final']:.4g} / mean {s['auc']:.4g}"


def _checks(panels: dict[str, Any], cos: dict[str, Any], traj: dict[str, Any]
            ) -> list[dict[str, Any]]:
    """One check per claim of section 4.4, from the measured numbers."""
    checks: list[dict[str, Any]] = []
    gains: dict[str, float] = {}
    for name, title in PANELS.items():
        short = title.split(" ", 1)[1]
        if "summary" not in panels[name]:
            for module in ("QueryRNN", "UpdateRNN"):
                checks.append({"claim": f"{title}: the {module} improves ZO-LSTM", "holds": None,
                               "evidence": f"skipped: {panels[name]['skipped']}"})
            continue
        s = panels[name]["summary"]
        for module, ablated in (("QueryRNN", "zo-lstm-no-query"),
                                ("UpdateRNN", "zo-lstm-no-update")):
            better = s["zo-lstm"]["final"] < s[ablated]["final"] or \
                s["zo-lstm"]["auc"] < s[ablated]["auc"]
            checks.append({
                "claim": f"{title}: the {module} improves ZO-LSTM (lower final loss or faster "
                         f"convergence = lower mean loss over iterations than "
                         f"{figures.label(ablated)})",
                "holds": bool(better),
                "evidence": f"ZO-LSTM {_fmt(s['zo-lstm'])}; {figures.label(ablated)} "
                            f"{_fmt(s[ablated])}"})
        gains[short] = -rel_diff(s["zo-lstm"]["auc"], s["zo-lstm-no-query"]["auc"])
        guided = -rel_diff(s["zo-lstm-guided-es"]["auc"], s["zo-lstm-no-query"]["auc"])
        if name == "mnist-attack":
            checks.append({
                "claim": "(a) MNIST: Guided ES speeds up convergence over ZO-LSTM-no-query, "
                         "but much less than the QueryRNN",
                "holds": bool(0 < guided < gains[short]),
                "evidence": f"mean-loss gain over no-query: Guided ES {guided:+.1%}, "
                            f"QueryRNN {gains[short]:+.1%}"})
        else:
            checks.append({
                "claim": f"{title}: Guided ES has a negligible effect (mean loss within "
                         f"{NEGLIGIBLE:.0%} of ZO-LSTM-no-query)",
                "holds": bool(abs(guided) <= NEGLIGIBLE),
                "evidence": f"mean-loss change vs no-query: {guided:+.1%}"})
    if "binary classification" in gains and len(gains) > 1:
        attacks = {k: v for k, v in gains.items() if k != "binary classification"}
        checks.append({
            "claim": "The QueryRNN's improvement is less significant on binary classification "
                     "than on the attack tasks",
            "holds": bool(all(gains["binary classification"] < v for v in attacks.values())),
            "evidence": "relative mean-loss gain over no-query: "
                        + ", ".join(f"{k} {v:+.1%}" for k, v in gains.items())})
    qs = list(cos)
    gap = {q: cos[q]["query_mean"] - cos[q]["gaussian_mean"] for q in qs}
    spread = float(np.mean([cos[q]["query_std_spread"] for q in qs]))
    checks.append({
        "claim": "(d) The QueryRNN raises the cosine similarity between the ZO estimate and the "
                 "true gradient, at every q",
        "holds": bool(all(g > 0 for g in gap.values())),
        "evidence": "; ".join(f"q={q}: {cos[q]['query_mean']:.3f} vs {cos[q]['gaussian_mean']:.3f}"
                              for q in qs)
        + f" (QueryRNN's normalized std: mean spread across coordinates {spread:.3g})"})
    checks.append({
        "claim": "(d) The QueryRNN's cosine improvement grows with q (positive, and larger at "
                 "the largest q than at the smallest)",
        "holds": bool(gap[qs[-1]] > max(gap[qs[0]], 0.0)) if len(qs) > 1 else None,
        "evidence": "gap " + ", ".join(f"q={q}: {g:+.3f}" for q, g in gap.items())})
    st = traj["statistics_top"]
    checks.append({
        "claim": "(e) The UpdateRNN's update is less noisy than the ZO estimate, and the "
                 "predicted variance is smoother still",
        "holds": bool(st["roughness_update"] < st["roughness_estimate"]
                      and st["roughness_variance"] < st["roughness_update"]),
        "evidence": f"median roughness over the {traj['top']} most active coordinates: "
                    f"estimate {st['roughness_estimate']:.3f}, update "
                    f"{st['roughness_update']:.3f}, variance {st['roughness_variance']:.3f}"})
    checks.append({
        "claim": "(e) The predicted variance follows the update's magnitude more than the "
                 "estimate's",
        "holds": bool(st["corr_variance_abs_update"] > st["corr_variance_abs_estimate"]),
        "evidence": f"median correlation with |update| {st['corr_variance_abs_update']:.3f}, "
                    f"with |estimate| {st['corr_variance_abs_estimate']:.3f}"})
    return checks


def _figure(ctx: Context, panels: dict[str, Any], cos: dict[str, Any],
            traj: dict[str, Any]) -> str:
    """2 x 3 panels: (a)-(c) ablations, (d) cosine vs q, (e) the coordinate's trajectory
    (top: variance, estimate, update; bottom: ZO-LSTM vs replayed ZO-SGD / ZO-ADAM)."""
    fig, axes = figures.grid(2, 3, width=5.0, height=3.8)
    for ax, (name, title) in zip(axes[0], PANELS.items(), strict=True):
        p = panels[name]
        if "summary" not in p:
            ax.text(0.5, 0.5, f"{title}\nskipped: files missing", ha="center", va="center",
                    transform=ax.transAxes)
            ax.set_axis_off()
            continue
        pr = p["protocol"]
        figures.loss_panel(ax, p["optimizers"], log=name == "binary-classification",
                           title=f"{title} ({pr['instances']} x {pr['trials']} trials, "
                                 f"q={pr['q']})")
    ax = axes[1][0]
    qs = [int(q) for q in cos]
    for key, name in (("query", "zo-lstm"), ("gaussian", "zo-lstm-no-query")):
        mean = [cos[str(q)][f"{key}_mean"] for q in qs]
        std = [cos[str(q)][f"{key}_std_over_images"] for q in qs]
        figures.band(ax, qs, mean, std, name)
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
