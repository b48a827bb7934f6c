"""Deep supervision (--deep-supervision W): side heads on the decoder train with the model, change the
weights it learns, and never reach best.pt, the fused model or the export; runs resume exactly."""

import json

import pytest
import torch
from lvunet_runtime.contract import ModelContract

from lvunet_edge import load_checkpoint
from lvunet_edge.errors import LVUNetError
from lvunet_edge.model import build_model
from lvunet_edge.supervision import SideOutputs
from lvunet_edge.train import train
from tests.conftest import train_config


def test_side_outputs_follow_the_decoder_in_training_only():
    model = build_model()
    side = SideOutputs(model)
    model.train()
    x = torch.randn(2, 3, 128, 128)
    model(x)
    logits = side.logits((128, 128))
    assert [t.shape for t in logits] == [(2, 1, 128, 128)] * 3
    assert [h.in_channels for h in side.heads] == [40, 24, 16]
    loss = sum(t.mean() for t in logits)
    loss.backward()  # the side losses reach the decoder's weights, not only the heads
    assert model.decoder[-1].parameters().__next__().grad is not None
    model.eval()
    with torch.no_grad():
        model(x)  # evaluation keeps nothing
    with pytest.raises(RuntimeError, match="expected 3 decoder outputs, got 0"):
        side.logits((128, 128))


@pytest.mark.slow
def test_deep_supervision_fuses_exactly_leaves_the_model_alone_and_resumes_exactly(tmp_path):
    out = tmp_path / "ds"
    metrics = train(train_config(out, deep_supervision=0.4), progress=False)
    for key in ("iou", "dice"):
        assert abs(metrics["trained"][key] - metrics["fused"][key]) <= 0.001
    assert metrics["max_abs_logit_diff"] < 1e-3
    best, info = load_checkpoint(out / "best.pt")
    assert set(best.state_dict()) == set(build_model().state_dict())  # no side heads in best.pt
    recipe = ModelContract.from_dict(info["contract"]).training_recipe
    assert recipe["deep_supervision"] == 0.4
    last = torch.load(out / "last.pt", weights_only=True)
    assert set(last["side"]) == {f"heads.{i}.{p}" for i in range(3) for p in ("weight", "bias")}
    # the side losses change what the model learns (same seed, same data, without them)
    plain = tmp_path / "plain"
    train(train_config(plain), progress=False)
    plain_last = torch.load(plain / "last.pt", weights_only=True)["state_dict"]
    assert any(
        not torch.equal(last["state_dict"][k], plain_last[k])
        for k in plain_last
        if plain_last[k].is_floating_point()
    )
    resumed = tmp_path / "resumed"
    assert train(train_config(resumed, deep_supervision=0.4), progress=False, stop_after=2) == {}
    again = train(train_config(resumed, deep_supervision=0.4), resume=resumed, progress=False)
    assert again["trained"] == json.loads((out / "metrics.json").read_text())["trained"]
    resumed_last = torch.load(resumed / "last.pt", weights_only=True)
    assert all(torch.equal(resumed_last["side"][k], v) for k, v in last["side"].items())


def test_deep_supervision_weight_is_checked(tmp_path):
    for bad in (-0.1, 1.5):
        with pytest.raises(LVUNetError, match="deep_supervision must be 0"):
            train_config(tmp_path, deep_supervision=bad)


def test_the_weight_average_carries_no_side_hooks(tmp_path):
    from lvunet_edge.train import build_training, start_run

    run = start_run(train_config(tmp_path / "r", deep_supervision=0.4, ema=0.9), None)
    run.sets = {}
    build_training(run, None)
    assert any(block._forward_hooks for block in run.model.decoder)
    assert not any(block._forward_hooks for block in run.ema.module.decoder)
