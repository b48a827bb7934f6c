"""Inference over images, folders, globs, videos and a camera, all through one overlapped pipeline
(:mod:`lvunet_runtime.pipeline`): loader threads decode and prepare ahead (bounded), the calling thread
only runs the session, writer threads finish, encode and write. One session serves the run.

Every file goes through one :class:`~lvunet_runtime.writer.OutputGuard`. The run record
(``summary.json``) holds the settings that shape the outputs and the list of outputs; a rerun into the
same folder keeps those outputs and adds what is missing, and one with other settings is refused before
any work unless ``--overwrite``. A fault that will repeat for every file (disk full, permission lost) stops
the run: what was written stays, the summary says what was not, and the exit code is 2.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import os
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from lvunet_runtime.data import VIDEO_SUFFIXES
from lvunet_runtime.errors import ImageError, OutputError
from lvunet_runtime.image import DEFAULT_MAX_PIXELS, load_image
from lvunet_runtime.inputs import (
    RECORD_NAME,
    RECORD_TOOL,
    Source,
    collect_inputs,
    in_part,
    read_path_list,
    read_record,
    read_records,
    record_name,
)
from lvunet_runtime.outputs import frame_stats, overlay, write_image_outputs
from lvunet_runtime.pipeline import run_pipeline
from lvunet_runtime.progress import Meter
from lvunet_runtime.session import Prepared, Segmenter
from lvunet_runtime.writer import OutputGuard, check_output_folder

# Faults that would repeat for every remaining file: stop instead of failing each one.
STOPPING_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
RECORD_VERSION = 1
# Overlay video formats, all encoded by OpenCV's own FFmpeg (LGPL build in the opencv wheels) with
# libvpx (BSD): WebM VP8/VP9 play in every current browser and in Windows' default player; mp4v (MPEG-4
# Part 2) plays in desktop players but not in browsers. H.264 would need x264, which is GPL (PyAV's
# wheels bundle it), so it is not offered. Encode speed of real 640x480 endoscopy frames on the 2-core
# test machine: mp4v about 270 frames/s, vp8 9-12, vp9 3-4 (OpenCV exposes no libvpx speed setting), so
# mp4v is the default and the browser formats are asked for.
VIDEO_CODECS = {"vp8": ("VP80", ".webm"), "vp9": ("VP90", ".webm"), "mp4v": ("mp4v", ".mp4")}


def default_workers() -> int:
    """Decode and write threads: one per two cores (one each on a 2-core laptop)."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def default_model_threads() -> int:
    """ONNX Runtime threads for a multi-image run: the cores the decode/write threads leave free.

    On 2 cores this is 1 thread: measured 109-112 images/s against 74-80 with 2 threads, whose spinning
    workers compete with decoding (benchmarks/results/cpu/README.md).
    """
    return max(1, (os.cpu_count() or 2) - default_workers())


@dataclass
class InferOptions:
    """Output and pipeline choices of ``lvunet-infer`` (CLI options map 1:1)."""

    out: Path = Path("lvunet-output")
    overlay: bool = False
    prob: bool = False
    json: bool = False
    overwrite: bool = False
    recursive: bool = False
    batch_size: int = 1
    keep_largest: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    workers: int = field(default_factory=default_workers)
    progress: bool = True
    video_codec: str = "mp4v"
    num_parts: int = 1
    part_id: int = 0
    input_list: Path | None = None
    ray: bool = False
    ray_address: str | None = None
    ray_actors: int | None = None
    providers: list[str] | None = None

    @property
    def record_name(self) -> str:
        return record_name(self.num_parts, self.part_id)


@dataclass
class Job:
    """One input and the outputs still to write (those an earlier run of ours with the same settings
    left are not listed: they stay as they are)."""

    source: Path
    outputs: dict[str, Path]


