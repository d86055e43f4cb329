"""Reduced baseline tuning for the CIFAR-10 attack on a CPU (what fits in about 20 minutes).

The paper's protocol (``zol2l tune``: 6 coarse deltas, 9 refinements, 6 Adam beta pairs, on the
100 training images) costs about 1,000 CPU-minutes on CIFAR-10.  This script runs the same
``tune()`` on the first ``--images`` TRAINING images with a smaller grid: coarse ``delta`` in
{10, 100, 1000}, then 0.5x and 2x around the best, and ZO-ADAM's betas fixed at the pair tuned
on MNIST (0.9, 0.996).  It writes ``src/zol2l/tuned/cifar10-attack.json`` (the file
``zol2l reproduce`` uses) with the reduced protocol recorded in it.

    OMP_NUM_THREADS=2 python tools/ship/tune_cifar10.py --images 2
    OMP_NUM_THREADS=2 python tools/ship/tune_cifar10.py --images 2 --coarse 0.5,1,2 \
        --refine 1 --merge
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from zol2l.experiments import tune as tuning
from zol2l.experiments.evaluate import write_json
from zol2l.experiments.options import RunOptions
from zol2l.tasks import make_task

OUT = Path(__file__).resolve().parents[2] / "src" / "zol2l" / "tuned" / "cifar10-attack.json"


def merge(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Union of two tuning payloads of the same protocol: every run kept, best delta chosen."""
    for key in ("instances", "steps", "q", "trials"):
        if before[key] != after[key]:
            raise ValueError(f"cannot merge tunings with different {key}")
    for name, entry in after["optimizers"].items():
        old = before["optimizers"][name]
        runs = old["trials"] + entry["trials"]
        best = min(runs, key=lambda r: r["final_loss_mean"])
        hp = {k: v for k, v in best.items() if k != "final_loss_mean"}
        before["optimizers"][name] = {"hyperparameters": {**hp, "q": after["q"]},
                                      "final_loss_mean": best["final_loss_mean"],
                                      "trials": runs}
    before["seconds"] = before["seconds"] + after["seconds"]
    return before


def main() -> None:
    """Tune zo-sgd, zo-signsgd and zo-adam on CIFAR-10 training images (reduced grid)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--coarse", default="10,100,1000", help="coarse deltas")
    parser.add_argument("--refine", default="0.5,2", help="factors around the best coarse delta")
    parser.add_argument("--merge", action="store_true",
                        help="add these runs to --out's and keep the best of all")
    args = parser.parse_args()
    coarse = tuple(float(v) for v in args.coarse.split(","))
    refine = tuple(float(v) for v in args.refine.split(","))
    tuning.EXTRA_GRIDS["zo-adam"] = {"beta1": (0.9,), "beta2": (0.996,)}
    task = make_task("cifar10-attack", data_dir=args.data_dir)
    payload = tuning.tune(task, ["zo-sgd", "zo-signsgd", "zo-adam"], instances=args.images,
                          trials=1, steps=args.steps, options=RunOptions(progress=False),
                          coarse=coarse, refine=refine)
    note = (f"delta coarse {list(coarse)} then x{list(refine)} around the best")
    if args.merge:
        payload = merge(json.loads(args.out.read_text()), payload)
        note = f"{payload['protocol_note']}; then {note}"
    else:
        note = (f"reduced CPU tuning (tools/ship/tune_cifar10.py): first {args.images} training "
                f"images, 1 trial, {args.steps} steps, zo-adam betas fixed at (0.9, 0.996) "
                f"from the MNIST tuning; {note}")
    payload["protocol_note"] = note
    write_json(args.out, payload)
    for name, entry in payload["optimizers"].items():
        print(name, entry["hyperparameters"], f"{entry['final_loss_mean']:.4f}")
    print(f"{payload['seconds']:.0f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
