"""Interrupted and shared runs finish: the record is written before the work (its plan) and after it, so
after Ctrl-C, SIGTERM, kill -9 or a crash the same command does the rest; a second run into the same
folder is refused while the first lives and takes over its lock once it is gone; settings left at their
default are recorded; a rerun keeps the results of the outputs it kept."""

import json
import os
import shutil
import signal
import subprocess
import sys

from tests.helpers import DATA, cli, entry_code

MODEL = ["--model", "breast-ultrasound"]


def _folder(tmp_path, count=8):
    folder = tmp_path / "in"
    folder.mkdir()
    for path in sorted((DATA / "images").glob("busi__*"))[:count]:
        shutil.copy(path, folder)
    return folder


def _killed_after(masks: int) -> str:
    """A prelude that kills the run (os._exit: as kill -9, no cleanup at all) once ``masks`` masks were
    written."""
    return (
        "import os\n"
        "import lvunet_runtime.outputs as o\n"
        "real, count = o.write_image_outputs, [0]\n"
        "def write(*a, **k):\n"
        "    result = real(*a, **k)\n"
        "    count[0] += 1\n"
        f"    if count[0] == {masks}:\n"
        "        os._exit(137)\n"
        "    return result\n"
        "o.write_image_outputs = write\n"
    )


def _waiting_at_model_call(calls: int) -> str:
    """A prelude that says ``ready`` and waits (for SIGTERM) in the ``calls``-th model call."""
    return (
        "import time\n"
        "from lvunet_runtime.segmenter import Segmenter\n"
        "real, count = Segmenter.run_prepared, [0]\n"
        "def run(self, prepared):\n"
        "    count[0] += 1\n"
        f"    if count[0] == {calls}:\n"
        "        print('ready', flush=True)\n"
        "        for _ in range(1200):\n"  # short sleeps: a signal that the kernel hands to another
        "            time.sleep(0.05)\n"  # thread still reaches the main thread within 50 ms
        "    return real(self, prepared)\n"
        "Segmenter.run_prepared = run\n"
    )


def _infer_process(folder, out, prelude, *extra):
    code = prelude + entry_code("infer", [folder, "--out", out, *MODEL, *extra])
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _record(out):
    return json.loads((out / "summary.json").read_text())


def test_a_killed_run_is_finished_by_the_same_command(tmp_path):
    folder, out = _folder(tmp_path), tmp_path / "out"
    process = _infer_process(folder, out, _killed_after(3), "--json")
    process.wait(120)
    assert process.returncode == 137
    left = sorted(p.name for p in out.glob("*_mask.png"))
    assert 3 <= len(left) < 8 and _record(out)["status"] == "running"  # the plan, never closed
    again = cli("infer", folder, "--out", out, "--json", *MODEL)
    assert again.exit_code == 0, again.stderr
    assert "note: took over the lock" in again.stderr  # the killed run's lock, its process gone
    assert len(list(out.glob("*_mask.png"))) == 8 and len(list(out.glob("*.json"))) == 9
    record = _record(out)
    assert record["status"] == "done" and record["skipped_existing"] == len(left)
    assert not list(out.glob(".lvunet-*"))
    third = cli("infer", folder, "--out", out, "--json", *MODEL)
    assert (
        third.exit_code == 0 and "nothing to do: the outputs of 8 inputs exist" in third.stdout
    )  # everything is ours now


def test_sigterm_ends_like_ctrl_c_and_a_rerun_does_the_rest(tmp_path):
    folder, out = _folder(tmp_path), tmp_path / "out"
    process = _infer_process(folder, out, _waiting_at_model_call(4))
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "interrupted" in lines[0] and "rerun the same command" in lines[0]
    record, masks = _record(out), sorted(p.name for p in out.glob("*_mask.png"))
    assert record["status"] == "stopped" and record["stopped"] == "interrupted"
    assert record["outputs"] == masks and 1 <= len(masks) <= 3  # finished ones: listed and whole
    assert not list(out.glob(".lvunet-*"))  # no temporary file, no lock
    again = cli("infer", folder, "--out", out, *MODEL)
    assert again.exit_code == 0, again.stderr
    assert f"{8 - len(masks)} images segmented" in again.stdout, again.stdout
    assert len(_record(out)["images"]) == 8  # the first run's results kept beside the rerun's