@dataclass
class RunSummary:
    """Counts and timing of a run; written as ``summary.json``."""

    processed: int = 0
    skipped_existing: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    videos: int = 0
    frames: int = 0
    video_seconds: float = 0.0
    seconds: float = 0.0
    model: str = ""
    providers: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    images: list[dict] = field(default_factory=list)
    not_done: int = 0
    stopped: str = ""
    record_error: str = ""
    ray: dict = field(default_factory=dict)
    node_placement: dict = field(default_factory=dict)
    provider_fallback: list[str] = field(default_factory=list)

    def line(self) -> str:
        rate = self.processed / self.seconds if self.seconds else 0.0
        parts = []
        if self.processed or not self.videos:
            parts.append(
                f"{self.processed} image(s) segmented in {self.seconds:.2f} s ({rate:.1f} images/s)"
            )
        if self.videos:
            fps = self.frames / self.video_seconds if self.video_seconds else 0.0
            parts.append(
                f"{self.videos} video(s), {self.frames} frames in {self.video_seconds:.2f} s "
                f"({fps:.1f} frames/s)"
            )
        if self.skipped_existing:
            parts.append(f"{self.skipped_existing} skipped (outputs exist; --overwrite to redo)")
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        if self.not_done:
            parts.append(f"{self.not_done} not done")
        return "; ".join(parts)

    @property
    def partial(self) -> bool:
        """Something the run was asked to do was not done (exit code 2)."""
        return bool(self.failed or self.stopped or self.not_done or self.record_error)


def run_settings(segmenter: Segmenter, options: InferOptions) -> dict:
    """What shapes the outputs' content: a rerun into the same folder must match it."""
    digest = hashlib.sha256(segmenter.path.read_bytes()).hexdigest()
    settings = {
        "model_sha256": digest,
        "threshold": segmenter.threshold,
        "keep_largest": options.keep_largest,
    }
    if segmenter.tta != "off":  # recorded only when used: records written before --tta still match
        settings["tta"] = segmenter.tta
    return settings


def check_records(records: list[dict], settings: dict, options: InferOptions) -> set[str]:
    """The outputs earlier runs of ours left in ``--out`` (relative paths, every part's), after checking
    that they ran with the same settings.

    Raises:
        OutputError: an earlier run used other settings (names the first that differs), or this run's
            record file there is not ours; ``--overwrite`` allows both.
    """
    record_path = options.out / options.record_name
    ours = {r.get("record_file", RECORD_NAME) for r in records}
    if (record_path.exists() or record_path.is_symlink()) and options.record_name not in ours:
        if not options.overwrite:
            raise OutputError(
                f"{record_path} exists and is not an lvunet-infer run record; choose another --out "
                "or pass --overwrite"
            )
    for record in records:
        previous = record.get("settings", {})
        for key, value in settings.items():
            if previous.get(key) != value and not options.overwrite:
                what = "model file" if key == "model_sha256" else key.replace("_", "-")
                raise OutputError(
                    f"{options.out} holds outputs made with another {what} ({previous.get(key)!r}, now "
                    f"{value!r}); choose another --out, or pass --overwrite to redo them"
                )
    return {o for r in records for o in r["outputs"]}


def _names(source: Source, options: InferOptions, stem: str) -> dict[str, Path]:
    folder = options.out
    if source.base is not None:
        folder = options.out / source.path.parent.relative_to(source.base)  # mirror a folder
    if source.is_video:
        extension = VIDEO_CODECS[options.video_codec][1]
        return {
            "video": folder / f"{stem}_overlay{extension}",
            "csv": folder / f"{stem}_frames.csv",
        }
    paths = {"mask": folder / f"{stem}_mask.png"}
    if options.overlay:
        paths["overlay"] = folder / f"{stem}_overlay.png"
    if options.prob:
        paths["prob"] = folder / f"{stem}_prob.png"
    if options.json:
        paths["json"] = folder / f"{stem}.json"
    return paths


def unique_names(sources: list[Source], options: InferOptions) -> dict[Path, dict[str, Path]]:
    """Output paths per source, distinct by construction.

    Two inputs that would write the same file: when their extensions differ (``x.jpg``, ``x.png``) both
    names carry the extension (``x_jpg_mask.png``); otherwise one error before any work.
    """
    by_name: dict[Path, list[Source]] = {}
    for source in sources:
        by_name.setdefault(_names(source, options, source.path.stem)[_first(source)], []).append(
            source
        )
    names = {}
    for group in by_name.values():
        suffixes = {s.path.suffix.lower() for s in group}
        if len(group) > 1 and len(suffixes) < len(group):
            a, b = group[0].path, group[1].path
            raise OutputError(
                f"{a} and {b} would write the same output names; give them in separate runs with "
                "different --out, or use --recursive on a folder above both"
            )
        for source in group:
            stem = source.path.stem
            if len(group) > 1:
                stem = f"{stem}_{source.path.suffix.lower().lstrip('.')}"
            names[source.path] = _names(source, options, stem)
    return names


