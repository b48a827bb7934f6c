"""The training side's exception hierarchy.

``LVUNetError`` derives from the runtime's base error, so the whole project has one root: every command
maps ``LVUNetRuntimeError`` (which includes these) to a one-line message and exit code 1. ``DataError``
is the runtime's own: pairing, masks and split files are read by the runtime's helpers.
"""

from lvunet_runtime.errors import DataError, LVUNetRuntimeError

__all__ = [
    "CheckpointError",
    "DataError",
    "FusionError",
    "InputSizeError",
    "LVUNetError",
    "WeightsError",
]


class LVUNetError(LVUNetRuntimeError):
    """Base class of every error this package raises on purpose (bad input, bad state)."""


class FusionError(LVUNetError):
    """The model cannot be fused without changing its outputs (e.g. the LeakyReLU slope is not 1)."""


class CheckpointError(LVUNetError):
    """A file is missing, unreadable, or not an LV-UNet checkpoint of the expected kind."""


class WeightsError(LVUNetError):
    """Pretrained encoder weights are missing, unreadable, or do not match the encoder."""


class InputSizeError(LVUNetError):
    """The input's spatial size does not fit the network's down- and up-sampling path."""
