"""The ``zol2l`` command line: it parses arguments and calls the library."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zol2l.cli_options import (
    add_hyperparameter_options,
    add_quiet,
    grid_options,
    parse_grid,
    parse_ids,
    tuned_choice,
    user_hyperparameters,
)
from zol2l.experiments.backends import RayUnavailableError
from zol2l.optimizers import available, get_class
from zol2l.tasks import available_tasks, make_task


def _optimizer_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        get_class(name)  # raises a clear error for unknown names
    if not names:
        raise ValueError("--optimizers needs at least one optimizer name")
    return names


def _task(args: argparse.Namespace) -> Any:
    options: dict[str, Any] = {}
    if args.task == "binary-classification":
        for key, flag in (("dim", "dim"), ("batch", "minibatch")):
            if getattr(args, flag, None) is not None:
                options[key] = getattr(args, flag)
    else:
        options = {"target": args.target, "outputs": args.outputs, "data_dir": args.data_dir,
                   "c": args.c, "p": args.p, "box": args.box, "max_batch": args.max_batch,
                   "device": args.device}
    return make_task(args.task, **options)


def _add_attack_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None,
                   help="folder with mnist.npz / cifar10.npz or the official files "
                        "(default: $ZOL2L_DATA_DIR)")
    p.add_argument("--target", default=None,
                   help="torch.export (.pt2) or TorchScript file of the classifier "
                        "(default: the shipped target). A .pt2 whose weights or constants "
                        "are pickles is refused; a TorchScript file is a program that "
                        "runs when loaded: use only files you trust")
    p.add_argument("--outputs", choices=("logits", "log_probs"), default="logits",
                   help="what --target returns")
    p.add_argument("--c", type=float, default=None,
                   help="distortion weight (default 0.1 MNIST, 0.25 CIFAR-10)")
    p.add_argument("--p", type=int, choices=(1, 2), default=1, help="distortion norm")
    p.add_argument("--box", choices=("tanh", "clamp"), default="tanh",
                   help="x = (tanh(w) + 1) / 2, or x = clip(x0 + delta, 0, 1)")
    p.add_argument("--max-batch", type=int, default=1024,
                   help="images per target forward pass (memory cap)")
    p.add_argument("--device", default="cpu",
                   help="torch device of the target and the attack (e.g. cuda)")


def _add_backend_options(p: argparse.ArgumentParser) -> None:
    from zol2l.experiments.units import DEFAULT_INSTANCE_CHUNK

    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="where the work units run: in this process, or as Ray tasks "
                        "(pip install -e '.[distributed]')")
    p.add_argument("--ray-address", default=None,
                   help="HOST:PORT of a running Ray cluster's head node (with --backend ray; "
                        "default: start a local Ray instance)")
    p.add_argument("--resume", action="store_true",
                   help="reuse the finished work units kept in OUT/units")
    p.add_argument("--instance-chunk", type=int, default=DEFAULT_INSTANCE_CHUNK,
                   help="instances per work unit (default: %(default)s)")
    p.add_argument("--trial-chunk", type=int, default=None,
                   help="trials per work unit (default: all trials)")


def _backend(args: argparse.Namespace) -> Any:
    from zol2l.experiments.backends import make_backend

    return make_backend(args.backend, address=args.ray_address)


def _unit_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"resume": args.resume, "instance_chunk": args.instance_chunk,
            "trial_chunk": args.trial_chunk}


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default="binary-classification", choices=available_tasks(),
                   help="task family (default: %(default)s)")
    p.add_argument("--optimizers", default="zo-sgd,zo-signsgd,zo-adam,zo-szvrg,zo-guided-es",
                   help=f"comma-separated optimizer names; available: {', '.join(available())}")
    p.add_argument("--instances", type=int, default=None,
                   help="use the first N instances of the split (default: all)")
    p.add_argument("--ids", type=parse_ids, default=None,
                   help="explicit instance ids (dataset indices for attacks), e.g. 3,17,42")
    p.add_argument("--trials", type=int, default=1, help="random trials per instance")
    p.add_argument("--steps", type=int, default=None,
                   help="iterations per run (default: the task's, 500 or 200 for attacks)")
    p.add_argument("--q", type=int, default=None,
                   help="query directions per estimate (default: the task's, 20 or 50)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--dim", type=int, default=None, help="binary-classification: dimension d")
    p.add_argument("--minibatch", type=int, default=None,
                   help="binary-classification: minibatch size b")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    add_quiet(p)
    add_hyperparameter_options(p)
    _add_attack_options(p)
    _add_backend_options(p)


def _defaults(args: argparse.Namespace, task: Any) -> None:
    args.q_source = "task default" if args.q is None else "user"
    args.q = task.default_q if args.q is None else args.q
    args.steps = task.default_steps if args.steps is None else args.steps


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The evaluate()/attack() keywords of --set/--checkpoint/--hparams/--ids/--q."""
    tuned, source = tuned_choice(args.hparams)
    return {"tuned": tuned, "tuned_source": source, "q_source": args.q_source,
            "ids": args.ids}


