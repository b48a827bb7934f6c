"""The bad-input corpus: every case through the real entry wrapper (in process), asserting the exit code,
a message without traceback, and that every file that existed before the run is byte-identical after it.

Cases are made at test time from the sample images, the bundled models and hand-edited copies. Classes:
U (user files never overwritten), S (own outputs never taken as inputs), H (no hang), M (models checked
before any image), F (faults and exit codes), O (options validated before work), P (earlier handled
inputs), X (export), T (training).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from dataclasses import dataclass, fields
from pathlib import Path

import cv2
import pytest
import torch
from lvunet_runtime.contract import ModelContract
from PIL import Image

from tests.helpers import (
    BUSI_IMAGE,
    DATA,
    RawJSON,
    assert_one_line_error,
    checksums,
    cli,
    copy_pairs,
    edit_metadata,
    nan_weights_model,
)

CONTRACT_FIELDS = [f.name for f in fields(ModelContract)]
POLYP = Path(__file__).resolve().parents[1] / "runtime" / "lvunet_runtime" / "models" / "polyp.onnx"


@dataclass
class Case:
    name: str
    program: str
    code: int
    expected: str
    setup: object  # (tmp, fixtures) -> list of arguments


def _image(tmp, name="scan.jpg"):
    shutil.copy(BUSI_IMAGE, tmp / name)
    return tmp / name


def _model(tmp, **changes):
    return edit_metadata(POLYP, tmp / "edited.onnx", **changes)


def _video(path, frames=3):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 64))
    frame = cv2.resize(cv2.imread(str(BUSI_IMAGE)), (96, 64))
    for _ in range(frames):
        writer.write(frame)
    writer.release()
    return path


def _nan_model(tmp):
    return nan_weights_model(POLYP, tmp / "nan.onnx")


def _user_json(tmp):
    (tmp / "out").mkdir()
    (tmp / "out" / "scan.json").write_text('{"mine": true}\n')
    return [_image(tmp), "--out", tmp / "out", "--json"]


def _rerun_other_threshold(tmp):
    assert cli("infer", _image(tmp), "--out", tmp / "out").exit_code == 0
    return [tmp / "scan.jpg", "--out", tmp / "out", "--threshold", "0.3"]


def _foreign_summary(tmp):
    (tmp / "out").mkdir()
    (tmp / "out" / "summary.json").write_text('{"my": "notes"}\n')
    return [_image(tmp), "--out", tmp / "out"]


def _twice_into_itself(tmp):
    (tmp / "in").mkdir()
    _image(tmp / "in")
    assert cli("infer", tmp / "in", "--out", tmp / "in").exit_code == 0
    return [tmp / "in", "--out", tmp / "in"]


def _recursive_twice(tmp):
    (tmp / "in" / "sub").mkdir(parents=True)
    _image(tmp / "in" / "sub")
    assert (
        cli("infer", tmp / "in", "--recursive", "--out", tmp / "in" / "lvunet-output").exit_code
        == 0
    )
    return [tmp / "in", "--recursive", "--out", tmp / "in" / "lvunet-output"]


def _fifo_and_image(tmp):
    os.mkfifo(tmp / "pipe.jpg")
    return [tmp / "pipe.jpg", _image(tmp), "--out", tmp / "out"]


def _two_clips(tmp):
    for sub in ("a", "b"):
        (tmp / "in" / sub).mkdir(parents=True)
        _video(tmp / "in" / sub / "clip.mp4")
    return [tmp / "in", "--recursive", "--out", tmp / "out"]


def _same_names(tmp):
    for sub in ("a", "b"):
        (tmp / sub).mkdir()
        _image(tmp / sub, "x.jpg")
    return [tmp / "a" / "x.jpg", tmp / "b" / "x.jpg", "--out", tmp / "out"]


def _jpg_and_png(tmp):
    (tmp / "in").mkdir()
    _image(tmp / "in", "x.jpg")
    Image.open(BUSI_IMAGE).save(tmp / "in" / "x.png")
    return [tmp / "in", "--out", tmp / "out"]


def _overlay_named_input(tmp):
    _video(tmp / "clip.mp4")
    _video(tmp / "clip_overlay.mp4", 2)
    return [tmp / "clip.mp4", tmp / "clip_overlay.mp4", "--out", tmp]


def _long_name(tmp):
    return [_image(tmp, "n" * 246 + ".jpg"), "--out", tmp / "out"]


def _huge(tmp):
    Image.new("1", (12000, 12000)).save(tmp / "big.png")
    return [tmp / "big.png", "--out", tmp / "out"]


def _mismatch_pair(tmp):
    data = copy_pairs("busi__benign", tmp / "data")
    Image.new("L", (5, 5)).save(data / "masks" / "busi__benign_110.png")
    return ["--data", data, "--json", tmp / "report" / "r.json"]


def _resume_best_copy(tmp, fx):
    run = tmp / "run"
    shutil.copytree(fx["run"], run)
    shutil.copy(run / "best.pt", run / "last.pt")
    return ["--resume", run]


def _resume_deleted_image(tmp, fx):
    data = tmp / "data"
    shutil.copytree(DATA, data)
    run = tmp / "run"
    shutil.copytree(fx["run"], run)
    payload = torch.load(run / "last.pt", weights_only=True)
    payload["train_config"]["data"] = str(data)
    torch.save(payload, run / "last.pt")
    victim = sorted((data / "images").iterdir())[0]
    victim.unlink()
    (data / "masks" / f"{victim.stem}.png").unlink()
    return ["--resume", run]


def _checkpoint_edit(tmp, fx, edit, name="edited.pt"):
    payload = torch.load(fx["ckpt"], weights_only=True)
    edit(payload)
    torch.save(payload, tmp / name)
    return tmp / name


def _half_slope(tmp, fx):
    def edit(p):
        p["slope"] = 0.5
        for k, v in p["state_dict"].items():
            if k.endswith("slope"):
                v.fill_(0.5)

    return ["--ckpt", _checkpoint_edit(tmp, fx, edit), "--out", tmp / "m.onnx"]


def _nan_checkpoint(tmp, fx):
    def edit(p):
        next(v for v in p["state_dict"].values() if v.is_floating_point()).fill_(float("nan"))

    return ["--ckpt", _checkpoint_edit(tmp, fx, edit), "--out", tmp / "m.onnx"]


def _out_is_ckpt(tmp, fx):
    shutil.copy(fx["ckpt"], tmp / "best.pt")
    return ["--ckpt", tmp / "best.pt", "--out", tmp / "best.pt", "--overwrite"]


INFER = "infer"
CASES = [
    # P: inputs handled since the first round (kept)
    Case("P missing file", INFER, 1, "file not found", lambda t, f: [t / "none.png"]),
    Case(
        "P text as png",
        INFER,
        1,
        "not an image",
        lambda t, f: [(t / "a.png").write_text("x") and t / "a.png"],
    ),
    Case(
        "P truncated jpeg",
        INFER,
        1,
        "corrupt or truncated",
        lambda t, f: [(t / "c.jpg").write_bytes(BUSI_IMAGE.read_bytes()[:3000]) and t / "c.jpg"],
    ),
    Case(
        "P empty file",
        INFER,
        1,
        "not an image",
        lambda t, f: [(t / "e.jpg").touch() or t / "e.jpg"],
    ),
    Case("P empty folder", INFER, 1, "no new images", lambda t, f: [(t / "d").mkdir() or t / "d"]),
    Case("P glob matches nothing", INFER, 1, "no files match", lambda t, f: [str(t / "*.tif")]),
    Case("P no input", INFER, 1, "give at least one INPUT", lambda t, f: []),
    Case(
        "P model missing", INFER, 1, "not found", lambda t, f: [_image(t), "--model", t / "m.onnx"]
    ),
    Case(
        "P model not onnx",
        INFER,
        1,
        "not a loadable",
        lambda t, f: [_image(t), "--model", (t / "m.onnx").write_text("x") and t / "m.onnx"],
    ),
    Case(
        "P unknown provider",
        INFER,
        1,
        "unknown execution provider 'warp'; known: cpu, cuda",
        lambda t, f: [_image(t), "--provider", "warp"],
    ),
    Case(
        "P unreadable video",
        INFER,
        1,
        "not a readable video",
        lambda t, f: [(t / "v.mp4").write_bytes(b"\0" * 500) and t / "v.mp4"],
    ),
    Case(
        "P out under a file",
        INFER,
        1,
        "cannot create output folder",
        lambda t, f: [_image(t), "--out", (t / "f").write_text("x") and t / "f" / "sub"],
    ),
    Case("P huge image", INFER, 1, "megapixels", lambda t, f: _huge(t)),
    Case("P no camera", INFER, 1, "could not be opened", lambda t, f: ["--camera", "57"]),
    # M: a model file is checked before any image
    Case(
        "M no metadata",
        INFER,
        1,
        "lacks the LV-UNet metadata contract",
        lambda t, f: [_image(t), "--model", _model(t, **{k: None for k in CONTRACT_FIELDS})],
    ),
    Case(
        "M size 100000",
        INFER,
        1,
        "up to 4096",
        lambda t, f: [_image(t), "--model", _model(t, input_height=100000)],
    ),
    Case(
        "M size 0",
        INFER,
        1,
        "positive multiple of 128",
        lambda t, f: [_image(t), "--model", _model(t, input_width=0)],
    ),
    Case(
        "M std zero",
        INFER,
        1,
        "std must be positive",
        lambda t, f: [_image(t), "--model", _model(t, std=[0, 0, 0])],
    ),
    Case(
        "M mean of 2",
        INFER,
        1,
        "mean must be three numbers",
        lambda t, f: [_image(t), "--model", _model(t, mean=[0.4, 0.4])],
    ),
    Case(
        "M graph size differs",
        INFER,
        1,
        "does not match the metadata",
        lambda t, f: [_image(t), "--model", _model(t, input_height=384, input_width=384)],
    ),
    Case(
        "M output name missing",
        INFER,
        1,
        "metadata names output",
        lambda t, f: [_image(t), "--model", _model(t, output_name="mask")],
    ),
    Case(
        "M unknown interpolation",
        INFER,
        1,
        "resize_interpolation must be one of",
        lambda t, f: [_image(t), "--model", _model(t, resize_interpolation="lanczos9")],
    ),
    Case(
        "M string number",
        INFER,
        1,
        "threshold must be a number",
        lambda t, f: [_image(t), "--model", _model(t, threshold=RawJSON('"0.5"'))],
    ),
    Case(
        "M malformed JSON",
        INFER,
        1,
        "is not JSON",
        lambda t, f: [_image(t), "--model", _model(t, mean=RawJSON("[0.4"))],
    ),
    Case(
        "M non-finite output",
        INFER,
        1,
        "non-finite output",
        lambda t, f: [_image(t), "--model", _nan_model(t)],
    ),
    # O: options validated before work
    Case(
        "O threshold 1.5",
        INFER,
        1,
        "threshold must be a number strictly between 0 and 1",
        lambda t, f: [_image(t), "--threshold", "1.5"],
    ),
    Case(
        "O threshold 0",
        INFER,
        1,
        "threshold must be a number strictly between 0 and 1",
        lambda t, f: [_image(t), "--threshold", "0"],
    ),
    Case(
        "O batch size 0",
        INFER,
        1,
        "Invalid value for '--batch-size'",
        lambda t, f: [_image(t), "--batch-size", "0"],
    ),
    Case(
        "O threads 0",
        INFER,
        1,
        "Invalid value for '--threads'",
        lambda t, f: [_image(t), "--threads", "0"],
    ),
    Case(
        "O max pixels 0",
        INFER,
        1,
        "Invalid value for '--max-pixels'",
        lambda t, f: [_image(t), "--max-pixels", "0"],
    ),
    Case(
        "O unknown option", INFER, 1, "No such option", lambda t, f: [_image(t), "--colour", "red"]
    ),
    # U: user files are never overwritten
    Case(
        "U user's json in --out",
        INFER,
        1,
        "scan.json exists; pass --overwrite",
        lambda t, f: _user_json(t),
    ),
    Case(
        "U rerun with another threshold",
        INFER,
        1,
        "another threshold",
        lambda t, f: _rerun_other_threshold(t),
    ),
    Case(
        "U foreign summary.json",
        INFER,
        1,
        "not an lvunet-infer run record",
        lambda t, f: _foreign_summary(t),
    ),
    Case(
        "U same name from two folders",
        INFER,
        1,
        "would write the same output names",
        lambda t, f: _same_names(t),
    ),
    Case(
        "U input named like an overlay",
        INFER,
        2,
        "is an input of this run",
        lambda t, f: _overlay_named_input(t),
    ),
    # S: the tool never segments its own outputs; inputs once
    Case(
        "S --out into the input folder, twice",
        INFER,
        0,
        "nothing to do: the outputs of 1 input exist",
        lambda t, f: _twice_into_itself(t),
    ),
    Case(
        "S --recursive twice",
        INFER,
        0,
        "nothing to do: the outputs of 1 input exist",
        lambda t, f: _recursive_twice(t),
    ),
    Case(
        "S same input twice",
        INFER,
        0,
        "1 image segmented",
        lambda t, f: [_image(t), t / "scan.jpg", "--out", t / "o"],
    ),
    Case("S x.jpg and x.png", INFER, 0, "2 images segmented", lambda t, f: _jpg_and_png(t)),
    Case("S two clips under --recursive", INFER, 0, "2 videos", lambda t, f: _two_clips(t)),
    Case("S 250-character name", INFER, 0, "1 image segmented", lambda t, f: _long_name(t)),
    # H: no hang
    Case(
        "H named pipe with an image",
        INFER,
        2,
        "not a regular file",
        lambda t, f: _fifo_and_image(t),
    ),
    # eval
    Case(
        "P eval data missing", "eval", 1, "images/ and masks/", lambda t, f: ["--data", t / "none"]
    ),
    Case(
        "P eval split file missing",
        "eval",
        1,
        "split file not found",
        lambda t, f: ["--data", DATA, "--split-file", t / "ids.txt"],
    ),
    Case(
        "P eval unknown id",
        "eval",
        1,
        "id without an image",
        lambda t, f: [
            "--data",
            DATA,
            "--split-file",
            (t / "i.txt").write_text("zz\n") and t / "i.txt",
        ],
    ),
    Case(
        "F eval size mismatch skipped",
        "eval",
        2,
        "differs from image",
        lambda t, f: _mismatch_pair(t),
    ),
    Case(
        "U eval --json exists",
        "eval",
        1,
        "exists; pass --overwrite",
        lambda t, f: ["--data", DATA, "--json", (t / "r.json").write_text("{}") and t / "r.json"],
    ),
    Case(
        "O eval --json under a file",
        "eval",
        1,
        "is not a folder",
        lambda t, f: ["--data", DATA, "--json", (t / "f").write_text("x") and t / "f" / "r.json"],
    ),
    Case(
        "O eval threads 0",
        "eval",
        1,
        "Invalid value for '--threads'",
        lambda t, f: ["--data", DATA, "--threads", "0"],
    ),
    Case(
        "P eval nothing scorable",
        "eval",
        1,
        "no pair could be scored",
        lambda t, f: [
            "--data",
            (
                lambda d: (
                    [
                        (d / "images").mkdir(parents=True),
                        (d / "masks").mkdir(),
                        (d / "images" / "a.png").write_text("x"),
                        Image.new("L", (4, 4)).save(d / "masks" / "a.png"),
                    ]
                    and d
                )
            )(t / "d"),
        ],
    ),
    # bench
    Case("O bench threads", "bench", 1, "integers", lambda t, f: ["--threads", "two"]),
    Case("O bench image size", "bench", 1, "takes 256x256", lambda t, f: ["--image-size", "512"]),
    Case("O bench model missing", "bench", 1, "not found", lambda t, f: ["--model", t / "m.onnx"]),
    Case("O bench runs 0", "bench", 1, "Invalid value for '--runs'", lambda t, f: ["--runs", "0"]),
    Case("O bench batch 0", "bench", 1, "positive integers", lambda t, f: ["--batch-sizes", "0"]),
    Case(
        "U bench --json exists",
        "bench",
        1,
        "exists; pass --overwrite",
        lambda t, f: ["--json", (t / "b.json").write_text("{}") and t / "b.json"],
    ),
    Case(
        "O bench --markdown under a file",
        "bench",
        1,
        "is not a folder",
        lambda t, f: ["--markdown", (t / "f").write_text("x") and t / "f" / "b.md"],
    ),
    Case(
        "O bench end-to-end folder",
        "bench",
        1,
        "--end-to-end folder not found",
        lambda t, f: ["--end-to-end", t / "no"],
    ),
    # T: training
    Case(
        "T data missing",
        "train",
        1,
        "images/ and masks/",
        lambda t, f: ["--data", t / "none", "--out", t / "r"],
    ),
    Case(
        "T batch size 0",
        "train",
        1,
        "batch-size must be at least 1",
        lambda t, f: ["--data", DATA, "--out", t / "r", "--batch-size", "0"],
    ),
    Case(
        "T image size 0",
        "train",
        1,
        "positive multiple of 128",
        lambda t, f: ["--data", DATA, "--out", t / "r", "--image-size", "0"],
    ),
    Case(
        "T image size -128",
        "train",
        1,
        "positive multiple of 128",
        lambda t, f: ["--data", DATA, "--out", t / "r", "--image-size", "-128"],
    ),
    Case(
        "T image size 100",
        "train",
        1,
        "multiple of 128",
        lambda t, f: ["--data", DATA, "--out", t / "r", "--image-size", "100"],
    ),
    Case(
        "T lr -1",
        "train",
        1,
        "lr must be positive",
        lambda t, f: ["--data", DATA, "--out", t / "r", "--lr", "-1"],
    ),
    Case(
        "T batch 1 at 128",
        "train",
        1,
        "use --batch-size 2 or more",
        lambda t, f: ["--data", DATA, "--out", t / "r", "--image-size", "128", "--batch-size", "1"],
    ),
    Case(
        "T deep epochs too many",
        "train",
        1,
        "deep_epochs must be",
        lambda t, f: ["--data", DATA, "--out", t / "r", "--epochs", "3", "--deep-epochs", "3"],
    ),
    Case(
        "T out is a file",
        "train",
        1,
        "is a file, not a folder",
        lambda t, f: ["--data", DATA, "--out", (t / "f").write_text("x") and t / "f"],
    ),
    Case(
        "U out holds a run",
        "train",
        1,
        "already holds a run",
        lambda t, f: [
            "--data",
            DATA,
            "--out",
            (t / "r").mkdir() or (t / "r" / "last.pt").write_text("x") and t / "r",
        ],
    ),
    Case(
        "U out holds user files",
        "train",
        1,
        "already holds split.json",
        lambda t, f: [
            "--data",
            DATA,
            "--out",
            (t / "r").mkdir() or (t / "r" / "split.json").write_text("x") and t / "r",
        ],
    ),
    Case(
        "T split ids unknown",
        "train",
        1,
        "not in the data",
        lambda t, f: [
            "--data",
            DATA,
            "--out",
            t / "r",
            "--split-file",
            (t / "s.txt").write_text("zz\n") and t / "s.txt",
        ],
    ),
    Case(
        "T resume nothing",
        "train",
        1,
        "holds no run to resume",
        lambda t, f: ["--resume", t / "none"],
    ),
    Case(
        "T resume a copy of best.pt",
        "train",
        1,
        "not a resumable training state",
        _resume_best_copy,
    ),
    Case(
        "T resume after an image was deleted",
        "train",
        1,
        "no longer matches the run being resumed",
        _resume_deleted_image,
    ),
    # X: export
    Case(
        "X checkpoint missing",
        "export",
        1,
        "not found",
        lambda t, f: ["--ckpt", t / "no.pt", "--out", t / "m.onnx"],
    ),
    Case(
        "X checkpoint truncated",
        "export",
        1,
        "not a readable",
        lambda t, f: [
            "--ckpt",
            (t / "c.pt").write_bytes(f["ckpt"].read_bytes()[:4000]) and t / "c.pt",
            "--out",
            t / "m.onnx",
        ],
    ),
    Case(
        "X not a checkpoint",
        "export",
        1,
        "not an LV-UNet checkpoint",
        lambda t, f: [
            "--ckpt",
            torch.save({"w": torch.zeros(1)}, t / "o.pt") or t / "o.pt",
            "--out",
            t / "m.onnx",
        ],
    ),
    Case("X slope 0.5", "export", 1, "slope is 0.5, not 1.0", _half_slope),
    Case("X NaN weights", "export", 1, "non-finite weights", _nan_checkpoint),
    Case(
        "U X out exists",
        "export",
        1,
        "pass --overwrite",
        lambda t, f: [
            "--ckpt",
            f["ckpt"],
            "--out",
            (t / "m.onnx").write_text("mine") and t / "m.onnx",
        ],
    ),
    Case("U X out is the checkpoint", "export", 1, "is the checkpoint itself", _out_is_ckpt),
    Case(
        "X out is a folder",
        "export",
        1,
        "is a folder",
        lambda t, f: ["--ckpt", f["ckpt"], "--out", t],
    ),
    Case(
        "X out folder missing",
        "export",
        1,
        "missing or not writable",
        lambda t, f: ["--ckpt", f["ckpt"], "--out", t / "no" / "m.onnx"],
    ),
    Case(
        "X precision fp8",
        "export",
        1,
        "precision must be",
        lambda t, f: ["--ckpt", f["ckpt"], "--out", t / "m.onnx", "--precision", "fp8"],
    ),
    Case(
        "X int8 without calib",
        "export",
        1,
        "needs --calib",
        lambda t, f: ["--ckpt", f["ckpt"], "--out", t / "m.onnx", "--precision", "int8"],
    ),
    Case(
        "X image size 100",
        "export",
        1,
        "positive multiple of 128",
        lambda t, f: ["--ckpt", f["ckpt"], "--out", t / "m.onnx", "--image-size", "100"],
    ),
    Case(
        "X bad verify images",
        "export",
        1,
        "verification image unusable",
        lambda t, f: [
            "--ckpt",
            f["ckpt"],
            "--out",
            t / "m.onnx",
            "--verify-images",
            (lambda d: d.mkdir() or (d / "a.jpg").write_text("x") and d)(t / "v"),
        ],
    ),
]


@pytest.fixture(scope="module")
def fixtures(random_checkpoint, trained_run):
    return {"ckpt": random_checkpoint, "run": trained_run[0]}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case, tmp_path, fixtures):
    if case.name.startswith("H") and not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes on this OS")
    work = tmp_path / "work"
    work.mkdir()
    args = case.setup(work, fixtures)
    before = checksums(work)
    result = cli(case.program, *args)
    stderr, program = result.stderr, f"lvunet-{case.program}"
    assert result.exit_code == case.code, (result.stdout, stderr)
    assert "Traceback" not in stderr + result.stdout
    if case.code == 1:
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"{program}: error:"), stderr
    assert case.expected in (stderr if case.code else result.stdout), (result.stdout, stderr)
    after = checksums(work)
    changed = [name for name, digest in before.items() if after.get(name) != digest]
    assert not changed, f"pre-existing files changed or lost: {changed}"


def test_corpus_size_and_classes():
    assert len(CASES) >= 60
    assert {c.name.split()[0] for c in CASES} >= {"P", "M", "O", "U", "S", "H", "F", "T", "X"}
    assert {c.program for c in CASES} == {"infer", "eval", "bench", "train", "export"}


def test_outputs_of_awkward_runs_are_where_they_should_be(tmp_path):
    """The 'S' cases' outputs: mirrored, distinct, not nested, each input once."""
    for name in ("clips", "pair", "nested"):
        (tmp_path / name).mkdir()
    cli("infer", *_two_clips(tmp_path / "clips"))
    assert (tmp_path / "clips" / "out" / "a" / "clip_overlay.mp4").is_file()
    assert (tmp_path / "clips" / "out" / "b" / "clip_overlay.mp4").is_file()
    cli("infer", *_jpg_and_png(tmp_path / "pair"))
    assert {p.name for p in (tmp_path / "pair" / "out").glob("x_*_mask.png")} == {
        "x_jpg_mask.png",
        "x_png_mask.png",
    }
    cli("infer", *_recursive_twice(tmp_path / "nested"))
    assert not (tmp_path / "nested" / "in" / "lvunet-output" / "lvunet-output").exists()
    assert not list((tmp_path / "nested" / "in").rglob("*_mask_mask.png"))


