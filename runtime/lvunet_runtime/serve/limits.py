"""What ``lvunet-serve`` allows a connection: time to send its headers and its body, how many may be open
at once, how long a stop waits for requests in flight.

uvicorn times out idle keep-alive connections only; a client that sends nothing, or its headers or body a
byte at a time, would hold a connection (and a file descriptor) forever. :func:`guarded_protocol` is
uvicorn's own HTTP/1.1 protocol (h11) with these limits added: a connection past ``max_connections`` is
answered 503 at once and closed, and a request whose headers or body have not arrived in time is answered
408 and closed. The connection cap is kept below the process's descriptor limit (:func:`fit_connections`),
so accepting never runs out of descriptors.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from dataclasses import dataclass

DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_BODY_TIMEOUT_S = 120.0
DEFAULT_SHUTDOWN_TIMEOUT_S = 5.0
DESCRIPTOR_RESERVE = (
    32  # model sessions, thread pools, logs: descriptors the server needs besides sockets
)


@dataclass(frozen=True)
class Limits:
    """Every limit is a setting (``lvunet-serve --help``), so tests can run with small ones."""

    max_connections: int = DEFAULT_MAX_CONNECTIONS
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    shutdown_timeout_s: float = DEFAULT_SHUTDOWN_TIMEOUT_S


def _response(status: str, message: str, extra: str = "") -> bytes:
    body = json.dumps({"error": message}).encode()
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        f"connection: close\r\n{extra}\r\n"
    )
    return head.encode("latin-1") + body


class _Deadlines:
    """The timers of :func:`guarded_protocol`'s class: one deadline for what the client owes now."""

    _timer = None
    limits: Limits

    def _arm(self) -> None:
        """A deadline for the headers (state IDLE) or the body (SEND_BODY), from their first byte."""
        import h11

        wanted = {h11.IDLE: "headers", h11.SEND_BODY: "body"}.get(self.conn.their_state)
        if wanted is None:
            self._cancel()
            return
        if self._timer is not None and self._timer[0] == wanted:
            return  # the deadline counts from the first byte, not the latest
        if wanted == "headers" and self.timeout_keep_alive_task is not None:
            return  # idle between requests: uvicorn's keep-alive timer runs
        self._cancel()
        seconds = (
            self.limits.header_timeout_s if wanted == "headers" else self.limits.body_timeout_s
        )
        self._timer = (wanted, self.loop.call_later(seconds, self._expire, wanted, seconds))

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer[1].cancel()
            self._timer = None

    def _expire(self, wanted: str, seconds: float) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or not self.cycle.response_started:
            message = f"request {wanted} not received within {seconds:g} s"
            self.transport.write(_response("408 Request Timeout", message))
        self.transport.close()


def guarded_protocol(limits: Limits):
    """uvicorn's h11 protocol class with ``limits`` applied (pass it as ``uvicorn.Config(http=...)``)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    busy = _response(
        "503 Service Unavailable",
        f"server busy: {limits.max_connections} connections open; try again",
        "retry-after: 1\r\n",
    )

    class GuardedH11Protocol(_Deadlines, H11Protocol):
        _refused = False

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                self._refused = True
                transport.write(busy)
                transport.close()
                return
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            super().data_received(data)
            self._arm()

        def on_response_complete(self) -> None:
            self._cancel()  # between requests uvicorn's keep-alive timeout applies
            super().on_response_complete()

        def connection_lost(self, exc) -> None:
            self._cancel()
            super().connection_lost(exc)

    GuardedH11Protocol.limits = limits
    return GuardedH11Protocol


def descriptor_limit() -> int | None:
    """The soft limit on open files of this process (None where the OS has no such limit)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def open_descriptors() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 16  # no /proc (macOS): a typical count for a started interpreter


def fit_connections(limits: Limits) -> tuple[Limits, str | None]:
    """``limits`` with the connection cap lowered to what the descriptor limit leaves, and a line saying
    so (None when it fits). Raises ValueError when the limit leaves no room for one connection."""
    soft = descriptor_limit()
    if soft is None:
        return limits, None
    room = soft - open_descriptors() - DESCRIPTOR_RESERVE
    if room < 1:
        raise ValueError(
            f"this process may open only {soft} files, too few to serve; raise it (ulimit -n)"
        )
    if limits.max_connections <= room:
        return limits, None
    fitted = Limits(room, limits.header_timeout_s, limits.body_timeout_s, limits.shutdown_timeout_s)
    return fitted, (
        f"--max-connections lowered to {room}: this process may open only {soft} files (ulimit -n)"
    )


class LoopFaults:
    """The event loop's exception handler: a fault of the accept loop (out of descriptors) or of a
    connection is one line on stderr, at most one per ``every_s`` seconds, never a traceback."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self._last = -float("inf")
        self.suppressed = 0

    def __call__(self, loop, context: dict) -> None:
        now = time.monotonic()
        if now - self._last < self.every_s:
            self.suppressed += 1
            return
        self._last = now
        exc = context.get("exception")
        what = f"{type(exc).__name__}: {exc}" if exc is not None else ""
        more = f" ({self.suppressed} more since the last line)" if self.suppressed else ""
        self.suppressed = 0
        print(
            f"lvunet-serve: warning: {context.get('message', 'event loop fault')}"
            f"{': ' + what if what else ''}{more}; the server keeps running",
            file=sys.stderr,
            flush=True,
        )


class OneLineLogs(logging.Formatter):
    """uvicorn's own messages as ``lvunet-serve: warning: ...`` lines: an exception is named by its type
    and first line, never a traceback; a request cancelled by a bounded shutdown is said as such."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, asyncio.CancelledError):
            message = "a request still in flight was closed by the shutdown bound"
        elif exc is not None:
            first = next((line for line in str(exc).splitlines() if line.strip()), "")
            message = f"{message}: {type(exc).__name__}{': ' + first[:300] if first else ''}"
        level = "error" if record.levelno >= logging.ERROR else "warning"
        return f"lvunet-serve: {level}: {message.splitlines()[0] if message else ''}"


def one_line_logs() -> None:
    """Route uvicorn's loggers through :class:`OneLineLogs` (the command's entry point calls this)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineLogs())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.asgi"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler] if name == "uvicorn" else []
        logger.propagate = name != "uvicorn"
        logger.setLevel(logging.WARNING)
