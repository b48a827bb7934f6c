"""Archive-scale inference on a Ray cluster (optional extra ``lvunet-runtime[ray]``), with the same masks.

The driver plans the job exactly as a local run does (inputs, output names, what exists, the run record);
Ray Data then feeds the planned jobs to a pool of actors, each opening the run's own
:class:`~lvunet_runtime.segmenter.SegmenterSpec` (every option of the local run, with its own thread
count), which decode, segment and write the outputs through the same per-image finish step as a local
run (so the files are byte-identical). Failures come back per file; a fault that stops a local run (a
full disk) stops this one too. On a small machine the actors get fractional CPUs, so Ray Data's own tasks
are never starved and a run cannot stall.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import asdict
from pathlib import Path

from lvunet_runtime.console import quiet_ray, quiet_stderr
from lvunet_runtime.errors import LVUNetRuntimeError, first_line, stops_the_run
from lvunet_runtime.records import failure_entry
from lvunet_runtime.segmenter import SegmenterSpec

# Per-file faults an actor reports back instead of failing the whole batch.
ACTOR_FAULTS = (LVUNetRuntimeError, OSError, ValueError)


def _require_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise LVUNetRuntimeError(
            "--ray needs Ray Data: pip install 'lvunet-runtime[ray]' (or pip install 'ray[data]')"
        ) from None
    return ray


class SegmentActor:
    """One Ray actor: the run's segmenter, opened from its spec; writes the outputs of each job."""

    def __init__(self, spec: SegmenterSpec, options: dict) -> None:
        from lvunet_runtime.dicom import SegSeries

        self.segmenter = spec.open()
        self.options = options
        series = options.get("seg_series")
        self.series = SegSeries(**series) if series else None

    def __call__(self, batch: dict) -> dict:
        from lvunet_runtime.image import load_image
        from lvunet_runtime.outputs import finish_image
        from lvunet_runtime.writer import OutputGuard

        guard = OutputGuard(overwrite=True)  # the driver planned these exact targets
        segmenter = self.segmenter
        results = []
        for source, outputs in zip(batch["source"], batch["outputs"], strict=True):
            paths = {k: Path(v) for k, v in json.loads(outputs).items()}
            try:
                rgb, _ = load_image(source, max_pixels=self.options["max_pixels"])
                prepared = segmenter.prepare(rgb, keep_image="overlay" in paths)
                output = segmenter.run_prepared([prepared])[0]
                stats = finish_image(
                    segmenter,
                    output,
                    prepared.size,
                    prepared.image,
                    paths,
                    guard,
                    keep_largest=self.options["keep_largest"],
                    source=source,
                    series=self.series,
                )
                results.append(json.dumps({"ok": stats}))
            except ACTOR_FAULTS as exc:
                results.append(
                    json.dumps({"error": first_line(exc), "errno": getattr(exc, "errno", None)})
                )
        return {"source": list(batch["source"]), "result": results}


def _wants_gpu(providers: tuple[str, ...] | list[str] | None) -> bool:
    names = [p.lower() for p in providers or []]
    return any(n in ("cuda", "tensorrt", "trt") or "cuda" in n or "tensorrt" in n for n in names)


def actor_layout(actors: int | None, cpus: float) -> tuple[int, float, int]:
    """(actors, CPUs reserved per actor, ONNX Runtime threads per actor) for a cluster with ``cpus``.

    Every actor reserves a fraction of a CPU so that Ray Data's scheduling tasks always find room:
    together the actors reserve at most ``cpus - 0.5``.
    """
    count = actors or max(1, int(cpus) // 2)
    reserve = max(0.1, min(1.0, (cpus - 0.5) / count))
    threads = max(1, int(cpus // count))
    return count, math.floor(reserve * 100) / 100, threads  # rounded down: never over the budget


def run_images_ray(spec: SegmenterSpec, jobs: list, options, summary) -> None:
    """Segment ``jobs`` on Ray with segmenters opened from ``spec``; fills ``summary`` as a local run
    does (processed, failed, images, and ``stopped`` on a fault that stops a local run)."""
    if not jobs:
        return
    started = time.perf_counter()
    ray = start_ray(options.ray_address, progress=bool(options.progress))
    cpus = float(ray.cluster_resources().get("CPU", 1))
    count, reserve, threads = actor_layout(options.ray_actors, cpus)
    items = [
        {
            "source": str(job.source),
            "outputs": json.dumps({k: str(v) for k, v in job.outputs.items()}),
        }
        for job in jobs
    ]
    dataset = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 4 * count)))
    results = dataset.map_batches(
        SegmentActor,
        fn_constructor_kwargs={
            "spec": spec.with_(threads=threads),
            "options": {
                "max_pixels": options.max_pixels,
                "keep_largest": options.keep_largest,
                "seg_series": asdict(options.seg_series) if options.seg_series else None,
            },
        },
        batch_size=8,
        concurrency=count,
        num_cpus=reserve,
        **(
            {"num_gpus": 1} if _wants_gpu(spec.providers) else {}
        ),  # one GPU per actor (untested here)
    )
    with warnings.catch_warnings():  # Ray Data's notes on how few blocks a small job has
        warnings.simplefilter("ignore", UserWarning)
        collect(results.iter_rows(), summary, total=len(jobs))
    summary.seconds += time.perf_counter() - started
    summary.ray = {
        "actors": count,
        "cpus_per_actor": reserve,
        "threads_per_actor": threads,
        "cluster_cpus": cpus,
    }


def start_ray(address: str | None, *, progress: bool):
    """Ray, connected to ``address`` or to a new local cluster using this machine's CPUs."""
    ray = _require_ray()
    quiet_ray()
    if not ray.is_initialized():
        with quiet_stderr():  # the core's start-up notes; failures still raise
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
                num_cpus=None if address else os.cpu_count(),
            )
    ray.data.DataContext.get_current().enable_progress_bars = progress
    return ray


def collect(rows, summary, total: int | None = None) -> None:
    """The actors' per-file results into the run summary, as a local run records them; a fault that
    would repeat for every file (its errno, e.g. a full disk) stops the run as it stops a local one:
    the rest are counted as not done."""
    seen = 0
    for row in rows:
        seen += 1
        outcome = json.loads(row["result"])
        source = row["source"]
        if "ok" in outcome:
            summary.processed += 1
            summary.images.append({"input": source, **outcome["ok"]})
        elif stops_the_run(code=outcome.get("errno")):
            summary.stopped = failure_entry(source, outcome["error"])["error"]
            break
        else:
            summary.failed.append(failure_entry(source, outcome["error"]))
    if summary.stopped and total is not None:
        summary.not_done += total - seen + 1
