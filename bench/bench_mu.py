"""Choose the default smoothing mu per dtype by measurement.

For smooth test functions (a random quadratic, the binary-classification loss, a tanh
network) and random unit-variance Gaussian directions ``u``, measure the relative error of the
forward-difference directional derivative ``(f(x + mu u) - f(x)) / mu`` against autograd's
``u . grad f(x)``, over a grid of ``mu``, in float32 and float64.  Truncation error grows like
``mu``, cancellation error like ``eps / mu``; the best ``mu`` is reported per dtype.

Usage: python bench/bench_mu.py [--out bench/results/mu.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

MUS = [10.0**-k for k in range(1, 10)]


def functions(d: int, g: torch.Generator) -> dict:
    a = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5
    feats = torch.randn(2000, d, generator=g, dtype=torch.float64)
    labels = (feats @ torch.randn(d, generator=g, dtype=torch.float64) > 0).double()
    w = torch.randn(d, 32, generator=g, dtype=torch.float64) / d**0.5
    return {
        "quadratic": lambda x: 0.5 * (x @ a.to(x.dtype)).square().sum(-1),
        "binary-classification": lambda x: (
            labels.to(x.dtype) - torch.sigmoid(x @ feats.T.to(x.dtype))
        ).square().mean(-1),
        "tanh-net": lambda x: torch.tanh(x @ w.to(x.dtype)).sum(-1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("bench/results/mu.json"))
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    funs = functions(args.dim, g)
    x64 = torch.randn(64, args.dim, generator=g, dtype=torch.float64) / args.dim**0.5
    u64 = torch.randn(64, args.dim, generator=g, dtype=torch.float64)
    report: dict = {}
    for dtype in (torch.float32, torch.float64):
        rows = {}
        for fname, f in funs.items():
            xg = x64.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(f(xg).sum(), xg)
            exact = (grad * u64).sum(-1)
            errs = {}
            for mu in MUS:
                x, u = x64.to(dtype), u64.to(dtype)
                fd = (f(x + mu * u) - f(x)).double() / mu
                errs[mu] = float(((fd - exact).abs() / exact.abs().clamp_min(1e-12)).median())
            rows[fname] = errs
        geo = {mu: float(torch.tensor([rows[f][mu] for f in rows]).log().mean().exp())
               for mu in MUS}
        best = min(geo, key=lambda m: geo[m])
        report[str(dtype).replace("torch.", "")] = {"errors": rows, "geomean": geo, "best": best}
        print(f"{dtype}: best mu {best:g}; median relative error by mu: "
              + ", ".join(f"{m:g}:{e:.1e}" for m, e in geo.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
