"""Videos: decoded by a reader thread, segmented through the pipeline, drawn and encoded by an encoder
thread, frames in order; an overlay video and a per-frame CSV per input."""

from __future__ import annotations

import csv
import io
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from lvunet_runtime.console import quiet_stderr
from lvunet_runtime.errors import ImageError
from lvunet_runtime.native import library_path
from lvunet_runtime.outputs import VIDEO_CODECS, frame_stats, overlay
from lvunet_runtime.pipeline import run_pipeline
from lvunet_runtime.progress import Meter
from lvunet_runtime.segmenter import Prepared, Segmenter
from lvunet_runtime.writer import OutputGuard

if TYPE_CHECKING:
    from lvunet_runtime.plan import InferOptions, Job
    from lvunet_runtime.records import RunSummary


def _frames(capture: cv2.VideoCapture, depth: int = 4) -> Iterator[np.ndarray]:
    """Decoded RGB frames, read ahead by a thread of their own into a bounded queue (decoding overlaps
    the model); the reader stops when the consumer does."""
    frames: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                ok, bgr = capture.read()
                if not ok:
                    break
                _put(frames, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), stop)
        finally:
            _put(frames, None, stop)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        while (frame := frames.get()) is not None:
            yield frame
    finally:
        stop.set()
        reader.join()


