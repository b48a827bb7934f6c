"""Image/mask pairing, mask binarisation, split files and extensions: the one copy every stage uses."""

import shutil

import numpy as np
import pytest
from lvunet_runtime.data import IMAGE_SUFFIXES, find_pairs, read_id_list, read_mask
from lvunet_runtime.errors import DataError, ImageError
from lvunet_runtime.metrics import confusion_counts, per_image_scores, summarize
from PIL import Image

from tests.helpers import box_mask, write_pair


def test_mask_name_variants_and_formats(tmp_path):
    rgb = Image.new("RGB", (40, 30), (10, 20, 30))
    write_pair(tmp_path, "a", rgb, box_mask(), ".jpg")
    write_pair(tmp_path, "b", rgb, box_mask(), ".tif", "b_mask.png")
    write_pair(tmp_path, "c", rgb, box_mask(), ".bmp", "c_segmentation.png")
    write_pair(tmp_path, "d", rgb, box_mask(), ".webp")
    assert [p.id for p in find_pairs(tmp_path)] == ["a", "b", "c", "d"]
    assert ".webp" in IMAGE_SUFFIXES and ".gif" in IMAGE_SUFFIXES


def test_unpaired_files_are_listed_together(tmp_path):
    rgb = Image.new("RGB", (40, 30))
    write_pair(tmp_path, "a", rgb, box_mask())
    rgb.save(tmp_path / "images" / "lonely.png")
    box_mask().save(tmp_path / "masks" / "orphan.png")
    with pytest.raises(DataError) as info:
        find_pairs(tmp_path)
    first = str(info.value).splitlines()[0]
    assert "image without mask: lonely.png" in first and "mask without image: orphan.png" in first


