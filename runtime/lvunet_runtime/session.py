"""``Segmenter``: one ONNX Runtime session plus the model's own pre- and post-processing contract."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from lvunet_runtime.contract import ModelContract
from lvunet_runtime.errors import LVUNetRuntimeError, ModelError, ProviderError
from lvunet_runtime.processing import keep_largest_region, postprocess, preprocess

MODELS_DIR = Path(__file__).parent / "models"
DEFAULT_MODEL = "polyp"

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
}


def provider_options(name: str) -> dict[str, str]:
    """Options we pass to GPU providers: fast cuDNN algorithm choice, a persistent TensorRT engine cache
    (building an engine takes minutes; without the cache every start would pay it again)."""
    if name == "CUDAExecutionProvider":
        return {"cudnn_conv_algo_search": "HEURISTIC"}
    if name == "TensorrtExecutionProvider":
        cache = Path(
            os.environ.get("LVUNET_TRT_CACHE", Path.home() / ".cache" / "lvunet" / "tensorrt")
        )
        return {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(cache)}
    return {}


def bundled_models() -> list[str]:
    """Names of the models shipped inside this package."""
    return sorted(p.stem for p in MODELS_DIR.glob("*.onnx"))


def resolve_model(model: str | Path | None) -> Path:
    """A bundled model name (default ``polyp``) or a path to an ``.onnx`` file."""
    name = DEFAULT_MODEL if model is None else str(model)
    bundled = MODELS_DIR / f"{name}.onnx"
    if bundled.is_file() and not Path(name).suffix:
        return bundled
    path = Path(name)
    if path.is_file():
        return path
    names = ", ".join(bundled_models()) or "none"
    raise ModelError(
        f"model {name!r} not found: give a path to an .onnx file or a bundled name ({names})"
    )


def resolve_providers(requested: list[str] | None) -> list[str]:
    """Providers to ask ONNX Runtime for.

    Nothing requested: every available provider of ``DEFAULT_PROVIDER_ORDER``, ending with CPU. An explicit
    request (short names such as ``cuda`` or full names) must be available, else ProviderError listing
    what is; there is no silent CPU fallback when a GPU was asked for.
    """
    available = ort.get_available_providers()
    if not requested:
        return [p for p in DEFAULT_PROVIDER_ORDER if p in available] or ["CPUExecutionProvider"]
    resolved = []
    for name in requested:
        full = PROVIDER_ALIASES.get(name.strip().lower(), name.strip())
        if full not in available:
            short = {v: k for k, v in PROVIDER_ALIASES.items()}
            listing = ", ".join(f"{short[p]} ({p})" if p in short else p for p in available)
            raise ProviderError(
                f"execution provider {name!r} is not available in this onnxruntime "
                f"{ort.__version__}; available: {listing}"
            )
        resolved.append(full)
    return resolved


@dataclass(frozen=True)
class Prediction:
    """Result for one image, at the image's own size."""

    probability: np.ndarray  # (H, W) float32 in [0, 1]
    mask: np.ndarray  # (H, W) bool


class Segmenter:
    """Runs an exported LV-UNet: everything it needs comes from the file's metadata.

    Args:
        model: bundled model name (default ``polyp``) or path to an ``.onnx`` file.
        providers: execution providers (short or full names); None picks the default order.
        threads: intra-op threads; None lets ONNX Runtime choose (one per physical core).
        threshold: overrides the model's stored probability threshold.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        providers: list[str] | None = None,
        threads: int | None = None,
        threshold: float | None = None,
    ) -> None:
        self.path = resolve_model(model)
        requested = resolve_providers(providers)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads is not None:
            if threads < 1:
                raise LVUNetRuntimeError(f"threads must be at least 1, not {threads}")
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                str(self.path),
                options,
                providers=requested,
                provider_options=[provider_options(p) for p in requested],
            )
        except Exception as exc:  # onnxruntime raises its own pybind types for bad files
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{self.path}: not a loadable ONNX model ({first[:200]})") from None
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.contract = ModelContract.from_metadata(metadata, source=str(self.path))
        if providers:
            missing = [p for p in requested if p not in self.session.get_providers()]
            if missing:
                raise ProviderError(f"ONNX Runtime could not start {missing}; it fell back to CPU")
        self.threshold = self.contract.threshold if threshold is None else float(threshold)
        if not 0.0 < self.threshold < 1.0:
            raise LVUNetRuntimeError(f"threshold must be between 0 and 1, not {self.threshold}")

    @property
    def active_providers(self) -> list[str]:
        """Providers ONNX Runtime actually uses for this session, in priority order."""
        return self.session.get_providers()

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Raw model call on a preprocessed batch; returns logits (B, H, W) at model size."""
        contract = self.contract
        if not contract.dynamic_batch and len(batch) != 1:
            return np.concatenate([self.run(batch[i : i + 1]) for i in range(len(batch))])
        return self.session.run([contract.output_name], {contract.input_name: batch})[0][:, 0]

    def predict_batch(
        self, images: list[np.ndarray], *, keep_largest: bool = False
    ) -> list[Prediction]:
        """RGB uint8 images of any sizes -> predictions at each image's own size."""
        if not images:
            return []
        logits = self.run(preprocess(images, self.contract))
        results = []
        for image, logit in zip(images, logits, strict=True):
            prob, mask = postprocess(logit, image.shape[:2], self.threshold)
            results.append(Prediction(prob, keep_largest_region(mask) if keep_largest else mask))
        return results

    def predict(self, image: np.ndarray, *, keep_largest: bool = False) -> Prediction:
        """One RGB uint8 (H, W, 3) image of any size -> probability map and mask at (H, W)."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ModelError(
                f"predict expects an RGB uint8 array of shape (H, W, 3), not {image.dtype} "
                f"{image.shape}; load files with lvunet_runtime.load_image"
            )
        return self.predict_batch([image], keep_largest=keep_largest)[0]
