"""The project's exception hierarchy and how an exception becomes one line.

One base class, mapped by the command runner (:mod:`lvunet_runtime.command`) to an exit code and a
one-line message: the training side (``lvunet_edge``) and the exporter derive their own errors from it, so
every command can tell a refusal it made on purpose (exit 1) from an internal error. An error may carry a
``hint`` (what to do next), which the runner appends to its line.
"""

from __future__ import annotations

import errno

# Faults that would repeat for every remaining file: a run stops instead of failing each one.
STOPPING_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})
# Faults of the machine, not of a file: out of descriptors or memory. Never reported as a broken input.
MACHINE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})


class LVUNetRuntimeError(Exception):
    """Base class of every error the runtime raises on purpose (exit code 1: refused)."""

    exit_code = 1

    def __init__(self, message: str = "", *, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class ModelError(LVUNetRuntimeError):
    """The model file is missing, not ONNX, or its metadata contract is missing or invalid."""


class ProviderError(LVUNetRuntimeError):
    """An execution provider was requested that this ONNX Runtime does not have or cannot start."""


class ImageError(LVUNetRuntimeError):
    """An input is missing, not an image, corrupt, or too large to decode safely."""


class DataError(LVUNetRuntimeError):
    """A dataset folder is missing, empty, or holds unpaired or unreadable files, or a bad split file."""


class OutputError(LVUNetRuntimeError):
    """An output cannot be written (unwritable folder, would overwrite an input)."""


class StoppedError(LVUNetRuntimeError):
    """A fault (disk full, permission lost) stopped a run part way: what was written stays (exit 2)."""

    exit_code = 2


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM during a command, carrying what the user can do next (e.g. ``continue with
    --resume RUN``). Not a KeyboardInterrupt: click would turn that into a silent exit code 130, so the
    command runner raises this instead and says what happened."""

    def __init__(self, hint: str = "") -> None:
        super().__init__(hint)
        self.hint = hint


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's message (at most ``limit`` characters), or its type's
    name when the message is empty: safe on any exception, inside any error path."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()[:limit]
    return type(exc).__name__


def describe_os_error(exc: OSError) -> str:
    """``No space left on device: /out/x.png``: the error's own words and the file it names."""
    where = f": {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or first_line(exc)}{where}"


def stops_the_run(error: BaseException | None = None, *, code: int | None = None) -> bool:
    """A fault that would repeat for every remaining file (an ``OSError``, or its ``errno`` ``code``
    reported back by another process such as a Ray actor)."""
    if error is not None:
        code = error.errno if isinstance(error, OSError) else None
    return code in STOPPING_ERRNOS or code in MACHINE_ERRNOS