def test_ids_select_pairs_and_must_all_exist(tmp_path):
    rgb = Image.new("RGB", (40, 30))
    write_pair(tmp_path, "a", rgb, box_mask())
    write_pair(tmp_path, "b", rgb, box_mask())
    rgb.save(tmp_path / "images" / "unpaired.png")  # not asked for: ignored
    assert [p.id for p in find_pairs(tmp_path, ["b", "b"])] == ["b"]
    with pytest.raises(DataError, match="id without an image: zz"):
        find_pairs(tmp_path, ["a", "zz"])
    with pytest.raises(DataError, match="image without mask: unpaired.png"):
        find_pairs(tmp_path, ["unpaired"])


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DataError, match="images/ and masks/"):
        find_pairs(tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(DataError, match="no images"):
        find_pairs(tmp_path)


def test_masks_binarised_by_their_range(tmp_path):
    cases = {
        "zero_one.png": (box_mask(value=1), ">0"),
        "eight_bit.png": (box_mask(value=200), ">127"),
        "sixteen.png": (
            Image.fromarray(np.asarray(box_mask(value=1)).astype(np.uint16) * 60000),
            ">32767",
        ),
        "one_bit.png": (box_mask().convert("1"), ">127"),
    }
    for name, (image, rule) in cases.items():
        image.save(tmp_path / name)
        mask, found = read_mask(tmp_path / name)
        assert found == rule and mask.dtype == bool and mask.sum() == 15 * 20, name
    edge = np.asarray(box_mask(value=255)).copy()
    edge[4, 9:31] = edge[20, 9:31] = 100  # an antialiased edge: below half the range is background
    Image.fromarray(edge).save(tmp_path / "antialiased.png")
    mask, found = read_mask(tmp_path / "antialiased.png")
    assert found == ">127, 13% intermediate" and mask.sum() == 15 * 20 and not mask[4].any()
    Image.new("L", (8, 8)).save(tmp_path / "empty.png")
    mask, found = read_mask(tmp_path / "empty.png")
    assert found == "empty" and not mask.any()
    (tmp_path / "junk.png").write_text("junk")
    with pytest.raises(ImageError, match="unreadable mask"):
        read_mask(tmp_path / "junk.png")


def test_split_files_skip_comments_and_blanks(tmp_path):
    (tmp_path / "ids.txt").write_text("# PraNet test ids\nx1\n\n  x2  \n# end\n")
    assert read_id_list(tmp_path / "ids.txt") == ["x1", "x2"]
    with pytest.raises(DataError, match="not found"):
        read_id_list(tmp_path / "none.txt")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(DataError, match="lists nothing"):
        read_id_list(tmp_path / "empty.txt")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(DataError, match="not readable text"):
        read_id_list(tmp_path / "binary.txt")


def test_metrics_on_hand_made_masks():
    target = np.zeros((3, 4, 4), bool)
    pred = np.zeros((3, 4, 4), bool)
    target[0, :2] = True  # 8 pixels
    pred[0, :1] = True  # 4 pixels, all inside
    pred[1, 0, 0] = True  # empty target, one false positive
    counts = confusion_counts(pred, target)
    assert counts[0].tolist() == [4, 0, 4, 8]
    iou, dice = per_image_scores(counts)
    assert iou.tolist() == [0.5, 0.0, 1.0]
    assert dice[0] == pytest.approx(2 / 3)
    summary = summarize(counts, batch_size=2)
    assert summary["iou"] == pytest.approx(0.5)
    assert summary["dataset_iou"] == pytest.approx(4 / 9)
    assert summary["precision"] == pytest.approx(0.8) and summary["recall"] == 0.5
    assert summary["batch_pooled_iou"] == pytest.approx((4 / 9 + 1.0) / 2)


def _object(value, shape=(200, 150), mode="L"):
    array = (
        np.zeros((*shape[::-1], 3), np.uint8) if mode == "RGB" else np.zeros(shape[::-1], np.uint8)
    )
    array[25:100, 50:150] = value
    return Image.fromarray(array)


@pytest.mark.parametrize(
    ("name", "image", "rule"),
    [
        ("red.png", _object((255, 0, 0), mode="RGB"), "colour, brightest channel >127"),
        ("blue.png", _object((0, 0, 200), mode="RGB"), "colour, brightest channel >127"),
        (
            "green_rgba.png",
            _object((0, 180, 0), mode="RGB").convert("RGBA"),
            "colour, brightest channel >127",
        ),
        ("palette.png", _object(3).convert("P"), "palette index != 0"),
        ("zero_one.jpg", _object(1), ">0"),  # JPEG noise on a 0/1 mask: values 0..3
        ("grey_rgb.png", _object((255, 255, 255), mode="RGB"), ">127"),
        # causes beyond the examples:
        ("black_on_transparent.png", None, "transparency, opacity >127"),  # colour carries nothing
        ("black_on_clear_white.png", None, "transparency, opacity >127"),  # colour says inverted
        ("zero_one_16bit.png", None, ">0"),  # a 16-bit label image of 0/1
        (
            "bilevel.tif",
            _object(255).convert("1"),
            ">127",
        ),  # 1-bit, as scanners and TIFF tools save
    ],
)
def test_masks_as_people_save_them_keep_their_object(tmp_path, name, image, rule):
    """A red or blue object on black (luminance would make it empty or half), a palette mask, 0/1 saved
    as JPEG (the "> 127" rule would make it empty): the object is found, and the rule says how."""
    if name == "palette.png":
        image = Image.fromarray(np.asarray(_object(3))).convert("P")
        image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    if name.startswith("black_on"):
        rgba = np.zeros((150, 200, 4), np.uint8)
        if name == "black_on_clear_white.png":
            rgba[..., :3] = 255
            rgba[25:100, 50:150, :3] = 0
        rgba[25:100, 50:150, 3] = 255
        image = Image.fromarray(rgba)
    if name == "zero_one_16bit.png":
        image = Image.fromarray((np.asarray(_object(1)) > 0).astype(np.uint16))
    image.save(tmp_path / name, **({"quality": 75} if name.endswith(".jpg") else {}))
    mask, found = read_mask(tmp_path / name)
    assert found.startswith(rule), found
    box = np.zeros((150, 200), bool)
    box[25:100, 50:150] = True
    assert (mask == box).mean() > 0.97 and mask[30:95, 55:145].all(), found


def test_a_gradient_mask_is_binarised_with_a_remark():
    import tempfile
    from pathlib import Path

    gradient = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (16, 1))
    with tempfile.TemporaryDirectory() as folder:
        Image.fromarray(gradient).save(Path(folder) / "g.png")
        mask, rule = read_mask(Path(folder) / "g.png")
    assert rule.startswith(">127, ") and "intermediate" in rule and 0.4 < mask.mean() < 0.6


def test_an_inverted_mask_says_nearly_full_and_a_dataset_of_them_is_refused(tmp_path):
    from lvunet_runtime.data import check_mask_rules

    inverted = np.full((150, 200), 255, np.uint8)
    inverted[60:80, 90:110] = 0  # a small dark object on white
    Image.fromarray(inverted).save(tmp_path / "inverted.png")
    mask, rule = read_mask(tmp_path / "inverted.png")
    assert rule == ">127, nearly full" and mask.mean() > 0.95
    with pytest.raises(DataError, match="drawn inverted"):
        check_mask_rules({rule: 4}, tmp_path)
    check_mask_rules({rule: 1, ">127": 3}, tmp_path)  # one large object is fine