def _fail_after(count: int, error: int):
    """A write_atomic that fails with ``error`` once ``count`` masks were written (summary still works)."""
    from lvunet_runtime import writer

    real, calls = writer.write_atomic, []

    def write(path, data):
        if path.name.endswith("_mask.png"):
            calls.append(path)
            if len(calls) > count:
                raise OSError(error, os.strerror(error), str(path))
        return real(path, data)

    return write


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EACCES])
def test_fault_mid_run_stops_keeps_what_was_written_and_exits_2(tmp_path, monkeypatch, error):
    from lvunet_runtime import writer

    folder = copy_pairs("busi", tmp_path / "data") / "images"
    monkeypatch.setattr(writer, "write_atomic", _fail_after(3, error))
    result = cli("infer", folder, "--out", tmp_path / "out", "--batch-size", "1")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert f"stopped: {os.strerror(error)}" in result.stderr and "not done" in result.stderr
    masks = sorted((tmp_path / "out").glob("*_mask.png"))
    assert len(masks) == 3 and all(Image.open(m).size for m in masks)  # complete files
    assert not list((tmp_path / "out").glob(".lvunet-*"))  # no temporary left
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["processed"] == 3 and summary["not_done"] + summary["processed"] == 8
    assert summary["stopped"].startswith(os.strerror(error))
    monkeypatch.undo()
    again = cli("infer", folder, "--out", tmp_path / "out")  # a rerun does the rest
    assert (
        again.exit_code == 0
        and "5 images segmented" in again.stdout
        and "3 skipped" in again.stdout
    )


