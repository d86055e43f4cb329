"""Why the QueryRNN does not align the eq. 1 estimate with the true gradient (Figure 4d).

Usage: python bench/query_alignment.py [--checkpoint pretrained:mnist-attack] [--images 10]
                                       [--steps 200] [--every 10] [--q 20]
                                       [--out bench/results/query_alignment.json]

Along ZO-LSTM runs on MNIST test images, every ``--every`` steps, with the step's sampling
std ``s`` (directions ``u = s * z``, ``z ~ N(0, I)``, ``||s||^2 = d``: covariance
``S = diag(s^2)``, trace ``d``) and the true gradient ``g`` (autograd, the analysis only),
the first-order estimate ``g_hat = (1/q) sum_i (u_i^T g) u_i`` has in closed form

* mean ``S g``; its cosine with ``g`` (the bias of the direction);
* ``E||g_hat||^2 = (tr(S) g^T S g + (q + 1) ||S g||^2) / q``;
* the alignment ``rho = E[g_hat . g] / (|g| sqrt(E||g_hat||^2))`` (the cosine of Figure 4d
  to first order; ``sqrt(q / (d + q + 1))`` for ``S = I``);

for four covariances: ``I`` (ZO-SGD's), the std the step used (the QueryRNN's prediction
mixed with ``I`` by the Bernoulli ``P`` of section 3.1), the QueryRNN's prediction unmixed,
and an oracle diagonal that knows ``g`` (``s^2`` proportional to ``|g|``), for the headroom
a diagonal covariance has.  Also the spread of the prediction across coordinates (std / mean
of ``s``), the correlation of ``s^2`` with ``|g|`` and, for what the QueryRNN could know, of
``|g_hat|`` (this step's and the previous step's estimate, its input; and the root of a
running mean of ``g_hat^2`` over the past steps, decay 0.95) with ``|g|``, the share
of steps whose directions used the prediction (the Bernoulli draw), and the cosine of the
mean estimate with the gradient at the NEXT iterate.  Means over images and sampled steps.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
from pathlib import Path
from typing import Any

import torch

from zol2l.experiments.reproduce.query_analysis import cosine as cos
from zol2l.experiments.reproduce.query_analysis import true_gradient
from zol2l.loop import run
from zol2l.optimizers import make
from zol2l.tasks import make_task

#: decay of the running mean of ``g_hat^2`` (an input a QueryRNN could be given)
EMA = 0.95


def alignment(s: torch.Tensor, g: torch.Tensor, q: int) -> torch.Tensor:
    """Row-wise first-order alignment ``rho`` of the estimate with std ``s`` (``||s||^2 =
    d``) and gradient ``g`` (both ``[B, d]``)."""
    var = s.square()
    gsg = (var * g.square()).sum(1)
    sg2 = (var * g).square().sum(1)
    trace = var.sum(1)
    second = (trace * gsg + (q + 1) * sg2) / q
    return gsg / (g.norm(dim=1) * second.sqrt()).clamp_min(1e-300)


def normalized(s: torch.Tensor) -> torch.Tensor:
    """``|s|`` rescaled per row to ``||s||^2 = d`` (as the sampling does)."""
    s = s.abs()
    return s * (math.sqrt(s.shape[1]) / s.norm(dim=1, keepdim=True).clamp_min(1e-300))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="pretrained:mnist-attack")
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--q", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", type=Path, default=Path("bench/results/query_alignment.json"))
    args = parser.parse_args()
    task = make_task("mnist-attack", **({"data_dir": args.data_dir} if args.data_dir else {}))
    ids = task.instance_ids("test")[:args.images]
    problem = task.problem(ids, trials=1, seed=args.seed)
    opt = make("zo-lstm", checkpoint=args.checkpoint, q=args.q)
    seen: list[dict[str, torch.Tensor]] = []
    last = [problem.x0.clone()]
    last_estimate: list[torch.Tensor | None] = [None]
    ema: list[torch.Tensor | None] = [None]  # running mean of g_hat^2 before this step

    def hook(t: int, out: Any, state: Any) -> None:
        if t % args.every == 0:
            seen.append({"x": last[0].double(), "x_next": out.x.detach().double(),
                         "used": out.extras["std"].double(),
                         "raw": out.extras["std_pred"].double(),
                         "estimate": out.estimate.detach().double(),
                         "previous": out.estimate.detach().double()
                         if last_estimate[0] is None else last_estimate[0].double(),
                         "ema": (out.estimate.detach().square() if ema[0] is None
                                 else ema[0]).double().sqrt()})
        sq = out.estimate.detach().square()
        ema[0] = sq if ema[0] is None else EMA * ema[0] + (1 - EMA) * sq
        last[0] = out.x.detach().clone()
        last_estimate[0] = out.estimate.detach().clone()

    run(opt, problem, args.steps, seed=args.seed, nonfinite="inf", callback=hook)
    rows: dict[str, list[torch.Tensor]] = {k: [] for k in (
        "rho_identity", "rho_used", "rho_raw", "rho_best", "mean_cos_used", "mean_cos_raw",
        "spread_raw", "corr_var_absgrad", "corr_absestimate_absgrad",
        "corr_absprevious_absgrad", "corr_emaestimate_absgrad", "learned_share",
        "next_cos_identity", "next_cos_used")}
    for entry in seen:
        g = true_gradient(problem, entry["x"].to(problem.x0.dtype)).double()
        g_next = true_gradient(problem, entry["x_next"].to(problem.x0.dtype)).double()
        ones = torch.ones_like(g)
        raw = normalized(entry["raw"])
        best = normalized(g.abs().sqrt())
        used = entry["used"]
        rows["rho_identity"].append(alignment(ones, g, args.q))
        rows["rho_used"].append(alignment(used, g, args.q))
        rows["rho_raw"].append(alignment(raw, g, args.q))
        rows["rho_best"].append(alignment(best, g, args.q))
        rows["mean_cos_used"].append(cos(used.square() * g, g))
        rows["mean_cos_raw"].append(cos(raw.square() * g, g))
        rows["spread_raw"].append(raw.std(dim=1) / raw.mean(dim=1))
        var = raw.square()
        centred = (var - var.mean(1, keepdim=True), g.abs() - g.abs().mean(1, keepdim=True))
        rows["corr_var_absgrad"].append(cos(*centred))
        for key, est in (("corr_absestimate_absgrad", entry["estimate"]),
                         ("corr_absprevious_absgrad", entry["previous"]),
                         ("corr_emaestimate_absgrad", entry["ema"])):
            a = est.abs()
            rows[key].append(cos(a - a.mean(1, keepdim=True), centred[1]))
        rows["learned_share"].append((used - ones).abs().amax(dim=1).gt(1e-9).double())
        rows["next_cos_identity"].append(cos(g, g_next))
        rows["next_cos_used"].append(cos(used.square() * g, g_next))
    table = {k: float(torch.stack(v).mean()) for k, v in rows.items()}
    table["rho_identity_formula"] = math.sqrt(args.q / (problem.dim + args.q + 1))
    payload = {"checkpoint": args.checkpoint, "task": "mnist-attack", "images": len(ids),
               "steps": args.steps, "every": args.every, "q": args.q, "seed": args.seed,
               "samples": len(seen) * len(ids), "machine": platform.machine(),
               "results": table}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1, allow_nan=False) + "\n")
    for k, v in table.items():
        print(f"{k:>22}: {v:.4f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
