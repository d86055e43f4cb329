"""The registry of task families by name (used by the CLI and the experiments)."""

from __future__ import annotations

from typing import Any

_TASKS: dict[str, type] = {}


def register_task(cls: type) -> type:
    """Class decorator: register a task family under its ``name``."""
    _TASKS[cls.name] = cls
    return cls


def available_tasks() -> list[str]:
    """Names of the registered task families."""
    return sorted(_TASKS)


def make_task(name: str, **options: Any) -> Any:
    """Instantiate the task family ``name``."""
    try:
        cls = _TASKS[name]
    except KeyError:
        raise ValueError(
            f"unknown task {name!r}; available: {', '.join(available_tasks())}"
        ) from None
    return cls(**options)