def test_a_dataset_of_empty_masks_is_refused_by_training_and_eval(tmp_path):
    from lvunet_runtime.data import check_mask_rules, describe_mask_rules

    with pytest.raises(DataError, match="every mask in .* is empty .3 masks"):
        check_mask_rules({"empty": 3}, tmp_path)
    check_mask_rules({"empty": 2, ">127": 1}, tmp_path)  # some empty masks are normal
    assert describe_mask_rules({"empty": 1, ">127": 5}) == "5 binarised at >127, 1 empty"
    for stem, red in (("a", 90), ("b", 91)):
        write_pair(
            tmp_path, stem, Image.new("RGB", (40, 30), (red, 40, 30)), Image.new("L", (40, 30))
        )
    from tests.helpers import cli

    result = cli("eval", "--data", tmp_path, "--model", "polyp")
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and "every mask in" in lines[0]


def _with_orientation(image: Image.Image, path, value: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = value
    image.save(path, exif=exif.tobytes())


def test_a_pair_lines_up_as_the_user_sees_it_and_a_turned_image_is_named(tmp_path):
    """The image reader applies EXIF orientation, so the mask reader does too; an image turned by EXIF
    whose mask is not is read as drawn on the turned image, and named in a warning."""
    from lvunet_runtime import load_image
    from lvunet_runtime.data import pair_warnings

    wide = np.zeros((30, 60), np.uint8)
    wide[0:10, 0:20] = 255  # an object in the top-left corner of the stored pixels
    texture = (np.arange(30 * 60).reshape(30, 60) % 37).astype(np.uint8)
    photo = np.dstack([np.where(wide > 0, 200 + texture, texture)] * 3)  # an image, not two values
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    _with_orientation(Image.fromarray(photo), tmp_path / "images" / "both.png", 6)
    _with_orientation(Image.fromarray(wide), tmp_path / "masks" / "both.png", 6)  # turned alike
    other = photo.copy()
    other[29, 59] += 1  # not a byte-identical copy of both.png
    _with_orientation(Image.fromarray(other), tmp_path / "images" / "only.png", 6)
    Image.fromarray(np.ascontiguousarray(np.rot90(wide, -1))).save(tmp_path / "masks" / "only.png")
    rgb, _ = load_image(tmp_path / "images" / "both.png")
    mask, rule = read_mask(tmp_path / "masks" / "both.png")
    assert rgb.shape[:2] == mask.shape == (60, 30) and rule == ">127"
    assert np.array_equal(mask, rgb[..., 0] > 127)  # the pair lines up after both are turned
    pairs = find_pairs(tmp_path)
    (warning,) = pair_warnings(pairs)
    assert "1 image(s) carry an EXIF orientation" in warning and "only" in warning
    assert pair_warnings([p for p in pairs if p.id == "both"]) == []


def _dataset(root, count=3):
    """``count`` textured photographs with an object mask each."""
    rng = np.random.default_rng(0)
    for index in range(count):
        photo = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
        mask = np.zeros((40, 60), np.uint8)
        mask[10:20, 10 + index : 30 + index] = 255
        write_pair(root, f"p{index}", Image.fromarray(photo), Image.fromarray(mask))
    return root


@pytest.mark.parametrize(
    "spoil, words, ids",
    [
        ("swapped", "hold two values only, as masks do", "p0, p1, p2"),
        ("photo mask", "more than 1,000 colours, as photographs do", "p1"),
        ("copies", "byte-identical copies of another", "p0=p2"),
    ],
)
def test_data_that_would_spoil_a_run_quietly_is_named_before_it(tmp_path, spoil, words, ids):
    """Causes beyond EXIF: folders swapped, a photograph among the masks, a copy under two names."""
    from lvunet_runtime.data import pair_warnings

    root = _dataset(tmp_path / "d")
    assert pair_warnings(find_pairs(root)) == []  # the clean dataset: no word
    if spoil == "swapped":
        for path in (root / "images").iterdir():
            mask = root / "masks" / f"{path.stem}.png"
            image_bytes, mask_bytes = path.read_bytes(), mask.read_bytes()
            path.write_bytes(mask_bytes)
            mask.write_bytes(image_bytes)
    elif spoil == "photo mask":
        shutil.copy(root / "images" / "p1.png", root / "masks" / "p1.png")
    else:
        shutil.copy(root / "images" / "p0.png", root / "images" / "p2.png")
    warnings = pair_warnings(find_pairs(root))
    assert any(words in w and f"(e.g. {ids})" in w for w in warnings), warnings


def test_lvunet_eval_says_the_warnings_before_it_scores(tmp_path):
    from tests.helpers import cli

    root = _dataset(tmp_path / "d")
    shutil.copy(root / "images" / "p0.png", root / "images" / "p2.png")
    result = cli("eval", "--data", root, "--model", "polyp", "--no-progress")
    assert result.exit_code == 0, result.stderr
    assert "lvunet-eval: warning: 1 image(s) are byte-identical copies" in result.stderr
