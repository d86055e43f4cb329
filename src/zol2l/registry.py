"""The one registry class behind the optimizers, the task families and the experiments.

A :class:`Registry` maps names to entries (classes, experiment records) and keeps, per entry,
the metadata its registration declared (e.g. an optimizer's plot label, color and role).  A
name is registered once: a second registration under the same name is refused, and asking
for an unknown name lists the available ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> entries, with per-entry metadata.

    Args:
        kind: what the entries are, for messages (``"optimizer"``, ``"task"``, ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    def add(self, name: str, entry: T, **meta: Any) -> T:
        """Register ``entry`` under ``name`` with ``meta``; returns ``entry``.

        Raises:
            ValueError: ``name`` is empty or already registered.
        """
        if not name:
            raise ValueError(f"a {self.kind} needs a non-empty name ({entry!r})")
        if name in self._entries:
            raise ValueError(f"a {self.kind} named {name!r} is already registered "
                             f"({self._entries[name]!r}); names must be unique")
        self._entries[name] = entry
        self._meta[name] = dict(meta)
        return entry

    def get(self, name: str) -> T:
        """The entry registered as ``name``.

        Raises:
            ValueError: no such name (the message lists the available ones).
        """
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(f"unknown {self.kind} {name!r}; available: "
                             f"{', '.join(self.names())}") from None

    def meta(self, name: str) -> dict[str, Any]:
        """The metadata registered with ``name`` (a copy)."""
        self.get(name)
        return dict(self._meta[name])

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def in_order(self, **meta: Any) -> list[str]:
        """The names in registration order, only those whose metadata has every given
        ``key=value`` of ``meta``."""
        return [name for name, m in self._meta.items()
                if all(m.get(k) == v for k, v in meta.items())]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, name: str) -> T:
        return self._entries[name]
