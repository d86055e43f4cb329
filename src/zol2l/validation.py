"""Checks of user-given values that the library and the CLI share: option types (task options,
hyperparameter files), devices, seeds and the command-line values the commands have in
common.  Every check raises :class:`~zol2l.errors.UserError` naming the parameter (and the
file), or warns with :func:`~zol2l.errors.warn` about what is ignored."""

from __future__ import annotations

import argparse
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from zol2l.errors import UserError, warn

MAX_SEED = 2**63 - 1


def _hints(target: Callable | type) -> dict[str, Any]:
    """Parameter annotations of ``target`` (a class: its ``__init__`` and its bases')."""
    funcs = [c.__init__ for c in reversed(target.__mro__)] if isinstance(target, type) \
        else [target]
    hints: dict[str, Any] = {}
    for func in funcs:
        try:
            hints.update(typing.get_type_hints(func))
        except (NameError, TypeError):  # unresolvable annotations: no check
            continue
    return hints


def _allowed(hint: Any) -> list[Any] | None:
    """The leaves of a type hint (types, Literal values), or ``None`` for "anything"."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        leaves: list[Any] = []
        for arg in typing.get_args(hint):
            sub = _allowed(arg)
            if sub is None:
                return None
            leaves += sub
        return leaves
    if origin is typing.Literal:
        return [("literal", v) for v in typing.get_args(hint)]
    if hint is type(None) or hint in (int, float, bool, str):
        return [hint]
    return None


def _fits(value: Any, leaf: Any) -> bool:
    if isinstance(leaf, tuple):
        return value == leaf[1] and type(value) is type(leaf[1])
    if leaf is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if leaf is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, leaf)


def _name(leaf: Any) -> str:
    if isinstance(leaf, tuple):
        return repr(leaf[1])
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string",
            type(None): "null"}[leaf]


def check_options(target: Callable | type, options: Mapping[str, Any], where: str) -> None:
    """Check each ``options`` value against ``target``'s annotation of that parameter; the
    message names ``where`` (e.g. the file and the table), the key and the expected type."""
    hints = _hints(target)
    for key, value in options.items():
        leaves = _allowed(hints[key]) if key in hints else None
        if leaves is None or any(_fits(value, leaf) for leaf in leaves):
            continue
        expected = " or ".join(dict.fromkeys(_name(leaf) for leaf in leaves))
        raise UserError(f"{where}: {key!r} is {value!r} ({type(value).__name__}); it must be "
                        f"{expected}")


def check_device(name: str | torch.device) -> torch.device:
    """The torch device ``name``, or a :class:`UserError` saying why it cannot be used."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise UserError(f"--device {name!r} is not a torch device; use cpu, cuda, cuda:N or "
                        "mps") from None
    if device.type == "cuda":
        if torch.version.cuda is None:
            raise UserError(f"--device {name}: this torch ({torch.__version__}) is built "
                            "without CUDA; use --device cpu or install a CUDA build of torch")
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: no CUDA GPU is visible; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: only {torch.cuda.device_count()} CUDA "
                            "device(s) are visible")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device {name}: MPS is not available here; use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"--device {name}: zol2l runs on cpu, cuda or mps")
    return device


def check_seed(seed: int, flag: str = "--seed") -> int:
    """A seed in ``[0, 2**63 - 1]`` (what torch generators take)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise UserError(f"{flag} {seed!r} is out of range: use an integer from 0 to 2**63 - 1")
    return seed


def check_x0(x0: Any) -> None:
    """Refuse a complex initial point (casting it would drop the imaginary part)."""
    import numpy as np

    dtype = x0.dtype if isinstance(x0, torch.Tensor | np.ndarray) else np.asarray(x0).dtype
    if (dtype.is_complex if isinstance(dtype, torch.dtype) else dtype.kind == "c"):
        raise UserError(f"x0 has the complex dtype {dtype}; zol2l minimizes over real vectors "
                        "(pass x0.real, or stack real and imaginary parts)")


def warn_unselected(table: Mapping[str, Any], selected: list[str], path: Path | str) -> None:
    """Warn about hyperparameter entries of ``path`` for optimizers that will not run."""
    unused = sorted(set(table) - set(selected))
    if unused:
        warn(f"{path} has hyperparameters for {', '.join(unused)}, which are not selected "
             "(--optimizers / --optimizer): ignored")


def check_args(args: argparse.Namespace) -> None:
    """The checks of values several commands share (seed, --c, --device, --max-batch, ...)."""
    if getattr(args, "seed", None) is not None:
        check_seed(args.seed)
    c = getattr(args, "c", None)
    if c is not None and not c >= 0:
        raise UserError(f"--c {c}: the distortion weight must be >= 0 (0 ignores distortion)")
    if getattr(args, "device", None) not in (None, "auto"):
        check_device(args.device)
    for flag in ("max_batch", "instances", "images", "trials", "steps", "q", "instance_chunk",
                 "trial_chunk"):
        value = getattr(args, flag, None)
        if isinstance(value, int) and value < 1:
            raise UserError(f"--{flag.replace('_', '-')} {value}: must be >= 1")


def signature_keys(target: Callable | type) -> list[str] | None:
    """Keyword parameters of ``target`` (for messages listing valid options); ``None`` when
    it takes ``**kwargs`` (any key may be valid)."""
    func = target.__init__ if isinstance(target, type) else target
    params = inspect.signature(func).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.name != "self" and p.kind is not p.VAR_POSITIONAL]
