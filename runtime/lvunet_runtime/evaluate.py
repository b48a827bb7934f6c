"""Evaluate the deployable ONNX file itself on a folder of images and masks, at each image's own size.

Per image IoU and Dice (both-empty images score 1, empty mask with a prediction scores 0), their means,
dataset-level (pixel-pooled) IoU/Dice, precision and recall, the worst and the slowest images.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

from lvunet_runtime.errors import ImageError, LVUNetRuntimeError
from lvunet_runtime.image import load_image
from lvunet_runtime.session import Segmenter

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
MASK_NAMES = ("{}.png", "{}_mask.png", "{}_segmentation.png")


def find_pairs(root: Path, ids: list[str] | None = None) -> list[tuple[str, Path, Path]]:
    """``root/images/<id>.<ext>`` with ``root/masks/<id>.png`` (or ``_mask`` / ``_segmentation``)."""
    image_dir, mask_dir = root / "images", root / "masks"
    if not image_dir.is_dir() or not mask_dir.is_dir():
        raise LVUNetRuntimeError(f"{root} must contain images/ and masks/ folders")
    images = {p.stem: p for p in sorted(image_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    wanted = sorted(images) if ids is None else ids
    pairs, problems = [], []
    for id_ in wanted:
        mask = next(
            (mask_dir / n.format(id_) for n in MASK_NAMES if (mask_dir / n.format(id_)).is_file()),
            None,
        )
        if id_ not in images or mask is None:
            problems.append(id_)
            continue
        pairs.append((id_, images[id_], mask))
    if problems:
        raise LVUNetRuntimeError(
            f"{len(problems)} id(s) without an image and mask pair, e.g. {problems[:3]}"
        )
    if not pairs:
        raise LVUNetRuntimeError(f"no image/mask pairs in {root}")
    return pairs


def _read_mask(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("L"))
    except OSError as exc:
        raise ImageError(f"{path}: unreadable mask ({exc})") from None
    return array > (0 if array.max() <= 1 else 127)


def evaluate(segmenter: Segmenter, pairs: list[tuple[str, Path, Path]], *, progress=None) -> dict:
    """Metrics of the model on ``pairs``; see the module docstring."""
    rows = []
    for id_, image_path, mask_path in pairs:
        rgb, _ = load_image(image_path)
        target = _read_mask(mask_path)
        if target.shape != rgb.shape[:2]:
            raise ImageError(
                f"{id_}: mask size {target.shape[::-1]} differs from image {rgb.shape[1::-1]}"
            )
        start = time.perf_counter()
        pred = segmenter.predict(rgb).mask
        ms = (time.perf_counter() - start) * 1e3
        tp = int(np.count_nonzero(pred & target))
        fp = int(np.count_nonzero(pred & ~target))
        fn = int(np.count_nonzero(~pred & target))
        union = tp + fp + fn
        rows.append(
            {
                "id": id_,
                "iou": 1.0 if union == 0 else tp / union,
                "dice": 1.0 if union == 0 else 2 * tp / (2 * tp + fp + fn),
                "tp": tp,
                "fp": fp,
                "fn": fn,
                "ms": ms,
            }
        )
        if progress is not None:
            progress()
    tp, fp, fn = (sum(r[k] for r in rows) for k in ("tp", "fp", "fn"))
    return {
        "model": str(segmenter.path),
        "providers": segmenter.active_providers,
        "images": len(rows),
        "iou": float(np.mean([r["iou"] for r in rows])),
        "dice": float(np.mean([r["dice"] for r in rows])),
        "dataset_iou": tp / (tp + fp + fn) if tp + fp + fn else 1.0,
        "dataset_dice": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / (tp + fn) if tp + fn else 1.0,
        "median_ms": float(np.median([r["ms"] for r in rows])),
        "worst": sorted(rows, key=lambda r: r["dice"])[:5],
        "slowest": sorted(rows, key=lambda r: -r["ms"])[:5],
        "per_image": rows,
    }
