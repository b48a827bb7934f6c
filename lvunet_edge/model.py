"""LV-UNet (Jiang et al., BIBM 2024): a MobileNetV3-Large encoder, fusible blocks and additive skips."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import torch
from torch import nn

from lvunet_edge.blocks import FusibleBlock
from lvunet_edge.errors import InputSizeError, LVUNetError
from lvunet_edge.mobilenet import MOBILENET_V3_LARGE, STEM_CHANNELS, mobilenet_v3_large_features

Combination = Literal["I", "II", "III"]

# Pretrained depth of each ablation (paper section V.D, Tables III/IV): the last inverted residual used,
# the feature indices that end an encoder stage (each stage halves the resolution), and the default
# widths of the fusible encoder blocks. The paper gives widths only for II; those of I and III are ours,
# chosen so the parameter counts land near Table IV (I: 2.8M, III: 0.8M).
_COMBINATIONS: dict[str, tuple[int, tuple[int, ...], tuple[int, ...]]] = {
    "I": (14, (0, 2, 5, 12, 14), (240, 480)),
    "II": (9, (0, 2, 5, 9), (160, 240, 480)),
    "III": (5, (0, 2, 5), (80, 160, 240, 480)),
}


@dataclass(frozen=True)
class LVUNetConfig:
    """Architecture of an LV-UNet; stored in every checkpoint and in the ONNX metadata.

    Attributes:
        combination: pretrained depth (paper Table III): "I" stem..r14 + 2 fusible encoder blocks,
            "II" stem..r9 + 3 (the paper's LV-UNet), "III" stem..r5 + 4.
        act_num: n of the series-informed activation (paper eq. 1), a (2n+1)x(2n+1) depthwise kernel.
        skip: how skip connections join the decoder, "add" (the paper's) or "concat" (Table VI).
        num_classes: output channels (logits); 1 for binary segmentation.
        encoder_widths: widths of the fusible encoder blocks; empty means the combination's default.
    """

    combination: Combination = "II"
    act_num: int = 1
    skip: Literal["add", "concat"] = "add"
    num_classes: int = 1
    encoder_widths: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.combination not in _COMBINATIONS:
            raise LVUNetError(f"combination must be one of I, II, III, not {self.combination!r}")
        if not 0 <= self.act_num <= 4:
            raise LVUNetError(f"act_num must be 0..4, not {self.act_num}")
        if self.skip not in ("add", "concat"):
            raise LVUNetError(f"skip must be 'add' or 'concat', not {self.skip!r}")
        if self.num_classes < 1:
            raise LVUNetError(f"num_classes must be at least 1, not {self.num_classes}")
        expected = len(_COMBINATIONS[self.combination][2])
        if self.encoder_widths and len(self.encoder_widths) != expected:
            raise LVUNetError(
                f"combination {self.combination} has {expected} fusible encoder blocks, "
                f"but {len(self.encoder_widths)} encoder_widths were given"
            )
        object.__setattr__(self, "encoder_widths", tuple(int(w) for w in self.encoder_widths))

    @property
    def depth(self) -> int:
        """Index of the last MobileNetV3 inverted residual used (r<depth> = ``features.<depth>``)."""
        return _COMBINATIONS[self.combination][0]

    @property
    def stage_ends(self) -> tuple[int, ...]:
        """Indices into ``features`` whose outputs are encoder stages (skip sources)."""
        return _COMBINATIONS[self.combination][1]

    @property
    def widths(self) -> tuple[int, ...]:
        """Fusible encoder widths actually used."""
        return self.encoder_widths or _COMBINATIONS[self.combination][2]

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels of every encoder level, shallowest (stem, H/2) to deepest."""
        mobilenet = [
            STEM_CHANNELS if i == 0 else MOBILENET_V3_LARGE[i - 1].out_channels
            for i in self.stage_ends
        ]
        return (*mobilenet, *self.widths)

    @property
    def size_divisor(self) -> int:
        """Input height and width must be multiples of this: every level halves the resolution."""
        return 2 ** len(self.channels)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON- and ``weights_only``-safe)."""
        data = asdict(self)
        data["encoder_widths"] = list(self.encoder_widths)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LVUNetConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error, not silently dropped."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise LVUNetError(f"unknown LV-UNet config keys: {sorted(unknown)}")
        values = dict(data)
        if "encoder_widths" in values:
            values["encoder_widths"] = tuple(values["encoder_widths"])
        return cls(**values)


class LVUNet(nn.Module):
    """LV-UNet. ``features`` holds MobileNetV3-Large ``features.0..depth`` under torchvision's names.

    Path (default config, 3x256x256 input): stem 16@128, enc 24@64, 40@32, 80@16 (MobileNetV3), fusible
    encoder 160@8, 240@4, 480@2; fusible decoder back up with the encoder level of the same size added
    (the stem is not a skip source), a final fusible decoder block 16->16 to full size, a 1x1 conv to logits.
    """

    def __init__(self, config: LVUNetConfig | None = None, *, deploy: bool = False) -> None:
        super().__init__()
        self.config = config = config or LVUNetConfig()
        self.deploy = deploy
        act_num = config.act_num
        channels = config.channels
        mobilenet_levels = len(config.stage_ends)
        self.features = mobilenet_v3_large_features(config.depth, deploy=deploy)
        self.encoder = nn.ModuleList(
            FusibleBlock(channels[i - 1], channels[i], "down", act_num=act_num, deploy=deploy)
            for i in range(mobilenet_levels, len(channels))
        )
        concat = config.skip == "concat"
        decoder = []
        for level in range(len(channels) - 1, 0, -1):
            # This block maps level -> level-1; its input carries a concatenated skip unless deepest.
            has_skip_in = concat and level < len(channels) - 1
            in_ch = channels[level] * (2 if has_skip_in else 1)
            decoder.append(
                FusibleBlock(in_ch, channels[level - 1], "up", act_num=act_num, deploy=deploy)
            )
        self.decoder = nn.ModuleList(decoder)
        self.final = FusibleBlock(channels[0], channels[0], "up", act_num=act_num, deploy=deploy)
        # Kept apart from the final depthwise conv on purpose: merged into one 3x3 conv with a single
        # output channel it is 3.7x slower in ONNX Runtime on CPU (no NCHWc kernel for one channel).
        self.head = nn.Conv2d(channels[0], config.num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2], x.shape[-1]
        divisor = self.config.size_divisor
        if isinstance(height, int) and (height % divisor or width % divisor):
            raise InputSizeError(
                f"input size {height}x{width} is not a multiple of {divisor}; resize or pad it to "
                f"{-(-height // divisor) * divisor}x{-(-width // divisor) * divisor}"
            )
        levels = []
        stage_ends = self.config.stage_ends
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in stage_ends:
                levels.append(x)  # (B, 16, H/2, W/2), (B, 24, H/4, W/4), ...
        for block in self.encoder:
            x = block(x)
            levels.append(x)  # default: (B, 160, H/16...), ..., (B, 480, H/128, W/128)
        # Decoder: each block halves the channels toward the next shallower level, then joins its skip.
        for step, block in enumerate(self.decoder):
            x = block(x)
            level = len(levels) - 2 - step
            if level >= 1:
                x = (
                    x + levels[level]
                    if self.config.skip == "add"
                    else torch.cat([x, levels[level]], 1)
                )
        x = self.final(x)  # (B, 16, H, W)
        return self.head(x)  # (B, num_classes, H, W) logits


def build_model(config: LVUNetConfig | None = None, *, deploy: bool = False) -> LVUNet:
    """Build an LV-UNet from a config; never touches the network (pretrained weights load separately)."""
    return LVUNet(config, deploy=deploy)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (buffers such as BN statistics and the slope are not counted)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, image_size: int = 256, batch: int = 1) -> int:
    """Multiply-accumulates of one forward pass at ``batch x 3 x image_size x image_size``.

    Counted with ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matmuls; elementwise
    work is not counted), halved from FLOPs to MACs.
    """
    from torch.utils.flop_counter import FlopCounterMode

    param = next(model.parameters())
    x = torch.zeros(batch, 3, image_size, image_size, device=param.device, dtype=param.dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


@contextmanager
def exact_float32():
    """Switch TF32 off inside the block: on Ampere and later GPUs cuDNN convolutions default to TF32,
    which moves logits by up to ~0.1 and would hide (or fake) a fused-vs-trained difference."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
