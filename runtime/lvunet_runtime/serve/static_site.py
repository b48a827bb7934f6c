"""``lvunet-serve --static DIR``: the page as a self-contained folder that segments in the browser.

The folder holds the same page as ``lvunet-serve`` (``index.html``, ``static/``), the models
(``models/*.onnx``), one sidecar ``models/models.json`` with each model's contract as the runtime reads
it from the file's metadata (the one source of truth: the browser cannot read ONNX metadata), and ONNX
Runtime Web's files (``static/ort/``). Those come from the npm registry at a pinned version and sha256,
fetched once into a cache (``$LVUNET_CACHE`` or ``~/.cache/lvunet``) or taken from ``--ort-web FILE``
(the package's ``.tgz``, for machines without network). Nothing in the folder makes a network request:
every path is relative and local.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path

from lvunet_runtime.errors import LVUNetRuntimeError, describe_os_error, first_line

ORT_WEB_VERSION = "1.30.0"
ORT_WEB_SHA256 = "d2228df7e4616bc3348bf504ee888f3bec43789a273f0a63f3e68d203ce3bf71"
ORT_WEB_URL = f"https://registry.npmjs.org/onnxruntime-web/-/onnxruntime-web-{ORT_WEB_VERSION}.tgz"
# What the page loads: the WASM build (14 MB) and the WebGPU build (27 MB; it also runs WASM).
ORT_FILES = {
    "wasm": ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"),
    "webgpu": (
        "ort.webgpu.min.js",
        "ort-wasm-simd-threaded.asyncify.mjs",
        "ort-wasm-simd-threaded.asyncify.wasm",
    ),
}
PAGE_FILES = ("app.js", "process.js", "browser.js", "style.css", "icon.svg")
MARKER = "lvunet-static.json"  # names a folder this command wrote (and may write again)


def cache_dir() -> Path:
    return Path(os.environ.get("LVUNET_CACHE") or Path.home() / ".cache" / "lvunet")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def ort_web_package(given: Path | None = None) -> Path:
    """The onnxruntime-web package file, checked against its pinned sha256: ``given``, the cached copy,
    or downloaded once from the npm registry into the cache.

    Raises:
        LVUNetRuntimeError: the file is not the pinned package, or it cannot be fetched.
    """
    if given is not None:
        if not given.is_file():
            raise LVUNetRuntimeError(f"--ort-web {given}: no such file")
        if sha256_of(given) != ORT_WEB_SHA256:
            raise LVUNetRuntimeError(
                f"--ort-web {given} is not onnxruntime-web {ORT_WEB_VERSION} (its sha256 differs); "
                f"get it from {ORT_WEB_URL}"
            )
        return given
    cached = cache_dir() / f"onnxruntime-web-{ORT_WEB_VERSION}.tgz"
    if cached.is_file() and sha256_of(cached) == ORT_WEB_SHA256:
        return cached
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cached.parent, suffix=".part", delete=False) as part:
            with urllib.request.urlopen(ORT_WEB_URL, timeout=60) as response:
                shutil.copyfileobj(response, part)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise LVUNetRuntimeError(
            f"onnxruntime-web {ORT_WEB_VERSION} could not be downloaded from the npm registry "
            f"({first_line(getattr(exc, 'reason', exc))}); on a machine without network, download "
            f"{ORT_WEB_URL} elsewhere and give it with --ort-web FILE"
        ) from None
    except OSError as exc:
        raise LVUNetRuntimeError(f"{cached.parent}: {describe_os_error(exc)}") from None
    got = sha256_of(Path(part.name))
    if got != ORT_WEB_SHA256:
        os.unlink(part.name)
        raise LVUNetRuntimeError(
            f"the download of {ORT_WEB_URL} has sha256 {got[:12]}..., not the pinned "
            f"{ORT_WEB_SHA256[:12]}...: refused"
        )
    os.replace(part.name, cached)
    return cached


def extract_ort(package: Path, into: Path, webgpu: bool) -> dict[str, int]:
    """The page's ONNX Runtime Web files from the package into ``into``; their sizes."""
    wanted = [*ORT_FILES["wasm"], *(ORT_FILES["webgpu"] if webgpu else ())]
    into.mkdir(parents=True, exist_ok=True)
    sizes = {}
    with tarfile.open(package, "r:gz") as archive:
        for name in wanted:
            member = archive.getmember(f"package/dist/{name}")
            if not member.isfile():
                raise LVUNetRuntimeError(f"{package}: package/dist/{name} is not a file")
            with archive.extractfile(member) as source, open(into / name, "wb") as target:
                shutil.copyfileobj(source, target)
            sizes[name] = member.size
    return sizes


