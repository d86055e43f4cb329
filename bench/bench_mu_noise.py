"""Default ``mu`` of ``minimize`` for deterministic AND noisy objectives, by measurement.

Usage: python bench/bench_mu_noise.py [--steps 300] [--out bench/results/mu_noise.json]

For each ``mu`` in 1e-8 ... 1e-1 (float64), each objective, each evaluation-noise level and
each optimizer (zo-sgd, zo-adam at their default step sizes, zo-lstm with its default
checkpoint), ``minimize`` runs ``--steps`` steps from ``x0 = 0`` and the NOISE-FREE value of the
returned best point is divided by ``f(x0)``.  Objectives (d = 50): the quadratic
``|x - 1|^2`` (``f(x0) = 50``) and the smooth nonconvex ``sum log(1 + (x - 1)^2)``
(``f(x0) = 50 log 2``).  Noise is additive, ``f(x) + sigma N(0, 1)`` at every query, with
``sigma`` in {0, 1e-6, 1e-3, 1e-1}.  Rule: among the ``mu`` whose WORST ratio over all
settings is below 0.5 (every method at least halves ``f`` at every noise level), the one
with the lowest geometric mean of the ratio.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

import zol2l

MUS = (1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
NOISES = (0.0, 1e-6, 1e-3, 1e-1)
METHODS = ("zo-sgd", "zo-adam", "zo-lstm")
DIM = 50


def objectives() -> dict:
    """Noise-free objectives on batches ``[n, d]``."""
    return {
        "quadratic": lambda x: (x - 1.0).square().sum(-1),
        "log-quadratic": lambda x: torch.log1p((x - 1.0).square()).sum(-1),
    }


def ratio(fn, method: str, mu: float, sigma: float, steps: int, seed: int) -> float:
    """Noise-free ``f(best) / f(x0)`` of one seeded run."""
    gen = torch.Generator().manual_seed(10_000 + seed)

    def noisy(x: torch.Tensor) -> torch.Tensor:
        clean = fn(x)
        if sigma == 0.0:
            return clean
        return clean + sigma * torch.randn(clean.shape, generator=gen, dtype=clean.dtype)

    x0 = torch.zeros(DIM, dtype=torch.float64)
    res = zol2l.minimize(noisy, x0, method=method, steps=steps, mu=mu, seed=seed,
                         vectorized=True, nonfinite="inf")
    return float(fn(res.x[None])[0] / fn(x0[None])[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench/results/mu_noise.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    table: dict = {}
    for mu in MUS:
        rows = {}
        for name, fn in objectives().items():
            for sigma in NOISES:
                for method in METHODS:
                    vals = sorted(ratio(fn, method, mu, sigma, args.steps, s)
                                  for s in range(args.seeds))
                    rows[f"{name}/sigma={sigma:g}/{method}"] = vals[len(vals) // 2]
        logs = [math.log(max(v, 1e-300)) for v in rows.values()]
        table[f"{mu:g}"] = {"ratios": rows, "geomean": math.exp(sum(logs) / len(logs)),
                            "worst": max(rows.values())}
        print(f"mu={mu:g}: geomean {table[f'{mu:g}']['geomean']:.3g} "
              f"worst {table[f'{mu:g}']['worst']:.3g}", flush=True)
    robust = [k for k in table if table[k]["worst"] < 0.5] or list(table)
    best = min(robust, key=lambda k: table[k]["geomean"])
    payload = {"steps": args.steps, "seeds": args.seeds, "dim": DIM, "noises": list(NOISES),
               "methods": list(METHODS), "dtype": "float64", "mu": table, "best": best}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1))
    print(f"best mu {best}; wrote {args.out}")


if __name__ == "__main__":
    main()
