"""The training recipes: strong augmentation moves images and masks together, stays in range and is
reproducible; --ema keeps a moving average that best.pt holds, fuses exactly and resumes exactly."""

import json

import pytest
import torch
from lvunet_runtime.contract import ModelContract

from lvunet_edge import load_checkpoint
from lvunet_edge.augment import (
    affine,
    augment_batch,
    blur,
    elastic,
    flips,
    gamma_contrast,
    highlights,
    photometric,
    speckle,
)
from lvunet_edge.dataset import normalise, to_input
from lvunet_edge.errors import LVUNetError
from lvunet_edge.train import train
from tests.conftest import train_config


def _masks(n=4, size=64):
    masks = torch.zeros((n, 1, size, size))
    for i in range(n):
        masks[i, 0, 8 + 4 * i : 40 + 2 * i, 10 + 3 * i : 44] = 1
    return masks


def test_affine_and_flips_move_image_and_mask_together():
    masks = _masks()
    pixels = masks.repeat(1, 3, 1, 1) * 255  # the image is its own mask
    moved, moved_masks = affine(pixels, masks, torch.Generator().manual_seed(0))
    assert not torch.equal(moved_masks, masks)  # it did move
    agree = ((moved[:, 0:1] > 127.5).float() == moved_masks).float().mean()
    assert agree > 0.995
    flipped, flipped_masks = flips(moved, moved_masks, torch.Generator().manual_seed(1))
    assert ((flipped[:, 0:1] > 127.5).float() == flipped_masks).float().mean() == agree


def test_the_ultrasound_recipe_keeps_grey_images_grey_and_moves_masks_with_them():
    masks = _masks()
    grey = (
        masks.repeat(1, 3, 1, 1) * 180 + 40
    ).clone()  # grey: the channels agree; the image is its mask
    generator = torch.Generator().manual_seed(2)
    for change in (gamma_contrast, lambda p, g: speckle(p, g, p=1.0)):
        out = change(grey, generator)
        assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])  # still grey
        assert not torch.equal(out, grey)
    moved, moved_masks = elastic(grey, masks, torch.Generator().manual_seed(4))
    assert not torch.equal(moved_masks, masks)  # it warped
    agree = ((moved[:, 0:1] > 130).float() == moved_masks).float().mean()
    assert agree > 0.99  # image and mask moved together
    changed = (moved_masks != masks).float().mean()
    assert 0 < changed < 0.05  # mild: a few percent of the pixels


def test_photometric_highlights_blur_stay_in_range_and_change_pixels():
    generator = torch.Generator().manual_seed(0)
    pixels = torch.rand((8, 3, 64, 64), generator=generator) * 200 + 20
    for change in (photometric, highlights, blur, gamma_contrast, speckle):
        out = change(pixels, torch.Generator().manual_seed(3))
        assert out.shape == pixels.shape and out.min() >= 0 and out.max() <= 255
        assert not torch.equal(out, pixels), change.__name__
    bright = highlights(pixels, torch.Generator().manual_seed(3), p=1.0)
    assert (bright >= pixels - 1e-4).all()  # highlights only brighten


