"""The one way any command writes a file: guarded, atomic, and never over a file it must not touch.

Rules (:class:`OutputGuard`): an input of the run is never written over, even with ``--overwrite``; a file
this run did not create is replaced only with ``--overwrite``; a target that exists but is not a regular
file (a folder, a pipe, a device, a symlink) is refused; every write goes to a short temporary name in the
target's folder and is renamed into place (:func:`atomic_file`), so an interrupted run leaves no
half-written file and a long file name never makes the temporary name too long. Every file written gets
one permission rule, that of a plain ``open()``: ``0o666`` less the process's umask (0644 under the usual
umask 022), whether it is a mask, a video, a checkpoint or a model.
"""

from __future__ import annotations

import functools
import os
import re
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from lvunet_runtime.errors import OutputError

TEMP_PREFIX = ".lvunet-"


def _key(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path.absolute()


@functools.cache
def file_mode() -> int:
    """The permissions a plain ``open()`` would give a new file: 0o666 less the umask (read once)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def check_output_folder(directory: Path) -> None:
    """Fail early if ``directory`` cannot be created or written; creates nothing itself."""
    for folder in (directory, *directory.parents):
        if folder.is_symlink() and not folder.exists():
            raise OutputError(
                f"cannot create output folder {directory}: {folder} is a symbolic link to "
                f"{os.readlink(folder)}, which does not exist; create its target or choose another --out"
            )
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot create output folder {directory}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {directory} is not writable")


@contextmanager
def atomic_file(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` to write in any way (bytes, a video, ``torch.save``); when the
    block ends normally it gets :func:`file_mode` and is renamed onto ``path``, otherwise it is removed.
    The folder is created if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the writer's pid in the name: a run that takes over a killed run's lock removes what it left
    prefix = f"{TEMP_PREFIX}{os.getpid()}-"
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


TEMP_NAME = re.compile(rf"^{re.escape(TEMP_PREFIX)}(\d+)-[A-Za-z0-9_]{{8}}")


def temporaries(folder: Path, pid: int | None = None) -> dict[Path, int]:
    """The temporary files :func:`atomic_file` left under ``folder`` (of process ``pid`` when given),
    with the pid that wrote each: a run killed with kill -9, or by a power cut, had no chance to
    remove them."""
    if not folder.is_dir():
        return {}
    found = {}
    for path in folder.rglob(f"{TEMP_PREFIX}{'' if pid is None else pid}*"):
        match = TEMP_NAME.match(path.name)
        if match and path.is_file() and (pid is None or int(match.group(1)) == pid):
            found[path] = int(match.group(1))
    return found


def write_atomic(path: Path, data: bytes) -> None:
    """Write bytes through :func:`atomic_file` (no half-written file, the one permission rule)."""
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)


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
        file_mode()  # read the umask here, on the calling thread, before any writer thread runs

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
        """Check, write atomically, remember the file as this run's."""
        self.check(path, ours=ours)
        write_atomic(path, data)
        self._created(path)

    @contextmanager
    def writing(self, path: Path, suffix: str = ".tmp", *, ours: bool = False) -> Iterator[Path]:
        """Check ``path``, then :func:`atomic_file` for a file written in pieces (a video, a model):
        checked again before the rename, since writing can take long."""
        self.check(path, ours=ours)
        with atomic_file(path, suffix) as tmp:
            yield tmp
            self.check(path, ours=ours)
        self._created(path)

    def _created(self, path: Path) -> None:
        with self._lock:
            self.created.add(_key(path))
