"""The whole model: parameter counts, MACs, ablation configs, input-size checks, fused == unfused."""

import copy

import pytest
import torch
from torch import nn

from lvunet_edge import (
    InputSizeError,
    LVUNetConfig,
    LVUNetError,
    build_model,
    count_macs,
    count_parameters,
    reparameterize_model,
    set_act_slope,
)
from tests.helpers import randomize_bn

ABLATIONS = [
    LVUNetConfig(),
    LVUNetConfig(combination="I"),
    LVUNetConfig(combination="III"),
    LVUNetConfig(act_num=0),
    LVUNetConfig(act_num=2),
    LVUNetConfig(act_num=3),
    LVUNetConfig(act_num=4),
    LVUNetConfig(skip="concat"),
]


def test_default_parameter_counts_match_reference():
    model = build_model()
    assert count_parameters(model) == 934_545  # the reference implementation's training-mode count
    set_act_slope(model, 1.0)
    fused = reparameterize_model(model)
    # The reference reaches 513,585 because it leaves MobileNetV3's BatchNorms unfused; we fold them.
    assert count_parameters(fused) == 510_985


@pytest.mark.parametrize(
    ("combination", "expected_millions"), [("I", 2.8), ("II", 0.9), ("III", 0.8)]
)
def test_ablation_parameter_counts_near_paper_table_iv(combination, expected_millions):
    params = count_parameters(build_model(LVUNetConfig(combination=combination)))
    assert abs(params / 1e6 - expected_millions) < 0.05 * expected_millions + 0.05


def test_macs_training_and_fused():
    model = build_model()
    train_macs = count_macs(model)
    set_act_slope(model, 1.0)
    fused_macs = count_macs(reparameterize_model(model))
    # FlopCounterMode counts convolutions only; the paper's 0.22 G / 0.20 G also counts elementwise work.
    assert train_macs == pytest.approx(0.175e9, rel=0.01)
    assert fused_macs == pytest.approx(0.157e9, rel=0.01)
    assert fused_macs < train_macs


@pytest.mark.parametrize(
    "config", ABLATIONS, ids=lambda c: f"{c.combination}-n{c.act_num}-{c.skip}"
)
def test_fused_model_equals_unfused(config):
    torch.manual_seed(0)
    model = randomize_bn(build_model(config)).eval()
    set_act_slope(model, 1.0)
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        expected = model(x)
        fused = reparameterize_model(model)
        actual = fused(x)
    assert expected.shape == (2, 1, 128, 128)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert count_parameters(fused) < count_parameters(model)


def test_fusing_twice_is_a_no_op_and_inplace_false_leaves_original():
    torch.manual_seed(0)
    model = randomize_bn(build_model()).eval()
    set_act_slope(model, 1.0)
    before = copy.deepcopy(model.state_dict())
    fused = reparameterize_model(model)
    after_once = copy.deepcopy(fused.state_dict())
    again = reparameterize_model(fused, inplace=True)
    assert again is fused
    assert after_once.keys() == fused.state_dict().keys()
    assert all(torch.equal(after_once[k], v) for k, v in fused.state_dict().items())
    assert model.state_dict().keys() == before.keys() and not model.deploy
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_fusing_at_slope_099_raises_and_changes_nothing():
    model = build_model().eval()
    set_act_slope(model, 0.99)
    with pytest.raises(LVUNetError, match=r"slope is 0\.99.*not 1\.0"):
        reparameterize_model(model, inplace=True)
    assert not model.deploy and any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_deploy_model_loads_fused_state_dict_strictly():
    torch.manual_seed(0)
    model = randomize_bn(build_model()).eval()
    set_act_slope(model, 1.0)
    fused = reparameterize_model(model)
    deployed = build_model(deploy=True)
    deployed.load_state_dict(fused.state_dict(), strict=True)
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(deployed.eval()(x), fused(x), rtol=0, atol=0)


@pytest.mark.parametrize(("size", "suggested"), [(250, 256), (320, 384), (100, 128)])
def test_input_size_not_multiple_of_divisor_is_refused(size, suggested):
    model = build_model().eval()
    with pytest.raises(InputSizeError, match=f"multiple of 128.*{suggested}x{suggested}"):
        model(torch.zeros(1, 3, size, size))


def test_config_validation_and_round_trip():
    config = LVUNetConfig(combination="III", act_num=2, skip="concat")
    assert LVUNetConfig.from_dict(config.to_dict()) == config
    for bad in ({"act_num": 5}, {"combination": "IV"}, {"skip": "mul"}, {"encoder_widths": (1,)}):
        with pytest.raises(LVUNetError):
            LVUNetConfig(**bad)
    with pytest.raises(LVUNetError, match="unknown"):
        LVUNetConfig.from_dict({"colour": "red"})


def test_constructor_does_not_touch_network(monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("the model constructor tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    build_model(LVUNetConfig(combination="I"))
