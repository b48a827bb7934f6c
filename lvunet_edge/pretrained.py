"""Load ImageNet-pretrained MobileNetV3-Large weights into LV-UNet's encoder, by name, offline.

Nothing here downloads: the model constructor never touches the network, and a request for the
torchvision weights only looks in torch hub's local cache.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lvunet_edge.errors import WeightsError
from lvunet_edge.model import LVUNet

# File names of torchvision's MobileNetV3-Large ImageNet checkpoints (IMAGENET1K_V1, IMAGENET1K_V2).
TORCHVISION_FILES = ("mobilenet_v3_large-8738ca79.pth", "mobilenet_v3_large-5c1a4163.pth")


def _cached_torchvision_file() -> Path:
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    for name in TORCHVISION_FILES:
        if (checkpoints / name).is_file():
            return checkpoints / name
    raise WeightsError(
        f"no torchvision MobileNetV3-Large ImageNet weights in the local cache ({checkpoints}); "
        "nothing is downloaded: fetch "
        f"{' or '.join(TORCHVISION_FILES)} on a connected machine and pass its path"
    )


def load_mobilenet_v3_weights(model: LVUNet, source: str | Path = "torchvision") -> list[str]:
    """Copy MobileNetV3-Large weights into ``model.features`` by key name.

    Args:
        model: an unfused LV-UNet (weights load before fusion).
        source: path to a torchvision ``mobilenet_v3_large`` state_dict file, or ``"torchvision"`` to use
            torch hub's cached ImageNet file if one is present (never downloaded).

    Returns:
        The keys loaded (``features.0...`` up to the model's depth).

    Raises:
        WeightsError: file missing, unreadable, or its keys/shapes do not match the encoder.
    """
    if model.deploy:
        raise WeightsError("load pretrained weights before fusing; this model is already fused")
    path = _cached_torchvision_file() if str(source) == "torchvision" else Path(source)
    if not path.is_file():
        raise WeightsError(f"pretrained weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for bad bytes; all mean unreadable
        raise WeightsError(
            f"{path} is not a readable PyTorch weights file (truncated or corrupt?)"
        ) from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{path} does not hold a state_dict")
    target = {k: v for k, v in model.state_dict().items() if k.startswith("features.")}
    missing = [k for k in target if k not in state]
    if missing:
        raise WeightsError(
            f"{path} is not a torchvision mobilenet_v3_large state_dict: {len(missing)} encoder keys "
            f"missing, e.g. {missing[0]}"
        )
    wrong = [k for k in target if tuple(state[k].shape) != tuple(target[k].shape)]
    if wrong:
        key = wrong[0]
        raise WeightsError(
            f"{path}: shape of {key} is {tuple(state[key].shape)}, expected {tuple(target[key].shape)}"
        )
    model.load_state_dict({k: state[k] for k in target}, strict=False)
    return list(target)
