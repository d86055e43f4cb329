"""Figure 2 and Table 1 of Ruan et al. (2020): the black-box attacks of section 4.1.

* ``fig2-mnist``, ``fig2-cifar10``: the attack loss against iterations for ZO-SGD, ZO-signSGD,
  ZO-ADAM and ZO-LSTM on two chosen test images (``trials`` runs each, mean +- std), and the
  average over the test images x trials (Figure 2).  On CIFAR-10 the learned optimizer is the
  shipped ``pretrained:cifar10-attack``, which is the MNIST-trained one finetuned on CIFAR-10
  (``ZO-LSTM-finetune``, section 4.3); no ZO-LSTM trained from scratch on CIFAR-10 is shipped.
* ``table1``: one MNIST image attacked by each optimizer, the image at several iterations with
  the target's predicted label (Table 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from zol2l.experiments.attack import plot_examples
from zol2l.experiments.reproduce.base import Context, experiment, labelled
from zol2l.experiments.reproduce.figures import grid, label, loss_panel, save
from zol2l.loop import run
from zol2l.optimizers import make

HAND = ("zo-sgd", "zo-signsgd", "zo-adam")


@dataclass(frozen=True)
class Fig2:
    """What one dataset's Figure 2 runs: the attack task, the key of its learned optimizer
    (``NAME@LABEL`` reports the run as ``LABEL``) and the quick sizes that differ from the
    task's protocol."""

    task: str
    learned: str = "zo-lstm"
    quick: dict[str, int] = field(default_factory=dict)


#: the shipped CIFAR-10 optimizer IS the MNIST one finetuned (section 4.3); the MNIST optimizer
#: applied unchanged diverges there (its steps are ~100x too large: loss 13 -> 170), and with a
#: tuned alpha it is the subject of ``generalization``
FIG2 = {"mnist": Fig2("mnist-attack", quick={"steps": 15}),
        "cifar10": Fig2("cifar10-attack", learned="zo-lstm@zo-lstm-finetune",
                        quick={"instances": 2})}


def _optimizers(ctx: Context, task_name: str, learned: str = "zo-lstm"
                ) -> dict[str, dict[str, Any]]:
    """The tuned hand-designed optimizers and the learned one (under the key ``learned``)."""
    table: dict[str, dict[str, Any]] = dict(ctx.baselines(task_name, HAND))
    table[learned] = {"checkpoint": ctx.learned(task_name), "p_query": 0.5, "alpha": 1.0}
    return table


