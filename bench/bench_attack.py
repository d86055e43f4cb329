"""Attack speed and memory: the whole attack vs the bare target forward passes.

Usage:
    python bench/bench_attack.py --dataset mnist --images 100 --steps 200 [--device cpu]
    python bench/bench_attack.py --dataset cifar10 --images 10 --steps 200
    python bench/bench_attack.py --dataset mnist --images 100 --steps 200 --optimizer zo-lstm \
        --out bench/results/attack_mnist_cpu_zo_lstm.json

Runs ``--optimizer`` (zo-adam by default; q = 20 for MNIST, 50 for CIFAR-10) on the
first ``--images`` test instances for ``--steps`` steps through the normal harness, then times
bare forward passes of the target on the same number of images, in the same chunks
(``--max-batch``), on a sample of ``--forward-steps`` steps' worth of batches, scaled to all
steps.  Reports ``ratio = attack seconds / bare forward seconds``; ``ratio_inline = attack
seconds / seconds spent inside the target's calls during the attack`` (robust to other load
on the machine, which skews the separately timed forwards); ``overhead_fraction = 1 - inside
/ attack seconds``, everything but the target's forward passes (optimizer, estimator, box
transform, attack loss) as a fraction of the run; and the peak resident memory of this
process (run each configuration in its own process to get its own peak).  Writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path

import torch

from zol2l.experiments.evaluate import evaluate
from zol2l.experiments.options import RunOptions
from zol2l.experiments.units import UNIT_THREADS, torch_threads
from zol2l.tasks import make_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("mnist", "cifar10"), default="mnist")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--optimizer", default="zo-adam")
    parser.add_argument("--checkpoint", default=None,
                        help="zo-lstm's weights (default: pretrained:TASK)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--max-batch", type=int, default=1024)
    parser.add_argument("--forward-steps", type=int, default=20)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    task = make_task(f"{args.dataset}-attack", data_dir=args.data_dir, max_batch=args.max_batch,
                     device=device)
    q = task.default_q
    ids = task.instance_ids("test")[: args.images]
    inner = task.target
    inside = [0.0]

    def timed_target(images: torch.Tensor) -> torch.Tensor:
        tick = time.perf_counter()
        out = inner(images)
        if device.type == "cuda":
            torch.cuda.synchronize()
        inside[0] += time.perf_counter() - tick
        return out

    task.target = timed_target
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    checkpoint = args.checkpoint or f"pretrained:{task.name}"
    hp = {"q": q, "checkpoint": checkpoint} if args.optimizer.startswith("zo-lstm") \
        else {"q": q}
    kept: dict = {}
    # one work unit (all images in one batch), run in this process through the harness
    payload = evaluate(task, {args.optimizer: hp}, ids=ids, trials=1, steps=args.steps,
                       options=RunOptions(progress=False, instance_chunk=None), keep=kept,
                       tuned=None)  # the optimizers' own defaults, as the committed runs
    _, problem = kept[args.optimizer]
    if device.type == "cuda":
        torch.cuda.synchronize()
    attack_seconds = time.perf_counter() - start
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    task.target = inner
    # bare forward passes: one step's candidate images, chunked like the oracle does
    per_step = len(ids) * (q + 1)
    batch = problem.to_image(problem.x0[:, None, :].expand(-1, q + 1, -1)).reshape(per_step, -1)
    with torch.no_grad(), torch_threads(UNIT_THREADS):  # as the attack's unit ran
        for part in batch.split(args.max_batch):  # warm-up
            task.target(part.reshape(-1, *problem.shape))
        tick = time.perf_counter()
        for _ in range(args.forward_steps):
            for part in batch.split(args.max_batch):
                task.target(part.reshape(-1, *problem.shape))
        if device.type == "cuda":
            torch.cuda.synchronize()
        forward_step = (time.perf_counter() - tick) / args.forward_steps
    forward_seconds = forward_step * args.steps
    payload = {
        "dataset": args.dataset, "images": len(ids), "trials": 1, "steps": args.steps, "q": q,
        "optimizer": args.optimizer, "hyperparameters": hp, "max_batch": args.max_batch,
        "device": str(device),
        "machine": torch.cuda.get_device_name() if device.type == "cuda" else
        (platform.processor() or platform.machine()), "threads": UNIT_THREADS,
        "attack_seconds": attack_seconds, "bare_forward_seconds": forward_seconds,
        "ratio": attack_seconds / forward_seconds,
        "seconds_inside_target_calls": inside[0],
        "ratio_inline": attack_seconds / inside[0],
        "overhead_fraction": 1.0 - inside[0] / attack_seconds,
        "images_per_second": per_step * args.steps / attack_seconds,
        "peak_rss_mib": peak_rss, "rss_before_attack_mib": rss_before,
        "success_rate": payload["optimizers"][args.optimizer]["success_rate"],
    }
    print(json.dumps(payload, indent=1))
    out = args.out or Path(f"bench/results/attack_{args.dataset}_{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1, allow_nan=False) + "\n")


if __name__ == "__main__":
    main()
