"""The one registry class behind the optimizers, the task families and the experiments.

A :class:`Registry` maps names to entries (classes, experiment records) and keeps, per entry,
the metadata its registration declared (e.g. an optimizer's plot label, color and role).  A
name is registered once (:meth:`Registry.add` refuses a second registration under a taken
name), and :meth:`Registry.entry` answers an unknown name with the available ones.  It reads
as a mapping in registration order; item assignment replaces an entry (tests swap one).
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any, TypeVar

T = TypeVar("T")


class Registry(MutableMapping[str, T]):
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

    def entry(self, name: str) -> T:
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
        self.entry(name)
        return dict(self._meta[name])

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def in_order(self, **meta: Any) -> list[str]:
        """The names in registration order, only those whose metadata has every given
        ``key=value`` of ``meta``."""
        return [name for name, m in self._meta.items()
                if all(m.get(k) == v for k, v in meta.items())]

    # ------------------------------------------------------------------ mapping protocol
    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __setitem__(self, name: str, entry: T) -> None:
        self._entries[name] = entry
        self._meta.setdefault(name, {})

    def __delitem__(self, name: str) -> None:
        del self._entries[name]
        del self._meta[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
