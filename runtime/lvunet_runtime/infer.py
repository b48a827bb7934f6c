"""Inference over images, folders, globs, videos and a camera, all through one overlapped pipeline
(:mod:`lvunet_runtime.pipeline`): loader threads decode and prepare ahead (bounded), the calling thread
only runs the session, writer threads finish, encode and write atomically. One session serves the run.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from lvunet_runtime.data import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from lvunet_runtime.errors import ImageError, OutputError
from lvunet_runtime.image import DEFAULT_MAX_PIXELS, load_image, write_atomic
from lvunet_runtime.outputs import overlay, region_stats, write_image_outputs
from lvunet_runtime.pipeline import run_pipeline
from lvunet_runtime.session import Prepared, Segmenter


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


@dataclass
class Job:
    """One input image and where its outputs go."""

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
    seconds: float = 0.0
    model: str = ""
    providers: list[str] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)

    def line(self) -> str:
        rate = self.processed / self.seconds if self.seconds else 0.0
        parts = [
            f"{self.processed} image(s) segmented in {self.seconds:.2f} s ({rate:.1f} images/s)"
        ]
        if self.videos:
            parts.append(f"{self.videos} video(s), {self.frames} frames")
        if self.skipped_existing:
            parts.append(f"{self.skipped_existing} skipped (outputs exist; --overwrite to redo)")
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        return "; ".join(parts)


def collect_inputs(
    inputs: list[str], recursive: bool
) -> tuple[list[tuple[Path, Path | None]], list[Path], list[dict[str, str]]]:
    """Expand files, folders and glob patterns.

    Returns:
        ``(images, videos, errors)``: images as (path, folder it came from or None), videos, and the
        inputs that matched nothing.
    """
    images: list[tuple[Path, Path | None]] = []
    videos: list[Path] = []
    errors: list[dict[str, str]] = []

    def add(paths: list[Path], base: Path | None) -> None:
        for p in paths:
            if p.suffix.lower() in VIDEO_SUFFIXES:
                videos.append(p)
            else:
                images.append((p, base))

    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            walker = path.rglob("*") if recursive else path.iterdir()
            found = sorted(p for p in walker if p.is_file() and not p.name.startswith("."))
            media = [p for p in found if p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES]
            if not media:
                errors.append({"input": raw, "error": f"{raw}: no images or videos in this folder"})
            add(media, path)
        elif path.exists():
            add([path], None)
        elif glob.has_magic(raw):
            matches = sorted(Path(m) for m in glob.glob(raw, recursive=True) if Path(m).is_file())
            if not matches:
                errors.append({"input": raw, "error": f"{raw}: no files match this pattern"})
            add(matches, None)
        else:
            errors.append({"input": raw, "error": f"{raw}: file not found"})
    return images, videos, errors


def _output_paths(source: Path, base: Path | None, options: InferOptions) -> dict[str, Path]:
    folder = options.out
    if base is not None:
        folder = options.out / source.parent.relative_to(base)  # mirror a folder's layout
    stem = source.stem
    paths = {"mask": folder / f"{stem}_mask.png"}
    if options.overlay:
        paths["overlay"] = folder / f"{stem}_overlay.png"
    if options.prob:
        paths["prob"] = folder / f"{stem}_prob.png"
    if options.json:
        paths["json"] = folder / f"{stem}.json"
    return paths


def plan_jobs(
    images: list[tuple[Path, Path | None]], options: InferOptions, summary: RunSummary
) -> list[Job]:
    """Output paths per image; never an input file as an output, never one output for two inputs."""
    inputs = {p.resolve() for p, _ in images}
    claimed: dict[Path, Path] = {}
    jobs = []
    for source, base in images:
        outputs = _output_paths(source, base, options)
        clash = next((o for o in outputs.values() if o.resolve() in inputs), None)
        if clash is not None:
            summary.failed.append(
                {
                    "input": str(source),
                    "error": f"{source}: output {clash} would overwrite an input file; choose another --out",
                }
            )
            continue
        taken = next(
            (claimed[o.resolve()] for o in outputs.values() if o.resolve() in claimed), None
        )
        if taken is not None:
            summary.failed.append(
                {
                    "input": str(source),
                    "error": f"{source}: same output name as {taken}; run it separately or rename",
                }
            )
            continue
        for o in outputs.values():
            claimed[o.resolve()] = source
        if not options.overwrite and all(o.exists() for o in outputs.values()):
            summary.skipped_existing += 1
            continue
        jobs.append(Job(source, outputs))
    return jobs


def _progress(total: int, enabled: bool, what: str = "images"):
    if not enabled or total <= 1:
        return None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("segmenting"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} " + what + "/s"),
        TimeRemainingColumn(),
        transient=True,
    )


def check_writable(directory: Path) -> None:
    """Fail early if ``directory`` cannot be created or written; creates nothing itself."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot create output folder {directory}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {directory} is not writable")


