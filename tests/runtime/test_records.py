"""Run records: what a rerun keeps, what it adds, and the record it leaves."""

import json
import shutil

from tests.helpers import DATA, cli


def _outputs(out):
    return json.loads((out / "summary.json").read_text())["outputs"]


def test_a_rerun_with_more_inputs_keeps_the_earlier_outputs_in_the_record(tmp_path):
    images = sorted((DATA / "images").glob("busi__*"))[:3]
    folder = tmp_path / "in"
    folder.mkdir()
    for path in images[:2]:
        shutil.copy(path, folder)
    out = tmp_path / "out"
    first = cli("infer", folder, "--out", out, "--model", "breast-ultrasound")
    assert first.exit_code == 0, first.stderr
    assert len(_outputs(out)) == 2
    shutil.copy(images[2], folder)
    second = cli("infer", folder, "--out", out, "--model", "breast-ultrasound")
    assert second.exit_code == 0 and "2 skipped" in second.stdout, second.stdout + second.stderr
    assert sorted(_outputs(out)) == sorted(f"{p.stem}_mask.png" for p in images)
    third = cli(
        "infer", folder, "--out", out, "--model", "breast-ultrasound"
    )  # all ours: nothing to do
    assert (
        third.exit_code == 0 and "nothing to do: the outputs of 3 inputs exist" in third.stdout
    ), third.stdout + third.stderr


def test_the_model_is_named_by_name_and_hash_never_by_its_path(tmp_path):
    """summary.json and the per-image JSON name the model as ``polyp sha256:<12 hex>`` (a user's file
    by its file name), never by a path on this machine's disk."""
    import re

    from lvunet_runtime.model_files import resolve_model

    out = tmp_path / "out"
    image = sorted((DATA / "images").glob("busi__*"))[0]
    assert cli("infer", image, "--out", out, "--json").exit_code == 0
    summary = (out / "summary.json").read_text()
    per_image = json.loads((out / f"{image.stem}.json").read_text())
    polyp = resolve_model("polyp")
    assert re.fullmatch(r"polyp sha256:[0-9a-f]{12}", per_image["model"])
    assert json.loads(summary)["model"] == per_image["model"] and str(polyp) not in summary
    mine = tmp_path / "mine.onnx"
    shutil.copy(polyp, mine)
    assert cli("infer", image, "--out", tmp_path / "o2", "--model", mine).exit_code == 0
    named = json.loads((tmp_path / "o2" / "summary.json").read_text())["model"]
    assert named == f"mine.onnx sha256:{per_image['model'].split(':')[1]}"
