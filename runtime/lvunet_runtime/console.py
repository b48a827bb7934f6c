"""Keeping other libraries' console output off the user's console: our one-line messages say what
happened. Every function here is called by a command or a run, never on import."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

ORT_ERRORS_ONLY = 3  # ONNX Runtime's log severity: 0 verbose ... 3 error, 4 fatal


def quiet_onnxruntime() -> None:
    """ONNX Runtime's own log lines (e.g. a provider that fails to start) off the console."""
    import onnxruntime as ort

    ort.set_default_logger_severity(ORT_ERRORS_ONLY)


def quiet_ray() -> None:
    """Ray's INFO lines and its C++ core's notes off the console (our summary says what ran)."""
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence C-level writes to stderr inside the block (OpenCV's codec-tag note for WebM, Ray's
    core at start-up), which no setting turns off."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
