"""One progress bar for every long command (images, video frames, evaluation): rich's, transient, and a
no-op when it is off, when stderr is not a terminal, or when there is a single item."""

from __future__ import annotations

import time


class Meter:
    """``with Meter(total, enabled, "images", "segmenting") as meter: ... meter.advance()``."""

    def __init__(
        self, total: int, enabled: bool, unit: str = "images", label: str = "segmenting"
    ) -> None:
        self.progress = None
        self.start = time.perf_counter()
        self.done = 0
        if enabled and total > 1:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn(label),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} " + unit + "/s"),
                TimeRemainingColumn(),
                transient=True,
            )
            self.task = self.progress.add_task(label, total=total, rate="-")

    def __enter__(self) -> Meter:
        if self.progress:
            self.progress.start()
        return self

    def advance(self) -> None:
        """One more item done; the rate shown is items per second since the start."""
        self.done += 1
        if self.progress:
            rate = self.done / max(time.perf_counter() - self.start, 1e-9)
            self.progress.update(self.task, advance=1, rate=f"{rate:.1f}")

    def __exit__(self, *exc) -> None:
        if self.progress:
            self.progress.stop()