def test_internal_error_exit_3_with_log(tmp_path, monkeypatch):
    import tempfile

    import lvunet_runtime.infer as infer_module

    def broken(*args, **kwargs):
        raise ZeroDivisionError("an unexpected bug")

    monkeypatch.setattr(infer_module, "collect_inputs", broken)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = cli("infer", BUSI_IMAGE, "--out", tmp_path / "out")
    assert result.exit_code == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "internal error: ZeroDivisionError: an unexpected bug" in lines[0]
    log = Path(lines[0].split("traceback in ")[1].split(";")[0])
    assert log.is_relative_to(tmp_path / "lvunet-logs") and "Traceback" in log.read_text()
    assert not (tmp_path / "out").exists()
    debug = cli("infer", BUSI_IMAGE, "--out", tmp_path / "out", "--debug")
    assert (
        debug.exit_code == 3 and "Traceback" in debug.stderr and "ZeroDivisionError" in debug.stderr
    )


def test_overwrite_redoes_and_never_touches_inputs(tmp_path):
    image = _image(tmp_path)
    out = tmp_path / "out"
    assert cli("infer", image, "--out", out, "--threshold", "0.9").exit_code == 0
    small = (out / "scan_mask.png").read_bytes()
    result = cli("infer", image, "--out", out, "--threshold", "0.05", "--overwrite")
    assert result.exit_code == 0 and (out / "scan_mask.png").read_bytes() != small
    before = image.read_bytes()
    assert cli("infer", image, "--out", tmp_path, "--overwrite", "--json").exit_code == 0
    assert image.read_bytes() == before
    data = json.loads((out / "summary.json").read_text())
    assert data["settings"]["threshold"] == 0.05 and "scan_mask.png" in data["outputs"]


