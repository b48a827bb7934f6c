"""Execution providers: which ones to ask ONNX Runtime for, with which options, and the one place a
session is opened (:func:`open_session`): never a silent fallback to a provider nobody asked for."""

from __future__ import annotations

import json
import os
from pathlib import Path

import onnxruntime as ort

import lvunet_runtime.webgpu as webgpu
from lvunet_runtime.console import ORT_ERRORS_ONLY, quiet_stderr
from lvunet_runtime.errors import ModelError, ProviderError, first_line
from lvunet_runtime.native import model_source

# Preferred order when nothing is asked for: accelerators first, CPU always last.
DEFAULT_PROVIDER_ORDER = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CoreMLExecutionProvider",
    "DmlExecutionProvider",
    "OpenVINOExecutionProvider",
    "CPUExecutionProvider",
)
PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "directml": "DmlExecutionProvider",
    "dml": "DmlExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "webgpu": "WebGpuExecutionProvider",
}
WEBGPU = webgpu.EP_NAME  # a plugin: registered on request (lvunet_runtime.webgpu)


OPENVINO_DEVICES = ("CPU", "GPU", "NPU", "AUTO")
WEBGPU_DEVICES = webgpu.DEVICES
INFERENCE_PRECISIONS = ("fp32", "fp16", "bf16")
INSTALL_HINTS = {
    "OpenVINOExecutionProvider": "pip uninstall -y onnxruntime && pip install onnxruntime-openvino",
    "CUDAExecutionProvider": "pip uninstall -y onnxruntime && pip install onnxruntime-gpu (NVIDIA GPU, CUDA 12)",
    "TensorrtExecutionProvider": "onnxruntime-gpu plus NVIDIA TensorRT libraries",
    "DmlExecutionProvider": "pip uninstall -y onnxruntime && pip install onnxruntime-directml (Windows)",
    "CoreMLExecutionProvider": "included in onnxruntime's macOS wheels",
    webgpu.EP_NAME: webgpu.INSTALL,
}


def provider_options(
    name: str,
    *,
    device: str | None = None,
    precision: str | None = None,
    threads: int | None = None,
) -> dict[str, str]:
    """Options we pass to a provider.

    CUDA: fast cuDNN algorithm choice. TensorRT: a persistent engine cache (building an engine takes
    minutes), fp16 when asked. OpenVINO: the device (CPU, GPU, NPU, AUTO) and the inference precision
    (bf16 through OpenVINO's ``INFERENCE_PRECISION_HINT``, which ONNX Runtime passes in ``load_config``;
    fp16 through the EP's ``precision`` option, for GPUs and NPUs) and, when ``threads`` is set, its own
    thread count (OpenVINO ignores ONNX Runtime's intra-op setting, so without it a folder run's model
    would compete with the pipeline's decode and write threads).
    """
    if name == "CUDAExecutionProvider":
        return {"cudnn_conv_algo_search": "HEURISTIC"}
    if name == "TensorrtExecutionProvider":
        cache = Path(
            os.environ.get("LVUNET_TRT_CACHE", Path.home() / ".cache" / "lvunet" / "tensorrt")
        )
        options = {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(cache)}
        return {**options, "trt_fp16_enable": "True"} if precision == "fp16" else options
    if name == "OpenVINOExecutionProvider":
        target = (device or "CPU").upper()
        options = {"device_type": target}
        if precision == "bf16":
            options["load_config"] = json.dumps({target: {"INFERENCE_PRECISION_HINT": "bf16"}})
        elif precision == "fp16":
            options["precision"] = "FP16"
        elif target in ("CPU", "GPU"):
            options["precision"] = "FP32"
        if threads is not None and target == "CPU":
            options["num_of_threads"] = str(threads)
        return options
    return {}


