"""Shared fixtures. Torch is imported only inside the fixtures that need it, so the runtime's tests
(``tests/runtime``) run in an environment with the runtime alone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import DATA

# Markers of the extra environments: their test folders (tests/<marker>/) import what only those venvs
# have, so they are collected only when a -m expression asks for the marker (not under "not ray").
EXTRA_ENVIRONMENTS = ("ray", "openvino", "browser", "webgpu", "dicom")


def _selected_markers(config) -> set[str]:
    expression = config.getoption("markexpr") or ""
    return set(re.findall(r"(?<!not )\b(\w+)\b", expression)) - {"not", "and", "or"}


def pytest_ignore_collect(collection_path, config):
    if (
        collection_path.parent == Path(__file__).parent
        and collection_path.name in EXTRA_ENVIRONMENTS
    ):
        return collection_path.name not in _selected_markers(config)
    return None


@pytest.fixture
def sample_dir() -> Path:
    return DATA


def make_random_checkpoint(path: Path, **contract_changes) -> Path:
    """A training checkpoint of the default LV-UNet with random weights, slope 1, calibrated on the
    sample images so that its masks are neither empty nor full (see ``calibrate_random_model``):
    asserted here, so no mask comparison made on it can pass by comparing two empty masks. Its contract
    is the training default with ``contract_changes`` (e.g. another threshold)."""
    import torch
    from lvunet_runtime import load_image
    from lvunet_runtime.contract import ModelContract
    from lvunet_runtime.processing import preprocess, sigmoid

    from lvunet_edge import build_model, save_checkpoint, set_act_slope
    from tests.helpers import calibrate_random_model, mask_statistics

    torch.manual_seed(0)
    images = [load_image(p)[0] for p in sorted((DATA / "images").iterdir())]
    model = build_model()
    set_act_slope(model, 1.0)
    contract = ModelContract(**contract_changes)
    calibrate_random_model(model, images, threshold=contract.threshold)
    with torch.no_grad():
        logits = model(torch.from_numpy(preprocess(images, contract)))[:, 0].numpy()
    for probability in sigmoid(logits):
        foreground, near = mask_statistics(probability, contract.threshold)
        assert 0.05 < foreground < 0.95 and near >= 0.01, (foreground, near)
    save_checkpoint(
        path,
        model,
        metrics={"val": {"iou": 0.5}},
        split={"source": "test"},
        contract=contract.to_dict(),
    )
    return path


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory) -> Path:
    """See :func:`make_random_checkpoint`. Its contract's threshold is 0.7, not the default 0.5, so every
    export test also shows that training, export and runtime apply the contract's threshold (a rule
    written as ``logit > 0`` anywhere would fail them)."""
    return make_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.pt", threshold=0.7)


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
    from lvunet_edge.config import TrainConfig

    values = dict(
        data=str(DATA), out=str(out), image_size=128, epochs=6, batch_size=2, lr=3e-3, workers=2
    )
    return TrainConfig(**{**values, **overrides})
