"""The registry of optimizers by name, shared by the API, the CLI and the tests."""

from __future__ import annotations

from typing import Any

_REGISTRY: dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: register an optimizer class under its ``name``."""
    name = getattr(cls, "name", "")
    if not name:
        raise ValueError(f"{cls.__name__} has no name")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"an optimizer named {name!r} is already registered")
    _REGISTRY[name] = cls
    return cls


def available() -> list[str]:
    """Names of all registered optimizers, sorted."""
    return sorted(_REGISTRY)


#: prefix of the peer optimizers of ``zol2l benchmark`` (:mod:`zol2l.benchmark.peers`):
#: wrappers of other libraries, resolved by name but never listed by :func:`available`
PEER_PREFIX = "peer:"


def get_class(name: str) -> type:
    """The optimizer class registered as ``name`` (``peer:NAME`` for a benchmark peer)."""
    if name.startswith(PEER_PREFIX):
        from zol2l.benchmark.peers import peer_class

        return peer_class(name)
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown optimizer {name!r}; available: {', '.join(available())}"
        ) from None


def make(name: str, **hyperparameters: Any) -> Any:
    """Instantiate the optimizer ``name`` with ``hyperparameters``.

    Unknown hyperparameters raise a ``ValueError`` naming them.
    """
    cls = get_class(name)
    try:
        return cls(**hyperparameters)
    except TypeError as exc:
        raise ValueError(f"bad hyperparameters for {name!r}: {exc}") from None
