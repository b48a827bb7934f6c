"""Fusible blocks of LV-UNet: the series-informed activation and the encoder/decoder blocks.

Each block trains in an over-parametrised form and implements ``reparameterize()``, which turns it into
its deployment form in place (idempotent). Built with ``deploy=True`` a block has the deployment form from
the start, so a fused state_dict loads with ``strict=True`` (RepVGG's convention).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from lvunet_edge.errors import FusionError
from lvunet_edge.fusion import compose_1x1, fuse_conv_bn

BN_EPS = 1e-6  # BatchNorm epsilon inside the fusible blocks (as in VanillaNet / the reference)


def require_slope_one(slope: float | None, what: str = "the model") -> None:
    """The one precondition of fusion: every LeakyReLU slope is exactly 1.0 (then the block is linear).

    Raises:
        FusionError: saying how to get there (the reference implementation fuses at 0.99 silently).
    """
    if slope != 1.0:
        shown = "missing" if slope is None else f"{slope:.6g}"
        raise FusionError(
            f"cannot fuse {what}: the LeakyReLU slope is {shown}, not 1.0, so it is still non-linear "
            "and fusing would change its outputs. Use a checkpoint from the end of deep training "
            "(best.pt is chosen among slope-1 epochs; the schedule reaches exactly 1.0 at --deep-epochs), "
            "or set_act_slope(model, 1.0) and fine-tune before fusing."
        )


class SeriesActivation(nn.Module):
    """Series-informed activation (paper eq. 1): ReLU, then a depthwise (2n+1)x(2n+1) conv and BN.

    Deployment form: ReLU, then the depthwise conv with the BN folded into a bias.
    """

    def __init__(self, channels: int, act_num: int = 1, *, deploy: bool = False) -> None:
        super().__init__()
        self.channels = channels
        self.act_num = act_num
        self.deploy = deploy
        kernel = 2 * act_num + 1
        self.weight = nn.Parameter(torch.empty(channels, 1, kernel, kernel))
        nn.init.trunc_normal_(self.weight, std=0.02)
        if deploy:
            self.bias = nn.Parameter(torch.zeros(channels))
            self.bn = None
        else:
            self.bias = None
            self.bn = nn.BatchNorm2d(channels, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(F.relu(x), self.weight, self.bias, padding=self.act_num, groups=self.channels)
        return x if self.bn is None else self.bn(x)

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold the BatchNorm into the depthwise kernel; a no-op when already fused."""
        if self.deploy:
            return
        weight, bias = fuse_conv_bn(self.weight, None, self.bn)
        self.weight = nn.Parameter(weight.contiguous())
        self.bias = nn.Parameter(bias.contiguous())
        self.bn = None
        self.deploy = True


class FusibleBlock(nn.Module):
    """Fusible encoder (``resample="down"``) or decoder (``resample="up"``) block.

    Training form: conv1x1(C_in->C_in)-BN-LeakyReLU(slope)-conv1x1(C_in->C_out)-BN, then 2x2 max-pool or
    x2 bilinear upsample, then the series-informed activation. The LeakyReLU slope is a buffer, so it is
    saved and loaded with the model's state_dict. At slope 1 the two convs and BNs are one affine map and
    fuse into a single conv1x1(C_in->C_out) with bias.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        resample: Literal["down", "up"],
        *,
        act_num: int = 1,
        deploy: bool = False,
    ) -> None:
        super().__init__()
        if resample not in ("down", "up"):
            raise ValueError(f"resample must be 'down' or 'up', not {resample!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.resample = resample
        self.deploy = deploy
        if deploy:
            self.conv = nn.Conv2d(in_channels, out_channels, 1)
        else:
            self.conv1 = nn.Conv2d(in_channels, in_channels, 1)
            self.bn1 = nn.BatchNorm2d(in_channels, eps=BN_EPS)
            self.conv2 = nn.Conv2d(in_channels, out_channels, 1)
            self.bn2 = nn.BatchNorm2d(out_channels, eps=BN_EPS)
            self.register_buffer("slope", torch.tensor(0.0))
        self.act = SeriesActivation(out_channels, act_num, deploy=deploy)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deploy:
            x = self.conv(x)
        else:
            x = self.bn1(self.conv1(x))
            x = torch.maximum(x, x * self.slope)  # LeakyReLU, paper eq. 2: max(a x, x), a in [0, 1]
            x = self.bn2(self.conv2(x))
        if self.resample == "down":
            x = F.max_pool2d(x, 2)
        else:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.act(x)

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fuse into deployment form in place; a no-op when already fused.

        Raises:
            FusionError: the LeakyReLU slope is not exactly 1, so fusing would change the outputs.
        """
        if self.deploy:
            return
        require_slope_one(float(self.slope), "the block")
        w1, b1 = fuse_conv_bn(self.conv1.weight, self.conv1.bias, self.bn1)
        w2, b2 = fuse_conv_bn(self.conv2.weight, self.conv2.bias, self.bn2)
        weight, bias = compose_1x1(w1, b1, w2, b2)
        conv = nn.Conv2d(self.in_channels, self.out_channels, 1).to(weight.device, weight.dtype)
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
        self.conv = conv
        for name in ("conv1", "bn1", "conv2", "bn2"):
            delattr(self, name)
        del self._buffers["slope"]
        self.act.reparameterize()
        self.deploy = True