def test_adding_json_to_a_rerun_keeps_the_masks(tmp_path):
    image = _image(tmp_path)
    out = tmp_path / "out"
    assert cli("infer", image, "--out", out).exit_code == 0
    stamp = os.stat(out / "scan_mask.png").st_mtime_ns
    result = cli("infer", image, "--out", out, "--json")
    assert result.exit_code == 0 and (out / "scan.json").is_file()
    assert os.stat(out / "scan_mask.png").st_mtime_ns == stamp  # kept, not rewritten


@pytest.mark.parametrize(
    "error",
    [errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EIO],
    ids=["disk full", "permission lost", "file system turned read-only", "I/O error"],
)
def test_training_fault_exits_2_and_says_how_to_continue(tmp_path, monkeypatch, error):
    import lvunet_edge.train as train_module

    def failing(path, *args, **kwargs):
        raise OSError(error, os.strerror(error), str(path))

    monkeypatch.setattr(train_module, "save_checkpoint", failing)
    args = ["--data", DATA, "--out", tmp_path / "r", "--image-size", "128", "--epochs", "1"]
    result = cli("train", *args, "--batch-size", "4", "--no-progress")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert os.strerror(error) in line and "--resume" in line


def test_training_interrupted_says_how_to_continue_and_the_resume_finishes(tmp_path, monkeypatch):
    import lvunet_edge.train as train_module

    real, calls = train_module.train_epoch, [0]

    def interrupted(run, epoch, progress):
        calls[0] += 1
        if calls[0] == 2:
            raise KeyboardInterrupt
        return real(run, epoch, progress)

    monkeypatch.setattr(train_module, "train_epoch", interrupted)
    out = tmp_path / "r"
    args = [
        "--data",
        DATA,
        "--out",
        out,
        "--image-size",
        "128",
        "--epochs",
        "3",
        "--batch-size",
        "4",
    ]
    result = cli("train", *args, "--no-progress")
    assert result.exit_code == 130, result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith(f"continue with --resume {out}")
    monkeypatch.undo()
    resumed = cli("train", "--resume", out, "--no-progress")
    assert resumed.exit_code == 0, resumed.stderr
    assert [json.loads(line)["epoch"] for line in (out / "log.jsonl").read_text().splitlines()] == [
        0,
        1,
        2,
    ]


