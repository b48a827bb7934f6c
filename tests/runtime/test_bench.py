"""lvunet-bench: option parsing, report schema, unavailable providers. Nothing here asserts a time."""

import json

import onnxruntime as ort
import pytest
from lvunet_runtime.bench import parse_options, percentile
from lvunet_runtime.errors import LVUNetRuntimeError

from tests.helpers import DATA, assert_one_line_error, cli


def bench(*args):
    return cli("bench", *args)


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


def test_report_schema_and_unavailable_provider(tmp_path):
    report_path, table = tmp_path / "bench.json", tmp_path / "bench.md"
    args = [
        "--model",
        "polyp",
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
    result = bench(*args)
    assert result.exit_code == 0, result.stderr
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


def test_bench_errors():
    for args, expected in (
        (["--threads", "two"], "integers"),
        (["--image-size", "512"], "takes 256x256"),
        (["--model", "nope.onnx"], "not found"),
        (["--runs", "0"], "Invalid value for '--runs'"),
    ):
        result = bench(*args)
        assert_one_line_error(result.exit_code, result.stderr, expected, "lvunet-bench")


def test_peak_memory_without_the_unix_resource_module(monkeypatch):
    import sys

    from lvunet_runtime import bench as bench_module

    linux = bench_module.peak_rss_mb()
    assert linux is None or 5 < linux < 100_000
    monkeypatch.setitem(sys.modules, "resource", None)  # as on Windows
    monkeypatch.setitem(sys.modules, "psutil", None)
    assert bench_module.peak_rss_mb() is None


def test_default_table_fits_80_columns_and_wide_has_everything():
    args = ["--threads", "1", "--batch-sizes", "1", "--runs", "2", "--warmup", "0"]
    narrow = bench(*args)
    assert narrow.exit_code == 0 and "median ms" in narrow.stdout and "peak MB" not in narrow.stdout
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 80
    wide = bench(*args, "--wide")
    assert wide.exit_code == 0 and "peak" in wide.stdout and "create" in wide.stdout
