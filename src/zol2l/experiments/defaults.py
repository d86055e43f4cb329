"""The settings the project ships, as the defaults of the harness and the CLI.

When the user gives no hyperparameters for an optimizer, :func:`resolve` takes them from the
task's shipped ``zol2l tune`` file (``src/zol2l/tuned/TASK.json``), and a learned optimizer
(``zo-lstm`` and its ablations) gets the task's own meta-trained checkpoint
(``pretrained:TASK``) when one ships, else the general default
:data:`zol2l.optimizers.zo_lstm.DEFAULT_CHECKPOINT`.  Keys the user gives win; an ``lr`` or
``delta`` from the user replaces both of the file's.  :func:`resolve` also says where each
value came from, which ``results.json`` records as ``hyperparameter_sources``
(``"user"``, ``"tuned:FILE"``, ``"pretrained for TASK"``, ``"task default"``, ``"default"``),
and warns when a checkpoint was trained on another task, target or box than the run's.

Optimizer keys may be labels ``NAME@LABEL`` (one optimizer under several settings).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from zol2l.optimizers import available, get_class
from zol2l.optimizers.registry import base_name
from zol2l.tasks.base import TaskFamily
from zol2l.validation import check_options, warn_unselected

Table = dict[str, dict[str, Any]]
_STEP_KEYS = ("lr", "delta")


def tuned_path(task: str) -> Path | None:
    """The shipped tuning file of ``task``, or ``None``."""
    path = Path(str(resources.files("zol2l") / "tuned" / f"{task}.json"))
    return path if path.is_file() else None


def read_hparams(path: str | os.PathLike) -> Table:
    """``{name: hyperparameters}`` of a hyperparameter file written by ``zol2l tune``."""
    try:
        payload = json.loads(Path(path).read_text())
        table = payload["optimizers"]
        found = {name: entry["hyperparameters"] for name, entry in table.items()}
        for name, hp in found.items():
            if not isinstance(hp, dict):
                raise TypeError(f"optimizers.{name}.hyperparameters is "
                                f"{type(hp).__name__}, not a table")
    except FileNotFoundError:
        raise FileNotFoundError(f"hyperparameter file {path} does not exist") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(
            f"{path} is not a zol2l tune file (expected {{'optimizers': {{NAME: "
            f"{{'hyperparameters': {{...}}}}}}}}): {exc}"
        ) from None
    for name, hp in found.items():
        if name in available():
            check_options(get_class(name), hp, f"{path}: optimizers.{name}.hyperparameters")
    return {name: dict(hp) for name, hp in found.items()}


def warn_unselected_entries(path: str | os.PathLike, names: str) -> None:
    """Warn about entries of the hyperparameter file ``path`` for optimizers that are not in
    the comma-separated ``names`` (``--optimizers``)."""
    selected = [n.strip() for n in names.split(",") if n.strip()]
    warn_unselected(read_hparams(path), selected, path)


def is_learned(name: str) -> bool:
    """Whether ``name`` (or label) is ZO-LSTM or one of its ablations."""
    from zol2l.optimizers.zo_lstm import LearnedZO

    return issubclass(get_class(base_name(name)), LearnedZO)


def task_checkpoint(task: str) -> tuple[str, str]:
    """``(spec, source)`` of the learned optimizer for ``task``: its own shipped checkpoint,
    else the general default."""
    from zol2l.learned.checkpoint import PRETRAINED_DIR
    from zol2l.optimizers import zo_lstm

    if (PRETRAINED_DIR / f"{task}-query.safetensors").is_file():
        return f"pretrained:{task}", f"pretrained for {task}"
    return zo_lstm.DEFAULT_CHECKPOINT, "default"


def _spans_tasks(name: Any) -> bool:
    """Whether the family ``name`` trains optimizers for any task (unknown names: no)."""
    from zol2l.tasks.registry import task_class

    try:
        return bool(task_class(str(name)).spans_tasks)
    except ValueError:
        return False


def checkpoint_mismatches(spec: str, task: TaskFamily) -> list[str]:
    """How the task, target or box recorded with checkpoint ``spec`` differ from ``task``."""
    from zol2l.learned.checkpoint import resolve, sidecar

    try:
        meta = json.loads(sidecar(resolve(spec, "query")).read_text())
    except (OSError, ValueError):
        try:
            meta = json.loads(sidecar(resolve(spec, "update")).read_text())
        except (OSError, ValueError):
            return []
    if not isinstance(meta, dict):
        return []  # not a sidecar: loading the checkpoint reports it
    if _spans_tasks(meta.get("task")):
        return []  # a general optimizer (meta-trained on a mixture of tasks) fits any task
    found = []
    if meta.get("task") and meta["task"] != task.name:
        found.append(f"task {meta['task']!r} (this run: {task.name!r})")
    recorded, run = meta.get("task_options") or {}, task.describe()
    for key in ("target", "box"):
        if key in recorded and key in run and recorded[key] != run[key]:
            found.append(f"{key} {recorded[key]!r} (this run: {run[key]!r})")
    return found


def resolve(task: TaskFamily, names: Sequence[str], *, user: Mapping[str, Mapping] | None = None,
            tuned: Mapping[str, Mapping] | str | os.PathLike | None = "shipped",
            q: int | None = None, q_source: str = "user") -> tuple[Table, Table]:
    """Hyperparameters of each optimizer (or label) in ``names`` and where each came from.

    Args:
        task: the run's task family.
        names: optimizer names or ``NAME@LABEL`` labels.
        user: the user's hyperparameters by label.
        tuned: ``"shipped"`` (the task's shipped file), the path of a ``zol2l tune`` file
            (``--hparams``; source ``"file:PATH"``), a ``{name: hp}`` table (source
            ``"tuned"``) or ``None`` (none).
        q: directions per estimate for every optimizer (``None``: keep the others').
        q_source: where ``q`` came from.

    Returns:
        ``(table, sources)``, both keyed by label.
    """
    tuned_source = ""
    if tuned == "shipped":
        path = tuned_path(task.name)
        tuned, tuned_source = ((read_hparams(path), f"tuned:zol2l/tuned/{path.name}") if path
                               else ({}, ""))
    elif isinstance(tuned, str | os.PathLike):
        tuned, tuned_source = read_hparams(tuned), f"file:{tuned}"
    tuned = dict(tuned or {})
    user = dict(user or {})
    table: Table = {}
    sources: Table = {}
    for label in names:
        name = base_name(label)
        mine = dict(user.get(label, {}))
        base = dict(tuned.get(label, tuned.get(name, {})))
        base.pop("q", None)
        if any(k in mine for k in _STEP_KEYS):
            for key in _STEP_KEYS:
                base.pop(key, None)
        hp = {**base, **mine}
        src = {k: tuned_source or "tuned" for k in base} | {k: "user" for k in mine}
        if is_learned(label) and hp.get("checkpoint", "") == "":
            hp["checkpoint"], src["checkpoint"] = task_checkpoint(task.name)
        if q is not None and "q" not in mine:
            hp["q"], src["q"] = q, q_source
        if is_learned(label) and hp.get("checkpoint"):
            problems = checkpoint_mismatches(str(hp["checkpoint"]), task)
            if problems:
                warnings.warn(f"{label}: checkpoint {hp['checkpoint']} was trained with "
                              f"{', '.join(problems)}", UserWarning, stacklevel=2)
        table[label], sources[label] = hp, src
    return table, sources


def record_sources(payload: dict[str, Any], sources: Mapping[str, Mapping[str, str]]) -> None:
    """Add ``hyperparameter_sources`` (every recorded key: its source, ``"default"`` for the
    optimizer's own defaults) to each optimizer block of a ``results.json`` payload."""
    for label, block in payload.get("optimizers", {}).items():
        src = dict(sources.get(label, {}))
        if "checkpoint" in src:
            src.setdefault("checkpoint_sha256", src["checkpoint"])
        block["hyperparameter_sources"] = {k: src.get(k, "default")
                                           for k in block.get("hyperparameters", {})}