@pytest.mark.parametrize("program", ["infer", "eval", "bench", "train", "export"])
def test_every_help_documents_the_exit_codes(program):
    result = cli(program, "--help")
    assert result.exit_code == 0 and "Exit codes: 0 done; 1 refused" in " ".join(
        result.stdout.split()
    )


@pytest.mark.parametrize("program", ["infer", "eval", "bench", "train", "export"])
def test_every_command_has_a_version(program):
    import lvunet_runtime

    result = cli(program, "--version")
    assert result.exit_code == 0 and result.stdout.startswith(
        f"lvunet-{program} {lvunet_runtime.__version__}"
    )


def test_training_help_and_version_do_not_import_torch(tmp_path):
    from tests.helpers import no_torch_env, run_entry

    env = no_torch_env(tmp_path, blocked=("torch", "onnx", "onnxsim"))
    for flag in ("--help", "--version"):
        result = run_entry("train", [flag], env)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize("free_mb", [1, 10_000])
def test_a_checkpoint_that_cannot_be_written_stops_with_exit_2_and_the_previous_one_kept(
    tmp_path, monkeypatch, free_mb
):
    """torch.save reports a failed write (a full disk) as RuntimeError: exit 2 with how to continue,
    never exit 3; the last.pt of the epoch before stays loadable and resumable."""
    import shutil as shutil_module

    import torch

    from lvunet_edge.checkpoint import read_checkpoint

    real, calls = torch.save, []

    def failing_save(obj, handle, *args, **kwargs):
        calls.append(1)
        if len(calls) > 2:  # epoch 1's best.pt and last.pt are written; epoch 2's fail
            handle.write(b"half a checkpoint")
            raise RuntimeError(
                "[enforce fail at inline_container.cc:783] . PytorchStreamWriter failed writing file data/12: file write failed"
            )
        return real(obj, handle, *args, **kwargs)

    usage = shutil_module.disk_usage(tmp_path)
    monkeypatch.setattr(torch, "save", failing_save)
    monkeypatch.setattr(shutil_module, "disk_usage", lambda p: usage._replace(free=free_mb << 20))
    run = tmp_path / "r"
    args = [
        "--data",
        DATA,
        "--out",
        run,
        "--image-size",
        "128",
        "--epochs",
        "3",
        "--deep-epochs",
        "1",
    ]
    result = cli("train", *args, "--batch-size", "4", "--no-progress")
    assert result.exit_code == 2 and "Traceback" not in result.stderr, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert f"--resume {run}" in line
    assert ("No space left on device" if free_mb == 1 else "could not write the checkpoint") in line
    assert read_checkpoint(run / "last.pt")["epoch"] == 0  # the previous one, whole
    assert not list(run.glob(".lvunet-*"))  # the half-written temporary is gone
    monkeypatch.undo()
    resumed = cli("train", "--resume", run, "--no-progress")
    assert resumed.exit_code == 0, resumed.stderr


