"""The registry of task families by name (used by the CLI and the experiments)."""

from __future__ import annotations

from typing import Any

from zol2l.registry import Registry

TASKS: Registry[type] = Registry("task")


def register_task(cls: type) -> type:
    """Class decorator: register a task family under its ``name`` (a name once)."""
    return TASKS.add(getattr(cls, "name", ""), cls)


def available_tasks() -> list[str]:
    """Names of the registered task families."""
    return TASKS.names()


def task_class(name: str) -> Any:
    """The registered task family class ``name``."""
    return TASKS.entry(name)


def make_task(name: str, **options: Any) -> Any:
    """Instantiate the task family ``name``."""
    cls = task_class(name)
    from zol2l.validation import check_options, signature_keys

    valid = signature_keys(cls)
    unknown = sorted(set(options) - set(valid)) if valid is not None else []
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for task {name}; valid: "
                         f"{', '.join(valid)}")
    check_options(cls, options, f"task {name} option (--task-option KEY=JSON)")
    return cls(**options)
