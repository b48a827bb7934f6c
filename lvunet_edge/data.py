"""Image/mask folders: discovery, validation, deterministic splits, and a decoded-once in-memory cache.

Layout: ``DIR/images/<id>.<ext>`` and ``DIR/masks/<id>.png`` (also ``<id>_mask.png`` and
``<id>_segmentation.png``). Images of any common mode are converted to 8-bit RGB; masks are binarised.
Everything is decoded once, resized to the training size (``cv2.INTER_AREA``, the same as the runtime's
preprocessing contract) and kept as uint8 arrays, so an epoch never waits on JPEG decoding.
"""

from __future__ import annotations

import json
import math
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

from lvunet_edge.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
MASK_SUFFIXES = ("", "_mask", "_segmentation")


def to_rgb8(image: Image.Image) -> np.ndarray:
    """Any PIL image (L, LA, P, RGBA, CMYK, I;16, I, F) as an HxWx3 uint8 RGB array, EXIF-rotated."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image).astype(np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        gray = np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    return np.asarray(image.convert("RGB"))


def read_mask(path: Path) -> tuple[np.ndarray, str]:
    """A mask as a 0/1 uint8 array: ``> 0`` for 0/1 masks, ``> 127`` otherwise (returned as a rule)."""
    with Image.open(path) as image:
        array = np.asarray(image.convert("L") if image.mode not in ("L", "1") else image)
    array = array.astype(np.uint8)
    if array.max() <= 1:
        return (array > 0).astype(np.uint8), ">0"
    return (array > 127).astype(np.uint8), ">127"


@dataclass(frozen=True)
class Pair:
    """One image and its mask."""

    id: str
    image: Path
    mask: Path


def find_pairs(root: str | Path) -> list[Pair]:
    """Pair ``images/`` with ``masks/`` by id; every problem is listed in one DataError.

    Raises:
        DataError: folder missing or empty, unpaired images or masks, duplicate ids.
    """
    root = Path(root)
    image_dir, mask_dir = root / "images", root / "masks"
    if not image_dir.is_dir() or not mask_dir.is_dir():
        raise DataError(f"{root} must contain images/ and masks/ folders")
    images: dict[str, Path] = {}
    problems: list[str] = []
    for path in sorted(image_dir.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("."):
            if path.stem in images:
                problems.append(
                    f"duplicate image id {path.stem}: {images[path.stem].name}, {path.name}"
                )
            images[path.stem] = path
    masks: dict[str, Path] = {}
    for path in sorted(mask_dir.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
            continue
        stem = path.stem
        for suffix in MASK_SUFFIXES[1:]:
            if stem.endswith(suffix) and stem[: -len(suffix)] in images:
                stem = stem[: -len(suffix)]
                break
        masks[stem] = path
    if not images:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {image_dir}")
    problems += [f"image without mask: {images[i].name}" for i in sorted(set(images) - set(masks))]
    problems += [f"mask without image: {masks[i].name}" for i in sorted(set(masks) - set(images))]
    if problems:
        raise DataError(_listing(f"{len(problems)} problem(s) in {root}", problems))
    return [Pair(i, images[i], masks[i]) for i in sorted(images)]


def _listing(title: str, problems: list[str], limit: int = 20) -> str:
    shown = problems[:limit] + (
        [f"... and {len(problems) - limit} more"] if len(problems) > limit else []
    )
    return title + ":\n  " + "\n  ".join(shown)


@dataclass
class ArrayDataset:
    """Decoded, resized pairs: ``images`` (N, S, S, 3) uint8 RGB and ``masks`` (N, S, S) uint8 0/1."""

    ids: list[str]
    images: np.ndarray
    masks: np.ndarray
    mask_rules: dict[str, int]

    def subset(self, ids: list[str]) -> ArrayDataset:
        index = {i: k for k, i in enumerate(self.ids)}
        rows = [index[i] for i in ids]
        return ArrayDataset(list(ids), self.images[rows], self.masks[rows], self.mask_rules)


def _decode(pair: Pair, size: int) -> tuple[np.ndarray, np.ndarray, str] | str:
    try:
        with Image.open(pair.image) as image:
            rgb = to_rgb8(image)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return f"unreadable image {pair.image.name}: {exc}"
    try:
        mask, rule = read_mask(pair.mask)
    except (OSError, ValueError) as exc:
        return f"unreadable mask {pair.mask.name}: {exc}"
    if rgb.shape[:2] != mask.shape:
        return (
            f"size mismatch for {pair.id}: image {rgb.shape[1]}x{rgb.shape[0]}, "
            f"mask {mask.shape[1]}x{mask.shape[0]}"
        )
    rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
    mask = cv2.resize(mask * 255, (size, size), interpolation=cv2.INTER_AREA) > 127
    return rgb, mask.astype(np.uint8), rule


def load_dataset(pairs: list[Pair], size: int, workers: int = 4) -> ArrayDataset:
    """Decode every pair once (in threads), validate, resize to ``size`` x ``size``.

    Raises:
        DataError: listing every unreadable file and image/mask size mismatch, before any training.
    """
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = list(pool.map(lambda p: _decode(p, size), pairs))
    problems = [r for r in results if isinstance(r, str)]
    if problems:
        raise DataError(_listing(f"{len(problems)} bad pair(s)", problems))
    rules: dict[str, int] = {}
    for _, _, rule in results:
        rules[rule] = rules.get(rule, 0) + 1
    return ArrayDataset(
        ids=[p.id for p in pairs],
        images=np.stack([r[0] for r in results]),
        masks=np.stack([r[1] for r in results]),
        mask_rules=rules,
    )


def random_split(ids: list[str], seed: int, test: float = 0.2, val: float = 0.2) -> dict[str, list]:
    """The paper's protocol: test = 20% of all, then validation = 20% of the rest, from sorted ids.

    Sizes are rounded up like scikit-learn's ``train_test_split`` (Kvasir-SEG: 640/160/200).
    """
    order = sorted(ids)
    random.Random(seed).shuffle(order)
    n_test = math.ceil(test * len(order))
    rest = order[n_test:]
    n_val = math.ceil(val * len(rest))
    return {
        "train": sorted(rest[n_val:]),
        "val": sorted(rest[:n_val]),
        "test": sorted(order[:n_test]),
    }


def read_id_list(path: str | Path) -> list[str]:
    """One id per line (blank lines and ``#`` comments ignored), as in ``shared/data/splits/*.txt``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"split file not found: {path}")
    return [s for line in path.read_text().splitlines() if (s := line.strip()) and s[0] != "#"]


def make_split(
    ids: list[str],
    seed: int,
    split_file: str | Path | None = None,
    val_file: str | Path | None = None,
) -> dict[str, list]:
    """Random split, or the test (and optionally validation) ids from files; the rest train."""
    if split_file is None:
        return {**random_split(ids, seed), "source": f"random 64/16/20, seed {seed}"}
    known = set(ids)
    test = read_id_list(split_file)
    val = read_id_list(val_file) if val_file else []
    unknown = sorted((set(test) | set(val)) - known)
    if unknown:
        raise DataError(_listing(f"{len(unknown)} split id(s) not in the data", unknown))
    rest = sorted(known - set(test) - set(val))
    if not val:
        random.Random(seed).shuffle(rest)
        n_val = math.ceil(0.2 * len(rest))
        val, rest = rest[:n_val], rest[n_val:]
    return {
        "train": sorted(rest),
        "val": sorted(val),
        "test": sorted(test),
        "source": f"test ids from {Path(split_file).name}",
    }


def write_split(path: Path, split: dict[str, list]) -> None:
    path.write_text(json.dumps(split, indent=1) + "\n")
