"""Where work units run: in this process (:class:`LocalBackend`, the default) or as Ray tasks
(:class:`RayBackend`, ``pip install -e '.[distributed]'``).

Both run :func:`zol2l.experiments.units.execute` on each unit and hand every finished unit to a
``done(unit, output)`` callback in the calling process, as soon as it finishes (the harness
stores it there, so an interrupted run keeps its finished units).  The Ray backend puts the
shared :class:`~zol2l.experiments.units.RunContext` (task, target weights, data) into the
object store once, lets Ray retry a unit whose worker died (``max_retries``) and counts those
retries with a small actor; a ``KeyboardInterrupt`` cancels the outstanding tasks.
"""

from __future__ import annotations

import logging
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from tqdm import tqdm

from zol2l.experiments.units import RunContext, Unit, execute

RAY_MISSING = "--backend ray needs Ray: pip install -e '.[distributed]'"
#: test hook: comma-separated submission indices whose first attempt kills its Ray worker
KILL_ENV = "ZOL2L_TEST_KILL_UNITS"

Done = Callable[[Unit, dict[str, Any]], None]


class RayUnavailableError(ImportError):
    """``--backend ray`` without Ray installed."""


class Backend(ABC):
    """Runs work units and reports each finished one to ``done``."""

    name: str = ""

    @abstractmethod
    def run(self, ctx: RunContext, units: Sequence[Unit], done: Done,
            bar: tqdm | None = None) -> None:
        """Run ``units`` (any order, possibly in parallel); call ``done(unit, output)`` in this
        process for each finished unit.  ``KeyboardInterrupt`` stops outstanding work."""

    def describe(self) -> dict[str, Any]:
        """JSON-serializable facts for ``results.json`` (``name``, ``workers``, ...)."""
        return {"name": self.name}

    def close(self) -> None:  # noqa: B027  (optional hook: most backends hold nothing)
        """Release what the backend started."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalBackend(Backend):
    """Units one after another in this process, each batched as one run."""

    name = "local"

    def run(self, ctx: RunContext, units: Sequence[Unit], done: Done,
            bar: tqdm | None = None) -> None:
        for unit in units:
            last = [0.0]

            def tick(t: int, unit: Unit = unit, last: list[float] = last) -> None:
                now = time.monotonic()
                if bar is not None and (now - last[0] > 0.5 or t + 1 == ctx.steps):
                    last[0] = now
                    bar.set_postfix_str(f"{unit.optimizer} step {t + 1}/{ctx.steps}",
                                        refresh=True)

            done(unit, execute(ctx, unit, tick=tick if bar is not None else None))

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "workers": 1, "nodes": 1}


class AttemptCounter:
    """Ray actor: counts the attempts of each unit (a retry is an attempt after the first)."""

    def __init__(self) -> None:
        self.attempts: dict[str, int] = {}

    def begin(self, uid: str) -> int:
        """Register an attempt of ``uid``; returns its number (1 = first)."""
        self.attempts[uid] = self.attempts.get(uid, 0) + 1
        return self.attempts[uid]

    def count(self, uid: str) -> int:
        """Attempts of ``uid`` so far."""
        return self.attempts.get(uid, 0)


def _work(ctx: RunContext, unit: Unit, counter: Any, kill: bool) -> dict[str, Any]:
    """The Ray task: run one unit on a worker, recording its attempt and node.

    The attempt is registered with the counter without waiting for the answer: a task blocked
    in ``ray.get`` lends its CPU to the next task, which would then run alongside it.  The
    driver reads the attempt number from the returned reference."""
    import ray

    attempt = counter.begin.remote(unit.uid)
    first = kill and int(ray.get(attempt)) == 1  # (the test hook alone waits)

    def tick(t: int) -> None:
        if first and t == min(1, ctx.steps - 1):
            os._exit(1)  # test hook: the worker process dies in the middle of the unit

    out = execute(ctx, unit, tick=tick if kill else None)
    out["attempt"] = attempt
    out["node"] = ray.get_runtime_context().get_node_id()
    return out


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError(RAY_MISSING) from exc
    return ray


class RayBackend(Backend):
    """Each unit is a Ray task (``num_cpus`` = the unit's threads).

    Args:
        address: a running cluster (``HOST:PORT`` of its head node, or ``"auto"``); ``None``
            starts a private local Ray instance (``num_cpus`` CPUs, default all).  If Ray is
            already initialized in this process, that instance is used as is.
        num_cpus: CPUs of the local instance started when ``address`` is ``None``.
        max_retries: how often Ray retries a unit whose worker died.
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None,
                 max_retries: int = 3) -> None:
        ray = _import_ray()
        self.ray, self.address, self.max_retries = ray, address, int(max_retries)
        self.owned = not ray.is_initialized()
        if self.owned:
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no reports home
            ray.init(address=address or "local", include_dashboard=False,
                     num_cpus=num_cpus if address is None else None,
                     logging_level=logging.WARNING)
        self._remote = ray.remote(_work)
        self._counter: Any = None
        self._shared: tuple[RunContext, Any] | None = None

    def _put(self, ctx: RunContext) -> Any:
        """The object-store reference of ``ctx``: put once per context, not once per task."""
        if self._shared is None or self._shared[0] is not ctx:
            self._shared = (ctx, self.ray.put(ctx))
        return self._shared[1]

    def _attempts(self) -> Any:
        if self._counter is None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            here = self.ray.get_runtime_context().get_node_id()
            self._counter = self.ray.remote(num_cpus=0)(AttemptCounter).options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=True)).remote()
        return self._counter

    def run(self, ctx: RunContext, units: Sequence[Unit], done: Done,
            bar: tqdm | None = None) -> None:
        if not units:
            return
        device = str(ctx.task.describe().get("device", "cpu"))
        if device != "cpu":
            raise ValueError(f"--backend ray runs units on CPU workers, not on {device}: "
                             "use --device cpu or the local backend")
        ray = self.ray
        shared, counter = self._put(ctx), self._attempts()
        kill = {int(k) for k in os.environ.get(KILL_ENV, "").split(",") if k.strip()}
        pending = {
            self._remote.options(num_cpus=ctx.threads, max_retries=self.max_retries,
                                 retry_exceptions=False, name=f"zol2l:{unit.uid}")
            .remote(shared, unit, counter, k in kill): unit
            for k, unit in enumerate(units)
        }
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    unit = pending.pop(ref)
                    done(unit, self._get(ref, unit))
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise

    def _get(self, ref: Any, unit: Unit) -> dict[str, Any]:
        ray = self.ray
        try:
            out = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # the unit itself failed: its error
            cause = getattr(exc, "cause", None)
            if isinstance(cause, Exception):
                raise cause from None
            raise
        except ray.exceptions.RayError as exc:  # worker lost more often than retried, ...
            raise RuntimeError(f"unit {unit.uid} failed after {self.max_retries} retries "
                               f"(max_retries): {type(exc).__name__}: {exc}") from exc
        try:
            out["attempt"] = int(ray.get(out["attempt"]))
        except ray.exceptions.RayError:  # the worker that asked is gone: ask the counter
            out["attempt"] = int(ray.get(self._counter.count.remote(unit.uid)))
        return out

    def describe(self) -> dict[str, Any]:
        ray = self.ray
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        return {"name": self.name, "address": self.address,
                "workers": int(ray.cluster_resources().get("CPU", 0)), "nodes": len(nodes),
                "max_retries": self.max_retries}

    def close(self) -> None:
        if self._counter is not None:
            self.ray.kill(self._counter)
            self._counter = None
        self._shared = None
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()


BACKENDS = ("local", "ray")


def make_backend(name: str = "local", address: str | None = None, **options: Any) -> Backend:
    """A backend by name: ``"local"`` or ``"ray"`` (``address``: a running Ray cluster;
    ``options``: :class:`RayBackend` keyword arguments such as ``num_cpus``)."""
    if name == "local":
        if address:
            raise ValueError("--ray-address needs --backend ray")
        return LocalBackend()
    if name == "ray":
        return RayBackend(address, **options)
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


@contextmanager
def backend_scope(backend: Backend | str | None) -> Iterator[Backend]:
    """Use ``backend``; a name (or ``None`` = local) is made here and closed afterwards."""
    if backend is None or isinstance(backend, str):
        made = make_backend(backend or "local")
        try:
            yield made
        finally:
            made.close()
    else:
        yield backend
