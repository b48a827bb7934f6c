"""``lvunet-infer --watch DIR``: segment the files of a folder as they appear in it (an endoscopy tower's
or an ultrasound machine's export folder), each exactly once, also across restarts.

Every round lists the folder; a file is taken once its size and modification time are the same as one
round before (a file still being copied is waited for, never read half-written); the files taken go
through :func:`lvunet_runtime.infer.infer`, so the run record, the lock and the guarded writer decide what
is done: an input whose outputs a previous round (or a previous watch, before a restart) wrote is kept as
it is. Ctrl-C or SIGTERM ends the watch between two files, as it ends any run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lvunet_runtime.inputs import Inputs, collect_inputs
from lvunet_runtime.records import image_line


@dataclass
class Watched:
    """What a watch did so far (the command says it when the watch ends)."""

    rounds: int = 0
    segmented: int = 0
    failed: list[str] = field(default_factory=list)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns


def watch(
    folder: Path,
    segmenter,
    options,
    *,
    interval: float = 1.0,
    say: Callable[[str], None] = print,
    stop: Callable[[Watched], bool] | None = None,
) -> Watched:
    """Segment the files of ``folder`` as they appear and settle, until ``stop(watched)`` says so
    (never, by default: until Ctrl-C). Each image's line and each failure go to ``say``."""
    from lvunet_runtime.infer import infer

    watched, last, failed = Watched(), {}, {}
    while stop is None or not stop(watched):
        found = collect_inputs([str(folder)], options.recursive)
        ready = []
        for source in found.sources:
            stamp = _stamp(source.path)
            if stamp is not None and last.get(source.path) == stamp != failed.get(str(source.path)):
                ready.append(source)  # unchanged for a round: complete (a failed one: once changed)
            last[source.path] = stamp
        if ready:
            summary = infer([], segmenter, options, found=Inputs(sources=ready))
            for entry in summary.images:
                say(image_line(entry))
            for failure in summary.failed:
                say(f"skipped: {failure['error']}")
            watched.segmented += summary.processed + summary.videos
            watched.failed += [f["error"] for f in summary.failed]
            for entry in summary.failed:  # a failed file is tried again only once it changes
                failed[entry["input"]] = last.get(Path(entry["input"]))
        watched.rounds += 1
        time.sleep(interval)
    return watched
