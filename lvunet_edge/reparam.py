"""Model-wide re-parametrization and the deep-training slope schedule (paper section IV.C.3)."""

from __future__ import annotations

import copy
import math
from typing import Literal

import torch
from torch import nn

from lvunet_edge.blocks import FusibleBlock, require_slope_one
from lvunet_edge.errors import LVUNetError


def _fusible_blocks(model: nn.Module) -> list[FusibleBlock]:
    return [m for m in model.modules() if isinstance(m, FusibleBlock)]


def slope_schedule(
    step: float, total: float, kind: Literal["cosine", "linear"] = "cosine"
) -> float:
    """LeakyReLU slope ``a`` at epoch or step ``step`` of ``total`` deep-training steps.

    cosine (paper eq. 3): ``a = 1 - cos(pi e / 2E)``; linear (VanillaNet): ``a = e / E``. Clamped so
    that ``a`` is exactly 1.0 from ``e = E`` on (the reference code never reaches 1 and so cannot fuse
    exactly). ``total = 0`` means no deep training: the slope is 1 from the start.
    """
    if total < 0 or step < 0:
        raise LVUNetError(f"step and total must be non-negative, got step={step}, total={total}")
    if kind not in ("cosine", "linear"):
        raise LVUNetError(f"slope schedule must be 'cosine' or 'linear', not {kind!r}")
    if total == 0 or step >= total:
        return 1.0
    fraction = step / total
    value = 1.0 - math.cos(math.pi * fraction / 2.0) if kind == "cosine" else fraction
    return min(max(value, 0.0), 1.0)


def set_act_slope(model: nn.Module, slope: float) -> None:
    """Set the LeakyReLU slope of every fusible block (a buffer, so it is saved with the model)."""
    if not 0.0 <= slope <= 1.0:
        raise LVUNetError(f"the LeakyReLU slope must be in [0, 1], not {slope}")
    for block in _fusible_blocks(model):
        if not block.deploy:
            block.slope.fill_(slope)


def get_act_slope(model: nn.Module) -> float | None:
    """The common slope of the unfused blocks, or None for a fully fused model.

    Raises:
        LVUNetError: blocks disagree (the model was edited by hand).
    """
    slopes = {float(b.slope) for b in _fusible_blocks(model) if not b.deploy}
    if not slopes:
        return None
    if len(slopes) > 1:
        raise LVUNetError(f"fusible blocks have different slopes: {sorted(slopes)}")
    return slopes.pop()


def reparameterize_model(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Fuse every fusible block and fold every foldable BatchNorm (MobileNetV3's too).

    All slopes are checked before anything changes, so a refused fusion leaves the model intact.
    Fusing twice is a no-op. The returned model is in eval mode (BatchNorm statistics are baked in).

    Args:
        model: an LV-UNet (or any module containing fusible blocks).
        inplace: modify ``model`` itself instead of a deep copy.

    Raises:
        FusionError: some block's LeakyReLU slope is not exactly 1.0.
    """
    for slope in sorted({float(b.slope) for b in _fusible_blocks(model) if not b.deploy}):
        require_slope_one(slope)
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    with torch.no_grad():
        for module in list(model.modules()):
            reparameterize = getattr(module, "reparameterize", None)
            if callable(reparameterize):
                reparameterize()
    if hasattr(model, "deploy"):
        model.deploy = True
    return model
