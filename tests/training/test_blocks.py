"""Fusible blocks: fused == unfused in float32 at slope 1, refusal otherwise, deploy-mode loading."""

import pytest
import torch
from torch import nn

from lvunet_edge.blocks import FusibleBlock, SeriesActivation
from lvunet_edge.errors import FusionError
from tests.helpers import randomize_bn


@pytest.mark.parametrize("resample", ["down", "up"])
@pytest.mark.parametrize("act_num", [0, 1, 2, 3, 4])
def test_block_fused_equals_unfused(resample, act_num):
    torch.manual_seed(act_num)
    block = randomize_bn(FusibleBlock(8, 12, resample, act_num=act_num), seed=act_num).eval()
    block.slope.fill_(1.0)
    x = torch.randn(2, 8, 16, 16)
    expected = block(x)
    block.reparameterize()
    assert block.deploy and not any(isinstance(m, nn.BatchNorm2d) for m in block.modules())
    torch.testing.assert_close(block(x), expected, rtol=1e-4, atol=1e-5)


def test_block_refuses_to_fuse_below_slope_one():
    block = FusibleBlock(4, 4, "down").eval()
    block.slope.fill_(0.99)
    with pytest.raises(FusionError, match="slope is 0.99"):
        block.reparameterize()
    assert not block.deploy and hasattr(block, "conv1")


def test_block_slope_changes_output_and_is_saved():
    torch.manual_seed(0)
    block = randomize_bn(FusibleBlock(4, 4, "up")).eval()
    x = torch.randn(1, 4, 4, 4)
    block.slope.fill_(0.0)
    relu_out = block(x)
    block.slope.fill_(1.0)
    assert not torch.allclose(block(x), relu_out)
    assert float(block.state_dict()["slope"]) == 1.0


def test_deploy_block_loads_fused_state_dict_strictly():
    torch.manual_seed(0)
    block = randomize_bn(FusibleBlock(6, 3, "down")).eval()
    block.slope.fill_(1.0)
    block.reparameterize()
    fresh = FusibleBlock(6, 3, "down", deploy=True)
    fresh.load_state_dict(block.state_dict(), strict=True)
    x = torch.randn(1, 6, 8, 8)
    torch.testing.assert_close(fresh.eval()(x), block(x))


def test_series_activation_reparameterize_is_idempotent():
    act = randomize_bn(SeriesActivation(5, 1)).eval()
    x = torch.randn(1, 5, 6, 6)
    expected = act(x)
    act.reparameterize()
    once = act(x)
    act.reparameterize()
    torch.testing.assert_close(act(x), once, rtol=0, atol=0)
    torch.testing.assert_close(once, expected, rtol=1e-4, atol=1e-5)
