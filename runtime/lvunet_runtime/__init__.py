"""lvunet-runtime: run exported LV-UNet ONNX models with ONNX Runtime (never imports torch or onnx)."""

import os

# Keep FFmpeg's own console chatter (e.g. "moov atom not found") out of our one-line errors.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

from lvunet_runtime.errors import (  # noqa: E402
    ImageError,
    LVUNetRuntimeError,
    ModelError,
    OutputError,
    ProviderError,
)

__version__ = "0.1.0"

__all__ = [
    "ImageError",
    "LVUNetRuntimeError",
    "ModelError",
    "OutputError",
    "ProviderError",
    "Segmenter",
    "load_image",
]


def __getattr__(name: str):
    # Lazy: `import lvunet_runtime` stays cheap (no onnxruntime or OpenCV until they are used).
    if name == "Segmenter":
        from lvunet_runtime.session import Segmenter

        return Segmenter
    if name == "load_image":
        from lvunet_runtime.image import load_image

        return load_image
    raise AttributeError(name)
