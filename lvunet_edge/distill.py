"""Self-distillation (training only): soft targets from a teacher LV-UNet seen through flip TTA.

A teacher (``best.pt`` of an earlier run at the same size and normalisation, typically the same data and
split) predicts every training image once, before training starts, as the mean logit over the image and
its horizontal, vertical and double mirrors: the runtime's ``--tta hv``. Its sigmoid is the soft target.
The targets ride through augmentation as a second mask channel (the same affine moves, rotations and
flips, never binarised), and the student's loss becomes ``(1 - w) * (BCE + Dice against the mask) +
w * BCE against the soft target``. The student has the teacher's graph and latency: what the teacher
gains from four model runs the student may keep at one.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from lvunet_runtime.contract import ModelContract
from lvunet_runtime.data import file_sha256

from lvunet_edge.checkpoint import load_checkpoint
from lvunet_edge.errors import CheckpointError, LVUNetError
from lvunet_edge.model import exact_float32

TTA_FLIPS = ((), (3,), (2,), (2, 3))  # identity, left-right, up-down, both (NCHW axes)


def load_teacher(
    path: str | Path,
    contract: ModelContract,
    device: torch.device,
    held_out: set[str],
) -> torch.nn.Module:
    """The teacher model, checked to see inputs as the student does and never to have seen its test set.

    ``held_out``: content hashes of the student's test images; a teacher whose recorded training data
    (train and validation) holds any of them is refused, since distilling it would leak the test set.

    Raises:
        CheckpointError: unreadable, or not an LV-UNet checkpoint with a contract.
        LVUNetError: another input size or normalisation, or a teacher that saw the test images.
    """
    model, info = load_checkpoint(path, map_location=device)
    if not isinstance(info.get("contract"), dict):
        raise CheckpointError(
            f"teacher {path} records no preprocessing contract (not from lvunet-train)"
        )
    teacher = ModelContract.from_dict(info["contract"], source=str(path))
    fields = ("input_height", "input_width", "mean", "std", "channel_order", "resize_interpolation")
    differ = [f for f in fields if getattr(teacher, f) != getattr(contract, f)]
    if differ:
        raise LVUNetError(
            f"teacher {path} was trained with another {', '.join(differ)} "
            f"({teacher.input_height}x{teacher.input_width} vs {contract.input_height}x"
            f"{contract.input_width}); distil from a run of the same size and normalisation"
        )
    leaked = held_out & set(teacher.training_image_sha256)
    if leaked:
        raise LVUNetError(
            f"teacher {path} trained on {len(leaked)} of this run's test images; its soft targets "
            "would leak them: distil from a run with the same or no overlapping test split"
        )
    return model


@torch.no_grad()
def soft_targets(
    teacher: torch.nn.Module,
    images: torch.Tensor,
    contract: ModelContract,
    batch_size: int = 32,
) -> torch.Tensor:
    """Teacher probabilities (N, H, W) as uint8 0-255 for uint8 (N, H, W, 3) images on its device:
    sigmoid of the mean logit over the four flipped views, in eval mode and true float32."""
    from lvunet_edge.dataset import to_input

    teacher.eval()
    out = []
    with exact_float32():
        for start in range(0, len(images), batch_size):
            x = to_input(images[start : start + batch_size], contract)
            total = torch.zeros_like(x[:, :1])
            for dims in TTA_FLIPS:
                view = torch.flip(x, dims) if dims else x
                logits = teacher(view)[:, :1].float()
                total += torch.flip(logits, dims) if dims else logits
            prob = torch.sigmoid(total / len(TTA_FLIPS))[:, 0]
            out.append(torch.round(prob * 255).to(torch.uint8))
    if not out:
        return torch.zeros(images.shape[:3], dtype=torch.uint8, device=images.device)
    return torch.cat(out)


def distill_loss(
    task_loss: torch.Tensor, logits: torch.Tensor, soft: torch.Tensor, weight: float
) -> torch.Tensor:
    """``(1 - w) * task_loss + w * BCE(logits, soft)``; ``soft`` (B, 1, H, W) probabilities."""
    kd = F.binary_cross_entropy_with_logits(logits.float(), soft.float())
    return (1.0 - weight) * task_loss + weight * kd


def check_unchanged(path: str | Path, recorded: str | None) -> None:
    """On resume, the teacher file must still be the one the run started with."""
    if not Path(path).is_file():
        raise CheckpointError(f"the run's teacher {path} is gone; it is needed to resume")
    if recorded is not None and file_sha256(path) != recorded:
        raise CheckpointError(
            f"the run's teacher {path} changed since the run started (sha256 differs); "
            "restore it to resume"
        )
