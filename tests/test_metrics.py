"""Metrics on hand-made masks with known answers."""

import numpy as np
import pytest
import torch

from lvunet_edge.losses import bce_dice_loss
from lvunet_edge.metrics import confusion_counts, per_image_scores, summarize


def test_per_image_iou_dice_and_empty_conventions():
    target = np.zeros((3, 4, 4), bool)
    pred = np.zeros((3, 4, 4), bool)
    target[0, :2] = True  # 8 pixels
    pred[0, :1] = True  # 4 pixels, all inside
    pred[1, 0, 0] = True  # empty target, one false positive
    counts = confusion_counts(pred, target)
    assert counts[0].tolist() == [4, 0, 4, 8]
    iou, dice = per_image_scores(counts)
    assert iou.tolist() == [0.5, 0.0, 1.0]
    assert dice[0] == pytest.approx(2 / 3)
    summary = summarize(counts, batch_size=2)
    assert summary["iou"] == pytest.approx(0.5)
    assert summary["dataset_iou"] == pytest.approx(4 / 9)
    assert summary["precision"] == pytest.approx(0.8) and summary["recall"] == 0.5
    assert summary["batch_pooled_iou"] == pytest.approx((4 / 9 + 1.0) / 2)


def test_loss_is_lower_for_better_predictions():
    target = torch.zeros(2, 1, 8, 8)
    target[:, :, :4] = 1
    good = (target * 2 - 1) * 5
    assert bce_dice_loss(good, target) < bce_dice_loss(-good, target)
    assert bce_dice_loss(good, target) < 0.1
