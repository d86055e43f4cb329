"""The registry of optimizers by name, shared by the API, the CLI and the tests.

Each optimizer registers with its display ``label`` and plot ``color`` (the same in every
figure) and its ``role``: ``"baseline"`` (hand-designed, tuned per task), ``"learned"``
(ZO-LSTM) or ``"ablation"`` (ZO-LSTM with one part replaced, section 4.4).  The lists of
the experiments, the figures and the CLI defaults are derived from them (:func:`baselines`,
:func:`labels`, :func:`colors`).  Registration order is the paper's order (the package
imports the optimizer modules in it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zol2l.optimizers.base import keywords
from zol2l.registry import Registry

OPTIMIZERS: Registry[type] = Registry("optimizer")
ROLES = ("baseline", "learned", "ablation")


def register(*, label: str, color: str, role: str) -> Callable[[type], type]:
    """Class decorator: register an optimizer class under its ``name``, with its display
    ``label``, plot ``color`` and ``role`` (one of :data:`ROLES`)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")

    def add(cls: type) -> type:
        return OPTIMIZERS.add(getattr(cls, "name", ""), cls, label=label, color=color,
                              role=role)

    return add


def available() -> list[str]:
    """Names of all registered optimizers, sorted."""
    return OPTIMIZERS.names()


def baselines() -> tuple[str, ...]:
    """The hand-designed optimizers (role ``"baseline"``), in the paper's order."""
    return tuple(OPTIMIZERS.in_order(role="baseline"))


def labels() -> dict[str, str]:
    """``{name: display label}`` of every registered optimizer, in the paper's order."""
    return {name: OPTIMIZERS.meta(name)["label"] for name in OPTIMIZERS.in_order()}


def colors() -> dict[str, str]:
    """``{name: plot color}`` of every registered optimizer, in the paper's order."""
    return {name: OPTIMIZERS.meta(name)["color"] for name in OPTIMIZERS.in_order()}


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
        return OPTIMIZERS.entry(base_name(name))
    except ValueError:
        raise ValueError(
            f"unknown optimizer {name!r}; available: {', '.join(available())}"
        ) from None


def accepted(name: str) -> list[str]:
    """The hyperparameter keywords that the optimizer ``name`` accepts, sorted."""
    return sorted(keywords(get_class(name)))


def make(name: str, **hyperparameters: Any) -> Any:
    """Instantiate the optimizer ``name`` with ``hyperparameters``.

    Unknown hyperparameters raise a ``ValueError`` naming them and the accepted ones.
    """
    name = base_name(name)
    cls = get_class(name)
    known = accepted(name)
    unknown = sorted(set(hyperparameters) - set(known))
    if unknown:
        renamed = getattr(cls, "renamed", {}).get(unknown[0])
        hint = f" (renamed {renamed!r})" if renamed else ""
        raise ValueError(f"bad hyperparameters for {name!r}: unknown keyword {unknown[0]!r}"
                         f"{hint}; accepted: {', '.join(known)}")
    try:
        return cls(**hyperparameters)
    except TypeError as exc:
        raise ValueError(f"bad hyperparameters for {name!r}: {exc}") from None
