"""lvunet-infer and lvunet-eval end to end, in subprocesses where torch and onnx cannot be imported."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.conftest import DATA

BLOCKER = textwrap.dedent(
    """
    import sys

    class _Block:
        BLOCKED = ("torch", "onnx", "onnxsim", "lvunet_edge", "lvunet_export")

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.BLOCKED:
                raise ImportError(f"{name} is blocked: the runtime must not import it")
            return None

    sys.meta_path.insert(0, _Block())
    """
)


@pytest.fixture(scope="module")
def no_torch_env(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": str(site)}
    check = subprocess.run(
        [sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True
    )
    assert check.returncode != 0 and "blocked" in check.stderr
    check = subprocess.run(
        [sys.executable, "-c", "import onnx"], env=env, capture_output=True, text=True
    )
    assert check.returncode != 0
    return env


def _run(program, args, env, cwd=None):
    entry = {"infer": "infer_main", "eval": "eval_main", "bench": "bench_main"}[program]
    code = (
        f"import sys\nfrom lvunet_runtime.cli import {entry}\n"
        f"sys.argv = ['lvunet-{program}', *{[str(a) for a in args]!r}]\n{entry}()"
    )
    return subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


def _one_line(result, code, expected, program="lvunet-infer"):
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{program}: error:"), result.stderr
    assert expected in lines[0], lines[0]


def test_infer_folder_without_torch(no_torch_env, tmp_path, exported):
    out = tmp_path / "out"
    result = _run(
        "infer",
        [DATA / "images", "--model", exported[0], "--out", out, "--overlay", "--json", "--prob"],
        no_torch_env,
    )
    assert result.returncode == 0, result.stderr
    assert "16 image(s) segmented" in result.stdout
    for path in sorted((DATA / "images").iterdir()):
        image = Image.open(path)
        mask = Image.open(out / f"{path.stem}_mask.png")
        assert mask.size == image.size and mask.mode == "1"  # 1-bit PNG
        assert set(np.unique(np.asarray(mask.convert("L")))) <= {0, 255}
        as_cv2 = cv2.imread(str(out / f"{path.stem}_mask.png"), cv2.IMREAD_UNCHANGED)
        assert as_cv2.dtype == np.uint8 and set(np.unique(as_cv2)) <= {0, 255}
        assert Image.open(out / f"{path.stem}_overlay.png").size == image.size
        stats = json.loads((out / f"{path.stem}.json").read_text())
        assert stats["area_px"] == int(np.asarray(mask).sum())
        assert stats["regions"] == len(stats["region_list"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processed"] == 16 and summary["failed"] == []
    again = _run(
        "infer",
        [DATA / "images", "--model", exported[0], "--out", out, "--overlay", "--json", "--prob"],
        no_torch_env,
    )
    assert again.returncode == 0 and "16 skipped" in again.stdout


def test_eval_without_torch(no_torch_env, tmp_path, exported):
    report = tmp_path / "eval.json"
    result = _run("eval", ["--model", exported[0], "--data", DATA, "--json", report], no_torch_env)
    assert result.returncode == 0, result.stderr
    data = json.loads(report.read_text())
    assert data["images"] == 16 and 0 <= data["iou"] <= 1 and len(data["slowest"]) == 5
    assert "IoU" in result.stdout


def test_eval_bundled_polyp_on_kvasir_samples(tmp_path):
    data = tmp_path / "kvasir"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    for path in (DATA / "images").glob("kvasir-seg*"):
        shutil.copy(path, data / "images")
        shutil.copy(DATA / "masks" / f"{path.stem}.png", data / "masks")
    result = _run("eval", ["--data", data, "--json", tmp_path / "r.json"], None)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "r.json").read_text())["dice"] > 0.6


def _odd_inputs(folder: Path) -> dict[str, tuple[int, int]]:
    base = Image.open(DATA / "images" / "kvasir-seg__cju2htabevq9108015qjei0x7.jpg")
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


def test_masks_at_input_size_for_awkward_images(tmp_path, exported, no_torch_env):
    inputs = tmp_path / "in"
    inputs.mkdir()
    sizes = _odd_inputs(inputs)
    out = tmp_path / "out"
    result = _run("infer", [inputs, "--model", exported[0], "--out", out], no_torch_env)
    assert result.returncode == 0, result.stderr
    for stem, size in sizes.items():
        assert Image.open(out / f"{stem}_mask.png").size == size, stem


def test_single_input_errors_exit_1(tmp_path, exported, no_torch_env):
    env = no_torch_env
    model = ["--model", exported[0], "--out", tmp_path / "out"]
    _one_line(_run("infer", [tmp_path / "missing.png", *model], env), 1, "file not found")
    (tmp_path / "notes.png").write_text("not an image")
    _one_line(_run("infer", [tmp_path / "notes.png", *model], env), 1, "not an image")
    data = (DATA / "images" / "busi__benign_110.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    _one_line(_run("infer", [tmp_path / "cut.jpg", *model], env), 1, "corrupt or truncated")
    (tmp_path / "clip.mp4").write_bytes(b"\x00" * 1000)
    _one_line(_run("infer", [tmp_path / "clip.mp4", *model], env), 1, "not a readable video")
    image = DATA / "images" / "busi__benign_110.jpg"
    _one_line(_run("infer", [image, "--model", tmp_path / "none.onnx"], env), 1, "not found")
    (tmp_path / "bad.onnx").write_text("nope")
    _one_line(_run("infer", [image, "--model", tmp_path / "bad.onnx"], env), 1, "not a loadable")
    _one_line(_run("infer", [image, *model, "--provider", "cuda"], env), 1, "not available")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _one_line(
        _run("infer", [image, "--model", exported[0], "--out", blocker / "sub"], env),
        1,
        "cannot create output folder",
    )
    _one_line(_run("infer", [], env), 1, "give at least one INPUT")
    assert not (tmp_path / "out").exists()  # nothing written by failed runs


def test_model_without_contract(tmp_path, exported):
    import onnx

    model = onnx.load(str(exported[0]))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "bare.onnx"))
    image = DATA / "images" / "busi__benign_110.jpg"
    _one_line(
        _run("infer", [image, "--model", tmp_path / "bare.onnx", "--out", tmp_path / "o"], None),
        1,
        "metadata contract",
    )


def test_multi_input_skips_bad_ones_and_exits_2(tmp_path, exported, no_torch_env):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8garbage")
    good = DATA / "images" / "busi__benign_110.jpg"
    out = tmp_path / "out"
    result = _run(
        "infer",
        [
            good,
            tmp_path / "broken.jpg",
            tmp_path / "nope.png",
            "--model",
            exported[0],
            "--out",
            out,
        ],
        no_torch_env,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("skipped:") == 2
    assert (out / "busi__benign_110_mask.png").is_file()
    assert len(json.loads((out / "summary.json").read_text())["failed"]) == 2


def test_never_overwrites_an_input(tmp_path, exported, no_torch_env):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(DATA / "images" / "busi__benign_110.jpg", folder / "scan.jpg")
    decoy = folder / "scan_mask.png"
    Image.new("L", (10, 10), 7).save(decoy)
    before = decoy.read_bytes()
    result = _run(
        "infer", [folder / "scan.jpg", decoy, "--model", exported[0], "--out", folder], no_torch_env
    )
    assert result.returncode == 2 and "would overwrite an input" in result.stderr
    assert decoy.read_bytes() == before
    assert (folder / "scan_mask_mask.png").is_file()  # the decoy is itself segmented, elsewhere


def test_video(tmp_path, exported, no_torch_env):
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 128))
    frame = cv2.resize(cv2.imread(str(DATA / "images" / "busi__benign_110.jpg")), (160, 128))
    for _ in range(5):
        writer.write(frame)
    writer.release()
    out = tmp_path / "out"
    result = _run("infer", [video, "--model", exported[0], "--out", out], no_torch_env)
    assert result.returncode == 0, result.stderr
    rows = (out / "clip_frames.csv").read_text().strip().splitlines()
    assert rows[0].startswith("frame,area_px") and len(rows) == 6
    capture = cv2.VideoCapture(str(out / "clip_overlay.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 5


def test_glob_and_recursive(tmp_path, exported):
    nested = tmp_path / "in" / "a" / "b"
    nested.mkdir(parents=True)
    shutil.copy(DATA / "images" / "busi__benign_110.jpg", nested / "x.jpg")
    shutil.copy(DATA / "images" / "busi__benign_219.jpg", tmp_path / "in" / "y.jpg")
    out = tmp_path / "out"
    result = _run(
        "infer", [tmp_path / "in", "--recursive", "--model", exported[0], "--out", out], None
    )
    assert result.returncode == 0, result.stderr
    assert (out / "a" / "b" / "x_mask.png").is_file() and (out / "y_mask.png").is_file()
    result = _run(
        "infer",
        [str(tmp_path / "in" / "*.jpg"), "--model", exported[0], "--out", tmp_path / "g"],
        None,
    )
    assert result.returncode == 0 and (tmp_path / "g" / "y_mask.png").is_file()
    result = _run(
        "infer",
        [str(tmp_path / "in" / "*.tif"), "--model", exported[0], "--out", tmp_path / "g"],
        None,
    )
    _one_line(result, 1, "no files match")


def test_eval_error_paths(tmp_path, exported):
    model = ["--model", exported[0]]
    _one_line(
        _run("eval", [*model, "--data", tmp_path / "none"], None),
        1,
        "images/ and masks/",
        "lvunet-eval",
    )
    _one_line(
        _run("eval", [*model, "--data", DATA, "--split-file", tmp_path / "ids.txt"], None),
        1,
        "split file not found",
        "lvunet-eval",
    )
    (tmp_path / "ids.txt").write_text("not-an-id\n")
    _one_line(
        _run("eval", [*model, "--data", DATA, "--split-file", tmp_path / "ids.txt"], None),
        1,
        "without an image and mask",
        "lvunet-eval",
    )
    data = tmp_path / "d"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    (data / "images" / "a.png").write_text("broken")
    Image.new("L", (8, 8)).save(data / "masks" / "a.png")
    _one_line(_run("eval", [*model, "--data", data], None), 1, "not an image", "lvunet-eval")


def test_threshold_and_keep_largest_options(tmp_path):
    image = DATA / "images" / "kvasir-seg__cju2htabevq9108015qjei0x7.jpg"
    areas = {}
    for name, extra in (
        ("low", ["--threshold", "0.05"]),
        ("high", ["--threshold", "0.95"]),
        ("largest", ["--keep-largest", "--threshold", "0.05"]),
    ):
        out = tmp_path / name
        result = _run("infer", [image, "--out", out, "--json", *extra], None)
        assert result.returncode == 0, result.stderr
        stats = json.loads((out / f"{image.stem}.json").read_text())
        areas[name] = stats
        assert stats["threshold"] == float(extra[-1])
    assert areas["high"]["area_px"] < areas["low"]["area_px"]
    assert (
        areas["largest"]["regions"] == 1 and areas["largest"]["area_px"] <= areas["low"]["area_px"]
    )
    result = _run("infer", [image, "--out", tmp_path / "x", "--threshold", "1.5"], None)
    _one_line(result, 1, "threshold must be between 0 and 1")
