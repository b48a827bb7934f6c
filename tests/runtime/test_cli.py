"""lvunet-infer and lvunet-eval: in process through the real entry wrapper, plus one end-to-end run in a fresh
interpreter where torch and onnx cannot be imported. All on the bundled models."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.helpers import (
    BUSI_IMAGE,
    DATA,
    KVASIR_IMAGE,
    assert_one_line_error,
    cli,
    copy_pairs,
    no_torch_env,
    run_entry,
)


def infer(*args):
    return cli("infer", *args)


def evaluate(*args):
    return cli("eval", *args)


def one_line(result, expected, program="lvunet-infer", code=1):
    assert_one_line_error(result.exit_code, result.stderr, expected, program, code)


def test_infer_and_eval_without_torch(tmp_path):
    """The point-of-care install: the real entry points with torch and onnx unimportable."""
    env = no_torch_env(tmp_path)
    out = tmp_path / "out"
    args = [
        DATA / "images",
        "--model",
        "breast-ultrasound",
        "--out",
        out,
        "--overlay",
        "--json",
        "--prob",
    ]
    result = run_entry("infer", args, env)
    assert result.returncode == 0, result.stderr
    assert "16 images segmented" in result.stdout
    for path in sorted((DATA / "images").iterdir()):
        image = Image.open(path)
        mask = Image.open(out / f"{path.stem}_mask.png")
        assert mask.size == image.size and mask.mode == "1"  # 1-bit PNG
        as_cv2 = cv2.imread(str(out / f"{path.stem}_mask.png"), cv2.IMREAD_UNCHANGED)
        assert as_cv2.dtype == np.uint8 and set(np.unique(as_cv2)) <= {0, 255}
        assert Image.open(out / f"{path.stem}_overlay.png").size == image.size
        stats = json.loads((out / f"{path.stem}.json").read_text())
        assert stats["area_px"] == int(np.asarray(mask).sum())
        assert stats["regions"] == len(stats["region_list"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processed"] == 16 and summary["failed"] == []
    report = tmp_path / "eval.json"
    result = run_entry("eval", ["--data", DATA, "--json", report], env)
    assert result.returncode == 0, result.stderr
    data = json.loads(report.read_text())
    assert data["images"] == 16 and 0 <= data["iou"] <= 1 and len(data["slowest"]) == 5


def test_rerun_skips_existing_outputs(tmp_path):
    out = tmp_path / "out"
    assert infer(KVASIR_IMAGE, BUSI_IMAGE, "--out", out).exit_code == 0
    again = infer(KVASIR_IMAGE, BUSI_IMAGE, "--out", out)
    assert again.exit_code == 0 and "nothing to do: the outputs of 2 inputs exist" in again.stdout


def test_eval_bundled_polyp_on_kvasir_samples(tmp_path):
    data = copy_pairs("kvasir-seg", tmp_path / "kvasir")
    result = evaluate("--data", data, "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.stderr
    assert json.loads((tmp_path / "r.json").read_text())["dice"] > 0.6
    assert "IoU" in result.stdout


def _odd_inputs(folder: Path) -> dict[str, tuple[int, int]]:
    base = Image.open(KVASIR_IMAGE)
    images = {
        "odd.png": base.resize((251, 37)),
        "portrait.jpg": base.resize((120, 301)),
        "landscape.jpg": base.resize((401, 99)),
        "gray.png": base.convert("L"),
        "rgba.png": base.convert("RGBA"),
        "sixteen.png": Image.fromarray(np.asarray(base.convert("L")).astype(np.uint16) * 257),
    }
    sizes = {}
    for name, image in images.items():
        image.save(folder / name)
        sizes[Path(name).stem] = image.size
    rotated = base.resize((200, 100))
    exif = rotated.getexif()
    exif[0x0112] = 6
    rotated.save(folder / "exif.jpg", exif=exif)
    sizes["exif"] = (100, 200)
    return sizes


def test_masks_at_input_size_for_awkward_images(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    sizes = _odd_inputs(inputs)
    out = tmp_path / "out"
    result = infer(inputs, "--out", out)
    assert result.exit_code == 0, result.stderr
    for stem, size in sizes.items():
        assert Image.open(out / f"{stem}_mask.png").size == size, stem


def test_single_input_errors_exit_1(tmp_path):
    model = ["--out", tmp_path / "out"]
    one_line(infer(tmp_path / "missing.png", *model), "file not found")
    (tmp_path / "notes.png").write_text("not an image")
    one_line(infer(tmp_path / "notes.png", *model), "not an image")
    data = BUSI_IMAGE.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    one_line(infer(tmp_path / "cut.jpg", *model), "corrupt or truncated")
    (tmp_path / "clip.mp4").write_bytes(b"\x00" * 1000)
    one_line(infer(tmp_path / "clip.mp4", *model), "not a readable video")
    one_line(infer(BUSI_IMAGE, "--model", tmp_path / "none.onnx"), "not found")
    (tmp_path / "bad.onnx").write_text("nope")
    one_line(infer(BUSI_IMAGE, "--model", tmp_path / "bad.onnx"), "not a loadable")
    one_line(infer(BUSI_IMAGE, *model, "--provider", "warp"), "unknown execution provider")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_line(infer(BUSI_IMAGE, "--out", blocker / "sub"), "cannot create output folder")
    one_line(infer(), "give at least one INPUT")
    one_line(
        infer(BUSI_IMAGE, *model, "--threshold", "1.5"),
        "threshold must be a number strictly between 0 and 1",
    )
    assert not (tmp_path / "out").exists()  # nothing written by failed runs


def test_multi_input_skips_bad_ones_and_exits_2(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8garbage")
    out = tmp_path / "out"
    result = infer(BUSI_IMAGE, tmp_path / "broken.jpg", tmp_path / "nope.png", "--out", out)
    assert result.exit_code == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("skipped:") == 2
    assert (out / "busi__benign_110_mask.png").is_file()
    assert len(json.loads((out / "summary.json").read_text())["failed"]) == 2


def test_never_overwrites_an_input(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(BUSI_IMAGE, folder / "scan.jpg")
    decoy = folder / "scan_mask.png"
    Image.new("L", (10, 10), 7).save(decoy)
    before = decoy.read_bytes()
    result = infer(folder / "scan.jpg", decoy, "--out", folder)
    assert result.exit_code == 2 and "is an input of this run" in result.stderr
    assert decoy.read_bytes() == before
    assert (folder / "scan_mask_mask.png").is_file()  # a named input always runs, elsewhere


def test_video(tmp_path):
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 128))
    frame = cv2.resize(cv2.imread(str(KVASIR_IMAGE)), (160, 128))  # a colour video, as the model's
    for _ in range(5):
        writer.write(frame)
    writer.release()
    out = tmp_path / "out"
    result = infer(video, "--out", out)
    assert result.exit_code == 0, result.stderr
    rows = (out / "clip_frames.csv").read_text().strip().splitlines()
    assert rows[0].startswith("frame,area_px") and len(rows) == 6
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1", "2", "3", "4"]  # in order
    assert "5 frames" in result.stdout and "frames/s" in result.stdout
    for name in (
        "clip_overlay.mp4",
        "vp8/clip_overlay.webm",
    ):  # the default, and the browser format
        if name.startswith("vp8"):
            assert infer(video, "--out", out / "vp8", "--video-codec", "vp8").exit_code == 0
        capture = cv2.VideoCapture(str(out / name))  # decodes: every frame comes back
        decoded = 0
        while capture.read()[0]:
            decoded += 1
        assert decoded == 5, name
    real = run_entry(
        "infer", [video, "--out", out / "real"]
    )  # the console script, in a new process
    assert real.returncode == 0 and real.stderr == "", real.stderr  # OpenCV's codec note kept out


def test_glob_and_recursive(tmp_path):
    nested = tmp_path / "in" / "a" / "b"
    nested.mkdir(parents=True)
    shutil.copy(BUSI_IMAGE, nested / "x.jpg")
    shutil.copy(DATA / "images" / "busi__benign_219.jpg", tmp_path / "in" / "y.jpg")
    out = tmp_path / "out"
    result = infer(tmp_path / "in", "--recursive", "--out", out)
    assert result.exit_code == 0, result.stderr
    assert (out / "a" / "b" / "x_mask.png").is_file() and (out / "y_mask.png").is_file()
    result = infer(tmp_path / "in" / "*.jpg", "--out", tmp_path / "g")
    assert result.exit_code == 0 and (tmp_path / "g" / "y_mask.png").is_file()
    one_line(infer(tmp_path / "in" / "*.tif", "--out", tmp_path / "g"), "no files match")


def test_eval_error_paths(tmp_path):
    one_line(evaluate("--data", tmp_path / "none"), "images/ and masks/", "lvunet-eval")
    one_line(
        evaluate("--data", DATA, "--split-file", tmp_path / "ids.txt"),
        "split file not found",
        "lvunet-eval",
    )
    (tmp_path / "ids.txt").write_text("# test ids\nnot-an-id\n")
    one_line(
        evaluate("--data", DATA, "--split-file", tmp_path / "ids.txt"),
        "id without an image: not-an-id",
        "lvunet-eval",
    )
    data = tmp_path / "d"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    (data / "images" / "a.png").write_text("broken")
    Image.new("L", (8, 8)).save(data / "masks" / "a.png")
    one_line(evaluate("--data", data), "not an image", "lvunet-eval")


def test_eval_split_file_with_comments(tmp_path):
    ids = [p.stem for p in sorted((DATA / "images").glob("kvasir*"))][:3]
    (tmp_path / "ids.txt").write_text("# three kvasir ids\n" + "\n".join(ids) + "\n")
    result = evaluate(
        "--data", DATA, "--split-file", tmp_path / "ids.txt", "--json", tmp_path / "r.json"
    )
    assert result.exit_code == 0, result.stderr
    assert [r["id"] for r in json.loads((tmp_path / "r.json").read_text())["per_image"]] == ids


def test_threshold_and_keep_largest_options(tmp_path):
    areas = {}
    for name, extra in (
        ("low", ["--threshold", "0.05"]),
        ("high", ["--threshold", "0.95"]),
        ("largest", ["--keep-largest", "--threshold", "0.05"]),
    ):
        out = tmp_path / name
        result = infer(KVASIR_IMAGE, "--out", out, "--json", *extra)
        assert result.exit_code == 0, result.stderr
        stats = json.loads((out / f"{KVASIR_IMAGE.stem}.json").read_text())
        areas[name] = stats
        assert stats["threshold"] == float(extra[-1])
    assert areas["high"]["area_px"] < areas["low"]["area_px"]
    assert (
        areas["largest"]["regions"] == 1 and areas["largest"]["area_px"] <= areas["low"]["area_px"]
    )


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="no named pipes here")
def test_named_pipe_is_skipped_not_waited_on(tmp_path):
    import os

    os.mkfifo(tmp_path / "pipe.jpg")
    out = tmp_path / "out"
    result = infer(tmp_path / "pipe.jpg", BUSI_IMAGE, "--out", out)
    assert result.exit_code == 2 and "not a regular file" in result.stderr
    assert (out / "busi__benign_110_mask.png").is_file()


def test_list_models_names_each_bundled_model_with_its_accuracy():
    result = infer("--list-models")
    assert result.exit_code == 0
    lines = result.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["breast-ultrasound", "polyp"]
    assert all("256x256" in line and "test IoU" in line for line in lines)


def test_tta_is_a_recorded_setting(tmp_path):
    from tests.helpers import KVASIR_IMAGE

    out = tmp_path / "out"
    assert cli("infer", KVASIR_IMAGE, "--out", out).exit_code == 0
    plain = (out / f"{KVASIR_IMAGE.stem}_mask.png").read_bytes()
    refused = cli("infer", KVASIR_IMAGE, "--out", out, "--tta", "hv")
    assert refused.exit_code == 1 and "tta" in refused.stderr, refused.stderr
    assert cli("infer", KVASIR_IMAGE, "--out", out, "--tta", "hv", "--overwrite").exit_code == 0
    assert (out / f"{KVASIR_IMAGE.stem}_mask.png").read_bytes() != plain
    again = cli(
        "infer", KVASIR_IMAGE, "--out", out, "--tta", "hv"
    )  # same settings: nothing to redo
    assert again.exit_code == 0, again.stderr
    bad = cli("infer", KVASIR_IMAGE, "--out", tmp_path / "x", "--tta", "up")
    assert bad.exit_code == 1 and "tta must be one of off, h, hv" in bad.stderr


def test_a_single_image_run_says_its_area_and_regions_and_a_finished_one_says_nothing_to_do(
    tmp_path,
):
    out = tmp_path / "out"
    first = infer(KVASIR_IMAGE, "--out", out)
    lines = first.stdout.strip().splitlines()
    assert first.exit_code == 0 and len(lines) == 2, first.stdout
    stats = json.loads((out / "summary.json").read_text())["images"][0]
    assert lines[0] == (
        f"{KVASIR_IMAGE}: {stats['area_fraction']:.1%} foreground ({stats['area_px']} px), "
        f"{stats['regions']} region{'' if stats['regions'] == 1 else 's'}"
    )
    assert lines[1].startswith("1 image segmented in ")  # singular
    again = infer(KVASIR_IMAGE, "--out", out)
    assert again.stdout.startswith(
        "nothing to do: the outputs of 1 input exist (--overwrite to redo)"
    )
    both = infer(KVASIR_IMAGE, BUSI_IMAGE, "--out", tmp_path / "two", "--model", "polyp")
    assert both.stdout.startswith("2 images segmented in ") and "foreground" not in both.stdout
