"""Wall time of the MNIST attack protocol on the local backend, on Ray with 1 and 2 workers, and
on a two-node Ray cluster simulated on loopback; scheduling overhead per work unit.

Usage:
    ZOL2L_DATA_DIR=/path/to/data python bench/bench_ray.py            # the full benchmark
    ZOL2L_DATA_DIR=/path/to/data python bench/bench_ray.py --quick    # a smoke test

Protocol: ``--images`` test images x ``--trials`` trials x zo-sgd, zo-signsgd, zo-adam,
``--steps`` steps, q = 20, work units of ``--instance-chunk`` images (all trials), one torch
thread per unit.  Setups:

* ``local``: the local backend (units one after another in this process);
* ``ray1`` / ``ray2``: a private local Ray instance with 1 / 2 CPUs (= workers);
* ``cluster``: ``ray start --head --num-cpus 1`` plus a second ``ray start --address
  127.0.0.1:PORT --num-cpus 1`` on this machine (two nodes of one worker each, started and
  stopped here by their process ids), then ``--ray-address 127.0.0.1:PORT``.

Scheduling overhead per unit, two ways: ``(wall - sum of the units' compute seconds) / units``
for ``ray1`` (one worker: everything that is not computing is overhead, Ray start excluded,
first-task worker start included), and ``noop``: 40 trivial units (1 step of a 2-D problem)
on a warm Ray instance, (Ray wall - local wall) / units.  Every setup's ``results.json``
numbers are compared with the local one.  Writes ``bench/results/ray.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from zol2l.experiments.backends import RayBackend, make_backend
from zol2l.experiments.evaluate import evaluate
from zol2l.experiments.options import RunOptions
from zol2l.tasks import make_task

OUT = Path(__file__).resolve().parent / "results" / "ray.json"
OPTIMIZERS = ("zo-sgd", "zo-signsgd", "zo-adam")


def numbers(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload without timings and backend bookkeeping."""
    out = {k: v for k, v in payload.items()
           if k not in ("seconds", "wall_seconds", "backend")}
    out["optimizers"] = {n: {k: v for k, v in b.items() if "seconds" not in k}
                         for n, b in payload["optimizers"].items()}
    return json.loads(json.dumps(out))


def attack_run(task: Any, backend: Any, args: argparse.Namespace) -> dict[str, Any]:
    """One run of the protocol; returns the payload and its wall time."""
    tick = time.perf_counter()
    payload = evaluate(task, {n: {"q": 20} for n in args.optimizers}, instances=args.images,
                       trials=args.trials, steps=args.steps,
                       options=RunOptions(backend=backend, instance_chunk=args.instance_chunk,
                                          progress=False))
    payload["wall_seconds"] = time.perf_counter() - tick
    return payload


