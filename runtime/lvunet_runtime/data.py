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
from PIL import Image, ImageOps, UnidentifiedImageError

from lvunet_runtime.decoder import open_loaded
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


DICOM_SUFFIXES = (".dcm", ".dicom")


def is_image_file(path: Path) -> bool:
    """Not a hidden file, and an accepted image extension or a DICOM file (by its content, with any
    name: PACS exports name files ``IM0001`` or by UID)."""
    if path.name.startswith("."):
        return False
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES or suffix in DICOM_SUFFIXES:
        return True
    from lvunet_runtime.dicom import is_dicom

    return suffix not in VIDEO_SUFFIXES and path.is_file() and is_dicom(path)


def file_id(path: Path) -> str:
    """An input's id (and the stem of its outputs): its name less a known extension (``scan.jpg`` ->
    ``scan``), or its whole name when it has none, as DICOM files named ``IM0001`` or by a UID
    (``1.2.840.113619.2.55.7``, whose last part is not an extension)."""
    known = IMAGE_SUFFIXES + DICOM_SUFFIXES + VIDEO_SUFFIXES
    return path.stem if path.suffix.lower() in known else path.name


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
        parent = root.parent
        if root.name in ("images", "masks") and (parent / "images").is_dir():
            raise DataError(
                f"{root} is the {root.name}/ folder of a dataset: did you mean {parent}? (a dataset "
                "folder holds images/ and masks/)"
            )
        raise DataError(f"{root} must contain images/ and masks/ folders")
    images: dict[str, Path] = {}
    problems: list[str] = []
    for path in sorted(image_dir.iterdir()):
        if is_image_file(path):
            key = file_id(path)
            if key in images:
                problems.append(f"duplicate image id {key}: {images[key].name}, {path.name}")
            images[key] = path
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


def orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1 = upright, 0 or missing = none)."""
    return image.getexif().get(0x0112, 1)


def upright(image: Image.Image) -> Image.Image:
    """The image as viewers show it: its EXIF orientation applied (no copy when it is upright). Images
    and masks both go through this, so a pair lines up as the user sees it."""
    return (
        ImageOps.exif_transpose(image, in_place=False)
        if orientation(image) not in (0, 1)
        else image
    )


def pair_warnings(pairs: list[Pair]) -> list[str]:
    """What may spoil training or scoring on ``pairs`` without an error: each a line saying what was
    found, in which pairs, and what to check. Training logs them before the first step, ``lvunet-eval``
    before it scores (the one check both use):

    - an image turned by its EXIF orientation whose mask carries none (:func:`upright` reads both as
      viewers show them; if the mask was drawn on the stored pixels it is now rotated);
    - an image of exactly two values: a mask in the images folder (images and masks swapped?);
    - a mask with more than 1,000 colours: a photograph in the masks folder;
    - byte-identical images under different names (a copy can land in both training and test).
    """
    turned, binary, photos, copies = [], [], [], {}
    for pair in pairs:
        try:
            with Image.open(pair.image) as image, Image.open(pair.mask) as mask:
                if orientation(image) not in (0, 1) and orientation(mask) in (0, 1):
                    turned.append(pair.id)
                if _values(image) == 2:
                    binary.append(pair.id)
                if mask.mode not in ("1", "L", "P", "I", "I;16") and _values(mask) > 1000:
                    photos.append(pair.id)
            copies.setdefault(content_hash(pair.image), []).append(pair.id)
        except (OSError, ValueError, SyntaxError):
            continue  # unreadable files are reported by the readers themselves
    duplicated = [ids for ids in copies.values() if len(ids) > 1]
    found = [
        (
            turned,
            turned,
            "image(s) carry an EXIF orientation that their masks do not",
            "masks are taken as drawn on the image as viewers show it (turned); check an overlay of "
            "one, or save the images upright",
        ),
        (
            binary,
            binary,
            "image(s) hold two values only, as masks do",
            "are the images and masks folders swapped?",
        ),
        (
            photos,
            photos,
            "mask(s) hold more than 1,000 colours, as photographs do",
            "is an image in the masks folder?",
        ),
        (
            [i for ids in duplicated for i in ids[1:]],
            ["=".join(ids[:2]) for ids in duplicated],
            "image(s) are byte-identical copies of another",
            "a copy can fall in both training and test; remove the copies",
        ),
    ]
    return [
        f"{len(ids)} {what} (e.g. {', '.join(examples[:3])}): {advice}"
        for ids, examples, what, advice in found
        if ids
    ]


def looks_like_mask(rgb: np.ndarray) -> bool:
    """Whether a decoded RGB image holds exactly two grey values, as masks do (a masks folder given as
    the images to segment): sampled on a grid, so it costs little per image."""
    step = max(1, int((rgb.shape[0] * rgb.shape[1] / 16384) ** 0.5))
    sample = rgb[::step, ::step].reshape(-1, rgb.shape[-1])
    if not (sample == sample[:, :1]).all():
        return False
    return len(np.unique(sample[:, 0])) == 2


def _values(image: Image.Image, side: int = 128) -> int:
    """How many distinct values (colours) a small copy of ``image`` holds (nearest-neighbour, so no
    value is made up; JPEGs decode at reduced size)."""
    image.draft("RGB", (side, side))
    small = image.resize(
        (min(side, image.width), min(side, image.height)), Image.Resampling.NEAREST
    )
    array = np.asarray(small.convert("RGB")).reshape(-1, 3).astype(np.int64)
    return len(np.unique(array[:, 0] << 16 | array[:, 1] << 8 | array[:, 2]))


NEARLY_FULL = 0.95  # a mask foreground over more of it than this is said to be nearly full


def read_mask(path: str | Path) -> tuple[np.ndarray, str]:
    """A mask file as a boolean (H, W) array, and the rule that binarised it, in words.

    The one mask reader of training, ``lvunet-eval`` and the exporter. Foreground is decided from what
    the file holds, not from its luminance:

    - grey values: above half their range (``>127`` for 8-bit masks, ``>32767`` for 16-bit ones that
      use it); a mask whose foreground value is small (0/1 masks, also when saved as JPEG, whose noise
      gives values like 2 or 3) above half that value (``>0``);
    - colour masks (an object drawn in red or blue on black): the brightest channel, by the same rule;
    - palette masks: every palette index other than the most common one (the background);
    - masks drawn in their transparency (an object on a transparent layer, of any colour): the opacity,
      by the grey rule;
    - an all-zero mask is ``empty``.

    A mask with many values between background and foreground (antialiased edges, a gradient) is
    binarised by the same rule and the rule says so (``, 12% intermediate``); one whose foreground
    covers more than 95% of it says ``, nearly full`` (a dataset of only such masks is refused: inverted).

    Raises:
        ImageError: missing, not an image, corrupt.
    """
    path = Path(path)
    try:
        with open_loaded(path) as image:
            array, kind = _mask_values(upright(image))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{path}: unreadable mask ({exc})") from None
    if kind == "palette":
        values, counts = np.unique(array, return_counts=True)
        background = values[np.argmax(counts)]
        if len(values) == 1:
            return np.zeros(array.shape, bool), "empty"
        return array != background, f"palette index != {int(background)}"
    if array.max(initial=0) == 0:
        return array > 0, "empty"
    nonzero = array[array > 0]
    values, counts = np.unique(nonzero, return_counts=True)
    top = int(values[np.argmax(counts)])  # the foreground's own value (1, 255, 65535, ...)
    if array.max() > 255:
        cut = 32767  # 16-bit masks that use their range
    elif array.max() >= 128:
        cut = 127
    else:
        cut = top // 2  # a low-range mask (0/1, or 0/1 saved as JPEG): half its foreground value
    rule = {
        "grey": f">{cut}",
        "colour": f"colour, brightest channel >{cut}",
        "alpha": f"transparency, opacity >{cut}",
    }[kind]
    intermediate = float(((array > 0) & (array != top)).mean() / max((array > 0).mean(), 1e-12))
    if intermediate > 0.05:
        rule += f", {intermediate:.0%} intermediate"
    mask = array > cut
    if mask.mean() > NEARLY_FULL:
        rule += ", nearly full"
    return mask, rule


def _mask_values(image: Image.Image) -> tuple[np.ndarray, str]:
    """The values a mask's foreground is decided from, and their kind (grey, colour, palette, alpha)."""
    alpha = _alpha(image)
    if alpha is not None:
        return alpha, "alpha"
    if image.mode in SIXTEEN_BIT_MODES:
        return np.asarray(image).astype(np.int64), "grey"
    if image.mode == "P":
        return np.asarray(image), "palette"
    if image.mode in ("1", "L", "LA"):
        return np.asarray(image.convert("L")), "grey"
    rgb = np.asarray(image.convert("RGB"))
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        return rgb[..., 0], "grey"
    return rgb.max(axis=2), "colour"


