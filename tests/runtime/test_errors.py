"""How an exception becomes one line, and which faults stop a run."""

import errno

import pytest
from lvunet_runtime.errors import (
    ImageError,
    StoppedError,
    describe_os_error,
    first_line,
    stops_the_run,
)


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (ValueError("first\nsecond"), "first"),
        (ValueError("\n\n  indented first  \nsecond"), "indented first"),
        (ValueError(""), "ValueError"),  # an empty message inside an error path must not raise
        (RuntimeError("   \n  "), "RuntimeError"),
        (ImageError("x" * 500), "x" * 300),
    ],
)
def test_first_line_is_safe_on_any_message(exc, line):
    assert first_line(exc) == line


def test_os_errors_name_their_file_and_which_faults_stop():
    full = OSError(errno.ENOSPC, "No space left on device", "/out/a.png")
    assert describe_os_error(full) == "No space left on device: /out/a.png"
    assert describe_os_error(OSError("plain")) == "plain"
    assert stops_the_run(full) and stops_the_run(code=errno.EACCES)
    assert not stops_the_run(OSError(errno.ENOENT, "gone")) and not stops_the_run(ValueError("x"))
    assert not stops_the_run(code=None)
    assert StoppedError("x").exit_code == 2 and ImageError("x").exit_code == 1
    assert StoppedError("x", hint="continue with --resume r").hint == "continue with --resume r"
