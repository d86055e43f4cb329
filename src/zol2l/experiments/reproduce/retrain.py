"""``zol2l reproduce --retrain``: tune the baselines and meta-train ZO-LSTM before the experiments.

:func:`retrain` is the explicit step: it runs before the experiments, which then resolve its
files through :meth:`Context.baselines` and :meth:`Context.learned` (pure look-ups).

The full versions repeat the recipes of the shipped files: ``zol2l tune`` on the task's
training instances (the paper's grid) and the two meta-training stages with the settings
recorded in ``zol2l/pretrained/TASK-{update,query}.json``.  ``--quick`` shrinks every size so
that the whole path runs in seconds (tests).  Everything goes to ``ROOT/retrained/TASK/``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from zol2l.experiments.evaluate import write_json
from zol2l.experiments.options import RunOptions
from zol2l.experiments.reproduce.base import BASELINES, Context
from zol2l.experiments.tune import COARSE, REFINE, tune
from zol2l.learned.checkpoint import resolve
from zol2l.meta.config import MetaConfig


def _folder(ctx: Context, task: str) -> Path:
    path = ctx.retrained(task)
    path.mkdir(parents=True, exist_ok=True)
    return path


def prerequisite(task_name: str) -> str | None:
    """The task whose shipped optimizer ``task_name``'s recipe starts from (a finetuned
    recipe), else ``None``."""
    init = str(recipe(task_name, "update").get("init") or "")
    return init.split(":", 1)[1] if init.startswith("pretrained:") else None


def retrain(ctx: Context, tuned: Sequence[str], learned: Sequence[str]) -> None:
    """The retrain step: tune the baselines of each task in ``tuned``, then meta-train
    ZO-LSTM on each task in ``learned`` (a finetuned recipe's starting task first), each
    once, into ``ROOT/retrained/TASK``."""
    for task in dict.fromkeys(tuned):
        retune(ctx, task)
    order: list[str] = []

    def need(task: str) -> None:
        if task in order:
            return
        first = prerequisite(task)
        if first is not None:
            need(first)
        order.append(task)

    for task in learned:
        need(task)
    for task in order:
        meta_train(ctx, task)


def retune(ctx: Context, task_name: str) -> Path:
    """Tune the baselines of ``task_name`` on training instances; returns the hparams file."""
    path = _folder(ctx, task_name) / "hparams.json"
    if path.is_file() and ctx.options.resume:
        return path
    task = ctx.task(task_name)
    payload = tune(task, BASELINES, instances=ctx.pick(2, None), trials=1,
                   steps=ctx.pick(10, task.default_steps),
                   options=RunOptions(seed=ctx.options.seed, progress=ctx.options.progress),
                   coarse=ctx.pick((1.0, 100.0), COARSE), refine=ctx.pick((1.0,), REFINE))
    write_json(path, payload)
    return path


def recipe(task_name: str, stage: str) -> dict[str, Any]:
    """The meta-training settings recorded with the shipped ``pretrained:TASK`` stage."""
    meta = json.loads(resolve(f"pretrained:{task_name}", stage).with_suffix(".json").read_text())
    names = {f.name for f in fields(MetaConfig)}
    return {k: v for k, v in meta["config"].items() if k in names}


def meta_train(ctx: Context, task_name: str) -> Path:
    """Meta-train both stages of ZO-LSTM on ``task_name``; returns the stage-2 checkpoint.  A
    finetuned recipe starts from the prerequisite task's retrained optimizer (trained first
    by :func:`retrain`)."""
    from zol2l.meta.trainer import MetaTrainer

    folder = _folder(ctx, task_name)
    init: str | None = None
    for stage in ("update", "query"):
        settings = recipe(task_name, stage)
        settings.update(out=str(folder / stage), seed=ctx.options.seed, stage=stage)
        if stage == "query":
            settings["init"] = init
        elif str(settings.get("init") or "").startswith("pretrained:"):
            settings["init"] = ctx.learned(str(settings["init"]).split(":", 1)[1])
        if ctx.quick:
            settings.update(epochs=1, runs_per_epoch=1, steps=10, unroll=5, batch=2,
                            val_every=1)
        extra = ctx.machine_options(settings["task"])  # only what was set: the command replays
        if extra:
            settings["task_options"] = {**settings.get("task_options", {}),
                                        **{k: v for k, v in extra.items() if v is not None}}
        config = MetaConfig(**settings)
        done = Path(config.out) / f"{stage}.safetensors"
        if not (ctx.options.resume and done.is_file()):
            saved = (Path(config.out) / "trainer_state.pt").exists()
            trainer = MetaTrainer(config, progress=ctx.options.progress,
                                  resume=ctx.options.resume and saved)
            done = Path(trainer.fit()["checkpoint"])
        init = str(done)
    return Path(str(init))
