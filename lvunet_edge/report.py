"""What a training run shows a person: the dataset's integrity report before the first step (nnU-Net's
``--verify_dataset_integrity`` is the model), and ``results.png`` after the last (the curves of the run and
a mosaic of validation predictions).

The checks that decide are the runtime's (:func:`lvunet_runtime.data.pair_warnings`, the mask reader's
rules); this module owns the report's wording. ``results.png`` is drawn with matplotlib (about 60 MB
installed beside torch's 700 MB: a dependency of the training side, imported only when the plot is drawn).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from lvunet_runtime.data import Pair, pair_warnings
from PIL import Image


def integrity_report(pairs: list[Pair], dataset, warnings: list[str] | None = None) -> list[str]:
    """Lines describing the dataset as it will be trained on: counts, image sizes, empty masks, the
    object's share of the image, and every warning (``warnings``: those :func:`pair_warnings` gave
    already, else it is asked); how the masks were read is on the run's ``data:`` line."""
    sizes = []
    for pair in pairs:
        try:
            with Image.open(pair.image) as image:
                sizes.append(image.size)
        except (OSError, ValueError, SyntaxError):
            continue
    areas = dataset.masks.reshape(len(dataset.masks), -1).mean(axis=1) if len(dataset.masks) else []
    widths, heights = [w for w, _ in sizes], [h for _, h in sizes]
    lines = [
        f"data: {len(pairs)} image/mask pairs; "
        + (
            f"image sizes {min(widths)}x{min(heights)} to {max(widths)}x{max(heights)} "
            f"({len(set(sizes))} distinct)"
            if sizes
            else "no readable image"
        ),
    ]
    if len(areas):
        empty = int((np.asarray(areas) == 0).sum())
        lines.append(
            f"data: object share of the image median {np.median(areas):.1%} (min {np.min(areas):.1%}, "
            f"max {np.max(areas):.1%}); {empty} empty mask(s)"
        )
    warnings = pair_warnings(pairs) if warnings is None else warnings
    lines += [f"data: warning: {warning}" for warning in warnings]
    return lines


def results_png(run_dir: Path, mosaic: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Path:
    """``run_dir/results.png``: training loss, validation IoU and Dice and the LeakyReLU slope per epoch
    (from ``log.jsonl``), and ``mosaic``: (image, ground truth, prediction) triples of validation images,
    the ground truth outlined magenta and the prediction green."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; set here, never on import
    import matplotlib.pyplot as plt
    from lvunet_runtime.outputs import outlines

    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line]
    epochs = [r["epoch"] + 1 for r in rows]
    columns = max(1, len(mosaic))
    figure = plt.figure(figsize=(4 * max(3, columns), 7), dpi=100)
    grid = figure.add_gridspec(2, max(3, columns))
    loss = figure.add_subplot(grid[0, 0])
    loss.plot(epochs, [r["train_loss"] for r in rows], color="tab:blue")
    loss.set(title="training loss", xlabel="epoch")
    scores = figure.add_subplot(grid[0, 1])
    scores.plot(epochs, [r["val_iou"] for r in rows], label="IoU", color="tab:green")
    scores.plot(epochs, [r["val_dice"] for r in rows], label="Dice", color="tab:orange")
    scores.set(title="validation", xlabel="epoch", ylim=(0, 1))
    scores.legend(loc="lower right")
    slope = figure.add_subplot(grid[0, 2])
    slope.plot(epochs, [r["slope"] for r in rows], color="tab:gray")
    slope.set(title="LeakyReLU slope (1 = fusible)", xlabel="epoch", ylim=(0, 1.05))
    for index, (image, truth, predicted) in enumerate(mosaic):
        axis = figure.add_subplot(grid[1, index])
        axis.imshow(outlines(image, predicted.astype(bool), truth.astype(bool)))
        axis.set_axis_off()
    figure.suptitle(
        f"{run_dir.name}: validation images, ground truth magenta, prediction green", fontsize=10
    )
    figure.tight_layout()
    path = run_dir / "results.png"
    figure.savefig(path)
    plt.close(figure)
    return path
