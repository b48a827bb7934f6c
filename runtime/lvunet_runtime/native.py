"""Paths that C libraries can open.

On Linux and macOS a file name is bytes; Python shows bytes that are not UTF-8 as lone surrogates
(``caf\\udce9``). OpenCV, ONNX Runtime and onnx take a ``str`` and encode it as UTF-8, which such a name
cannot be: OpenCV's video reader crashes the process (SIGSEGV), ONNX Runtime raises a raw binding error.
Every path handed to one of them goes through :func:`library_path` (or :func:`model_source`), so a folder
named in Latin-1 by an older system works like any other.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lvunet_runtime.errors import LVUNetRuntimeError


def is_utf8(path: str | os.PathLike) -> bool:
    """Whether ``path`` can be handed to a C library as it is."""
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(path: str | os.PathLike) -> str:
    """``path`` as it can be printed on any console (bytes that are not UTF-8 as ``\\xe9``)."""
    text = os.fspath(path)
    return text if is_utf8(text) else os.fsencode(text).decode("utf-8", "backslashreplace")


@contextmanager
def library_path(path: str | os.PathLike) -> Iterator[str]:
    """``path`` as a ``str`` OpenCV or onnx can open or create: itself when it is UTF-8, otherwise a
    symbolic link to it with an ASCII name in a private temporary folder, removed afterwards. Writing
    through the link writes the file itself (the link is made to the absolute path, existing or not)."""
    text = os.fspath(path)
    if is_utf8(text):
        yield text
        return
    folder = tempfile.mkdtemp(prefix="lvunet-link-")
    try:
        suffix = "".join(c for c in Path(text).suffix if c.isascii() and c.isalnum())
        link = os.path.join(folder, "file." + (suffix or "bin"))
        try:
            os.symlink(os.path.abspath(text), link)
        except OSError as exc:
            raise LVUNetRuntimeError(
                f"{shown(text)}: its name is not UTF-8 and no link to it can be made here "
                f"({exc.strerror}); rename the file or its folder"
            ) from None
        yield link
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def model_source(path: str | os.PathLike) -> str | bytes:
    """What ``onnxruntime.InferenceSession`` is given for ``path``: the path when it is UTF-8, else the
    file's bytes (our models keep no external data, so the bytes are the whole model)."""
    return os.fspath(path) if is_utf8(path) else Path(path).read_bytes()
