"""Meta-training benchmarks and the measurements behind ZO-LSTM's design choices.

Usage::

    OMP_NUM_THREADS=1 python bench/bench_meta.py timing   # -> bench/results/meta.json
    python bench/bench_meta.py timing --task mnist-attack --runs 3 --batches 1,4 \
        --out bench/results/meta_mnist.json
    OMP_NUM_THREADS=1 python bench/bench_meta.py compare  # -> bench/results/meta_compare.json
    OMP_NUM_THREADS=1 python bench/bench_meta.py decisions  # -> meta_decisions.json (~10 min)
    python bench/bench_meta.py schedule --task mnist-attack --batch 1 --val-every 5 \
        --query-grad linearized   # -> meta_schedule.json: the released schedule, for real

``timing``: seconds per meta-iteration (one truncation of ``unroll`` steps: forward, backward,
Adam) of each stage on binary classification (d = 100, q = 20, 8 instances per run), seconds
per run, peak RSS, and the learned optimizers' per-step overhead against a step's time
(``zo-lstm`` vs ``zo-sgd``, evaluation mode, no graph).  With ``--task mnist-attack`` it times
the MNIST stages instead (200 steps, unrolled 20 at a time; runs and one validation pass timed
apart; stage 2 with ``--query-grad linearized`` and ``exact``; ``--batches`` instances per
run, 1 being the released code's one image per run) and projects the released code's
schedule, 20 epochs x 10 runs for stage 1 and 40 x 10 for stage 2, validating every 1 or 5
epochs.

``compare``: short stage-1 meta-trainings with each input preprocessing (``scale``,
``none`` = the authors' raw inputs, ``logsign``) and each meta-loss (``eq4``,
``telescoping``) on binary classification and on quadratics; reports the validation loss
(eq. 4-weighted, held-out training instances) before and after, and the seconds.
``decisions``: the truncation length / Adam learning rate / preprocessing-seed study on
binary classification behind the shipped optimizer's settings (3 epochs x 10 runs each).
Run it single-threaded: with two processes on two cores, OpenMP oversubscription slowed
small-op runs down up to 70x in our measurements.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from zol2l.loop import run
from zol2l.meta import MetaConfig, MetaTrainer
from zol2l.optimizers import make
from zol2l.tasks import make_task

RESULTS = Path(__file__).resolve().parent / "results"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _trainer(out: Path, **kw: Any) -> MetaTrainer:
    return MetaTrainer(MetaConfig(out=str(out), **kw), progress=False)


def step_overhead(checkpoint: str) -> dict[str, Any]:
    """Per-step time of the learned optimizers vs ZO-SGD on binary classification."""
    task = make_task("binary-classification")
    ids = task.instance_ids("test")
    out: dict[str, Any] = {}
    for name, hp in (("zo-sgd", {}), ("zo-lstm", {"checkpoint": checkpoint}),
                     ("zo-lstm-no-query", {"checkpoint": checkpoint.replace("query", "update")})):
        samples = []
        for rep in range(3):
            problem = task.problem(ids, seed=rep)
            res = run(make(name, q=20, **hp), problem, 100, seed=rep)
            samples.append(1e3 * sum(res.step_seconds) / res.steps)
        samples.sort()
        out[name] = {"step_ms": samples[1], "min_ms": samples[0], "max_ms": samples[2]}
    base = out["zo-sgd"]["step_ms"]
    for name in ("zo-lstm", "zo-lstm-no-query"):
        out[name]["overhead_ms_vs_zo_sgd"] = out[name]["step_ms"] - base
        out[name]["relative_to_zo_sgd_step"] = out[name]["step_ms"] / base
    return {"task": "binary-classification (10 test instances, d=100, q=20, b=64)",
            "results": out}


def time_runs(tmp: Path, stage: str, runs: int, task: str, batch: int,
              query_grad: str = "exact") -> dict[str, Any]:
    """Seconds of ``runs`` meta-training runs of ``stage`` (each: ``steps`` optimizee steps
    unrolled ``unroll`` at a time, one meta-iteration = one truncation's forward, backward and
    Adam step) and of one validation pass, timed apart; stage ``query`` starts from the
    shipped UpdateRNN of ``task``."""
    init = f"pretrained:{task}" if stage == "query" else None
    trainer = _trainer(tmp / f"{stage}-{batch}-{query_grad}", task=task, stage=stage,
                       init=init, batch=batch, query_grad=query_grad, epochs=1,
                       runs_per_epoch=runs)
    per_run = []
    for r in range(runs):
        ids = trainer.train_ids[r * batch: (r + 1) * batch]
        problem = trainer.task.problem(ids, trials=1, seed=r)
        tick = time.perf_counter()
        trainer.train_run(problem, torch.Generator().manual_seed(r))
        per_run.append(time.perf_counter() - tick)
    tick = time.perf_counter()
    trainer.validate()
    validation = time.perf_counter() - tick
    iters = -(-trainer.cfg.steps // trainer.cfg.unroll)
    mean = sum(per_run) / runs
    return {"stage": stage, "batch": batch, "query_grad": query_grad, "runs": runs,
            "seconds_per_run": per_run, "seconds_per_run_mean": mean,
            "meta_iterations_per_run": iters, "seconds_per_meta_iteration": mean / iters,
            "seconds_per_validation": validation, "validation_instances": len(trainer.val_ids)}


def released_schedule(update: dict[str, Any], query: dict[str, Any], val_every: int
                      ) -> dict[str, Any]:
    """Project the released code's schedule (20 epochs x 10 runs, then 40 x 10) with a
    validation every ``val_every`` epochs (and one before training) per stage."""
    out: dict[str, Any] = {"val_every": val_every}
    for name, block, epochs in (("update", update, 20), ("query", query, 40)):
        vals = 1 + epochs // val_every
        out[name] = {"runs": epochs * 10, "validations": vals,
                     "seconds": epochs * 10 * block["seconds_per_run_mean"]
                     + vals * block["seconds_per_validation"]}
    out["total_seconds"] = out["update"]["seconds"] + out["query"]["seconds"]
    return out


def timing(args: argparse.Namespace) -> dict[str, Any]:
    if args.task != "binary-classification":
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for batch in args.batches:
                rows.append(time_runs(Path(tmp), "update", args.runs, args.task, batch))
                for query_grad in ("linearized", "exact"):
                    rows.append(time_runs(Path(tmp), "query", args.runs, args.task, batch,
                                          query_grad))
                    print(json.dumps(rows[-1]), file=sys.stderr)
        schedules = []
        for batch in args.batches:
            update = next(r for r in rows if r["batch"] == batch and r["stage"] == "update")
            for query in (r for r in rows if r["batch"] == batch and r["stage"] == "query"):
                for val_every in (1, 5):
                    schedules.append({"batch": batch, "query_grad": query["query_grad"],
                                      **released_schedule(update, query, val_every)})
        return {"task": args.task, "steps": 200, "unroll": 20, "threads":
                torch.get_num_threads(), "timings": rows, "released_schedule": schedules,
                "peak_rss_mb": _rss_mb()}
    with tempfile.TemporaryDirectory() as tmp:
        stage1 = time_runs(Path(tmp), "update", args.runs, args.task, args.batch)
        stage2 = time_runs(Path(tmp), "query", args.runs, args.task, args.batch)
    return {"task": "binary-classification", "steps": 200, "unroll": 20, "q": 20,
            "stages": {"update": stage1, "query": stage2}, "peak_rss_mb": _rss_mb(),
            "step_overhead": step_overhead("pretrained:binary-classification")}


def compare(args: argparse.Namespace) -> dict[str, Any]:
    settings = {
        "binary-classification": {"epochs": args.epochs, "runs_per_epoch": 10},
        "quadratic": {"epochs": args.epochs, "runs_per_epoch": 10, "steps": 100},
    }
    table: dict[str, Any] = {}
    for task, kw in settings.items():
        for preprocess in ("scale", "none", "logsign"):
            for meta_loss in ("eq4", "telescoping"):
                if meta_loss == "telescoping" and preprocess != "scale":
                    continue
                with tempfile.TemporaryDirectory() as tmp:
                    trainer = _trainer(Path(tmp), task=task, stage="update",
                                       preprocess=preprocess, meta_loss=meta_loss,
                                       seed=args.seed, **kw)
                    tick = time.perf_counter()
                    summary = trainer.fit()
                vals = [r["val_loss"] for r in trainer.log if "val_loss" in r]
                finals = [r["val_final_loss"] for r in trainer.log if "val_final_loss" in r]
                key = f"{task}/{preprocess}/{meta_loss}"
                table[key] = {"val_loss_initial": vals[0], "val_loss_per_epoch": vals[1:],
                              "val_loss_best": summary["best_validation_loss"],
                              "val_final_loss_per_epoch": finals[1:],
                              "seconds": time.perf_counter() - tick}
                print(f"{key:>44}: val {vals[0]:.4g} -> best {summary['best_validation_loss']:.4g}"
                      f" (final-step loss {finals[-1]:.4g})", file=sys.stderr)
    return {"stage": "update", "epochs": args.epochs, "runs_per_epoch": 10, "batch": 8,
            "seed": args.seed, "results": table}


DECISIONS: dict[str, dict[str, Any]] = {
    "s200/u20/lr1e-3 (paper)": {"unroll": 20, "lr": 1e-3},
    "s200/u20/lr1e-2": {"unroll": 20, "lr": 1e-2},
    "s200/u50/lr1e-2": {"unroll": 50, "lr": 1e-2},
    "s200/u100/lr3e-3": {"unroll": 100, "lr": 3e-3},
    "s200/u200/lr3e-3 (full BPTT)": {"unroll": 200, "lr": 3e-3},
    "s200/u200/lr3e-3/telescoping": {"unroll": 200, "lr": 3e-3, "meta_loss": "telescoping"},
    "s200/u100/lr3e-3/none": {"unroll": 100, "lr": 3e-3, "preprocess": "none"},
    "s200/u100/lr3e-3/seed1": {"unroll": 100, "lr": 3e-3, "seed": 1},
    "s200/u100/lr3e-3/none/seed1": {"unroll": 100, "lr": 3e-3, "preprocess": "none",
                                    "seed": 1},
    "s500/u100/lr1e-3": {"steps": 500, "unroll": 100, "lr": 1e-3},
    "s500/u250/lr1e-3": {"steps": 500, "unroll": 250, "lr": 1e-3},
}


def decisions(args: argparse.Namespace) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for key, kw in DECISIONS.items():
        with tempfile.TemporaryDirectory() as tmp:
            trainer = _trainer(Path(tmp), task="binary-classification", stage="update",
                               epochs=3, runs_per_epoch=10, **kw)
            tick = time.perf_counter()
            trainer.fit()
        table[key] = {
            "val_loss_per_epoch": [r["val_loss"] for r in trainer.log if "val_loss" in r],
            "val_final_loss_per_epoch": [r["val_final_loss"] for r in trainer.log
                                         if "val_final_loss" in r],
            "seconds": time.perf_counter() - tick}
        print(f"{key:>36}: {table[key]['val_loss_per_epoch']}", file=sys.stderr)
    return {"stage": "update", "epochs": 3, "runs_per_epoch": 10, "batch": 8,
            "note": "index 0 of each list: before training", "results": table}


def schedule(args: argparse.Namespace) -> dict[str, Any]:
    """Run the released code's schedule for real: stage 1 for 20 epochs x 10 runs, then
    stage 2 for 40 x 10 from its checkpoint (200 steps, unrolled 20), ``--batch`` instances per
    run, validating every ``--val-every`` epochs; wall seconds of each stage and peak RSS."""
    out = Path(args.workdir or tempfile.mkdtemp())
    stages: dict[str, Any] = {}
    init = None
    for stage, epochs in (("update", 20), ("query", 40)):
        trainer = _trainer(out / stage, task=args.task, stage=stage, init=init,
                           batch=args.batch, epochs=epochs, runs_per_epoch=10,
                           val_every=args.val_every, query_grad=args.query_grad,
                           seed=args.seed)
        tick = time.perf_counter()
        summary = trainer.fit()
        stages[stage] = {"seconds": time.perf_counter() - tick, "runs": summary["runs"],
                         "meta_steps": summary["meta_steps"],
                         "best_validation_loss": summary["best_validation_loss"],
                         "command": trainer.cfg.command()}
        init = summary["checkpoint"]
        print(json.dumps({stage: stages[stage]}), file=sys.stderr)
    return {"task": args.task, "batch": args.batch, "val_every": args.val_every,
            "query_grad": args.query_grad, "stages": stages,
            "total_seconds": sum(b["seconds"] for b in stages.values()),
            "peak_rss_mb": _rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("timing", "compare", "decisions", "schedule"))
    parser.add_argument("--runs", type=int, default=10, help="timing: runs per stage")
    parser.add_argument("--task", default="binary-classification", help="timing: task family")
    parser.add_argument("--batch", type=int, default=8, help="timing: instances per run")
    parser.add_argument("--batches", type=lambda t: [int(v) for v in t.split(",")],
                        default=[1, 4], help="timing, attack tasks: instances per run")
    parser.add_argument("--epochs", type=int, default=5, help="compare: epochs per variant")
    parser.add_argument("--val-every", type=int, default=5, help="schedule: epochs")
    parser.add_argument("--query-grad", default="linearized", help="schedule: stage 2")
    parser.add_argument("--workdir", default=None, help="schedule: keep the checkpoints")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    payload = {"timing": timing, "compare": compare, "decisions": decisions,
               "schedule": schedule}[args.mode](args)
    payload.update({"machine": platform.machine(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__})
    out = args.out or RESULTS / {"timing": "meta.json", "compare": "meta_compare.json",
                                 "decisions": "meta_decisions.json",
                                 "schedule": "meta_schedule.json"}[args.mode]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1, allow_nan=False) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
