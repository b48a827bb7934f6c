"""The one way any command writes a file: guarded, atomic, and never over a file it must not touch.

Rules (:class:`OutputGuard`): an input of the run is never written over, even with ``--overwrite``; a file
this run did not create is replaced only with ``--overwrite``; a target that exists but is not a regular
file (a folder, a pipe, a device, a symlink) is refused; every write goes to a short temporary name in the
target's folder and is renamed into place, so an interrupted run leaves no half-written file and a long
file name never makes the temporary name too long.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

from lvunet_runtime.errors import OutputError

TEMP_PREFIX = ".lvunet-"


def _key(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path.absolute()


def check_output_folder(directory: Path) -> None:
    """Fail early if ``directory`` cannot be created or written; creates nothing itself."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot create output folder {directory}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {directory} is not writable")


def write_atomic(path: Path, data: bytes) -> None:
    """Write bytes via a short temporary name beside ``path``, then rename (no half-written file)."""
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class OutputGuard:
    """Every output of one run goes through here (thread-safe).

    Args:
        overwrite: replace existing files this run did not create (never inputs).
        inputs: files the run reads; never written over.
    """

    def __init__(self, *, overwrite: bool = False, inputs: Iterable[Path] = ()) -> None:
        self.overwrite = overwrite
        self.inputs = {_key(Path(p)) for p in inputs}
        self.created: set[Path] = set()
        self._lock = threading.Lock()

    def adopt(self, paths: Iterable[Path]) -> None:
        """Count files written for this run by other processes (Ray actors) as this run's own."""
        with self._lock:
            self.created |= {_key(Path(p)) for p in paths}

    def protect(self, paths: Iterable[Path]) -> None:
        """Add more inputs (found after the guard was made)."""
        with self._lock:
            self.inputs |= {_key(Path(p)) for p in paths}

    def problem(self, path: Path, *, ours: bool = False) -> str | None:
        """Why ``path`` may not be written, or None. ``ours``: an earlier run of ours made it."""
        key = _key(path)
        if key in self.inputs:
            return (
                f"{path} is an input of this run; it is never written over (choose another --out)"
            )
        if path.is_symlink() or (path.exists() and not path.is_file()):
            return f"{path} exists and is not a regular file; choose another output"
        if path.exists() and key not in self.created and not (self.overwrite or ours):
            return f"{path} exists; pass --overwrite to replace it (or choose another output)"
        return None

    def check(self, path: Path, *, ours: bool = False) -> None:
        """Raise OutputError if ``path`` may not be written."""
        message = self.problem(path, ours=ours)
        if message:
            raise OutputError(message)

    def write(self, path: Path, data: bytes, *, ours: bool = False) -> None:
        """Check, create the folder, write atomically, remember the file as this run's."""
        self.check(path, ours=ours)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)
        with self._lock:
            self.created.add(_key(path))

    def place(self, tmp: Path, path: Path, *, ours: bool = False) -> None:
        """Rename a finished temporary file (a video) into place, under the same rules."""
        self.check(path, ours=ours)
        os.replace(tmp, path)
        with self._lock:
            self.created.add(_key(path))

    def temporary(self, path: Path, suffix: str) -> Path:
        """A short temporary name beside ``path`` for a file written in pieces (a video)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=suffix, dir=path.parent)
        os.close(fd)
        return Path(name)
