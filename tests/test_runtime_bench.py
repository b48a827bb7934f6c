"""lvunet-bench: option parsing, report schema, unavailable providers. Nothing here asserts a time."""

import json

import onnxruntime as ort
import pytest
from lvunet_runtime.bench import parse_options, percentile
from lvunet_runtime.errors import LVUNetRuntimeError

from tests.conftest import DATA
from tests.test_runtime_cli import _one_line, _run


def test_parse_options():
    assert parse_options("cpu, cuda", "1,auto", "1,8") == (["cpu", "cuda"], [1, None], [1, 8])
    for bad in (("", "1", "1"), ("cpu", "x", "1"), ("cpu", "1", "0"), ("cpu", "1", "a,b")):
        with pytest.raises(LVUNetRuntimeError):
            parse_options(*bad)


def test_percentile():
    values = list(range(1, 101))
    assert (
        percentile(values, 50) in (50, 51)
        and percentile(values, 99) == 99
        and percentile([3.0], 90) == 3.0
    )


def test_report_schema_and_unavailable_provider(tmp_path, exported):
    report_path, table = tmp_path / "bench.json", tmp_path / "bench.md"
    args = [
        "--model",
        exported[0],
        "--providers",
        "cpu,cuda",
        "--threads",
        "1",
        "--batch-sizes",
        "1,2",
        "--runs",
        "3",
        "--warmup",
        "1",
        "--json",
        report_path,
        "--markdown",
        table,
        "--end-to-end",
        DATA / "images",
    ]
    result = _run("bench", args, None)
    assert result.returncode == 0, result.stderr
    report = json.loads(report_path.read_text())
    assert {
        "model",
        "model_size_mb",
        "precision",
        "runs",
        "warmup",
        "machine",
        "results",
        "end_to_end",
    } <= set(report)
    assert {"cpu", "cores", "onnxruntime", "providers"} <= set(report["machine"])
    assert len(report["results"]) == 4
    for row in report["results"]:
        if row["provider"] == "cpu":
            assert row["status"] == "ok" and row["active_providers"] == ["CPUExecutionProvider"]
            for key in (
                "session_create_ms",
                "first_run_ms",
                "median_ms",
                "p90_ms",
                "p99_ms",
                "images_per_s",
                "peak_rss_mb",
            ):
                assert row[key] > 0
            assert row["p99_ms"] >= row["median_ms"] >= row["min_ms"]
        elif "CUDAExecutionProvider" not in ort.get_available_providers():
            assert row["status"] == "unavailable" and "median_ms" not in row
    assert report["end_to_end"]["images"] == 16
    assert (
        "| cuda | 1 | 1 | unavailable" in table.read_text()
        or "CUDAExecutionProvider" in ort.get_available_providers()
    )


def test_bench_errors(exported):
    model = ["--model", exported[0]]
    _one_line(_run("bench", [*model, "--threads", "two"], None), 1, "integers", "lvunet-bench")
    _one_line(
        _run("bench", [*model, "--image-size", "512"], None), 1, "takes 256x256", "lvunet-bench"
    )
    _one_line(_run("bench", ["--model", "nope.onnx"], None), 1, "not found", "lvunet-bench")
