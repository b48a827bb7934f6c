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


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory) -> Path:
    """A training checkpoint of the default LV-UNet with random weights and BN statistics, slope 1."""
    from lvunet_edge import build_model, save_checkpoint, set_act_slope

    torch.manual_seed(0)
    model = randomize_bn(build_model()).eval()
    set_act_slope(model, 1.0)
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    save_checkpoint(path, model, metrics={"val": {"iou": 0.5}}, split={"source": "test"})
    return path


@pytest.fixture(scope="session")
def exported(random_checkpoint, tmp_path_factory):
    """(onnx path, export report) for the random checkpoint."""
    from lvunet_export.export import export_onnx

    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    report = export_onnx(random_checkpoint, out, verify_images=DATA / "images", label="lesion")
    return out, report