def test_a_second_run_into_the_same_folder_is_refused_while_the_first_lives(tmp_path):
    folder, out = _folder(tmp_path, 2), tmp_path / "out"
    out.mkdir()
    lock = out / ".lvunet-summary.json.lock"
    lock.write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename, "started": "now"}))
    refused = cli("infer", folder, "--out", out, *MODEL)
    lines = refused.stderr.strip().splitlines()
    assert refused.exit_code == 1 and len(lines) == 1 and "another lvunet-infer run" in lines[0]
    assert f"pid {os.getpid()}" in lines[0] and not list(out.glob("*_mask.png"))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    lock.write_text(json.dumps({"pid": gone.pid, "host": os.uname().nodename, "started": "then"}))
    taken = cli("infer", folder, "--out", out, *MODEL)
    assert taken.exit_code == 0 and "took over the lock" in taken.stderr and not lock.exists()


def test_a_setting_left_at_its_default_is_recorded_and_compared(tmp_path):
    folder = _folder(tmp_path, 2)
    hv, off = tmp_path / "hv", tmp_path / "off"
    assert cli("infer", folder, "--out", hv, "--tta", "h", *MODEL).exit_code == 0
    refused = cli("infer", folder, "--out", hv, *MODEL)  # --tta off (the default) into a TTA folder
    assert refused.exit_code == 1 and "another tta ('h', now 'off')" in refused.stderr
    assert cli("infer", folder, "--out", off, *MODEL).exit_code == 0
    assert _record(off)["settings"]["tta"] == "off"
    refused = cli("infer", folder, "--out", off, "--tta", "h", *MODEL)
    assert refused.exit_code == 1 and "another tta ('off', now 'h')" in refused.stderr
    record = _record(off)  # a record from before defaults were written: missing means the default
    del record["settings"]["tta"]
    (off / "summary.json").write_text(json.dumps(record))
    assert cli("infer", folder, "--out", off, *MODEL).exit_code == 0


def test_shard_records_keep_the_results_of_kept_outputs_through_the_merge(tmp_path):
    folder, out = _folder(tmp_path, 4), tmp_path / "out"
    shard = ["--num-parts", "2", "--part-id"]
    for part in ("0", "1"):
        assert cli("infer", folder, "--out", out, *shard, part, *MODEL).exit_code == 0
    for path in sorted((DATA / "images").glob("busi__*"))[4:6]:
        shutil.copy(path, folder)
    for part in ("0", "1"):
        rerun = cli("infer", folder, "--out", out, *shard, part, *MODEL)
        assert rerun.exit_code == 0, rerun.stderr
    merged = cli("infer", "--merge", "--out", out)
    assert merged.exit_code == 0, merged.stderr
    images = _record(out)["images"]
    assert len(images) == 6 and all("area_px" in entry for entry in images)


def _videos(tmp_path, frames=(3, 30)):
    import cv2

    folder = tmp_path / "clips"
    folder.mkdir()
    image = cv2.resize(cv2.imread(str(sorted((DATA / "images").glob("busi__*"))[0])), (96, 64))
    for name, count in zip(("a.mp4", "b.mp4"), frames, strict=True):
        writer = cv2.VideoWriter(str(folder / name), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 64))
        for _ in range(count):
            writer.write(image)
        writer.release()
    return folder


def _killed_at_model_call(calls: int) -> str:
    """A prelude that ends the process as kill -9 does (no cleanup) in the ``calls``-th model call."""
    return (
        "import os\n"
        "from lvunet_runtime.segmenter import Segmenter\n"
        "real, count = Segmenter.run_prepared, [0]\n"
        "def run(self, prepared):\n"
        "    count[0] += 1\n"
        f"    if count[0] == {calls}:\n"
        "        os._exit(137)\n"
        "    return real(self, prepared)\n"
        "Segmenter.run_prepared = run\n"
    )


