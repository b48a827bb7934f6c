"""Inference over images, folders, globs and videos, all through one overlapped pipeline
(:mod:`lvunet_runtime.pipeline`): loader threads decode and prepare ahead (bounded), the calling thread
only runs the session, writer threads finish, encode and write. One session serves the run.

Every file goes through one :class:`~lvunet_runtime.writer.OutputGuard`. The run record
(:mod:`lvunet_runtime.records`) holds the settings that shape the outputs and the list of outputs; a
rerun into the same folder keeps those outputs and adds what is missing, and one with other settings is
refused before any work unless ``--overwrite``. A fault that will repeat for every file (disk full,
permission lost) stops the run: what was written stays, the summary says what was not, and the exit
code is 2.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np

from lvunet_runtime.data import looks_like_mask
from lvunet_runtime.errors import (
    ImageError,
    Interrupted,
    OutputError,
    describe_os_error,
    stops_the_run,
)
from lvunet_runtime.image import load_image
from lvunet_runtime.inputs import Inputs, collect_inputs, read_path_list
from lvunet_runtime.lock import run_lock
from lvunet_runtime.outputs import finish_image
from lvunet_runtime.pipeline import run_pipeline
from lvunet_runtime.plan import InferOptions, Job, default_workers, plan_jobs
from lvunet_runtime.progress import Meter
from lvunet_runtime.records import (
    RECORD_NAME,
    RunSummary,
    _relative,
    check_records,
    failure_entry,
    kept_results,
    read_record,
    read_records,
    run_settings,
    write_plan,
    write_record,
)
from lvunet_runtime.segmenter import Prepared, Segmenter
from lvunet_runtime.video import run_video
from lvunet_runtime.writer import OutputGuard, check_output_folder


def default_model_threads() -> int:
    """ONNX Runtime threads for a multi-image run: the cores the decode/write threads leave free.

    On 2 cores this is 1 thread: measured 109-112 images/s against 74-80 with 2 threads, whose spinning
    workers compete with decoding (benchmarks/results/cpu/README.md).
    """
    return max(1, (os.cpu_count() or 2) - default_workers())


class UnfitInputs:
    """Counts the inputs that clearly do not fit the model (Segmenter.input_warning) and says so once,
    as a note of the run: ``3 of the inputs: a grey image sent to a model trained on colour images``."""

    def __init__(self, segmenter: Segmenter, summary: RunSummary) -> None:
        self.segmenter, self.summary, self.count, self.first = segmenter, summary, 0, None
        self.masks = 0  # inputs that look like masks (two grey values): a masks folder given?
        self._lock = threading.Lock()  # images are decoded by several threads

    def check(self, rgb: np.ndarray) -> None:
        if looks_like_mask(rgb):
            with self._lock:
                self.masks += 1
            return  # (a mask is grey: the colour warning would only repeat the point)
        warning = self.segmenter.input_warning(rgb)
        if warning:
            with self._lock:
                self.count += 1
                self.first = self.first or warning

    def say(self) -> None:
        if self.masks:
            self.summary.notes.append(
                f"warning: {self.masks} input(s) hold two grey values only, as masks do: is this "
                "a masks folder? (lvunet-eval --data DIR scores masks against images)"
            )
        if self.count:
            self.summary.notes.append(f"warning: {self.count} input(s): {self.first}")


def run_images(
    segmenter: Segmenter,
    jobs: list[Job],
    options: InferOptions,
    guard: OutputGuard,
    summary: RunSummary,
    unfit: UnfitInputs | None = None,
) -> None:
    """Segment ``jobs`` through the pipeline; failures are recorded per image, stopping faults stop."""
    if not jobs:
        return

    def load(job: Job) -> Prepared:
        rgb, _ = load_image(job.source, max_pixels=options.max_pixels)
        if unfit is not None:
            unfit.check(rgb)
        return segmenter.prepare(rgb, keep_image="overlay" in job.outputs)

    written: dict[Path, dict] = {}  # per input, as soon as its files are written (a writer thread)

    def finish(job: Job, prepared: Prepared, output: np.ndarray) -> dict:
        stats = finish_image(
            segmenter,
            output,
            prepared.size,
            prepared.image,
            job.outputs,
            guard,
            keep_largest=options.keep_largest,
            source=str(job.source),
            series=options.seg_series,
            regions=len(jobs) == 1,  # a single-image run's console line names its regions
        )
        written[job.source] = stats
        return stats

    start = time.perf_counter()
    try:
        _consume(
            run_pipeline(
                segmenter,
                jobs,
                load,
                finish,
                workers=options.workers,
                batch_size=options.batch_size,
            ),
            len(jobs),
            options,
            summary,
        )
    finally:  # interrupted too: every image whose files exist is in the record, in input order
        done = [job for job in jobs if job.source in written]
        summary.processed += len(done)
        summary.images += [{"input": str(job.source), **written[job.source]} for job in done]
        failed = {f["input"] for f in summary.failed}
        summary.not_done += sum(
            1 for j in jobs if j.source not in written and str(j.source) not in failed
        )
        summary.seconds += time.perf_counter() - start


def _consume(outcomes, count: int, options: InferOptions, summary: RunSummary) -> None:
    """The pipeline's outcomes: failures recorded, a fault that would repeat for every file stops."""
    with Meter(count, options.progress, "images") as meter:
        for outcome in outcomes:
            if outcome.error is not None and stops_the_run(outcome.error):
                summary.stopped = describe_os_error(outcome.error)
                break
            if outcome.error is not None:
                summary.failed.append(failure_entry(outcome.item.source, outcome.error))
            meter.advance()
        outcomes.close()


