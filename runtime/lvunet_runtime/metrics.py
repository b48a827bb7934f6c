"""Segmentation metrics shared by training, lvunet-eval and the exporter. Primary numbers are
per-image means; pooled variants are for comparison.

Per image: IoU = |P & G| / |P | G| and Dice = 2|P & G| / (|P| + |G|); an image whose mask and prediction
are both empty scores 1 (it was segmented correctly), one with an empty mask and a non-empty prediction
scores 0. Dataset-level IoU/Dice, precision and recall pool the pixel counts over all images. The paper's
(and reference code's) "per-batch" IoU pools pixels within each batch of 8 and averages over batches,
which makes the score depend on the batch size; it is reported only to compare with the paper.
"""

from __future__ import annotations

import numpy as np


def confusion_counts(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-image (tp, fp, fn, tn) pixel counts for boolean arrays of shape (N, H, W); returns (N, 4)."""
    pred = pred.astype(bool).reshape(len(pred), -1)
    target = target.astype(bool).reshape(len(target), -1)
    tp = np.count_nonzero(pred & target, axis=1)
    fp = np.count_nonzero(pred & ~target, axis=1)
    fn = np.count_nonzero(~pred & target, axis=1)
    tn = pred.shape[1] - tp - fp - fn
    return np.stack([tp, fp, fn, tn], axis=1).astype(np.int64)


def per_image_scores(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image IoU and Dice from (N, 4) counts (both-empty images score 1)."""
    tp, fp, fn = counts[:, 0].astype(float), counts[:, 1].astype(float), counts[:, 2].astype(float)
    union = tp + fp + fn
    empty = union == 0
    iou = np.where(empty, 1.0, tp / np.maximum(union, 1))
    dice = np.where(empty, 1.0, 2 * tp / np.maximum(2 * tp + fp + fn, 1))
    return iou, dice


def summarize(counts: np.ndarray, batch_size: int = 8) -> dict[str, float]:
    """All reported metrics from per-image counts (in dataset order)."""
    iou, dice = per_image_scores(counts)
    tp, fp, fn, _ = counts.sum(axis=0).astype(float)
    batch_ious = []
    for start in range(0, len(counts), batch_size):
        btp, bfp, bfn, _ = counts[start : start + batch_size].sum(axis=0).astype(float)
        batch_ious.append(btp / (btp + bfp + bfn) if btp + bfp + bfn else 1.0)
    result = {
        "iou": float(iou.mean()) if len(iou) else float("nan"),
        "dice": float(dice.mean()) if len(dice) else float("nan"),
        "dataset_iou": tp / (tp + fp + fn) if tp + fp + fn else 1.0,
        "dataset_dice": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
        "precision": tp / (tp + fp) if tp + fp else None,  # nothing predicted: undefined, not 1.0
        "recall": tp / (tp + fn) if tp + fn else 1.0,
        "batch_pooled_iou": float(np.mean(batch_ious)) if batch_ious else float("nan"),
    }
    # Plain Python floats (None where undefined): these go into weights_only checkpoints and JSON.
    values = {k: None if v is None else float(v) for k, v in result.items()}
    if values["precision"] is None:
        values["notes"] = ["precision undefined: the model predicted no foreground on any image"]
    return {"images": int(len(counts)), **values}


def number(value: float | None, digits: int = 4) -> str:
    """A metric for the console: ``0.8123``, or ``undefined`` where it is None."""
    return "undefined" if value is None else f"{value:.{digits}f}"