def _first(source: Source) -> str:
    return "video" if source.is_video else "mask"


def plan_jobs(
    sources: list[Source],
    options: InferOptions,
    guard: OutputGuard,
    previous: set[str],
    summary: RunSummary,
) -> list[Job]:
    """One job per source with the outputs still to write; sources whose outputs all exist from an
    earlier run are skipped; a source whose outputs may not be written is a failure, before any work."""
    jobs = []
    part = {s.path for s in sources if in_part(s, options.num_parts, options.part_id)}
    for source, outputs in unique_names(sources, options).items():  # names from all parts: stable
        if source not in part:
            continue
        job = Job(source, {})
        problem = None
        for kind, path in outputs.items():
            ours = _relative(path, options.out) in previous
            if path.exists() and ours and not options.overwrite and not path.is_symlink():
                continue  # kept
            problem = problem or guard.problem(path, ours=ours)
            job.outputs[kind] = path
        if problem:
            summary.failed.append({"input": str(source), "error": f"{source}: {problem}"})
        elif not job.outputs:
            summary.skipped_existing += 1
        else:
            jobs.append(job)
    return jobs


def _relative(path: Path, out: Path) -> str:
    """``path`` relative to the output folder, as the run record lists it."""
    path, out = path.resolve(), out.resolve()
    return path.relative_to(out).as_posix() if path.is_relative_to(out) else str(path)


def run_images(
    segmenter: Segmenter,
    jobs: list[Job],
    options: InferOptions,
    guard: OutputGuard,
    summary: RunSummary,
) -> None:
    """Segment ``jobs`` through the pipeline; failures are recorded per image, stopping faults stop."""
    if not jobs:
        return
    meta = {"model": str(segmenter.path), "threshold": segmenter.threshold}

    def load(job: Job) -> Prepared:
        rgb, _ = load_image(job.source, max_pixels=options.max_pixels)
        return segmenter.prepare(rgb, keep_image="overlay" in job.outputs)

    def finish(job: Job, prepared: Prepared, output: np.ndarray) -> dict:
        prediction = segmenter.finish(output, prepared.size, keep_largest=options.keep_largest)
        return write_image_outputs(
            job.outputs,
            guard,
            prepared.image,
            prediction.probability,
            prediction.mask,
            {"input": str(job.source), **meta},
        )

    start = time.perf_counter()
    outcomes = run_pipeline(
        segmenter, jobs, load, finish, workers=options.workers, batch_size=options.batch_size
    )
    with Meter(len(jobs), options.progress, "images") as meter:
        for outcome in outcomes:
            if outcome.error is not None and stops_the_run(outcome.error):
                summary.stopped = _fault(outcome.error)
                break
            if outcome.error is not None:
                summary.failed.append(_failure(outcome.item.source, outcome.error))
            else:
                summary.processed += 1
                summary.images.append({"input": str(outcome.item.source), **outcome.result})
            meter.advance()
        outcomes.close()
    summary.not_done += len(jobs) - meter.done
    summary.seconds += time.perf_counter() - start


def stops_the_run(error: Exception) -> bool:
    """A fault that would repeat for every remaining file."""
    return isinstance(error, OSError) and error.errno in STOPPING_ERRNOS


def _fault(error: OSError) -> str:
    where = f": {error.filename}" if error.filename else ""
    return f"{error.strerror or error}{where}"


def _failure(source: Path, error: Exception) -> dict[str, str]:
    message = str(error)
    return {
        "input": str(source),
        "error": message if str(source) in message else f"{source}: {message}",
    }


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

    def close(self) -> None:
        self.frames.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


