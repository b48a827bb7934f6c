"""Console entry points: ``lvunet-infer``, ``lvunet-eval``, ``lvunet-bench``. Thin: parse, call, print.

Errors are raised, never printed here: :func:`lvunet_runtime.command.run_command` turns them into one
line and the exit code (listed in ``EXIT_CODES_HELP``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from lvunet_runtime.command import EXIT_CODES_HELP, EXIT_PARTIAL, run_command, version_option
from lvunet_runtime.console import quiet_onnxruntime
from lvunet_runtime.errors import LVUNetRuntimeError


def list_models() -> list[str]:
    """One line per bundled model: input size, training data and the accuracy measured on the file."""
    from lvunet_runtime.model_files import bundled_models
    from lvunet_runtime.segmenter import Segmenter

    lines = []
    for name in bundled_models():
        contract = Segmenter(name).contract
        metrics = contract.test_metrics
        accuracy = (
            f"test IoU {metrics['iou']:.3f} / Dice {metrics['dice']:.3f} on {metrics['images']} images"
            if metrics
            else "no measured accuracy"
        )
        lines.append(
            f"{name}: {contract.input_height}x{contract.input_width} {contract.precision}, "
            f"{contract.label}; trained on {contract.training_dataset}; {accuracy} ({contract.split})"
        )
    return lines


def _providers(value: str | None) -> list[str] | None:
    return [p for p in value.split(",") if p.strip()] if value else None


TTA_HELP = (
    "Test-time augmentation: off; h averages with the mirror image (2 model runs); hv also flipped "
    "upside down and both (4 runs). Measured on the bundled models: hv raised test Dice by +0.009 "
    "(Kvasir-SEG), +0.029 (CVC-ClinicDB) and +0.048 (BUSI) at 4x the model's time."
)
DEVICE_HELP = (
    "Device of the provider: with --provider openvino CPU, GPU, NPU or AUTO; with --provider webgpu "
    "gpu (a hardware adapter, the default) or software (a CPU renderer such as SwiftShader: slow, for "
    "correctness checks; never chosen unless asked)."
)
PRECISION_HELP = (
    "Inference precision of an accelerator provider: fp32, bf16 (OpenVINO on CPUs that have it) or fp16 "
    "(OpenVINO GPU/NPU, TensorRT). Default order without --provider: "
    "TensorRT, CUDA, CoreML, DirectML, OpenVINO, CPU (those installed)."
)


def _check_report_file(path: Path | None, overwrite: bool) -> None:
    """A --json/--markdown report target, checked before the run (never lost at its end)."""
    if path is None:
        return
    from lvunet_runtime.writer import OutputGuard, check_output_folder

    check_output_folder(path.parent)
    OutputGuard(overwrite=overwrite).check(path)


def _write_report(path: Path, text: str, overwrite: bool) -> None:
    from lvunet_runtime.writer import OutputGuard

    OutputGuard(overwrite=overwrite).write(path, text.encode())


infer_app = typer.Typer(add_completion=False, epilog=EXIT_CODES_HELP, rich_markup_mode=None)


@infer_app.command(epilog=EXIT_CODES_HELP)
def infer_command(
    inputs: list[str] | None = typer.Argument(None, help="Images, folders, glob patterns, videos."),
    model: str | None = typer.Option(
        None,
        "--model",
        "-m",
        help="Bundled name (polyp, breast-ultrasound) or .onnx path (default: polyp).",
    ),
    out: Path = typer.Option(Path("lvunet-output"), "--out", "-o", help="Output folder."),
    overlay: bool = typer.Option(False, help="Also write <stem>_overlay.png."),
    prob: bool = typer.Option(False, help="Also write <stem>_prob.png (probability x 255)."),
    json_out: bool = typer.Option(
        False, "--json", help="Also write <stem>.json (area, box, regions)."
    ),
    watch: Path | None = typer.Option(
        None,
        help="Keep segmenting the files that appear in this folder (an export folder), each once, "
        "also after a restart; a file still being copied is waited for. Ctrl+C stops.",
    ),
    dicom_seg: bool = typer.Option(
        False,
        "--dicom-seg",
        help="Also write <stem>_seg.dcm for each DICOM input: a DICOM Segmentation that a PACS or "
        "viewer files with its image (needs lvunet-runtime[dicom]).",
    ),
    threshold: float | None = typer.Option(
        None, help="Probability threshold in (0, 1) (default: the model's)."
    ),
    provider: str | None = typer.Option(
        None,
        help="Execution provider(s), e.g. cpu, openvino, webgpu or cuda,cpu (default: the installed "
        "ones in the order TensorRT, CUDA, CoreML, DirectML, OpenVINO, CPU; webgpu only when asked).",
    ),
    device: str | None = typer.Option(None, help=DEVICE_HELP),
    precision: str | None = typer.Option(None, help=PRECISION_HELP),
    threads: int | None = typer.Option(
        None, min=1, help="Intra-op threads (default: ONNX Runtime's choice)."
    ),
    batch_size: int = typer.Option(
        1, min=1, max=256, help="Images per model call (batching does not pay on CPU)."
    ),
    keep_largest: bool = typer.Option(False, help="Keep only the largest connected region."),
    tta: str = typer.Option("off", help=TTA_HELP),
    recursive: bool = typer.Option(False, help="Descend into sub-folders (outputs mirror them)."),
    overwrite: bool = typer.Option(
        False,
        help="Redo outputs that exist and replace files this run did not create (never inputs).",
    ),
    max_pixels: int = typer.Option(
        100_000_000, min=1, help="Refuse larger images before decoding."
    ),
    camera: int | None = typer.Option(None, min=0, help="Read live camera N instead of files."),
    show: bool = typer.Option(False, help="Show the overlay and frame rate in a window (camera)."),
    max_frames: int | None = typer.Option(None, min=1, help="Stop the camera after N frames."),
    progress: bool = typer.Option(True, help="Progress bar for several images and for videos."),
    models: bool = typer.Option(
        False, "--list-models", help="List the bundled models (size, data, accuracy) and exit."
    ),
    input_list: Path | None = typer.Option(
        None, help="Also take the input paths listed in this text file (one per line, # comments)."
    ),
    num_parts: int = typer.Option(
        1, min=1, help="Split the inputs into N parts (deterministic) and run only --part-id."
    ),
    part_id: int = typer.Option(0, min=0, help="Which part to run, 0 to N-1 (with --num-parts)."),
    merge: bool = typer.Option(
        False, help="Combine the part records in --out into summary.json and report the whole job."
    ),
    ray: bool = typer.Option(
        False,
        help="Run on Ray (a local cluster, or --ray-address): pip install 'lvunet-runtime[ray]'.",
    ),
    ray_address: str | None = typer.Option(None, help="Address of a running Ray cluster."),
    ray_actors: int | None = typer.Option(
        None, min=1, help="Ray actors, one ONNX Runtime session each (default: one per 2 CPUs)."
    ),
    version: bool = version_option("lvunet-infer"),
    video_codec: str = typer.Option(
        "mp4v",
        help="Overlay video format: mp4v (MPEG-4 Part 2, fast; desktop players, not browsers), vp8 "
        "(WebM: browsers and Windows' player; about 10 frames/s to encode at 640x480 on 2 cores) or "
        "vp9 (WebM, smaller, slower still).",
    ),
) -> None:
    """Segment images, folders and videos with an LV-UNet ONNX model."""
    from lvunet_runtime.infer import infer
    from lvunet_runtime.live import run_camera
    from lvunet_runtime.plan import InferOptions
    from lvunet_runtime.segmenter import Segmenter

    if models:
        typer.echo("\n".join(list_models()))
        return
    if merge:
        _merge_command(out)
        return
    inputs = inputs or []
    if watch is not None and (inputs or camera is not None or input_list is not None):
        raise LVUNetRuntimeError("--watch takes the folder to watch instead of INPUTs")
    _check_infer_request(
        inputs or ([str(watch)] if watch else []),
        camera,
        input_list,
        num_parts,
        part_id,
        video_codec,
    )
    if dicom_seg:
        from lvunet_runtime.dicom import check_seg_extra

        check_seg_extra()
    quiet_onnxruntime()
    segmenter = Segmenter(
        model,
        providers=_providers(provider),
        threads=threads if threads is not None else _pipeline_threads(inputs, camera, input_list),
        threshold=threshold,
        device=device,
        precision=precision,
        tta=tta,
    )
    _note_provider("lvunet-infer", segmenter)
    if inputs == ["-"]:
        _stdin_to_stdout(segmenter, overlay or prob or json_out or dicom_seg, keep_largest)
        return
    if camera is not None:
        typer.echo(run_camera(segmenter, camera, show, max_frames).line())
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
        video_codec=video_codec,
        num_parts=num_parts,
        part_id=part_id,
        input_list=input_list,
        ray=ray,
        ray_address=ray_address,
        ray_actors=ray_actors,
        dicom_seg=dicom_seg,
    )
    if watch is not None:
        _watch(watch, segmenter, options)
        return
    summary = infer(inputs, segmenter, options)
    _report_run(summary, out)


def _note_provider(program: str, segmenter) -> None:
    """With --provider auto: one line saying which provider was chosen and why."""
    if segmenter.provider_note:
        typer.echo(f"{program}: {segmenter.provider_note}", err=True)


def _check_infer_request(
    inputs: list[str],
    camera: int | None,
    input_list: Path | None,
    num_parts: int,
    part_id: int,
    video_codec: str,
) -> None:
    """The options that typer's types cannot check alone."""
    from lvunet_runtime.outputs import VIDEO_CODECS

    if part_id >= num_parts:
        raise LVUNetRuntimeError(f"--part-id must be 0..{num_parts - 1}, not {part_id}")
    if video_codec not in VIDEO_CODECS:
        raise LVUNetRuntimeError(
            f"--video-codec must be one of {', '.join(VIDEO_CODECS)}, not {video_codec!r}"
        )
    if not inputs and camera is None and input_list is None:
        raise LVUNetRuntimeError(
            "give at least one INPUT (image, folder, pattern, video) or --camera N"
        )


