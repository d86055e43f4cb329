"""``AskTell``: drive any registered optimizer one step at a time, evaluating its points
yourself (``X = opt.ask()``, then ``opt.tell(values)``).

It is the same optimizer, oracle and loop as :func:`zol2l.minimize`: the run executes
:func:`zol2l.api.solve` in a coroutine (a ``greenlet``) whose objective hands each oracle
call's points to :meth:`AskTell.ask` and is suspended until :meth:`AskTell.tell` returns their
values (a switch costs about a microsecond, unlike a thread hand-off).  So for the
same seed and settings the iterates, the query counts and the best value equal
``minimize``'s bit for bit, for every optimizer (ZO-SZVR-G's snapshot steps ask for
``q0 + 1`` points, its inner steps for ``2(q + 1)``, and the run's last ask is the final
point alone, as ``minimize`` queries it).  Torch's grad mode is kept per side across the
switches.  Use an ``AskTell`` from one thread.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from greenlet import greenlet

from zol2l.api import MinimizeResult, solve
from zol2l.blackbox import settings
from zol2l.loop import Progress
from zol2l.oracle import NonFinite

__all__ = ["AskTell"]

ASKTELL_KEYWORDS = ("method", "x0", "seed", "budget", "bounds", "steps", "nonfinite")


class _Closed(Exception):
    """Thrown into the worker to unwind a run that the user closed."""


_grad_enabled = torch.is_grad_enabled
_set_grad = torch._C._set_grad_enabled  # what torch.set_grad_enabled calls, without its object


def _switch(target: greenlet, *args: Any) -> Any:
    """Switch to ``target``; this side's torch grad mode is restored when it resumes."""
    mode = _grad_enabled()
    try:
        return target.switch(*args)
    finally:
        if _grad_enabled() != mode:
            _set_grad(mode)


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
        self._cfg = settings(method, x0, steps=steps, seed=seed, budget=budget,
                             nonfinite=nonfinite, bounds=bounds, extra=ASKTELL_KEYWORDS,
                             hyperparameters=hyperparameters)
        self._problem = self._cfg.problem(self._bridge, vectorized=True)
        self._request: torch.Tensor | None = None
        self._asked = False
        self.result: MinimizeResult | None = None
        self._progress: Progress | None = None
        self._ended = "closed"
        self.nqueries = 0
        self._user = greenlet.getcurrent()
        self._worker = greenlet(self._work)
        _switch(self._worker)  # run up to the first oracle call

    # ------------------------------------------------------------------ worker side
    def _bridge(self, points: torch.Tensor) -> Any:
        self._request = points
        return _switch(self._user)

    def _observe(self, p: Progress) -> bool:
        self._progress = p
        return False

    def _work(self) -> None:
        try:
            self.result = solve(self._cfg, self._problem, self._observe)
        except _Closed:
            self._ended = "closed"
        except BaseException as exc:  # re-raised in the user's tell()
            self._ended = f"error: {exc}"
            raise
        finally:
            self._request = None

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
        pts = self._request  # computed under no_grad: no graph to detach
        return pts.cpu().numpy() if self._cfg.is_numpy else pts

    def tell(self, values: Any) -> None:
        """Give the values of the points of the last :meth:`ask`, in the same order."""
        if not self._asked or self._request is None:
            raise RuntimeError("tell() without a pending ask(): call ask() first")
        n = self._request.shape[0]
        if isinstance(values, torch.Tensor):  # as a vectorized objective's output ([n] or
            flat: Any = values                # [n, 1]; the oracle checks the shape)
            count = values.numel()
        else:  # as a point-wise objective's values (float64, then the run's dtype)
            flat = np.asarray(values, dtype=np.float64).reshape(-1)
            count = flat.shape[0]
        if count != n:
            raise ValueError(f"tell() got {count} values for the {n} points of ask()")
        self._asked = False
        self.nqueries += n
        _switch(self._worker, flat)  # errors of the run (e.g. a NaN value) surface here

    def close(self) -> None:
        """End the run now (the suspended run unwinds); idempotent."""
        if self._request is not None and not self._worker.dead:
            mode = _grad_enabled()
            try:
                self._worker.throw(_Closed)
            finally:
                _set_grad(mode)
        self._request = None

    def __enter__(self) -> AskTell:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    # ------------------------------------------------------------------ state
    @property
    def stop_reason(self) -> str | None:
        """``None`` while points remain to ask, else why the run ended."""
        if self.result is not None:
            return self.result.stop_reason
        return None if self._request is not None else self._ended

    @property
    def x(self) -> Any:
        """The current iterate (the last one once the run ended)."""
        if self.result is not None:
            return self.result.x_last
        if self._progress is None:
            return self._cfg.output(self._problem.project(self._cfg.start))
        return self._cfg.output(self._progress.x[0])

    @property
    def best_x(self) -> Any:
        """The best iterate seen (by its told value)."""
        if self.result is not None:
            return self.result.x
        return self.x if self._progress is None else self._cfg.output(self._progress.best_x[0])

    @property
    def best_f(self) -> float:
        """The value of :attr:`best_x` (``inf`` before the first step ends)."""
        if self.result is not None:
            return self.result.fun
        return float("inf") if self._progress is None else float(self._progress.best_loss[0])