def _finals(payload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    keys = ("final_loss_mean", "final_loss_std", "success_rate", "iters_to_success_mean",
            "iters_to_success_median", "queries_to_success_mean", "total_queries")
    return {name: {k: block.get(k) for k in keys} for name, block in payload["optimizers"].items()}


def _best(numbers: dict[str, float | None], lower: bool = True) -> str | None:
    valid = {k: v for k, v in numbers.items() if v is not None}
    if not valid:
        return None
    return min(valid, key=valid.__getitem__) if lower else max(valid, key=valid.__getitem__)


def _fig2(ctx: Context, dataset: str) -> dict[str, Any]:
    spec = FIG2[dataset]
    task_name = spec.task
    task = ctx.task(task_name)
    size = ctx.sizes(task_name, quick=spec.quick)
    steps, q, n_images, trials = size.steps, size.q, size.instances, size.trials
    table = _optimizers(ctx, task_name, spec.learned)
    test_ids = task.instance_ids("test")
    chosen = test_ids[:2]
    per_image = {}
    for image in chosen:
        per_image[image] = ctx.evaluate(task, table, tag=f"image{image}", ids=[image],
                                        trials=trials, steps=steps, q=q)
    average = ctx.evaluate(task, table, tag="average", instances=n_images, trials=trials,
                           steps=steps, q=q)

    fig, axes = grid(1, 3)
    for ax, image in zip(axes[0][:2], chosen, strict=True):
        loss_panel(ax, per_image[image]["optimizers"],
                   title=f"image {image}: mean ± std over {trials} trials")
    loss_panel(axes[0][2], average["optimizers"],
               title=f"average over {len(average['instances'])} images x {trials} trials")
    figure = save(fig, ctx.out / f"fig2-{dataset}.png",
                  suptitle=f"Figure 2 ({dataset.upper()}): black-box attack loss, q = {q}")

    finals = _finals(average)
    main = spec.learned.split("@", 1)[-1]
    loss = {n: f["final_loss_mean"] for n, f in finals.items()}
    iters = {n: f["iters_to_success_mean"] for n, f in finals.items()}
    hand_best_loss = min(loss[n] for n in HAND)
    checks = [
        {"claim": f"{label(main)} reaches a lower mean final loss than every baseline",
         "holds": bool(loss[main] < hand_best_loss),
         "evidence": ", ".join(f"{label(n)} {v:.4g}" for n, v in loss.items())},
        {"claim": f"{label(main)} needs fewer iterations to the first success than every "
                  "baseline (mean over successful runs)",
         "holds": None if iters[main] is None or any(iters[n] is None for n in HAND)
         else bool(iters[main] < min(iters[n] for n in HAND)),  # type: ignore[type-var]
         "evidence": ", ".join(f"{label(n)} {'-' if v is None else f'{v:.1f}'} "
                               f"({finals[n]['success_rate']:.0%} succeed)"
                               for n, v in iters.items())},
    ]
    for image in chosen:
        img_loss = {n: b["final_loss_mean"] for n, b in per_image[image]["optimizers"].items()}
        checks.append({"claim": f"image {image}: {label(main)} has the lowest final loss",
                       "holds": _best(img_loss) == main,
                       "evidence": ", ".join(f"{label(n)} {v:.4g}" for n, v in img_loss.items())})
    return {
        "protocol": {"task": task_name, "task_options": task.describe(), "split": "test",
                     "chosen_images": chosen, "images": len(average["instances"]),
                     "trials": trials, "steps": steps, "q": q, "seed": ctx.seed,
                     "optimizers": labelled(table)},
        "results": {"average": finals,
                    "average_curves": {n: {"loss_mean": b["loss_mean"], "loss_std": b["loss_std"]}
                                       for n, b in average["optimizers"].items()},
                    "per_image": {str(i): _finals(p) for i, p in per_image.items()}},
        "checks": checks,
        "figures": [figure],
    }


@experiment("fig2-mnist", paper="Figure 2 (MNIST). ZO-LSTM converges faster and to a lower "
                                "attack loss than ZO-SGD, ZO-signSGD and ZO-ADAM",
            tuned=("mnist-attack",), learned=("mnist-attack",))
def fig2_mnist(ctx: Context) -> dict[str, Any]:
    """Figure 2, MNIST panels (section 4.1)."""
    return _fig2(ctx, "mnist")


@experiment("fig2-cifar10", paper="Figure 2 (CIFAR-10). ZO-LSTM and ZO-LSTM-finetune converge "
                                  "faster and to a lower attack loss than the baselines",
            tuned=("cifar10-attack",), learned=("cifar10-attack",))
def fig2_cifar10(ctx: Context) -> dict[str, Any]:
    """Figure 2, CIFAR-10 panels (sections 4.1 and 4.3)."""
    return _fig2(ctx, "cifar10")


@experiment("table1", paper="Table 1. ZO-LSTM turns one MNIST image adversarial in fewer "
                            "iterations than the baselines, with a small perturbation",
            tuned=("mnist-attack",), learned=("mnist-attack",))
def table1(ctx: Context) -> dict[str, Any]:
    """Table 1: the adversarial example over the iterations, one row per optimizer."""
    task = ctx.task("mnist-attack")
    steps = ctx.pick(16, task.default_steps)
    every = max(1, steps // 8)
    table = _optimizers(ctx, "mnist-attack")
    image = task.instance_ids("test")[0]
    kept: dict[str, Any] = {}
    rows: dict[str, Any] = {}
    for name, hp in table.items():
        problem = task.problem([image], trials=1, seed=ctx.seed, snapshot_every=every)
        result = run(make(name, **{"q": task.default_q, **hp}), problem, steps, seed=ctx.seed,
                     nonfinite="inf")
        kept[name] = (result, problem)
        iters = sorted(problem.snapshots)
        shots = torch.stack([problem.snapshots[t] for t in iters])
        with torch.no_grad():
            preds = task.target(shots.reshape(-1, *problem.shape)).argmax(1).tolist()
        first = task.summary(result, problem)["first_success_iter"][0]
        rows[name] = {"iterations": iters, "predicted_labels": preds,
                      "first_success_iter": first if first >= 0 else None,
                      "final_loss": float(result.loss[-1, 0]),
                      "final_l1_distortion": float((problem.to_image(result.x)
                                                    - problem.flat0).abs().sum())}
    plot_examples(task, kept, ctx.out / "table1.png")
    firsts = {n: r["first_success_iter"] for n, r in rows.items()}
    hand = [firsts[n] for n in HAND if firsts[n] is not None]
    holds = None if firsts["zo-lstm"] is None else bool(not hand or firsts["zo-lstm"] < min(hand))
    return {
        "protocol": {"task": "mnist-attack", "image": image,
                     "true_label": int(task.labels[image]), "steps": steps, "q": task.default_q,
                     "snapshot_every": every, "seed": ctx.seed, "optimizers": table},
        "results": rows,
        "checks": [{"claim": "ZO-LSTM finds the adversarial example in the fewest iterations",
                    "holds": holds,
                    "evidence": ", ".join(f"{label(n)} {'never' if v is None else v}"
                                          for n, v in firsts.items())}],
        "figures": ["table1.png"],
    }
