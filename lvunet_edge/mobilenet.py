"""MobileNetV3-Large feature layers (Howard et al., 2019), written here so the model needs no torchvision.

Module names follow torchvision's ``mobilenet_v3_large().features`` exactly (``features.N.block.M...``),
so a torchvision ImageNet state_dict loads by name. Every conv-BN pair can fold its BatchNorm
(``reparameterize()``); the folded form keeps the conv's key and adds its bias.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lvunet_edge.fusion import fuse_conv_bn

MOBILENET_BN_EPS = 0.001  # torchvision's MobileNetV3 BatchNorm settings
MOBILENET_BN_MOMENTUM = 0.01


@dataclass(frozen=True)
class InvertedResidualSpec:
    """One row of MobileNetV3-Large's inverted-residual table (torchvision ``bneck_conf``)."""

    in_channels: int
    kernel: int
    expanded: int
    out_channels: int
    use_se: bool
    hardswish: bool
    stride: int


# r1 ... r15: features.1 ... features.15 (features.0 is the stem, 3x3 s2 conv 3->16 + hardswish)
MOBILENET_V3_LARGE = (
    InvertedResidualSpec(16, 3, 16, 16, False, False, 1),
    InvertedResidualSpec(16, 3, 64, 24, False, False, 2),
    InvertedResidualSpec(24, 3, 72, 24, False, False, 1),
    InvertedResidualSpec(24, 5, 72, 40, True, False, 2),
    InvertedResidualSpec(40, 5, 120, 40, True, False, 1),
    InvertedResidualSpec(40, 5, 120, 40, True, False, 1),
    InvertedResidualSpec(40, 3, 240, 80, False, True, 2),
    InvertedResidualSpec(80, 3, 200, 80, False, True, 1),
    InvertedResidualSpec(80, 3, 184, 80, False, True, 1),
    InvertedResidualSpec(80, 3, 184, 80, False, True, 1),
    InvertedResidualSpec(80, 3, 480, 112, True, True, 1),
    InvertedResidualSpec(112, 3, 672, 112, True, True, 1),
    InvertedResidualSpec(112, 5, 672, 160, True, True, 2),
    InvertedResidualSpec(160, 5, 960, 160, True, True, 1),
    InvertedResidualSpec(160, 5, 960, 160, True, True, 1),
)
STEM_CHANNELS = 16


def _make_divisible(value: float, divisor: int = 8) -> int:
    """torchvision's channel rounding (used for the squeeze-excitation width)."""
    new_value = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias) + BatchNorm + optional activation; fused: Conv2d with bias + Identity."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        *,
        stride: int = 1,
        groups: int = 1,
        activation: type[nn.Module] | None = nn.ReLU,
        deploy: bool = False,
    ) -> None:
        conv = nn.Conv2d(
            in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=deploy
        )
        norm = (
            nn.Identity()
            if deploy
            else nn.BatchNorm2d(out_channels, eps=MOBILENET_BN_EPS, momentum=MOBILENET_BN_MOMENTUM)
        )
        layers = [conv, norm]
        if activation is not None:
            layers.append(activation(inplace=True))
        super().__init__(*layers)

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold the BatchNorm into the conv in place; a no-op when already folded."""
        if not isinstance(self[1], nn.BatchNorm2d):
            return
        conv: nn.Conv2d = self[0]
        weight, bias = fuse_conv_bn(conv.weight, conv.bias, self[1])
        fused = nn.Conv2d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            groups=conv.groups,
            bias=True,
        ).to(weight.device, weight.dtype)
        fused.weight.copy_(weight)
        fused.bias.copy_(bias)
        self[0] = fused
        self[1] = nn.Identity()


class SqueezeExcitation(nn.Module):
    """torchvision's SqueezeExcitation with ReLU and hard-sigmoid gates (keys ``fc1``, ``fc2``)."""

    def __init__(self, channels: int, squeeze_channels: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = F.adaptive_avg_pool2d(x, 1)
        scale = self.fc2(F.relu(self.fc1(scale)))
        return x * F.hardsigmoid(scale)


class InvertedResidual(nn.Module):
    """MobileNetV3 inverted residual: [expand 1x1] -> depthwise kxk -> [SE] -> project 1x1 (+ residual)."""

    def __init__(self, spec: InvertedResidualSpec, *, deploy: bool = False) -> None:
        super().__init__()
        activation = nn.Hardswish if spec.hardswish else nn.ReLU
        layers: list[nn.Module] = []
        if spec.expanded != spec.in_channels:
            layers.append(
                ConvBNAct(spec.in_channels, spec.expanded, 1, activation=activation, deploy=deploy)
            )
        layers.append(
            ConvBNAct(
                spec.expanded,
                spec.expanded,
                spec.kernel,
                stride=spec.stride,
                groups=spec.expanded,
                activation=activation,
                deploy=deploy,
            )
        )
        if spec.use_se:
            layers.append(SqueezeExcitation(spec.expanded, _make_divisible(spec.expanded // 4)))
        layers.append(
            ConvBNAct(spec.expanded, spec.out_channels, 1, activation=None, deploy=deploy)
        )
        self.block = nn.Sequential(*layers)
        self.use_residual = spec.stride == 1 and spec.in_channels == spec.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.use_residual else out


def mobilenet_v3_large_features(depth: int, *, deploy: bool = False) -> nn.Sequential:
    """``features.0`` (stem) to ``features.depth`` (inverted residual r<depth>) of MobileNetV3-Large."""
    if not 1 <= depth <= len(MOBILENET_V3_LARGE):
        raise ValueError(f"depth must be 1..{len(MOBILENET_V3_LARGE)}, not {depth}")
    stem = ConvBNAct(3, STEM_CHANNELS, 3, stride=2, activation=nn.Hardswish, deploy=deploy)
    blocks = [InvertedResidual(spec, deploy=deploy) for spec in MOBILENET_V3_LARGE[:depth]]
    return nn.Sequential(stem, *blocks)
