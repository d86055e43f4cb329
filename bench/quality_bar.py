"""The quality bar on one task (the ``quality-bar`` experiment of ``zol2l reproduce``, with
its sizes and options from the command line); see :mod:`zol2l.experiments.reproduce.quality_bar`.

Usage:
    python bench/quality_bar.py --task mnist-attack --out bench/results/bar_mnist.json
    python bench/quality_bar.py --task cifar10-attack --trials 2 --device cuda \
        --max-batch 8192 --instance-chunk 100 --out bench/results/bar_cifar10_cuda.json
    python bench/quality_bar.py --task binary-classification --out bench/results/bar_binary.json

Writes JSON (per optimizer the numbers and paired differences to ZO-LSTM, and the bars);
a markdown table goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from zol2l.experiments.backends import make_backend
from zol2l.experiments.options import RunOptions
from zol2l.experiments.reproduce.base import Context, machine
from zol2l.experiments.reproduce.quality_bar import TASKS, measure, table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--instances", type=int, default=100)
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--steps", type=int, default=None, help="default: the task's")
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-batch", type=int, default=None,
                   help="attack forward-pass memory cap (default: the task's)")
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
                      options=RunOptions(seed=args.seed, resume=args.resume, progress=False,
                                         backend=backend))
        options = {} if args.max_batch is None else {"max_batch": args.max_batch}
        steps = args.steps or ctx.task(args.task, **options).default_steps
        grid = [float(a) for a in args.tune_alpha.split(",")] if args.tune_alpha else []
        found = measure(ctx, args.task, instances=args.instances, trials=args.trials,
                        steps=steps, alpha_grid=grid, tune_instances=args.tune_instances,
                        instance_chunk=args.instance_chunk, **options)
    found.pop("curves")
    tuning = found["alpha_tuning"]
    result = {**{k: found[k] for k in ("task", "split", "instances", "trials", "steps", "q",
                                       "seed", "device")},
              "machine": machine(), "seconds": time.perf_counter() - start,
              "sources": ctx.sources,
              **{k: found[k] for k in ("hyperparameters", "alpha_tuning", "optimizers",
                                       "bars")}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, allow_nan=False))
    print(f"{args.task}: {result['instances']} test instances x {args.trials} trials, "
          f"{steps} steps, q = {result['q']}, {result['device']}, {result['seconds']:.0f} s")
    if tuning:
        print(f"alpha tuned on {tuning['instances']} (train): {tuning['scores']} -> "
              f"{tuning['best']:g}")
    print(table(found["optimizers"]))
    for name, bar in result["bars"].items():
        print(f"{name}: {'holds' if bar['holds'] else 'MISSED'}")


if __name__ == "__main__":
    main()
