"""Self-distillation (--distill TEACHER): the soft targets are the teacher's flip-averaged predictions,
move with the mask through augmentation without being binarised, change what the student learns, are
recorded in the recipe, resume exactly, and a teacher that does not fit (size, test leak, changed file,
missing file) is refused with one line."""

import json
import shutil

import pytest
import torch
from lvunet_runtime.contract import ModelContract

from lvunet_edge import load_checkpoint
from lvunet_edge.augment import augment_batch
from lvunet_edge.dataset import to_input
from lvunet_edge.distill import file_sha256, soft_targets
from lvunet_edge.errors import CheckpointError, LVUNetError
from lvunet_edge.train import train
from tests.conftest import train_config
from tests.helpers import cli


def test_soft_targets_are_the_flip_averaged_sigmoid():
    torch.manual_seed(0)  # a lopsided 5x5 filter as the teacher: every wrong flip-back shows
    model = torch.nn.Conv2d(3, 1, 5, padding=2)
    contract = ModelContract(input_height=128, input_width=128)
    images = torch.randint(
        0, 256, (3, 128, 128, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    soft = soft_targets(model, images, contract, batch_size=2)
    assert soft.shape == (3, 128, 128) and soft.dtype == torch.uint8
    with torch.no_grad():
        x = to_input(images, contract)
        views = [model(torch.flip(x, d))[:, 0] for d in ((3,), (2,), (2, 3))]
        flipped_back = [
            torch.flip(v, [d - 1 for d in dims])
            for v, dims in zip(views, ((3,), (2,), (2, 3)), strict=True)
        ]
        expected = torch.sigmoid((model(x)[:, 0] + sum(flipped_back)) / 4)
    assert (soft.float() - expected * 255).abs().max() <= 0.51
    # averaging over all four views makes the targets equivariant: a mirrored image, mirrored targets
    mirrored = soft_targets(model, torch.flip(images, (2,)), contract)
    assert (mirrored.int() - torch.flip(soft, (2,)).int()).abs().max() <= 1
    assert len(torch.unique(soft)) > 10  # soft, not a mask


def test_soft_targets_ride_through_augmentation_with_the_mask():
    contract = ModelContract(input_height=128, input_width=128)
    masks = torch.zeros((4, 1, 128, 128))
    masks[:, :, 32:96, 24:80] = 1
    images = (masks[:, 0, :, :, None] * 200).repeat(1, 1, 1, 3).to(torch.uint8)
    stacked = torch.cat([masks, masks * 0.8], 1)  # a soft copy of the mask
    alone_x, alone = augment_batch(
        "strong", images, masks, contract, torch.Generator().manual_seed(5)
    )
    x, both = augment_batch("strong", images, stacked, contract, torch.Generator().manual_seed(5))
    assert torch.equal(x, alone_x) and torch.equal(
        both[:, :1], alone
    )  # the mask is as without targets
    assert set(torch.unique(both[:, 0]).tolist()) <= {0.0, 1.0}
    soft = both[:, 1]
    assert 0 < ((soft > 0) & (soft < 0.8)).sum()  # interpolated, not binarised
    assert ((soft > 0.4) == (both[:, 0] > 0.5)).float().mean() > 0.99  # moved with the mask


@pytest.mark.slow
def test_distilled_run_learns_otherwise_records_its_teacher_and_resumes_exactly(tmp_path):
    teacher = tmp_path / "teacher"
    train(train_config(teacher, epochs=3), progress=False)
    student = tmp_path / "student"
    metrics = train(train_config(student, distill=str(teacher / "best.pt")), progress=False)
    for key in ("iou", "dice"):
        assert abs(metrics["trained"][key] - metrics["fused"][key]) <= 0.001
    _, info = load_checkpoint(student / "best.pt")
    recipe = ModelContract.from_dict(info["contract"]).training_recipe
    assert recipe["distill_weight"] == 0.5
    assert recipe["distill_sha256"] == file_sha256(teacher / "best.pt")
    assert "distill" not in recipe  # a local path says nothing to the model's users
    plain = tmp_path / "plain"
    train(train_config(plain), progress=False)
    plain_recipe = ModelContract.from_dict(
        load_checkpoint(plain / "best.pt")[1]["contract"]
    ).training_recipe
    assert not {"distill_weight", "distill_sha256"} & set(plain_recipe)
    distilled_last = torch.load(student / "last.pt", weights_only=True)["state_dict"]
    plain_last = torch.load(plain / "last.pt", weights_only=True)["state_dict"]
    assert any(
        not torch.equal(distilled_last[k], plain_last[k])
        for k in plain_last
        if plain_last[k].is_floating_point()
    )
    resumed = tmp_path / "resumed"
    config = train_config(resumed, distill=str(teacher / "best.pt"))
    assert train(config, progress=False, stop_after=2) == {}
    again = train(config, resume=resumed, progress=False)
    assert again["trained"] == json.loads((student / "metrics.json").read_text())["trained"]
    # a teacher changed (or gone) since the run started is refused on resume
    shutil.rmtree(resumed)
    assert train(config, progress=False, stop_after=2) == {}
    shutil.copy(plain / "best.pt", teacher / "best.pt")
    with pytest.raises(CheckpointError, match="changed since the run started"):
        train(config, resume=resumed, progress=False)
    (teacher / "best.pt").unlink()
    with pytest.raises(CheckpointError, match="is gone"):
        train(config, resume=resumed, progress=False)


@pytest.mark.slow
def test_a_teacher_that_does_not_fit_is_refused(tmp_path):
    other_seed = tmp_path / "seed7"
    train(train_config(other_seed, epochs=1, seed=7), progress=False)  # its split differs
    with pytest.raises(LVUNetError, match="trained on .* of this run's test images"):
        train(train_config(tmp_path / "leak", distill=str(other_seed / "best.pt")), progress=False)
    bigger = tmp_path / "256"
    train(train_config(bigger, epochs=1, image_size=256), progress=False)
    with pytest.raises(LVUNetError, match="another input_height, input_width"):
        train(train_config(tmp_path / "size", distill=str(bigger / "best.pt")), progress=False)
    for bad in (0.0, 1.5):
        with pytest.raises(LVUNetError, match="distill_weight must be above 0"):
            train_config(tmp_path, distill="t.pt", distill_weight=bad)


def test_cli_refuses_a_missing_or_foreign_teacher_in_one_line(tmp_path, sample_dir):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    for teacher in (tmp_path / "missing.pt", junk):
        result = cli(
            "train",
            "--data",
            str(sample_dir),
            "--out",
            str(tmp_path / "run"),
            "--epochs",
            "1",
            "--image-size",
            "128",
            "--batch-size",
            "2",
            "--device",
            "cpu",
            "--no-progress",
            "--distill",
            str(teacher),
        )
        assert result.returncode == 1, result.stderr
        assert result.stderr.count("\n") == 1 and "lvunet-train: error:" in result.stderr
        assert "Traceback" not in result.stderr
