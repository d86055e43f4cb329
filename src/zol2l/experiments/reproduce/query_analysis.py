"""Figure 4d-4e of Ruan et al. (2020): what the QueryRNN and the UpdateRNN do (section 4.4).

(d) :func:`cosine_study`: the cosine between the true gradient and the ZO estimate (eq. 1)
    with the QueryRNN's sampling and with standard Gaussian sampling, at the points of a
    ZO-LSTM run.
(e) :func:`trajectory_study`: one coordinate's predicted variance, estimate and update, and the
    updates ZO-SGD and ZO-ADAM would make from the same estimates (:func:`replay`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from zol2l.estimators import gaussian
from zol2l.experiments.reproduce.base import Context
from zol2l.learned.rnn import mix_and_normalize
from zol2l.loop import run
from zol2l.optimizers import State, make
from zol2l.oracle import Oracle
from zol2l.tasks.base import Problem


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
        problem = task.problem(ids, trials=1, seed=ctx.options.seed)
        # a separate oracle and generator: the measurements do not disturb the run
        oracle = Oracle(problem.objective, problem.dim, mode="problems", nonfinite="inf",
                        dtype=problem.x0.dtype)
        gen = torch.Generator(device=problem.x0.device).manual_seed(ctx.options.seed + 7919)
        mu = opt.smoothing(problem.x0.dtype)
        where = [problem.x0.clone()]
        with_q: list[torch.Tensor] = []
        without: list[torch.Tensor] = []
        spread: list[torch.Tensor] = []

        def hook(t: int, step: Any, state: State, problem: Problem = problem,
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

        run(opt, problem, steps, seed=ctx.options.seed, nonfinite="inf", callback=hook)
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
        state.t = t
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
    problem = task.problem([image], trials=1, seed=ctx.options.seed)
    rec: dict[str, list[torch.Tensor]] = {"variance": [], "estimate": [], "update": []}

    def hook(t: int, step: Any, state: State) -> None:
        rec["variance"].append(mix_and_normalize(step.extras["std_pred"], 1.0)[0].square())
        rec["estimate"].append(step.estimate[0])
        rec["update"].append(state.prev_update[0])

    run(make("zo-lstm", checkpoint=ctx.learned("mnist-attack"), q=q), problem, steps,
        seed=ctx.options.seed, nonfinite="inf", callback=hook)
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
