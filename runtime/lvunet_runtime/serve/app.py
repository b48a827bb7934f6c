"""The ``lvunet-serve`` web application: a page for people and an HTTP API behind it (FastAPI).

Everything the page shows comes through the API, with the same pre- and post-processing as
``lvunet-infer`` (a mask downloaded at threshold T is byte for byte the file ``lvunet-infer --threshold T``
writes). A segmented image keeps its model output (at the model's size) in a bounded in-memory store, so
re-thresholding and downloads never run the model again. Uploads are decoded in memory; nothing is
written to disk. Image names travel only in a request header and response bodies, never in URLs or logs.
The limits on connections, time and size are in :mod:`lvunet_runtime.serve.limits`; a fault of the
server (out of memory or descriptors) is a 5xx, never reported as a bad upload.
"""

from __future__ import annotations

import asyncio
import io
import secrets
import sys
import threading
import time
import zipfile
from collections import OrderedDict
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect

from lvunet_runtime.contract import threshold_problem
from lvunet_runtime.errors import MACHINE_ERRNOS, LVUNetRuntimeError, describe_os_error, first_line
from lvunet_runtime.image import DEFAULT_MAX_PIXELS, decode_image
from lvunet_runtime.model_files import bundled_models
from lvunet_runtime.outputs import encode_png, image_json, mask_png, overlay, probability_png
from lvunet_runtime.segmenter import Segmenter, SegmenterSpec
from lvunet_runtime.serve.limits import Limits, LoopFaults
from lvunet_runtime.version import __version__

DEFAULT_MAX_UPLOAD_MB = 50
DEFAULT_STORE_MB = 256
OUTPUTS = ("json", "mask", "probability", "overlay", "image")
MEDIA = {name: "image/png" for name in OUTPUTS} | {"json": "application/json"}


