"""Files of a meta-training run, all written atomically (temporary file + ``os.replace``).

``OUT/`` holds

* ``{stage}.safetensors`` + ``{stage}.json``: the best weights by validation loss so far
  (:func:`zol2l.learned.checkpoint.save_checkpoint`; the stage-2 file also holds the frozen
  UpdateRNN), usable as ``checkpoint=`` of the ``zo-lstm*`` optimizers;
* ``trainer_state.pt``: everything ``--resume`` needs to continue bit for bit (weights, Adam
  state, counters, best weights, log, RNG state), ``torch.save`` / ``torch.load(weights_only=
  True)``;
* ``log.csv``: one row per run (meta-loss, training losses, validation losses, seconds).
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from zol2l.fileio import atomic_write
from zol2l.learned.checkpoint import save_checkpoint
from zol2l.learned.rnn import CoordinateLSTM
from zol2l.meta.config import MetaConfig
from zol2l.seeding import mix_seed

LOG_COLUMNS = ("run", "epoch", "meta_step", "meta_loss", "train_initial_loss",
               "train_final_loss", "val_loss", "val_final_loss", "elapsed_s")
#: settings that may differ when resuming (more epochs extend a finished run)
RESUMABLE = {"epochs"}


class TrainerFiles:
    """The output folder of one meta-training run."""

    def __init__(self, out: Path, config: MetaConfig) -> None:
        self.out, self.config = out, config
        self.state_path = out / "trainer_state.pt"
        self.best_path = out / f"{config.stage}.safetensors"
        self.log_path = out / "log.csv"

    def check_fresh(self) -> None:
        """Refuse to overwrite a run that could be resumed."""
        if self.state_path.exists():
            raise ValueError(f"{self.out} already holds a meta-training run; pass --resume to "
                             "continue it or choose another --out")

    def load_state(self) -> dict[str, Any]:
        """The saved trainer state, checked against the current settings."""
        if not self.state_path.exists():
            raise FileNotFoundError(f"nothing to resume: {self.state_path} does not exist")
        try:
            state = torch.load(self.state_path, weights_only=True)
            before = {"init_alpha": 1.0, **json.loads(state["config"])}  # older runs lack it
        except Exception as exc:  # torch.load raises many types for a damaged file
            raise ValueError(
                f"cannot resume from {self.state_path}: the file is truncated or corrupt "
                f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); restore it, or "
                "delete it to start the run afresh") from None
        now = self.config.to_dict()
        changed = sorted(k for k in now if k not in RESUMABLE and before.get(k) != now[k])
        if changed:
            detail = ", ".join(f"{k}: {before.get(k)!r} -> {now[k]!r}" for k in changed)
            raise ValueError(f"cannot resume {self.out} with different settings ({detail})")
        return state

    def save_state(self, state: dict[str, Any]) -> None:
        """Write ``trainer_state.pt`` atomically."""
        atomic_write(self.state_path, lambda tmp: torch.save(state, tmp))

    def save_best(self, modules: dict[str, CoordinateLSTM], metadata: dict[str, Any]) -> None:
        """Write the best weights and their metadata sidecar."""
        save_checkpoint(self.best_path, modules, metadata)

    def write_log(self, rows: list[dict[str, Any]]) -> None:
        """Rewrite ``log.csv`` (rows missing a column leave it empty)."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=LOG_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()

        def write(tmp: str) -> None:
            with open(tmp, "w", newline="") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
        atomic_write(self.log_path, write)


@dataclass
class Window:
    """One unrolled truncation: its last iterate, meta-loss values, steps and predicted stds."""

    x: torch.Tensor
    values: list[torch.Tensor]
    steps: list[int]
    std_preds: list[torch.Tensor]


def derive_seed(*keys: int) -> int:
    """A seed from integer keys (seed, epoch, run, purpose)."""
    return mix_seed(*keys, salt=12_345)
