"""``lvunet-train``: a thin typer wrapper over :func:`lvunet_edge.train.train` (options = TrainConfig)."""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path

import typer
from lvunet_runtime.command import EXIT_CODES_HELP, run_command, version_option
from lvunet_runtime.errors import (
    Interrupted,
    LVUNetRuntimeError,
    StoppedError,
    describe_os_error,
)

from lvunet_edge.config import train_config_defaults

DEFAULTS = train_config_defaults()  # each option's default is its TrainConfig field's, written once

app = typer.Typer(
    add_completion=False,
    rich_markup_mode=None,  # plain help: fast, nothing cut, [extras] shown as written
    help="Train LV-UNet on a folder of images and masks.",
    epilog=EXIT_CODES_HELP,
)


@app.command(epilog=EXIT_CODES_HELP)
def train_command(
    data: Path | None = typer.Option(
        None, help="Folder with images/ and masks/ (required, unless --resume)."
    ),
    out: Path = typer.Option(
        Path(DEFAULTS["out"]), help="Run folder (checkpoints, logs, metrics)."
    ),
    image_size: int = typer.Option(
        DEFAULTS["image_size"],
        help="Training and evaluation size: 128, 256, 384, 512, ... (a multiple of 128).",
    ),
    epochs: int = typer.Option(DEFAULTS["epochs"]),
    deep_epochs: int | None = typer.Option(
        DEFAULTS["deep_epochs"], help="Deep-training epochs (default 90%, at most epochs - 1)."
    ),
    schedule: str = typer.Option(DEFAULTS["schedule"], help="Slope schedule: cosine or linear."),
    batch_size: int = typer.Option(DEFAULTS["batch_size"]),
    lr: float = typer.Option(DEFAULTS["lr"]),
    min_lr: float = typer.Option(DEFAULTS["min_lr"]),
    seed: int = typer.Option(DEFAULTS["seed"]),
    device: str = typer.Option(DEFAULTS["device"], help="auto, cpu or cuda."),
    workers: int = typer.Option(
        DEFAULTS["workers"], help="Threads decoding images (once, before training)."
    ),
    amp: bool = typer.Option(
        DEFAULTS["amp"], help="bfloat16 autocast on CUDA and on CPUs with AVX512-BF16 or AMX."
    ),
    pretrained: str | None = typer.Option(
        DEFAULTS["pretrained"],
        help="torchvision MobileNetV3-Large weights file (or 'torchvision' for the cache).",
    ),
    split_file: Path | None = typer.Option(None, help="Test ids, one per line."),
    val_file: Path | None = typer.Option(None, help="Validation ids, one per line."),
    combination: str = typer.Option(
        DEFAULTS["combination"], help="Pretrained depth: I, II or III."
    ),
    act_num: int = typer.Option(DEFAULTS["act_num"], help="Series-informed activation n (0-4)."),
    skip: str = typer.Option(DEFAULTS["skip"], help="Skip connections: add or concat."),
    augment: str = typer.Option(
        DEFAULTS["augment"],
        help="Augmentation recipe: basic (90-degree rotations, flips), strong (also colour, "
        "specular highlights, scale/rotate/shift, blur) or ultrasound (gamma, speckle, "
        "scale/rotate/shift, mild elastic warp; no colour).",
    ),
    ema: float = typer.Option(
        DEFAULTS["ema"],
        help="Keep a moving average of the weights with this decay (e.g. 0.999); 0 = off.",
    ),
    deep_supervision: float = typer.Option(
        DEFAULTS["deep_supervision"],
        help="Also score side outputs of the last three decoder blocks, with this weight (e.g. 0.4); "
        "training only: the exported model is unchanged. 0 = off.",
    ),
    multi_scale: bool = typer.Option(
        DEFAULTS["multi_scale"],
        help="Train each batch at a size drawn from image-size - 128, image-size, image-size + 128 "
        "(validation, test and export stay at image-size).",
    ),
    distill: Path | None = typer.Option(
        None,
        help="Self-distillation: a teacher best.pt (same size; never trained on this test split) whose "
        "flip-averaged predictions become soft targets; training only, the model is unchanged.",
    ),
    distill_weight: float = typer.Option(
        DEFAULTS["distill_weight"], help="Share of the loss on the teacher's targets."
    ),
    threshold: float = typer.Option(
        DEFAULTS["threshold"],
        help="Probability above which a pixel is foreground: used to score the run and written into "
        "the model, so export and lvunet-infer apply the same.",
    ),
    channels_last: bool = typer.Option(
        DEFAULTS["channels_last"],
        help="NHWC activations (the same arithmetic; about 2x faster training on a CPU).",
    ),
    compile: bool = typer.Option(
        DEFAULTS["compile"],
        help="torch.compile the training step (its first step compiles: minutes on a CPU, where it "
        "measured slower).",
    ),
    seeds: str | None = typer.Option(
        None,
        help="Train one run per seed (e.g. 1,2,3) together in this process, each device step carrying "
        "a batch of every run; each run into its own folder OUT-seedN (with --resume: continue them).",
    ),
    resume: Path | None = typer.Option(None, help="Continue the run in this folder."),
    progress: bool = typer.Option(
        True, help="Show a progress bar (on a terminal only: never in a log file)."
    ),
    stop_after: int | None = typer.Option(None, help="Stop after N epochs (resume later)."),
    version: bool = version_option("lvunet-train", "lvunet_edge"),
) -> None:
    """Train, keep the best epoch at slope 1, and evaluate it trained and fused on the test split."""
    options = dict(locals())  # every option above, named as in TrainConfig
    from lvunet_edge.train import train

    if resume is None and data is None:
        raise LVUNetRuntimeError("give --data DIR (or --resume RUN_DIR)")
    config = config_from_options(options) if resume is None else None
    run = resume or out
    progress = progress and sys.stderr.isatty()
    try:
        if seeds is not None:
            return train_seeds(config, parse_seeds(seeds), resume, progress, stop_after)
        metrics = train(config, resume=resume, progress=progress, stop_after=stop_after)
    except (KeyboardInterrupt, Interrupted):
        raise Interrupted(f"continue with {resume_words(run, seeds)}") from None
    except (
        OSError
    ) as exc:  # disk full, permission lost: the checkpoints written so far are complete
        raise StoppedError(
            describe_os_error(exc),
            hint=f"the run stopped, its last.pt (if any) is complete: fix it and continue with "
            f"{resume_words(run, seeds)}",
        ) from None
    if metrics:  # the one-line test summary is in the log above; the numbers in metrics.json
        typer.echo(f"lvunet-train: done: {Path(run) / 'metrics.json'}, best.pt, last.pt in {run}")


