"""Forward-pass throughput of the shipped attack targets against the core's GEMM figure.

Usage: python bench/bench_forward.py [--threads 1] [--batch 2100] [--seconds 2]
                                     [--out bench/results/forward.json]

One run measures, on ``--threads`` threads and in float32:

* the GEMM figure: GFLOP/s of a 2048 x 2048 x 2048 matrix product (best of 5);
* for each shipped target (MNIST, CIFAR-10, inference copies: BatchNorm folded,
  channels-last), GFLOP/s of the forward pass over ``--batch`` images (the batch of one
  attack step on 100 images at q = 20) when the batch is fed in sub-batches of 2100 (one
  call), 1024 (the ``max_batch`` memory cap), and the attack's CPU compute chunk
  (:data:`zol2l.tasks.attack.CPU_CHUNK` when it exists) down to 16;
* the ratio of each to the GEMM figure.

FLOPs are counted from the layers (2 x multiply-adds of every convolution and linear layer);
elementwise layers are not counted.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from torch import nn

from zol2l.targets import _SPECS, load_pretrained_target


def model_flops(model: nn.Module, shape: tuple[int, ...]) -> float:
    """FLOPs per image of ``model`` (convolutions and linear layers) at input ``shape``."""
    total = [0.0]

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total[0] += 2.0 * module.in_channels * k * out[0].numel() / module.groups
        elif isinstance(module, nn.Linear):
            total[0] += 2.0 * module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.inference_mode():
        model(torch.rand(1, *shape))
    for h in handles:
        h.remove()
    return total[0]


def gemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best-of-``repeats`` GFLOP/s of an ``n^3`` float32 matrix product."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        tick = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - tick)
    return 2.0 * n ** 3 / best / 1e9


def forward_seconds(model: nn.Module, images: torch.Tensor, chunk: int, seconds: float) -> float:
    """Best time of one pass over ``images`` fed in sub-batches of ``chunk``."""
    best = float("inf")
    with torch.inference_mode():
        for part in images.split(chunk):
            model(part)
        stop = time.perf_counter() + seconds
        while time.perf_counter() < stop:
            tick = time.perf_counter()
            for part in images.split(chunk):
                model(part)
            best = min(best, time.perf_counter() - tick)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=2100)
    parser.add_argument("--seconds", type=float, default=2.0, help="timing time per setting")
    parser.add_argument("--out", type=Path, default=Path("bench/results/forward.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    try:
        from zol2l.tasks.attack import CPU_CHUNK
    except ImportError:
        CPU_CHUNK = None  # noqa: N806 - a release without the compute chunk
    chunks = sorted({args.batch, 1024, 256, 64, 32, 16} | ({CPU_CHUNK} if CPU_CHUNK else set()),
                    reverse=True)
    gemm_before = gemm_gflops()
    table: dict[str, dict[str, float]] = {}
    for name, spec in _SPECS.items():
        shape = (spec[0], spec[3], spec[3])
        model = load_pretrained_target(name).for_inference()
        flops = model_flops(model, shape)
        images = torch.rand(args.batch, *shape)
        for chunk in chunks:
            sec = forward_seconds(model, images, chunk, args.seconds)
            rate = flops * args.batch / sec / 1e9
            table[f"{name}@chunk={chunk}"] = {"mflop_per_image": flops / 1e6,
                                              "ms_per_image": sec / args.batch * 1e3,
                                              "gflops": rate}
            print(f"{name:>8} chunk {chunk:>5}: {sec / args.batch * 1e3:.4f} ms/image, "
                  f"{rate:6.1f} GFLOP/s")
    gemm_after = gemm_gflops()
    gemm = max(gemm_before, gemm_after)
    for row in table.values():
        row["vs_gemm"] = row["gflops"] / gemm
    print(f"GEMM 2048^3 float32: {gemm:.1f} GFLOP/s (before {gemm_before:.1f}, after "
          f"{gemm_after:.1f}); forward / GEMM: " + ", ".join(
              f"{k} {v['vs_gemm']:.0%}" for k, v in table.items()))
    payload = {"machine": platform.processor() or platform.machine(),
               "threads": torch.get_num_threads(), "batch": args.batch,
               "gemm_gflops": gemm, "gemm_gflops_before": gemm_before,
               "gemm_gflops_after": gemm_after, "cpu_chunk": CPU_CHUNK, "results": table}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
