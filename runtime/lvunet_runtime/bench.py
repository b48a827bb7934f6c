"""Latency and throughput of a model across providers, thread counts and batch sizes (``lvunet-bench``).

Each combination runs in its own Python process (fresh session, its own peak memory), so results do not
leak into each other. An unavailable provider is reported as unavailable, never silently run on CPU.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from lvunet_runtime.errors import LVUNetRuntimeError
from lvunet_runtime.machine import machine_info
from lvunet_runtime.providers import split_spec

# The default table fits 80 columns; --wide (and the JSON report, always) has everything.
TABLE_COLUMNS = ("provider", "threads", "batch", "median ms", "p90 ms", "images/s", "Dice/cpu")
WIDE_COLUMNS = (*TABLE_COLUMNS, "p99 ms", "first ms", "create ms", "peak MB")


def table_columns(wide: bool = False) -> tuple[str, ...]:
    return WIDE_COLUMNS if wide else TABLE_COLUMNS


def peak_rss_mb() -> float | None:
    """This process's peak resident memory in MB, on every OS (None where it cannot be measured).

    ``resource`` is Unix-only and reports kilobytes on Linux but bytes on macOS; on Windows psutil's
    peak working set is used when psutil is installed.
    """
    try:
        import resource
    except ImportError:
        try:
            import psutil
        except ImportError:
            return None
        info = psutil.Process().memory_info()
        return getattr(info, "peak_wset", info.rss) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def mask_agreement(segmenter, reference) -> dict:
    """Mean and lowest per-image Dice of ``segmenter``'s masks against ``reference``'s (CPU fp32) on the
    bundled sample images, each at its own size."""
    from lvunet_runtime.image import load_image
    from lvunet_runtime.metrics import confusion_counts, per_image_scores

    samples = sorted((Path(__file__).parent / "samples").glob("*.jpg"))
    dices = []
    for path in samples:
        rgb, _ = load_image(path)
        a, b = segmenter.predict(rgb).mask, reference.predict(rgb).mask
        dices.append(float(per_image_scores(confusion_counts(a[None], b[None]))[1][0]))
    return {
        "dice_vs_cpu_fp32": sum(dices) / len(dices),
        "min_dice_vs_cpu_fp32": min(dices),
        "images": len(dices),
    }


def bench_one(
    model: str,
    provider: str,
    threads: int | None,
    batch: int,
    runs: int,
    warmup: int,
    device: str | None = None,
) -> dict:
    """One combination, in this process: session creation, first run, warm latency distribution, the
    nodes each provider ran, and mask agreement with the CPU provider in fp32."""
    import numpy as np

    from lvunet_runtime.segmenter import Segmenter

    name, precision = split_spec(provider)
    start = time.perf_counter()
    segmenter = Segmenter(
        model, providers=[name], threads=threads, precision=precision, device=device
    )
    created = time.perf_counter() - start
    contract = segmenter.contract
    rng = np.random.default_rng(0)
    images = rng.integers(
        0, 256, (batch, contract.input_height, contract.input_width, 3), dtype=np.uint8
    )
    from lvunet_runtime.processing import to_model_input

    x = to_model_input(images, contract)
    start = time.perf_counter()
    segmenter.run(x)
    first = time.perf_counter() - start
    for _ in range(warmup):
        segmenter.run(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        segmenter.run(x)
        times.append((time.perf_counter() - start) * 1e3)
    median = statistics.median(times)
    return {
        "provider": provider,
        "active_providers": segmenter.active_providers,
        "threads": threads,
        "batch": batch,
        "status": "ok",
        "session_create_ms": created * 1e3,
        "first_run_ms": first * 1e3,
        "median_ms": median,
        "p90_ms": percentile(times, 90),
        "p99_ms": percentile(times, 99),
        "min_ms": min(times),
        "max_ms": max(times),
        "images_per_s": batch / median * 1e3,
        "peak_rss_mb": peak_rss_mb(),
        "precision": contract.precision,
        "inference_precision": precision or "fp32",
        "input_size": [contract.input_height, contract.input_width],
        "node_placement": segmenter.node_placement(),
        "adapter": segmenter.adapter.line() if segmenter.adapter is not None else "",
        "device": device,
        **mask_agreement(segmenter, Segmenter(model, providers=["cpu"])),
    }


def _in_subprocess(
    model: str,
    provider: str,
    threads: int | None,
    batch: int,
    runs: int,
    warmup: int,
    device: str | None = None,
) -> dict:
    arguments = f"{model!r}, {provider!r}, {threads!r}, {batch!r}, {runs!r}, {warmup!r}, {device!r}"
    code = (
        "import json, sys\nfrom lvunet_runtime.bench import bench_one\n"
        f"print(json.dumps(bench_one({arguments})))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if result.returncode != 0:
        lines = [
            line
            for line in result.stderr.strip().splitlines()
            if "Error" in line or "error" in line
        ] or result.stderr.strip().splitlines()
        return {
            "provider": provider,
            "threads": threads,
            "batch": batch,
            "status": "error",
            "error": lines[-1] if lines else "failed",
        }
    return json.loads(result.stdout.strip().splitlines()[-1])


def end_to_end(model: str, folder: Path, threads: int | None, batch: int) -> dict:
    """Whole images: file to written mask with lvunet-infer's pipeline, in this process."""
    from lvunet_runtime.infer import infer
    from lvunet_runtime.plan import InferOptions
    from lvunet_runtime.segmenter import Segmenter

    segmenter = Segmenter(model, threads=threads)
    with tempfile.TemporaryDirectory() as out:
        options = InferOptions(out=Path(out), batch_size=batch, progress=False, overwrite=True)
        summary = infer([str(folder)], segmenter, options)
    return {
        "images": summary.processed,
        "failed": len(summary.failed),
        "seconds": summary.seconds,
        "images_per_s": summary.processed / summary.seconds if summary.seconds else 0.0,
        "peak_rss_mb": peak_rss_mb(),
    }


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise LVUNetRuntimeError(f"expected comma-separated integers, not {text!r}") from None
    if not values or min(values) < 1:
        raise LVUNetRuntimeError(f"expected positive integers, not {text!r}")
    return values


