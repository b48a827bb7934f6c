"""Several runs trained in one process (lvunet_edge/multirun.py, ``lvunet-train --seeds``): each equals its
solo run, keeps its own state and folder, and resumes exactly."""

import copy
import json

import pytest
import torch

from lvunet_edge import load_checkpoint
from lvunet_edge import train as training
from lvunet_edge.errors import LVUNetError
from lvunet_edge.multirun import StackedStep, check_compatible, seed_runs, train_many
from tests.conftest import train_config

# A run trained with others differs from its solo run only by float rounding: its convolutions run as
# grouped ones, summing in another order. The fixture's float32 gradients are themselves 2-35% (of their
# norm) away from float64's (the 1x1 bottleneck's BatchNorm over 2 values magnifies rounding), so the
# gradients are judged against float64: a run trained together is as exact as alone (within 20%), and
# differs from its solo run by less than float32's own error. Measured: 0.01-2.5% apart, the solo run
# 2.5-31% from float64. The first loss agrees to ~1e-7. Mixing two runs' BatchNorm statistics, inputs or
# generators moves the loss by 1e-2 or more.
LOSS_RTOL = 1e-5
AS_EXACT = 1.2
BUFFER_ATOL = 1e-4


def _runs(tmp_path, prefix, arms):
    runs = []
    for name, changes in arms:
        run = training.start_run(train_config(tmp_path / f"{prefix}-{name}", **changes), None)
        training.load_data(run, None)
        training.build_training(run, None)
        run.net.train()
        runs.append(run)
    return runs


def _float64_gradients(run):
    """The gradients of ``run``'s first step (its weights before it, its batch) in float64."""
    model = copy.deepcopy(run.initial).double()
    model.train()
    batch = run.first_batch
    loss = training.bce_dice_loss(model(batch.x.double()), batch.targets[:, :1].double())
    grads = torch.autograd.grad(loss, list(model.parameters()))
    return torch.cat([g.flatten() for g in grads]).float()


def _relative(a, b):
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


ARMS = [  # different seeds and recipe arms share one device step
    ("a", {"seed": 1, "augment": "strong"}),
    ("b", {"seed": 2, "augment": "basic", "ema": 0.9}),
    ("c", {"seed": 3, "augment": "strong", "lr": 1e-3}),
]


def test_each_run_of_a_stacked_step_equals_its_solo_step(tmp_path):
    together = _runs(tmp_path, "together", ARMS)
    alone = _runs(tmp_path, "alone", ARMS)
    step = StackedStep(together)
    orders = [training.epoch_order(r) for r in together]
    solo_orders = [training.epoch_order(r) for r in alone]
    batches = [training.next_batch(r, o, 0, 0) for r, o in zip(together, orders, strict=True)]
    solo_batches = [
        training.next_batch(r, o, 0, 0) for r, o in zip(alone, solo_orders, strict=True)
    ]
    for b, s in zip(batches, solo_batches, strict=True):  # each run draws from its own generator
        assert torch.equal(b.x, s.x) and torch.equal(b.targets, s.targets)
    assert not torch.equal(batches[0].x, batches[2].x)  # and the runs' batches differ

    tallies = [training.Tally(r.device) for r in together]
    step.train_step(together, batches, tallies)
    for run, batch, tally in zip(
        alone, solo_batches, [training.Tally(r.device) for r in alone], strict=True
    ):
        run.initial, run.first_batch = copy.deepcopy(run.model), batch
        training.train_step(run, batch, tally)
        loss = tally.losses[0]
        run.solo_loss = float(loss)
    for run, solo, tally in zip(together, alone, tallies, strict=True):
        assert float(tally.losses[0]) == pytest.approx(solo.solo_loss, rel=LOSS_RTOL)
        grads = torch.cat([p.grad.flatten() for p in run.model.parameters()])
        solo_grads = torch.cat([p.grad.flatten() for p in solo.model.parameters()])
        truth = _float64_gradients(solo)
        assert _relative(grads, truth) <= AS_EXACT * _relative(solo_grads, truth)
        assert _relative(grads, solo_grads) <= _relative(solo_grads, truth)
        for (name, mine), theirs in zip(
            run.model.named_buffers(), solo.model.buffers(), strict=True
        ):  # BatchNorm statistics of its own batch, copied back into its own model
            assert torch.allclose(mine.float(), theirs.float(), atol=BUFFER_ATOL), name
    means = [dict(r.model.named_buffers())["features.0.1.running_mean"] for r in together]
    assert not torch.allclose(means[0], means[1], atol=1e-3)  # not one shared set of statistics
    assert together[1].ema is not None and together[1].ema.n_averaged == 1


