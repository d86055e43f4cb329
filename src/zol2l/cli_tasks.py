"""The task options of the ``zol2l`` commands, built from the registered task families.

Each family declares its options (:attr:`zol2l.tasks.base.TaskFamily.cli_options`).  A flag
that several families declare (``--dim``) is one argument whose help lists each family's
default; it applies to the tasks that declare it, and giving it with a ``--task`` that does
not is a :class:`~zol2l.errors.UserError` naming the flag and the task.  Flags not given are
not passed: the family's constructor defaults apply (the defaults the help shows).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from zol2l.errors import UserError
from zol2l.tasks.base import TaskFamily, TaskOption

Families = Sequence[type[TaskFamily]]


def _dest(option: TaskOption) -> str:
    return option.option_string.lstrip("-").replace("-", "_")


def _by_flag(families: Families) -> dict[str, list[tuple[type[TaskFamily], TaskOption]]]:
    table: dict[str, list[tuple[type[TaskFamily], TaskOption]]] = {}
    for cls in families:
        for option in cls.cli_options:
            table.setdefault(option.option_string, []).append((cls, option))
    return table


def _help(entries: list[tuple[type[TaskFamily], TaskOption]]) -> str:
    helps = " / ".join(dict.fromkeys(option.help for _, option in entries))
    defaults = {cls.name: option.default for cls, option in entries}
    if len(set(map(repr, defaults.values()))) == 1:
        said = repr(next(iter(defaults.values())))
    else:
        said = "; ".join(f"{name}: {value!r}" for name, value in defaults.items())
    tasks = ", ".join(defaults)
    return f"{helps} [{tasks}] (default: {said})".replace("%", "%%")


def add_task_options(p: argparse.ArgumentParser, families: Families) -> None:
    """Add the options of ``families`` to ``p`` (one argument per distinct flag)."""
    group = p.add_argument_group("task options", "each applies to the tasks in brackets")
    dests = []
    for flag, entries in sorted(_by_flag(families).items()):
        types = {option.type for _, option in entries}
        if len(types) > 1:
            raise TypeError(f"task option {flag} has different types in "
                            f"{', '.join(cls.name for cls, _ in entries)}")
        choices = [c for _, option in entries for c in option.choices or ()]
        unbounded = any(option.choices is None for _, option in entries)
        dest = _dest(entries[0][1])
        group.add_argument(flag, dest=dest, type=types.pop(), default=argparse.SUPPRESS,
                           choices=None if unbounded else list(dict.fromkeys(choices)),
                           help=_help(entries))
        dests.append(dest)
    p.set_defaults(task_flags=tuple(dests))


def task_options(args: argparse.Namespace, cls: type[TaskFamily]) -> dict[str, Any]:
    """The constructor keywords of ``cls`` given on the command line; a task flag ``cls``
    does not declare is a :class:`UserError`."""
    own = {_dest(option): option for option in cls.cli_options}
    given = [d for d in getattr(args, "task_flags", ()) if hasattr(args, d)]
    for dest in given:
        if dest not in own:
            accepted = ", ".join(o.option_string for o in cls.cli_options) or "none"
            raise UserError(f"--{dest.replace('_', '-')} is not an option of task "
                            f"{cls.name} (its options: {accepted})")
        option, value = own[dest], getattr(args, dest)
        if option.choices is not None and value not in option.choices:
            raise UserError(f"{option.option_string} {value!r}: task {cls.name} accepts "
                            f"{', '.join(map(str, option.choices))}")
    return {own[d].name: getattr(args, d) for d in given}
