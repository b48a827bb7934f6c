"""Deep-training slope schedule and the model-wide slope setter."""

import math

import pytest

from lvunet_edge import LVUNetError, build_model, get_act_slope, set_act_slope, slope_schedule


def test_cosine_schedule_matches_paper_and_reaches_exactly_one():
    total = 270
    assert slope_schedule(0, total) == 0.0
    assert slope_schedule(135, total) == pytest.approx(1 - math.cos(math.pi / 4))
    assert slope_schedule(total, total) == 1.0
    assert slope_schedule(total + 5, total) == 1.0
    # The reference never reaches 1 in its last epoch (E - 1); ours is monotone and exact from E on.
    values = [slope_schedule(e, total) for e in range(total + 1)]
    assert values == sorted(values) and values[-2] < 1.0


def test_linear_schedule():
    assert slope_schedule(3, 12, "linear") == 0.25
    assert slope_schedule(12, 12, "linear") == 1.0


def test_schedule_rejects_bad_arguments():
    with pytest.raises(LVUNetError):
        slope_schedule(1, 10, "exponential")
    with pytest.raises(LVUNetError):
        slope_schedule(-1, 10)


def test_no_deep_training_means_slope_one():
    assert slope_schedule(0, 0) == 1.0


def test_set_and_get_act_slope():
    model = build_model()
    assert get_act_slope(model) == 0.0
    set_act_slope(model, 0.25)
    assert get_act_slope(model) == 0.25
    assert float(model.state_dict()["decoder.0.slope"]) == 0.25
    with pytest.raises(LVUNetError):
        set_act_slope(model, 1.5)
