"""Peers of ``zol2l benchmark``: CMA-ES (pycma) and nevergrad's NGOpt behind the
:class:`~zol2l.optimizers.base.ZOOptimizer` interface, so that they query the objective
through the same :class:`~zol2l.oracle.Oracle` (one call per step, every point counted) and
step through the same loop under the same budget as zol2l's optimizers.

* ``peer:cma-es``: ``cma.CMAEvolutionStrategy`` per row, its default population
  ``4 + floor(3 ln d)``, the initial step ``sigma0`` (default 1, pycma has none); diagonal
  (separable) CMA from ``d >= 500`` (``CMA_diagonal``), as COCO's large-scale studies use.
  The iterate is the best point evaluated so far (``es.best.x``; pycma's mean drifted far
  from its own samples on converged runs here, e.g. different-powers at d = 10 jumped from
  1e-11 to 1e5 within 50 iterations).  A row that meets pycma's termination criteria
  stays at its mean for the rest of the budget (its queries are still spent), since asking
  a converged strategy on a flat fitness inflates its step.
* ``peer:ngopt``: ``nevergrad.optimizers.NGOpt`` per row with the run's budget, asked for
  ``batch`` candidates per step (``num_workers = batch``); the iterate is its recommendation.

They are optional extras (``pip install -e '.[peers]'``); a missing library raises
:class:`PeerUnavailableError` with the install command.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from zol2l.estimators import Queries
from zol2l.optimizers.base import State, StepOutput, ZOOptimizer


class PeerUnavailableError(ImportError):
    """A peer's library is not installed."""


