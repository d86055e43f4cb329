"""Parsing of the ``zol2l`` options shared by several commands: ``--ids``, ``--set``,
``--checkpoint``, ``--hparams FILE|none``, ``--grid``, ``--quiet``.  Only parsing: the values
go to the library unchanged.

* ``--ids 3,17,42`` (ranges ``10-19`` too): dataset indices (attacks) or instance ids.
* ``--set NAME.KEY=VALUE`` (repeatable): a hyperparameter, ``VALUE`` as JSON (a bare word is
  a string); ``NAME`` is an optimizer or a label ``NAME@LABEL`` of ``--optimizers``
  (``--optimizers zo-lstm@small,zo-lstm --set zo-lstm@small.alpha=0.2``); an optimizer name
  sets all of its labels, and a label's own setting wins.  The key is what follows the LAST
  dot, so labels may contain dots (``zo-lstm@a0.2.alpha=0.2``).
* ``--checkpoint NAME=SPEC`` (repeatable): the same as ``--set NAME.checkpoint=SPEC``.
* ``--grid coarse=0.1,1,10`` / ``refine=0.5,1,2`` / ``NAME.KEY=v1,v2`` (``zol2l tune``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any


def parse_ids(text: str) -> list[int]:
    """``"3,17,42"`` or ``"10-12,40"`` -> a list of ints (``argparse`` type)."""
    ids: list[int] = []
    try:
        for part in (p.strip() for p in text.split(",") if p.strip()):
            if "-" in part:
                lo, hi = part.split("-", 1)
                ids += list(range(int(lo), int(hi) + 1))
            else:
                ids.append(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--ids needs integers like 3,17,42 or 10-19, got "
                                         f"{text!r}") from None
    if not ids:
        raise argparse.ArgumentTypeError("--ids needs at least one id")
    return ids


def _value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def parse_set(text: str) -> tuple[str, str, Any]:
    """``"NAME.KEY=VALUE"`` -> ``(NAME, KEY, value)`` (``argparse`` type)."""
    head, sep, raw = text.partition("=")
    name, dot, key = head.rpartition(".")
    if not sep or not dot or not name or not key:
        raise argparse.ArgumentTypeError(f"--set needs NAME.KEY=VALUE, got {text!r}")
    return name, key, _value(raw)


def parse_checkpoint(text: str) -> tuple[str, str, Any]:
    """``"NAME=SPEC"`` -> ``(NAME, "checkpoint", SPEC)`` (``argparse`` type)."""
    name, sep, spec = text.partition("=")
    if not sep or not name or not spec:
        raise argparse.ArgumentTypeError(f"--checkpoint needs NAME=SPEC, got {text!r}")
    return name, "checkpoint", spec


def user_hyperparameters(settings: Sequence[tuple[str, str, Any]],
                         names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{label: {key: value}}`` of ``--set`` / ``--checkpoint`` entries for the run's
    optimizers or labels ``names``.  An entry for a label sets that label; an entry for an
    optimizer name sets every label of it, and a label's own entry wins."""
    table: dict[str, dict[str, Any]] = {label: {} for label in names}
    for exact in (False, True):  # optimizer-wide entries first, then the labels' own
        for name, key, value in settings:
            targets = [n for n in names if n == name] if exact else \
                [n for n in names if n != name and n.split("@", 1)[0] == name]
            for label in targets:
                table[label][key] = value
    known = set(names) | {n.split("@", 1)[0] for n in names}
    unknown = [name for name, _, _ in settings if name not in known]
    if unknown:
        raise ValueError(f"--set/--checkpoint names {unknown[0]!r}, which is not among the "
                         f"run's optimizers ({', '.join(names)})")
    return table


def tuned_choice(hparams: str | None) -> str | None:
    """``--hparams``: ``None`` -> ``"shipped"`` (the task's shipped file); ``"none"`` -> no
    file; else the path of a ``zol2l tune`` file."""
    if hparams is None:
        return "shipped"
    return None if hparams.lower() == "none" else hparams


def parse_grid(text: str) -> tuple[str, list[float]]:
    """``"coarse=0.1,1,10"`` -> ``("coarse", [0.1, 1.0, 10.0])`` (``argparse`` type)."""
    key, sep, raw = text.partition("=")
    try:
        values = [float(v) for v in raw.split(",") if v.strip()]
    except ValueError:
        values = []
    if not sep or not key or not values:
        raise argparse.ArgumentTypeError(f"--grid needs KEY=v1,v2,... (KEY: coarse, refine or "
                                         f"NAME.PARAM), got {text!r}")
    return key, values


def grid_options(entries: Sequence[tuple[str, list[float]]]) -> dict[str, Any]:
    """``tune()`` keywords (``coarse``, ``refine``, ``extra``) of ``--grid`` entries."""
    out: dict[str, Any] = {}
    extra: dict[str, dict[str, list[float]]] = {}
    for key, values in entries:
        if key in ("coarse", "refine"):
            out[key] = values
        elif "." in key:
            name, param = key.rsplit(".", 1)
            extra.setdefault(name, {})[param] = values
        else:
            raise ValueError(f"--grid key {key!r}: use coarse, refine or NAME.PARAM")
    if extra:
        out["extra"] = extra
    return out


def add_quiet(p: argparse.ArgumentParser, what: str = "no progress bar") -> None:
    """``--quiet`` with its alias ``--no-progress``."""
    p.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true", help=what)


def add_hyperparameter_options(p: argparse.ArgumentParser) -> None:
    """``--set``, ``--checkpoint`` and ``--hparams``."""
    p.add_argument("--set", dest="sets", action="append", type=parse_set, default=[],
                   metavar="NAME.KEY=VALUE",
                   help="a hyperparameter (JSON value) of an optimizer or label; repeatable")
    p.add_argument("--checkpoint", dest="checkpoints", action="append",
                   type=parse_checkpoint, default=[], metavar="NAME=SPEC",
                   help="learned optimizer weights (path or pretrained:NAME); repeatable")
    p.add_argument("--hparams", default=None, metavar="FILE|none",
                   help="hyperparameter file written by `zol2l tune` (default: the task's "
                        "shipped tuned file; none: the optimizers' own defaults)")
