"""The Ray route's driver side without Ray: actors get the run's whole segmenter description, and their
per-file results are recorded as a local run records them, a full disk stopping the run."""

import errno
import json

from lvunet_runtime.distributed import SegmentActor, actor_layout, collect
from lvunet_runtime.records import RunSummary
from lvunet_runtime.segmenter import SegmenterSpec

from tests.helpers import BUSI_IMAGE


def _row(source, **outcome):
    return {"source": source, "result": json.dumps(outcome)}


def test_collect_records_results_and_stops_on_a_fault_that_would_repeat():
    summary = RunSummary()
    rows = [
        _row("a.png", ok={"area_px": 5, "area_fraction": 0.5}),
        _row("b.png", error="b.png: not an image", errno=None),
        _row("c.png", error="No space left on device: /out/c_mask.png", errno=errno.ENOSPC),
        _row("d.png", ok={"area_px": 1, "area_fraction": 0.1}),
    ]
    collect(iter(rows), summary, total=5)
    assert summary.processed == 1 and summary.images[0]["input"] == "a.png"
    assert [f["input"] for f in summary.failed] == ["b.png"]
    assert summary.stopped.startswith("c.png: No space left") and summary.partial
    assert summary.not_done == 3  # c, d and the one never returned
    plain = RunSummary()
    collect(iter(rows[:2]), plain, total=2)
    assert not plain.stopped and plain.not_done == 0


def test_actor_opens_the_spec_with_every_option(tmp_path):
    spec = SegmenterSpec(model="breast-ultrasound", threshold=0.3, tta="h", threads=1)
    actor = SegmentActor(spec, {"max_pixels": 10**8, "keep_largest": True})
    segmenter = actor.segmenter
    assert (segmenter.threshold, segmenter.tta, segmenter.path.stem) == (
        0.3,
        "h",
        "breast-ultrasound",
    )
    assert segmenter.spec == spec
    paths = {"mask": str(tmp_path / "m.png"), "json": str(tmp_path / "m.json")}
    out = actor({"source": [str(BUSI_IMAGE)], "outputs": [json.dumps(paths)]})
    result = json.loads(out["result"][0])
    assert result["ok"]["regions"] <= 1  # --keep-largest reached the actor
    assert json.loads((tmp_path / "m.json").read_text())["threshold"] == 0.3


def test_actor_layout_never_reserves_more_than_the_cluster():
    for cpus in (1.0, 2.0, 16.0):
        count, reserve, threads = actor_layout(None, cpus)
        assert count * reserve <= cpus - 0.5 + 1e-9 and threads >= 1
