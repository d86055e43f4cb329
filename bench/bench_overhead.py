"""Per-step overhead of every hand-designed optimizer: step time minus the objective's time.

Usage: python bench/bench_overhead.py [--steps 300] [--out bench/results/overhead.json]
       python bench/bench_overhead.py --asktell [--out bench/results/asktell_overhead.json]
       python bench/bench_overhead.py --parts [--out bench/results/asktell_parts.json]

The objective is a cheap batched sum of squares; its own time is measured inside the oracle
call and subtracted.  Reported for d = 100, 784, 3072 with q = 20, one problem (B = 1).

``--asktell`` compares :class:`zol2l.AskTell` with :func:`zol2l.minimize` on the same seeded
runs (same vectorized objective, evaluated by the caller for AskTell): the extra CPU time
per step of AskTell, relative to minimize's own per-step overhead (its CPU time minus the
objective's): the median paired difference over 40 back-to-back pairs, one torch thread.

``--parts`` times, in microseconds per call (one torch thread), the pieces AskTell's design
chose between: a ``torch.no_grad()`` context, the direct grad-mode switch AskTell makes, and
one tensor view of a step's points (``x[0]``; ``minimize``'s path reshapes twice per step).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import zol2l
from zol2l.loop import run
from zol2l.optimizers import baselines, make
from zol2l.tasks.base import Problem

HAND_DESIGNED = baselines()


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


def asktell_overhead(name: str, dim: int, steps: int, repeats: int = 40) -> dict[str, float]:
    """Per-step overhead (CPU time of this process minus the objective's, ms: less disturbed
    than wall time on a shared machine) of minimize and of AskTell, and AskTell's extra: the
    median of the paired differences of ``repeats`` back-to-back pairs, relative to
    minimize's median overhead."""
    spent = [0.0]

    def sphere(x: torch.Tensor) -> torch.Tensor:
        tick = time.process_time()
        out = x.square().sum(-1)
        spent[0] += time.process_time() - tick
        return out

    x0 = torch.ones(dim, dtype=torch.float64)
    hp = {} if name.startswith("zo-lstm") else {"lr": 1e-4}  # the UpdateRNN takes no lr

    def via_minimize(rep: int) -> float:
        zol2l.minimize(sphere, x0, method=name, steps=steps, seed=rep, vectorized=True, **hp)
        return 0.0

    def via_asktell(rep: int) -> float:
        opt = zol2l.AskTell(name, x0, seed=rep, steps=steps, **hp)
        while opt.stop_reason is None:
            opt.tell(sphere(opt.ask()))
        return 0.0

    mins, asks, objs = [], [], []
    for rep in range(repeats):  # ABBA order: paired differences cancel the machine's drift
        order = (via_minimize, via_asktell) if rep % 2 == 0 else (via_asktell, via_minimize)
        for fn in order:
            spent[0] = 0.0
            tick = time.process_time()
            fn(rep)
            cpu = (time.process_time() - tick - spent[0]) / steps
            (mins if fn is via_minimize else asks).append(cpu)
            objs.append(spent[0] / steps)
    diffs = sorted(a - m for a, m in zip(asks, mins, strict=True))
    med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    return {"minimize_overhead_ms": med(mins) * 1e3, "asktell_overhead_ms": med(asks) * 1e3,
            "objective_ms": med(objs) * 1e3, "pairs": repeats,
            "asktell_extra_ms": med(diffs) * 1e3,
            "asktell_extra_vs_overhead": med(diffs) / med(mins)}


def main_asktell(args: argparse.Namespace) -> None:
    """The AskTell-vs-minimize table."""
    torch.set_num_threads(1)
    table = {}
    for dim in (100, 784):
        for name in ("zo-sgd", "zo-adam", "zo-lstm"):
            table[f"{name}@d={dim}"] = stats = asktell_overhead(name, dim, args.steps)
            print(f"{name:>10} d={dim:<4} overhead: minimize "
                  f"{stats['minimize_overhead_ms']:.3f} ms/step, AskTell "
                  f"{stats['asktell_overhead_ms']:.3f} ms/step: "
                  f"{stats['asktell_extra_vs_overhead']:+.1%} of minimize's overhead")
    payload = {"machine": platform.processor() or platform.machine(), "threads":
               torch.get_num_threads(), "q": 20, "steps": args.steps, "results": table}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {args.out}")


def main_parts(args: argparse.Namespace) -> None:
    """Microseconds per call of the pieces of a step's hand-over (median of 5 x 100,000)."""
    import timeit

    torch.set_num_threads(1)
    points = torch.ones(1, 21, 100, dtype=torch.float64)
    enabled, set_grad = torch.is_grad_enabled, torch._C._set_grad_enabled

    def context() -> None:
        with torch.no_grad():
            pass

    def direct() -> None:
        mode = enabled()
        set_grad(False)
        set_grad(mode)

    pieces = {"no_grad_context_us": context, "direct_grad_switch_us": direct,
              "tensor_view_us": lambda: points[0]}
    table = {}
    for key, fn in pieces.items():
        runs = sorted(timeit.repeat(fn, number=100_000, repeat=5))
        table[key] = runs[2] / 100_000 * 1e6
        print(f"{key:>24}: {table[key]:.2f} us")
    payload = {"machine": platform.processor() or platform.machine(), "threads":
               torch.get_num_threads(), "results": table}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--asktell", action="store_true",
                        help="compare AskTell with minimize instead")
    parser.add_argument("--parts", action="store_true",
                        help="time the pieces of AskTell's hand-over instead")
    args = parser.parse_args()
    if args.parts:
        args.out = args.out or Path("bench/results/asktell_parts.json")
        main_parts(args)
        return
    if args.asktell:
        args.out = args.out or Path("bench/results/asktell_overhead.json")
        main_asktell(args)
        return
    args.out = args.out or Path("bench/results/overhead.json")
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
