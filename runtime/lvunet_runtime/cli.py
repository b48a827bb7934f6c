"""Console entry points: ``lvunet-infer``, ``lvunet-eval``, ``lvunet-bench``. Thin: parse, call, print.

Errors of the runtime's own kind become one line on stderr and exit code 1; a multi-input run that had
to skip some inputs exits with 2. Process-wide settings (OpenCV/FFmpeg logging, Pillow's pixel limit,
which ``--max-pixels`` replaces) are made here, in the entry points, never on import of the library.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer

from lvunet_runtime.errors import LVUNetRuntimeError


def configure_process() -> None:
    """Settings a command-line run wants and a library import must not make."""
    # Keep FFmpeg's own console chatter (e.g. "moov atom not found") out of our one-line errors.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # load_image checks --max-pixels itself, with a message


def _fail(program: str, exc: Exception) -> None:
    typer.echo(f"{program}: error: {str(exc).splitlines()[0]}", err=True)
    raise typer.Exit(1)


def _providers(value: str | None) -> list[str] | None:
    return [p for p in value.split(",") if p.strip()] if value else None


infer_app = typer.Typer(add_completion=False)


@infer_app.command()
def infer_command(
    inputs: list[str] | None = typer.Argument(None, help="Images, folders, glob patterns, videos."),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Bundled name or .onnx path (default: polyp)."
    ),
    out: Path = typer.Option(Path("lvunet-output"), "--out", "-o", help="Output folder."),
    overlay: bool = typer.Option(False, help="Also write <stem>_overlay.png."),
    prob: bool = typer.Option(False, help="Also write <stem>_prob.png (probability x 255)."),
    json_out: bool = typer.Option(
        False, "--json", help="Also write <stem>.json (area, box, regions)."
    ),
    threshold: float | None = typer.Option(
        None, help="Probability threshold (default: the model's)."
    ),
    provider: str | None = typer.Option(None, help="Execution provider(s), e.g. cpu or cuda,cpu."),
    threads: int | None = typer.Option(
        None, help="Intra-op threads (default: ONNX Runtime's choice)."
    ),
    batch_size: int = typer.Option(1, help="Images per model call (batching does not pay on CPU)."),
    keep_largest: bool = typer.Option(False, help="Keep only the largest connected region."),
    recursive: bool = typer.Option(False, help="Descend into sub-folders."),
    overwrite: bool = typer.Option(False, help="Redo images whose outputs exist."),
    max_pixels: int = typer.Option(100_000_000, help="Refuse larger images before decoding."),
    camera: int | None = typer.Option(None, help="Read live camera N instead of files."),
    show: bool = typer.Option(False, help="Show the overlay and frame rate in a window (camera)."),
    max_frames: int | None = typer.Option(None, help="Stop the camera after N frames."),
    progress: bool = typer.Option(True, help="Progress bar for several images."),
) -> None:
    """Segment images, folders and videos with an LV-UNet ONNX model."""
    import glob

    from lvunet_runtime.infer import InferOptions, default_model_threads, infer, run_camera
    from lvunet_runtime.session import Segmenter

    if not inputs and camera is None:
        _fail(
            "lvunet-infer",
            LVUNetRuntimeError(
                "give at least one INPUT (image, folder, pattern, video) or --camera N"
            ),
        )
    many = camera is None and (
        len(inputs) > 1 or any(Path(i).is_dir() or glob.has_magic(i) for i in inputs)
    )
    if threads is None and many:  # leave cores to the decode/write threads of the pipeline
        threads = default_model_threads()
    try:
        segmenter = Segmenter(
            model, providers=_providers(provider), threads=threads, threshold=threshold
        )
        if camera is not None:
            frames = run_camera(segmenter, camera, show, max_frames)
            typer.echo(f"{frames} camera frames segmented")
            return
        options = InferOptions(
            out=out,
            overlay=overlay,
            prob=prob,
            json=json_out,
            overwrite=overwrite,
            recursive=recursive,
            batch_size=batch_size,
            keep_largest=keep_largest,
            max_pixels=max_pixels,
            progress=progress and sys.stderr.isatty(),
        )
        summary = infer(inputs, segmenter, options)
    except LVUNetRuntimeError as exc:
        _fail("lvunet-infer", exc)
    except KeyboardInterrupt:
        typer.echo("lvunet-infer: interrupted; outputs written so far are complete", err=True)
        raise typer.Exit(130) from None
    attempted = summary.processed + summary.skipped_existing + summary.videos + len(summary.failed)
    if summary.failed and attempted == 1:
        _fail("lvunet-infer", LVUNetRuntimeError(summary.failed[0]["error"]))
    for failure in summary.failed:
        typer.echo(f"lvunet-infer: skipped: {failure['error']}", err=True)
    typer.echo(f"{summary.line()} -> {out}")
    if summary.failed:
        raise typer.Exit(2)


eval_app = typer.Typer(add_completion=False)


@eval_app.command()
def eval_command(
    data: Path = typer.Option(..., help="Folder with images/ and masks/."),
    model: str | None = typer.Option(None, "--model", "-m", help="Bundled name or .onnx path."),
    split_file: Path | None = typer.Option(None, help="Evaluate only these ids (one per line)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write all results here."),
    provider: str | None = typer.Option(None),
    threads: int | None = typer.Option(None),
) -> None:
    """Evaluate an ONNX model on images and masks at their own size (the deployable file itself)."""
    from lvunet_runtime.data import find_pairs, read_id_list
    from lvunet_runtime.evaluate import evaluate
    from lvunet_runtime.session import Segmenter

    try:
        ids = None if split_file is None else read_id_list(split_file)
        pairs = find_pairs(data, ids)
        segmenter = Segmenter(model, providers=_providers(provider), threads=threads)
        result = evaluate(segmenter, pairs)
    except LVUNetRuntimeError as exc:
        _fail("lvunet-eval", exc)
    if json_out:
        json_out.write_text(json.dumps(result, indent=1) + "\n")
    typer.echo(
        f"{result['images']} images: IoU {result['iou']:.4f}  Dice {result['dice']:.4f}  "
        f"(dataset IoU {result['dataset_iou']:.4f}, Dice {result['dataset_dice']:.4f}, "
        f"precision {result['precision']:.4f}, recall {result['recall']:.4f}); "
        f"median {result['median_ms']:.1f} ms/image"
    )
    typer.echo("worst: " + ", ".join(f"{r['id']} (Dice {r['dice']:.3f})" for r in result["worst"]))
    typer.echo("slowest: " + ", ".join(f"{r['id']} ({r['ms']:.1f} ms)" for r in result["slowest"]))


bench_app = typer.Typer(add_completion=False)


@bench_app.command()
def bench_command(
    model: str | None = typer.Option(None, "--model", "-m", help="Bundled name or .onnx path."),
    providers: str = typer.Option("cpu", help="Comma-separated providers, e.g. cpu,cuda."),
    threads: str = typer.Option(
        "auto", help="Comma-separated thread counts; 'auto' = ONNX Runtime's choice."
    ),
    batch_sizes: str = typer.Option("1,8", help="Comma-separated batch sizes."),
    image_size: int | None = typer.Option(None, help="Must match the model's input size if given."),
    runs: int = typer.Option(100, help="Timed runs per combination."),
    warmup: int = typer.Option(10, help="Untimed runs first."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the full report here."),
    markdown: Path | None = typer.Option(None, help="Write a Markdown table here."),
    end_to_end_dir: Path | None = typer.Option(
        None, "--end-to-end", help="Also time whole images from this folder."
    ),
) -> None:
    """Benchmark an LV-UNet ONNX model; each combination runs in its own process."""
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from lvunet_runtime.bench import (
        TABLE_COLUMNS,
        plan_benchmark,
        run_benchmark,
        table_rows,
        to_markdown,
    )

    try:
        plan = plan_benchmark(
            model, providers, threads, batch_sizes, image_size, runs, warmup, end_to_end_dir
        )
    except LVUNetRuntimeError as exc:
        _fail("lvunet-bench", exc)
    combos = len(plan.providers) * len(plan.threads) * len(plan.batches)
    with Progress(transient=True, disable=not sys.stderr.isatty()) as progress:
        task = progress.add_task("benchmarking", total=combos)
        report = run_benchmark(plan, lambda: progress.advance(task))
    table = Table(
        title=f"lvunet-bench: {plan.model.name} ({plan.precision}) on {plan.machine['cpu']}"
    )
    for column in TABLE_COLUMNS:
        table.add_column(column)
    for row in table_rows(report):
        table.add_row(*row)
    Console().print(table)
    if report.get("end_to_end"):
        e = report["end_to_end"]
        typer.echo(
            f"end to end: {e['images']} images, {e['images_per_s']:.1f} images/s, peak {e['peak_rss_mb'] or 0:.0f} MB"
        )
    if json_out:
        json_out.write_text(json.dumps(report, indent=1) + "\n")
    if markdown:
        markdown.write_text(to_markdown(report))


def infer_main() -> None:
    """``lvunet-infer`` entry point."""
    configure_process()
    sys.exit(infer_app())


def eval_main() -> None:
    """``lvunet-eval`` entry point."""
    configure_process()
    sys.exit(eval_app())


def bench_main() -> None:
    """``lvunet-bench`` entry point."""
    configure_process()
    sys.exit(bench_app())
