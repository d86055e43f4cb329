"""How the ``zol2l`` command reports mistakes: one line ``zol2l: error: <what, where, how to
fix>`` and exit code 2 for a user's mistake, ``zol2l: warning: ...`` for a warning, and the
full traceback only with ``--debug``.

The library raises ordinary exceptions (:class:`ValueError` and its subclasses, missing or
unwritable files, ...) whose message says what was wrong, where, and how to fix it; the CLI
turns them into the one line.  Anything else is a bug in zol2l: it is also reported on one
line, with exit code 1 and a hint to rerun with ``--debug``.
"""

from __future__ import annotations

import argparse
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

#: exceptions that mean "the input was wrong" (exit code 2)
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, OSError, KeyError)


class UserError(ValueError):
    """A mistake in the command line, a file or a value the user gave."""


class Zol2lWarning(UserWarning):
    """Something zol2l ignored or capped; shown as one ``zol2l: warning:`` line."""


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, ``zol2l: error: ...``, exit code
    2 (its sub-command parsers are of the same class)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"zol2l: error: {self.prog}: {message} (see {self.prog} --help)\n")


def warn(message: str) -> None:
    """Issue a :class:`Zol2lWarning` (the CLI prints it as one line)."""
    warnings.warn(message, Zol2lWarning, stacklevel=2)


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line; an ``OSError`` names its file."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}"
        if isinstance(exc, PermissionError):
            text += " (the folder is read-only or not yours; choose another --out)"
        elif isinstance(exc, FileExistsError | NotADirectoryError):
            text += " (a file is in the way of a folder; choose another --out)"
    elif isinstance(exc, KeyError) and exc.args:
        text = f"missing key {exc.args[0]!r}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
          file: Any = None, line: str | None = None) -> None:
    prefix = "" if issubclass(category, Zol2lWarning) else f"{category.__name__}: "
    print(f"zol2l: warning: {prefix}{' '.join(str(message).split())}", file=sys.stderr)


@contextmanager
def one_line_warnings() -> Iterator[None]:
    """Print every warning raised in the body as one ``zol2l: warning:`` line."""
    with warnings.catch_warnings():
        warnings.showwarning = _show
        yield


def run_command(func: Callable[[], int | None], *, debug: bool = False,
                user_errors: tuple[type[BaseException], ...] = ()) -> int:
    """Run a command, turning its exceptions into one-line messages and exit codes:
    0 on success, 2 for a user mistake, 1 for a bug, 130 for Ctrl-C."""
    try:
        with one_line_warnings():
            return int(func() or 0)
    except KeyboardInterrupt as exc:
        why = f": {exc}" if str(exc) else ""
        print(f"zol2l: interrupted{why}", file=sys.stderr)
        return 130
    except (*USER_ERRORS, *user_errors) as exc:
        if debug:
            traceback.print_exc()
        print(f"zol2l: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:
        if debug:
            traceback.print_exc()
        print(f"zol2l: error: unexpected {type(exc).__name__}: {one_line(exc)} (a bug in "
              "zol2l? rerun with --debug for the traceback)", file=sys.stderr)
        return 1