def _watch(folder: Path, segmenter, options) -> None:
    from lvunet_runtime.watch import watch

    if not folder.is_dir():
        raise LVUNetRuntimeError(f"--watch {folder}: not a folder")
    typer.echo(f"lvunet-infer: watching {folder} -> {options.out}; Ctrl+C stops", err=True)
    watch(folder, segmenter, options, say=typer.echo)


def _stdin_to_stdout(segmenter, other_outputs: bool, keep_largest: bool) -> None:
    """``lvunet-infer -``: one image file on stdin, its mask PNG on stdout and nothing else there (any
    note goes to stderr), as ``lvunet-infer`` writes ``<stem>_mask.png``."""
    from lvunet_runtime.image import decode_image
    from lvunet_runtime.outputs import mask_png

    if other_outputs:
        raise LVUNetRuntimeError(
            "with - the mask PNG goes to stdout; --overlay, --prob, --json and --dicom-seg need a file"
        )
    if sys.stdout.isatty():
        raise LVUNetRuntimeError(
            "stdout is a terminal: redirect the mask PNG (lvunet-infer - < a.jpg > mask.png)"
        )
    data = sys.stdin.buffer.read()
    rgb, _ = decode_image(data, name="stdin")
    warning = segmenter.input_warning(rgb)
    if warning:
        typer.echo(f"lvunet-infer: warning: {warning}", err=True)
    prediction = segmenter.predict(rgb, keep_largest=keep_largest)
    sys.stdout.buffer.write(mask_png(prediction.mask))
    sys.stdout.buffer.flush()


