"""The PNG repair behind the image and mask readers: damaged optional chunks are left out as libpng does,
anything else is left to Pillow's refusal."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from lvunet_runtime.decoder import open_loaded, without_damaged_ancillary_chunks
from PIL import Image, PngImagePlugin


def _png() -> tuple[bytearray, np.ndarray]:
    rgb = (np.arange(48 * 32 * 3) % 251).astype(np.uint8).reshape(32, 48, 3)
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "x", zip=False)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG", pnginfo=info)
    return bytearray(buffer.getvalue()), rgb


def _damage(data: bytearray, kind: bytes) -> bytes:
    at = data.index(kind) - 4
    (length,) = struct.unpack(">I", data[at : at + 4])
    data[at + 8 + length] ^= 0x01
    return bytes(data)


def test_a_damaged_text_chunk_is_left_out_and_the_pixels_kept():
    data, rgb = _png()
    repaired = without_damaged_ancillary_chunks(_damage(data, b"tEXt"))
    assert repaired is not None and b"tEXt" not in repaired
    with open_loaded(io.BytesIO(_damage(bytearray(data), b"tEXt"))) as image:
        assert np.array_equal(np.asarray(image), rgb)


def test_nothing_to_repair_a_critical_chunk_or_not_a_png_give_none():
    data, _ = _png()
    assert without_damaged_ancillary_chunks(bytes(data)) is None  # intact
    assert without_damaged_ancillary_chunks(_damage(bytearray(data), b"IHDR")) is None
    assert without_damaged_ancillary_chunks(b"GIF89a" + bytes(data[6:])) is None
    cut = _damage(bytearray(data), b"tEXt")[:40]  # chunk lengths past the end
    assert without_damaged_ancillary_chunks(cut) is None


def test_a_repaired_file_keeps_every_intact_chunk_in_order():
    data, _ = _png()
    body = b"vpAg" + b"\x00" * 9
    at = data.index(b"IDAT") - 4
    data[at:at] = struct.pack(">I", 9) + body + struct.pack(">I", zlib.crc32(body))
    repaired = without_damaged_ancillary_chunks(_damage(bytearray(data), b"tEXt"))
    kinds = [b"IHDR", b"vpAg", b"IDAT", b"IEND"]
    assert [repaired.index(k) for k in kinds] == sorted(repaired.index(k) for k in kinds)
    assert b"tEXt" not in repaired
