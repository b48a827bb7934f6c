"""Opening an image file with Pillow the way viewers do, for the image reader and the mask reader.

Pillow refuses a PNG whose optional (ancillary) chunk fails its checksum, such as a damaged ``tEXt``,
``pHYs`` or ``iCCP`` written by a scanner or an editor; libpng, behind most viewers and browsers, warns
and skips such a chunk and shows the pixels. :func:`open_loaded` does the same: it opens the file again
without the damaged optional chunks. A damaged critical chunk (``IHDR``, ``PLTE``, ``IDAT``) is still
refused, as libpng refuses it.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

from PIL import Image, UnidentifiedImageError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def without_damaged_ancillary_chunks(data: bytes) -> bytes | None:
    """The PNG ``data`` with every ancillary chunk whose CRC is wrong left out; None when it is not a
    PNG, its chunk structure is broken, or no chunk had to go."""
    if not data.startswith(PNG_SIGNATURE):
        return None
    kept, dropped, at = [PNG_SIGNATURE], 0, len(PNG_SIGNATURE)
    while at + 12 <= len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        end = at + 12 + length
        if end > len(data):
            return None
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : end])
        ancillary = bool(kind[0] & 0x20)  # lower-case first letter (PNG spec, 5.4)
        if ancillary and zlib.crc32(body, zlib.crc32(kind)) != crc:
            dropped += 1
        else:
            kept.append(data[at:end])
        at = end
        if kind == b"IEND":
            break
    return b"".join(kept) if dropped else None


def open_loaded(
    source: Path | io.BytesIO, check: Callable[[Image.Image], None] | None = None
) -> Image.Image:
    """``Image.open`` then ``load()`` (``check`` runs between them, before any pixel is decoded), with
    one retry for a PNG whose only fault is damaged optional chunks. The caller closes the image."""
    try:
        return _open(source, check)
    except (UnidentifiedImageError, SyntaxError, OSError) as exc:
        if not isinstance(exc, UnidentifiedImageError) and getattr(exc, "errno", None) is not None:
            raise  # the machine's or the file system's fault, not the file's bytes
        data = source.getvalue() if isinstance(source, io.BytesIO) else _head(source)
        repaired = without_damaged_ancillary_chunks(data) if data else None
        if repaired is None:
            raise exc from None
        return _open(io.BytesIO(repaired), check)


def _head(path: Path) -> bytes | None:
    """The file's bytes when it is a PNG (the only format retried); None otherwise."""
    with open(path, "rb") as handle:
        if handle.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
            return None
        return PNG_SIGNATURE + handle.read()


def _open(source, check) -> Image.Image:
    image = Image.open(source)
    try:
        if check is not None:
            check(image)
        image.load()
    except BaseException:
        image.close()
        raise
    return image