@pytest.mark.parametrize("content", [None, "notes.txt", "sub/"])
def test_bench_end_to_end_without_images_is_refused(tmp_path, content):
    folder = tmp_path / "empty"
    folder.mkdir()
    if content == "notes.txt":
        (folder / content).write_text("not an image")
    elif content == "sub/":
        (folder / "sub").mkdir()
    result = cli("bench", "--end-to-end", folder, "--runs", "1", "--warmup", "0")
    assert_one_line_error(result.exit_code, result.stderr, "holds no images", "lvunet-bench")


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ("opset", "the model needs opset 40; this onnxruntime"),
        ("ir", "the model needs ONNX IR version 99; this onnxruntime"),
        ("truncated", "not a loadable ONNX model"),
    ],
)
def test_a_model_newer_than_onnxruntime_names_both_versions(tmp_path, change, words):
    import onnx
    from lvunet_runtime.model_files import resolve_model

    path = tmp_path / "m.onnx"
    if change == "truncated":
        path.write_bytes(resolve_model("polyp").read_bytes()[:4000])
    else:
        model = onnx.load(str(resolve_model("polyp")))
        if change == "opset":
            for entry in model.opset_import:
                if entry.domain in ("", "ai.onnx"):
                    entry.version = 40
        else:
            model.ir_version = 99
        onnx.save(model, str(path))
    result = cli("infer", BUSI_IMAGE, "--model", path, "--out", tmp_path / "o")
    assert_one_line_error(result.exit_code, result.stderr, words, "lvunet-infer")
    assert change == "truncated" or "upgrade onnxruntime" in result.stderr