class ApiError(Exception):
    """A request the server refuses: HTTP status and one line for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Settings:
    """What ``lvunet-serve`` was started with."""

    model: str = "polyp"
    models_dir: Path | None = None
    segmenter: SegmenterSpec = field(default_factory=SegmenterSpec)  # every model opens with these
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB << 20
    store_bytes: int = DEFAULT_STORE_MB << 20
    allowed_hosts: list[str] = field(default_factory=lambda: ["127.0.0.1", "localhost"])
    limits: Limits = field(default_factory=Limits)


@dataclass
class Result:
    """One segmented upload, kept so it can be re-thresholded and downloaded without a model run."""

    output: np.ndarray  # the model's output at its own size
    size: tuple[int, int]  # the image's (height, width)
    name: str
    model: str
    upload: bytes  # the file as uploaded, decoded again only for an overlay
    segmenter: Segmenter  # the weights that made it, even after its file is replaced
    warning: str | None = None  # the input does not fit the model (contract.input_warning)

    @property
    def nbytes(self) -> int:
        return self.output.nbytes + len(self.upload)


class Models:
    """The bundled models and the ``.onnx`` files of one folder, each loaded once, on first use.

    Folder models are listed by file name (``name.onnx``) and never uploaded: the folder is read when the
    server starts and on each listing, so a file added later appears without a restart. A folder model's
    file is looked at on each use: replaced by other bytes (another sha256), it is loaded again and the
    console says so; removed, it is no longer served. Results keep the weights that made them.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._loaded: dict[str, tuple[Segmenter, threading.Lock, tuple | None]] = {}
        self._guard = threading.Lock()
        self.runs = 0  # model runs since the start (tests use it: re-thresholding must not add one)
        self.reloads = 0

    def sources(self) -> dict[str, Path | str]:
        found: dict[str, Path | str] = {name: name for name in bundled_models()}
        folder = self.settings.models_dir
        if folder is not None and folder.is_dir():
            for path in sorted(folder.glob("*.onnx")):
                if path.is_file() and path.name not in found:
                    found[path.name] = path
        return found

    def get(self, name: str) -> tuple[Segmenter, threading.Lock]:
        with self._guard:
            loaded = self._loaded.get(name)
        if loaded is not None and loaded[2] is None:  # bundled: never changes
            return loaded[0], loaded[1]
        source = self.sources().get(name)
        if source is None:
            raise ApiError(404, f"no model named {name!r}; GET /api/models lists them")
        stamp = _stamp(source)
        if loaded is not None and (loaded[2] == stamp or not self._changed(loaded[0], source)):
            with self._guard:
                self._loaded[name] = (loaded[0], loaded[1], stamp)
            return loaded[0], loaded[1]
        segmenter = self._open(name, source)
        with self._guard:
            if loaded is not None:
                self.reloads += 1
                print(
                    f"lvunet-serve: {name} changed on disk: now serving {segmenter.identity} "
                    f"(was {loaded[0].identity})",
                    file=sys.stderr,
                    flush=True,
                )
            lock = loaded[1] if loaded is not None else threading.Lock()
            self._loaded[name] = (segmenter, lock, stamp)
            return segmenter, lock

    def _open(self, name: str, source: Path | str) -> Segmenter:
        try:
            segmenter = self.settings.segmenter.with_(model=str(source)).open()
            segmenter.sha256  # noqa: B018 - hashed now: the identity names the bytes that were loaded
        except LVUNetRuntimeError as exc:
            raise ApiError(422, f"model {name!r} cannot be used: {first_line(exc)}") from None
        except OSError as exc:
            raise ApiError(
                422, f"model {name!r} cannot be read: {describe_os_error(exc)}"
            ) from None
        return segmenter

    @staticmethod
    def _changed(segmenter: Segmenter, source: Path | str) -> bool:
        from lvunet_runtime.data import file_sha256

        try:
            return file_sha256(Path(source)) != segmenter.sha256
        except OSError:
            return True

    def describe(self, name: str) -> dict:
        segmenter, _ = self.get(name)
        contract = segmenter.contract
        return {
            "name": name,
            "identity": segmenter.identity,
            "source": "bundled" if name in bundled_models() else "folder",
            "input_size": [contract.input_height, contract.input_width],
            "threshold": segmenter.threshold,
            "label": contract.label,
            "training_dataset": contract.training_dataset,
            "test_metrics": contract.test_metrics,
            "providers": segmenter.active_providers,
            "adapter": segmenter.adapter.to_dict() if segmenter.adapter is not None else None,
        }


def _stamp(source: Path | str) -> tuple | None:
    """What says a folder model's file may have changed (None for a bundled model)."""
    if isinstance(source, str):
        return None
    try:
        info = source.stat()
    except OSError:
        return ("gone",)
    return (info.st_mtime_ns, info.st_size, info.st_ino)