def _pipeline_threads(inputs: list[str], camera: int | None, input_list: Path | None) -> int | None:
    """Model threads when several images or a video go through the pipeline: the cores its decode and
    write threads leave free; None (ONNX Runtime's choice) for one image or the camera."""
    import glob

    from lvunet_runtime.data import VIDEO_SUFFIXES
    from lvunet_runtime.infer import default_model_threads

    many = camera is None and (
        len(inputs) > 1
        or input_list is not None
        or any(Path(i).is_dir() or glob.has_magic(i) for i in inputs)
        or any(Path(i).suffix.lower() in VIDEO_SUFFIXES for i in inputs)
    )
    return default_model_threads() if many else None


def _report_run(summary, out: Path) -> None:
    """One line per skipped input, the summary line, the stop reason; exit 1, 2 or 0."""
    attempted = summary.processed + summary.skipped_existing + summary.videos + len(summary.failed)
    if summary.failed and attempted == 1 and not summary.stopped:
        raise LVUNetRuntimeError(summary.failed[0]["error"])
    for note in summary.notes:
        kind = "" if note.startswith("warning: ") else "note: "
        typer.echo(f"lvunet-infer: {kind}{note}", err=True)
    for failure in summary.failed:
        typer.echo(f"lvunet-infer: skipped: {failure['error']}", err=True)
    if summary.processed == 1 and len(summary.images) == 1 and "regions" in summary.images[0]:
        from lvunet_runtime.records import image_line

        typer.echo(image_line(summary.images[0]))
    typer.echo(f"{summary.line()} -> {out} [{_provider_line(summary)}]")
    if summary.stopped or summary.record_error:
        reason = f"stopped: {summary.stopped}" if summary.stopped else summary.record_error
        typer.echo(
            f"lvunet-infer: error: {reason}; {summary.processed} written, {summary.not_done} not "
            "done; fix it and rerun the same command to do the rest",
            err=True,
        )
    if summary.partial:
        raise typer.Exit(EXIT_PARTIAL)


