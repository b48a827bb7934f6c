"""lvunet-infer --ray on a local Ray cluster with 2 actors: the same files as a plain run, failures per
file, reruns skip. Runs in its own environment (`make test-ray`: the runtime + ray[data]), selected by the ``ray`` marker
(``pytest -m ray``); the main suite, where Ray is not installed, does not collect it."""

import json
import shutil

import pytest
import ray

from tests.helpers import DATA, checksums, cli

pytestmark = pytest.mark.ray


def _outputs(out):
    return {k: v for k, v in checksums(out).items() if not k.startswith("summary")}


def test_ray_with_two_actors_equals_plain_run(tmp_path):
    folder = tmp_path / "in"
    shutil.copytree(DATA / "images", folder)
    for path in sorted(folder.glob("*.jpg"))[:16]:
        shutil.copy(path, folder / f"again_{path.name}")  # 32 images
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    plain = tmp_path / "plain"
    assert cli("infer", folder, "--json", "--overlay", "--out", plain).exit_code == 2
    out = tmp_path / "ray"
    result = cli("infer", folder, "--json", "--overlay", "--out", out, "--ray", "--ray-actors", "2")
    assert result.exit_code == 2, result.stderr  # the broken file, reported like a local run
    assert "broken.jpg" in result.stderr and "32 images segmented" in result.stdout
    assert _outputs(out) == _outputs(plain) and len(_outputs(out)) == 32 * 3
    record = json.loads((out / "summary.json").read_text())
    assert record["ray"]["actors"] == 2 and record["ray"]["cpus_per_actor"] < 1
    assert len(record["failed"]) == 1 and record["processed"] == 32
    again = cli("infer", folder, "--json", "--overlay", "--out", out, "--ray", "--ray-actors", "2")
    assert "32 skipped" in again.stdout
    ray.shutdown()