def test_sigterm_during_a_video_keeps_the_finished_one_and_no_partial_file(tmp_path):
    folder, out = _videos(tmp_path), tmp_path / "out"
    process = _infer_process(folder, out, _waiting_at_model_call(12))  # inside b.mp4
    assert process.stdout.readline().strip() == "ready"
    listing = sorted(p.name for p in out.iterdir())
    assert any(name.endswith(".mp4") and name.startswith(".lvunet-") for name in listing), listing
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in stderr, (process.returncode, stderr)
    assert _record(out)["outputs"] == ["a_frames.csv", "a_overlay.mp4"], _record(out)
    assert not list(out.glob(".lvunet-*")), list(out.iterdir())  # no partial video, no lock
    again = cli("infer", folder, "--out", out, *MODEL)
    assert again.exit_code == 0, again.stderr
    assert "1 video," in again.stdout and "1 skipped" in again.stdout, again.stdout
    assert sorted(p.name for p in out.glob("b_*")) == ["b_frames.csv", "b_overlay.mp4"]


def test_a_run_killed_mid_video_leaves_a_temporary_file_that_the_rerun_removes(tmp_path):
    """kill -9 cannot be cleaned up after: the next run, taking over the lock, removes what it left."""
    folder, out = _videos(tmp_path), tmp_path / "out"
    process = _infer_process(folder, out, _killed_at_model_call(12))
    process.communicate(timeout=60)
    assert process.returncode == 137
    left = list(out.glob(f".lvunet-{process.pid}-*.mp4"))
    assert len(left) == 1
    keep = out / f".lvunet-{os.getpid()}-abcdefgh.png"  # a live process's: never touched
    keep.write_bytes(b"in progress")
    again = cli("infer", folder, "--out", out, *MODEL)
    assert again.exit_code == 0, again.stderr
    assert "its 1 unfinished temporary file(s) removed" in again.stderr
    assert not left[0].exists() and keep.exists()
    assert {"a_overlay.mp4", "b_overlay.mp4"} <= {p.name for p in out.iterdir()}


def test_an_internal_error_mid_run_is_finished_by_the_same_command(tmp_path):
    folder, out = _folder(tmp_path, 6), tmp_path / "out"
    prelude = (
        "from lvunet_runtime.segmenter import Segmenter\n"
        "real, count = Segmenter.run_prepared, [0]\n"
        "def run(self, prepared):\n"
        "    count[0] += 1\n"
        "    if count[0] == 4:\n"
        "        raise RuntimeError('simulated fault in a library')\n"
        "    return real(self, prepared)\n"
        "Segmenter.run_prepared = run\n"
    )
    process = _infer_process(folder, out, prelude)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode in (2, 3) and "Traceback" not in stderr, stderr
    done = len(list(out.glob("*_mask.png")))
    assert not list(out.glob(".lvunet-*"))
    again = cli("infer", folder, "--out", out, *MODEL)
    assert again.exit_code == 0, again.stderr
    assert len(list(out.glob("*_mask.png"))) == 6 and f"{done} skipped" in again.stdout


def test_a_run_stopped_by_a_full_disk_is_finished_by_the_same_command(tmp_path, monkeypatch):
    import errno

    import lvunet_runtime.writer as writer

    folder, out = _folder(tmp_path, 6), tmp_path / "out"
    real, count = writer.write_atomic, [0]

    def full(path, data):
        count[0] += 1
        if count[0] == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data)

    monkeypatch.setattr(writer, "write_atomic", full)
    stopped = cli("infer", folder, "--out", out, *MODEL)
    monkeypatch.undo()
    assert stopped.exit_code == 2 and "No space left on device" in stopped.stderr, stopped.stderr
    done = len(list(out.glob("*_mask.png")))
    again = cli("infer", folder, "--out", out, *MODEL)
    assert again.exit_code == 0, again.stderr
    assert len(list(out.glob("*_mask.png"))) == 6 and f"{done} skipped" in again.stdout