class Store:
    """Results by id, oldest dropped first once their bytes pass the budget."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._items: OrderedDict[str, Result] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def add(self, result: Result) -> str:
        key = secrets.token_urlsafe(12)
        with self._lock:
            self._items[key] = result
            self._bytes += result.nbytes
            while self._bytes > self.budget and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.nbytes
        return key

    def get(self, key: str) -> Result:
        with self._lock:
            result = self._items.get(key)
            if result is not None:
                self._items.move_to_end(key)
        if result is None:
            raise ApiError(404, "result not found or expired; segment the image again")
        return result


class Service:
    """The work behind the API: decode an upload, run a model, threshold, encode."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.models = Models(settings)
        self.store = Store(settings.store_bytes)

    def close(self) -> None:
        """Nothing is kept on disk; kept for callers that close a service when the server ends."""

    def decode(self, data: bytes, max_pixels: int | None = None) -> np.ndarray:
        """An uploaded file -> RGB uint8, through the same reader as ``lvunet-infer`` (in memory)."""
        if not data:
            raise ApiError(400, "empty upload: send the image file as the request body")
        try:
            rgb, _ = decode_image(
                data, name="the upload", max_pixels=max_pixels or self.settings.max_pixels
            )
        except LVUNetRuntimeError as exc:
            raise ApiError(400, first_line(exc)) from None
        return rgb  # the machine's faults (memory, descriptors) go on to fault_response: a 5xx

    def segment(self, data: bytes, model: str) -> tuple[Result, Segmenter, float]:
        segmenter, lock = self.models.get(model)
        rgb = self.decode(data)
        warning = segmenter.input_warning(rgb)
        prepared = segmenter.prepare(rgb)
        with lock:  # one run at a time per model: concurrent tabs queue here, not oversubscribing
            start = time.perf_counter()
            output = segmenter.run_prepared([prepared])[0]
            elapsed = (time.perf_counter() - start) * 1000
            self.models.runs += 1
        result = Result(output, prepared.size, "", model, data, segmenter, warning)
        return result, segmenter, elapsed

    def render(self, result: Result, output: str, threshold: float | None) -> tuple[bytes, dict]:
        """One output of a result at ``threshold``: the bytes ``lvunet-infer`` would write."""
        segmenter = result.segmenter
        threshold = segmenter.threshold if threshold is None else threshold
        prediction = segmenter.finish(result.output, result.size, threshold=threshold)
        if output == "mask":
            return mask_png(prediction.mask), {}
        if output == "probability":
            return probability_png(prediction.probability), {}
        if output == "overlay":
            return encode_png(overlay(self.decode(result.upload), prediction.mask)), {}
        if output == "image":  # what the model saw, as PNG (browsers cannot show TIFF or 16-bit)
            return encode_png(self.decode(result.upload)), {}
        meta = {"input": result.name, "model": segmenter.identity, "threshold": threshold}
        data, stats = image_json(meta, prediction.mask, prediction.probability)
        return data, stats


def _stem(name: str) -> str:
    stem = Path(name.replace("\\", "/")).name.rsplit(".", 1)[0] or "image"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:100]


class _Sink(io.RawIOBase):
    """A write-only stream whose bytes are taken away as they come: a zip written into it is sent
    entry by entry instead of being built whole in memory."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


ZIP_OUTPUTS = (
    ("mask", "_mask.png"),
    ("overlay", "_overlay.png"),
    ("probability", "_prob.png"),
    ("json", ".json"),
)


def zip_stream(service: Service, results: list[Result], threshold: float | None):
    """Mask, overlay, probability map and JSON of each result, named as ``lvunet-infer`` names them:
    the zip's bytes, yielded one entry at a time (memory: one rendered output, not the archive)."""
    sink, used = _Sink(), set()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED) as archive:
        for result in results:
            stem, number = _stem(result.name), 1
            while stem in used:
                number += 1
                stem = f"{_stem(result.name)}-{number}"
            used.add(stem)
            for output, suffix in ZIP_OUTPUTS:
                archive.writestr(stem + suffix, service.render(result, output, threshold)[0])
                yield sink.take()
    yield sink.take()


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) past ``limit`` bytes before or while it is read. (Its time is
    bounded by the connection's body timeout, :mod:`lvunet_runtime.serve.limits`.)"""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "bad Content-Length header")
        if int(declared) > limit:
            raise ApiError(
                413, f"upload of {int(declared) >> 20} MB is over the limit of {limit >> 20} MB"
            )
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"upload is over the limit of {limit >> 20} MB")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(400, "the client went away before the upload was complete") from None
    return b"".join(chunks)


