"""Issue 4's quality bar: ZO-LSTM, its ablations and the tuned baselines on the TEST instances.

Usage:
    python bench/quality_bar.py --task mnist-attack --out bench/results/bar_mnist.json
    python bench/quality_bar.py --task cifar10-attack --trials 2 --device cuda \
        --max-batch 8192 --instance-chunk 100 --out bench/results/bar_cifar10_cuda.json
    python bench/quality_bar.py --task binary-classification --out bench/results/bar_binary.json

Runs, through ``evaluate`` (the one loop, the work units), on the first ``--instances`` test
instances (default 100) x ``--trials`` (default 10) for the task's steps (200 for the attacks,
500 for binary classification):

* the hand-designed baselines with the hyperparameters ``zol2l tune`` chose on TRAINING
  instances (``src/zol2l/tuned/TASK.json``);
* ``zo-lstm`` (``pretrained:TASK``; on CIFAR-10 the MNIST optimizer finetuned there) and its
  ablations ``zo-lstm-no-query``, ``zo-lstm-no-update`` (ZO-SGD's tuned step) and
  ``zo-lstm-guided-es``.

It writes JSON: per optimizer the mean final loss with its standard error, the success rate and
the iterations to first success (attacks); the paired difference of each optimizer's final
loss to ZO-LSTM's over the same (instance, trial) rows, with its standard error; and the bars of
the issue (``holds`` true/false): ZO-LSTM's mean final loss below every baseline's, its mean
iterations to first success below every baseline's (attacks), and ZO-LSTM-no-query and
ZO-LSTM-no-update both ending above ZO-LSTM (Figure 4a).  A markdown table goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from zol2l.experiments.backends import make_backend
from zol2l.experiments.reproduce.ablations import ablation_optimizers
from zol2l.experiments.reproduce.base import BASELINES, Context, machine
from zol2l.experiments.reproduce.generalization import tune_alpha

ABLATIONS = ("zo-lstm-no-query", "zo-lstm-no-update", "zo-lstm-guided-es")


def optimizers(ctx: Context, task: str, q: int) -> dict[str, dict[str, Any]]:
    """The tuned baselines the tuning file holds, ZO-LSTM and its three ablations."""
    table = {n: {**hp, "q": q} for n, hp in ctx.baselines(task).items() if hp}
    table.update({k: v for k, v in ablation_optimizers(ctx, task, q).items() if k != "zo-sgd"})
    return table


def summarize(payload: dict[str, Any]) -> dict[str, Any]:
    """Per-optimizer numbers and paired differences to ZO-LSTM."""
    blocks = payload["optimizers"]
    ref = np.asarray(blocks["zo-lstm"]["final_loss"], dtype=np.float64)
    rows: dict[str, Any] = {}
    for name, block in blocks.items():
        final = np.asarray(block["final_loss"], dtype=np.float64)
        diff = final - ref
        n = final.size
        rows[name] = {
            "final_loss_mean": float(final.mean()),
            "final_loss_se": float(final.std(ddof=1) / math.sqrt(n)) if n > 1 else None,
            "minus_zo_lstm_mean": float(diff.mean()),
            "minus_zo_lstm_se": float(diff.std(ddof=1) / math.sqrt(n)) if n > 1 else None,
            **{k: block.get(k) for k in ("success_rate", "iters_to_success_mean",
                                         "iters_to_success_median", "queries_to_success_mean",
                                         "total_queries", "seconds")},
        }
    return rows


def bars(rows: dict[str, Any]) -> dict[str, Any]:
    """The issue's bars, each with ``holds`` and the numbers it compares."""
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", required=True,
                   choices=("mnist-attack", "cifar10-attack", "binary-classification"))
    p.add_argument("--instances", type=int, default=100)
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--steps", type=int, default=None, help="default: the task's")
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-batch", type=int, default=1024, help="attack forward-pass chunk")
    p.add_argument("--instance-chunk", type=int, default=10)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=None, help="keep the work units here (for --resume)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--backend", choices=("local", "ray"), default="local")
    p.add_argument("--tune-alpha", default=None, metavar="A,B,...",
                   help="pick ZO-LSTM's update scale alpha (section 4.3) on this grid, on the "
                        "first --tune-instances TRAINING instances (1 trial); the learned "
                        "variants with an UpdateRNN then run with it")
    p.add_argument("--tune-instances", type=int, default=2)
    p.add_argument("--out", required=True, help="JSON file to write")
    args = p.parse_args()

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, make_backend(args.backend) as backend:
        ctx = Context(out=Path(args.workdir or tmp), data_dir=args.data_dir, device=args.device,
                      seed=args.seed, resume=args.resume, progress=False, backend=backend)
        options = {"max_batch": args.max_batch} if args.task.endswith("-attack") else {}
        task = ctx.task(args.task, **options)
        steps = args.steps or task.default_steps
        q = task.default_q
        table_ = optimizers(ctx, args.task, q)
        tuning = None
        if args.tune_alpha:
            grid = [float(a) for a in args.tune_alpha.split(",")]
            tuning = tune_alpha(ctx, task, table_["zo-lstm"]["checkpoint"], grid=grid,
                                instances=args.tune_instances, trials=1, steps=steps, q=q,
                                tag="alpha")
            for name in ("zo-lstm", "zo-lstm-no-query", "zo-lstm-guided-es"):
                table_[name]["alpha"] = tuning["best"]
        payload = ctx.evaluate(task, table_, tag="bar", split="test",
                               instances=args.instances, trials=args.trials, steps=steps, q=q,
                               instance_chunk=args.instance_chunk)
    rows = summarize(payload)
    result = {
        "task": args.task, "split": "test", "instances": len(payload["instances"]),
        "trials": args.trials, "steps": steps, "q": q, "seed": args.seed,
        "device": payload["device"], "machine": machine(),
        "seconds": time.perf_counter() - start, "sources": ctx.sources,
        "hyperparameters": {n: b["hyperparameters"] for n, b in payload["optimizers"].items()},
        "alpha_tuning": tuning, "optimizers": rows, "bars": bars(rows),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, allow_nan=False))
    print(f"{args.task}: {result['instances']} test instances x {args.trials} trials, "
          f"{steps} steps, q = {q}, {result['device']}, {result['seconds']:.0f} s")
    if tuning:
        print(f"alpha tuned on {tuning['instances']} (train): {tuning['scores']} -> "
              f"{tuning['best']:g}")
    print(table(rows))
    for name, bar in result["bars"].items():
        print(f"{name}: {'holds' if bar['holds'] else 'MISSED'}")


if __name__ == "__main__":
    main()
