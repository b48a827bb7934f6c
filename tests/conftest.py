"""Shared fixtures: randomised BatchNorm statistics (so fusion is tested on non-trivial BNs)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

DATA = Path(__file__).parent / "data" / "sample"


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm random affine parameters and running statistics (in place)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.2)
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.2)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
    return model


@pytest.fixture
def sample_dir() -> Path:
    return DATA
