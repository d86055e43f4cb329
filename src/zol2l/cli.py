"""The ``zol2l`` command line: it parses arguments and calls the library."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zol2l.cli_options import (
    add_hyperparameter_options,
    add_quiet,
    grid_options,
    parse_grid,
    parse_ids,
    tuned_choice,
    user_hyperparameters,
)

if TYPE_CHECKING:
    from zol2l.experiments.options import RunOptions


def _optimizer_list(text: str) -> list[str]:
    from zol2l.optimizers import get_class

    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        get_class(name)  # raises a clear error for unknown names
    if not names:
        raise ValueError("--optimizers needs at least one optimizer name")
    return names


def _task(args: argparse.Namespace) -> Any:
    from zol2l.cli_tasks import task_options
    from zol2l.tasks import make_task, task_class

    return make_task(args.task, **task_options(args, task_class(args.task)))


def _add_backend_options(p: argparse.ArgumentParser) -> None:
    from zol2l.experiments.options import DEFAULT_INSTANCE_CHUNK

    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="where the work units run: in this process, or as Ray tasks "
                        "(pip install -e '.[distributed]')")
    p.add_argument("--ray-address", default=None,
                   help="HOST:PORT of a running Ray cluster's head node (with --backend ray; "
                        "default: start a local Ray instance)")
    p.add_argument("--resume", action="store_true",
                   help="reuse the finished work units kept in OUT/units")
    p.add_argument("--instance-chunk", type=int, default=DEFAULT_INSTANCE_CHUNK,
                   help="instances per work unit")
    p.add_argument("--trial-chunk", type=int, default=None,
                   help="trials per work unit (default: all trials)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    add_quiet(p)


def _backend(args: argparse.Namespace) -> Any:
    from zol2l.experiments.backends import make_backend

    return make_backend(args.backend, address=args.ray_address)


def _run_options(args: argparse.Namespace, backend: Any, units: bool = True) -> RunOptions:
    """How the command runs (``units``: keep the work units in ``OUT/units``)."""
    from zol2l.experiments.options import RunOptions

    return RunOptions(backend=backend, workdir=args.out / "units" if units else None,
                      resume=args.resume, instance_chunk=args.instance_chunk,
                      trial_chunk=args.trial_chunk, progress=not args.quiet, seed=args.seed)


def _per_task(families: Sequence[Any], key: str) -> str:
    """``"the task's: NAME VALUE, ..."`` of a :class:`~zol2l.tasks.base.Protocol` field."""
    return "default: the task's: " + ", ".join(f"{cls.name} {getattr(cls.protocol, key)}"
                                                for cls in families)


def _add_run(p: argparse.ArgumentParser, what: str, optimizers: str,
             families: Sequence[Any]) -> None:
    """The options of evaluate/tune/attack but the task's own: the optimizers, sizes, q,
    hyperparameters, output folder and how the run executes; then the task options of
    ``families``."""
    from zol2l.cli_tasks import add_task_options
    from zol2l.optimizers import available

    p.add_argument("--optimizers", "--optimizer", dest="optimizers", default=optimizers,
                   help="optimizer names or NAME@LABEL labels, comma-separated; available: "
                        f"{', '.join(available())}")
    p.add_argument("--ids", type=parse_ids, default=None,
                   help=f"explicit {what} ids (dataset indices for attacks), e.g. 3,17,42 "
                        "(default: the split's)")
    p.add_argument("--trials", type=int, default=1, help=f"random trials per {what}")
    p.add_argument("--steps", type=int, default=None,
                   help=f"iterations per run ({_per_task(families, 'steps')})")
    p.add_argument("--q", type=int, default=None,
                   help="query directions per estimate (eq. 1) of every optimizer that "
                        f"--set gives none ({_per_task(families, 'q')})")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    add_hyperparameter_options(p)
    _add_backend_options(p)
    add_task_options(p, families)


def _add_common(p: argparse.ArgumentParser) -> None:
    from zol2l.optimizers import baselines
    from zol2l.tasks import DEFAULT_TASK, available_tasks, task_class

    p.add_argument("--task", default=DEFAULT_TASK, choices=available_tasks(),
                   help="task family")
    p.add_argument("--instances", type=int, default=None,
                   help="use the first N instances of the split (default: all)")
    _add_run(p, "instance", ",".join(baselines()),
             [task_class(name) for name in available_tasks()])


def _user(args: argparse.Namespace, names: list[str]) -> dict[str, dict[str, Any]]:
    """The hyperparameters of --set/--checkpoint, and --q for every label without its own."""
    table = user_hyperparameters([*args.sets, *args.checkpoints], names)
    if args.q is not None:
        for hp in table.values():
            hp.setdefault("q", args.q)
    return table


def _print_blocks(payload: dict[str, Any], attack: bool = False) -> None:
    for name, block in payload["optimizers"].items():
        if attack:
            iters = block["iters_to_success_mean"]
            print(f"{name:>14}: success {block['success_rate']:.0%}, final loss "
                  f"{block['final_loss_mean']:.4g}, iterations to success "
                  f"{'-' if iters is None else f'{iters:.1f}'}")
        else:
            print(f"{name:>14}: final loss {block['final_loss_mean']:.6g} +- "
                  f"{block['final_loss_std']:.3g}  ({block['total_queries']} queries per run)")


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``zol2l evaluate``."""
    from zol2l.experiments.evaluate import evaluate, write_json
    from zol2l.experiments.plots import plot_loss

    names = _optimizer_list(args.optimizers)
    task = _task(args)
    with _backend(args) as backend:
        payload = evaluate(task, _user(args, names), split=args.split,
                           instances=args.instances, ids=args.ids, trials=args.trials,
                           steps=args.steps, tuned=tuned_choice(args.hparams),
                           options=_run_options(args, backend))
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "results.json", payload)
    plot_loss(payload, args.out / "loss.png", log=args.log)
    _print_blocks(payload)
    print(f"wrote {args.out / 'results.json'} and {args.out / 'loss.png'}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    """``zol2l tune``."""
    from zol2l.experiments.evaluate import write_json
    from zol2l.experiments.tune import tune

    task = _task(args)
    names = _optimizer_list(args.optimizers)
    with _backend(args) as backend:
        payload = tune(task, names, instances=args.instances, ids=args.ids,
                       trials=args.trials, steps=args.steps, fixed=_user(args, names),
                       start=tuned_choice(args.hparams), options=_run_options(args, backend),
                       **grid_options(args.grid))
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "hparams.json", payload)
    for name, entry in payload["optimizers"].items():
        print(f"{name:>14}: {entry['hyperparameters']}  "
              f"(train final loss {entry['final_loss_mean']:.6g})")
    print(f"wrote {args.out / 'hparams.json'} (use: zol2l evaluate --hparams ...)")
    return 0


def _attack_families() -> dict[str, Any]:
    """The registered attack families by ``dataset``."""
    from zol2l.tasks import available_tasks, task_class
    from zol2l.tasks.attack import AttackFamily

    classes = [task_class(name) for name in available_tasks()]
    return {cls.dataset: cls for cls in classes if issubclass(cls, AttackFamily)}


def cmd_attack(args: argparse.Namespace) -> int:
    """``zol2l attack``."""
    from zol2l.experiments.attack import attack

    args.task = _attack_families()[args.dataset].name
    names = _optimizer_list(args.optimizers)
    task = _task(args)
    noise = {"problem_options": {"init_noise": args.init_noise}} if args.init_noise else {}
    with _backend(args) as backend:
        payload = attack(task, _user(args, names), args.out,
                         images=args.images if args.images is not None
                         else (None if args.ids else 10),
                         trials=args.trials, steps=args.steps, split=args.split,
                         ids=args.ids, tuned=tuned_choice(args.hparams),
                         options=_run_options(args, backend), **noise)
    _print_blocks(payload, attack=True)
    print(f"wrote results.json, loss.png, examples.png, adversarial.npz to {args.out}")
    return 0


def _evaluate_parser(p: argparse.ArgumentParser) -> None:
    _add_common(p)
    p.add_argument("--split", default="test", choices=("train", "test"),
                   help="the instances evaluated")
    p.add_argument("--log", action="store_true", help="log-scale loss axis")
    p.set_defaults(func=cmd_evaluate)


def _attack_parser(p: argparse.ArgumentParser) -> None:
    families = _attack_families()
    p.add_argument("--dataset", choices=sorted(families), default="mnist",
                   help="the attacked classifier's dataset")
    p.add_argument("--images", type=int, default=None,
                   help="number of images to attack (default: 10, or all of --ids)")
    p.add_argument("--init-noise", type=float, default=0.0, metavar="SIGMA",
                   help="start from SIGMA * N(0, 1) instead of exactly x0 (the authors: 1e-4)")
    p.add_argument("--split", default="test", choices=("train", "test"),
                   help="the images attacked")
    _add_run(p, "image", "zo-adam", list(families.values()))
    p.set_defaults(func=cmd_attack)


def _tune_parser(p: argparse.ArgumentParser) -> None:
    _add_common(p)
    p.add_argument("--grid", action="append", type=parse_grid, default=[],
                   metavar="KEY=v1,v2,...",
                   help="override a grid: coarse=..., refine=... or NAME.PARAM=... "
                        "(e.g. zo-adam.beta1=0.9,0.99); repeatable (default: the paper's "
                        "grids)")
    p.set_defaults(func=cmd_tune)


#: every subcommand: its one-line help and the function (``module:name``) adding its arguments
COMMANDS: dict[str, tuple[str, str]] = {
    "evaluate": ("compare optimizers on test instances of a task",
                 "zol2l.cli:_evaluate_parser"),
    "attack": ("black-box adversarial attack on MNIST or CIFAR-10", "zol2l.cli:_attack_parser"),
    "tune": ("tune learning rates (alpha for ZO-LSTM) on training instances",
             "zol2l.cli:_tune_parser"),
    "train-target": ("train the MNIST / CIFAR-10 target classifier",
                     "zol2l.train_target:add_arguments"),
    "meta-train": ("meta-train ZO-LSTM (stage 'update', then stage 'query')",
                   "zol2l.meta.cli:add_arguments"),
    "reproduce": ("reproduce an experiment of the paper (figures + results.json)",
                  "zol2l.experiments.reproduce.cli:add_arguments"),
    "benchmark": ("held-out suite: the general ZO-LSTM against baselines and peers",
                  "zol2l.benchmark.cli:add_arguments"),
}


class DefaultsFormatter(argparse.HelpFormatter):
    """Help that states every option's default: ``(default: ...)`` is added to an option
    whose help does not say it already."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text.lower() or not action.option_strings or action.required
                or action.default is argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


def build_parser(only: str | None = None, *, all_commands: bool = True
                 ) -> argparse.ArgumentParser:
    """The argument parser of ``zol2l``.  With ``all_commands=False`` only the subcommand
    ``only`` gets its arguments (the others: their name and help), so that ``zol2l --help``
    and ``zol2l NAME`` import only what they need."""
    import importlib

    from zol2l.errors import OneLineParser

    parser = OneLineParser(
        prog="zol2l", formatter_class=DefaultsFormatter,
        description="Learned zeroth-order optimization: ZO estimators, hand-designed and "
                    "learned ZO optimizers, black-box tasks.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="on an error, print the traceback too (accepted anywhere)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (text, where) in COMMANDS.items():
        p = sub.add_parser(name, help=text, description=text,
                           formatter_class=DefaultsFormatter)
        if all_commands or name == only:
            module, func = where.split(":")
            getattr(importlib.import_module(module), func)(p)
    return parser


def _command(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line (the first word that is one)."""
    return next((a for a in argv if a in COMMANDS), None)


#: commands whose --out is a folder that one run at a time may write (zol2l.lock)
LOCKED_COMMANDS = ("evaluate", "attack", "tune", "meta-train", "reproduce")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``zol2l`` console script.  A mistake is reported as one line
    ``zol2l: error: ...`` with exit code 2 (``--debug``, anywhere on the line: the traceback
    too); see :mod:`zol2l.errors`."""
    from zol2l.errors import run_command

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        args = build_parser(_command(argv), all_commands=False).parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed on one line
        return int(exc.code or 0)

    def command() -> int:
        from zol2l.lock import out_lock
        from zol2l.validation import check_args

        check_args(args)
        names = getattr(args, "optimizers", None) or getattr(args, "optimizer", None)
        hparams = getattr(args, "hparams", None)
        if hparams is not None and isinstance(names, str) and Path(hparams).is_file():
            from zol2l.experiments.defaults import warn_unselected_entries

            warn_unselected_entries(hparams, names)
        if args.command not in LOCKED_COMMANDS:
            return int(args.func(args) or 0)
        with out_lock(args.out, command=" ".join(["zol2l", *argv])):
            return int(args.func(args) or 0)

    from zol2l.experiments.backends import RayUnavailableError

    return run_command(command, debug=debug, user_errors=(RayUnavailableError,))


if __name__ == "__main__":
    raise SystemExit(main())
