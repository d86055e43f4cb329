"""File helpers shared by every writer of checkpoints, weights and results: atomic writes
(temporary file in the same folder, then :func:`os.replace`) and sha256 digests."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(path: str | os.PathLike, write: Callable[[str], Any]) -> None:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it onto ``path``:
    readers see the old file or the new one, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make shipped files private
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def strict_dumps(payload: Any, **options: Any) -> str:
    """``json.dumps`` that refuses NaN and infinities (they are not JSON), naming the first
    offending key."""
    try:
        return json.dumps(payload, allow_nan=False, **options)
    except ValueError as exc:
        raise ValueError(f"refusing to write non-finite numbers as JSON ({exc}) at "
                         f"{_first_nonfinite(payload) or '?'}") from None


def _first_nonfinite(value: Any, where: str = "") -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return where or "the top level"
    items = value.items() if isinstance(value, dict) else \
        enumerate(value) if isinstance(value, list | tuple) else ()
    for key, sub in items:
        found = _first_nonfinite(sub, f"{where}[{key!r}]")
        if found:
            return found
    return None


def undefined_as_null(value: Any) -> Any:
    """A copy of ``value`` with every NaN or infinite float replaced by ``None``: for
    statistics that are undefined (e.g. the correlation of a constant map), never for losses
    (a non-finite loss is an error, see :mod:`zol2l.experiments.units`)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: undefined_as_null(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [undefined_as_null(v) for v in value]
    return value


def write_json_atomic(path: str | os.PathLike, payload: Any) -> None:
    """Write ``payload`` as indented, strict JSON (no NaN or Infinity), atomically."""
    text = strict_dumps(payload, indent=1) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
