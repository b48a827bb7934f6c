"""One run at a time per run record: a lock file beside ``summary.json`` (or a part's record) while a run
writes into its output folder. A second run into the same folder is refused with one line naming the
first; a lock whose process is gone (a killed run) is taken over, with one line saying so, never a
permanent refusal. Shards of one job use different records, so they still run side by side."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lvunet_runtime.errors import OutputError
from lvunet_runtime.writer import temporaries


def lock_path(out: Path, record_name: str) -> Path:
    return out / f".lvunet-{record_name}.lock"


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    except OSError:
        return False
    return True


def remove_stale_temporaries(folder: Path) -> int:
    """Remove the temporary files under ``folder`` whose writing process is gone (a run folder that
    only one process writes at a time, such as a training run's); their number."""
    stale = [path for path, pid in temporaries(folder).items() if not process_alive(pid)]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def _holder(path: Path) -> dict | None:
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else None


@contextmanager
def run_lock(out: Path, record_name: str, notes: list[str]) -> Iterator[None]:
    """Hold the lock of ``record_name`` in ``out`` for the block.

    Raises:
        OutputError: another live run holds it (its pid, host and start are named).
    """
    path = lock_path(out, record_name)
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if holder is None or holder.get("host") != me["host"] or process_alive(holder["pid"]):
                who = (
                    f"pid {holder['pid']} on {holder.get('host')}, started {holder.get('started')}"
                    if holder
                    else "unreadable lock"
                )
                raise OutputError(
                    f"another lvunet-infer run ({who}) is writing into {out}; wait for it to finish or "
                    f"choose another --out (if that run is gone, delete {path})"
                ) from None
            left = temporaries(out, holder["pid"])
            for unfinished in left:
                unfinished.unlink(missing_ok=True)
            removed = f", its {len(left)} unfinished temporary file(s) removed" if left else ""
            notes.append(
                f"took over the lock of an earlier run that is gone (pid {holder['pid']}, started "
                f"{holder.get('started')}); its finished outputs are kept{removed}"
            )
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as handle:
            json.dump(me, handle)
        break
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