def _user(args: argparse.Namespace, names: list[str]) -> dict[str, dict[str, Any]]:
    return user_hyperparameters([*args.sets, *args.checkpoints], names)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``zol2l evaluate``."""
    from zol2l.experiments.evaluate import evaluate, write_json
    from zol2l.experiments.plots import plot_loss

    names = _optimizer_list(args.optimizers)
    task = _task(args)
    _defaults(args, task)
    with _backend(args) as backend:
        payload = evaluate(
            task, _user(args, names), split=args.split,
            instances=args.instances, trials=args.trials, steps=args.steps, q=args.q,
            seed=args.seed, progress=not args.quiet, backend=backend,
            workdir=args.out / "units", **_settings(args), **_unit_options(args),
        )
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "results.json", payload)
    plot_loss(payload, args.out / "loss.png", log=args.log)
    for name, block in payload["optimizers"].items():
        print(f"{name:>14}: final loss {block['final_loss_mean']:.6g} "
              f"+- {block['final_loss_std']:.3g}  ({block['total_queries']} queries per run)")
    print(f"wrote {args.out / 'results.json'} and {args.out / 'loss.png'}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    """``zol2l tune``."""
    from zol2l.experiments.evaluate import write_json
    from zol2l.experiments.tune import tune

    task = _task(args)
    _defaults(args, task)
    names = _optimizer_list(args.optimizers)
    with _backend(args) as backend:
        payload = tune(
            task, names, instances=args.instances, ids=args.ids,
            trials=args.trials, steps=args.steps, q=args.q, seed=args.seed,
            fixed=user_hyperparameters([*args.sets, *args.checkpoints], names),
            start=tuned_choice(args.hparams)[0], progress=not args.quiet, backend=backend,
            workdir=args.out / "units",
            **grid_options(args.grid), **_unit_options(args),
        )
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "hparams.json", payload)
    for name, entry in payload["optimizers"].items():
        print(f"{name:>14}: {entry['hyperparameters']}  "
              f"(train final loss {entry['final_loss_mean']:.6g})")
    print(f"wrote {args.out / 'hparams.json'} (use: zol2l evaluate --hparams ...)")
    return 0


def cmd_attack(args: argparse.Namespace) -> int:
    """``zol2l attack``."""
    from zol2l.experiments.attack import attack

    args.task = f"{args.dataset}-attack"
    names = _optimizer_list(args.optimizers)
    task = _task(args)
    _defaults(args, task)
    noise = {"problem_options": {"init_noise": args.init_noise}} if args.init_noise else {}
    with _backend(args) as backend:
        payload = attack(task, _user(args, names), args.out,
                         images=args.images if args.images is not None
                         else (None if args.ids else 10),
                         trials=args.trials, steps=args.steps, q=args.q,
                         seed=args.seed, split=args.split, progress=not args.quiet,
                         backend=backend, **_settings(args), **noise,
                         **_unit_options(args))
    for name, block in payload["optimizers"].items():
        iters = block["iters_to_success_mean"]
        print(f"{name:>14}: success {block['success_rate']:.0%}, final loss "
              f"{block['final_loss_mean']:.4g}, iterations to success "
              f"{'-' if iters is None else f'{iters:.1f}'}")
    print(f"wrote results.json, loss.png, examples.png, adversarial.npz to {args.out}")
    return 0


COMMAND_MODULES = ["zol2l.train_target", "zol2l.meta.cli", "zol2l.experiments.reproduce.cli",
                   "zol2l.benchmark.cli"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``zol2l``."""
    from zol2l.errors import OneLineParser

    parser = OneLineParser(
        prog="zol2l",
        description="Learned zeroth-order optimization: ZO estimators, hand-designed and "
                    "learned ZO optimizers, black-box tasks.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="on an error, print the traceback too (accepted anywhere)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("evaluate", help="compare optimizers on test instances of a task")
    _add_common(p)
    p.add_argument("--split", default="test", choices=("train", "test"))
    p.add_argument("--log", action="store_true", help="log-scale loss axis")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("attack", help="black-box adversarial attack on MNIST or CIFAR-10")
    p.add_argument("--dataset", choices=("mnist", "cifar10"), default="mnist")
    p.add_argument("--optimizers", "--optimizer", dest="optimizers", default="zo-adam",
                   help="optimizer names or NAME@LABEL labels, comma-separated; available: "
                        f"{', '.join(available())}")
    p.add_argument("--images", type=int, default=None,
                   help="number of images to attack (default 10, or all of --ids)")
    p.add_argument("--ids", type=parse_ids, default=None,
                   help="dataset indices of the images to attack, e.g. 3,17,42")
    p.add_argument("--init-noise", type=float, default=0.0, metavar="SIGMA",
                   help="start from SIGMA * N(0, 1) instead of exactly x0 (the authors: 1e-4)")
    p.add_argument("--trials", type=int, default=1, help="random trials per image")
    p.add_argument("--steps", type=int, default=None, help="iterations (default 200)")
    p.add_argument("--q", type=int, default=None,
                   help="query directions (default 20 MNIST, 50 CIFAR-10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="test", choices=("train", "test"))
    p.add_argument("--out", required=True, type=Path, help="output directory")
    add_quiet(p)
    add_hyperparameter_options(p)
    _add_attack_options(p)
    _add_backend_options(p)
    p.set_defaults(func=cmd_attack)

    p = sub.add_parser("tune", help="tune learning rates (alpha for ZO-LSTM) on training "
                                    "instances")
    _add_common(p)
    p.add_argument("--grid", action="append", type=parse_grid, default=[],
                   metavar="KEY=v1,v2,...",
                   help="override a grid: coarse=..., refine=... or NAME.PARAM=... "
                        "(e.g. zo-adam.beta1=0.9,0.99); repeatable")
    p.set_defaults(func=cmd_tune)

    for module in _command_modules():
        module.add_parser(sub)
    return parser


def _command_modules() -> list[Any]:
    """Modules that register their own subcommand with ``add_parser(subparsers)``."""
    import importlib

    return [importlib.import_module(name) for name in COMMAND_MODULES]


#: commands whose --out is a folder that one run at a time may write (zol2l.lock)
LOCKED_COMMANDS = ("evaluate", "attack", "tune", "meta-train", "reproduce")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``zol2l`` console script.  A mistake is reported as one line
    ``zol2l: error: ...`` with exit code 2 (``--debug``, anywhere on the line: the traceback
    too); see :mod:`zol2l.errors`."""
    from zol2l.errors import run_command
    from zol2l.lock import out_lock
    from zol2l.validation import check_args

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed on one line
        return int(exc.code or 0)

    def command() -> int:
        check_args(args)
        if args.command not in LOCKED_COMMANDS:
            return int(args.func(args) or 0)
        with out_lock(args.out, command=" ".join(["zol2l", *argv])):
            return int(args.func(args) or 0)

    return run_command(command, debug=debug, user_errors=(RayUnavailableError,))


if __name__ == "__main__":
    raise SystemExit(main())
