"""The one writer: atomic files with one permission rule, and the guard's rules about what it may touch."""

import os
import stat

import pytest
from lvunet_runtime.errors import OutputError
from lvunet_runtime.writer import OutputGuard, atomic_file, file_mode, write_atomic


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_every_file_gets_the_mode_of_a_plain_open(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what open() gives under this process's umask
    written = tmp_path / "w.bin"
    write_atomic(written, b"data")
    with atomic_file(tmp_path / "v.mp4", ".mp4") as tmp:  # a file written in pieces (a video)
        tmp.write_bytes(b"frames")
    assert _mode(written) == _mode(tmp_path / "v.mp4") == _mode(plain) == file_mode()
    assert written.read_bytes() == b"data" and (tmp_path / "v.mp4").read_bytes() == b"frames"


def test_a_failed_write_leaves_neither_a_temporary_nor_a_changed_target(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == [
        "keep.txt"
    ]


def test_guard_never_writes_an_input_and_replaces_others_only_when_allowed(tmp_path):
    source, other = tmp_path / "in.png", tmp_path / "other.png"
    source.write_bytes(b"input")
    other.write_bytes(b"user file")
    guard = OutputGuard(overwrite=True, inputs=[source])
    with pytest.raises(OutputError, match="input of this run"):
        guard.write(source, b"x")
    guard.write(other, b"replaced")  # --overwrite: a file this run did not make
    assert source.read_bytes() == b"input" and other.read_bytes() == b"replaced"
    strict = OutputGuard()
    other.write_bytes(b"user file")
    with pytest.raises(OutputError, match="--overwrite"):
        strict.write(other, b"x")
    strict.write(other, b"ours", ours=True)  # an earlier run of ours made it
    new = tmp_path / "sub" / "new.png"
    strict.write(new, b"1")
    strict.write(new, b"2")  # made by this run: may be written again
    assert new.read_bytes() == b"2" and _key_set(strict) >= {new.resolve()}


def _key_set(guard):
    return set(guard.created)


def test_guard_refuses_links_folders_and_checks_again_before_the_rename(tmp_path):
    guard = OutputGuard(overwrite=True)
    (tmp_path / "real").write_text("r")
    os.symlink(tmp_path / "real", tmp_path / "link")
    (tmp_path / "folder").mkdir()
    for name in ("link", "folder"):
        with pytest.raises(OutputError, match="not a regular file"):
            guard.write(tmp_path / name, b"x")
    late = tmp_path / "late.mp4"
    with pytest.raises(OutputError, match="not a regular file"):
        with guard.writing(late, ".mp4") as tmp:
            tmp.write_bytes(b"video")
            late.mkdir()  # appeared while the video was being written
    assert (tmp_path / "real").read_text() == "r" and not list(tmp_path.glob(".lvunet-*"))
