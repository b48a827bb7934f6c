"""Choosing a provider by measurement (``lvunet-bench --recommend``) and following it (``--provider auto``).

On a 0.16 GMAC model a GPU does not always beat the CPU, so the choice is measured on the machine itself:
every provider and precision this install can run (hardware adapters only: a software renderer is never
recommended) is timed after a long warm-up (GPUs leave their low-power clocks after ~100 runs), its masks
compared with the CPU EP's in fp32, and the fastest one that agrees is recorded. The record is one JSON
file in the user's cache folder (never the repository), keyed by the model file's sha256, the
onnxruntime version, the CPU model and the WebGPU adapter, so a new model, upgrade or GPU asks again.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

from lvunet_runtime.errors import LVUNetRuntimeError

AGREEMENT = 0.99  # the lowest per-image Dice against CPU fp32 a recommendation may have
RECORD_VERSION = 1


def cache_file() -> Path:
    """``$XDG_CACHE_HOME/lvunet/providers.json`` (``~/.cache`` by default; ``%LOCALAPPDATA%`` on
    Windows); ``LVUNET_CACHE_DIR`` replaces the folder."""
    folder = os.environ.get("LVUNET_CACHE_DIR")
    if not folder:
        if sys.platform == "win32":
            base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        else:
            base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        folder = str(Path(base) / "lvunet")
    return Path(folder) / "providers.json"


def _adapter_name() -> str:
    """The hardware WebGPU adapter's name, or ``none`` (no plugin, or only a software adapter)."""
    if importlib.util.find_spec("onnxruntime_ep_webgpu") is None:
        return "none"
    from lvunet_runtime.webgpu import choose

    try:
        return choose("gpu")[1].name
    except LVUNetRuntimeError:
        return "none"


def record_key(model: Path) -> str:
    """What a recommendation holds for: this model file, this onnxruntime, this CPU, this adapter."""
    import onnxruntime as ort

    from lvunet_runtime.data import file_sha256
    from lvunet_runtime.machine import machine_info

    return " | ".join([file_sha256(model), ort.__version__, machine_info()["cpu"], _adapter_name()])


def candidates() -> list[tuple[str, str | None]]:
    """(provider spec, device) pairs this install can run, CPU fp32 first."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    found: list[tuple[str, str | None]] = [("cpu", None)]
    if "OpenVINOExecutionProvider" in available:
        found += [("openvino", None), ("openvino:bf16", None)]
    for name, short in (
        ("CUDAExecutionProvider", "cuda"),
        ("TensorrtExecutionProvider", "tensorrt"),
        ("DmlExecutionProvider", "directml"),
        ("CoreMLExecutionProvider", "coreml"),
    ):
        if name in available:
            found.append((short, None))
    if _adapter_name() != "none":
        found.append(("webgpu", "gpu"))
    return found


def _read() -> dict:
    path = cache_file()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("record_version") != RECORD_VERSION:
        return {}
    return data.get("records", {}) if isinstance(data.get("records"), dict) else {}


def save(record: dict) -> None:
    """Add ``record`` to the cache file (atomically; other models' records kept)."""
    from lvunet_runtime.writer import write_atomic

    records = _read()
    records[record["key"]] = record
    payload = {"record_version": RECORD_VERSION, "records": records}
    path = cache_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, (json.dumps(payload, indent=1) + "\n").encode())


def lookup(model: Path) -> dict | None:
    """The recorded recommendation for ``model`` on this machine, or None."""
    record = _read().get(record_key(model))
    return record if isinstance(record, dict) and isinstance(record.get("provider"), str) else None


def resolve_auto(model: Path) -> tuple[list[str] | None, str | None, str | None, str]:
    """``--provider auto``: (providers, device, precision, one line saying what was chosen and why).
    With no record, the default order (providers None) and a line that says so."""
    from lvunet_runtime.providers import split_spec

    record = lookup(model)
    if record is None:
        return (
            None,
            None,
            None,
            (
                "--provider auto: no recommendation recorded for this model on this machine "
                "(lvunet-bench --recommend makes one); using the default provider order"
            ),
        )
    name, precision = split_spec(record["provider"])
    timing = f", {record['median_ms']:.2f} ms per image" if record.get("median_ms") else ""
    return (
        [name],
        record.get("device"),
        precision,
        (
            f"--provider auto: {record['provider']} (measured fastest that agrees with CPU fp32 by "
            f"lvunet-bench --recommend on {record.get('date', '?')[:10]}{timing})"
        ),
    )
