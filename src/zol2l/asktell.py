"""``AskTell``: drive any registered optimizer one step at a time, evaluating its points
yourself (``X = opt.ask()``, then ``opt.tell(values)``).

It is the same optimizer, oracle and loop as :func:`zol2l.minimize`: the loop
(:meth:`zol2l.loop.Run.queries`) is a generator that yields each batch of query points and
is sent their values; ``minimize`` answers with the objective, ``AskTell`` hands the points to
you and sends on what you tell.  So for the same seed and settings the iterates, the query
counts and the best value equal ``minimize``'s bit for bit, for every optimizer (ZO-SZVR-G's
snapshot steps ask for ``q0 + 1`` points, its inner steps for ``2(q + 1)``, and the run's
last ask is the final point alone, as ``minimize`` queries it).  The run's computations
happen inside :meth:`tell` under ``torch.no_grad()``; your own grad mode is left alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from zol2l.api import MinimizeResult, finish
from zol2l.blackbox import settings
from zol2l.loop import Run
from zol2l.oracle import NonFinite, batch_values

__all__ = ["AskTell"]

ASKTELL_KEYWORDS = ("method", "x0", "seed", "budget", "bounds", "steps", "nonfinite")


_grad_enabled = torch.is_grad_enabled
_set_grad = torch._C._set_grad_enabled  # what torch.no_grad() calls


def _answered_by_tell(points: torch.Tensor) -> None:
    raise RuntimeError("an AskTell run's points are evaluated by its user (ask/tell)")


class AskTell:
    """Ask/tell access to optimizer ``method`` started at ``x0``.

    Args:
        method: a registered optimizer name.
        x0: 1-D start (numpy: :meth:`ask` returns numpy arrays; tensor: tensors).
        seed, budget, bounds: as in :func:`zol2l.minimize`.
        steps: as in :func:`zol2l.minimize` (default 200, or unlimited with a budget).
        nonfinite: as in :func:`zol2l.minimize`.
        hyperparameters: the optimizer's (``q``, ``mu``, ``lr``, ``delta``, ...).

    Attributes:
        x: current iterate; ``best_x`` / ``best_f``: best iterate seen and its value;
        nqueries: values told so far; stop_reason: ``None`` while running, then why it ended;
        result: the :class:`~zol2l.api.MinimizeResult` once the run ended.

    Examples::

        opt = AskTell("zo-adam", np.zeros(10), budget=2000)
        while opt.stop_reason is None:
            X = opt.ask()                      # [n, d], n = q + 1 for most steps
            opt.tell([f(x) for x in X])
        print(opt.best_x, opt.best_f)
    """

    def __init__(self, method: str, x0: Any, seed: int = 0, budget: int | None = None,
                 bounds: Any = None, *, steps: int | None = None,
                 nonfinite: NonFinite = "raise", **hyperparameters: Any) -> None:
        self._cfg = cfg = settings(method, x0, steps=steps, seed=seed, budget=budget,
                                   nonfinite=nonfinite, bounds=bounds, extra=ASKTELL_KEYWORDS,
                                   hyperparameters=hyperparameters)
        self._problem = cfg.problem(_answered_by_tell, vectorized=True)
        self._run = Run(cfg.optimizer(), self._problem, cfg.steps, seed=cfg.seed,
                        budget=cfg.budget, nonfinite=cfg.nonfinite)
        self._loop = self._run.queries()
        self._request: torch.Tensor | None = None  # the pending points, [1, n, d]
        self._asked = False
        self._ended = "closed"
        self.result: MinimizeResult | None = None
        self._resume(None)  # run up to the first batch of points

    def _resume(self, values: torch.Tensor | None) -> None:
        """Run the loop up to its next batch of points (or its end), under no_grad (the
        grad-mode switch that ``torch.no_grad()`` makes, without its context object, which
        costs 10x more: ``python bench/bench_overhead.py --parts``)."""
        mode = _grad_enabled()
        _set_grad(False)
        try:
            self._request = next(self._loop) if values is None else self._loop.send(values)
        except StopIteration as done:
            self._request = None
            self.result = finish(self._cfg, done.value, stacklevel=4)
        except BaseException as exc:  # the run is over; the error surfaces in tell()
            self._request = None
            self._ended = f"error: {exc}"
            raise
        finally:
            _set_grad(mode)

    # ------------------------------------------------------------------ user side
    def ask(self) -> Any:
        """The points of the next oracle call, ``[n, d]`` (numpy when ``x0`` was numpy).  They
        are a fresh array that the run does not read again: yours to keep or modify."""
        if self._request is None:
            raise RuntimeError(f"the run has ended ({self.stop_reason}); nothing to ask")
        if self._asked:
            raise RuntimeError("ask() called twice: tell() the values of the points of the "
                               "previous ask() first")
        self._asked = True
        pts = self._problem.project(self._request)[0]
        return pts.cpu().numpy() if self._cfg.is_numpy else pts

    def tell(self, values: Any) -> None:
        """Give the values of the points of the last :meth:`ask`, in the same order."""
        request = self._request
        if not self._asked or request is None:
            raise RuntimeError("tell() without a pending ask(): call ask() first")
        n = request.shape[1]
        if isinstance(values, torch.Tensor):  # as a vectorized objective's output ([n] or
            flat: Any = values                # [n, 1]: a clear error below)
            count = values.numel()
        else:  # as a point-wise objective's values (float64, then the run's dtype)
            flat = np.asarray(values, dtype=np.float64).reshape(-1)
            count = flat.shape[0]
        if count != n:
            raise ValueError(f"tell() got {count} values for the {n} points of ask()")
        told = batch_values(flat, n, request.dtype, request.device)
        self._asked = False
        self._resume(told[None, :])  # errors of the run (e.g. a NaN value) surface here

    def close(self) -> None:
        """End the run now; idempotent."""
        self._loop.close()
        self._request = None

    def __enter__(self) -> AskTell:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ state
    @property
    def stop_reason(self) -> str | None:
        """``None`` while points remain to ask, else why the run ended."""
        if self.result is not None:
            return self.result.stop_reason
        return None if self._request is not None else self._ended

    @property
    def nqueries(self) -> int:
        """Values told so far (the run's oracle count)."""
        return self._run.oracle.queries

    @property
    def x(self) -> Any:
        """The current iterate (the last one once the run ended)."""
        if self.result is not None:
            return self.result.x_last
        return self._cfg.output(self._run.x[0])

    @property
    def best_x(self) -> Any:
        """The best iterate seen (by its told value)."""
        if self.result is not None:
            return self.result.x
        return self._cfg.output(self._run.best.x[0])

    @property
    def best_f(self) -> float:
        """The value of :attr:`best_x` (``inf`` before the first step ends)."""
        if self.result is not None:
            return self.result.fun
        return float(self._run.best.loss[0])
