"""Pre- and post-processing exactly as the metadata contract defines them (no maths anywhere else).

The training side feeds its model through :func:`resize_input` and the same scale/shift constants
(:func:`normalisation`), so a trained model sees the inputs the runtime will give it.
"""

from __future__ import annotations

import cv2
import numpy as np

from lvunet_runtime.contract import ModelContract

INTERPOLATION_FLAGS = {
    "area": cv2.INTER_AREA,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "nearest": cv2.INTER_NEAREST,
}


def resize_input(rgb: np.ndarray, contract: ModelContract) -> np.ndarray:
    """RGB uint8 (H, W, 3) resized to the model's input size with the contract's interpolation."""
    size = (contract.input_width, contract.input_height)
    if rgb.shape[1::-1] == size:
        return rgb
    return cv2.resize(rgb, size, interpolation=INTERPOLATION_FLAGS[contract.resize_interpolation])


def resize_mask(mask: np.ndarray, contract: ModelContract) -> np.ndarray:
    """A boolean (H, W) mask at the model's input size (area-weighted, then > 50%)."""
    size = (contract.input_width, contract.input_height)
    if mask.shape[::-1] == size:
        return mask.astype(bool, copy=False)
    return cv2.resize(mask.astype(np.uint8) * 255, size, interpolation=cv2.INTER_AREA) > 127


def channel_index(contract: ModelContract) -> list[int]:
    """Which RGB channel feeds each model channel: [0, 1, 2] for RGB, [2, 1, 0] for BGR."""
    return [0, 1, 2] if contract.channel_order == "RGB" else [2, 1, 0]


def normalisation(contract: ModelContract) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(scale, shift)`` float32 with ``x_model = pixel * scale - shift``, in model order."""
    std = np.asarray(contract.std, np.float32)
    scale = np.float32(contract.pixel_scale) / std
    shift = np.asarray(contract.mean, np.float32) / std
    return scale.astype(np.float32), shift.astype(np.float32)


def to_model_input(batch: np.ndarray, contract: ModelContract) -> np.ndarray:
    """Resized uint8 (B, H, W, 3) RGB -> the graph's float32 NCHW input, channels reordered, normalised."""
    scale, shift = normalisation(contract)
    pixels = batch.transpose(0, 3, 1, 2)
    if contract.channel_order != "RGB":
        pixels = pixels[:, channel_index(contract)]
    # (x * pixel_scale - mean) / std as one multiply into a preallocated NCHW array and one subtract:
    # 4x faster than astype + arithmetic + transpose + copy.
    out = np.empty((batch.shape[0], 3, *batch.shape[1:3]), np.float32)
    np.multiply(pixels, scale.reshape(1, 3, 1, 1), out=out, casting="unsafe")
    out -= shift.reshape(1, 3, 1, 1)
    return out


def preprocess(images: list[np.ndarray], contract: ModelContract) -> np.ndarray:
    """A list of RGB uint8 images of any size -> one model input batch."""
    resized = [resize_input(im, contract) for im in images]
    return to_model_input(resized[0][None] if len(resized) == 1 else np.stack(resized), contract)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, float32."""
    logits = logits.astype(np.float32, copy=False)
    return (0.5 * (np.tanh(0.5 * logits) + 1.0)).astype(np.float32, copy=False)


def to_probability(output: np.ndarray, output_meaning: str = "logits") -> np.ndarray:
    """The model's raw output as a float32 probability map (sigmoid of logits, or as given)."""
    if output_meaning == "logits":
        return sigmoid(output)
    return np.clip(output.astype(np.float32, copy=False), 0.0, 1.0)


def logit_threshold(threshold: float, output_meaning: str = "logits") -> float:
    """The raw-output value that corresponds to probability ``threshold``: ``log(t / (1 - t))`` for
    logits (0 at 0.5), the threshold itself for a probability output."""
    if output_meaning == "logits":
        return float(np.log(threshold / (1.0 - threshold)))
    return float(threshold)


def binarize_output(
    output: np.ndarray, threshold: float, output_meaning: str = "logits"
) -> np.ndarray:
    """Foreground where the probability is above ``threshold``, straight from the model's raw output
    at its own size (training and export score masks this way): for logits that is
    ``logit > log(t / (1 - t))``, the same pixels as ``sigmoid(logit) > t`` up to float rounding at the
    boundary. Works on numpy arrays and on torch tensors alike (comparison with a float)."""
    return output > logit_threshold(threshold, output_meaning)


def postprocess(
    output: np.ndarray, size: tuple[int, int], threshold: float, output_meaning: str = "logits"
) -> tuple[np.ndarray, np.ndarray]:
    """Model output (h, w) -> probability map and binary mask at the image's ``size`` (height, width).

    The probabilities are resized back (bilinear), then thresholded: foreground where prob > threshold.
    """
    prob = to_probability(output, output_meaning)
    height, width = size
    if prob.shape != (height, width):
        prob = cv2.resize(prob, (width, height), interpolation=cv2.INTER_LINEAR)
    return prob, prob > threshold


def keep_largest_region(mask: np.ndarray) -> np.ndarray:
    """Only the largest 8-connected foreground region of a boolean mask."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8
    )
    if count <= 2:
        return mask
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == largest
