"""lvunet-edge, the training side: LV-UNet model, exact re-parametrization, checkpoints, training."""

from lvunet_edge.blocks import require_slope_one
from lvunet_edge.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from lvunet_edge.errors import (
    CheckpointError,
    DataError,
    FusionError,
    InputSizeError,
    LVUNetError,
    WeightsError,
)
from lvunet_edge.model import LVUNet, LVUNetConfig, build_model, count_macs, count_parameters
from lvunet_edge.pretrained import load_mobilenet_v3_weights
from lvunet_edge.reparam import get_act_slope, reparameterize_model, set_act_slope, slope_schedule

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "DataError",
    "FusionError",
    "InputSizeError",
    "LVUNet",
    "LVUNetConfig",
    "LVUNetError",
    "WeightsError",
    "build_model",
    "count_macs",
    "count_parameters",
    "get_act_slope",
    "load_checkpoint",
    "load_mobilenet_v3_weights",
    "read_checkpoint",
    "reparameterize_model",
    "require_slope_one",
    "save_checkpoint",
    "set_act_slope",
    "slope_schedule",
]