def _upload(body: bytes, content_type: str, limit: int) -> tuple[bytes, str | None]:
    """The image of a request body and its file name: the body itself, or the one file of a
    ``multipart/form-data`` form (``curl -F file=@scan.jpg``)."""
    if not content_type.lower().startswith("multipart/form-data"):
        return body, None
    from python_multipart.multipart import create_form_parser

    files = []
    config = {"MAX_MEMORY_FILE_SIZE": limit + 1, "MAX_BODY_SIZE": limit}
    try:
        parser = create_form_parser(
            {"Content-Type": content_type.encode("latin-1")}, None, files.append, config=config
        )
        parser.write(body)
        parser.finalize()
    except Exception as exc:  # noqa: BLE001 - python-multipart's errors vary by version
        raise ApiError(400, f"malformed multipart form ({first_line(exc)})") from None
    if len(files) != 1:
        names = ", ".join(repr(f.field_name.decode("utf-8", "replace")) for f in files) or "none"
        raise ApiError(400, f"a form must hold exactly one file (found {len(files)}: {names})")
    upload = files[0]
    upload.file_object.seek(0)
    name = upload.file_name.decode("utf-8", "replace") if upload.file_name else None
    return upload.file_object.read(), name


def _check_threshold(threshold: float | None) -> float | None:
    problem = None if threshold is None else threshold_problem(threshold)
    if problem:
        raise ApiError(422, problem)
    return threshold


def _output(output: str) -> str:
    if output not in OUTPUTS:
        raise ApiError(422, f"output must be one of {', '.join(OUTPUTS)}, not {output!r}")
    return output


