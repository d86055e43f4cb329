"""The paired effect of one optimizer against another on a task's instances (default: ZO-LSTM
against ZO-LSTM-no-query on the TEST split, i.e. the QueryRNN's effect).

Usage:
    python bench/paired_effect.py --task binary-classification --trials 10 --out effect.json
    python bench/paired_effect.py --task binary-classification \
        --optimizers zo-lstm@shipped,zo-lstm@new,zo-lstm-no-query \
        --checkpoint zo-lstm@new=PATH/query.safetensors --out effect.json

Every optimizer (or ``NAME@LABEL``) runs through ``zol2l evaluate``'s harness
(:func:`zol2l.experiments.evaluate.evaluate`, hyperparameters and checkpoints resolved as
there: ``--set``/``--checkpoint`` first, then the task's shipped tuning file and
checkpoints) on the same instances x trials.  For every optimizer but the reference
(``--ref``, default the last of ``--optimizers``) it reports ``ref - optimizer`` of the final
losses, paired over the (instance, trial) rows, with its standard error
(:func:`zol2l.experiments.reproduce.analysis.paired`): positive means the optimizer ends
lower than the reference.  Writes strict JSON to ``--out``; a line per optimizer to stdout.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from zol2l.cli_options import (
    add_hyperparameter_options,
    parse_ids,
    tuned_choice,
    user_hyperparameters,
)
from zol2l.cli_tasks import add_task_options, task_options
from zol2l.experiments.backends import make_backend
from zol2l.experiments.evaluate import evaluate
from zol2l.experiments.options import RunOptions
from zol2l.experiments.reproduce.analysis import paired
from zol2l.experiments.reproduce.base import machine
from zol2l.fileio import write_json_atomic
from zol2l.optimizers import get_class
from zol2l.tasks import available_tasks, make_task, task_class

#: the block numbers copied beside the paired differences (those a block has)
REPORTED = ("final_loss_std", "success_rate", "iters_to_success_mean", "total_queries",
            "seconds")


def effects(blocks: Mapping[str, Mapping[str, Any]], ref: str) -> dict[str, dict[str, Any]]:
    """Per optimizer its mean final loss (± s.e.) and, for all but ``ref``, the paired
    ``ref - optimizer`` difference of the final losses over the rows with its standard
    error, ``n`` rows and ``z = mean / se`` (``None`` where undefined)."""
    rows = paired(blocks, ref)
    key = ref.replace("-", "_")
    out: dict[str, dict[str, Any]] = {}
    for name, row in rows.items():
        n = len(blocks[name]["final_loss"])
        entry: dict[str, Any] = {"final_loss_mean": row["final_loss_mean"],
                                 "final_loss_se": row["final_loss_se"], "n": n}
        entry.update({k: blocks[name][k] for k in REPORTED if k in blocks[name]})
        if name != ref:
            mean, se = -row[f"minus_{key}_mean"], row[f"minus_{key}_se"]
            entry["ref_minus_this_mean"] = mean
            entry["ref_minus_this_se"] = se
            entry["z"] = mean / se if se else None
        out[name] = entry
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="binary-classification", choices=available_tasks())
    p.add_argument("--optimizers", default="zo-lstm,zo-lstm-no-query",
                   help="optimizer names or NAME@LABEL labels, comma-separated "
                        "(default: zo-lstm,zo-lstm-no-query)")
    p.add_argument("--ref", default=None,
                   help="the reference optimizer (default: the last of --optimizers)")
    p.add_argument("--split", choices=("train", "test"), default="test")
    p.add_argument("--instances", type=int, default=None,
                   help="the first N instances of the split (default: all)")
    p.add_argument("--ids", type=parse_ids, default=None, help="explicit instance ids")
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--steps", type=int, default=None, help="default: the task's")
    p.add_argument("--instance-chunk", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, type=Path, help="JSON file to write")
    add_hyperparameter_options(p)
    add_task_options(p, [task_class(name) for name in available_tasks()])
    args = p.parse_args(argv)
    args.names = [n.strip() for n in args.optimizers.split(",") if n.strip()]
    for name in args.names:
        get_class(name)  # a clear error for an unknown name
    if len(args.names) < 2:
        p.error("--optimizers needs at least two optimizers")
    args.ref = args.ref or args.names[-1]
    if args.ref not in args.names:
        p.error(f"--ref {args.ref} is not one of --optimizers")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    command = shlex.join(["python", "bench/paired_effect.py",
                          *(sys.argv[1:] if argv is None else argv)])
    task = make_task(args.task, **task_options(args, task_class(args.task)))
    user = user_hyperparameters([*args.sets, *args.checkpoints], args.names)
    start = time.perf_counter()
    with make_backend("local") as backend:
        payload = evaluate(task, user, split=args.split, instances=args.instances,
                           ids=args.ids, trials=args.trials, steps=args.steps,
                           tuned=tuned_choice(args.hparams),
                           options=RunOptions(backend=backend, progress=False, seed=args.seed,
                                              instance_chunk=args.instance_chunk))
    blocks = payload["optimizers"]
    result = {
        "what": f"paired final-loss differences {args.ref} - OPTIMIZER over (instance, "
                "trial) rows (positive: OPTIMIZER ends lower)",
        "command": command,
        **{k: payload[k] for k in ("task", "task_options", "split", "steps", "q", "instances",
                                   "trials", "seed", "device")},
        "machine": machine(), "seconds": time.perf_counter() - start,
        "reference": args.ref,
        "hyperparameters": {n: b["hyperparameters"] for n, b in blocks.items()},
        "hyperparameter_sources": {n: b.get("hyperparameter_sources") for n, b in
                                   blocks.items()},
        "optimizers": effects(blocks, args.ref),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, result)
    rows = len(payload["instances"]) * args.trials
    print(f"{args.task} ({args.split}): {len(payload['instances'])} instances x {args.trials} "
          f"trials = {rows} rows, {payload['steps']} steps, {result['seconds']:.0f} s")
    for name, row in result["optimizers"].items():
        line = f"{name:>24}: final loss {row['final_loss_mean']:.6g}"
        if name != args.ref:
            z = row["z"]
            line += (f"; {args.ref} - this = {row['ref_minus_this_mean']:+.3g} ± "
                     f"{row['ref_minus_this_se']:.2g} (z {'-' if z is None else f'{z:.2f}'})")
        print(line)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
