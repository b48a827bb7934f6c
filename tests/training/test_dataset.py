"""Training data: decoded through the runtime's readers, resized by the contract, and split."""

import json

import numpy as np
import pytest
from lvunet_runtime.contract import ModelContract
from lvunet_runtime.data import find_pairs
from lvunet_runtime.errors import DataError
from PIL import Image

from lvunet_edge.dataset import load_dataset, make_split, random_split
from tests.helpers import box_mask, write_pair

CONTRACT_128 = ModelContract(input_height=128, input_width=128)


def test_size_mismatch_and_unreadable_listed_before_training(tmp_path):
    write_pair(tmp_path, "a", Image.new("RGB", (40, 30)), box_mask((20, 20)))
    write_pair(tmp_path, "b", Image.new("RGB", (40, 30)), box_mask())
    (tmp_path / "images" / "c.png").write_bytes(b"not an image")
    box_mask().save(tmp_path / "masks" / "c.png")
    with pytest.raises(DataError) as info:
        load_dataset(find_pairs(tmp_path), CONTRACT_128)
    message = str(info.value)
    assert "size mismatch for a" in message and "unreadable image c.png" in message


def test_modes_are_converted_and_masks_binarised(tmp_path):
    gray = Image.fromarray(np.full((30, 40), 100, np.uint8))
    rgba = Image.new("RGBA", (40, 30), (200, 100, 50, 0))
    sixteen = Image.fromarray(np.full((30, 40), 65535, np.uint16))
    palette = Image.new("RGB", (40, 30), (0, 255, 0)).convert("P")
    for stem, image in {"g": gray, "r": rgba, "s": sixteen, "p": palette}.items():
        write_pair(tmp_path, stem, image, box_mask(value=1 if stem == "g" else 255))
    dataset = load_dataset(find_pairs(tmp_path), CONTRACT_128)
    assert dataset.images.shape == (4, 128, 128, 3) and dataset.images.dtype == np.uint8
    by_id = dict(zip(dataset.ids, dataset.images, strict=False))
    assert by_id["s"].min() == 255  # 16-bit white stays white, not clipped or wrapped
    assert tuple(by_id["r"][0, 0]) == (200, 100, 50)
    assert set(np.unique(dataset.masks)) == {0, 1}
    assert dataset.mask_rules == {">0": 1, ">127": 3}


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees
    write_pair(tmp_path, "r", image, box_mask((20, 40)), ".jpg")
    (tmp_path / "images" / "r.jpg").unlink()
    image.save(tmp_path / "images" / "r.jpg", exif=exif)
    dataset = load_dataset(find_pairs(tmp_path), CONTRACT_128)  # mask is 20 wide, 40 high
    assert dataset.images.shape == (1, 128, 128, 3)


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
    (tmp_path / "test.txt").write_text("# test ids\nx1\nx2\n\n")
    split = make_split(ids, 0, tmp_path / "test.txt")
    assert split["test"] == ["x1", "x2"] and len(split["train"]) + len(split["val"]) == 8
    (tmp_path / "bad.txt").write_text("nope\n")
    with pytest.raises(DataError, match="not in the data"):
        make_split(ids, 0, tmp_path / "bad.txt")
    json.dumps(split)