def _overlay_frame(segmenter: Segmenter, keep_largest: bool):
    """A pipeline ``finish`` step for video: (BGR overlay frame, region statistics, ms since load)."""

    def finish(
        frame: np.ndarray, prepared: Prepared, output: np.ndarray
    ) -> tuple[np.ndarray, dict]:
        prediction = segmenter.finish(output, prepared.size, keep_largest=keep_largest)
        stats = frame_stats(prediction.mask)
        return cv2.cvtColor(overlay(frame, prediction.mask), cv2.COLOR_RGB2BGR), stats

    return finish


def run_video(
    segmenter: Segmenter, job: Job, options: InferOptions, guard: OutputGuard, summary: RunSummary
) -> None:
    """Overlay video ``<stem>_overlay.mp4`` (or ``.webm``) and per-frame CSV ``<stem>_frames.csv``.

    Decoding (a reader thread), the model (this thread), overlays and region statistics (the pipeline's
    writer threads) and encoding (an encoder thread) overlap; frames stay in order.
    """
    path = job.source
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ImageError(f"{path}: not a readable video")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    out_video, out_csv = job.outputs.get("video"), job.outputs.get("csv")
    fourcc, extension = VIDEO_CODECS[options.video_codec]
    tmp_video = guard.temporary(out_video or out_csv, extension)
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    rows = io.StringIO()
    table = csv.writer(rows)
    table.writerow(["frame", "area_px", "area_fraction", "regions", "ms"])
    start, frames, last = time.perf_counter(), 0, time.perf_counter()
    encoder = _Encoder(tmp_video, fourcc, fps, options.video_codec)
    try:
        outcomes = run_pipeline(
            segmenter,
            _frames(capture),
            lambda frame: segmenter.prepare(frame, keep_image=False),
            _overlay_frame(segmenter, options.keep_largest),
            workers=max(2, options.workers),
        )
        with Meter(total, options.progress, "frames") as meter:
            for outcome in outcomes:
                if outcome.error is not None:
                    raise ImageError(f"{path}: frame {frames}: {outcome.error}")
                view, stats = outcome.result
                encoder.write(view)
                now = time.perf_counter()
                area = f"{stats['area_fraction']:.6f}"
                ms = f"{(now - last) * 1e3:.2f}"
                table.writerow([frames, stats["area_px"], area, stats["regions"], ms])
                last, frames = now, frames + 1
                meter.advance()
            outcomes.close()
        encoder.close()
        if frames == 0:
            raise ImageError(f"{path}: no frames could be decoded")
        if out_video is not None:
            guard.place(tmp_video, out_video)
        if out_csv is not None:
            guard.write(out_csv, rows.getvalue().encode())
    finally:
        if encoder.thread.is_alive():
            encoder.frames.put(None)
            encoder.thread.join()
        capture.release()
        tmp_video.unlink(missing_ok=True)
    summary.videos += 1
    summary.frames += frames
    summary.video_seconds += time.perf_counter() - start


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence C-level writes to stderr (OpenCV prints a codec-tag note for WebM that we cannot turn off)."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _video_writer(path: Path, fourcc: str, fps: float, size: tuple[int, int], codec: str):
    with _quiet_stderr():
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    if not writer.isOpened():
        raise ImageError(f"this OpenCV build cannot encode {codec} video; use --video-codec mp4v")
    return writer


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
    segment = _overlay_frame(segmenter, False)
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