def create_app(settings: Settings) -> FastAPI:
    """The application: page, static assets, API, and the request checks around them."""
    service = Service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Faults outside any request (accept() out of descriptors, a connection's transport): one
        # rate-limited line each, not a traceback per attempt.
        asyncio.get_running_loop().set_exception_handler(LoopFaults())
        try:
            yield
        finally:
            service.close()

    app = FastAPI(
        lifespan=lifespan,
        title="lvunet-serve",
        version=__version__,
        description=(
            "Segment images with LV-UNet ONNX models, with the same pre- and post-processing as "
            "lvunet-infer. Research software, not a medical device. Errors are JSON "
            '`{"error": "one line"}` with a 4xx status for the client\'s fault.'
        ),
        docs_url=None,  # FastAPI's docs page loads its scripts from a CDN; the schema is served offline
        redoc_url=None,
    )
    app.state.service = service
    add_checks(app, {h.lower() for h in settings.allowed_hosts})
    static = resources.files("lvunet_runtime.serve") / "static"

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(
            first_paint((static / "index.html").read_text(encoding="utf-8"), service)
        )

    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    add_model_api(app, service, settings)
    add_segment_api(app, service, settings)
    add_results_api(app, service)
    return app


def fault_response(path: str, exc: Exception) -> JSONResponse:
    """The server's own fault as one console line and a 5xx: 503 when the machine is out of memory or
    descriptors (it may pass), 500 otherwise. Never a 4xx: the client did nothing wrong."""
    if isinstance(exc, MemoryError) or (isinstance(exc, OSError) and exc.errno in MACHINE_ERRNOS):
        what = describe_os_error(exc) if isinstance(exc, OSError) else "out of memory"
        print(f"lvunet-serve: warning: {what} on {path}", file=sys.stderr, flush=True)
        return JSONResponse(
            {"error": f"server out of resources ({what.split(':')[0]}); try again"},
            status_code=503,
            headers={"Retry-After": "1"},
        )
    print(
        f"lvunet-serve: internal error on {path}: {type(exc).__name__}: {first_line(exc)}",
        file=sys.stderr,
        flush=True,
    )
    return JSONResponse(
        {"error": f"internal error ({type(exc).__name__}); the server keeps running"},
        status_code=500,
    )


PROVIDER_WORDS = {
    "CPUExecutionProvider": "this computer's processor",
    "OpenVINOExecutionProvider": "this computer's processor, through OpenVINO",
    "CUDAExecutionProvider": "the NVIDIA graphics card",
    "TensorrtExecutionProvider": "the NVIDIA graphics card (TensorRT)",
    "CoreMLExecutionProvider": "this Mac's Neural Engine or graphics",
    "DmlExecutionProvider": "the graphics card (DirectX)",
}


def runs_on(segmenter: Segmenter) -> str:
    """Where the model runs, in words a nurse understands (the provider's name goes in a tooltip)."""
    adapter = segmenter.adapter
    if adapter is not None:  # WebGPU: the adapter it chose
        kind = "software graphics, slow" if adapter.kind != "gpu" else "the graphics card"
        return f"{kind}: {adapter.name}"
    return PROVIDER_WORDS.get(segmenter.active_providers[0], segmenter.active_providers[0])


def first_paint(html: str, service: Service) -> str:
    """The page with its model list and where the model runs already in it, so nothing is empty or
    jumps while the page asks the API (the API's answers then only confirm them)."""
    from html import escape

    settings = service.settings
    options = []
    for name, source in service.models.sources().items():
        shown = name if isinstance(source, str) else f"{name} (folder)"
        chosen = " selected" if name == settings.model else ""
        options.append(f'<option value="{escape(name)}"{chosen}>{escape(shown)}</option>')
    html = html.replace(
        '<select id="model"></select>', f'<select id="model">{"".join(options)}</select>'
    )
    try:
        segmenter, _ = service.models.get(settings.model)
        words, title = runs_on(segmenter), segmenter.active_providers[0]
        html = html.replace(
            '<span id="provider">...</span>',
            f'<span id="provider" title="{escape(title)}">{escape(words)}</span>',
        )
    except ApiError:
        pass  # the page's own request says what is wrong
    return html


def add_checks(app: FastAPI, allowed: set[str]) -> None:
    """Requests refused before any work (Host, Origin), faults caught, every error as one JSON line."""

    @app.middleware("http")
    async def guard(request: Request, call_next):
        # A page on another site may send requests to 127.0.0.1; a browser names it in Origin.
        origin = request.headers.get("origin")
        if origin and request.method not in ("GET", "HEAD"):
            host = urlsplit(origin).hostname or ""
            if origin == "null" or host.lower() not in allowed:
                return JSONResponse({"error": "cross-origin request refused"}, status_code=403)
        try:
            return await call_next(request)
        except Exception as exc:  # noqa: BLE001 - one line on the console; the server keeps running
            return fault_response(request.url.path, exc)

    app.add_middleware(TrustedHostMiddleware, allowed_hosts=sorted(allowed) or ["127.0.0.1"])

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path"))
        return JSONResponse(
            {"error": f"{where or 'request'}: {first.get('msg', 'invalid request')}"},
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)


def add_model_api(app: FastAPI, service: Service, settings: Settings) -> None:
    """Health and models: what the page shows before any image (documented in /openapi.json)."""

    @app.get("/api/health", summary="Server status")
    def health() -> dict:
        """Version, the default model, the execution providers in use, and model runs so far."""
        segmenter, _ = service.models.get(settings.model)
        return {
            "status": "ok",
            "version": __version__,
            "default_model": settings.model,
            "model": segmenter.identity,
            "providers": segmenter.active_providers,
            "runs_on": runs_on(segmenter),
            "adapter": segmenter.adapter.to_dict() if segmenter.adapter is not None else None,
            "model_runs": service.models.runs,
            "model_reloads": service.models.reloads,
        }

    @app.get("/api/models", summary="Models that can be used")
    def models() -> dict:
        """The bundled models and the `.onnx` files of the folder given at start (`--models-dir`)."""
        sources = service.models.sources()
        return {
            "default": settings.model,
            "models": [
                {"name": name, "source": "bundled" if isinstance(src, str) else "folder"}
                for name, src in sources.items()
            ],
        }

    @app.get("/api/models/{name}", summary="One model's contract")
    def model_info(name: str) -> dict:
        """Input size, default threshold, label, training data and measured test accuracy."""
        return service.models.describe(name)


def add_segment_api(app: FastAPI, service: Service, settings: Settings) -> None:
    """Segment one image: the API behind every image of the page."""
    segment_body = {
        "requestBody": {
            "required": True,
            "description": (
                "The image file itself (PNG, JPEG, BMP, TIFF, WebP, ...), or a multipart form holding "
                "exactly one file (`curl -F file=@scan.jpg`)."
            ),
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                    }
                },
            },
        }
    }

    @app.post("/api/segment", summary="Segment one image", openapi_extra=segment_body)
    async def segment(
        request: Request,
        model: str | None = Query(None, description="Model name (default: the server's)."),
        threshold: float | None = Query(None, description="0 < T < 1 (default: the model's)."),
        output: str = Query("json", description="json, mask, probability, overlay or image."),
        store: bool = Query(
            True, description="Keep the result for /api/results (false for live frames)."
        ),
    ) -> Response:
        """Send the image as the body; get back the mask PNG, the probability map, an overlay, the
        decoded image, or the JSON `lvunet-infer --json` writes. The optional `X-Image-Name` header
        (URL-encoded) names the image in the JSON. Response headers: `X-Result-Id` (when stored), `X-Inference-Ms`, `X-Model`,
        `X-Provider`, `X-Image-Size` (WxH), and `X-Input-Warning` when the image clearly does not fit the
        model (a greyscale image sent to a colour model, or the reverse)."""
        threshold, output = _check_threshold(threshold), _output(output)
        body = await _body(request, settings.max_upload_bytes)
        data, form_name = _upload(
            body, request.headers.get("content-type", ""), settings.max_upload_bytes
        )
        name = request.headers.get("x-image-name")
        name = (unquote(name) if name is not None else form_name or "upload")[:300]
        result, segmenter, elapsed = await run_in_threadpool(
            service.segment, data, model or settings.model
        )
        result.name = name
        headers = {
            "X-Inference-Ms": f"{elapsed:.1f}",
            "X-Model": result.model,
            "X-Model-Identity": segmenter.identity,
            "X-Provider": segmenter.active_providers[0],
            "X-Image-Size": f"{result.size[1]}x{result.size[0]}",
        }
        if result.warning:
            headers["X-Input-Warning"] = result.warning
        if store:
            headers["X-Result-Id"] = service.store.add(result)
        body, _ = await run_in_threadpool(service.render, result, output, threshold)
        return Response(body, media_type=MEDIA[output], headers=headers)