def run_jobs(
    segmenter: Segmenter,
    jobs: list[Job],
    options: InferOptions,
    guard: OutputGuard,
    summary: RunSummary,
) -> None:
    """Images (here or on Ray), then videos; a fault that would repeat for every file stops both."""
    videos = [j for j in jobs if j.video]
    images = [j for j in jobs if j not in videos]
    unfit = UnfitInputs(segmenter, summary)
    try:
        _run_images_then_videos(segmenter, images, videos, options, guard, summary, unfit)
    finally:
        unfit.say()
        empty = [entry for entry in summary.images if entry.get("area_px") == 0]
        if len(summary.images) >= 3 and len(empty) == len(summary.images):
            summary.notes.append(
                f"warning: no foreground in any of the {len(empty)} images: check --model and "
                f"--threshold (now {segmenter.threshold:g})"
            )


def _run_images_then_videos(segmenter, images, videos, options, guard, summary, unfit) -> None:
    if options.ray:  # images on the cluster; videos (sequential by nature) here
        from lvunet_runtime.distributed import run_images_ray

        run_images_ray(segmenter.spec, images, options, summary)
        guard.adopt(p for job in images for p in job.outputs.values() if p.exists())
    else:
        run_images(segmenter, images, options, guard, summary, unfit)
    for job in videos:
        if summary.stopped:
            summary.not_done += 1
            continue
        try:
            run_video(segmenter, job, options, guard, summary, unfit)
        except OSError as exc:
            if stops_the_run(exc):
                summary.stopped = describe_os_error(exc)
            else:
                summary.failed.append(failure_entry(job.source, exc))
        except (ImageError, OutputError) as exc:
            summary.failed.append(failure_entry(job.source, exc))


def infer(
    inputs: list[str], segmenter: Segmenter, options: InferOptions, *, found: Inputs | None = None
) -> RunSummary:
    """Segment every input (or the sources ``found`` already, as ``--watch`` does); bad inputs are
    recorded in the summary and skipped.

    Raises:
        OutputError: before any work, when the output folder or its record forbids the run.
    """
    if found is None:
        if options.input_list is not None:
            inputs = [*inputs, *read_path_list(options.input_list)]
        found = collect_inputs(inputs, options.recursive)
    settings = run_settings(segmenter, options)
    summary = RunSummary(
        model=segmenter.identity, providers=segmenter.active_providers, settings=settings
    )
    if options.dicom_seg and options.seg_series is None:
        from lvunet_runtime.dicom import SegSeries

        options.seg_series = SegSeries.new(segmenter)  # one new DICOM series per run
    summary.provider_fallback = list(getattr(segmenter, "fallback", []))
    if segmenter.adapter is not None:
        summary.adapter = segmenter.adapter.to_dict()
    if summary.providers[0] != "CPUExecutionProvider":  # what the accelerator left to the CPU
        summary.node_placement = segmenter.node_placement()
    summary.failed.extend(found.errors)
    check_output_folder(options.out)
    records = read_records(options.out)
    previous = check_records(records, settings, options)
    guard = OutputGuard(overwrite=options.overwrite, inputs=[s.path for s in found.sources])
    guard.check(
        options.out / options.record_name,
        ours=read_record(options.out, options.record_name) is not None,
    )
    jobs = plan_jobs(found.sources, options, guard, previous, summary)
    if not jobs:
        return summary
    made_folder = not options.out.exists()
    options.out.mkdir(parents=True, exist_ok=True)
    try:
        _run_recorded(segmenter, jobs, options, guard, summary, records, previous)
    finally:
        if made_folder and not any(
            options.out.iterdir()
        ):  # a run that wrote nothing leaves no folder
            options.out.rmdir()
    return summary


def _run_recorded(segmenter, jobs, options, guard, summary, records, previous) -> None:
    """The jobs under the run lock, the record written before (the plan) and after (what was done)."""
    with run_lock(options.out, options.record_name, summary.notes):
        planned = {_relative(p, options.out) for job in jobs for p in job.outputs.values()}
        write_plan(options, summary, previous, planned, guard)
        try:
            run_jobs(segmenter, jobs, options, guard, summary)
        except (KeyboardInterrupt, Interrupted):
            summary.stopped = "interrupted"
            raise
        finally:  # also when interrupted: the record lists what was finished
            own = [r for r in records if r.get("record_file", RECORD_NAME) == options.record_name]
            summary.images = kept_results(own, summary)
            write_record(options, summary, previous, guard, planned=True)
