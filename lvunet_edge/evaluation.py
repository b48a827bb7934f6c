"""Scoring a model on decoded images, in true float32: predicted logits, masks at the contract's
threshold, and the trained-vs-fused comparison every run ends with (paper section V.B's metrics)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from lvunet_runtime.contract import ModelContract
from lvunet_runtime.metrics import confusion_counts, summarize
from lvunet_runtime.processing import binarize_output
from torch import nn

from lvunet_edge.checkpoint import atomic_torch_save, load_checkpoint, read_checkpoint
from lvunet_edge.dataset import ArrayDataset, to_input
from lvunet_edge.errors import LVUNetError
from lvunet_edge.model import exact_float32
from lvunet_edge.reparam import reparameterize_model

FUSED_TOLERANCE = 0.001  # trained and fused test metrics must agree to this


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images: np.ndarray,
    device: torch.device,
    contract: ModelContract,
    batch_size: int = 16,
) -> np.ndarray:
    """Logits (N, H, W) float32 for uint8 (N, H, W, 3) RGB images, in eval mode and true float32.

    TF32 is switched off for the call: on Ampere and later GPUs cuDNN convolutions default to TF32,
    which moves logits by up to ~0.1 and would hide (or fake) a fused-vs-trained difference.
    """
    model.eval()
    with exact_float32():
        return _predict(model, images, device, contract, batch_size)


def _predict(
    model: nn.Module,
    images: np.ndarray,
    device: torch.device,
    contract: ModelContract,
    batch_size: int,
) -> np.ndarray:
    out = []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(images[start : start + batch_size]).to(device)
        out.append(model(to_input(batch, contract))[:, 0].float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, *images.shape[1:3]), np.float32)


def masks_of(logits: np.ndarray, contract: ModelContract) -> np.ndarray:
    """Foreground where the probability is above the contract's threshold (as the runtime decides)."""
    return binarize_output(logits, contract.threshold, contract.output_meaning)


def evaluate_counts(
    model: nn.Module, dataset: ArrayDataset, device: torch.device, contract: ModelContract
) -> dict[str, float]:
    """IoU, Dice, precision and recall of ``model``'s masks (at the contract's threshold)."""
    logits = predict_logits(model, dataset.images, device, contract)
    return summarize(confusion_counts(masks_of(logits, contract), dataset.masks))


def evaluate_trained_and_fused(
    checkpoint: str | Path, dataset: ArrayDataset, device: torch.device, contract: ModelContract
) -> dict:
    """Evaluate a training checkpoint as trained and after fusion on the same images.

    Raises:
        LVUNetError: the fused model's metrics differ from the trained model's by more than 0.001.
    """
    model, info = load_checkpoint(checkpoint, map_location=device)
    result: dict[str, Any] = {"checkpoint": str(checkpoint), "split_size": len(dataset.ids)}
    trained_logits = predict_logits(model, dataset.images, device, contract)
    fused = reparameterize_model(model)
    fused_logits = predict_logits(fused, dataset.images, device, contract)
    trained_masks, fused_masks = (
        masks_of(trained_logits, contract),
        masks_of(fused_logits, contract),
    )
    result["trained"] = summarize(confusion_counts(trained_masks, dataset.masks))
    result["fused"] = summarize(confusion_counts(fused_masks, dataset.masks))
    diff = np.abs(trained_logits - fused_logits)
    result["max_abs_logit_diff"] = float(diff.max()) if diff.size else 0.0
    result["pixel_agreement"] = float((trained_masks == fused_masks).mean())
    gap = max(abs(result["trained"][k] - result["fused"][k]) for k in ("iou", "dice"))
    if gap > FUSED_TOLERANCE:
        raise LVUNetError(
            f"fused and trained test metrics differ by {gap:.4f} (> {FUSED_TOLERANCE})"
        )
    return result


def record_test_metrics(checkpoint: Path, metrics: dict) -> None:
    """Store the test metrics in the checkpoint itself, so the export can carry them into the ONNX file."""
    payload = read_checkpoint(checkpoint)
    payload["test_metrics"] = {
        "trained": metrics["trained"],
        "fused": metrics["fused"],
        "max_abs_logit_diff": metrics["max_abs_logit_diff"],
        "split_size": metrics["split_size"],
    }
    atomic_torch_save(payload, checkpoint)