def test_an_input_list_saved_with_a_byte_order_mark_reads_its_first_line(tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(f"{BUSI_IMAGE}\n# a comment\n", encoding="utf-8-sig")  # Windows Notepad
    result = cli("infer", "--input-list", listing, "--out", tmp_path / "o")
    assert result.exit_code == 0 and "1 image segmented" in result.stdout, result.stderr


def test_recursive_never_descends_into_system_or_hidden_folders(tmp_path):
    folder = tmp_path / "card"
    for sub in (
        ".Trashes/501",
        ".thumbnails/large",
        "$RECYCLE.BIN/S-1",
        "__MACOSX",
        "@eaDir",
        "exam",
    ):
        (folder / sub).mkdir(parents=True)
        shutil.copy(BUSI_IMAGE, folder / sub / f"{sub.split('/')[0].strip('.$@_')}.jpg")
    result = cli("infer", folder, "--recursive", "--out", tmp_path / "o")
    assert result.exit_code == 0 and "1 image segmented" in result.stdout, result.stdout
    assert [
        p.relative_to(tmp_path / "o").as_posix() for p in (tmp_path / "o").rglob("*_mask.png")
    ] == ["exam/exam_mask.png"]


@pytest.mark.parametrize("where", ["out", "parent"])
def test_an_output_folder_that_is_a_dangling_link_is_one_refusal(tmp_path, where):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "gone")
    out = link if where == "out" else link / "sub"
    result = cli("infer", BUSI_IMAGE, "--out", out)
    assert_one_line_error(result.exit_code, result.stderr, "is a symbolic link to", "lvunet-infer")
    assert link.is_symlink() and not (tmp_path / "gone").exists()


