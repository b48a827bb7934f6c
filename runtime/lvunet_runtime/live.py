"""A live source (a camera): always the newest frame, one frame in flight per stage, so latency stays
bounded whatever the source's pace; frames the model cannot keep up with are dropped and counted."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

from lvunet_runtime.errors import ImageError
from lvunet_runtime.pipeline import run_pipeline
from lvunet_runtime.segmenter import Segmenter
from lvunet_runtime.video import overlay_frames


def _show(view: np.ndarray, fps: float) -> bool:
    """Draw one camera frame with its frame rate; False when the user pressed q or Esc."""
    cv2.putText(view, f"{fps:.1f} fps", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 1, (255, 255, 255), 2)
    try:
        cv2.imshow("lvunet", view)
    except cv2.error:
        raise ImageError(
            "--show needs a display and opencv-python with GUI support (this is the headless build)"
        ) from None
    return cv2.waitKey(1) & 0xFF not in (ord("q"), 27)


@dataclass
class LiveStats:
    """A live run: frames shown, frames dropped to stay near real time, and end-to-end latency."""

    frames: int = 0
    dropped: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    def line(self) -> str:
        p50, p90 = (
            (float(np.percentile(self.latencies_ms, q)) for q in (50, 90))
            if self.latencies_ms
            else (0.0, 0.0)
        )
        rate = self.frames / self.seconds if self.seconds else 0.0
        return (
            f"{self.frames} camera frames segmented ({rate:.1f} frames/s), {self.dropped} dropped to stay "
            f"live; latency from capture to result p50 {p50:.1f} ms, p90 {p90:.1f} ms"
        )


def _latest_frames(
    capture, limit: int | None, stats: LiveStats
) -> Iterator[tuple[float, np.ndarray]]:
    """(capture time, RGB frame), always the newest: a reader thread keeps reading at the source's pace
    and replaces a frame nobody took yet (counted as dropped), so the model never falls behind."""
    slot: list = []
    ready, stop = threading.Condition(), threading.Event()

    def read() -> None:
        count = 0
        while (limit is None or count < limit) and not stop.is_set():
            ok, bgr = capture.read()
            if not ok:
                break
            count += 1
            item = (time.perf_counter(), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            with ready:
                if slot:
                    stats.dropped += 1
                    slot.clear()
                slot.append(item)
                ready.notify()
        with ready:
            slot.append(None)
            ready.notify()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        while True:
            with ready:
                ready.wait_for(lambda: bool(slot))
                item = slot.pop(0)
            if item is None:
                return
            yield item
    finally:
        stop.set()
        reader.join(timeout=5)


def run_live(segmenter: Segmenter, capture, show: bool, max_frames: int | None) -> LiveStats:
    """A live source through the pipeline, one frame in flight per stage: latency over throughput."""
    stats, start = LiveStats(), time.perf_counter()
    segment = overlay_frames(segmenter, False)
    outcomes = run_pipeline(
        segmenter,
        _latest_frames(capture, max_frames, stats),
        lambda item: segmenter.prepare(item[1], keep_image=False),
        lambda item, prepared, output: (item[0], *segment(item[1], prepared, output)),
        live=True,
    )
    for outcome in outcomes:
        if outcome.error is not None:
            raise ImageError(f"live source: {outcome.error}")
        captured, view, _ = outcome.result
        stats.latencies_ms.append((time.perf_counter() - captured) * 1e3)
        stats.frames += 1
        if show and not _show(view, stats.frames / (time.perf_counter() - start)):
            break
    outcomes.close()
    stats.seconds = time.perf_counter() - start
    return stats


def run_camera(segmenter: Segmenter, index: int, show: bool, max_frames: int | None) -> LiveStats:
    """Live camera ``index``: see :func:`run_live`."""
    capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        raise ImageError(f"camera {index} could not be opened")
    try:
        return run_live(segmenter, capture, show, max_frames)
    finally:
        capture.release()
