"""Image/mask folders as every stage reads them: accepted extensions, pairing, masks, split files.

Layout: ``DIR/images/<id>.<ext>`` and ``DIR/masks/<id>.<ext>`` (also ``<id>_mask`` and
``<id>_segmentation``). Training, ``lvunet-eval`` and the exporter's accuracy check all pair and
binarise through these functions, so they score the same pixels.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from lvunet_runtime.errors import DataError, ImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")
MASK_SUFFIXES = ("", "_mask", "_segmentation")
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I", "F")


@dataclass(frozen=True)
class Pair:
    """One image and its mask."""

    id: str
    image: Path
    mask: Path


def is_image_file(path: Path) -> bool:
    """An accepted image extension and not a hidden file."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def listing(title: str, problems: list[str], limit: int = 20) -> str:
    """``title`` and the first ``limit`` problems, one per line (the CLIs print the first line)."""
    shown = problems[:limit] + (
        [f"... and {len(problems) - limit} more"] if len(problems) > limit else []
    )
    return f"{title}: " + "; ".join(shown[:3]) + ("\n  " + "\n  ".join(shown) if shown else "")


def _mask_index(mask_dir: Path, image_ids: set[str]) -> dict[str, Path]:
    masks: dict[str, Path] = {}
    for path in sorted(mask_dir.iterdir()):
        if not is_image_file(path):
            continue
        stem = path.stem
        for suffix in MASK_SUFFIXES[1:]:
            if stem.endswith(suffix) and stem[: -len(suffix)] in image_ids:
                stem = stem[: -len(suffix)]
                break
        masks[stem] = path
    return masks


def find_pairs(root: str | Path, ids: list[str] | None = None) -> list[Pair]:
    """Pair ``images/`` with ``masks/`` by id; every problem is listed in one DataError.

    Args:
        root: the dataset folder.
        ids: only these ids (from a split file), which must all be paired; None: every image, and every
            image and every mask must have its partner.

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
        if is_image_file(path):
            if path.stem in images:
                problems.append(
                    f"duplicate image id {path.stem}: {images[path.stem].name}, {path.name}"
                )
            images[path.stem] = path
    masks = _mask_index(mask_dir, set(images))
    if ids is None:
        if not images:
            raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {image_dir}")
        wanted = sorted(images)
        problems += [
            f"mask without image: {masks[i].name}" for i in sorted(set(masks) - set(images))
        ]
    else:
        wanted = list(dict.fromkeys(ids))
        problems += [f"id without an image: {i}" for i in wanted if i not in images]
    problems += [
        f"image without mask: {images[i].name}" for i in wanted if i in images and i not in masks
    ]
    if problems:
        raise DataError(
            listing(f"{len(problems)} problem(s) pairing images and masks in {root}", problems)
        )
    if not wanted:
        raise DataError(f"no image/mask pairs in {root}")
    return [Pair(i, images[i], masks[i]) for i in wanted]


def read_mask(path: str | Path) -> tuple[np.ndarray, str]:
    """A mask file as a boolean (H, W) array, and the rule used to binarise it.

    0/1 masks are binarised at ``> 0``; 8-bit masks at ``> 127``; 16-bit masks at half their range;
    an all-zero mask is reported as ``empty`` (no rule was needed).

    Raises:
        ImageError: missing, not an image, corrupt.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in SIXTEEN_BIT_MODES:
                array = np.asarray(image).astype(np.int64)
                top = 65535 if array.max(initial=0) > 255 else 255
            else:
                array, top = np.asarray(image.convert("L")), 255
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{path}: unreadable mask ({exc})") from None
    if array.max(initial=0) == 0:
        return array > 0, "empty"
    if array.max(initial=0) <= 1:
        return array > 0, ">0"
    return array > top // 2, f">{top // 2}"


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes (hex), read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def content_hash(path: str | Path) -> str:
    """The first 16 hex digits of the file's sha256: how a model's metadata names its training images
    (identical files match; a re-encoded copy does not)."""
    return file_sha256(path)[:16]


def read_id_list(path: str | Path, what: str = "split file") -> list[str]:
    """One id per line; blank lines and ``#`` comments ignored (``shared/data/splits/*.txt``).

    Raises:
        DataError: the file is missing, not text, or lists no id.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{what} {path} is not readable text ({exc})") from None
    ids = [s for line in text.splitlines() if (s := line.strip()) and not s.startswith("#")]
    if not ids:
        raise DataError(f"{what} {path} lists nothing")
    return ids
