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
    third = cli("infer", folder, "--out", out, "--model", "breast-ultrasound")  # all ours: nothing to do
    assert third.exit_code == 0 and "3 skipped" in third.stdout, third.stdout + third.stderr
