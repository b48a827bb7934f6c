"""Fusion maths in float64: exact to ~1e-10 against running the layers."""

import torch
import torch.nn.functional as F
from torch import nn

from lvunet_edge.fusion import compose_1x1, fuse_conv_bn
from tests.helpers import randomize_bn


def _bn(channels: int, eps: float = 1e-6) -> nn.BatchNorm2d:
    return randomize_bn(nn.BatchNorm2d(channels, eps=eps)).double().eval()


def test_fuse_conv_bn_matches_conv_then_bn_float64():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 9, 9, dtype=torch.float64)
    weight = torch.randn(7, 5, 3, 3, dtype=torch.float64)
    bias = torch.randn(7, dtype=torch.float64)
    bn = _bn(7)
    expected = bn(F.conv2d(x, weight, bias, padding=1))
    w, b = fuse_conv_bn(weight, bias, bn)
    assert torch.allclose(F.conv2d(x, w, b, padding=1), expected, atol=1e-10, rtol=0)


def test_fuse_conv_bn_without_bias_and_depthwise_float64():
    torch.manual_seed(1)
    x = torch.randn(1, 6, 8, 8, dtype=torch.float64)
    weight = torch.randn(6, 1, 3, 3, dtype=torch.float64)
    bn = _bn(6, eps=1e-3)
    expected = bn(F.conv2d(x, weight, None, padding=1, groups=6))
    w, b = fuse_conv_bn(weight, None, bn)
    assert torch.allclose(F.conv2d(x, w, b, padding=1, groups=6), expected, atol=1e-10, rtol=0)


def test_compose_1x1_float64():
    torch.manual_seed(2)
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    w1, b1 = torch.randn(4, 4, 1, 1, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    w2, b2 = torch.randn(9, 4, 1, 1, dtype=torch.float64), torch.randn(9, dtype=torch.float64)
    expected = F.conv2d(F.conv2d(x, w1, b1), w2, b2)
    w, b = compose_1x1(w1, b1, w2, b2)
    assert w.shape == (9, 4, 1, 1)
    assert torch.allclose(F.conv2d(x, w, b), expected, atol=1e-10, rtol=0)


def test_fusion_maths_is_pure_and_differentiable():
    weight = torch.randn(3, 2, 1, 1, dtype=torch.float64, requires_grad=True)
    bn = _bn(3)
    before = weight.detach().clone()
    w, b = fuse_conv_bn(weight, None, bn)
    (w.sum() + b.sum()).backward()
    assert weight.grad is not None and torch.equal(weight.detach(), before)