def _alpha(image: Image.Image) -> np.ndarray | None:
    """A mask drawn in its transparency (an object painted on a transparent layer): the alpha channel,
    when it varies and the colours cannot tell the object (all one colour, such as black on
    transparent black) or tell it inverted (the invisible part brighter than the visible one, such as
    black on transparent white). Else None: the colours decide."""
    if image.mode not in ("RGBA", "LA", "PA") and "transparency" not in image.info:
        return None
    rgba = np.asarray(image.convert("RGBA"))
    alpha, values = rgba[..., 3], rgba[..., :3].max(axis=2)
    if alpha.min() == alpha.max():
        return None
    seen = alpha >= 128
    if values.min() == values.max() or values[~seen].mean() > values[seen].mean():
        return alpha
    return None


def check_mask_rules(rules: dict[str, int], folder: str | Path) -> None:
    """A dataset whose every mask came out empty is refused: training or scoring on it would run to the
    end on nothing (a test IoU of 0, or every image a miss) without a word.

    Raises:
        DataError: naming how many masks there are and what to check.
    """
    total = sum(rules.values())
    if total and rules.get("empty", 0) == total:
        raise DataError(
            f"every mask in {folder} is empty ({total} masks, all pixels 0): check that the mask files "
            "hold the objects (grey, colour, palette, transparency and 0/1 masks are all read)"
        )
    full = sum(count for rule, count in rules.items() if rule.endswith("nearly full"))
    if total and full == total:
        raise DataError(
            f"every mask in {folder} is foreground over more than {NEARLY_FULL:.0%} of its pixels "
            f"({total} masks): drawn inverted (a dark object on white)? invert them, or check the files"
        )


def describe_mask_rules(rules: dict[str, int]) -> str:
    """``12 masks binarised at >127, 1 empty``: the rule per dataset, for logs and summaries."""
    return ", ".join(
        f"{n} empty" if rule == "empty" else f"{n} binarised at {rule}"
        for rule, n in sorted(rules.items(), key=lambda item: -item[1])
    )


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
        text = path.read_text(
            encoding="utf-8-sig"
        )  # a byte-order mark (Windows Notepad) is not text
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{what} {path} is not readable text ({exc})") from None
    ids = [s for line in text.splitlines() if (s := line.strip()) and not s.startswith("#")]
    if not ids:
        raise DataError(f"{what} {path} lists nothing")
    return ids
