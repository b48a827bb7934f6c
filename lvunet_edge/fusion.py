"""Pure re-parametrization maths (LV-UNet paper, section IV.C.3).

Every function here returns new tensors and never writes into module parameters, so the maths can be
tested in float64 and differentiated through. Modules call these in their ``reparameterize()``.
"""

from __future__ import annotations

import torch
from torch import nn


def fuse_conv_bn(
    weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm2d
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BatchNorm into the convolution before it (paper eq. 4).

    ``W' = gamma / sigma * W`` and ``B' = (B - mu) * gamma / sigma + beta`` with
    ``sigma = sqrt(running_var + eps)``, per output channel.

    Args:
        weight: convolution weight, shape ``(C_out, C_in / groups, k, k)``.
        bias: convolution bias ``(C_out,)`` or ``None`` for a bias-free convolution.
        bn: the BatchNorm2d that follows the convolution; its running statistics are used.

    Returns:
        ``(weight, bias)`` of the single equivalent convolution.
    """
    std = torch.sqrt(bn.running_var.to(weight.dtype) + bn.eps)
    gamma = bn.weight.to(weight.dtype) if bn.weight is not None else torch.ones_like(std)
    beta = bn.bias.to(weight.dtype) if bn.bias is not None else torch.zeros_like(std)
    scale = gamma / std
    if bias is None:
        bias = torch.zeros_like(std)
    fused_weight = weight * scale.reshape(-1, *([1] * (weight.dim() - 1)))
    fused_bias = (bias - bn.running_mean.to(weight.dtype)) * scale + beta
    return fused_weight, fused_bias


def compose_1x1(
    w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Compose two 1x1 convolutions applied in sequence into one (paper eq. 5).

    ``conv2(conv1(x)) = W2 (W1 x + b1) + b2 = (W2 W1) x + (W2 b1 + b2)``: exact only when nothing
    non-linear sits between them, i.e. when the LeakyReLU slope is exactly 1.

    Args:
        w1: first weight ``(C_mid, C_in, 1, 1)``; b1: its bias ``(C_mid,)``.
        w2: second weight ``(C_out, C_mid, 1, 1)``; b2: its bias ``(C_out,)``.

    Returns:
        ``(weight, bias)`` with weight ``(C_out, C_in, 1, 1)``.
    """
    m1 = w1.flatten(1)  # (C_mid, C_in)
    m2 = w2.flatten(1)  # (C_out, C_mid)
    weight = (m2 @ m1).reshape(m2.shape[0], m1.shape[1], 1, 1)
    bias = m2 @ b1 + b2
    return weight, bias
