"""Checkpoint format: round trip (fused and not), slope preserved, clear errors for bad files."""

import pytest
import torch

from lvunet_edge import (
    CheckpointError,
    LVUNetConfig,
    build_model,
    load_checkpoint,
    reparameterize_model,
    save_checkpoint,
    set_act_slope,
)
from tests.helpers import randomize_bn


@pytest.mark.parametrize("fused", [False, True])
def test_round_trip_identical_outputs(tmp_path, fused):
    torch.manual_seed(0)
    model = randomize_bn(build_model(LVUNetConfig(act_num=2))).eval()
    set_act_slope(model, 0.5 if not fused else 1.0)
    if fused:
        model = reparameterize_model(model)
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, epoch=3, metrics={"iou": 0.5})
    loaded, info = load_checkpoint(path)
    assert info["epoch"] == 3 and info["metrics"] == {"iou": 0.5}
    assert info["fused"] is fused and info["slope"] == (None if fused else 0.5)
    assert info["config"]["act_num"] == 2
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_truncated_file(tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(path, build_model())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path)


def test_not_a_checkpoint(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError):
        load_checkpoint(text)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match="not an LV-UNet checkpoint"):
        load_checkpoint(other)


def test_arbitrary_objects_are_not_unpickled(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "lvunet-edge/checkpoint", "payload": Evil()}, path)
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(path)
