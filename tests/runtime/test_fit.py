"""Inputs a new user meets: a DICOM file without the DICOM extra, a folder of files that are not images,
and the wrong-model guard (a greyscale image sent to a colour model, or the reverse), in the runtime alone."""

from __future__ import annotations

import sys

import pytest

from tests.helpers import BUSI_IMAGE, KVASIR_IMAGE, assert_one_line_error, cli


def test_a_dicom_file_without_the_extra_is_one_line_with_the_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pydicom", None)  # as on an install without [dicom]
    scan = tmp_path / "IM0001"
    scan.write_bytes(b"\0" * 128 + b"DICM" + b"\2\0\0\0UL\4\0" + b"\0" * 64)
    result = cli("infer", scan, "--out", tmp_path / "o")
    assert_one_line_error(
        result.exit_code,
        result.stderr,
        "a DICOM file; reading DICOM needs the extra",
        "lvunet-infer",
    )
    assert "pip install 'lvunet-runtime[dicom]'" in result.stderr
    folder = cli("infer", tmp_path, "--out", tmp_path / "o2")  # found in a folder by its content
    assert folder.exit_code == 1 and "needs the extra" in folder.stderr
    seg = cli("infer", KVASIR_IMAGE, "--out", tmp_path / "o3", "--dicom-seg")
    assert_one_line_error(seg.exit_code, seg.stderr, "--dicom-seg writes", "lvunet-infer")


def test_a_folder_of_other_files_names_what_it_skipped(tmp_path):
    for name in ("notes.txt", "IM0001", "report.pdf"):
        (tmp_path / name).write_bytes(b"not an image" * 20)
    result = cli("infer", tmp_path, "--out", tmp_path / "o")
    assert_one_line_error(
        result.exit_code, result.stderr, "3 other file(s) skipped, not images, videos or DICOM: IM0001, notes.txt, report.pdf",
        "lvunet-infer",
    )  # fmt: skip


@pytest.mark.parametrize(
    "image, model, words",
    [
        (BUSI_IMAGE, "polyp", "a grey image sent to a model trained on colour images"),
        (
            KVASIR_IMAGE,
            "breast-ultrasound",
            "a colour image sent to a model trained on grey images",
        ),
        (KVASIR_IMAGE, "polyp", None),
        (BUSI_IMAGE, "breast-ultrasound", None),
    ],
)
def test_an_input_that_does_not_fit_the_model_is_said_once(tmp_path, image, model, words):
    result = cli(
        "infer", image, image, "--model", model, "--out", tmp_path / "o"
    )  # twice: one line
    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "warning" in line]
    if words is None:
        assert lines == []
    else:
        assert len(lines) == 1 and words in lines[0] and "check --model" in lines[0], lines


@pytest.mark.parametrize("name", ["runs/mine/best.pt", "last.pth", "model.ckpt"])
def test_a_training_checkpoint_given_as_model_says_export_it_first(tmp_path, name):
    result = cli("infer", KVASIR_IMAGE, "--model", name, "--out", tmp_path / "o")
    assert_one_line_error(
        result.exit_code, result.stderr, f"{name} is a training checkpoint", "lvunet-infer"
    )
    assert f"lvunet-export --ckpt {name}" in result.stderr


def test_a_folder_of_sub_folders_says_add_recursive(tmp_path):
    import shutil

    for sub in ("day1", "day2/exam"):
        (tmp_path / "scans" / sub).mkdir(parents=True)
        shutil.copy(KVASIR_IMAGE, tmp_path / "scans" / sub / "a.jpg")
    result = cli("infer", tmp_path / "scans", "--out", tmp_path / "o")
    assert_one_line_error(
        result.exit_code, result.stderr, "add --recursive (2 below it)", "lvunet-infer"
    )


def test_eval_given_the_images_folder_asks_did_you_mean_the_dataset(tmp_path):
    from tests.helpers import copy_pairs

    data = copy_pairs("kvasir-seg__", tmp_path / "data")
    result = cli("eval", "--data", data / "images", "--model", "polyp")
    assert_one_line_error(result.exit_code, result.stderr, f"did you mean {data}?", "lvunet-eval")