def page_html(template: str, default: str, names: list[str]) -> str:
    """lvunet-serve's page for the folder: relative paths, the in-browser scripts, its own words."""
    from html import escape

    html = template.replace('href="/static/', 'href="static/').replace(
        'src="/static/', 'src="static/'
    )
    html = html.replace(
        '<script src="static/app.js"></script>',
        '<script src="static/process.js"></script>\n<script src="static/browser.js"></script>\n'
        '<script src="static/app.js"></script>',
    )
    html = html.replace(
        "Images stay on this computer.",
        "Images never leave this device: the model runs in this browser.",
    )
    options = "".join(
        f'<option value="{escape(n)}"{" selected" if n == default else ""}>{escape(n)}</option>'
        for n in names
    )
    html = html.replace('<select id="model"></select>', f'<select id="model">{options}</select>')
    start, end = html.index("<footer"), html.index("</footer>") + len("</footer>")
    footer = (
        '<footer class="muted">lvunet-serve --static <span id="version"></span> &middot; the model '
        f"runs in this browser (ONNX Runtime Web {ORT_WEB_VERSION}); nothing is sent anywhere "
        "&middot; downloads are made here at the slider's threshold, the pixels of "
        "<code>lvunet-infer --threshold T</code></footer>"
    )
    return html[:start] + footer + html[end:]


def check_folder(folder: Path) -> None:
    """A new or empty folder, or one this command wrote before; never a folder of other files."""
    if folder.exists() and not folder.is_dir():
        raise LVUNetRuntimeError(f"--static {folder} is a file; give a folder")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / MARKER).is_file():
        raise LVUNetRuntimeError(
            f"--static {folder} already holds files not written by lvunet-serve --static; "
            "give an empty or new folder"
        )


def model_catalog(models: dict[str, Path]) -> list[dict]:
    """Each model's name, file name in the folder, sha256 and contract, as the runtime reads them."""
    from lvunet_runtime.segmenter import Segmenter

    catalog, used = [], set()
    for name, path in models.items():
        segmenter = Segmenter(str(path))
        stem, number = Path(name).stem, 1
        while stem in used:  # a folder's polyp.onnx beside the bundled polyp
            number += 1
            stem = f"{Path(name).stem}-{number}"
        used.add(stem)
        catalog.append(
            {
                "name": name,
                "file": f"{stem}.onnx",
                "sha256": segmenter.sha256,
                "contract": segmenter.contract.to_dict(),
            }
        )
    return catalog


def write_static(
    folder: Path,
    models: dict[str, Path],
    default: str,
    *,
    ort_web: Path | None = None,
    webgpu: bool = True,
) -> dict:
    """Write the folder; returns what it holds (files and sizes, written to ``lvunet-static.json``).

    Raises:
        LVUNetRuntimeError: the folder holds other files (never overwritten), a model cannot be read,
            or ONNX Runtime Web cannot be had.
    """
    from lvunet_runtime.version import __version__

    check_folder(folder)
    if default not in models:
        raise LVUNetRuntimeError(f"--model {default}: not among {', '.join(models)}")
    package = ort_web_package(ort_web)
    catalog = model_catalog(models)
    (folder / "models").mkdir(parents=True, exist_ok=True)
    for entry, path in zip(catalog, models.values(), strict=True):
        shutil.copyfile(path, folder / "models" / entry["file"])
    static = resources.files("lvunet_runtime.serve") / "static"
    (folder / "static").mkdir(exist_ok=True)
    for name in PAGE_FILES:
        (folder / "static" / name).write_bytes((static / name).read_bytes())
    ort_sizes = extract_ort(package, folder / "static" / "ort", webgpu)
    html = page_html((static / "index.html").read_text(encoding="utf-8"), default, list(models))
    (folder / "index.html").write_text(html, encoding="utf-8")
    ort = {"version": ORT_WEB_VERSION, "sha256": ORT_WEB_SHA256, "webgpu": webgpu}
    sidecar = {"version": __version__, "default": default, "models": catalog, "ort_web": ort}
    (folder / "models" / "models.json").write_text(json.dumps(sidecar, indent=1) + "\n")
    files = [p for p in folder.rglob("*") if p.is_file() and p.name != MARKER]
    summary = {
        "version": __version__,
        "ort_web": ORT_WEB_VERSION,
        "ort_bytes": sum(ort_sizes.values()),
        "model_bytes": sum((folder / "models" / e["file"]).stat().st_size for e in catalog),
        "files": sorted(str(p.relative_to(folder)) for p in files),
    }
    (folder / MARKER).write_text(json.dumps(summary, indent=1) + "\n")
    return summary
