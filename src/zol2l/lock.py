"""One run per output folder: ``OUT/.zol2l.lock``.

The lock is an exclusive ``flock`` on ``OUT/.zol2l.lock``, held for the whole command; the
file records the holder's pid, host and command line.  The kernel releases the lock when the
holder exits, however it exits (kill -9 included), so a lock file left by a dead process is
stale and is simply taken over; a live holder makes a second run on the same folder fail
with a message that names its pid.  ``--resume`` of a finished or interrupted run takes the
lock again like any other run.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from zol2l.errors import UserError

LOCK_NAME = ".zol2l.lock"


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
        return (f"pid {info.get('pid')} on {info.get('host')}, started "
                f"{info.get('started')}: {info.get('command')}")
    except (OSError, ValueError, AttributeError):
        return "a process that has not yet written its pid"


def prepare_out(out: str | os.PathLike) -> Path:
    """Create the output folder ``out``; a clear error if it is a file or not writable."""
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--out {folder} is an existing file, not a folder; choose another "
                        "--out (or remove the file)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {folder}: cannot create the folder ({exc.strerror}); choose "
                        "a writable location") from None
    return folder


@contextmanager
def out_lock(out: str | os.PathLike, command: str = "") -> Iterator[Path]:
    """Hold the lock of the output folder ``out`` (created if needed) for the body;
    ``command`` (default: this process's command line) is recorded for other runs' message."""
    folder = prepare_out(out)
    path = folder / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise UserError(f"--out {folder} is not writable ({exc.strerror}: {path}); choose a "
                        "writable folder") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"--out {folder} is in use by another zol2l run ({_holder(path)}); "
                            "wait for it to finish or choose another --out") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "command": (command or " ".join(sys.argv))[:500]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        try:
            yield folder
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the flock
