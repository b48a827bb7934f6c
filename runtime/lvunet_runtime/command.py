"""The command runner every console script of the project goes through (``lvunet-infer``, ``-eval``,
``-bench``, ``-serve``, ``-train``, ``-export``): one error policy, one set of exit codes.

The exit codes are ``EXIT_CODES_HELP`` (each command's ``--help`` epilog; the README's table says the
same for readers). Commands raise; only :func:`run_command` turns an exception into a line and a code
(an error's ``exit_code``, and its ``hint`` appended). Process-wide settings (OpenCV/FFmpeg
logging, Pillow's pixel limit, which ``--max-pixels`` replaces) are made here, never on import.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from lvunet_runtime.errors import Interrupted, LVUNetRuntimeError, describe_os_error, first_line

EXIT_DONE, EXIT_REFUSED, EXIT_PARTIAL, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_CODES_HELP = (
    "Exit codes: 0 done; 1 refused (one line says what to fix); 2 partly done (the line says what was "
    "not); 3 internal error (one line names a log file with the traceback; --debug prints it); "
    "130 interrupted."
)


def configure_process() -> None:
    """Settings a command-line run wants and a library import must not make."""
    # Keep FFmpeg's own console chatter (e.g. "moov atom not found") out of our one-line errors.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    # ONNX Runtime (1.2x+ on Linux too) keeps a telemetry device ID under ~/.cache and warns on the
    # console when HOME is read-only; nothing of a clinical run should leave the machine either way.
    # Read when onnxruntime is imported, which no command does before this point.
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # load_image checks --max-pixels itself, with a message


def _with_hint(message: str, exc: BaseException) -> str:
    hint = getattr(exc, "hint", "")
    return f"{message}; {hint}" if hint else message


def _internal_error(program: str, exc: BaseException, debug: bool) -> int:
    """Exit 3 with one line; the traceback goes to a log file (never into the user's --out)."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if debug:
        sys.stderr.write(text)
        return EXIT_INTERNAL
    folder = Path(tempfile.gettempdir()) / "lvunet-logs"
    log = folder / f"{program}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # argv and messages may hold file names that are not UTF-8: written escaped, never refused
        log.write_text(
            f"{program} {' '.join(sys.argv[1:])}\n{text}",
            encoding="utf-8",
            errors="backslashreplace",
        )
        where = f"traceback in {log}"
    except (OSError, ValueError):
        where = "no log could be written; rerun with --debug"
    message = first_line(exc, 200) if str(exc).strip() else ""
    typer.echo(
        f"{program}: internal error: {type(exc).__name__}: {message} ({where}; please report it)",
        err=True,
    )
    return EXIT_INTERNAL


def run_command(app: typer.Typer, program: str, argv: list[str] | None = None) -> int:
    """Run a typer app as one of our commands and return its exit code (see the module docstring).

    Usage errors (unknown option, bad value) are refusals: one line, exit 1. ``--debug`` (any
    position) shows the traceback of an internal error instead of logging it.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    configure_process()
    _usable_streams()
    with _sigterm_as_interrupt():
        try:
            return _run(app, program, args, debug)
        except BrokenPipeError:  # stdout closed by a reader such as `head`: the work itself is done
            _silence(sys.stdout)
            return EXIT_DONE


def _usable_streams() -> None:
    """A closed stdout or stderr (``2>&-``) must not turn a run into an internal error: writes to it go
    nowhere instead."""
    import io

    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        try:
            usable = stream is not None and bool(os.fstat(stream.fileno()))
        except (io.UnsupportedOperation, AttributeError):
            usable = True  # not backed by a file descriptor (captured output): fine as it is
        except (OSError, ValueError):
            usable = False  # a closed descriptor
        if not usable:
            setattr(sys, name, open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process
        elif getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            # A file name that is not UTF-8 (``caf\udce9``) must not make printing it fail: stdout gives
            # the name's own bytes back (as ls does), stderr writes them escaped.
            stream.reconfigure(errors="surrogateescape" if name == "stdout" else "backslashreplace")


def _silence(stream) -> None:
    """After a broken pipe: point the stream at /dev/null so Python's exit flush does not complain."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
    except (OSError, ValueError, AttributeError):
        pass


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Ctrl-C (SIGINT) and SIGTERM (a service manager stopping us, ``kill``) end a command alike:
    :class:`Interrupted` unwinds it (temporary files removed, the run record closed), one line, exit 130.
    Only on the main thread, and the handlers are restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame) -> None:
        raise Interrupted()

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _run(app: typer.Typer, program: str, args: list[str], debug: bool) -> int:
    try:
        code = app(args=args, prog_name=program, standalone_mode=False)
    except LVUNetRuntimeError as exc:
        typer.echo(f"{program}: error: {_with_hint(first_line(exc), exc)}", err=True)
        return exc.exit_code
    except (KeyboardInterrupt, Interrupted) as exc:
        hint = getattr(exc, "hint", "") or (
            "what was written so far is complete and recorded: rerun the same command to do the rest"
        )
        typer.echo(f"{program}: interrupted; {hint}", err=True)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        raise  # handled by run_command: the reader of stdout went away
    except SystemExit:
        if type(sys.stdout).__name__ == "PacifyFlushWrapper":
            raise BrokenPipeError from None  # typer's own handling of a broken stdout: exit 1
        raise
    except OSError as exc:
        typer.echo(f"{program}: error: {_with_hint(describe_os_error(exc), exc)}", err=True)
        return EXIT_PARTIAL
    except Exception as exc:
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # click's usage errors
            typer.echo(f"{program}: error: {exc.format_message()} (see {program} --help)", err=True)
            return EXIT_REFUSED
        return _internal_error(program, exc, debug)
    return EXIT_DONE if code is None else int(code)


def _runtime_line() -> str:
    """``; onnxruntime 1.32.0; providers CPU, WebGpu; WebGPU adapters: ...`` (what this install can
    run on), or nothing where onnxruntime cannot be asked."""
    import importlib.util

    try:
        import onnxruntime as ort

        providers = [p.removesuffix("ExecutionProvider") for p in ort.get_available_providers()]
        line = f"; onnxruntime {ort.__version__}; providers {', '.join(providers)}"
    except Exception:  # noqa: BLE001 - a missing or broken onnxruntime only shortens the line
        return ""
    if importlib.util.find_spec("onnxruntime_ep_webgpu") is not None:
        from lvunet_runtime.webgpu import adapters

        found = adapters()
        line += f"; WebGPU adapters: {'; '.join(found) if found else 'none'}"
    return line


def version_option(program: str, package: str = "lvunet_runtime"):
    """A ``--version`` option for ``program`` that prints its version (and ONNX Runtime's) and exits."""

    def show(value: bool) -> None:
        if value:
            import importlib

            version = importlib.import_module(package).__version__
            typer.echo(f"{program} {version} (Python {sys.version.split()[0]}{_runtime_line()})")
            raise typer.Exit(EXIT_DONE)

    return typer.Option(
        False, "--version", callback=show, is_eager=True, help="Print the version and exit."
    )
