"""The registry of optimizers by name, shared by the API, the CLI and the tests."""

from __future__ import annotations

import inspect
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


def base_name(label: str) -> str:
    """The registered name of an optimizer label ``NAME@LABEL`` (``NAME`` itself unchanged):
    one optimizer can run under several settings in one evaluation."""
    return str(label).split("@", 1)[0]


#: prefix of the peer optimizers of ``zol2l benchmark`` (:mod:`zol2l.benchmark.peers`):
#: wrappers of other libraries, resolved by name but never listed by :func:`available`
PEER_PREFIX = "peer:"


def get_class(name: str) -> type:
    """The optimizer class registered as ``name`` (or labelled ``name@LABEL``;
    ``peer:NAME`` for a benchmark peer)."""
    if str(name).startswith(PEER_PREFIX):
        from zol2l.benchmark.peers import peer_class

        return peer_class(base_name(name))
    try:
        return _REGISTRY[base_name(name)]
    except KeyError:
        raise ValueError(
            f"unknown optimizer {name!r}; available: {', '.join(available())}"
        ) from None


def accepted(name: str) -> list[str]:
    """The hyperparameter keywords that the optimizer ``name`` accepts (its constructors'
    keyword arguments along the class hierarchy), sorted."""
    found: set[str] = set()
    for klass in get_class(name).__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        for param in inspect.signature(init).parameters.values():
            if param.kind in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD) \
                    and param.name != "self":
                found.add(param.name)
    return sorted(found)


def make(name: str, **hyperparameters: Any) -> Any:
    """Instantiate the optimizer ``name`` with ``hyperparameters``.

    Unknown hyperparameters raise a ``ValueError`` naming them and the accepted ones.
    """
    name = base_name(name)
    cls = get_class(name)
    known = accepted(name)
    unknown = sorted(set(hyperparameters) - set(known))
    if unknown:
        raise ValueError(f"bad hyperparameters for {name!r}: unknown keyword {unknown[0]!r}; "
                         f"accepted: {', '.join(known)}")
    try:
        return cls(**hyperparameters)
    except TypeError as exc:
        raise ValueError(f"bad hyperparameters for {name!r}: {exc}") from None
