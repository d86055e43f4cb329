"""``zol2l reproduce``: run an experiment of the paper (or ``all``) and write its figures."""

from __future__ import annotations

import argparse
from typing import Any

from zol2l.experiments.reproduce.base import EXPERIMENTS, available_experiments


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``zol2l reproduce``."""
    order = available_experiments()
    names = ", ".join(f"{name} ({EXPERIMENTS[name].paper.split('. ')[0]})" for name in order)
    p.description = ("Reproduce an experiment of Ruan et al. (2020). Writes OUT/results.json "
                    "and PNG figures; 'all' writes every experiment into OUT/NAME/. "
                     f"Experiments: {names}.")
    p.add_argument("name", choices=[*order, "all"], metavar="NAME",
                   help=f"one of: {', '.join(order)}, all")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--quick", action="store_true",
                   help="small version of each experiment (seconds to minutes)")
    p.add_argument("--retrain", action="store_true",
                   help="tune the baselines and meta-train ZO-LSTM first (default: the "
                        "shipped tuned hyperparameters and pretrained optimizers)")
    p.add_argument("--data-dir", default=None,
                   help="folder with mnist.npz / cifar10.npz (default: $ZOL2L_DATA_DIR)")
    p.add_argument("--device", default="cpu", help="torch device of the attack tasks")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--images", type=int, default=None,
                   help="cap on attack test images (default: the paper's 100)")
    p.add_argument("--cifar-images", type=int, default=None,
                   help="separate cap on CIFAR-10 images (default: --images)")
    p.add_argument("--instances", type=int, default=None,
                   help="cap on binary-classification test instances (default: 100)")
    p.add_argument("--trials", type=int, default=None,
                   help="cap on trials per instance (default: the paper's 10)")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="where the evaluation units run (default: in this process)")
    p.add_argument("--ray-address", default=None, help="address of a running Ray cluster")
    p.add_argument("--resume", action="store_true",
                   help="reuse the finished work units and trainings found under --out")
    p.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true",
                   help="no progress bars")
    p.set_defaults(func=cmd_reproduce)


def cmd_reproduce(args: argparse.Namespace) -> int:
    """Run ``zol2l reproduce``."""
    from zol2l.experiments.options import RunOptions
    from zol2l.experiments.reproduce.suite import reproduce

    backend: Any = None
    if args.backend != "local" or args.ray_address:
        from zol2l.experiments.backends import make_backend

        backend = make_backend(args.backend, address=args.ray_address)
    try:
        options = RunOptions(backend=backend, resume=args.resume, progress=not args.quiet,
                             seed=args.seed)
        payload = reproduce(args.name, args.out, quick=args.quick, retrain=args.retrain,
                            data_dir=args.data_dir, device=args.device, options=options,
                            images=args.images, cifar_images=args.cifar_images,
                            instances=args.instances, trials=args.trials)
    finally:
        if backend is not None:
            backend.close()  # shuts down a Ray instance this command started
    runs = payload["experiments"] if args.name == "all" else {args.name: payload}
    for name, entry in runs.items():
        print(f"{name}: {entry['seconds']:.1f} s")
        for check in entry["checks"]:
            verdict = {True: "holds", False: "does NOT hold", None: "n/a"}[check["holds"]]
            print(f"  [{verdict}] {check['claim']}: {check['evidence']}")
    print(f"wrote {args.out}/results.json")
    return 0
