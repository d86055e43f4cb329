"""``zol2l reproduce --retrain``: tune the baselines and meta-train ZO-LSTM before the experiment.

The full versions repeat the recipes of the shipped files: ``zol2l tune`` on the task's
training instances (the paper's grid) and the two meta-training stages with the settings
recorded in ``zol2l/pretrained/TASK-{update,query}.json``.  ``--quick`` shrinks every size so
that the whole path runs in seconds (tests).  Everything goes to ``ROOT/retrained/TASK/``.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zol2l.experiments.evaluate import write_json
from zol2l.experiments.options import RunOptions
from zol2l.experiments.tune import COARSE, REFINE, tune
from zol2l.learned.checkpoint import resolve
from zol2l.meta.config import MetaConfig

if TYPE_CHECKING:
    from zol2l.experiments.reproduce.base import Context


def _folder(ctx: Context, task: str) -> Path:
    path = ctx.root / "retrained" / task
    path.mkdir(parents=True, exist_ok=True)
    return path


def retune(ctx: Context, task_name: str) -> Path:
    """Tune the baselines of ``task_name`` on training instances; returns the hparams file."""
    from zol2l.experiments.reproduce.base import BASELINES

    path = _folder(ctx, task_name) / "hparams.json"
    if path.is_file() and ctx.resume:
        return path
    task = ctx.task(task_name)
    payload = tune(task, BASELINES, instances=ctx.pick(2, None), trials=1,
                   steps=ctx.pick(10, task.default_steps),
                   options=RunOptions(seed=ctx.seed, progress=ctx.progress),
                   coarse=ctx.pick((1.0, 100.0), COARSE), refine=ctx.pick((1.0,), REFINE))
    write_json(path, payload)
    return path


def recipe(task_name: str, stage: str) -> dict[str, Any]:
    """The meta-training settings recorded with the shipped ``pretrained:TASK`` stage."""
    meta = json.loads(resolve(f"pretrained:{task_name}", stage).with_suffix(".json").read_text())
    names = {f.name for f in fields(MetaConfig)}
    return {k: v for k, v in meta["config"].items() if k in names}


def meta_train(ctx: Context, task_name: str) -> Path:
    """Meta-train both stages of ZO-LSTM on ``task_name``; returns the stage-2 checkpoint."""
    from zol2l.meta.trainer import MetaTrainer

    folder = _folder(ctx, task_name)
    init: str | None = None
    for stage in ("update", "query"):
        settings = recipe(task_name, stage)
        settings.update(out=str(folder / stage), seed=ctx.seed, stage=stage)
        if stage == "query":
            settings["init"] = init
        elif str(settings.get("init") or "").startswith("pretrained:"):
            # a finetuned recipe starts from another task's optimizer: retrain that one too
            settings["init"] = ctx.learned(str(settings["init"]).split(":", 1)[1])
        if ctx.quick:
            settings.update(epochs=1, runs_per_epoch=1, steps=10, unroll=5, batch=2,
                            val_every=1)
        if task_name.endswith("-attack"):  # only what was set: the recorded command replays
            extra = {"data_dir": ctx.data_dir, "device": ctx.device}
            settings["task_options"] = {**settings.get("task_options", {}),
                                        **{k: v for k, v in extra.items() if v is not None}}
        config = MetaConfig(**settings)
        done = Path(config.out) / f"{stage}.safetensors"
        if not (ctx.resume and done.is_file()):
            saved = (Path(config.out) / "trainer_state.pt").exists()
            trainer = MetaTrainer(config, progress=ctx.progress, resume=ctx.resume and saved)
            done = Path(trainer.fit()["checkpoint"])
        init = str(done)
    return Path(str(init))
