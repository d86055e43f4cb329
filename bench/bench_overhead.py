"""Per-step overhead of every hand-designed optimizer: step time minus the objective's time.

Usage: python bench/bench_overhead.py [--steps 300] [--out bench/results/overhead.json]

The objective is a cheap batched sum of squares; its own time is measured inside the oracle
call and subtracted.  Reported for d = 100, 784, 3072 with q = 20, one problem (B = 1).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from zol2l.loop import run
from zol2l.optimizers import available, make
from zol2l.tasks.base import Problem

HAND_DESIGNED = [n for n in available() if not n.startswith("zo-lstm")]


class TimedSphere(Problem):
    """``f(x) = |x|^2`` that accumulates the time spent in its own evaluation."""

    def __init__(self, dim: int, dtype: torch.dtype) -> None:
        self.x0 = torch.ones(1, dim, dtype=dtype)
        self.ids, self.trials, self.spent = [0], [0], 0.0

    def objective(self, points: torch.Tensor) -> torch.Tensor:
        tick = time.perf_counter()
        out = points.square().sum(-1)
        self.spent += time.perf_counter() - tick
        return out


def measure(name: str, dim: int, steps: int, dtype: torch.dtype) -> dict[str, float]:
    """Median-of-3 per-step overhead (ms) of ``name`` at dimension ``dim``."""
    samples = []
    for rep in range(3):
        problem = TimedSphere(dim, dtype)
        result = run(make(name, q=20, lr=1e-4), problem, steps, seed=rep)
        total = sum(result.step_seconds)
        samples.append((total - problem.spent) / steps * 1e3)
    samples.sort()
    return {"overhead_ms": samples[1], "min_ms": samples[0], "max_ms": samples[2]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    parser.add_argument("--out", type=Path, default=Path("bench/results/overhead.json"))
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    table = {}
    for dim in (100, 784, 3072):
        for name in HAND_DESIGNED:
            table[f"{name}@d={dim}"] = stats = measure(name, dim, args.steps, dtype)
            print(f"{name:>14} d={dim:<5} overhead {stats['overhead_ms']:.3f} ms/step")
    payload = {"machine": platform.processor() or platform.machine(), "threads":
               torch.get_num_threads(), "dtype": args.dtype, "q": 20, "steps": args.steps,
               "results": table}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1, allow_nan=False) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