def _put(target: queue.Queue, item, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            target.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


class _Encoder:
    """Encodes finished frames on a thread of its own (bounded queue), so encoding overlaps the model."""

    def __init__(self, path: Path, fourcc: str, fps: float, codec: str, depth: int = 4) -> None:
        self.path, self.fourcc, self.fps, self.codec = path, fourcc, fps, codec
        self.frames: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        writer = None
        try:
            while (view := self.frames.get()) is not None:
                if writer is None:
                    writer = _video_writer(
                        self.path, self.fourcc, self.fps, view.shape[1::-1], self.codec
                    )
                writer.write(view)
        except BaseException as exc:  # reported by close() on the calling thread
            self.error = exc
            while self.frames.get() is not None:  # keep draining so the producer never blocks
                pass
        finally:
            if writer is not None:
                writer.release()

    def write(self, view: np.ndarray) -> None:
        self.frames.put(view)

    def __enter__(self) -> _Encoder:
        return self

    def __exit__(self, kind, error, trace) -> None:
        """Finish the file (raising the encoder's error) when the block succeeded; otherwise only stop
        the encoder thread (the block's own error is the one that matters)."""
        if kind is None:
            self.close()
        elif self.thread.is_alive():
            self.frames.put(None)
            self.thread.join()

    def close(self) -> None:
        self.frames.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


def overlay_frames(segmenter: Segmenter, keep_largest: bool, with_mask: bool = False):
    """A pipeline ``finish`` step for video: (BGR overlay frame, region statistics), and the mask when
    ``with_mask`` (a DICOM SEG of the frames is written)."""

    def finish(frame: np.ndarray, prepared: Prepared, output: np.ndarray) -> tuple:
        prediction = segmenter.finish(output, prepared.size, keep_largest=keep_largest)
        stats = frame_stats(prediction.mask)
        view = cv2.cvtColor(overlay(frame, prediction.mask), cv2.COLOR_RGB2BGR)
        return (view, stats, prediction.mask) if with_mask else (view, stats)

    return finish


class DicomCapture:
    """A multi-frame (cine) DICOM image read like ``cv2.VideoCapture``: the frames, their rate."""

    def __init__(self, path: Path, max_pixels: int) -> None:
        from lvunet_runtime.dicom import read_dicom

        image = read_dicom(path, name=str(path), max_pixels=max_pixels)
        self._frames, self._fps, self._next = image.frames, image.fps, 0

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return True

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self._frames is None or self._next >= len(self._frames):
            return False, None
        self._next += 1
        return True, np.ascontiguousarray(self._frames[self._next - 1][..., ::-1])  # as BGR

    def get(self, prop: int) -> float:
        if prop == cv2.CAP_PROP_FPS:
            return self._fps or 0.0
        return float(len(self._frames)) if prop == cv2.CAP_PROP_FRAME_COUNT else 0.0

    def release(self) -> None:
        self._frames = None


def open_capture(path: Path, max_pixels: int):
    """A video file through OpenCV, or a cine DICOM image through :class:`DicomCapture`."""
    from lvunet_runtime.data import VIDEO_SUFFIXES
    from lvunet_runtime.dicom import is_dicom

    if path.suffix.lower() not in VIDEO_SUFFIXES and is_dicom(path):
        return DicomCapture(path, max_pixels)
    with library_path(path) as name:  # OpenCV crashes on a name that is not UTF-8
        return cv2.VideoCapture(name)


def run_video(
    segmenter: Segmenter,
    job: Job,
    options: InferOptions,
    guard: OutputGuard,
    summary: RunSummary,
    unfit=None,
) -> None:
    """Overlay video ``<stem>_overlay.mp4`` (or ``.webm``) and per-frame CSV ``<stem>_frames.csv``.

    Decoding (a reader thread), the model (this thread), overlays and region statistics (the pipeline's
    writer threads) and encoding (an encoder thread) overlap; frames stay in order. The video is encoded
    into a temporary file beside its target and renamed into place only when complete.
    """
    path = job.source
    capture = open_capture(path, options.max_pixels)
    if not capture.isOpened():
        raise ImageError(f"{path}: not a readable video")
    out_video, out_csv = job.outputs.get("video"), job.outputs.get("csv")
    fourcc, extension = VIDEO_CODECS[options.video_codec]
    start = time.perf_counter()
    try:
        with ExitStack() as stack:
            encoder = None
            if out_video is not None:  # only the CSV missing: nothing to encode
                tmp_video = stack.enter_context(guard.writing(out_video, extension))
                fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
                encoder = stack.enter_context(_Encoder(tmp_video, fourcc, fps, options.video_codec))
            masks = [] if "seg" in job.outputs else None  # a multi-frame DICOM SEG of the frames
            rows, frames = _segment_frames(segmenter, capture, encoder, options, path, masks, unfit)
    finally:
        capture.release()
    if out_csv is not None:
        guard.write(out_csv, rows.encode())
    if masks is not None and options.seg_series is not None:
        from lvunet_runtime.dicom import write_seg

        with guard.writing(job.outputs["seg"], ".dcm") as tmp:
            write_seg(path, np.stack(masks), tmp, options.seg_series)
    summary.videos += 1
    summary.frames += frames
    summary.video_seconds += time.perf_counter() - start


def _segment_frames(
    segmenter: Segmenter,
    capture,
    encoder: _Encoder | None,
    options: InferOptions,
    path: Path,
    masks: list | None = None,
    unfit=None,
) -> tuple[str, int]:
    """Every frame through the pipeline, its overlay to ``encoder`` (and its mask to ``masks``); the
    per-frame CSV's text and the number of frames."""
    rows = io.StringIO()
    table = csv.writer(rows)
    table.writerow(["frame", "area_px", "area_fraction", "regions", "ms"])
    frames, last = 0, time.perf_counter()

    def prepare(frame: np.ndarray) -> Prepared:
        if unfit is not None and first.acquire(blocking=False):  # a video fits or not as a whole
            unfit.check(frame)  # (the lock is never released: one frame only, whatever the thread)
        return segmenter.prepare(frame, keep_image=False)

    first = threading.Lock()
    outcomes = run_pipeline(
        segmenter,
        _frames(capture),
        prepare,
        overlay_frames(segmenter, options.keep_largest, with_mask=masks is not None),
        workers=max(2, options.workers),
    )
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    with Meter(total, options.progress, "frames") as meter:
        for outcome in outcomes:
            if outcome.error is not None:
                raise ImageError(f"{path}: frame {frames}: {outcome.error}")
            view, stats = outcome.result[:2]
            if masks is not None:
                masks.append(outcome.result[2])
            if encoder is not None:
                encoder.write(view)
            now = time.perf_counter()
            area = f"{stats['area_fraction']:.6f}"
            ms = f"{(now - last) * 1e3:.2f}"
            table.writerow([frames, stats["area_px"], area, stats["regions"], ms])
            last, frames = now, frames + 1
            meter.advance()
        outcomes.close()
    if frames == 0:
        raise ImageError(f"{path}: no frames could be decoded")
    return rows.getvalue(), frames


def _video_writer(path: Path, fourcc: str, fps: float, size: tuple[int, int], codec: str):
    with quiet_stderr(), library_path(path) as name:
        writer = cv2.VideoWriter(name, cv2.VideoWriter_fourcc(*fourcc), fps, size)
    if not writer.isOpened():
        raise ImageError(f"this OpenCV build cannot encode {codec} video; use --video-codec mp4v")
    return writer
