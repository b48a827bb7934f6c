"""CPU smoke tests of lvunet-train on the committed sample pairs (128x128, the smallest valid size)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lvunet_runtime.contract import ModelContract
from lvunet_runtime.data import find_pairs
from lvunet_runtime.metrics import confusion_counts, summarize

from lvunet_edge import load_checkpoint
from lvunet_edge.dataset import load_dataset
from lvunet_edge.evaluation import predict_logits
from lvunet_edge.train import train
from tests.conftest import train_config as _config
from tests.helpers import DATA, ROOT


@pytest.fixture(scope="module")
def finished_run(trained_run):
    return trained_run


def _log(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_loss_falls_and_final_slope_is_one(finished_run):
    run_dir, metrics = finished_run
    log = _log(run_dir)
    assert [r["epoch"] for r in log] == [0, 1, 2, 3, 4, 5]
    assert log[-1]["train_loss"] < log[0]["train_loss"] - 0.02
    assert log[-1]["slope"] == 1.0 and log[0]["slope"] < 1.0
    _, info = load_checkpoint(run_dir / "last.pt")
    assert info["slope"] == 1.0
    _, best_info = load_checkpoint(run_dir / "best.pt")
    assert best_info["slope"] == 1.0 and best_info["epoch"] == 5  # only epoch 5 is fully at slope 1
    assert best_info["test_metrics"]["fused"] == metrics["fused"]  # carried on to the ONNX metadata


def test_metrics_trained_equals_fused_and_reload_reproduces_them(finished_run):
    run_dir, metrics = finished_run
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["trained"] == metrics["trained"]
    for key in ("iou", "dice", "dataset_iou", "precision", "recall", "batch_pooled_iou"):
        trained, fused = saved["trained"][key], saved["fused"][key]
        if (
            trained is None or fused is None
        ):  # precision of a model that predicts nothing: undefined
            assert trained is fused is None, key
        else:
            assert abs(trained - fused) <= 0.001, key
    assert saved["max_abs_logit_diff"] < 1e-3
    split = json.loads((run_dir / "split.json").read_text())
    model, info = load_checkpoint(run_dir / "best.pt")
    contract = ModelContract.from_dict(info["contract"])
    assert contract.input_size == contract.training_size == (128, 128)
    dataset = load_dataset(find_pairs(DATA), contract).subset(split["test"])
    logits = predict_logits(model, dataset.images, torch.device("cpu"), contract)
    assert summarize(confusion_counts(logits > 0, dataset.masks)) == saved["trained"]


def test_resume_continues_exactly(tmp_path, finished_run):
    full_dir, _ = finished_run
    out = tmp_path / "resumed"
    assert train(_config(out), progress=False, stop_after=2) == {}
    assert [r["epoch"] for r in _log(out)] == [0, 1]
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    half = out / f".lvunet-{gone.pid}-abcdefgh.pt"  # a checkpoint save cut by kill -9
    half.write_bytes(b"half a checkpoint")
    live = out / f".lvunet-{os.getpid()}-abcdefgh.pt"  # a live process's: never touched
    live.write_bytes(b"in progress")
    metrics = train(_config(out), resume=out, progress=False)
    assert not half.exists() and live.exists()
    assert "removed a checkpoint left half-written" in (out / "train.log").read_text()
    live.unlink()
    assert [r["epoch"] for r in _log(out)] == [0, 1, 2, 3, 4, 5]
    assert metrics["trained"] == json.loads((full_dir / "metrics.json").read_text())["trained"]
    a, _ = load_checkpoint(full_dir / "last.pt")
    b, _ = load_checkpoint(out / "last.pt")
    for (key, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=False):
        assert torch.equal(va, vb), key


def _cli(*args):
    """lvunet-train in process through the real entry wrapper."""
    from tests.helpers import cli

    return cli("train", *args)


def _subprocess_cli(*args, env=None):
    """lvunet-train through ``python -m`` in a fresh interpreter (the real entry point)."""
    return subprocess.run(
        [sys.executable, "-m", "lvunet_edge.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )


def test_cli_errors_are_one_line(tmp_path):
    result = _subprocess_cli("--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o"))
    assert result.returncode == 1
    assert (
        result.stderr.strip().startswith("lvunet-train: error:")
        and "Traceback" not in result.stderr
    )
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "last.pt").write_bytes(b"a previous run")
    result = _cli("--data", str(DATA), "--out", str(taken))
    assert result.returncode == 1 and "already holds a run" in result.stderr
    assert (taken / "last.pt").read_bytes() == b"a previous run"
    result = _cli("--data", str(DATA), "--image-size", "200", "--out", str(tmp_path / "o"))
    assert (
        result.returncode == 1
        and "--image-size must be a positive multiple of 128" in result.stderr
    )
    assert "(128, 256, 384, 512, ...), not 200; the nearest is 256" in result.stderr
    for args, expected in (
        (["--batch-size", "0"], "batch-size must be at least 1"),
        (["--image-size", "0"], "positive multiple of 128"),
        (["--lr", "-1"], "lr must be positive"),
        (["--image-size", "128", "--batch-size", "1"], "use --batch-size 2 or more"),
    ):
        result = _cli("--data", str(DATA), "--out", str(tmp_path / "o"), *args)
        assert result.returncode == 1 and expected in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
    result = _cli("--resume", str(tmp_path / "nothing"))
    assert result.returncode == 1 and "holds no run to resume" in result.stderr
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    (empty / "masks").mkdir()
    result = _cli("--data", str(empty), "--out", str(tmp_path / "o"))
    assert result.returncode == 1 and "no images" in result.stderr


@pytest.mark.slow
def test_ddp_two_cpu_processes_gloo(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(DATA, data)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29531",
            "-m",
            "lvunet_edge.cli",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "ddp"),
            "--image-size",
            "128",
            "--epochs",
            "2",
            "--batch-size",
            "2",
            "--device",
            "cpu",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    log = _log(tmp_path / "ddp")
    assert len(log) == 2  # rank 0 alone writes the log
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert abs(metrics["trained"]["iou"] - metrics["fused"]["iou"]) <= 0.001


def test_every_train_option_reaches_the_config():
    """lvunet-train builds TrainConfig from its options by name: an option without a field (a typo)
    would be dropped silently, so each must be a field, or one of the few run controls."""
    import inspect
    from dataclasses import fields

    from lvunet_edge.cli import config_from_options, train_command
    from lvunet_edge.config import TrainConfig

    controls = {"resume", "seeds", "progress", "stop_after", "version"}
    options = set(inspect.signature(train_command).parameters) - controls
    assert options <= {f.name for f in fields(TrainConfig)}
    config = config_from_options(
        {"data": Path("d"), "out": Path("o"), "epochs": 7, "multi_scale": True, "distill": Path("t.pt"),
         "distill_weight": 0.3, "resume": Path("r"), "progress": False}
    )  # fmt: skip
    assert (config.data, config.out, config.epochs, config.multi_scale) == ("d", "o", 7, True)
    assert (config.distill, config.distill_weight, config.distill_sha256) == ("t.pt", 0.3, None)


def test_option_defaults_are_the_config_defaults_and_the_threshold_reaches_the_contract():
    """Each lvunet-train option's default is its TrainConfig field's (written once), and --threshold
    becomes the contract's threshold, the one export and the runtime apply."""
    import inspect
    from dataclasses import MISSING, fields

    from lvunet_edge.cli import train_command
    from lvunet_edge.config import TrainConfig, training_contract

    parameters = inspect.signature(train_command).parameters
    for field in fields(TrainConfig):
        if field.name in parameters and field.default is not MISSING:
            option_default = parameters[field.name].default.default
            assert str(option_default) == str(field.default), field.name
    assert training_contract(TrainConfig(data="d")).threshold == 0.5
    contract = training_contract(TrainConfig(data="d", threshold=0.35))
    assert contract.threshold == 0.35 and contract.input_size == (256, 256)
    with pytest.raises(Exception, match="threshold must be a number strictly between 0 and 1"):
        TrainConfig(data="d", threshold=1.0)