def run_images(
    segmenter: Segmenter, jobs: list[Job], options: InferOptions, summary: RunSummary
) -> None:
    """Segment ``jobs`` through the pipeline; failures are recorded per image and skipped."""
    if not jobs:
        return
    for directory in {p.parent for job in jobs for p in job.outputs.values()}:
        check_writable(directory)
    meta = {"model": str(segmenter.path), "threshold": segmenter.threshold}

    def load(job: Job) -> Prepared:
        rgb, _ = load_image(job.source, max_pixels=options.max_pixels)
        return segmenter.prepare(rgb, keep_image=options.overlay)

    def finish(job: Job, prepared: Prepared, output: np.ndarray) -> dict:
        prediction = segmenter.finish(output, prepared.size, keep_largest=options.keep_largest)
        return write_image_outputs(
            job.outputs,
            prepared.image,
            prediction.probability,
            prediction.mask,
            {"input": str(job.source), **meta},
        )

    start = time.perf_counter()
    outcomes = run_pipeline(
        segmenter, jobs, load, finish, workers=options.workers, batch_size=options.batch_size
    )
    with _Meter(len(jobs), options.progress, "images") as meter:
        for outcome in outcomes:
            if outcome.error is not None:
                summary.failed.append(_failure(outcome.item.source, outcome.error))
            else:
                summary.processed += 1
                summary.images.append({"input": str(outcome.item.source), **outcome.result})
            meter.advance(summary.processed / (time.perf_counter() - start))
    summary.seconds += time.perf_counter() - start


def _failure(source: Path, error: Exception) -> dict[str, str]:
    message = str(error)
    return {
        "input": str(source),
        "error": message if str(source) in message else f"{source}: {message}",
    }


class _Meter:
    """A rich progress bar that is a no-op when disabled (not a terminal, or a single item)."""

    def __init__(self, total: int, enabled: bool, what: str) -> None:
        self.progress = _progress(total, enabled, what)
        self.task = (
            self.progress.add_task("segment", total=total, rate="-") if self.progress else None
        )

    def __enter__(self) -> _Meter:
        if self.progress:
            self.progress.start()
        return self

    def advance(self, rate: float) -> None:
        if self.progress:
            self.progress.update(self.task, advance=1, rate=f"{rate:.1f}")

    def __exit__(self, *exc) -> None:
        if self.progress:
            self.progress.stop()


def _frames(capture: cv2.VideoCapture, limit: int | None = None) -> Iterator[np.ndarray]:
    """Decoded frames as RGB arrays (decoding happens as the pipeline asks for the next one)."""
    count = 0
    while limit is None or count < limit:
        ok, bgr = capture.read()
        if not ok:
            return
        count += 1
        yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _overlay_frame(segmenter: Segmenter, keep_largest: bool):
    """A pipeline ``finish`` step for video: (BGR overlay frame, region statistics, ms since load)."""

    def finish(
        frame: np.ndarray, prepared: Prepared, output: np.ndarray
    ) -> tuple[np.ndarray, dict]:
        prediction = segmenter.finish(output, prepared.size, keep_largest=keep_largest)
        stats = region_stats(prediction.mask, contours=False)
        return cv2.cvtColor(overlay(frame, prediction.mask), cv2.COLOR_RGB2BGR), stats

    return finish


