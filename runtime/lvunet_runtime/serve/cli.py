"""``lvunet-serve``: start the local web page and its API (needs ``lvunet-runtime[serve]``)."""

from __future__ import annotations

import ipaddress
import socket
import sys
from pathlib import Path

import typer

from lvunet_runtime.cli import DEVICE_HELP, PRECISION_HELP, TTA_HELP, _providers
from lvunet_runtime.command import EXIT_CODES_HELP, run_command, version_option
from lvunet_runtime.errors import Interrupted, LVUNetRuntimeError
from lvunet_runtime.image import DEFAULT_MAX_PIXELS
from lvunet_runtime.serve.limits import (
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_SHUTDOWN_TIMEOUT_S,
    Limits,
    fit_connections,
)

INSTALL = "pip install 'lvunet-runtime[serve]'"
serve_app = typer.Typer(add_completion=False, epilog=EXIT_CODES_HELP, rich_markup_mode=None)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str, extra: list[str]) -> list[str]:
    """Host header values the server answers (anything else is refused: DNS rebinding)."""
    names = {host.lower(), *(h.lower() for h in extra)}
    if _is_loopback(host):
        names |= {"127.0.0.1", "localhost"}
    if host in ("0.0.0.0", "::"):
        names |= {"127.0.0.1", "localhost", socket.gethostname().lower(), socket.getfqdn().lower()}
    return sorted(names)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything else starts (a clear error for a taken port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named explicitly: asyncio sets TCP_NODELAY on accepted connections only for sockets
    # whose proto says TCP; without it each keep-alive request waited ~40 ms on delayed ACKs.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = "is in use" if exc.errno in (98, 48, 10048) else f"cannot be used ({exc.strerror})"
        raise LVUNetRuntimeError(
            f"{host}:{port} {reason}; pick another with --port (0 picks a free one)"
        ) from None
    sock.listen(128)
    return sock


@serve_app.command(epilog=EXIT_CODES_HELP)
def serve_command(
    model: str = typer.Option(
        "polyp",
        "--model",
        "-m",
        help="Model the page starts with (bundled name or a --models-dir file).",
    ),
    models_dir: Path | None = typer.Option(
        None, help="A folder of .onnx files to offer besides the bundled models (never uploads)."
    ),
    host: str = typer.Option(
        "127.0.0.1", help="Address to listen on; anything but loopback has NO authentication."
    ),
    port: int = typer.Option(8000, min=0, max=65535, help="Port (0 picks a free one)."),
    allow_host: list[str] = typer.Option(
        [], help="Another Host header name to answer (e.g. this machine's DNS name); repeatable."
    ),
    provider: str | None = typer.Option(None, help="Execution provider, e.g. cpu, openvino, cuda."),
    device: str | None = typer.Option(None, help=DEVICE_HELP),
    precision: str | None = typer.Option(None, help=PRECISION_HELP),
    threads: int | None = typer.Option(None, min=1, help="ONNX Runtime intra-op threads."),
    tta: str = typer.Option("off", help=TTA_HELP),
    max_pixels: int = typer.Option(
        DEFAULT_MAX_PIXELS, min=1, help="Refuse uploads with more pixels than this."
    ),
    max_upload_mb: int = typer.Option(50, min=1, help="Refuse uploads larger than this."),
    max_connections: int = typer.Option(
        DEFAULT_MAX_CONNECTIONS,
        min=1,
        help="Connections open at once; more are answered 503 (lowered to fit ulimit -n).",
    ),
    header_timeout: float = typer.Option(
        DEFAULT_HEADER_TIMEOUT_S, min=0.1, help="Seconds a client has to send a request's headers."
    ),
    body_timeout: float = typer.Option(
        DEFAULT_BODY_TIMEOUT_S, min=0.1, help="Seconds a client has to send a request's body."
    ),
    shutdown_timeout: float = typer.Option(
        DEFAULT_SHUTDOWN_TIMEOUT_S,
        min=0,
        help="Seconds Ctrl+C or SIGTERM waits for requests in flight before closing them.",
    ),
    static: Path | None = typer.Option(
        None,
        help="Write the page as a self-contained folder that segments in the browser (ONNX Runtime "
        "Web; no server process, nothing installed) and exit.",
    ),
    ort_web: Path | None = typer.Option(
        None,
        help="With --static: the onnxruntime-web package (.tgz) to take the browser runtime from, "
        "for machines without network (default: downloaded once from the npm registry, sha256-pinned).",
    ),
    webgpu: bool = typer.Option(
        True, help="With --static: also carry ONNX Runtime Web's WebGPU build (27 MB)."
    ),
    version: bool = version_option("lvunet-serve"),
) -> None:
    """A local web page to segment images and a camera, and the HTTP API behind it (/openapi.json).

    Research software, not a medical device.
    """
    if static is not None:
        return write_static_folder(static, model, models_dir, ort_web, webgpu)
    try:
        import uvicorn  # noqa: F401 - its absence is the message below

        from lvunet_runtime.serve.app import Settings, create_app
    except ImportError:
        raise LVUNetRuntimeError(f"lvunet-serve needs its extra: {INSTALL}") from None
    from lvunet_runtime.console import quiet_onnxruntime

    quiet_onnxruntime()
    if models_dir is not None and not models_dir.is_dir():
        raise LVUNetRuntimeError(f"--models-dir {models_dir}: not a folder")
    from lvunet_runtime.segmenter import TTA_VIEWS, SegmenterSpec

    if tta not in TTA_VIEWS:
        raise LVUNetRuntimeError(f"--tta must be one of {', '.join(TTA_VIEWS)}, not {tta!r}")
    try:
        limits, lowered = fit_connections(
            Limits(max_connections, header_timeout, body_timeout, shutdown_timeout)
        )
    except ValueError as exc:
        raise LVUNetRuntimeError(str(exc)) from None
    if lowered:
        typer.echo(f"lvunet-serve: warning: {lowered}", err=True)
    settings = Settings(
        model=model,
        models_dir=models_dir,
        segmenter=SegmenterSpec(
            providers=tuple(_providers(provider) or ()) or None,
            threads=threads,
            device=device,
            precision=precision,
            tta=tta,
        ),
        max_pixels=max_pixels,
        max_upload_bytes=max_upload_mb << 20,
        allowed_hosts=allowed_hosts(host, allow_host),
        limits=limits,
    )
    app = create_app(settings)
    try:
        run_server(app, host, port, model)
    finally:
        app.state.service.close()


def write_static_folder(
    folder: Path, model: str, models_dir: Path | None, ort_web: Path | None, webgpu: bool
) -> None:
    """``--static DIR``: the bundled models and a --models-dir's, the page and ONNX Runtime Web."""
    from lvunet_runtime.model_files import bundled_models, resolve_model
    from lvunet_runtime.serve.static_site import write_static

    if models_dir is not None and not models_dir.is_dir():
        raise LVUNetRuntimeError(f"--models-dir {models_dir}: not a folder")
    models = {name: resolve_model(name) for name in bundled_models()}
    for path in sorted(models_dir.glob("*.onnx")) if models_dir is not None else []:
        models.setdefault(path.name, path)
    summary = write_static(folder, models, model, ort_web=ort_web, webgpu=webgpu)
    typer.echo(
        f"lvunet-serve: wrote {folder}: the page, {len(models)} models "
        f"({summary['model_bytes'] / 1e6:.1f} MB), ONNX Runtime Web {summary['ort_web']} "
        f"({summary['ort_bytes'] / 1e6:.0f} MB); open it from any static web server, e.g. "
        f"python3 -m http.server -d {folder}"
    )


def run_server(app, host: str, port: int, model: str) -> None:
    """Check the default model, listen, say where, serve until Ctrl+C."""
    import uvicorn

    from lvunet_runtime.serve.app import ApiError

    try:
        segmenter, _ = app.state.service.models.get(model)  # a bad default model refuses first
    except ApiError as exc:
        raise LVUNetRuntimeError(str(exc)) from None
    sock = bind(host, port)
    try:
        if not _is_loopback(host):
            typer.echo(
                f"lvunet-serve: warning: listening on {host} with NO authentication: anyone who can "
                "reach this machine can use it. Their browsers allow the camera only over https or "
                "localhost.",
                err=True,
            )
        shown = f"[{host}]" if ":" in host else host
        typer.echo(
            f"lvunet-serve: http://{shown}:{sock.getsockname()[1]}/ (model {model}, "
            f"{segmenter.active_providers[0]}); Ctrl+C stops. Research software, not a medical device.",
        )
        sys.stdout.flush()
        from lvunet_runtime.serve.limits import one_line_logs

        one_line_logs()
        config = server_config(app, app.state.service.settings.limits)
        try:
            uvicorn.Server(config).run(sockets=[sock])
        except (
            KeyboardInterrupt,
            Interrupted,
        ):  # uvicorn re-raises the signal after its clean shutdown
            typer.echo("lvunet-serve: stopped")
    finally:
        sock.close()


def server_config(app, limits: Limits):
    """uvicorn's configuration with the server's limits (see :mod:`lvunet_runtime.serve.limits`)."""
    import uvicorn

    from lvunet_runtime.serve.limits import guarded_protocol

    return uvicorn.Config(
        app,
        http=guarded_protocol(limits),
        log_config=None,  # one_line_logs() sets uvicorn's loggers up: no tracebacks on the console
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=limits.shutdown_timeout_s,
    )


def main() -> None:
    """``lvunet-serve`` entry point."""
    sys.exit(run_command(serve_app, "lvunet-serve"))