def parse_seeds(text: str) -> list[int]:
    """``--seeds 1,2,3`` as integers (one line saying what is wrong otherwise)."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        seeds = []
    if not seeds:
        raise LVUNetRuntimeError(
            f"--seeds takes comma-separated whole numbers such as 1,2,3, not {text!r}"
        )
    return seeds


def resume_words(run: Path, seeds: str | None) -> str:
    """How to continue this command's run(s)."""
    return f"--resume {run}" + ("" if seeds is None else f" --seeds {seeds}")


def train_seeds(config, seeds: list[int], resume: Path | None, progress: bool, stop_after) -> None:
    """``--seeds``: the runs OUT-seedN trained together (resumed together with --resume OUT)."""
    from lvunet_edge.multirun import seed_runs, train_many

    if resume is not None:
        folders = [Path(f"{resume}-seed{seed}") for seed in seeds]
        hint = resume_words(resume, ",".join(map(str, seeds)))
        results = train_many(resume=folders, progress=progress, stop_after=stop_after, hint=hint)
    else:
        configs = seed_runs(config, seeds)
        folders = [Path(c.out) for c in configs]
        hint = resume_words(Path(config.out), ",".join(map(str, seeds)))
        results = train_many(configs, progress=progress, stop_after=stop_after, hint=hint)
    if all(results):
        names = ", ".join(str(f) for f in folders)
        typer.echo(
            f"lvunet-train: done: {len(folders)} runs, metrics.json, best.pt, last.pt in {names}"
        )


def config_from_options(options: dict) -> object:
    """A TrainConfig from the command's options (paths as strings; options it has no field for, such
    as --resume or --progress, left out)."""
    from lvunet_edge.config import TrainConfig

    names = {f.name for f in fields(TrainConfig)} - {"distill_sha256"}  # recorded by the run itself
    return TrainConfig(
        **{k: str(v) if isinstance(v, Path) else v for k, v in options.items() if k in names}
    )


def main() -> None:
    """Console entry point."""
    sys.exit(run_command(app, "lvunet-train"))


if __name__ == "__main__":
    main()