def test_a_closed_stderr_and_a_broken_stdout_pipe_do_not_spoil_a_finished_run(tmp_path):
    import subprocess
    import sys

    from tests.helpers import entry_code

    out = tmp_path / "o"
    code = entry_code("infer", [BUSI_IMAGE, "--out", out])
    closed = subprocess.run(
        [sys.executable, "-c", code],
        stderr=subprocess.DEVNULL,
        capture_output=False,
        stdout=subprocess.PIPE,
        close_fds=True,
        text=True,
    )
    assert closed.returncode == 0 and (out / f"{BUSI_IMAGE.stem}_mask.png").is_file()
    shell = f'{sys.executable} -c "{code}" 2>&- ; echo rc=$?'
    no_stderr = subprocess.run(
        ["bash", "-c", shell.replace(str(out), str(tmp_path / "o2"))],
        capture_output=True,
        text=True,
    )
    assert (
        "rc=0" in no_stderr.stdout and (tmp_path / "o2" / f"{BUSI_IMAGE.stem}_mask.png").is_file()
    )
    for reader in ("head -c 1 >/dev/null", "true"):  # reads a byte and leaves; never reads at all
        pipe = f'{sys.executable} -c "{code}" | {reader}; echo rc=${{PIPESTATUS[0]}}'
        target = str(tmp_path / f"o3-{reader.split()[0]}")
        broken = subprocess.run(
            ["bash", "-c", pipe.replace(str(out), target)], capture_output=True, text=True
        )
        assert "rc=0" in broken.stdout and "Traceback" not in broken.stderr, broken.stderr