def _provider_line(summary) -> str:
    """The provider in use, what it left to the CPU, and any provider of the default order that failed."""
    line = summary.providers[0].removesuffix("ExecutionProvider")
    if summary.adapter:
        adapter = summary.adapter
        line += (
            f" on {adapter['name']} ({adapter['kind']}, {adapter['vendor']}, {adapter['backend']})"
        )
    if summary.node_placement:
        line += (
            " (nodes: "
            + ", ".join(
                f"{k.removesuffix('ExecutionProvider')} {v}"
                for k, v in summary.node_placement.items()
            )
            + ")"
        )
    if summary.provider_fallback:
        line += f"; could not start {', '.join(summary.provider_fallback)}"
    return line


def _merge_command(out: Path) -> None:
    """``lvunet-infer --merge --out OUT``: one summary for the parts of a sharded job."""
    from lvunet_runtime.records import merge_parts

    merged = merge_parts(out)
    typer.echo(f"merged: {merged.line()} -> {out / 'summary.json'}")
    if merged.stopped:
        typer.echo(f"lvunet-infer: error: {merged.stopped}", err=True)
    for failure in merged.failed:
        typer.echo(f"lvunet-infer: failed: {failure['error']}", err=True)
    if merged.partial:
        raise typer.Exit(EXIT_PARTIAL)


eval_app = typer.Typer(add_completion=False, epilog=EXIT_CODES_HELP, rich_markup_mode=None)


@eval_app.command(epilog=EXIT_CODES_HELP)
def eval_command(
    data: Path = typer.Option(..., help="Folder with images/ and masks/."),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Bundled name (polyp, breast-ultrasound) or .onnx path."
    ),
    split_file: Path | None = typer.Option(
        None, help="Evaluate only these ids (one per line, # comments)."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write all results here."),
    csv_out: Path | None = typer.Option(
        None, "--csv", help="Write one row per image here (id, IoU, Dice, counts, ms)."
    ),
    save_worst: tuple[int, Path] | None = typer.Option(
        None,
        help="N DIR: write DIR/<id>_worst.png for the N images of lowest Dice, with the model's "
        "outline (green) and the ground truth's (magenta).",
    ),
    overwrite: bool = typer.Option(False, help="Replace existing --json, --csv or worst files."),
    provider: str | None = typer.Option(
        None, help="Execution provider(s), e.g. cpu, openvino or webgpu."
    ),
    device: str | None = typer.Option(None, help=DEVICE_HELP),
    precision: str | None = typer.Option(None, help=PRECISION_HELP),
    threads: int | None = typer.Option(None, min=1),
    tta: str = typer.Option("off", help=TTA_HELP),
    progress: bool = typer.Option(True, help="Progress bar."),
    version: bool = version_option("lvunet-eval"),
) -> None:
    """Evaluate an ONNX model on images and masks at their own size (the deployable file itself)."""
    from lvunet_runtime.data import find_pairs, read_id_list
    from lvunet_runtime.evaluate import evaluate
    from lvunet_runtime.progress import Meter
    from lvunet_runtime.segmenter import Segmenter

    _check_report_file(json_out, overwrite)
    _check_report_file(csv_out, overwrite)
    if save_worst is not None:
        _check_worst(save_worst)
    ids = None if split_file is None else read_id_list(split_file)
    pairs = find_pairs(data, ids)
    from lvunet_runtime.data import pair_warnings

    for warning in pair_warnings(pairs):
        typer.echo(f"lvunet-eval: warning: {warning}", err=True)
    quiet_onnxruntime()
    segmenter = Segmenter(
        model,
        providers=_providers(provider),
        threads=threads,
        device=device,
        precision=precision,
        tta=tta,
    )
    _note_provider("lvunet-eval", segmenter)
    from lvunet_runtime.metrics import number

    enabled = progress and sys.stderr.isatty()
    with Meter(len(pairs), enabled, "images", "evaluating") as meter:
        result = evaluate(segmenter, pairs, progress=meter.advance)
    typer.echo(
        f"{result['images']} images: IoU {result['iou']:.4f}  Dice {result['dice']:.4f}  "
        f"(dataset IoU {result['dataset_iou']:.4f}, Dice {result['dataset_dice']:.4f}, "
        f"precision {number(result['precision'])}, recall {result['recall']:.4f}); "
        f"median {result['median_ms']:.1f} ms/image"
    )
    for note in result.get("notes", []):
        typer.echo(f"lvunet-eval: note: {note}", err=True)
    from lvunet_runtime.data import describe_mask_rules

    typer.echo(f"masks: {describe_mask_rules(result['mask_rules'])}")
    typer.echo("worst: " + ", ".join(f"{r['id']} (Dice {r['dice']:.3f})" for r in result["worst"]))
    typer.echo("slowest: " + ", ".join(f"{r['id']} ({r['ms']:.1f} ms)" for r in result["slowest"]))
    seen = result["in_training"]
    if seen:
        rest = result["not_in_training"]
        on_rest = (
            f"on the other {rest['images']}: IoU {rest['iou']:.4f}  Dice {rest['dice']:.4f}"
            if rest
            else "no image outside it"
        )
        typer.echo(
            f"lvunet-eval: warning: {len(seen)} of {result['images']} images were in the model's "
            f"training data (e.g. {', '.join(seen[:3])}); {on_rest}",
            err=True,
        )
    for skipped in result["skipped"]:
        typer.echo(f"lvunet-eval: skipped: {skipped}", err=True)
    if json_out:
        _write_report(json_out, json.dumps(result, indent=1) + "\n", overwrite)
    if csv_out:
        from lvunet_runtime.evaluate import per_image_csv

        _write_report(csv_out, per_image_csv(result), overwrite)
    if save_worst is not None:
        _write_worst(segmenter, pairs, result, save_worst, overwrite)
    if result["skipped"]:
        raise typer.Exit(EXIT_PARTIAL)


