"""Runtime image loading: conversions, EXIF, size limits, errors."""

import io

import numpy as np
import pytest
from lvunet_runtime.errors import ImageError
from lvunet_runtime.image import load_image
from PIL import Image

from tests.helpers import DATA

SAMPLE = DATA / "images" / "kvasir-seg__cju2htabevq9108015qjei0x7.jpg"


def test_modes_convert_to_rgb8(tmp_path):
    base = Image.open(SAMPLE)
    cases = {
        "gray.png": base.convert("L"),
        "rgba.png": base.convert("RGBA"),
        "palette.png": base.convert("P"),
        "cmyk.jpg": base.convert("CMYK"),
        "sixteen.png": Image.fromarray(np.asarray(base.convert("L")).astype(np.uint16) * 257),
    }
    for name, image in cases.items():
        image.save(tmp_path / name)
        rgb, size = load_image(tmp_path / name)
        assert rgb.dtype == np.uint8 and rgb.shape == (base.height, base.width, 3), name
        assert size == (base.height, base.width)
    sixteen, _ = load_image(tmp_path / "sixteen.png")
    gray, _ = load_image(tmp_path / "gray.png")
    assert np.abs(sixteen.astype(int) - gray.astype(int)).max() <= 1  # scaled, not clipped


def test_exif_rotation_is_applied(tmp_path):
    image = Image.open(SAMPLE)
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(tmp_path / "rotated.jpg", exif=exif)
    rgb, size = load_image(tmp_path / "rotated.jpg")
    assert rgb.shape[:2] == (image.width, image.height) == size


def test_errors(tmp_path):
    with pytest.raises(ImageError, match="file not found"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(ImageError, match="not an image"):
        load_image(tmp_path / "text.png")
    data = SAMPLE.read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image(tmp_path / "truncated.jpg")
    with pytest.raises(ImageError, match="megapixels"):
        load_image(SAMPLE, max_pixels=1000)
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


def test_decompression_bomb_refused_before_decoding(tmp_path):
    buffer = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buffer, "PNG")  # tiny file, 400 megapixels
    (tmp_path / "bomb.png").write_bytes(buffer.getvalue())
    with pytest.raises(ImageError, match="400 megapixels|too large"):
        load_image(tmp_path / "bomb.png")  # Pillow's own guard, untouched by importing us, or ours


def test_importing_the_runtime_changes_no_process_state():
    import os
    import subprocess
    import sys

    code = (
        "import os, cv2, onnxruntime; from PIL import Image;"  # their own import-time settings
        "before = (Image.MAX_IMAGE_PIXELS, dict(os.environ));"
        "import lvunet_runtime, lvunet_runtime.image, lvunet_runtime.infer, lvunet_runtime.segmenter;"
        "assert (Image.MAX_IMAGE_PIXELS, dict(os.environ)) == before, 'changed'"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV")}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="no named pipes here")
def test_fifo_is_refused_not_waited_on(tmp_path):
    import os

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match="not a regular file"):
        load_image(fifo)


def test_runtime_only_environment_really_lacks_torch():
    """Under `make test-runtime` these tests run where torch and onnx are not installed at all."""
    import importlib.util
    import os

    if os.environ.get("LVUNET_RUNTIME_ONLY") != "1":
        pytest.skip("full environment")
    for name in ("torch", "onnx", "onnxsim"):
        assert importlib.util.find_spec(name) is None, name
