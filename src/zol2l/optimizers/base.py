"""Base class of every zeroth-order optimizer, hand-designed or learned.

An optimizer sees the objective only through the values it asks for.  One
:meth:`ZOOptimizer.step` takes a batch of points ``x[B, d]`` (``B`` independent problems or
trials advancing in lockstep), asks for the values of its query points (it is
:data:`~zol2l.estimators.Queries`: it yields them and is sent their values, which the loop's
:class:`~zol2l.oracle.Oracle` counted), and returns the next points.  The one optimization
loop that drives every optimizer is :class:`zol2l.loop.Run`.

Learning rates follow the paper's convention ``lr = delta / d`` (section 4) unless an absolute
``lr`` is given.

What an optimizer carries from one step to the next is a typed :class:`State` (each optimizer
its subclass); what it records as its settings, :meth:`ZOOptimizer.hyperparameters`, is derived
from its constructor keywords; what work units hash for it is :meth:`ZOOptimizer.identity`.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import torch

from zol2l.estimators import Estimate, Queries, check_mu, check_q, default_mu, gaussian_queries


def keywords(cls: type) -> list[str]:
    """The constructor keywords of ``cls`` along its class hierarchy, base classes first (in
    each constructor's order), less those the class declares ``absent``."""
    found: list[str] = []
    for klass in reversed(cls.__mro__):
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        for param in inspect.signature(init).parameters.values():
            if param.kind in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD) \
                    and param.name != "self" and param.name not in found:
                found.append(param.name)
    absent = getattr(cls, "absent", ())
    return [key for key in found if key not in absent]


@dataclass
class StepOutput:
    """What one optimizer step produced.

    Attributes:
        x: ``[B, d]`` next points.
        fx: ``[B]`` objective values queried at the points the step started from.
        estimate: ``[B, d]`` the gradient estimate the step used.
        extras: optimizer-specific per-step tensors (e.g. a learned sampling std).
    """

    x: torch.Tensor
    fx: torch.Tensor
    estimate: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(kw_only=True)