def test_a_run_where_nothing_is_found_says_so_once_and_precision_is_undefined(tmp_path):
    import numpy as np
    from lvunet_runtime.metrics import summarize
    from PIL import Image

    folder = tmp_path / "blank"
    folder.mkdir()
    for index in range(3):
        Image.new("RGB", (120, 90), (90 + index, 40, 30)).save(folder / f"b{index}.png")
    result = cli("infer", folder, "--out", tmp_path / "o", "--threshold", "0.99")
    lines = [line for line in result.stderr.splitlines() if "no foreground" in line]
    assert result.exit_code == 0 and len(lines) == 1, result.stderr
    assert (
        "no foreground in any of the 3 images: check --model and --threshold (now 0.99)" in lines[0]
    )
    counts = np.array([[0, 0, 40, 60], [0, 0, 0, 100]])  # tp, fp, fn, tn: nothing predicted
    summary = summarize(counts)
    assert summary["precision"] is None and "precision undefined" in summary["notes"][0]
    assert summarize(np.array([[10, 5, 0, 85]]))[
        "precision"
    ] == 10 / 15 and "notes" not in summarize(np.array([[10, 5, 0, 85]]))


def test_eval_writes_a_row_per_image_and_the_worst_images_with_both_outlines(tmp_path):
    import csv
    import json

    import numpy as np
    from PIL import Image

    from tests.helpers import copy_pairs

    data = copy_pairs("busi__", tmp_path / "data")
    report, table, worst = tmp_path / "r.json", tmp_path / "r.csv", tmp_path / "worst"
    args = ["--data", data, "--model", "breast-ultrasound", "--json", report, "--csv", table]
    result = cli("eval", *args, "--save-worst", "2", worst)
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(table.open()))
    per_image = json.loads(report.read_text())["per_image"]
    assert [r["id"] for r in rows] == [r["id"] for r in per_image] and len(rows) >= 3
    assert all(
        abs(float(a["dice"]) - b["dice"]) < 1e-6 for a, b in zip(rows, per_image, strict=True)
    )
    lowest = sorted(per_image, key=lambda r: r["dice"])[:2]
    assert sorted(p.name for p in worst.iterdir()) == sorted(f"{r['id']}_worst.png" for r in lowest)
    view = np.asarray(Image.open(worst / f"{lowest[0]['id']}_worst.png").convert("RGB"))
    magenta = (view == (255, 0, 255)).all(axis=2).sum()
    assert (
        magenta > 10
    )  # the ground truth's outline drawn (the model's is green where it found any)
    again = cli("eval", *args[:4], "--save-worst", "2", worst)
    assert (
        again.exit_code == 1 and "exists" in again.stderr
    )  # never over a file without --overwrite


def test_dash_reads_one_image_from_stdin_and_writes_only_its_mask_png_to_stdout(tmp_path):
    import subprocess

    from tests.helpers import entry_code

    code = entry_code("infer", ["-"])
    piped = subprocess.run(
        [sys.executable, "-c", code],
        input=KVASIR_IMAGE.read_bytes(),
        capture_output=True,
        timeout=120,
    )
    assert piped.returncode == 0, piped.stderr
    assert cli("infer", KVASIR_IMAGE, "--out", tmp_path / "o").exit_code == 0
    assert piped.stdout == (tmp_path / "o" / f"{KVASIR_IMAGE.stem}_mask.png").read_bytes()
    grey = subprocess.run(
        [sys.executable, "-c", code],
        input=BUSI_IMAGE.read_bytes(),
        capture_output=True,
        timeout=120,
    )
    assert grey.stdout.startswith(b"\x89PNG") and b"warning" in grey.stderr  # notes on stderr only
    empty = subprocess.run(
        [sys.executable, "-c", code], input=b"", capture_output=True, timeout=120
    )
    assert empty.returncode == 1 and empty.stdout == b"" and b"stdin: empty file" in empty.stderr


def test_a_masks_folder_given_as_images_is_said_once(tmp_path):
    from tests.helpers import copy_pairs

    data = copy_pairs("kvasir-seg__", tmp_path / "data")
    result = cli("infer", data / "masks", "--out", tmp_path / "o")
    lines = [line for line in result.stderr.splitlines() if "as masks do" in line]
    assert result.exit_code == 0 and len(lines) == 1, result.stderr
    assert "is this a masks folder?" in lines[0]
    photos = cli("infer", data / "images", "--out", tmp_path / "o2")
    assert "as masks do" not in photos.stderr
