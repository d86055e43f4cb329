"""Saving and loading learned ZO optimizers: safetensors weights + a JSON metadata sidecar.

A checkpoint is ``NAME.safetensors`` holding the tensors of one or both modules
(``update.*`` for the :class:`~zol2l.learned.rnn.UpdateRNN`, ``query.*`` for the
:class:`~zol2l.learned.rnn.QueryRNN`) and ``NAME.json`` next to it::

    {"format": "zol2l-zo-lstm", "version": 1, "sha256": "<hex of the .safetensors file>",
     "modules": {"update": {RNNConfig}, "query": {RNNConfig}},
     "stage", "task", "task_options", "command", "seed", "created", "training_seconds",
     "final_validation_loss", "best_validation_loss", ...}

The sha256 is verified at every load; a mismatch or an unreadable file raises
:class:`CheckpointError` with the path and what to do.  ``pretrained:NAME`` names the shipped
checkpoints ``src/zol2l/pretrained/NAME-{update,query}.safetensors`` (stage 1 holds the
UpdateRNN, stage 2 both modules, its UpdateRNN bitwise equal to stage 1's).
Writes are atomic: a temporary file in the same folder, then :func:`os.replace`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from zol2l.fileio import atomic_write, sha256_file, write_json_atomic
from zol2l.learned.rnn import CoordinateLSTM, QueryRNN, RNNConfig, UpdateRNN
from zol2l.learned.scalefree import ScaleFreeUpdateRNN, SchemeConstants

FORMAT = "zol2l-zo-lstm"
PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"
MODULES: dict[str, type[CoordinateLSTM]] = {"update": UpdateRNN, "query": QueryRNN}


def module_class(kind: str, config: RNNConfig) -> type[CoordinateLSTM]:
    """The module class of ``kind`` for ``config`` (the scale-free UpdateRNN by its scheme)."""
    if kind == "update" and config.scheme == "scale-free":
        return ScaleFreeUpdateRNN
    return MODULES[kind]


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt (sha256 mismatch) or lacks a needed module."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: its modules by kind and its metadata."""

    path: Path
    modules: dict[str, CoordinateLSTM]
    metadata: dict[str, Any]


def resolve(spec: str | os.PathLike, stage: str = "query") -> Path:
    """The ``.safetensors`` path of ``spec``: a path, or ``pretrained:NAME`` for the shipped
    ``NAME-{stage}.safetensors``."""
    text = str(spec)
    if text.startswith("pretrained:"):
        name = text.split(":", 1)[1]
        if stage not in MODULES:
            raise ValueError(f"stage must be 'update' or 'query', got {stage!r}")
        path = PRETRAINED_DIR / f"{name}-{stage}.safetensors"
        if not path.exists():
            shipped = sorted({p.stem.rsplit("-", 1)[0] for p in PRETRAINED_DIR.glob("*.json")})
            raise CheckpointError(
                f"no pretrained optimizer {name!r} (stage {stage}) in {PRETRAINED_DIR}; "
                f"shipped: {', '.join(shipped) or 'none'}"
            )
        return path
    path = Path(text)
    return path if path.suffix == ".safetensors" else path.with_suffix(".safetensors")


def sidecar(path: str | os.PathLike) -> Path:
    """The JSON metadata file of a ``.safetensors`` checkpoint."""
    return Path(path).with_suffix(".json")


def save_checkpoint(path: str | os.PathLike, modules: dict[str, CoordinateLSTM],
                    metadata: dict[str, Any] | None = None) -> Path:
    """Write ``modules`` (kind -> module) to ``path`` (.safetensors) and its JSON sidecar."""
    path = resolve(path)
    tensors: dict[str, torch.Tensor] = {}
    configs: dict[str, Any] = {}
    scheme: dict[str, Any] = {}
    for kind, module in modules.items():
        if kind not in MODULES or not isinstance(module, module_class(kind, module.config)):
            raise TypeError(f"module {kind!r} must be a {MODULES.get(kind, CoordinateLSTM)}")
        for key, value in module.state_dict().items():
            tensors[f"{kind}.{key}"] = value.detach().cpu().contiguous()
        configs[kind] = module.config.to_dict()
        if isinstance(module, ScaleFreeUpdateRNN):
            scheme = {"scheme_constants": module.constants.to_dict()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"format": FORMAT}))
    meta = {"format": FORMAT, "version": 1, **(metadata or {}), **scheme, "file": path.name,
            "sha256": sha256_file(path), "modules": configs}
    write_json_atomic(sidecar(path), meta)
    return path


def load_checkpoint(spec: str | os.PathLike, stage: str = "query") -> Checkpoint:
    """Load and verify a checkpoint (see :func:`resolve` for ``spec``)."""
    path = resolve(spec, stage)
    meta_path = sidecar(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not meta_path.exists():
        raise CheckpointError(f"checkpoint {path} has no metadata file {meta_path.name}")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"metadata {meta_path} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "sha256" not in meta \
            or not isinstance(meta.get("modules"), dict):
        raise CheckpointError(f"{meta_path} is not a {FORMAT} metadata file (expected a JSON "
                              "object with 'format', 'sha256' and a 'modules' table); restore "
                              "it or re-run meta-training")
    unknown = sorted(set(meta["modules"]) - set(MODULES))
    if unknown:
        raise CheckpointError(f"{meta_path} names unknown module kind(s) {', '.join(unknown)}; "
                              f"known: {', '.join(MODULES)}")
    actual = sha256_file(path)
    if actual != meta["sha256"]:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: sha256 {actual} does not match {meta['sha256']} "
            f"recorded in {meta_path.name}; restore the file or re-run meta-training"
        )
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read: {exc}") from None
    modules: dict[str, CoordinateLSTM] = {}
    constants = meta.get("scheme_constants")
    for kind, config in meta["modules"].items():
        try:
            rnn_config = RNNConfig.from_dict(config)
            cls = module_class(kind, rnn_config)
            if cls is ScaleFreeUpdateRNN:
                module: CoordinateLSTM = ScaleFreeUpdateRNN(
                    rnn_config, constants=SchemeConstants.from_dict(constants or {}))
            else:
                module = cls(rnn_config)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise CheckpointError(f"{meta_path}: bad {kind} module configuration "
                                  f"({type(exc).__name__}: {exc})") from None
        prefix = f"{kind}."
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            module.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(f"checkpoint {path}: bad {kind} weights: {exc}") from None
        modules[kind] = module
    return Checkpoint(path, modules, meta)


def export_pretrained(source: str | os.PathLike, name: str) -> Path:
    """Copy a meta-trained checkpoint to ``pretrained/NAME-{stage}.safetensors`` (+ .json),
    verifying it first; its metadata records the stage."""
    ckpt = load_checkpoint(source)
    stage = ckpt.metadata["stage"]
    target = PRETRAINED_DIR / f"{name}-{stage}.safetensors"
    data = Path(ckpt.path).read_bytes()
    atomic_write(target, lambda tmp: Path(tmp).write_bytes(data))
    write_json_atomic(sidecar(target), {**ckpt.metadata, "file": target.name})
    load_checkpoint(target)
    return target
