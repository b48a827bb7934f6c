"""lvunet-infer --watch: files segmented as they appear and settle, each once, also across restarts; a
file still being written is waited for; Ctrl-C ends the watch with exit 130 and nothing half-written."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading

from lvunet_runtime.plan import InferOptions
from lvunet_runtime.segmenter import Segmenter
from lvunet_runtime.watch import watch

from tests.helpers import DATA, entry_code

IMAGES = sorted((DATA / "images").glob("kvasir-seg__*.jpg"))[:3]


def _after(rounds: int, action=None):
    """A ``stop`` callback: runs ``action(round)`` before each round, stops after ``rounds``."""

    def stop(watched) -> bool:
        if action is not None:
            action(watched.rounds)
        return watched.rounds >= rounds

    return stop


def test_files_are_taken_once_they_settle_and_each_only_once_across_restarts(tmp_path):
    folder, out = tmp_path / "export", tmp_path / "out"
    folder.mkdir()
    shutil.copy(IMAGES[0], folder)
    data = IMAGES[1].read_bytes()
    late = folder / IMAGES[1].name

    def arrive(round_number: int) -> None:
        if round_number == 2:
            late.write_bytes(data[: len(data) // 2])  # a copy in progress: half the file
        if round_number == 3:
            late.write_bytes(data)  # the copy finished

    segmenter, options = Segmenter("polyp"), InferOptions(out=out, progress=False)
    lines = []
    watched = watch(folder, segmenter, options, interval=0.01, say=lines.append,
                    stop=_after(7, arrive))  # fmt: skip
    assert watched.segmented == 2 and watched.failed == [], (lines, watched)
    assert sorted(p.name for p in out.glob("*_mask.png")) == sorted(
        f"{p.stem}_mask.png" for p in IMAGES[:2]
    )
    assert not any("corrupt" in line for line in lines)  # the half file was never read
    record = json.loads((out / "summary.json").read_text())
    assert len(record["images"]) == 2
    shutil.copy(IMAGES[2], folder)  # arrives while the watch is stopped
    again = watch(folder, segmenter, options, interval=0.01, say=lines.append, stop=_after(3))
    assert again.segmented == 1  # only the new one: the earlier two are in the record
    assert len(json.loads((out / "summary.json").read_text())["images"]) == 3


def test_a_file_that_fails_is_said_once_until_it_changes(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    lines = []
    options = InferOptions(out=tmp_path / "out", progress=False)
    watch(folder, Segmenter("polyp"), options, interval=0.01, say=lines.append, stop=_after(6))
    assert len([line for line in lines if "broken.jpg" in line]) == 1, lines


def test_ctrl_c_ends_the_watch_with_exit_130_and_what_was_done_kept(tmp_path):
    folder, out = tmp_path / "export", tmp_path / "out"
    folder.mkdir()
    shutil.copy(IMAGES[0], folder)
    code = entry_code("infer", ["--watch", folder, "--out", out])
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    seen = []  # stdout's lines as they come: the image's line is printed after its mask is written

    def read() -> None:
        for line in process.stdout:
            seen.append(line)
            if IMAGES[0].name in line:
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(60)  # SIGINT only once the image is done and said (a loaded machine is slow)
    assert (out / f"{IMAGES[0].stem}_mask.png").exists()
    assert any(IMAGES[0].name in line for line in seen), seen  # the image's line
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    assert "watching" in stderr and "interrupted" in stderr.splitlines()[-1]
    assert not list(out.glob(".lvunet-*"))
