"""The runtime's exception hierarchy: one base class, mapped by the CLIs to a one-line message."""


class LVUNetRuntimeError(Exception):
    """Base class of every error the runtime raises on purpose."""


class ModelError(LVUNetRuntimeError):
    """The model file is missing, not ONNX, or lacks the LV-UNet metadata contract."""


class ProviderError(LVUNetRuntimeError):
    """An execution provider was requested that this ONNX Runtime does not have."""


class ImageError(LVUNetRuntimeError):
    """An input is missing, not an image, corrupt, or too large to decode safely."""


class OutputError(LVUNetRuntimeError):
    """An output cannot be written (unwritable folder, would overwrite an input)."""