def check_accelerator_options(
    providers: list[str], device: str | None, precision: str | None
) -> None:
    """``device`` and ``precision`` only where a requested provider takes them, with known values."""
    if device is not None:
        if WEBGPU in providers:
            if device.lower() not in WEBGPU_DEVICES:
                raise ProviderError(
                    f"--device for --provider webgpu must be one of {', '.join(WEBGPU_DEVICES)}, "
                    f"not {device!r}"
                )
        elif "OpenVINOExecutionProvider" not in providers:
            raise ProviderError(
                "--device applies to the OpenVINO provider (CPU, GPU, NPU, AUTO) and the WebGPU "
                "provider (gpu, software): add --provider openvino or --provider webgpu"
            )
        elif device.upper() not in OPENVINO_DEVICES:
            raise ProviderError(
                f"--device must be one of {', '.join(OPENVINO_DEVICES)}, not {device!r}"
            )
    if precision is not None:
        if precision not in INFERENCE_PRECISIONS:
            raise ProviderError(
                f"--precision must be one of {', '.join(INFERENCE_PRECISIONS)}, not {precision!r}"
            )
        if precision != "fp32" and WEBGPU in providers:
            raise ProviderError(
                f"--precision {precision} is not offered on WebGPU: fp16 needs an adapter with "
                "shader-f16, and none reachable here has been measured; WebGPU runs fp32"
            )
        takes = {"OpenVINOExecutionProvider", "TensorrtExecutionProvider"} & set(providers)
        if precision != "fp32" and not takes:
            raise ProviderError(
                f"--precision {precision} applies to the OpenVINO (bf16, fp16) and TensorRT (fp16) "
                "providers; the CPU provider computes in the model's own precision"
            )


def resolve_providers(requested: list[str] | None) -> list[str]:
    """Providers to ask ONNX Runtime for.

    Nothing requested: every available provider of ``DEFAULT_PROVIDER_ORDER``, ending with CPU. An explicit
    request (short names such as ``cuda`` or full names) must be available, else ProviderError listing
    what is; there is no silent CPU fallback when a GPU was asked for.
    """
    wanted = [PROVIDER_ALIASES.get(n.strip().lower(), n.strip()) for n in requested or []]
    if WEBGPU in wanted:  # a plugin: registered when asked for, with its own install line
        webgpu.register()
    available = ort.get_available_providers()
    if not requested:
        return [p for p in DEFAULT_PROVIDER_ORDER if p in available] or ["CPUExecutionProvider"]
    resolved = []
    for name in requested:
        full = PROVIDER_ALIASES.get(name.strip().lower(), name.strip())
        if full not in available:
            raise ProviderError(_unavailable(name, full, available))
        resolved.append(full)
    return resolved


# What installs each provider that an onnxruntime may lack (the error says it).
PROVIDER_INSTALLS = {
    "CUDAExecutionProvider": "pip uninstall onnxruntime && pip install onnxruntime-gpu (NVIDIA GPUs)",
    "TensorrtExecutionProvider": "pip install onnxruntime-gpu and NVIDIA TensorRT",
    "OpenVINOExecutionProvider": "pip uninstall onnxruntime && pip install onnxruntime-openvino",
    "DmlExecutionProvider": "pip install onnxruntime-directml (Windows)",
    "CoreMLExecutionProvider": "the onnxruntime wheel for macOS",
}
NOT_OFFERED = ("AzureExecutionProvider",)  # present in every wheel, runs no model here


def _unavailable(name: str, full: str, available: list[str]) -> str:
    """Why ``name`` cannot be used: unknown (the known names listed) or not in this install (what
    installs it), and what can be used instead."""
    short = {v: k for k, v in PROVIDER_ALIASES.items()}
    usable = [p for p in available if p not in NOT_OFFERED]
    listing = ", ".join(f"{short[p]} ({p})" if p in short else p for p in usable)
    if full not in PROVIDER_ALIASES.values():
        known = ", ".join(dict.fromkeys(k for k in PROVIDER_ALIASES if k not in ("trt", "dml")))
        return f"unknown execution provider {name!r}; known: {known}; usable here: {listing}"
    install = PROVIDER_INSTALLS.get(full)
    return (
        f"execution provider {name!r} is not available in this onnxruntime {ort.__version__}"
        + (f" (install: {install})" if install else "")
        + f"; usable here: {listing}"
    )