def parse_options(
    providers: str, threads: str, batch_sizes: str
) -> tuple[list[str], list[int | None], list[int]]:
    """Validate the comma-separated CLI lists (``threads`` may include ``auto``)."""
    names = [p.strip() for p in providers.split(",") if p.strip()]
    if not names:
        raise LVUNetRuntimeError(
            "--providers needs at least one name, e.g. cpu or cpu,openvino:bf16"
        )
    for spec in names:
        precision = split_spec(spec)[1]
        if precision not in (None, "fp32", "fp16", "bf16"):
            raise LVUNetRuntimeError(f"precision in {spec!r} must be fp32, fp16 or bf16")
    thread_list: list[int | None] = []
    for value in threads.split(","):
        value = value.strip()
        thread_list.append(None if value == "auto" else _ints(value)[0])
    return names, thread_list, _ints(batch_sizes)


def to_markdown(report: dict) -> str:
    machine = report["machine"]
    load = machine.get("load_1min")
    lines = [
        f"Model `{report['model']}` ({report['model_size_mb']:.2f} MB); {machine['cpu']}, "
        f"{machine['cores']} cores, load {'?' if load is None else f'{load:.2f}'}, onnxruntime "
        f"{machine['onnxruntime']}; {report['runs']} runs after {report['warmup']} warm-up, each "
        "combination in its own process.",
        "",
        "| provider | threads | batch | status | create ms | first ms | median ms | p90 ms | p99 ms | images/s | peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        if r["status"] != "ok":
            lines.append(
                f"| {r['provider']} | {r['threads'] or 'auto'} | {r['batch']} | {r['status']}: {r.get('error', '')} | | | | | | | |"
            )
            continue
        lines.append(
            f"| {r['provider']} | {r['threads'] or 'auto'} | {r['batch']} | ok | {r['session_create_ms']:.0f} | "
            f"{r['first_run_ms']:.1f} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{r['images_per_s']:.0f} | {r['peak_rss_mb'] or 0:.0f} |"
        )
    if report.get("end_to_end"):
        e = report["end_to_end"]
        lines += [
            "",
            f"End to end ({e['images']} images, file to written mask): {e['images_per_s']:.1f} images/s, peak {e['peak_rss_mb'] or 0:.0f} MB.",
        ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class BenchPlan:
    """A validated ``lvunet-bench`` request: what to run, before anything runs."""

    model: Path
    precision: str
    providers: list[str]
    threads: list[int | None]
    batches: list[int]
    runs: int
    warmup: int
    end_to_end: Path | None
    machine: dict
    device: str | None = None


def plan_benchmark(
    model: str | None,
    providers: str,
    threads: str,
    batch_sizes: str,
    image_size: int | None,
    runs: int,
    warmup: int,
    end_to_end_dir: Path | None,
    device: str | None = None,
) -> BenchPlan:
    """Validate every option and the model before any timing starts.

    Raises:
        LVUNetRuntimeError: a bad option, model or folder, as one line saying what to fix.
    """
    from lvunet_runtime.model_files import resolve_model
    from lvunet_runtime.segmenter import Segmenter

    names, thread_list, batches = parse_options(providers, threads, batch_sizes)
    if runs < 1 or warmup < 0:
        raise LVUNetRuntimeError("--runs must be at least 1 and --warmup at least 0")
    path = resolve_model(model)
    contract = Segmenter(path).contract
    if image_size is not None and image_size != contract.input_height:
        raise LVUNetRuntimeError(
            f"this model takes {contract.input_height}x{contract.input_width}; --image-size "
            f"{image_size} does not fit it (re-export with lvunet-export --image-size)"
        )
    if end_to_end_dir is not None and not end_to_end_dir.is_dir():
        raise LVUNetRuntimeError(f"--end-to-end folder not found: {end_to_end_dir}")
    if end_to_end_dir is not None:
        from lvunet_runtime.data import is_image_file

        if not any(is_image_file(p) for p in end_to_end_dir.iterdir()):
            raise LVUNetRuntimeError(
                f"--end-to-end folder {end_to_end_dir} holds no images to time (jpg, png, tif, bmp, ...)"
            )
    return BenchPlan(
        path,
        contract.precision,
        names,
        thread_list,
        batches,
        runs,
        warmup,
        end_to_end_dir,
        machine_info(),
        device,
    )


# Providers that take --device (OpenVINO: CPU/GPU/NPU/AUTO; WebGPU: gpu/software).
DEVICE_PROVIDERS = ("OpenVINOExecutionProvider", "WebGpuExecutionProvider")


def provider_installed(full_name: str, available: list[str]) -> bool:
    """Whether ONNX Runtime here can offer ``full_name``: listed, or (WebGPU, a plugin registered on
    request) its plugin package is installed."""
    if full_name == "WebGpuExecutionProvider":
        import importlib.util

        return importlib.util.find_spec("onnxruntime_ep_webgpu") is not None
    return full_name in available


def run_benchmark(plan: BenchPlan, advance=lambda: None) -> dict:
    """Every (provider, threads, batch) combination in its own process; the report as a dict."""
    from lvunet_runtime.providers import INSTALL_HINTS, PROVIDER_ALIASES

    results = []
    for provider in plan.providers:
        for thread_count in plan.threads:
            for batch in plan.batches:
                name = split_spec(provider)[0]
                full = PROVIDER_ALIASES.get(name.lower(), name)
                if not provider_installed(full, plan.machine["providers"]):
                    results.append(
                        {
                            "provider": provider,
                            "threads": thread_count,
                            "batch": batch,
                            "status": "unavailable",
                            "install": INSTALL_HINTS.get(full, "not an ONNX Runtime provider name"),
                        }
                    )
                else:
                    results.append(
                        _in_subprocess(
                            str(plan.model),
                            provider,
                            thread_count,
                            batch,
                            plan.runs,
                            plan.warmup,
                            plan.device if full in DEVICE_PROVIDERS else None,
                        )
                    )
                advance()
    report = {
        "model": str(plan.model),
        "model_size_mb": plan.model.stat().st_size / 1e6,
        "precision": plan.precision,
        "runs": plan.runs,
        "warmup": plan.warmup,
        "machine": plan.machine,
        "results": results,
        "command": " ".join(["lvunet-bench", *sys.argv[1:]]),
    }
    if plan.end_to_end is not None:
        report["end_to_end"] = end_to_end(
            str(plan.model), plan.end_to_end, plan.threads[0], plan.batches[0]
        )
    return report


def table_rows(report: dict, wide: bool = False) -> list[list[str]]:
    """One row of :func:`table_columns` strings per result (blank timings for unavailable ones)."""
    width = len(table_columns(wide))
    rows = []
    for r in report["results"]:
        head = [r["provider"], str(r["threads"] or "auto"), str(r["batch"])]
        if r["status"] != "ok":
            rows.append([*head, r["status"], *[""] * (width - 4)])
            continue
        peak = r.get("peak_rss_mb")
        row = [
            *head,
            f"{r['median_ms']:.2f}",
            f"{r['p90_ms']:.2f}",
            f"{r['images_per_s']:.0f}",
            f"{r.get('dice_vs_cpu_fp32', float('nan')):.4f}",
        ]
        if wide:
            row += [
                f"{r['p99_ms']:.2f}",
                f"{r['first_run_ms']:.1f}",
                f"{r['session_create_ms']:.0f}",
                "-" if peak is None else f"{peak:.0f}",
            ]
        rows.append(row)
    return rows


def recommend_provider(model: Path, runs: int, warmup: int, advance=lambda: None) -> dict:
    """``lvunet-bench --recommend``: every candidate of :func:`lvunet_runtime.recommend.candidates`
    measured in its own process (batch 1), the fastest whose masks agree with CPU fp32 recorded
    (CPU when nothing else agrees); returns the record."""
    from datetime import datetime, timezone

    from lvunet_runtime.recommend import AGREEMENT, candidates, record_key, save

    measured = []
    for spec, device in candidates():
        result = _in_subprocess(str(model), spec, None, 1, runs, warmup, device)
        result["agrees"] = (
            result.get("status") == "ok" and result.get("min_dice_vs_cpu_fp32", 0) >= AGREEMENT
        )
        measured.append(result)
        advance()
    agreeing = [r for r in measured if r["agrees"]]
    best = min(agreeing, key=lambda r: r["median_ms"]) if agreeing else None
    keep = (
        "provider",
        "device",
        "status",
        "median_ms",
        "min_dice_vs_cpu_fp32",
        "agrees",
        "adapter",
        "error",
    )
    record = {
        "key": record_key(model),
        "model": str(model),
        "provider": best["provider"] if best else "cpu",
        "device": best.get("device") if best else None,
        "median_ms": best["median_ms"] if best else None,
        "measured": [{k: r.get(k) for k in keep} for r in measured],
        "machine": machine_info(),
        "runs": runs,
        "warmup": warmup,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    save(record)
    return record
