"""lvunet-runtime: run exported LV-UNet ONNX models with ONNX Runtime (never imports torch or onnx).

Importing this package changes no process-wide state; the command-line entry points configure what they
need (see :func:`lvunet_runtime.cli.configure_process`).
"""

from lvunet_runtime.errors import (
    DataError,
    ImageError,
    LVUNetRuntimeError,
    ModelError,
    OutputError,
    ProviderError,
)
from lvunet_runtime.version import __version__ as __version__

__all__ = [
    "DataError",
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
        from lvunet_runtime.segmenter import Segmenter

        return Segmenter
    if name == "load_image":
        from lvunet_runtime.image import load_image

        return load_image
    raise AttributeError(name)