def open_session(
    path: Path,
    providers: list[str],
    *,
    device: str | None = None,
    precision: str | None = None,
    threads: int | None = None,
    profile_prefix: str | None = None,
) -> ort.InferenceSession:
    """An ONNX Runtime session of ``path`` on ``providers`` with our options for each.

    Raises:
        ModelError: the file is not a loadable ONNX model (the first line of ONNX Runtime's reason).
    """
    options = ort.SessionOptions()
    options.log_severity_level = ORT_ERRORS_ONLY
    if threads is not None:
        options.intra_op_num_threads = threads
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    if WEBGPU in providers:
        return _open_webgpu_session(path, options, device)
    settings = [
        provider_options(p, device=device, precision=precision, threads=threads) for p in providers
    ]
    try:
        return ort.InferenceSession(
            model_source(path), options, providers=providers, provider_options=settings
        )
    except Exception as exc:  # onnxruntime raises its own pybind types for bad files
        raise ModelError(f"{path}: {load_failure(exc)}") from None


def load_failure(exc: BaseException) -> str:
    """Why ONNX Runtime cannot load a file, in words: a model newer than this onnxruntime (its opset or
    IR version) names both versions and the fix; anything else is the first line of ORT's reason."""
    import re

    text = " ".join(str(exc).split())
    opset = re.search(r"Opset (\d+) is under development", text)
    supported = re.search(r"official support for domain ai\.onnx is till opset (\d+)", text)
    if opset and supported:
        return (
            f"the model needs opset {opset.group(1)}; this onnxruntime {ort.__version__} supports up "
            f"to opset {supported.group(1)}: upgrade onnxruntime (pip install --upgrade onnxruntime)"
        )
    ir = re.search(r"Unsupported model IR version: (\d+), max supported IR version: (\d+)", text)
    if ir:
        return (
            f"the model needs ONNX IR version {ir.group(1)}; this onnxruntime {ort.__version__} reads up "
            f"to {ir.group(2)}: upgrade onnxruntime (pip install --upgrade onnxruntime)"
        )
    return f"not a loadable ONNX model ({first_line(exc, 200)})"


def _open_webgpu_session(
    path: Path, options: ort.SessionOptions, device: str | None
) -> ort.InferenceSession:
    """A plugin EP is added by device, not by name: the adapter ``webgpu.choose`` picks, then the CPU EP
    for whatever WebGPU does not take (counted by ``Segmenter.node_placement``)."""
    ep_device, adapter, ep_options = webgpu.choose(device)
    options.add_provider_for_devices([ep_device], ep_options)
    try:
        with quiet_stderr():  # Dawn prints its own diagnostics; the error below says what failed
            return ort.InferenceSession(model_source(path), options)
    except Exception as exc:
        if not _loads_on_cpu(path):
            raise ModelError(
                f"{path}: not a loadable ONNX model ({first_line(exc, 200)})"
            ) from None
        raise ProviderError(
            f"WebGPU could not start on {adapter.line()} ({webgpu.reason(exc)}); update the GPU "
            "driver, or choose another --device or --provider"
        ) from None


def _loads_on_cpu(path: Path) -> bool:
    try:
        ort.InferenceSession(model_source(path), providers=["CPUExecutionProvider"])
        return True
    except Exception:  # noqa: BLE001 - any failure means the file itself is the problem
        return False


def split_spec(spec: str) -> tuple[str, str | None]:
    """``openvino:bf16`` -> (``openvino``, ``bf16``); ``cpu`` -> (``cpu``, None): a provider and the
    precision asked of it, as ``lvunet-bench --providers`` and the recommendation record write them."""
    name, _, precision = spec.partition(":")
    return name.strip(), precision.strip() or None