def test_seed_runs_train_together_and_resume_exactly(tmp_path):
    configs = seed_runs(train_config(tmp_path / "whole"), [1, 2])
    assert [c.out for c in configs] == [
        str(tmp_path / "whole-seed1"),
        str(tmp_path / "whole-seed2"),
    ]
    results = train_many(configs, progress=False)
    for seed, metrics in zip((1, 2), results, strict=True):
        folder = tmp_path / f"whole-seed{seed}"
        _, info = load_checkpoint(folder / "best.pt")
        assert info["train_config"]["seed"] == seed and info["slope"] == 1.0
        assert json.loads((folder / "metrics.json").read_text())["trained"] == metrics["trained"]
        log = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in log] == list(range(6))
    split = [json.loads((tmp_path / f"whole-seed{s}" / "split.json").read_text()) for s in (1, 2)]
    assert split[0]["test"] != split[1]["test"]  # each its own random split, as its solo run

    parts = seed_runs(train_config(tmp_path / "parts"), [1, 2])
    assert train_many(parts, progress=False, stop_after=2) == [{}, {}]
    folders = [tmp_path / "parts-seed1", tmp_path / "parts-seed2"]
    train_many(resume=folders, progress=False)
    for seed, folder in zip((1, 2), folders, strict=True):
        a, _ = load_checkpoint(tmp_path / f"whole-seed{seed}" / "last.pt")
        b, _ = load_checkpoint(folder / "last.pt")
        for (key, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert torch.equal(va, vb), (seed, key)


def test_runs_that_cannot_share_a_step_are_refused(tmp_path):
    base = train_config(tmp_path / "r")
    with pytest.raises(LVUNetError, match="must share --batch-size"):
        check_compatible([base, train_config(tmp_path / "s", batch_size=4)])
    with pytest.raises(LVUNetError, match="must share --image-size"):
        check_compatible([base, train_config(tmp_path / "s", image_size=256)])
    with pytest.raises(LVUNetError, match="--multi-scale cannot train several runs"):
        check_compatible([train_config(tmp_path / "s", multi_scale=True), base])
    with pytest.raises(LVUNetError, match="--deep-supervision cannot"):
        check_compatible([train_config(tmp_path / "s", deep_supervision=0.4), base])
    with pytest.raises(LVUNetError, match="one --out folder each"):
        check_compatible([base, base])
    with pytest.raises(LVUNetError, match="names a seed twice"):
        seed_runs(base, [1, 1])


def test_seeds_on_the_command_line(tmp_path):
    from tests.helpers import cli

    out = tmp_path / "cli"
    common = ("--data", str(train_config(out).data), "--image-size", "128", "--epochs", "3",
              "--batch-size", "2", "--workers", "2", "--no-progress")  # fmt: skip
    result = cli("train", *common, "--out", str(out), "--seeds", "3,4", "--stop-after", "1")
    assert result.returncode == 0, result.stderr
    assert "continue with --resume" in (tmp_path / "cli-seed3" / "train.log").read_text()
    result = cli("train", "--resume", str(out), "--seeds", "3,4", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "lvunet-train: done: 2 runs" in result.stdout
    for seed in (3, 4):
        log = (tmp_path / f"cli-seed{seed}" / "log.jsonl").read_text().splitlines()
        assert len(log) == 3
    bad = cli("train", *common, "--out", str(tmp_path / "bad"), "--seeds", "1,x")
    assert bad.returncode == 1 and "--seeds takes comma-separated whole numbers" in bad.stderr
    assert "Traceback" not in bad.stderr
    mixed = cli(
        "train", *common, "--out", str(tmp_path / "mixed"), "--seeds", "1,2", "--multi-scale"
    )
    assert mixed.returncode == 1 and "--multi-scale cannot train several runs" in mixed.stderr
    missing = cli("train", "--resume", str(tmp_path / "nothing"), "--seeds", "1,2")
    assert missing.returncode == 1 and "holds no run to resume" in missing.stderr