def test_recipes_are_reproducible_and_basic_is_normalise_then_flips():
    contract = ModelContract(input_height=128, input_width=128)
    images = (torch.rand((4, 64, 64, 3), generator=torch.Generator().manual_seed(0)) * 255).to(
        torch.uint8
    )
    masks = _masks()
    a = augment_batch("strong", images, masks, contract, torch.Generator().manual_seed(5))
    b = augment_batch("strong", images, masks, contract, torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    basic = augment_batch("basic", images, masks, contract, torch.Generator().manual_seed(5))
    expected = flips(to_input(images, contract), masks, torch.Generator().manual_seed(5))
    assert torch.equal(basic[0], expected[0]) and torch.equal(basic[1], expected[1])
    assert not torch.equal(a[0], basic[0])
    bgr = ModelContract(input_height=128, input_width=128, channel_order="BGR")
    assert torch.equal(normalise(images.permute(0, 3, 1, 2), bgr), to_input(images, bgr))


@pytest.mark.slow
def test_strong_augmentation_with_ema_fuses_exactly_and_resumes_exactly(tmp_path):
    out = tmp_path / "full"
    metrics = train(train_config(out, augment="strong", ema=0.9), progress=False)
    for key in ("iou", "dice"):
        assert abs(metrics["trained"][key] - metrics["fused"][key]) <= 0.001
    assert metrics["max_abs_logit_diff"] < 1e-3
    best, info = load_checkpoint(out / "best.pt")
    assert info["slope"] == 1.0 and info["train_config"]["augment"] == "strong"
    last_state = torch.load(out / "last.pt", weights_only=True)
    averaged = {
        k.removeprefix("module."): v
        for k, v in last_state["ema"].items()
        if k.startswith("module.")
    }
    raw = last_state["state_dict"]
    assert info["epoch"] == last_state["epoch"] == 5
    assert all(
        torch.equal(best.state_dict()[k], averaged[k]) for k in averaged
    )  # best.pt is the average
    assert any(not torch.equal(raw[k], averaged[k]) for k in raw if raw[k].is_floating_point())
    resumed = tmp_path / "resumed"
    assert (
        train(train_config(resumed, augment="strong", ema=0.9), progress=False, stop_after=2) == {}
    )
    again = train(train_config(resumed, augment="strong", ema=0.9), resume=resumed, progress=False)
    assert again["trained"] == json.loads((out / "metrics.json").read_text())["trained"]


def test_bad_recipe_settings_are_refused(tmp_path):
    with pytest.raises(LVUNetError, match="augment must be one of basic, strong, ultrasound"):
        train_config(tmp_path, augment="wild")
    with pytest.raises(LVUNetError, match="ema must be 0"):
        train_config(tmp_path, ema=1.0)


def test_multi_scale_draws_whole_batch_sizes_in_steps_of_128_and_keeps_soft_channels():
    from lvunet_edge.augment import multi_scale

    masks = torch.zeros((2, 1, 256, 256))
    masks[:, :, 64:192, 32:160] = 1
    targets = torch.cat([masks, masks * 0.7], 1)
    inputs = masks.repeat(1, 3, 1, 1)
    generator, seen = torch.Generator().manual_seed(0), set()
    for _ in range(30):
        x, t = multi_scale(inputs, targets, 256, generator)
        size = x.shape[-1]
        seen.add(size)
        assert x.shape == (2, 3, size, size) and t.shape == (2, 2, size, size)
        assert set(torch.unique(t[:, 0]).tolist()) <= {0.0, 1.0}
        assert (
            (t[:, 1] > 0.35) == (t[:, 0] > 0.5)
        ).float().mean() > 0.99  # moved alike, still soft
        assert (
            abs(t[:, 0].mean().item() - masks.mean().item()) < 0.01
        )  # the same share of the image
    assert seen == {128, 256, 384}
    small = [
        multi_scale(inputs[:, :, :128, :128], targets[:, :, :128, :128], 128, generator)
        for _ in range(20)
    ]
    assert {x.shape[-1] for x, _ in small} == {128, 256}  # never below 128


@pytest.mark.slow
def test_multi_scale_run_fuses_exactly_is_recorded_and_resumes_exactly(tmp_path):
    out = tmp_path / "ms"
    metrics = train(train_config(out, multi_scale=True), progress=False)
    for key in ("iou", "dice"):
        assert abs(metrics["trained"][key] - metrics["fused"][key]) <= 0.001
    _, info = load_checkpoint(out / "best.pt")
    assert ModelContract.from_dict(info["contract"]).training_recipe["multi_scale"] is True
    plain = tmp_path / "plain"
    train(train_config(plain), progress=False)
    scaled_last = torch.load(out / "last.pt", weights_only=True)["state_dict"]
    plain_last = torch.load(plain / "last.pt", weights_only=True)["state_dict"]
    assert any(  # the other sizes changed what it learned
        not torch.equal(scaled_last[k], plain_last[k])
        for k in plain_last
        if plain_last[k].is_floating_point()
    )
    resumed = tmp_path / "resumed"
    assert train(train_config(resumed, multi_scale=True), progress=False, stop_after=2) == {}
    again = train(train_config(resumed, multi_scale=True), resume=resumed, progress=False)
    assert again["trained"] == metrics["trained"]