class State:
    """What an optimizer carries from one step to the next, for a batch ``x[B, d]``.

    Attributes:
        t: steps taken (the step about to run is step ``t``, 0-based).
        prev_grad, prev_update: ``[B, d]`` the last step's estimate and update
            ``x_{t+1} - x_t`` (detached; ``None`` before the first step): the inputs of
            Guided ES and of the QueryRNN (eq. 3) at the next step.
    """

    t: int = 0
    prev_grad: torch.Tensor | None = None
    prev_update: torch.Tensor | None = None

    def detach(self) -> None:
        """Cut the autograd graph the state holds (truncated BPTT boundaries of
        meta-training): tensors, tuples of tensors (LSTM states) and nested states."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                setattr(self, f.name, value.detach())
            elif isinstance(value, tuple) and all(isinstance(v, torch.Tensor) for v in value):
                setattr(self, f.name, tuple(v.detach() for v in value))
            elif hasattr(value, "detach"):
                value.detach()


class ZOOptimizer(ABC):
    """A zeroth-order optimizer.

    Args:
        q: query directions per estimate.
        mu: smoothing parameter (default: :data:`zol2l.estimators.DEFAULT_MU` of the dtype).
        lr: absolute learning rate; mutually exclusive with ``delta``.
        delta: learning rate as ``delta / d`` (the paper's convention).
    """

    name: ClassVar[str] = ""
    default_delta: ClassVar[float] = 1.0
    #: constructor keywords of a base class that this optimizer does not take
    absent: ClassVar[tuple[str, ...]] = ()
    #: constructor keywords that :meth:`hyperparameters` does not record (module objects,
    #: seeds of untrained weights, numerical guards)
    unrecorded: ClassVar[tuple[str, ...]] = ()
    #: weight of the isotropic part when :meth:`guide` returns a subspace (Guided ES)
    guide_alpha: float = 0.5

    def __new__(cls, *args: Any, **kwargs: Any) -> ZOOptimizer:
        for key in cls.absent:
            if key in kwargs:
                raise TypeError(f"{cls.name} has no {key!r}")
        return super().__new__(cls)

    def __init__(
        self,
        *,
        q: int = 20,
        mu: float | None = None,
        lr: float | None = None,
        delta: float | None = None,
    ) -> None:
        if lr is not None and delta is not None:
            raise ValueError("give either lr (absolute) or delta (lr = delta / d), not both")
        for label, value in (("lr", lr), ("delta", delta)):
            if value is not None and not (float(value) > 0):
                raise ValueError(f"{label} must be positive, got {value!r}")
        self.q = check_q(q)
        self.mu = None if mu is None else check_mu(mu)
        self.lr = None if lr is None else float(lr)
        self.delta = None if delta is None else float(delta)

    # ----------------------------------------------------------------- settings
    def learning_rate(self, dim: int) -> float:
        """The absolute learning rate for dimension ``dim``."""
        if self.lr is not None:
            return self.lr
        delta = self.default_delta if self.delta is None else self.delta
        return delta / dim

    def smoothing(self, dtype: torch.dtype) -> float:
        """``mu`` for points of ``dtype``."""
        return self.mu if self.mu is not None else default_mu(dtype)

    def hyperparameters(self) -> dict[str, Any]:
        """JSON-serializable hyperparameters (what ``zol2l tune`` writes and reads): for each
        constructor keyword along the class hierarchy (base classes first, less
        :attr:`absent` and :attr:`unrecorded`), the entries :meth:`recorded` gives."""
        hp: dict[str, Any] = {}
        for key in keywords(type(self)):
            if key not in self.unrecorded:
                hp.update(self.recorded(key))
        return hp

    def recorded(self, key: str) -> dict[str, Any]:
        """The :meth:`hyperparameters` entries of constructor keyword ``key``: the value the
        optimizer holds under that name; the step size is one entry, ``lr`` when given, else
        the ``delta`` in use."""
        if key == "lr":
            return {} if self.lr is None else {"lr": self.lr}
        if key == "delta":
            return {} if self.lr is not None else \
                {"delta": self.default_delta if self.delta is None else self.delta}
        return {key: getattr(self, key)}

    @classmethod
    def identity(cls, hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
        """What a work unit of this optimizer run with ``hyperparameters`` (as given, before
        defaults) hashes (:func:`zol2l.experiments.units.make_units`): its
        ``"hyperparameters"`` (which also seed the unit), plus what else tells two runs apart
        (a learned optimizer: the sha256 of its weights).  Unit seeds and ids are part of the
        stored-results format (``--resume`` reuses stored units by id): keep this stable."""
        return {"hyperparameters": dict(hyperparameters)}

    def queries_at(self, t: int) -> int:
        """Queries per problem that step ``t`` (0-based) will spend."""
        return self.q + 1

    # ----------------------------------------------------------------- stepping
    def recommend(self, x: torch.Tensor, state: State) -> torch.Tensor:
        """The points the run returns after its last step (default: the last iterate)."""
        return x

    def init_state(self, x: torch.Tensor) -> State:
        """Fresh optimizer state for the points ``x[B, d]`` (``t = 0``)."""
        return State()

    def sampling_std(self, x: torch.Tensor, state: State, gen: torch.Generator,
                     extras: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """Per-coordinate std of this step's directions (``None``: standard Gaussian)."""
        return None

    def guide(self, state: State) -> torch.Tensor | None:
        """``[B, k, d]`` Guided-ES surrogate gradients (``None``: no guiding subspace)."""
        return None

    def estimate(
        self, x: torch.Tensor, state: State, gen: torch.Generator,
        extras: dict[str, torch.Tensor],
    ) -> Queries[Estimate]:
        """The gradient estimate of step ``state.t``: eq. 1 with the directions given by
        :meth:`sampling_std` and :meth:`guide`, taken at ``stop_grad(x)`` (meta-training
        drops second-derivative terms)."""
        return gaussian_queries(x.detach(), self.q, self.smoothing(x.dtype), gen,
                                std=self.sampling_std(x, state, gen, extras),
                                guide=self.guide(state), guide_alpha=self.guide_alpha)

    @abstractmethod
    def update(self, x: torch.Tensor, grad: torch.Tensor, state: State) -> torch.Tensor:
        """The parameter update: returns the next points."""

    def step(self, x: torch.Tensor, state: State, gen: torch.Generator) -> Queries[StepOutput]:
        """One iteration: estimate the gradient (its queries), then update.  Advances
        ``state.t`` and keeps this step's estimate and update as ``prev_grad`` /
        ``prev_update`` (the inputs of Guided ES and of the QueryRNN at the next step)."""
        extras: dict[str, torch.Tensor] = {}
        est = yield from self.estimate(x, state, gen, extras)
        x_new = self.update(x, est.grad, state)
        state.prev_grad, state.prev_update = est.grad.detach(), (x_new - x).detach()
        state.t += 1
        return StepOutput(x_new, est.fx, est.grad, extras)
