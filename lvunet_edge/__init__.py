"""lvunet-edge, the training side: LV-UNet model, exact re-parametrization, checkpoints, training.

Names are imported lazily, so ``lvunet-train --help`` and ``--version`` answer without loading torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "require_slope_one": "lvunet_edge.blocks",
    "load_checkpoint": "lvunet_edge.checkpoint",
    "read_checkpoint": "lvunet_edge.checkpoint",
    "save_checkpoint": "lvunet_edge.checkpoint",
    "CheckpointError": "lvunet_edge.errors",
    "DataError": "lvunet_edge.errors",
    "FusionError": "lvunet_edge.errors",
    "InputSizeError": "lvunet_edge.errors",
    "LVUNetError": "lvunet_edge.errors",
    "WeightsError": "lvunet_edge.errors",
    "LVUNet": "lvunet_edge.model",
    "LVUNetConfig": "lvunet_edge.model",
    "build_model": "lvunet_edge.model",
    "count_macs": "lvunet_edge.model",
    "count_parameters": "lvunet_edge.model",
    "load_mobilenet_v3_weights": "lvunet_edge.pretrained",
    "get_act_slope": "lvunet_edge.reparam",
    "reparameterize_model": "lvunet_edge.reparam",
    "set_act_slope": "lvunet_edge.reparam",
    "slope_schedule": "lvunet_edge.reparam",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lvunet_edge' has no attribute {name!r}")
