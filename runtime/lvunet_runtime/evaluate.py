"""Evaluate the deployable ONNX file itself on image/mask pairs, at each image's own size.

Per image IoU and Dice (both-empty images score 1, empty mask with a prediction scores 0), their means,
dataset-level (pixel-pooled) IoU/Dice, precision and recall (:mod:`lvunet_runtime.metrics`), the worst and
the slowest images. ``lvunet-eval`` and the exporter's accuracy check both call :func:`evaluate`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from lvunet_runtime.data import Pair, check_mask_rules, content_hash, read_mask
from lvunet_runtime.errors import ImageError
from lvunet_runtime.image import load_image
from lvunet_runtime.metrics import confusion_counts, per_image_scores, summarize
from lvunet_runtime.segmenter import Segmenter


def score_pair(segmenter: Segmenter, pair: Pair, seen: frozenset[str] = frozenset()) -> dict:
    """One pair: the model's mask against the ground truth, at the image's own size; ``in_training``
    when the image file's content hash is among the model's training images."""
    rgb, _ = load_image(pair.image)
    target, rule = read_mask(pair.mask)
    if target.shape != rgb.shape[:2]:
        raise ImageError(
            f"{pair.id}: mask size {target.shape[1]}x{target.shape[0]} differs from image "
            f"{rgb.shape[1]}x{rgb.shape[0]}"
        )
    start = time.perf_counter()
    pred = segmenter.predict(rgb).mask
    ms = (time.perf_counter() - start) * 1e3
    counts = confusion_counts(pred[None], target[None])
    iou, dice = per_image_scores(counts)
    tp, fp, fn, _ = (int(v) for v in counts[0])
    return {
        "id": pair.id,
        "iou": float(iou[0]),
        "dice": float(dice[0]),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "ms": ms,
        "in_training": bool(seen) and content_hash(pair.image) in seen,
        "mask_rule": rule,
    }


def evaluate(
    segmenter: Segmenter, pairs: list[Pair], *, progress: Callable[[], None] | None = None
) -> dict:
    """Metrics of the model on ``pairs``; see the module docstring.

    A pair that cannot be scored (unreadable image or mask, sizes that differ) is skipped and listed in
    ``skipped``; when none can be scored, that is an error.

    Raises:
        ImageError: no pair could be scored (names the first problem).
    """
    rows, skipped = [], []
    seen = frozenset(segmenter.contract.training_image_sha256)
    for pair in pairs:
        try:
            rows.append(score_pair(segmenter, pair, seen))
        except ImageError as exc:
            skipped.append(str(exc))
        if progress is not None:
            progress()
    if not rows:
        raise ImageError(f"no pair could be scored: {skipped[0] if skipped else 'no pairs'}")
    rules: dict[str, int] = {}
    for row in rows:
        rules[row["mask_rule"]] = rules.get(row["mask_rule"], 0) + 1
    check_mask_rules(rules, pairs[0].mask.parent)
    unseen = [r for r in rows if not r["in_training"]]
    return {
        "model": segmenter.identity,
        "providers": segmenter.active_providers,
        "tta": segmenter.tta,
        "mask_rules": rules,
        **_metrics(rows),
        "in_training": [r["id"] for r in rows if r["in_training"]],
        "not_in_training": _metrics(unseen) if unseen and len(unseen) < len(rows) else None,
        "median_ms": float(np.median([r["ms"] for r in rows])) if rows else float("nan"),
        "worst": sorted(rows, key=lambda r: r["dice"])[:5],
        "slowest": sorted(rows, key=lambda r: -r["ms"])[:5],
        "per_image": rows,
        "skipped": skipped,
    }


def _metrics(rows: list[dict]) -> dict:
    counts = np.array([[r["tp"], r["fp"], r["fn"], 0] for r in rows], np.int64).reshape(-1, 4)
    return summarize(counts)


CSV_COLUMNS = ("id", "iou", "dice", "tp", "fp", "fn", "ms", "in_training", "mask_rule")


def per_image_csv(result: dict) -> str:
    """``--csv``: one row per scored image (``CSV_COLUMNS``), in the order they were scored."""
    import csv
    import io

    text = io.StringIO()
    table = csv.writer(text)
    table.writerow(CSV_COLUMNS)
    for row in result["per_image"]:
        table.writerow(
            [f"{row[k]:.6f}" if isinstance(row[k], float) else row[k] for k in CSV_COLUMNS]
        )
    return text.getvalue()


def save_worst(segmenter: Segmenter, pairs: list[Pair], result: dict, count: int, folder, guard):
    """``--save-worst N DIR``: ``DIR/<id>_worst.png`` for the ``count`` images of lowest Dice: the image
    with the model's outline (green) and the ground truth's (magenta); the paths, worst first."""
    from pathlib import Path

    from lvunet_runtime.outputs import encode_png, outlines

    by_id = {pair.id: pair for pair in pairs}
    written = []
    for row in sorted(result["per_image"], key=lambda r: r["dice"])[:count]:
        pair = by_id[row["id"]]
        rgb, _ = load_image(pair.image)
        target, _ = read_mask(pair.mask)
        view = outlines(rgb, segmenter.predict(rgb).mask, target)
        path = Path(folder) / f"{pair.id}_worst.png"
        guard.write(path, encode_png(view))
        written.append(path)
    return written
