"""Training data: decoded once, through the runtime's own readers, into resident uint8 arrays.

Pairing, image decoding (any mode -> RGB uint8), mask binarisation and split files come from
``lvunet_runtime`` (the runtime owns what training and deployment must agree on). The images are resized
with the model contract's interpolation (:func:`lvunet_runtime.processing.resize_input`) and normalised
on the training device with the contract's scale and shift (:func:`to_input`), so the network is trained
on exactly the inputs the runtime will give it.
"""

from __future__ import annotations

import json
import math
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from lvunet_runtime.contract import ModelContract
from lvunet_runtime.data import Pair, content_hash, listing, read_id_list, read_mask
from lvunet_runtime.errors import DataError, LVUNetRuntimeError
from lvunet_runtime.image import load_image
from lvunet_runtime.processing import channel_index, normalisation, resize_input, resize_mask


@dataclass
class ArrayDataset:
    """Decoded, resized pairs: ``images`` (N, H, W, 3) uint8 RGB and ``masks`` (N, H, W) uint8 0/1."""

    ids: list[str]
    images: np.ndarray
    masks: np.ndarray
    mask_rules: dict[str, int]
    hashes: dict[str, str] = field(default_factory=dict)  # id -> image file content hash

    def subset(self, ids: list[str]) -> ArrayDataset:
        index = {i: k for k, i in enumerate(self.ids)}
        missing = [i for i in ids if i not in index]
        if missing:
            raise DataError(listing(f"{len(missing)} split id(s) not in the data", missing))
        rows = [index[i] for i in ids]
        hashes = {i: self.hashes[i] for i in ids if i in self.hashes}
        return ArrayDataset(list(ids), self.images[rows], self.masks[rows], self.mask_rules, hashes)


def _decode(pair: Pair, contract: ModelContract) -> tuple[np.ndarray, np.ndarray, str, str] | str:
    try:
        rgb, _ = load_image(pair.image)
    except LVUNetRuntimeError as exc:
        return f"unreadable image {pair.image.name}: {exc}"
    try:
        mask, rule = read_mask(pair.mask)
    except LVUNetRuntimeError as exc:
        return f"unreadable mask {pair.mask.name}: {exc}"
    if rgb.shape[:2] != mask.shape:
        return (
            f"size mismatch for {pair.id}: image {rgb.shape[1]}x{rgb.shape[0]}, "
            f"mask {mask.shape[1]}x{mask.shape[0]}"
        )
    resized = resize_input(rgb, contract), resize_mask(mask, contract).astype(np.uint8)
    return (*resized, rule, content_hash(pair.image))


def load_dataset(pairs: list[Pair], contract: ModelContract, workers: int = 4) -> ArrayDataset:
    """Decode every pair once (in threads), validate, resize to the contract's input size.

    Raises:
        DataError: listing every unreadable file and image/mask size mismatch, before any training.
    """
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = list(pool.map(lambda p: _decode(p, contract), pairs))
    problems = [r for r in results if isinstance(r, str)]
    if problems:
        raise DataError(listing(f"{len(problems)} bad pair(s)", problems))
    rules: dict[str, int] = {}
    for _, _, rule, _ in results:
        rules[rule] = rules.get(rule, 0) + 1
    return ArrayDataset(
        ids=[p.id for p in pairs],
        images=np.stack([r[0] for r in results]),
        masks=np.stack([r[1] for r in results]),
        mask_rules=rules,
        hashes={p.id: r[3] for p, r in zip(pairs, results, strict=True)},
    )


def to_input(images: torch.Tensor, contract: ModelContract) -> torch.Tensor:
    """uint8 (B, H, W, 3) RGB on any device -> the model's float32 (B, 3, H, W) input.

    The runtime's normalisation (:func:`lvunet_runtime.processing.to_model_input`) in torch: the same
    channel order and the same float32 ``pixel * scale - shift``, so both give the same numbers.
    """
    return normalise(images.permute(0, 3, 1, 2), contract)


def normalise(pixels: torch.Tensor, contract: ModelContract) -> torch.Tensor:
    """RGB pixel values 0-255 (B, 3, H, W), any dtype -> the model's float32 input (channel order,
    ``pixel * scale - shift``); augmentation changes pixels first, then normalises with this."""
    scale, shift = (
        torch.from_numpy(v).to(pixels.device).view(1, 3, 1, 1) for v in normalisation(contract)
    )
    if contract.channel_order != "RGB":
        pixels = pixels[:, channel_index(contract)]
    return pixels.float() * scale - shift


def random_split(ids: list[str], seed: int, test: float = 0.2, val: float = 0.2) -> dict[str, list]:
    """The paper's protocol: test = 20% of all, then validation = 20% of the rest, from sorted ids.

    Sizes are rounded up like scikit-learn's ``train_test_split`` (Kvasir-SEG: 640/160/200).
    """
    order = sorted(ids)
    random.Random(seed).shuffle(order)
    n_test = math.ceil(test * len(order))
    rest = order[n_test:]
    n_val = math.ceil(val * len(rest))
    return {
        "train": sorted(rest[n_val:]),
        "val": sorted(rest[:n_val]),
        "test": sorted(order[:n_test]),
    }


def make_split(
    ids: list[str],
    seed: int,
    split_file: str | Path | None = None,
    val_file: str | Path | None = None,
) -> dict[str, list]:
    """Random split, or the test (and optionally validation) ids from files; the rest train."""
    if split_file is None:
        return {**random_split(ids, seed), "source": f"random 64/16/20, seed {seed}"}
    known = set(ids)
    test = read_id_list(split_file)
    val = read_id_list(val_file) if val_file else []
    unknown = sorted((set(test) | set(val)) - known)
    if unknown:
        raise DataError(listing(f"{len(unknown)} split id(s) not in the data", unknown))
    rest = sorted(known - set(test) - set(val))
    if not val:
        random.Random(seed).shuffle(rest)
        n_val = math.ceil(0.2 * len(rest))
        val, rest = rest[:n_val], rest[n_val:]
    return {
        "train": sorted(rest),
        "val": sorted(val),
        "test": sorted(test),
        "source": f"test ids from {Path(split_file).name}",
    }


def write_split(path: Path, split: dict[str, list]) -> None:
    path.write_text(json.dumps(split, indent=1) + "\n")
