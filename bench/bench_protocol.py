"""Wall time of the full MNIST protocol on this machine: meta-train both ZO-LSTM stages with
the shipped recipes, then attack 100 test images x 10 trials with the 7 optimizers of
Figures 2 and 4a (ZO-SGD, ZO-signSGD, ZO-ADAM, ZO-LSTM, ZO-LSTM-no-query,
ZO-LSTM-no-update, ZO-LSTM-GuidedES; 200 steps, q = 20).

Usage:
    python bench/bench_protocol.py --out bench/results/protocol_mnist.json            # all of it
    python bench/bench_protocol.py --fraction 0.1 --out bench/results/protocol_mnist_10pct.json

Schedule: one pool of workers (a local Ray instance on every core) runs the work units of
the three hand-designed baselines, which do not need the new optimizer, from the start,
while this process meta-trains (one torch thread); the units of the four learned variants
join the same pool when the checkpoint is ready.  Without Ray everything runs one after
the other in this process.

``--fraction f`` runs that share of the meta-training runs of each stage and of the
(image, trial) runs of the evaluation, and projects the full protocol from it: a stage's
time is ``runs x seconds per run + validations x seconds per validation``, an evaluation's
is its fixed cost (start-up, merging) plus its work units' compute time scaled to the full
runs; the projection of the whole is the pool's total work (meta-training included) divided
among the cores, or the meta-training plus the learned variants' share when that is longer.
The JSON holds what was measured, the projection and how it was made (``projected``: false
at f = 1, where the times are the run's own).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from zol2l.experiments.backends import make_backend
from zol2l.experiments.evaluate import evaluate
from zol2l.experiments.options import RunOptions
from zol2l.experiments.reproduce.retrain import recipe
from zol2l.meta.config import MetaConfig
from zol2l.meta.trainer import MetaTrainer
from zol2l.tasks import make_task

TASK = "mnist-attack"
HAND = ("zo-sgd", "zo-signsgd", "zo-adam")
LEARNED = ("zo-lstm", "zo-lstm-no-query", "zo-lstm-no-update", "zo-lstm-guided-es")


def sizes(fraction: float) -> tuple[int, int]:
    """``(images, trials)`` of the evaluation at ``fraction`` (whole units of 10 images)."""
    images = 10 * min(10, max(1, round(fraction * 10)))
    return images, min(10, max(1, round(fraction * 1000 / images)))


def meta_stage(stage: str, out: Path, init: str | None, fraction: float, data_dir: str | None,
               seed: int) -> tuple[str, dict[str, float]]:
    """Run ``fraction`` of one stage's runs; returns its checkpoint and the timing."""
    settings = recipe(TASK, stage)
    settings.update(out=str(out / stage), stage=stage, seed=seed)
    if stage == "query":
        settings["init"] = init
    if data_dir:
        settings["task_options"] = {**settings.get("task_options", {}), "data_dir": data_dir}
    config = MetaConfig(**settings)
    total = config.epochs * config.runs_per_epoch
    runs = total if fraction >= 1 else max(1, round(fraction * total))
    trainer = MetaTrainer(config, progress=False)
    tick = time.perf_counter()
    checkpoint = str(trainer.fit(stop_after_runs=runs)["checkpoint"])
    seconds = time.perf_counter() - tick
    tick = time.perf_counter()
    trainer.validate()
    val = time.perf_counter() - tick
    validations = 1 + config.epochs // config.val_every
    ran_validations = 1 + (runs // config.runs_per_epoch) // config.val_every
    per_run = max(seconds - ran_validations * val, 0.0) / runs
    return checkpoint, {
        "runs": runs, "runs_full": total, "seconds": seconds, "seconds_per_run": per_run,
        "seconds_per_validation": val, "validations_full": validations,
        "projected_seconds": seconds if runs == total else total * per_run + validations * val}


def attack(names: tuple[str, ...], checkpoint: str | None, fraction: float,
           data_dir: str | None, runner: Any, workdir: Path, seed: int) -> dict[str, Any]:
    """Evaluate ``names`` on the test images with ``runner``; the timing and the final
    losses."""
    images, trials = sizes(fraction)
    task = make_task(TASK, **({"data_dir": data_dir} if data_dir else {}))
    table = {name: ({"checkpoint": checkpoint} if checkpoint else {}) for name in names}
    tick = time.perf_counter()
    payload = evaluate(task, table, instances=images, trials=trials,
                       options=RunOptions(backend=runner, workdir=workdir, progress=False,
                                          seed=seed))
    seconds = time.perf_counter() - tick
    info = payload["backend"]
    workers = int(info.get("workers", 1))
    compute = float(info["compute_seconds"])
    scale = 1000 / (images * trials)
    fixed = max(seconds - compute / workers, 0.0)
    return {"optimizers": list(names), "images": images, "trials": trials,
            "runs": images * trials, "runs_full": 1000, "seconds": seconds,
            "compute_seconds": compute, "workers": workers, "backend": info["name"],
            "projected_seconds": seconds if scale == 1 else fixed + compute * scale / workers,
            "projected_compute_seconds": compute * scale, "fixed_seconds": fixed,
            "final_loss_mean": {n: b["final_loss_mean"] for n, b in
                                payload["optimizers"].items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fraction", type=float, default=1.0,
                        help="share of the protocol to run (the rest is projected)")
    parser.add_argument("--data-dir", default=None, help="default: $ZOL2L_DATA_DIR")
    parser.add_argument("--backend", choices=("local", "ray"), default=None,
                        help="the pool of the evaluations (default: ray when installed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None, help="default: a temporary folder")
    parser.add_argument("--out", type=Path, default=Path("bench/results/protocol_mnist.json"))
    args = parser.parse_args()
    if not 0 < args.fraction <= 1:
        parser.error(f"--fraction must lie in (0, 1], got {args.fraction}")
    if args.backend is None:
        try:
            import ray  # noqa: F401
            args.backend = "ray"
        except ImportError:
            args.backend = "local"
    start = time.perf_counter()
    cores = multiprocessing.cpu_count()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(1) as side:
        work = Path(args.workdir or tmp)
        pool = make_backend(args.backend)
        # a second handle on the same Ray instance: each evaluation ships its own context
        second = make_backend(args.backend) if args.backend == "ray" else pool
        with pool, second:
            common = (args.fraction, args.data_dir)
            if args.backend == "ray":
                hand_job = side.submit(attack, HAND, None, *common, pool, work / "units-hand",
                                       args.seed)
            tick = time.perf_counter()
            update, t_update = meta_stage("update", work, None, args.fraction, args.data_dir,
                                          args.seed)
            query, t_query = meta_stage("query", work, update, args.fraction, args.data_dir,
                                        args.seed)
            t_meta = time.perf_counter() - tick
            print(f"meta-training: {t_update['runs']} + {t_query['runs']} runs in "
                  f"{t_meta:.0f} s")
            learned = attack(LEARNED, query, *common, second, work / "units-learned",
                             args.seed)
            hand = hand_job.result() if args.backend == "ray" else \
                attack(HAND, None, *common, pool, work / "units-hand", args.seed)
        print(f"baselines: {hand['runs']} runs x 3 in {hand['seconds']:.0f} s; learned "
              f"variants: {learned['runs']} runs x 4 in {learned['seconds']:.0f} s")
    meta_full = t_update["projected_seconds"] + t_query["projected_seconds"]
    workers = cores if args.backend == "ray" else 1
    evals = hand["projected_compute_seconds"] + learned["projected_compute_seconds"]
    fixed = hand["fixed_seconds"] + learned["fixed_seconds"]
    total = time.perf_counter() - start if args.fraction >= 1 else fixed + max(
        (meta_full + evals) / workers if workers > 1 else meta_full + evals,
        meta_full + learned["projected_compute_seconds"] / workers)
    result = {"task": TASK, "fraction": args.fraction, "projected": args.fraction < 1,
              "machine": platform.processor() or platform.machine(),
              "cpus": multiprocessing.cpu_count(), "torch": torch.__version__,
              "seconds": time.perf_counter() - start,
              "meta_update": t_update, "meta_query": t_query, "baselines": hand,
              "learned": learned, "full_protocol_seconds": total,
              "full_protocol_hours": total / 3600}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
    word = "projected" if args.fraction < 1 else "measured"
    print(f"full protocol ({word}): {total / 3600:.2f} h; wrote {args.out}")


if __name__ == "__main__":
    main()
