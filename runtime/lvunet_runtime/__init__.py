"""lvunet-runtime: run exported LV-UNet ONNX models with ONNX Runtime (never imports torch or onnx)."""

from lvunet_runtime.errors import (
    ImageError,
    LVUNetRuntimeError,
    ModelError,
    OutputError,
    ProviderError,
)

__version__ = "0.1.0"

__all__ = ["ImageError", "LVUNetRuntimeError", "ModelError", "OutputError", "ProviderError"]
