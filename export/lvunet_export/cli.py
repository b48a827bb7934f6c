"""``lvunet-export``: a thin typer wrapper over :func:`lvunet_export.export.export_onnx`."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from lvunet_runtime.command import EXIT_CODES_HELP, run_command, version_option

app = typer.Typer(
    add_completion=False,
    rich_markup_mode=None,  # plain help: fast, nothing cut, [extras] shown as written
    help="Fuse, export, simplify and verify an LV-UNet checkpoint.",
    epilog=EXIT_CODES_HELP,
)


@app.command(epilog=EXIT_CODES_HELP)
def export_command(
    ckpt: Path = typer.Option(..., help="Training checkpoint (best.pt from lvunet-train)."),
    out: Path = typer.Option(..., help="ONNX file to write."),
    opset: int = typer.Option(17),
    image_size: int | None = typer.Option(
        None, help="Input size (default: the size the checkpoint trained at)."
    ),
    dynamic_batch: bool = typer.Option(True, help="Dynamic batch axis."),
    precision: str = typer.Option("fp32", help="fp32, fp16 (GPU providers) or int8 (static QDQ)."),
    calib: Path | None = typer.Option(None, help="Calibration images for int8."),
    simplify: bool = typer.Option(True, help="Simplify with onnxsim."),
    verify_images: Path | None = typer.Option(None, help="Real images for the parity checks."),
    label: str | None = typer.Option(None, help="Name of the segmented structure."),
    dataset: str | None = typer.Option(
        None, help="Training data description (default: folder name)."
    ),
    data: Path | None = typer.Option(
        None, help="Dataset folder for the test accuracy, if the recorded one is not here."
    ),
    overwrite: bool = typer.Option(False, help="Replace an existing output file."),
    version: bool = version_option("lvunet-export", "lvunet_export"),
) -> None:
    """Export CKPT to OUT and prove that ONNX Runtime computes what the trained model computes."""
    from lvunet_export.export import export_onnx

    report = export_onnx(
        ckpt,
        out,
        opset=opset,
        image_size=image_size,
        dynamic_batch=dynamic_batch,
        precision=precision,
        calib=calib,
        simplify=simplify,
        verify_images=verify_images,
        label=label,
        dataset=dataset,
        data=data,
        overwrite=overwrite,
    )
    for step in report.steps:
        typer.echo(f"  - {step}")
    height, width = report.input_size
    typer.echo(
        f"wrote {out} ({report.size_bytes / 1e6:.2f} MB, {report.nodes} nodes, {report.precision}, "
        f"input {height}x{width})"
    )
    for note in report.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"next: lvunet-infer IMAGE --model {out}\n      lvunet-bench --model {out}")


def main() -> None:
    """Console entry point."""
    sys.exit(run_command(app, "lvunet-export"))


if __name__ == "__main__":
    main()
