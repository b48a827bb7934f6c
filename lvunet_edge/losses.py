"""The paper's loss: 0.5 * binary cross-entropy + Dice (on probabilities, per image, then averaged)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bce_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """``0.5 * BCE(logits, target) + (1 - Dice)``, computed in float32 even under autocast."""
    logits = logits.float()
    target = target.float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    prob = torch.sigmoid(logits).flatten(1)
    flat = target.flatten(1)
    dice = (2 * (prob * flat).sum(1) + smooth) / (prob.sum(1) + flat.sum(1) + smooth)
    return 0.5 * bce + (1 - dice.mean())
