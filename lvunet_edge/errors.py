"""The training side's exception hierarchy: one base class, so CLIs map it to a one-line message."""


class LVUNetError(Exception):
    """Base class of every error this package raises on purpose (bad input, bad state)."""


class FusionError(LVUNetError):
    """The model cannot be fused without changing its outputs (e.g. the LeakyReLU slope is not 1)."""


class CheckpointError(LVUNetError):
    """A file is missing, unreadable, or not an LV-UNet checkpoint of the expected kind."""


class WeightsError(LVUNetError):
    """Pretrained encoder weights are missing, unreadable, or do not match the encoder."""


class InputSizeError(LVUNetError):
    """The input's spatial size does not fit the network's down- and up-sampling path."""


class DataError(LVUNetError):
    """A dataset folder is missing, empty, or holds unpaired or unreadable files."""
