"""lvunet-bench --recommend records the fastest provider that agrees with CPU fp32; --provider auto
follows that record, and says so, or says there is none."""

import json

import pytest
from lvunet_runtime import recommend
from lvunet_runtime.model_files import resolve_model

from tests.helpers import KVASIR_IMAGE, cli


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LVUNET_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "providers.json"


def _measured(spec, median, dice):
    return {"provider": spec, "status": "ok", "median_ms": median, "min_dice_vs_cpu_fp32": dice}


def test_the_fastest_provider_that_agrees_is_recorded_and_followed(cache, tmp_path, monkeypatch):
    import lvunet_runtime.bench as bench

    results = {
        "cpu": _measured("cpu", 4.9, 1.0),
        "openvino": _measured("openvino", 4.1, 1.0),
        "openvino:bf16": _measured("openvino:bf16", 3.1, 0.95),  # faster, but its masks disagree
    }
    monkeypatch.setattr(recommend, "candidates", lambda: [(s, None) for s in results])
    monkeypatch.setattr(bench, "_in_subprocess", lambda model, spec, *a: dict(results[spec]))
    polyp = resolve_model("polyp")
    record = bench.recommend_provider(polyp, runs=5, warmup=1)
    assert record["provider"] == "openvino" and record["median_ms"] == 4.1
    assert [m["agrees"] for m in record["measured"]] == [True, True, False]
    stored = json.loads(cache.read_text())["records"]
    assert list(stored) == [recommend.record_key(polyp)] and record["machine"]["cores"] >= 1
    providers, device, precision, note = recommend.resolve_auto(polyp)
    assert (providers, device, precision) == (["openvino"], None, None)
    assert "--provider auto: openvino" in note and "4.10 ms" in note
    # another model has no record: the default order, said in one line
    assert recommend.resolve_auto(resolve_model("breast-ultrasound"))[0] is None


def test_cli_auto_without_a_record_says_so_and_with_one_follows_it(cache, tmp_path):
    out = tmp_path / "out"
    first = cli("infer", KVASIR_IMAGE, "--provider", "auto", "--out", out)
    assert first.exit_code == 0, first.stderr
    assert (
        "no recommendation recorded" in first.stderr and len(first.stderr.strip().splitlines()) == 1
    )
    polyp = resolve_model("polyp")
    recommend.save({"key": recommend.record_key(polyp), "provider": "cpu", "device": None,
                    "median_ms": 3.0, "date": "2026-12-01T00:00:00+00:00"})  # fmt: skip
    second = cli("infer", KVASIR_IMAGE, "--provider", "auto", "--out", tmp_path / "out2")
    assert second.exit_code == 0 and "--provider auto: cpu (measured fastest" in second.stderr


def test_a_corrupt_cache_file_is_no_record(cache):
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json")
    assert recommend.lookup(resolve_model("polyp")) is None
    cache.write_text(json.dumps({"record_version": 1, "records": []}))
    assert recommend.lookup(resolve_model("polyp")) is None