def noop_overhead(backend: Any, units: int = 40) -> dict[str, float]:
    """Per-unit cost of ``units`` trivial units on ``backend`` minus the local backend."""
    task = make_task("binary-classification", dim=2, n=8, batch=4)
    how = RunOptions(backend=backend, instance_chunk=1, progress=False)
    opts = {"zo-sgd": {"q": 1}}
    evaluate(task, opts, ids=[0, 0], steps=1, options=how)  # warm workers
    tick = time.perf_counter()
    evaluate(task, opts, ids=[0] * units, steps=1, options=how)
    remote = time.perf_counter() - tick
    tick = time.perf_counter()
    evaluate(task, opts, ids=[0] * units, steps=1, options=replace(how, backend="local"))
    local = time.perf_counter() - tick
    return {"units": units, "ray_wall_seconds": remote, "local_wall_seconds": local,
            "overhead_per_unit_seconds": (remote - local) / units}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_cluster(port: int, temp_dir: str) -> list[subprocess.Popen]:
    """A head node and a second node on loopback, one CPU each (``ray start --block``: the
    processes stop their Ray daemons when terminated)."""
    common = ["--num-cpus", "1", "--block", "--disable-usage-stats"]
    head = subprocess.Popen(["ray", "start", "--head", "--node-ip-address", "127.0.0.1",
                             "--port", str(port), "--include-dashboard", "false",
                             "--temp-dir", temp_dir, *common],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [head]
    deadline = time.time() + 60
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.5)
    time.sleep(2)
    procs.append(subprocess.Popen(["ray", "start", "--address", f"127.0.0.1:{port}",
                                   "--node-ip-address", "127.0.0.1", *common],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


def stop_cluster(procs: list[subprocess.Popen]) -> None:
    """Terminate the ``ray start --block`` processes started here (by their ids)."""
    for proc in reversed(procs):
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_for_nodes(ray: Any, count: int, timeout: float = 60.0) -> int:
    deadline = time.time() + timeout
    alive = 0
    while time.time() < deadline:
        alive = sum(1 for n in ray.nodes() if n.get("Alive"))
        if alive >= count:
            break
        time.sleep(0.5)
    return alive


def summary(payload: dict[str, Any], load: tuple[float, ...]) -> dict[str, Any]:
    info = payload["backend"]
    return {"wall_seconds": payload["wall_seconds"],
            "compute_seconds": info["compute_seconds"], "cpu_seconds": info["cpu_seconds"],
            "parallelism": info["cpu_seconds"] / payload["wall_seconds"],
            "units": info["units"],
            "retries": info["retries"], "workers": info.get("workers"),
            "nodes": info.get("nodes"), "units_per_node": info["units_per_node"],
            "loadavg_at_start": list(load)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--instance-chunk", type=int, default=10)
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS))
    parser.add_argument("--setups", default="local,ray1,ray2,cluster")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--quick", action="store_true", help="2 images, 1 trial, 5 steps")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.optimizers = [n.strip() for n in args.optimizers.split(",") if n.strip()]
    if args.quick:
        args.images, args.trials, args.steps, args.instance_chunk = 2, 1, 5, 1
    setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    task = make_task("mnist-attack", data_dir=args.data_dir)
    task.instance_ids("test")  # select the instances once, before the task is shipped
    import ray

    report: dict[str, Any] = {
        "protocol": {"task": "mnist-attack", "images": args.images, "trials": args.trials,
                     "optimizers": args.optimizers, "steps": args.steps, "q": 20,
                     "instance_chunk": args.instance_chunk, "threads_per_unit": 1},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "torch": torch.__version__, "ray": ray.__version__,
                    "python": sys.version.split()[0]},
        "loadavg_at_start": list(os.getloadavg()), "setups": {},
    }
    reference: dict[str, Any] | None = None

    def record(name: str, payload: dict[str, Any], load: tuple[float, ...]) -> None:
        nonlocal reference
        entry = summary(payload, load)
        if reference is None:
            reference = numbers(payload)
        entry["identical_to_first_setup"] = numbers(payload) == reference
        report["setups"][name] = entry
        print(f"{name}: {entry['wall_seconds']:.1f} s wall, {entry['units']} units, "
              f"nodes {entry['units_per_node']}, identical {entry['identical_to_first_setup']}",
              flush=True)

    for name in setups:
        load = os.getloadavg()
        if name == "local":
            record(name, attack_run(task, "local", args), load)
        elif name in ("ray1", "ray2"):
            with make_backend("ray", num_cpus=1 if name == "ray1" else 2) as backend:
                payload = attack_run(task, backend, args)
                record(name, payload, load)
                if name == "ray1":
                    entry = report["setups"][name]
                    entry["overhead_per_unit_seconds"] = (
                        entry["wall_seconds"] - entry["compute_seconds"]) / entry["units"]
                else:
                    report["noop_overhead"] = noop_overhead(backend)
        elif name == "cluster":
            port = free_port()
            with tempfile.TemporaryDirectory(prefix="zol2l-ray-") as temp_dir:
                procs = start_cluster(port, temp_dir)
                try:
                    with RayBackend(f"127.0.0.1:{port}") as backend:
                        alive = wait_for_nodes(ray, 2)
                        payload = attack_run(task, backend, args)
                        record(name, payload, load)
                        report["setups"][name]["nodes_alive"] = alive
                        report["setups"][name]["address"] = f"127.0.0.1:{port}"
                finally:
                    stop_cluster(procs)
        else:
            raise SystemExit(f"unknown setup {name!r}")
    runs = report["setups"]
    if "ray1" in runs and "ray2" in runs:
        report["ratio_ray2_over_ray1"] = runs["ray2"]["wall_seconds"] / runs["ray1"]["wall_seconds"]
    if not args.quick:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
        print(f"wrote {args.out}")
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}, indent=1))


if __name__ == "__main__":
    main()
