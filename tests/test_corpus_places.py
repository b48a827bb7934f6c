"""The corpus, class 5: names, files and places the code did not expect. Each case runs the real entry
point (a fresh interpreter where a crash would take the test process with it), asserts the exit code, no
traceback, and that files which existed before are byte-identical after.

Causes covered: a folder whose name is not UTF-8 (bytes from a Latin-1 system) holding a video, an image,
a model, an export's output, a dataset; an argument of that kind reaching the internal-error log; PNG files
whose optional chunks fail their checksum (text, physical size, a vendor's private chunk)
against one whose header chunk does; a HOME that cannot be written (ONNX Runtime's telemetry).
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from tests.helpers import (
    BUSI_IMAGE,
    KVASIR_IMAGE,
    assert_one_line_error,
    checksums,
    cli,
    copy_pairs,
    run_entry,
)

POLYP = Path(__file__).resolve().parents[1] / "runtime" / "lvunet_runtime" / "models" / "polyp.onnx"


@pytest.fixture
def latin1(tmp_path) -> Path:
    """``tmp/café`` named in Latin-1 bytes (``caf\\xe9``): what Python shows as ``caf\\udce9``."""
    folder = os.path.join(os.fsencode(tmp_path), b"caf\xe9")
    try:
        os.mkdir(folder)
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    path = Path(os.fsdecode(folder))
    assert "\udce9" in str(path)
    return path


def _video(path: Path, frames: int = 3) -> Path:
    scratch = path.parent.parent / "scratch.mp4"  # OpenCV cannot write the name itself: made aside
    writer = cv2.VideoWriter(str(scratch), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 64))
    frame = cv2.resize(cv2.imread(str(BUSI_IMAGE)), (96, 64))
    for _ in range(frames):
        writer.write(frame)
    writer.release()
    shutil.move(scratch, path)
    return path


def _frames(path: Path, scratch: Path) -> int:
    copy = scratch / "copy.mp4"  # read from a UTF-8 name: this counts frames, it tests nothing
    shutil.copy(path, copy)
    capture, count = cv2.VideoCapture(str(copy)), 0
    while capture.read()[0]:
        count += 1
    return count


def _ok(result, *expected_files: Path):
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for path in expected_files:
        assert path.is_file() and path.stat().st_size > 0, path


def test_a_video_in_a_folder_not_named_in_utf8_is_segmented_not_a_crash(latin1):
    video = _video(latin1 / "clip.mp4")
    before = checksums(latin1)
    result = run_entry("infer", [video, "--out", latin1 / "out", "--no-progress"])
    _ok(result, latin1 / "out" / "clip_overlay.mp4", latin1 / "out" / "clip_frames.csv")
    assert _frames(latin1 / "out" / "clip_overlay.mp4", latin1.parent) == 3
    assert all(checksums(latin1).get(name) == digest for name, digest in before.items())
    assert not list(latin1.glob("out/.lvunet-*"))  # no temporary left behind


def test_a_model_in_a_folder_not_named_in_utf8_loads(latin1):
    model = latin1 / "clinic.onnx"
    shutil.copy(POLYP, model)
    result = run_entry("infer", [KVASIR_IMAGE, "--model", model, "--out", latin1 / "o", "--json"])
    _ok(result, latin1 / "o" / f"{KVASIR_IMAGE.stem}_mask.png")
    assert "clinic.onnx sha256:" in (latin1 / "o" / f"{KVASIR_IMAGE.stem}.json").read_text()


def test_images_and_outputs_in_a_folder_not_named_in_utf8(latin1):
    image = latin1 / "scan.jpg"
    shutil.copy(BUSI_IMAGE, image)
    result = run_entry("infer", [latin1, "--out", latin1 / "masks", "--overlay"])
    _ok(result, latin1 / "masks" / "scan_mask.png", latin1 / "masks" / "scan_overlay.png")


def test_a_dataset_in_a_folder_not_named_in_utf8_is_evaluated(latin1):
    copy_pairs("kvasir-seg__cju2h", latin1 / "data")
    result = run_entry("eval", ["--data", latin1 / "data", "--model", "polyp"])
    _ok(result)
    assert "image" in result.stdout, result.stdout


def test_an_export_into_a_folder_not_named_in_utf8(latin1, random_checkpoint):
    out = latin1 / "model.onnx"
    result = cli("export", "--ckpt", random_checkpoint, "--out", out)
    assert result.exit_code == 0, result.stderr
    assert out.is_file() and not list(latin1.glob(".lvunet-*"))
    check = run_entry("infer", [KVASIR_IMAGE, "--model", out, "--out", latin1 / "o"])
    _ok(check, latin1 / "o" / f"{KVASIR_IMAGE.stem}_mask.png")


def test_an_internal_error_with_such_a_name_in_argv_still_writes_its_log(
    latin1, monkeypatch, capsys
):
    from lvunet_runtime import command

    monkeypatch.setattr(sys, "argv", ["lvunet-infer", str(latin1 / "x.jpg")])
    monkeypatch.setattr(command.tempfile, "gettempdir", lambda: str(latin1.parent))
    code = command._internal_error("lvunet-infer", RuntimeError("boom"), debug=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3 and len(err) == 1 and "traceback in" in err[0], err
    log = next((latin1.parent / "lvunet-logs").glob("lvunet-infer-*.log"))
    assert "caf\\udce9" in log.read_text() and "RuntimeError: boom" in log.read_text()


def _png(chunk: bytes) -> tuple[bytes, np.ndarray]:
    """A PNG of a real image whose ``chunk`` has a wrong CRC, and the pixels a viewer shows."""
    rgb = np.asarray(Image.open(BUSI_IMAGE).convert("RGB").resize((96, 64)))
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "ultrasound console", zip=False)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG", pnginfo=info, dpi=(72, 72))
    data = bytearray(buffer.getvalue())
    # a vendor's private chunk (lower-case first letter: optional), as some consoles add
    private = b"prVt" + b"console 4.2"
    header_end = data.index(b"IHDR") + 4 + 13 + 4
    data[header_end:header_end] = (
        struct.pack(">I", 11) + private + struct.pack(">I", zlib.crc32(private))
    )
    at = data.index(chunk) - 4
    (length,) = struct.unpack(">I", data[at : at + 4])
    data[at + 8 + length] ^= 0xFF  # first byte of its CRC
    return bytes(data), rgb


@pytest.mark.parametrize(
    "chunk", [b"tEXt", b"pHYs", b"prVt"], ids=["text", "physical size", "a vendor's private chunk"]
)
def test_a_png_whose_optional_chunk_fails_its_checksum_is_read_as_viewers_show_it(tmp_path, chunk):
    from lvunet_runtime.data import read_mask
    from lvunet_runtime.image import load_image

    data, rgb = _png(chunk)
    path = tmp_path / "scan.png"
    path.write_bytes(data)
    with pytest.raises(Exception):  # noqa: B017 - Pillow alone refuses it (what the case is about)
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    loaded, _ = load_image(path)
    assert np.array_equal(loaded, rgb)
    assert read_mask(path)[0].shape == rgb.shape[:2]
    result = cli("infer", path, "--out", tmp_path / "o")
    assert result.exit_code == 0 and (tmp_path / "o" / "scan_mask.png").is_file(), result.stderr
    assert path.read_bytes() == data  # the user's file is left as it was


def test_a_png_whose_header_chunk_fails_its_checksum_is_refused_in_one_line(tmp_path):
    data, _ = _png(b"IHDR")
    path = tmp_path / "scan.png"
    path.write_bytes(data)
    result = cli("infer", path, "--out", tmp_path / "o")
    assert_one_line_error(result.exit_code, result.stderr, "not an image", "lvunet-infer")


@pytest.mark.parametrize("program", ["infer", "eval"])
def test_a_home_that_cannot_be_written_puts_no_third_party_line_on_the_console(tmp_path, program):
    home = tmp_path / "home-is-a-file"
    home.write_text("")
    env = {
        k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "ORT_DISABLE_TELEMETRY")
    }
    env["HOME"] = str(home)
    if program == "infer":
        args = [KVASIR_IMAGE, "--out", tmp_path / "o", "--no-progress"]
    else:
        copy_pairs("kvasir-seg__cju2h", tmp_path / "d")
        args = ["--data", tmp_path / "d", "--model", "polyp", "--no-progress"]
    result = run_entry(program, args, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr  # e.g. ONNX Runtime's telemetry warning
