"""How far a ZO-LSTM's QueryRNN departs from standard Gaussian sampling.

Usage:
    python bench/query_spread.py pretrained:mnist-attack PATH/query.safetensors ...
    python bench/query_spread.py --task binary-classification pretrained:binary-classification

Runs each checkpoint's ``zo-lstm`` with the QueryRNN always on (``P = 1``) on the last 3
TRAINING instances of ``--task`` (default: the MNIST attack's images) for 100 steps and
prints the range of the per-step normalized std and its spread: the standard deviation across
coordinates (pixels) of the time-averaged std (0 for an identity QueryRNN).  The attacks need
``ZOL2L_DATA_DIR``.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from zol2l.loop import run
from zol2l.optimizers import make
from zol2l.tasks import make_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--task", default="mnist-attack",
                        help="task family whose last 3 train instances are used "
                             "(default: mnist-attack)")
    args = parser.parse_args()
    task = make_task(args.task)
    ids = task.instance_ids("train")[-3:]
    for spec in args.checkpoints:
        stds: list[torch.Tensor] = []

        def keep(t: int, out: Any, state: Any, stds: list[torch.Tensor] = stds) -> None:
            stds.append(out.extras["std"])

        run(make("zo-lstm", checkpoint=spec, p_query=1.0, q=task.default_q),
            task.problem(ids, seed=0), args.steps, seed=0, callback=keep)
        series = torch.stack(stds)  # [T, B, d]
        spread = float(series.mean(0).std(dim=1).mean())
        print(f"{spec}: per-step std in [{float(series.min()):.3f}, {float(series.max()):.3f}], "
              f"spread across coordinates {spread:.4f}")


if __name__ == "__main__":
    main()
