"""Sharded runs (--num-parts/--part-id), input lists and --merge: the same files as one plain run."""

import json
import shutil

import pytest
from lvunet_runtime.inputs import Source, in_part

from tests.helpers import DATA, checksums, cli


@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "in"
    shutil.copytree(DATA / "images", images)
    (images / "sub").mkdir()
    for path in sorted(images.glob("busi*"))[:4]:
        shutil.copy(path, images / "sub" / f"copy_{path.name}")
    return images  # 20 images, one sub-folder


def _outputs(out):
    return {k: v for k, v in checksums(out).items() if not k.startswith("summary")}


def test_two_shards_equal_one_plain_run(tmp_path, folder):
    plain = tmp_path / "plain"
    assert cli("infer", folder, "--recursive", "--json", "--out", plain).exit_code == 0
    shards = tmp_path / "shards"
    counts = []
    for part in (0, 1):
        result = cli(
            "infer",
            folder,
            "--recursive",
            "--json",
            "--out",
            shards,
            "--num-parts",
            "2",
            "--part-id",
            part,
        )
        assert result.exit_code == 0, result.stderr
        counts.append(
            json.loads((shards / f"summary.part-{part}-of-2.json").read_text())["processed"]
        )
    assert sum(counts) == 20 and min(counts) > 0
    assert _outputs(shards) == _outputs(plain)  # byte-identical masks and JSON, same names
    merged = cli("infer", "--merge", "--out", shards)
    assert merged.exit_code == 0 and "20 images segmented" in merged.stdout
    record = json.loads((shards / "summary.json").read_text())
    assert record["merged_parts"] == 2 and record["processed"] == 20
    # the merged folder is ours: a rerun over it finds nothing new to segment
    again = cli("infer", folder, "--recursive", "--json", "--out", shards)
    assert again.exit_code == 0 and "nothing to do: the outputs of 20 inputs exist" in again.stdout


def test_parts_are_deterministic_and_cover_everything(folder):
    sources = [Source(p, folder) for p in sorted(folder.rglob("*.jpg"))]
    parts = [[s for s in sources if in_part(s, 3, k)] for k in range(3)]
    assert sorted(s.path for part in parts for s in part) == sorted(s.path for s in sources)
    reversed_parts = [[s for s in reversed(sources) if in_part(s, 3, k)] for k in range(3)]
    assert [sorted(s.path for s in p) for p in parts] == [
        sorted(s.path for s in p) for p in reversed_parts
    ]
    moved = [
        Source(
            folder.parent / "elsewhere" / s.path.relative_to(folder), folder.parent / "elsewhere"
        )
        for s in sources
    ]
    assert [in_part(s, 3, 1) for s in sources] == [
        in_part(s, 3, 1) for s in moved
    ]  # by relative path


def test_merge_reports_missing_parts_and_refuses_mixed_jobs(tmp_path, folder):
    out = tmp_path / "out"
    assert cli("infer", folder, "--out", out, "--num-parts", "3", "--part-id", "1").exit_code == 0
    merged = cli("infer", "--merge", "--out", out)
    assert merged.exit_code == 2 and "part(s) [0, 2] of 3 have not run" in merged.stderr
    nothing = cli("infer", "--merge", "--out", tmp_path / "empty")
    assert nothing.exit_code == 1 and "no part records" in nothing.stderr
    bad = cli("infer", folder, "--out", out, "--num-parts", "2", "--part-id", "2")
    assert bad.exit_code == 1 and "--part-id must be 0..1" in bad.stderr
    other = cli(
        "infer", folder, "--out", out, "--num-parts", "3", "--part-id", "0", "--threshold", "0.3"
    )
    assert other.exit_code == 1 and "another threshold" in other.stderr


def test_input_list_names_outputs_as_direct_inputs(tmp_path, folder):
    chosen = sorted(folder.glob("kvasir*"))[:3]
    listing = tmp_path / "archive.txt"
    listing.write_text("# archive index\n" + "\n".join(str(p) for p in chosen) + "\n\n")
    by_list = cli("infer", "--input-list", listing, "--out", tmp_path / "a")
    direct = cli("infer", *chosen, "--out", tmp_path / "b")
    assert by_list.exit_code == direct.exit_code == 0
    assert (
        _outputs(tmp_path / "a") == _outputs(tmp_path / "b") and len(_outputs(tmp_path / "a")) == 3
    )
    missing = cli("infer", "--input-list", tmp_path / "none.txt")
    assert missing.exit_code == 1 and "input list not found" in missing.stderr


def test_ray_missing_is_one_line(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)
    result = cli("infer", DATA / "images", "--out", tmp_path / "o", "--ray")
    assert result.exit_code == 1 and "pip install 'lvunet-runtime[ray]'" in result.stderr


def test_ray_actor_layout_leaves_room_for_ray_data():
    from lvunet_runtime.distributed import _wants_gpu, actor_layout

    assert actor_layout(2, 2.0) == (2, 0.75, 1)  # 1.5 of 2 CPUs reserved: tasks always have room
    assert actor_layout(None, 16.0) == (8, 1.0, 2)
    count, reserve, _ = actor_layout(4, 2.0)
    assert count * reserve <= 1.5
    assert (
        _wants_gpu(["cuda"])
        and _wants_gpu(["TensorrtExecutionProvider"])
        and not _wants_gpu(["cpu"])
    )