def infer(inputs: list[str], segmenter: Segmenter, options: InferOptions) -> RunSummary:
    """Segment every input; bad inputs are recorded in the summary and skipped.

    Raises:
        OutputError: before any work, when the output folder or its record forbids the run.
    """
    if options.input_list is not None:
        inputs = [*inputs, *read_path_list(options.input_list)]
    found = collect_inputs(inputs, options.recursive)
    settings = run_settings(segmenter, options)
    summary = RunSummary(
        model=str(segmenter.path), providers=segmenter.active_providers, settings=settings
    )
    summary.provider_fallback = list(getattr(segmenter, "fallback", []))
    if summary.providers[0] != "CPUExecutionProvider":  # what the accelerator left to the CPU
        summary.node_placement = segmenter.node_placement()
    summary.failed.extend(found.errors)
    check_output_folder(options.out)
    previous = check_records(read_records(options.out), settings, options)
    guard = OutputGuard(overwrite=options.overwrite, inputs=[s.path for s in found.sources])
    guard.check(
        options.out / options.record_name,
        ours=read_record(options.out, options.record_name) is not None,
    )
    jobs = plan_jobs(found.sources, options, guard, previous, summary)
    videos = [j for j in jobs if j.source.suffix.lower() in VIDEO_SUFFIXES]
    images = [j for j in jobs if j not in videos]
    if options.ray:  # images on the cluster; videos (sequential by nature) here
        from lvunet_runtime.distributed import run_images_ray

        run_images_ray(
            str(segmenter.path),
            options.providers,
            segmenter.threshold,
            images,
            options,
            summary,
            address=options.ray_address,
            actors=options.ray_actors,
            tta=segmenter.tta,
        )
        guard.adopt(p for job in images for p in job.outputs.values() if p.exists())
    else:
        run_images(segmenter, images, options, guard, summary)
    for job in videos:
        if summary.stopped:
            summary.not_done += 1
            continue
        try:
            run_video(segmenter, job, options, guard, summary)
        except OSError as exc:
            if stops_the_run(exc):
                summary.stopped = _fault(exc)
            else:
                summary.failed.append(_failure(job.source, exc))
        except (ImageError, OutputError) as exc:
            summary.failed.append(_failure(job.source, exc))
    write_record(options, summary, previous, guard)
    return summary


def write_record(
    options: InferOptions, summary: RunSummary, previous: set[str], guard: OutputGuard
) -> None:
    """The run record: this run's summary, its settings, and every output of ours in ``--out``."""
    out = options.out
    created = {_relative(p, out) for p in guard.created}
    if not created:  # nothing new: the earlier record stays as it is
        return
    record = {
        "tool": RECORD_TOOL,
        "record_version": RECORD_VERSION,
        "record_file": options.record_name,
        "num_parts": options.num_parts,
        "part_id": options.part_id,
        **summary.__dict__,
        "outputs": sorted(previous | created),
    }
    try:
        guard.write(
            out / options.record_name, (json.dumps(record, indent=1) + "\n").encode(), ours=True
        )
    except (OSError, OutputError) as exc:
        summary.record_error = f"{options.record_name} not written ({exc})"


def merge_parts(out: Path) -> RunSummary:
    """Combine the part records of a sharded job into ``summary.json``, the whole job's record.

    Raises:
        OutputError: no part records, parts of different splits or settings, or parts missing (named).
    """
    parts = [r for r in read_records(out) if r.get("num_parts", 1) > 1]
    if not parts:
        raise OutputError(f"{out} holds no part records (summary.part-K-of-N.json) to merge")
    sizes = {r["num_parts"] for r in parts}
    if len(sizes) > 1:
        raise OutputError(
            f"{out} holds parts of different splits ({sorted(sizes)} parts); merge one job at a time"
        )
    settings = [r["settings"] for r in parts]
    if any(s != settings[0] for s in settings):
        raise OutputError(f"the parts in {out} ran with different settings; rerun them alike")
    (num_parts,) = sizes
    missing = sorted(set(range(num_parts)) - {r["part_id"] for r in parts})
    merged = RunSummary(
        model=parts[0]["model"], providers=parts[0]["providers"], settings=settings[0]
    )
    for r in sorted(parts, key=lambda r: r["part_id"]):
        for key in ("processed", "skipped_existing", "videos", "frames", "not_done"):
            setattr(merged, key, getattr(merged, key) + r.get(key, 0))
        merged.seconds = max(merged.seconds, r.get("seconds", 0.0))  # parts run side by side
        merged.failed += r.get("failed", [])
        merged.images += r.get("images", [])
    if missing:
        merged.stopped = f"part(s) {missing} of {num_parts} have not run (or wrote no record)"
    guard = OutputGuard()
    outputs = {o for r in parts for o in r["outputs"]}
    record = {
        "tool": RECORD_TOOL,
        "record_version": RECORD_VERSION,
        "record_file": RECORD_NAME,
        "num_parts": 1,
        "part_id": 0,
        "merged_parts": num_parts,
        **merged.__dict__,
        "outputs": sorted(outputs),
    }
    ours = read_record(out) is not None
    guard.write(out / RECORD_NAME, (json.dumps(record, indent=1) + "\n").encode(), ours=ours)
    return merged
