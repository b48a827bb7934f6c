"""Shared fixtures. Torch is imported only inside the fixtures that need it, so the runtime's tests
(``tests/runtime``) run in an environment with the runtime alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import DATA


@pytest.fixture
def sample_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory) -> Path:
    """A training checkpoint of the default LV-UNet with random weights and BN statistics, slope 1."""
    import torch

    from lvunet_edge import build_model, save_checkpoint, set_act_slope
    from tests.helpers import randomize_bn

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


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A real (tiny) lvunet-train run at 128x128 on the sample pairs: (run folder, metrics)."""
    from lvunet_edge.train import train

    out = tmp_path_factory.mktemp("run")
    metrics = train(train_config(out), progress=False)
    return out, metrics


def train_config(out, **overrides):
    """6 epochs x 4 steps at lr 3e-3: the loss falls clearly (about 6%) in about 2 s."""
    from lvunet_edge.train import TrainConfig

    values = dict(
        data=str(DATA), out=str(out), image_size=128, epochs=6, batch_size=2, lr=3e-3, workers=2
    )
    return TrainConfig(**{**values, **overrides})