def test_training_refuses_a_dataset_of_empty_masks_and_records_the_mask_rule(
    tmp_path, finished_run
):
    from PIL import Image

    from tests.helpers import cli, copy_pairs

    data = copy_pairs("busi", tmp_path / "data")
    for mask in (data / "masks").iterdir():
        Image.new("L", Image.open(mask).size).save(mask)  # every object erased
    result = cli(
        "train", "--data", data, "--out", tmp_path / "r", "--image-size", "128", "--epochs", "1"
    )
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and "every mask in" in lines[0], result.stderr
    assert not (tmp_path / "r" / "last.pt").exists()
    run_dir, _ = finished_run
    rules = json.loads((run_dir / "metrics.json").read_text())["mask_rules"]
    assert sum(rules.values()) > 0 and set(rules) <= {">127", "empty"} | {
        r for r in rules if r.startswith(">127, ")
    }


def test_data_warnings_are_said_before_training_and_kept_in_its_metrics(tmp_path):
    from tests.helpers import copy_pairs

    data = copy_pairs("kvasir-seg__", tmp_path / "data")
    first = sorted((data / "images").iterdir())[0]
    shutil.copy(first, data / "images" / "copy-of-first.jpg")
    shutil.copy(data / "masks" / f"{first.stem}.png", data / "masks" / "copy-of-first.png")
    out = tmp_path / "run"
    metrics = train(_config(out, data=str(data), epochs=1), progress=False)
    (warning,) = metrics["data_warnings"]
    assert "byte-identical copies" in warning and "copy-of-first" in warning
    log = (out / "train.log").read_text()
    assert log.index("byte-identical") < log.index("epoch")  # before the first step
    report = [line for line in log.splitlines() if line.startswith("data: ")]
    assert report[0].startswith(f"data: {len(list((data / 'images').iterdir()))} image/mask pairs")
    assert any("object share of the image median" in line for line in report)
    assert log.index("object share") < log.index("epoch 1/")
    results = out / "results.png"  # the curves and validation predictions, after the last epoch
    from PIL import Image

    with Image.open(results) as image:
        assert image.format == "PNG" and image.size[0] >= 1000
    assert f"results: {results}" in log
    assert json.loads((out / "metrics.json").read_text())["data_warnings"] == [warning]
    _, info = load_checkpoint(
        out / "best.pt"
    )  # colonoscopy frames: the model expects colour images
    assert info["contract"]["input_colour"] == "colour"


