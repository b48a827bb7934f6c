"""Loading torchvision's MobileNetV3-Large keys into the encoder by name, offline."""

import json
from pathlib import Path

import pytest
import torch

from lvunet_edge import LVUNetConfig, WeightsError, build_model, load_mobilenet_v3_weights

MANIFEST = Path(__file__).parents[1] / "data" / "torchvision-mobilenet_v3_large-keys.json"


def _torchvision_state_dict() -> dict[str, torch.Tensor]:
    entries = json.loads(MANIFEST.read_text())["entries"]
    generator = torch.Generator().manual_seed(0)
    state = {}
    for entry in entries:
        if entry["dtype"] == "int64":
            state[entry["key"]] = torch.tensor(7)
        else:
            state[entry["key"]] = torch.randn(entry["shape"], generator=generator)
    return state


@pytest.mark.parametrize("combination", ["I", "II", "III"])
def test_torchvision_keys_load_by_name(tmp_path, combination):
    state = _torchvision_state_dict()
    path = tmp_path / "mobilenet_v3_large.pth"
    torch.save(state, path)
    model = build_model(LVUNetConfig(combination=combination))
    loaded = load_mobilenet_v3_weights(model, path)
    assert loaded and all(k.startswith("features.") for k in loaded)
    ours = model.state_dict()
    for key in loaded:
        assert torch.equal(ours[key], state[key]), key
    depth = model.config.depth
    assert f"features.{depth}.block.0.0.weight" in loaded
    assert not any(k.startswith(f"features.{depth + 1}.") for k in loaded)


def test_missing_and_wrong_and_truncated_files(tmp_path):
    model = build_model()
    with pytest.raises(WeightsError, match="not found"):
        load_mobilenet_v3_weights(model, tmp_path / "absent.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(1)}, wrong)
    with pytest.raises(WeightsError, match="keys missing"):
        load_mobilenet_v3_weights(model, wrong)
    state = _torchvision_state_dict()
    state["features.0.0.weight"] = torch.zeros(8, 3, 3, 3)
    shapes = tmp_path / "shapes.pth"
    torch.save(state, shapes)
    with pytest.raises(WeightsError, match="shape of features.0.0.weight"):
        load_mobilenet_v3_weights(model, shapes)
    good = tmp_path / "good.pth"
    torch.save(_torchvision_state_dict(), good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(WeightsError, match="truncated"):
        load_mobilenet_v3_weights(model, truncated)


def test_torchvision_source_without_cache_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(WeightsError, match="nothing is downloaded"):
        load_mobilenet_v3_weights(build_model(), "torchvision")
