"""Dataset discovery, conversion, validation and splits."""

import json

import numpy as np
import pytest
from PIL import Image

from lvunet_edge.data import find_pairs, load_dataset, make_split, random_split, to_rgb8
from lvunet_edge.errors import DataError


def _write_pair(root, stem, image, mask, image_ext=".png", mask_name=None):
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    image.save(root / "images" / f"{stem}{image_ext}")
    mask.save(root / "masks" / (mask_name or f"{stem}.png"))


def _mask(size=(40, 30), value=255):
    array = np.zeros(size[::-1], np.uint8)
    array[5:20, 10:30] = value
    return Image.fromarray(array)


def test_mask_name_variants_and_formats(tmp_path):
    rgb = Image.new("RGB", (40, 30), (10, 20, 30))
    _write_pair(tmp_path, "a", rgb, _mask(), ".jpg")
    _write_pair(tmp_path, "b", rgb, _mask(), ".tif", "b_mask.png")
    _write_pair(tmp_path, "c", rgb, _mask(), ".bmp", "c_segmentation.png")
    pairs = find_pairs(tmp_path)
    assert [p.id for p in pairs] == ["a", "b", "c"]


def test_unpaired_files_are_listed_together(tmp_path):
    rgb = Image.new("RGB", (40, 30))
    _write_pair(tmp_path, "a", rgb, _mask())
    rgb.save(tmp_path / "images" / "lonely.png")
    _mask().save(tmp_path / "masks" / "orphan.png")
    with pytest.raises(DataError) as info:
        find_pairs(tmp_path)
    message = str(info.value)
    assert (
        "image without mask: lonely.png" in message and "mask without image: orphan.png" in message
    )


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DataError, match="images/ and masks/"):
        find_pairs(tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(DataError, match="no images"):
        find_pairs(tmp_path)


def test_size_mismatch_and_unreadable_listed_before_training(tmp_path):
    _write_pair(tmp_path, "a", Image.new("RGB", (40, 30)), _mask((20, 20)))
    _write_pair(tmp_path, "b", Image.new("RGB", (40, 30)), _mask())
    (tmp_path / "images" / "c.png").write_bytes(b"not an image")
    _mask().save(tmp_path / "masks" / "c.png")
    with pytest.raises(DataError) as info:
        load_dataset(find_pairs(tmp_path), 128)
    message = str(info.value)
    assert "size mismatch for a" in message and "unreadable image c.png" in message


def test_modes_are_converted_and_masks_binarised(tmp_path):
    gray = Image.fromarray(np.full((30, 40), 100, np.uint8))
    rgba = Image.new("RGBA", (40, 30), (200, 100, 50, 0))
    sixteen = Image.fromarray(np.full((30, 40), 65535, np.uint16))
    palette = Image.new("RGB", (40, 30), (0, 255, 0)).convert("P")
    for stem, image in {"g": gray, "r": rgba, "s": sixteen, "p": palette}.items():
        _write_pair(tmp_path, stem, image, _mask(value=1 if stem == "g" else 255))
    dataset = load_dataset(find_pairs(tmp_path), 128)
    assert dataset.images.shape == (4, 128, 128, 3) and dataset.images.dtype == np.uint8
    by_id = dict(zip(dataset.ids, dataset.images, strict=False))
    assert by_id["s"].min() == 255  # 16-bit white stays white, not clipped or wrapped
    assert tuple(by_id["r"][0, 0]) == (200, 100, 50)
    assert set(np.unique(dataset.masks)) == {0, 1}
    assert dataset.mask_rules == {">0": 1, ">127": 3}


def test_to_rgb8_applies_exif_orientation():
    image = Image.new("RGB", (40, 20))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees
    image.info["exif"] = exif.tobytes()
    image = Image.open(_roundtrip(image, exif))
    assert to_rgb8(image).shape == (40, 20, 3)


def _roundtrip(image, exif):
    import io

    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    buffer.seek(0)
    return buffer


def test_random_split_is_deterministic_and_matches_paper_sizes():
    ids = [f"id{i:04d}" for i in range(1000)]
    split = random_split(list(reversed(ids)), seed=42)
    assert split == random_split(ids, seed=42)
    assert [len(split[k]) for k in ("train", "val", "test")] == [640, 160, 200]
    assert len(set(split["train"]) | set(split["val"]) | set(split["test"])) == 1000
    cvc = random_split([str(i) for i in range(1, 613)], seed=42)
    assert [len(cvc[k]) for k in ("train", "val", "test")] == [391, 98, 123]


def test_split_file(tmp_path):
    ids = [f"x{i}" for i in range(10)]
    (tmp_path / "test.txt").write_text("x1\nx2\n\n")
    split = make_split(ids, 0, tmp_path / "test.txt")
    assert split["test"] == ["x1", "x2"] and len(split["train"]) + len(split["val"]) == 8
    (tmp_path / "bad.txt").write_text("nope\n")
    with pytest.raises(DataError, match="not in the data"):
        make_split(ids, 0, tmp_path / "bad.txt")
    json.dumps(split)