def test_a_model_that_finds_nothing_on_the_test_split_is_said_so(tmp_path, monkeypatch):
    import lvunet_edge.train as train_module

    real = train_module.evaluate_trained_and_fused

    def nothing_found(*args, **kwargs):
        metrics = real(*args, **kwargs)
        metrics["trained"]["precision"] = None  # as summarize reports a model that predicts nothing
        return metrics

    monkeypatch.setattr(train_module, "evaluate_trained_and_fused", nothing_found)
    out = tmp_path / "run"
    train(_config(out, epochs=1), progress=False)
    assert (
        "warning: the trained model predicts no foreground on any of the"
        in (out / "train.log").read_text()
    )


def test_the_command_line_run_shows_no_progress_off_a_terminal_and_dumps_no_metrics(tmp_path):
    out = tmp_path / "run"
    args = ["--data", str(DATA), "--out", str(out), "--image-size", "128", "--epochs", "1"]
    result = _subprocess_cli(*args, "--batch-size", "4")  # stderr is a pipe: not a terminal
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr + result.stdout  # no progress bar redraws in a log
    assert '"trained"' not in result.stdout and "{" not in result.stdout  # no metrics.json dump
    assert result.stdout.strip().splitlines()[-1] == (
        f"lvunet-train: done: {out / 'metrics.json'}, best.pt, last.pt in {out}"
    )
    assert "test (" in result.stdout  # the one-line test summary stays


def test_compile_that_fails_falls_back_to_eager_training_and_says_so(tmp_path, monkeypatch):
    """--compile where torch.compile cannot work (no compiler, unsupported platform): the first step's
    fault is one line in the log and the run trains on eagerly (nothing is compiled here: the compiled
    step is timed in benchmarks/train_speed.py, not in the tests)."""
    calls = []

    def broken_compile(net):
        def step(x):
            calls.append(x.shape)
            raise RuntimeError("inductor: no working C++ compiler found\nmore detail")

        return step

    monkeypatch.setattr(torch, "compile", broken_compile)
    metrics = train(_config(tmp_path / "run", epochs=2, compile=True), progress=False)
    log = (tmp_path / "run" / "train.log").read_text()
    assert "compiling the training step" in log
    assert (
        "note: torch.compile failed (inductor: no working C++ compiler found); training without it"
        in log
    )
    assert len(calls) == 1 and metrics["epochs"] == 2
