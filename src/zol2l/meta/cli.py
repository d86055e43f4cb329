"""``zol2l meta-train``: meta-train one stage of ZO-LSTM on a task family."""

from __future__ import annotations

import argparse
import json
from typing import Any

from zol2l.cli_options import add_quiet, parse_ids
from zol2l.learned.rnn import SCHEMES
from zol2l.meta.config import GRADS, QUERY_GRADS, STAGES, MetaConfig
from zol2l.meta.objective import META_LOSSES


def _option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--task-option needs KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def _scales(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--input-scale needs numbers, got {text!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``zol2l meta-train``."""
    from zol2l.cli_tasks import add_task_options
    from zol2l.tasks import available_tasks, task_class

    p.description = ("Meta-train one stage of the learned ZO optimizer by truncated BPTT "
                    "(Ruan et al. 2020, sec. 3.3).  Writes OUT/{stage}.safetensors (+ .json), "
                    "OUT/log.csv and OUT/trainer_state.pt (for --resume).")
    p.add_argument("--task", required=True, choices=available_tasks(), help="task family")
    p.add_argument("--task-option", action="append", type=_option, default=[],
                   metavar="KEY=VALUE",
                   help="task family option (JSON value), repeatable (default: none)")
    add_task_options(p, [task_class(name) for name in available_tasks()])
    p.add_argument("--ids", type=parse_ids, default=None,
                   help="training instance ids (default: the task's train split); the last "
                        "--val-fraction of them is held out")
    p.add_argument("--stage", required=True, choices=STAGES)
    p.add_argument("--init", default=None,
                   help="stage-1 checkpoint (required for --stage query; warm start otherwise)")
    p.add_argument("--init-alpha", type=float, default=1.0,
                   help="stage update: scale the UpdateRNN's steps by this fixed factor "
                        "(section 4.3 alpha), the warm start's (finetuning on a task that "
                        "needs smaller steps) or a fresh one's")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--grad", choices=GRADS, default="auto",
                   help="optimizee gradients for the meta-loss: autograd, zo (eq. 5) or auto")
    p.add_argument("--query-grad", choices=QUERY_GRADS, default="exact",
                   help="stage query with autograd: back-propagate through every query "
                        "(exact) or through grad f(x) only (linearized: first order, faster)")
    p.add_argument("--meta-loss", choices=META_LOSSES, default="eq4",
                   help="the meta-loss: eq. 4, its telescoping form, or eq. 4 on log losses")
    p.add_argument("--epochs", type=int, default=20, help="training epochs")
    p.add_argument("--runs-per-epoch", type=int, default=10,
                   help="optimizee runs (each on a batch of instances) per epoch")
    p.add_argument("--steps", type=int, default=200, help="optimizee steps per run")
    p.add_argument("--unroll", type=int, default=20, help="steps per truncation")
    p.add_argument("--lr", type=float, default=None,
                   help="Adam learning rate (default 1e-3 update, 5e-3 query)")
    p.add_argument("--batch", type=int, default=8, help="problem instances per run")
    p.add_argument("--q", type=int, default=None, help="query directions (task default)")
    p.add_argument("--mu", type=float, default=None, help="smoothing of eq. 1")
    p.add_argument("--zo-mu", type=float, default=1e-6, help="smoothing of eq. 5")
    p.add_argument("--lam", type=float, default=0.005, help="lambda of eq. 4")
    p.add_argument("--clip", type=float, default=1.0, help="elementwise meta-gradient clamp")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="the last fraction of the training ids held out for validation")
    p.add_argument("--val-every", type=int, default=1, help="validate every N epochs")
    p.add_argument("--val-p-query", type=float, default=0.5,
                   help="the Bernoulli P of the query stage during validation")
    p.add_argument("--preprocess", choices=("scale", "logsign", "none"), default="scale",
                   help="RNN input preprocessing")
    p.add_argument("--input-scale", type=_scales, default=None,
                   help="fixed input scale(s), comma-separated (default: measured)")
    p.add_argument("--forget-bias", type=float, default=None,
                   help="give the trained LSTM a learned forget-gate bias starting at this "
                        "value (default: bias-free, as the authors)")
    p.add_argument("--meta-grad", choices=("bptt", "es"), default="bptt",
                   help="meta-gradients by truncated BPTT (the paper) or by antithetic "
                        "evolution strategies over whole runs (default: %(default)s)")
    p.add_argument("--es-pairs", type=int, default=8,
                   help="ES: antithetic pairs per meta-step (default: %(default)s)")
    p.add_argument("--es-sigma", type=float, default=0.02,
                   help="ES: perturbation std of the weights (default: %(default)s)")
    p.add_argument("--scheme", choices=SCHEMES, default="paper",
                   help="paper: eq. 2 as published; scale-free: the general ZO-LSTM "
                        "(scale-free inputs, adapted step size; use --meta-loss eq4-log)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    add_quiet(p)
    p.set_defaults(func=cmd_meta_train)


def config_from_args(args: argparse.Namespace) -> MetaConfig:
    """The :class:`MetaConfig` of parsed ``meta-train`` arguments."""
    from zol2l.cli_tasks import task_options
    from zol2l.tasks import task_class

    return MetaConfig(
        task=args.task, stage=args.stage, out=str(args.out), init=args.init,
        init_alpha=args.init_alpha,
        task_options=dict(args.task_option) | task_options(args, task_class(args.task)),
        ids=args.ids, grad=args.grad, query_grad=args.query_grad,
        meta_loss=args.meta_loss,
        epochs=args.epochs, runs_per_epoch=args.runs_per_epoch, steps=args.steps,
        unroll=args.unroll, lr=args.lr, batch=args.batch, q=args.q, mu=args.mu,
        zo_mu=args.zo_mu, lam=args.lam, clip=args.clip, val_fraction=args.val_fraction,
        val_every=args.val_every, val_p_query=args.val_p_query, preprocess=args.preprocess,
        input_scale=args.input_scale, forget_bias=args.forget_bias,
        meta_grad=args.meta_grad, es_pairs=args.es_pairs, es_sigma=args.es_sigma,
        scheme=args.scheme,
        seed=args.seed,
    )


def cmd_meta_train(args: argparse.Namespace) -> int:
    """Run ``zol2l meta-train``."""
    from zol2l.meta.trainer import MetaTrainer

    trainer = MetaTrainer(config_from_args(args), progress=not args.quiet, resume=args.resume)
    summary = trainer.fit()
    print(f"meta-train {args.stage}: {summary['runs']} runs, {summary['meta_steps']} meta-steps "
          f"in {summary['training_seconds']:.1f} s; validation loss best "
          f"{summary['best_validation_loss']:.6g}, last {summary['last_validation_loss']:.6g}")
    print(f"wrote {summary['checkpoint']} (+ .json), {trainer.files.log_path}")
    return 0
