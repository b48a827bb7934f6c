"""The project's exception hierarchy: one base class, mapped by the CLIs to a one-line message.

The training side (``lvunet_edge``) and the exporter derive their own errors from this base, so every
command can tell a refusal it made on purpose (exit 1) from an internal error.
"""


class LVUNetRuntimeError(Exception):
    """Base class of every error the runtime raises on purpose."""


class ModelError(LVUNetRuntimeError):
    """The model file is missing, not ONNX, or its metadata contract is missing or invalid."""


class ProviderError(LVUNetRuntimeError):
    """An execution provider was requested that this ONNX Runtime does not have or cannot start."""


class ImageError(LVUNetRuntimeError):
    """An input is missing, not an image, corrupt, or too large to decode safely."""


class DataError(LVUNetRuntimeError):
    """A dataset folder is missing, empty, or holds unpaired or unreadable files, or a bad split file."""


class OutputError(LVUNetRuntimeError):
    """An output cannot be written (unwritable folder, would overwrite an input)."""
