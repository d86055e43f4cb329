"""Run a list of work units on a backend, with finished units kept on disk for ``--resume``.

A store folder holds one file per unit, ``UID.pt`` (written atomically, loaded with
``torch.load(weights_only=True)``), containing the unit's output and the hash of the run
configuration it was computed under.  ``resume=True`` reuses the units already there and
refuses a file computed under another configuration; the backend computes only the rest.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from zol2l.experiments.backends import Backend
from zol2l.experiments.options import RunOptions
from zol2l.experiments.units import RunContext, Unit
from zol2l.fileio import atomic_write


class UnitStore:
    """Finished units of runs under the configuration ``config``, one file each in ``folder``."""

    def __init__(self, folder: str | os.PathLike, config: str) -> None:
        self.folder, self.config = Path(folder), config

    def path(self, unit: Unit) -> Path:
        """The file of ``unit``."""
        return self.folder / f"{unit.uid}.pt"

    def save(self, unit: Unit, output: dict[str, Any]) -> None:
        """Write ``output`` atomically (a reader sees the whole file or none)."""
        atomic_write(self.path(unit), lambda tmp: torch.save(output, tmp))

    def load(self, unit: Unit) -> dict[str, Any] | None:
        """The stored output of ``unit``, or ``None`` if it has not finished."""
        path = self.path(unit)
        if not path.is_file():
            return None
        try:
            output = torch.load(path, weights_only=True)
        except Exception:  # unreadable (e.g. written by another version): recompute it
            return None
        if output.get("config") != self.config or output.get("uid") != unit.uid:
            raise ValueError(
                f"{path} was computed under another configuration (config "
                f"{output.get('config')}, this run {self.config}): resume with the same "
                f"settings, or use a fresh output folder (or delete {self.folder})")
        return output


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run; the message says what was kept and how to resume."""


def run_units(ctx: RunContext, units: Sequence[Unit], backend: Backend,
              options: RunOptions = RunOptions(), desc: str = "units"
              ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Run ``units`` on ``backend`` (the one ``options.backend`` names, already started);
    returns their outputs by uid and run statistics (``units``, ``computed``, ``reused``,
    ``retries``, units per node).

    With ``options.workdir`` each finished unit is written there as soon as it finishes;
    with ``options.resume`` the units already there are reused.  A ``KeyboardInterrupt``
    becomes :class:`Interrupted`, whose message says how many units were kept."""
    workdir = options.workdir
    unique = list({u.uid: u for u in units}.values())
    store = UnitStore(workdir, ctx.config) if workdir is not None else None
    outputs: dict[str, dict[str, Any]] = {}
    if store is not None and options.resume:
        for unit in unique:
            found = store.load(unit)
            if found is not None:
                outputs[unit.uid] = found
    reused = len(outputs)
    todo = [u for u in unique if u.uid not in outputs]
    computed: list[dict[str, Any]] = []

    def done(unit: Unit, output: dict[str, Any]) -> None:
        if store is not None:
            store.save(unit, output)
        outputs[unit.uid] = output
        computed.append(output)
        bar.update(1)

    with tqdm(total=len(unique), initial=reused, disable=not options.progress, desc=desc,
              unit="unit", leave=False) as bar:
        try:
            backend.run(ctx, todo, done, bar=bar)
        except KeyboardInterrupt:
            on_disk = sum(store.path(u).is_file() for u in unique) if store is not None else 0
            kept = (f"{on_disk} of {len(unique)} work units are finished and "
                    f"kept in {workdir}; run the same command with --resume to compute only "
                    "the missing ones") if store is not None else \
                f"{len(computed)} of {len(todo)} work units finished (none kept: no workdir)"
            raise Interrupted(kept) from None
    nodes = Counter(str(o.get("node")) for o in computed)
    stats = {"units": len(unique), "computed": len(computed), "reused": reused,
             "retries": sum(int(o.get("attempt", 1)) - 1 for o in computed),
             "compute_seconds": sum(float(o["seconds"]) for o in computed),
             "cpu_seconds": sum(float(o.get("cpu_seconds", 0.0)) for o in computed),
             "units_per_node": dict(sorted(nodes.items()))}
    return outputs, stats


def add_stats(total: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    """Add the statistics of another :func:`run_units` call (tuning runs several)."""
    out = dict(total)
    for key in ("units", "computed", "reused", "retries", "compute_seconds", "cpu_seconds"):
        out[key] = out.get(key, 0) + more[key]
    nodes = Counter(out.get("units_per_node", {}))
    nodes.update(more["units_per_node"])
    out["units_per_node"] = dict(sorted(nodes.items()))
    return out