def add_results_api(app: FastAPI, service: Service) -> None:
    """Stored results again, at any threshold, one by one or as a zip (no model run)."""

    @app.get("/api/results/{key}", summary="A stored result at a threshold")
    def result(
        key: str,
        threshold: float | None = Query(None, description="0 < T < 1 (default: the model's)."),
        output: str = Query("json", description="json, mask, probability, overlay or image."),
    ) -> Response:
        """Re-threshold a segmented image without running the model again."""
        threshold, output = _check_threshold(threshold), _output(output)
        body, _ = service.render(service.store.get(key), output, threshold)
        return Response(body, media_type=MEDIA[output])

    @app.get("/api/results.zip", summary="Several stored results as one zip")
    def results_zip(
        ids: list[str] = Query(..., description="Result ids (repeat the parameter)."),
        threshold: float | None = Query(None, description="0 < T < 1 (default: each model's)."),
    ) -> Response:
        """For each result: `<stem>_mask.png`, `<stem>_overlay.png`, `<stem>_prob.png`, `<stem>.json`."""
        threshold = _check_threshold(threshold)
        if len(ids) > 1000:
            raise ApiError(422, "at most 1000 results per zip")
        results = [service.store.get(key) for key in ids]  # every id checked before a byte is sent
        return StreamingResponse(
            zip_stream(service, results, threshold),
            media_type="application/zip",
            headers={"Content-Disposition": 'attachment; filename="lvunet-results.zip"'},
        )
