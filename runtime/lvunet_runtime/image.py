"""Reading images safely into 8-bit RGB.

Any common mode is converted (grayscale, palette, RGBA, CMYK, 16-bit), EXIF orientation is applied, and
an image whose header claims more than ``max_pixels`` is refused before it is decoded (decompression bombs).
Importing this module changes no Pillow setting: Pillow's own decompression-bomb guard stays on for library
users (its refusal becomes an ImageError); the command-line tools, which check ``--max-pixels`` themselves,
lift it in their entry point.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from lvunet_runtime.data import SIXTEEN_BIT_MODES, upright
from lvunet_runtime.decoder import open_loaded
from lvunet_runtime.errors import MACHINE_ERRNOS, ImageError, describe_os_error

DEFAULT_MAX_PIXELS = 100_000_000


def to_rgb8(image: Image.Image) -> np.ndarray:
    """A decoded PIL image of any mode as an HxWx3 uint8 RGB array (EXIF orientation applied)."""
    image = upright(image)
    if image.mode in SIXTEEN_BIT_MODES:
        array = np.asarray(image).astype(np.float32)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        gray = np.clip(array * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode == "RGBA" or image.mode == "LA" or "transparency" in image.info:
        return np.asarray(image.convert("RGBA").convert("RGB"))
    return np.asarray(image.convert("RGB") if image.mode != "RGB" else image)


def load_image(
    path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[np.ndarray, tuple[int, int]]:
    """Load an image file as RGB uint8.

    Args:
        path: image file.
        max_pixels: refuse larger images before decoding.

    Returns:
        ``(rgb, (height, width))``: the array and its (EXIF-oriented) size.

    Raises:
        ImageError: missing, not an image, corrupt or truncated, or too large.
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: file not found")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image")
    if not path.is_file():  # a FIFO, socket or device would block or stream forever
        raise ImageError(f"{path}: not a regular file")
    from lvunet_runtime.dicom import is_dicom

    if is_dicom(path):
        return _dicom(path, str(path), max_pixels)
    return _decode(path, str(path), max_pixels)


def decode_image(
    data: bytes, *, name: str = "the upload", max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[np.ndarray, tuple[int, int]]:
    """:func:`load_image` for a file's bytes already in memory (no file is written or opened).

    Errors name the file as ``name``.
    """
    if not data:
        raise ImageError(f"{name}: empty file, not an image")
    from lvunet_runtime.dicom import looks_dicom

    if looks_dicom(data):
        return _dicom(data, name, max_pixels)
    return _decode(io.BytesIO(data), name, max_pixels)


def _dicom(source: Path | bytes, name: str, max_pixels: int):
    """A single-frame DICOM image (multi-frame ones are run frame by frame, as videos)."""
    from lvunet_runtime.dicom import read_dicom

    frames = read_dicom(source, name=name, max_pixels=max_pixels).frames
    if len(frames) > 1:
        raise ImageError(
            f"{name}: a multi-frame DICOM image ({len(frames)} frames); lvunet-infer runs it frame by "
            "frame, as a video"
        )
    return frames[0], frames[0].shape[:2]


def _decode(source: Path | io.BytesIO, name: str, max_pixels: int):
    """Decode with the size check first; a fault of the machine (out of descriptors or memory, an I/O
    error) is raised as the ``OSError`` it is, never reported as a broken image."""

    def check(image: Image.Image) -> None:
        width, height = image.size
        if width * height > max_pixels:
            raise ImageError(
                f"{name}: {width}x{height} is {width * height / 1e6:.0f} megapixels, over the "
                f"limit of {max_pixels / 1e6:.0f}; raise --max-pixels if you trust this file"
            )

    try:
        with open_loaded(source, check) as image:
            rgb = to_rgb8(image)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{name}: refused before decoding, too large ({exc})") from None
    except OSError as exc:
        # From memory, no errno can be the file's: any is the machine's (as running out always is).
        if exc.errno in MACHINE_ERRNOS or (exc.errno is not None and not isinstance(source, Path)):
            raise
        raise _broken(name, exc) from None
    except (ValueError, SyntaxError) as exc:
        raise _broken(name, exc) from None
    return rgb, rgb.shape[:2]


def _broken(name: str, exc: Exception) -> ImageError:
    if isinstance(exc, UnidentifiedImageError):
        return ImageError(f"{name}: not an image or unsupported format")
    if isinstance(exc, OSError) and exc.errno is not None:
        return ImageError(f"{name}: cannot be read ({describe_os_error(exc)})")
    return ImageError(f"{name}: corrupt or truncated image ({exc})")
