"""``lvunet-train``: a thin typer wrapper over :func:`lvunet_edge.train.train` (options = TrainConfig)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from lvunet_runtime.cli import EXIT_CODES_HELP, EXIT_PARTIAL, run_command, version_option
from lvunet_runtime.errors import LVUNetRuntimeError

app = typer.Typer(
    add_completion=False,
    help="Train LV-UNet on a folder of images and masks.",
    epilog=EXIT_CODES_HELP,
)


@app.command(epilog=EXIT_CODES_HELP)
def train_command(
    data: Path | None = typer.Option(None, help="Folder with images/ and masks/."),
    out: Path = typer.Option(Path("runs/lvunet"), help="Run folder (checkpoints, logs, metrics)."),
    image_size: int = typer.Option(256, help="Training and evaluation size (multiple of 128)."),
    epochs: int = typer.Option(300),
    deep_epochs: int | None = typer.Option(None, help="Deep-training epochs (default 90%)."),
    schedule: str = typer.Option("cosine", help="Slope schedule: cosine or linear."),
    batch_size: int = typer.Option(8),
    lr: float = typer.Option(1e-3),
    min_lr: float = typer.Option(1e-6),
    seed: int = typer.Option(42),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    workers: int = typer.Option(4, help="Threads decoding images (once, before training)."),
    amp: bool = typer.Option(True, help="bfloat16 autocast on CUDA."),
    pretrained: str | None = typer.Option(
        None, help="torchvision MobileNetV3-Large weights file (or 'torchvision' for the cache)."
    ),
    split_file: Path | None = typer.Option(None, help="Test ids, one per line."),
    val_file: Path | None = typer.Option(None, help="Validation ids, one per line."),
    combination: str = typer.Option("II", help="Pretrained depth: I, II or III."),
    act_num: int = typer.Option(1, help="Series-informed activation n (0-4)."),
    skip: str = typer.Option("add", help="Skip connections: add or concat."),
    augment: str = typer.Option(
        "basic",
        help="Augmentation recipe: basic (90-degree rotations, flips) or strong (also colour, "
        "specular highlights, scale/rotate/shift, blur); see lvunet_edge/augment.py.",
    ),
    ema: float = typer.Option(
        0.0, help="Keep a moving average of the weights with this decay (e.g. 0.999); 0 = off."
    ),
    deep_supervision: float = typer.Option(
        0.0,
        help="Also score side outputs of the last three decoder blocks, with this weight (e.g. 0.4); "
        "training only: the exported model is unchanged. 0 = off.",
    ),
    multi_scale: bool = typer.Option(
        False,
        help="Train each batch at a size drawn from image-size - 128, image-size, image-size + 128 "
        "(validation, test and export stay at image-size).",
    ),
    distill: Path | None = typer.Option(
        None,
        help="Self-distillation: a teacher best.pt (same size; never trained on this test split) whose "
        "flip-averaged predictions become soft targets; training only, the model is unchanged.",
    ),
    distill_weight: float = typer.Option(0.5, help="Share of the loss on the teacher's targets."),
    resume: Path | None = typer.Option(None, help="Continue the run in this folder."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    stop_after: int | None = typer.Option(None, help="Stop after N epochs (resume later)."),
    version: bool = version_option("lvunet-train", "lvunet_edge"),
) -> None:
    """Train, keep the best epoch at slope 1, and evaluate it trained and fused on the test split."""
    options = dict(locals())  # every option above, named as in TrainConfig
    from lvunet_edge.train import TrainConfig, train

    try:
        if resume is None and data is None:
            raise LVUNetRuntimeError("give --data DIR (or --resume RUN_DIR)")
        if resume is None:
            config = config_from_options(options)
        else:
            config = TrainConfig(data=str(data or "."))  # replaced by the run's stored config
        metrics = train(config, resume=resume, progress=progress, stop_after=stop_after)
    except LVUNetRuntimeError as exc:
        typer.echo(f"lvunet-train: error: {str(exc).splitlines()[0]}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo(f"lvunet-train: interrupted; continue with --resume {resume or out}", err=True)
        raise typer.Exit(130) from None
    except (
        OSError
    ) as exc:  # disk full, permission lost: the checkpoints written so far are complete
        where = f": {exc.filename}" if exc.filename else ""
        typer.echo(
            f"lvunet-train: error: {exc.strerror or exc}{where}; the run stopped, its last.pt (if any) "
            f"is complete: fix it and continue with --resume {resume or out}",
            err=True,
        )
        raise typer.Exit(EXIT_PARTIAL) from None
    if metrics:
        typer.echo(json.dumps({k: metrics[k] for k in ("trained", "fused")}, indent=1))


def config_from_options(options: dict) -> object:
    """A TrainConfig from the command's options (paths as strings; options it has no field for, such
    as --resume or --progress, left out)."""
    from dataclasses import fields

    from lvunet_edge.train import TrainConfig

    names = {f.name for f in fields(TrainConfig)} - {"distill_sha256"}  # recorded by the run itself
    return TrainConfig(
        **{k: str(v) if isinstance(v, Path) else v for k, v in options.items() if k in names}
    )


def main() -> None:
    """Console entry point."""
    sys.exit(run_command(app, "lvunet-train"))


if __name__ == "__main__":
    main()
