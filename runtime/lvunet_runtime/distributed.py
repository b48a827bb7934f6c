"""Archive-scale inference on a Ray cluster (optional extra ``lvunet-runtime[ray]``), with the same masks.

The driver plans the job exactly as a local run does (inputs, output names, what exists, the run record);
Ray Data then feeds the planned jobs to a pool of actors, each holding one ONNX Runtime session
(``Segmenter``) with its own thread count, which decode, segment and write the outputs themselves through
the same code as a local run (so the files are byte-identical). Failures come back per file. On a small
machine the actors get fractional CPUs, so Ray Data's own tasks are never starved and a run cannot stall.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from pathlib import Path

from lvunet_runtime.errors import LVUNetRuntimeError


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
    """One Ray actor: one Segmenter; writes the outputs of each job it is given."""

    def __init__(
        self, model: str, providers, threads: int, threshold: float, options: dict
    ) -> None:
        from lvunet_runtime.session import Segmenter

        self.segmenter = Segmenter(
            model,
            providers=providers,
            threads=threads,
            threshold=threshold,
            tta=options.get("tta", "off"),
        )
        self.options = options

    def __call__(self, batch: dict) -> dict:
        from lvunet_runtime.image import load_image
        from lvunet_runtime.outputs import write_image_outputs
        from lvunet_runtime.writer import OutputGuard

        guard = OutputGuard(overwrite=True)  # the driver planned these exact targets
        meta = {"model": self.options["model_name"], "threshold": self.segmenter.threshold}
        results = []
        for source, outputs in zip(batch["source"], batch["outputs"], strict=True):
            paths = {k: Path(v) for k, v in json.loads(outputs).items()}
            try:
                rgb, _ = load_image(source, max_pixels=self.options["max_pixels"])
                prediction = self.segmenter.predict(rgb, keep_largest=self.options["keep_largest"])
                stats = write_image_outputs(
                    paths,
                    guard,
                    rgb if "overlay" in paths else None,
                    prediction.probability,
                    prediction.mask,
                    {"input": source, **meta},
                )
                results.append(json.dumps({"ok": stats}))
            except (LVUNetRuntimeError, OSError, ValueError) as exc:
                results.append(
                    json.dumps({"error": str(exc), "errno": getattr(exc, "errno", None)})
                )
        return {"source": list(batch["source"]), "result": results}


def _quiet_ray_logs() -> None:
    """Keep Ray's INFO lines and its C++ core's notes off the console (our summary says what ran)."""
    import logging

    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _wants_gpu(providers: list[str] | None) -> bool:
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


def run_images_ray(
    model: str,
    providers: list[str] | None,
    threshold: float,
    jobs: list,
    options,
    summary,
    *,
    address: str | None = None,
    actors: int | None = None,
    tta: str = "off",
) -> None:
    """Segment ``jobs`` on Ray; fills ``summary`` as a local run does (processed, failed, images)."""
    if not jobs:
        return
    started = time.perf_counter()
    ray = start_ray(address, progress=bool(options.progress))
    cpus = float(ray.cluster_resources().get("CPU", 1))
    count, reserve, threads = actor_layout(actors, cpus)
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
            "model": model,
            "providers": providers,
            "threads": threads,
            "threshold": threshold,
            "options": {
                "model_name": model,
                "max_pixels": options.max_pixels,
                "keep_largest": options.keep_largest,
                "tta": tta,
            },
        },
        batch_size=8,
        concurrency=count,
        num_cpus=reserve,
        **({"num_gpus": 1} if _wants_gpu(providers) else {}),  # one GPU per actor (untested here)
    )
    with warnings.catch_warnings():  # Ray Data's notes on how few blocks a small job has
        warnings.simplefilter("ignore", UserWarning)
        collect(results.iter_rows(), summary)
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
    _quiet_ray_logs()
    from lvunet_runtime.infer import _quiet_stderr

    if not ray.is_initialized():
        with _quiet_stderr():  # the core's start-up notes; failures still raise
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
                num_cpus=None if address else os.cpu_count(),
            )
    ray.data.DataContext.get_current().enable_progress_bars = progress
    return ray


def collect(rows, summary) -> None:
    """The actors' per-file results into the run summary, as a local run records them."""
    for row in rows:
        outcome = json.loads(row["result"])
        source = row["source"]
        if "ok" in outcome:
            summary.processed += 1
            summary.images.append({"input": source, **outcome["ok"]})
        else:
            message = outcome["error"]
            error = message if source in message else f"{source}: {message}"
            summary.failed.append({"input": source, "error": error})
