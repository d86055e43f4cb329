"""The general ZO-LSTM on the paper's tasks: against the task-specific ZO-LSTM and the tuned
baselines, on the TEST instances (the last row of the quality bar in docs/general.md).

Usage:
  python bench/general_paper_tasks.py --task binary-classification --instances 10 --trials 10
  python bench/general_paper_tasks.py --task mnist-attack --instances 100 --trials 1 \
      --backend ray --out bench/results/general_mnist.json

Runs through ``evaluate`` (the one loop, work units): every baseline with the
hyperparameters of ``src/zol2l/tuned/TASK.json`` (chosen by ``zol2l tune`` on training
instances), ``zo-lstm`` with ``pretrained:TASK`` and ``zo-lstm`` with ``pretrained:general``
and nothing else set, every one with the same query budget (``steps * (q + 1)``).  Writes
each one's mean final loss with its standard error and the
paired difference to the general optimizer over the same (instance, trial) rows, and the bar:
general within 5% of the task-specific ZO-LSTM and below every tuned baseline.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from zol2l.experiments.backends import make_backend
from zol2l.experiments.defaults import read_hparams
from zol2l.experiments.evaluate import evaluate
from zol2l.experiments.options import RunOptions
from zol2l.fileio import write_json_atomic
from zol2l.tasks import make_task

TUNED = Path(__file__).resolve().parents[1] / "src" / "zol2l" / "tuned"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="binary-classification")
    parser.add_argument("--instances", type=int, default=None)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--backend", default="local")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    options = {"data_dir": os.environ.get("ZOL2L_DATA_DIR")} if "attack" in args.task else {}
    task = make_task(args.task, **options)
    tuned = read_hparams(TUNED / f"{args.task}.json")
    steps = task.default_steps if "attack" not in args.task else 200
    runs = {name: (name, {**hp}) for name, hp in tuned.items()}
    runs["zo-lstm"] = ("zo-lstm", {"checkpoint": f"pretrained:{args.task}"})
    runs["general"] = ("zo-lstm", {"checkpoint": "pretrained:general"})
    # equal budgets: every optimizer gets the queries of `steps` eq. 1 steps (q + 1 each);
    # the general optimizer spends q + 3 per step, so it takes fewer steps
    budget = steps * (task.default_q + 1)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="general-paper-"))
    start = time.perf_counter()
    finals: dict[str, np.ndarray] = {}
    with make_backend(args.backend) as backend:
        for label, (name, hp) in runs.items():
            hp.setdefault("q", task.default_q)
            how = RunOptions(backend=backend, workdir=workdir / label, resume=True,
                             progress=False)
            payload = evaluate(task, {name: hp}, instances=args.instances, trials=args.trials,
                               steps=steps, options=how, budget=budget)
            finals[label] = np.asarray(payload["optimizers"][name]["final_loss"])
            print(label, float(finals[label].mean()), flush=True)
    ref = finals["general"]
    rows = {}
    for label, final in finals.items():
        diff = final - ref
        rows[label] = {"final_loss_mean": float(final.mean()),
                       "final_loss_se": float(final.std(ddof=1) / math.sqrt(len(final))),
                       "minus_general": float(diff.mean()),
                       "minus_general_se": float(diff.std(ddof=1) / math.sqrt(len(diff)))}
    general = rows["general"]["final_loss_mean"]
    baselines = [rows[k]["final_loss_mean"] for k in tuned]
    bar = {"within_5pct_of_task_zo_lstm": general <= 1.05 * rows["zo-lstm"]["final_loss_mean"],
           "below_every_tuned_baseline": general < min(baselines)}
    result = {"task": args.task, "instances": args.instances, "trials": args.trials,
              "steps": steps, "budget": budget, "optimizers": rows, "bar": bar,
              "seconds": time.perf_counter() - start}
    print(bar)
    if args.out:
        write_json_atomic(args.out, result)


if __name__ == "__main__":
    main()
