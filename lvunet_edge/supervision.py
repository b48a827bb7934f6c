"""Deep supervision (training only): side outputs of the decoder, scored against the same mask.

Forward hooks keep the outputs of LV-UNet's last ``levels`` decoder blocks while the model trains; a 1x1
convolution per level turns each into logits, upsampled (bilinear) to the input size. The model itself is
untouched: ``best.pt`` holds LV-UNet's weights alone, so fusion, export and the runtime never see the side
heads, and the deployed graph and its latency do not change.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lvunet_edge.model import LVUNet


class SideOutputs(nn.Module):
    """1x1 heads on the last ``levels`` decoder blocks (default 40@H/8, 24@H/4, 16@H/2)."""

    def __init__(self, model: LVUNet, levels: int = 3) -> None:
        super().__init__()
        channels = model.config.channels
        blocks = list(model.decoder)[-levels:]
        # decoder block k maps level (len - 1 - k) to the level below it: its output has channels[level - 1]
        out_channels = [channels[len(channels) - 2 - k] for k in range(len(model.decoder))][
            -levels:
        ]
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1) for c in out_channels)
        self._kept: list[torch.Tensor] = []
        for block in blocks:
            block.register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if module.training:  # evaluation passes keep nothing
            self._kept.append(output)

    def logits(self, size: tuple[int, int]) -> list[torch.Tensor]:
        """The side logits of the last training forward pass, at ``size``; forgets that pass."""
        kept, self._kept = self._kept, []
        if len(kept) != len(self.heads):
            raise RuntimeError(f"expected {len(self.heads)} decoder outputs, got {len(kept)}")
        return [
            F.interpolate(head(x), size=size, mode="bilinear", align_corners=False)
            for head, x in zip(self.heads, kept, strict=True)
        ]