def _check_worst(save_worst: tuple[int, Path]) -> None:
    count, folder = save_worst
    if count < 1:
        raise LVUNetRuntimeError(
            f"--save-worst needs a number of images of at least 1, not {count}"
        )
    from lvunet_runtime.writer import check_output_folder

    check_output_folder(folder)


def _write_worst(segmenter, pairs, result, save_worst: tuple[int, Path], overwrite: bool) -> None:
    from lvunet_runtime.evaluate import save_worst as write_worst
    from lvunet_runtime.writer import OutputGuard

    count, folder = save_worst
    paths = write_worst(segmenter, pairs, result, count, folder, OutputGuard(overwrite=overwrite))
    typer.echo(
        f"worst {len(paths)}: {folder} (the model's outline green, the ground truth magenta)"
    )


bench_app = typer.Typer(add_completion=False, epilog=EXIT_CODES_HELP, rich_markup_mode=None)


@bench_app.command(epilog=EXIT_CODES_HELP)
def bench_command(
    model: str | None = typer.Option(
        None, "--model", "-m", help="Bundled name (polyp, breast-ultrasound) or .onnx path."
    ),
    providers: str = typer.Option("cpu", help="Comma-separated providers, e.g. cpu,cuda."),
    threads: str = typer.Option(
        "auto", help="Comma-separated thread counts; 'auto' = ONNX Runtime's choice."
    ),
    batch_sizes: str = typer.Option("1,8", help="Comma-separated batch sizes."),
    image_size: int | None = typer.Option(None, help="Must match the model's input size if given."),
    runs: int = typer.Option(100, min=1, help="Timed runs per combination."),
    warmup: int = typer.Option(10, min=0, help="Untimed runs first."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the full report here."),
    markdown: Path | None = typer.Option(None, help="Write a Markdown table here."),
    overwrite: bool = typer.Option(False, help="Replace existing --json/--markdown files."),
    end_to_end_dir: Path | None = typer.Option(
        None, "--end-to-end", help="Also time whole images from this folder."
    ),
    wide: bool = typer.Option(
        False, help="All columns in the table (p99, first run, session creation, peak memory)."
    ),
    device: str | None = typer.Option(None, help=DEVICE_HELP),
    recommend: bool = typer.Option(
        False,
        "--recommend",
        help="Measure every provider and precision this install can run (hardware only; at least 100 "
        "warm-up runs), check its masks against CPU fp32, and record the fastest that agrees for "
        "--provider auto (a JSON file in the user's cache folder).",
    ),
    version: bool = version_option("lvunet-bench"),
) -> None:
    """Benchmark an LV-UNet ONNX model; each combination runs in its own process."""
    from rich.progress import Progress

    from lvunet_runtime.bench import (
        plan_benchmark,
        run_benchmark,
        to_markdown,
    )

    _check_report_file(json_out, overwrite)
    _check_report_file(markdown, overwrite)
    plan = plan_benchmark(
        model, providers, threads, batch_sizes, image_size, runs, warmup, end_to_end_dir, device
    )
    if recommend:
        _recommend(plan)
        return
    combos = len(plan.providers) * len(plan.threads) * len(plan.batches)
    with Progress(transient=True, disable=not sys.stderr.isatty()) as progress:
        task = progress.add_task("benchmarking", total=combos)
        report = run_benchmark(plan, lambda: progress.advance(task))
    _print_bench(plan, report, wide)
    if json_out:
        _write_report(json_out, json.dumps(report, indent=1) + "\n", overwrite)
    if markdown:
        _write_report(markdown, to_markdown(report), overwrite)


def _print_bench(plan, report: dict, wide: bool) -> None:
    """The table, one line per provider that did not run or ran on a WebGPU adapter, end to end."""
    from rich.console import Console
    from rich.table import Table

    from lvunet_runtime.bench import table_columns, table_rows

    load = plan.machine.get("load_1min")
    busy = "" if load is None else f", load {load:.1f} on {plan.machine['cores']} cores"
    table = Table(
        title=f"lvunet-bench: {plan.model.name} ({plan.precision}) on {plan.machine['cpu']}{busy}"
    )
    for index, column in enumerate(table_columns(wide)):
        table.add_column(column, overflow="fold", no_wrap=index == 0)
    for row in table_rows(report, wide):
        table.add_row(*row)
    console = Console()
    if wide:  # a wide table is wider than 80 columns by design; let it be
        console = Console(width=max(console.width, 130))
    console.print(table)
    for r in report["results"]:
        if r.get("install"):
            typer.echo(f"{r['provider']}: not installed; to add it: {r['install']}")
        elif r["status"] == "error":
            typer.echo(f"{r['provider']}: {r.get('error', 'failed')}")
        elif r.get("adapter"):
            placement = ", ".join(
                f"{k.removesuffix('ExecutionProvider')} {v}" for k, v in r["node_placement"].items()
            )
            typer.echo(f"{r['provider']}: adapter {r['adapter']}; nodes: {placement}")
    if report.get("end_to_end"):
        e = report["end_to_end"]
        typer.echo(
            f"end to end: {e['images']} images, {e['images_per_s']:.1f} images/s, peak {e['peak_rss_mb'] or 0:.0f} MB"
        )


def _recommend(plan) -> None:
    """``lvunet-bench --recommend``: measure, print each candidate, record the choice."""
    from lvunet_runtime.bench import recommend_provider
    from lvunet_runtime.recommend import cache_file

    warmup = max(plan.warmup, 100)  # GPUs need ~100 runs to leave their low-power clocks
    record = recommend_provider(plan.model, plan.runs, warmup)
    load = plan.machine.get("load_1min")
    typer.echo(
        f"lvunet-bench --recommend: {plan.model.name} on {plan.machine['cpu']} "
        f"({plan.machine['cores']} cores, load {'?' if load is None else f'{load:.1f}'})"
    )
    for r in record["measured"]:
        if r["status"] != "ok":
            typer.echo(f"  {r['provider']}: {r['status']}: {r.get('error') or ''}".rstrip(": "))
            continue
        verdict = "agrees" if r["agrees"] else "disagrees"
        adapter = f" on {r['adapter']}" if r.get("adapter") else ""
        typer.echo(
            f"  {r['provider']}{adapter}: {r['median_ms']:.2f} ms, min Dice vs CPU fp32 "
            f"{r['min_dice_vs_cpu_fp32']:.4f} ({verdict})"
        )
    typer.echo(
        f"recommended: {record['provider']} (recorded in {cache_file()}; --provider auto uses it)"
    )


def infer_main() -> None:
    """``lvunet-infer`` entry point."""
    sys.exit(run_command(infer_app, "lvunet-infer"))


def eval_main() -> None:
    """``lvunet-eval`` entry point."""
    sys.exit(run_command(eval_app, "lvunet-eval"))


def bench_main() -> None:
    """``lvunet-bench`` entry point."""
    sys.exit(run_command(bench_app, "lvunet-bench"))
