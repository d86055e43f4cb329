"""How a run executes, as one value: :class:`RunOptions`.

What runs (the task, the optimizers and their hyperparameters, the instances, trials and
steps) is given to :func:`~zol2l.experiments.evaluate.evaluate`,
:func:`~zol2l.experiments.tune.tune` and :func:`~zol2l.experiments.attack.attack` directly;
how it runs (where the work units go, where they are kept, how they are chunked, the run
seed, the progress bar) travels as one frozen :class:`RunOptions` from the CLI down to
:func:`~zol2l.experiments.runner.run_units`.  The numbers depend on ``seed`` and on the chunk
sizes (they are part of each unit's identity), never on ``backend``, ``workdir``, ``resume``
or ``progress``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zol2l.experiments.backends import Backend

#: instances per work unit unless a run says otherwise
DEFAULT_INSTANCE_CHUNK = 10


@dataclass(frozen=True)
class RunOptions:
    """How a run executes.

    Attributes:
        backend: a :class:`~zol2l.experiments.backends.Backend`, ``"local"``, ``"ray"`` or
            ``None`` (local).
        workdir: folder where each finished work unit is kept (``None``: not kept).
        resume: reuse the units already kept in ``workdir``.
        instance_chunk: instances per work unit (``None``: all).
        trial_chunk: trials per work unit (``None``: all).
        progress: show a progress bar.
        seed: the run seed (each unit's seed is derived from it).
    """

    backend: Backend | str | None = None
    workdir: str | os.PathLike | None = None
    resume: bool = False
    instance_chunk: int | None = DEFAULT_INSTANCE_CHUNK
    trial_chunk: int | None = None
    progress: bool = True
    seed: int = 0

    def chunks(self) -> dict[str, int | None]:
        """The ``"chunks"`` entry of ``results.json``."""
        return {"instances": self.instance_chunk, "trials": self.trial_chunk}