def run_video(segmenter: Segmenter, path: Path, options: InferOptions, summary: RunSummary) -> None:
    """Overlay video ``<stem>_overlay.mp4`` and per-frame CSV ``<stem>_frames.csv``."""
    out_video = options.out / f"{path.stem}_overlay.mp4"
    out_csv = options.out / f"{path.stem}_frames.csv"
    if not options.overwrite and out_video.exists() and out_csv.exists():
        summary.skipped_existing += 1
        return
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ImageError(f"{path}: not a readable video")
    options.out.mkdir(parents=True, exist_ok=True)
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    tmp_video = out_video.with_name(f".{out_video.name}.tmp.mp4")
    writer, rows = None, io.StringIO()
    table = csv.writer(rows)
    table.writerow(["frame", "area_px", "area_fraction", "regions", "ms"])
    start, frames, last = time.perf_counter(), 0, time.perf_counter()
    try:
        outcomes = run_pipeline(
            segmenter,
            _frames(capture),
            lambda frame: segmenter.prepare(frame, keep_image=False),
            _overlay_frame(segmenter, options.keep_largest),
            workers=options.workers,
        )
        for outcome in outcomes:
            if outcome.error is not None:
                raise ImageError(f"{path}: frame {frames}: {outcome.error}")
            view, stats = outcome.result
            if writer is None:
                height, width = view.shape[:2]
                writer = cv2.VideoWriter(
                    str(tmp_video), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height)
                )
            writer.write(view)
            now = time.perf_counter()
            table.writerow(
                [
                    frames,
                    stats["area_px"],
                    f"{stats['area_fraction']:.6f}",
                    stats["regions"],
                    f"{(now - last) * 1e3:.2f}",
                ]
            )
            last, frames = now, frames + 1
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    if frames == 0:
        tmp_video.unlink(missing_ok=True)
        raise ImageError(f"{path}: no frames could be decoded")
    os.replace(tmp_video, out_video)
    write_atomic(out_csv, rows.getvalue().encode())
    summary.videos += 1
    summary.frames += frames
    summary.seconds += time.perf_counter() - start


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


def run_camera(segmenter: Segmenter, index: int, show: bool, max_frames: int | None) -> int:
    """Live camera through the same pipeline (one frame in flight per stage: latency over throughput)."""
    capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        raise ImageError(f"camera {index} could not be opened")
    frames, start = 0, time.perf_counter()
    try:
        outcomes = run_pipeline(
            segmenter,
            _frames(capture, max_frames),
            lambda frame: segmenter.prepare(frame),
            _overlay_frame(segmenter, False),
        )
        for outcome in outcomes:
            if outcome.error is not None:
                raise ImageError(f"camera {index}: {outcome.error}")
            frames += 1
            if show and not _show(outcome.result[0], frames / (time.perf_counter() - start)):
                break
    finally:
        capture.release()
    return frames


def infer(inputs: list[str], segmenter: Segmenter, options: InferOptions) -> RunSummary:
    """Segment every input; bad inputs are recorded in the summary and skipped."""
    summary = RunSummary(model=str(segmenter.path), providers=segmenter.active_providers)
    images, videos, errors = collect_inputs(inputs, options.recursive)
    summary.failed.extend(errors)
    jobs = plan_jobs(images, options, summary)
    run_images(segmenter, jobs, options, summary)
    for video in videos:
        try:
            run_video(segmenter, video, options, summary)
        except ImageError as exc:
            summary.failed.append({"input": str(video), "error": str(exc)})
    if summary.processed or summary.videos:
        options.out.mkdir(parents=True, exist_ok=True)
        write_atomic(
            options.out / "summary.json", (json.dumps(summary.__dict__, indent=1) + "\n").encode()
        )
    return summary