def _library(module: str, package: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise PeerUnavailableError(
            f"the benchmark peer needs {package}: pip install -e '.[peers]' "
            f"(or pip install {package})") from None


def available_peers() -> list[str]:
    """Names of the peers whose libraries are installed."""
    names = []
    for name, (module, _) in LIBRARIES.items():
        try:
            importlib.import_module(module)
            names.append(name)
        except ImportError:
            pass
    return names


@dataclass(kw_only=True)
class PeerState(State):
    """A peer's state: the library's optimizer object of each row."""

    rows: list[Any] = field(default_factory=list)


class Peer(ZOOptimizer):
    """A wrapped library optimizer: ``dim`` is needed up front (queries per step).

    Args:
        dim: the problems' dimension.
        budget: queries per row the run may spend (NGOpt plans with it).
        seed: the library's seed (offset by the row).
    """

    library: ClassVar[tuple[str, str]] = ("", "")
    #: the library sets its own query count and step: zol2l's settings are not recorded
    unrecorded = ("q", "mu", "lr", "delta")

    def __init__(self, *, dim: int, budget: int | None = None, seed: int = 0,
                 q: int = 20, **kwargs: Any) -> None:
        super().__init__(q=q, **kwargs)
        _library(*self.library)
        self.dim, self.budget, self.seed = int(dim), budget, int(seed)

    def update(self, x: torch.Tensor, grad: torch.Tensor, state: State) -> torch.Tensor:
        raise NotImplementedError("peers step through step()")


def _told(values: torch.Tensor) -> np.ndarray:
    """The values as the libraries take them: float64, NaN and inf as 1e300 (a float32 run's
    values are widened first, so the stand-in does not overflow to inf)."""
    wide = values.detach().cpu().double()
    return torch.where(torch.isfinite(wide), wide, torch.full_like(wide, 1e300)).numpy()


class CMAES(Peer):
    """pycma's CMA-ES (see the module docstring)."""

    name = "peer:cma-es"
    library = ("cma", "cma")

    def __init__(self, *, sigma0: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not float(sigma0) > 0:
            raise ValueError(f"sigma0 must be positive, got {sigma0}")
        self.sigma0 = float(sigma0)
        self.popsize = 4 + int(3 * np.log(self.dim))

    def hyperparameters(self) -> dict[str, Any]:
        """The settings, and the population and diagonal mode derived from ``dim``."""
        return {**super().hyperparameters(), "popsize": self.popsize,
                "separable": self.dim >= 500}

    def queries_at(self, t: int) -> int:
        return self.popsize

    def init_state(self, x: torch.Tensor) -> PeerState:
        cma = _library(*self.library)
        opts = {"seed": self.seed + 1, "verbose": -9, "popsize": self.popsize,
                "CMA_diagonal": self.dim >= 500, "maxfevals": np.inf}
        rows = x.detach().cpu().double().numpy()
        strategies = []
        for i, row in enumerate(rows):
            strategies.append(cma.CMAEvolutionStrategy(row, self.sigma0,
                                                       {**opts, "seed": self.seed + 1 + i}))
        return PeerState(rows=strategies)

    def step(self, x: torch.Tensor, state: PeerState,  # type: ignore[override]
             gen: torch.Generator) -> Queries[StepOutput]:
        strategies = state.rows
        # a strategy that met pycma's own termination criteria (converged, flat fitness)
        # is frozen at its mean: asked again, it would blow sigma up on a flat fitness
        done = [bool(es.stop()) for es in strategies]
        asked = [np.tile(es.mean, (self.popsize, 1)) if stop else np.asarray(es.ask())
                 for es, stop in zip(strategies, done, strict=True)]
        points = torch.as_tensor(np.stack(asked), dtype=x.dtype, device=x.device)
        values = yield points
        for es, cand, vals, stop in zip(strategies, asked, _told(values), done,
                                        strict=True):
            if not stop:
                es.tell(list(cand), vals.tolist())
        mean = np.stack([es.mean if es.best.x is None else es.best.x for es in strategies])
        state.t += 1
        return StepOutput(torch.as_tensor(mean, dtype=x.dtype, device=x.device),
                          values.min(dim=1).values, torch.zeros_like(x))


class NGOpt(Peer):
    """nevergrad's NGOpt (see the module docstring)."""

    name = "peer:ngopt"
    library = ("nevergrad", "nevergrad")

    def __init__(self, *, batch: int = 21, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(batch) < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.batch = int(batch)

    def queries_at(self, t: int) -> int:
        return self.batch

    def init_state(self, x: torch.Tensor) -> PeerState:
        ng = _library(*self.library)
        rows = x.detach().cpu().double().numpy()
        opts = []
        for i, row in enumerate(rows):
            param = ng.p.Array(init=row.copy())
            param.random_state = np.random.RandomState(self.seed + 1 + i)
            opts.append(ng.optimizers.NGOpt(parametrization=param, budget=self.budget,
                                            num_workers=self.batch))
        return PeerState(rows=opts)

    def step(self, x: torch.Tensor, state: PeerState,  # type: ignore[override]
             gen: torch.Generator) -> Queries[StepOutput]:
        opts = state.rows
        asked = [[o.ask() for _ in range(self.batch)] for o in opts]
        points = np.stack([np.stack([c.value for c in cands]) for cands in asked])
        values = yield torch.as_tensor(points, dtype=x.dtype, device=x.device)
        for o, cands, vals in zip(opts, asked, _told(values), strict=True):
            for cand, val in zip(cands, vals, strict=True):
                o.tell(cand, float(val))
        rec = np.stack([o.provide_recommendation().value for o in opts])
        state.t += 1
        return StepOutput(torch.as_tensor(rec, dtype=x.dtype, device=x.device),
                          values.min(dim=1).values, torch.zeros_like(x))


PEERS: dict[str, type[Peer]] = {CMAES.name: CMAES, NGOpt.name: NGOpt}
LIBRARIES = {name: cls.library for name, cls in PEERS.items()}


def peer_class(name: str) -> type[Peer]:
    """The peer class of ``peer:NAME``."""
    try:
        return PEERS[name]
    except KeyError:
        raise ValueError(f"unknown peer {name!r}; peers: {', '.join(PEERS)}") from None
