"""Training-time augmentation on the training device, in two recipes (``TrainConfig.augment``).

``basic`` (the default until measured otherwise): random 90-degree rotation and flips of the normalised
batch. ``strong`` first changes the raw pixels (0-255, RGB) of each image: brightness, contrast,
saturation and a small per-channel gain; specular highlights (bright blobs, as endoscope lights make);
a random affine transform (scale 0.75-1.25, rotation +-30 degrees, shift up to 10%, black outside, the
mask moved with it); a Gaussian blur for some images. Then it normalises with the run's contract and adds
the ``basic`` rotations and flips. ``ultrasound`` (for B-mode images such as BUSI, where strong colour
jitter hurt) changes the pixels as an ultrasound machine's settings do: gamma (0.7-1.5) and a mild
brightness/contrast change, multiplicative speckle noise for half of the images, then the same affine
transform and a mild elastic warp (a smooth random displacement of at most 2% of the side), image and mask
moved together; no saturation, colour gain or highlights. Every random number comes from the run's
generator, so a run is reproducible and resumable.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from lvunet_runtime.contract import ModelContract

from lvunet_edge.dataset import normalise


def _uniform(
    generator: torch.Generator, n: int, low: float, high: float, *shape: int
) -> torch.Tensor:
    return low + (high - low) * torch.rand((n, *shape), generator=generator)


def flips(
    images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random 90-degree rotation and horizontal/vertical flips per sample (NCHW / N1HW tensors)."""
    params = torch.randint(0, 4, (len(images), 3), generator=generator)
    out_images, out_masks = [], []
    for (k, hflip, vflip), image, mask in zip(params.tolist(), images, masks, strict=False):
        dims = [d for d, flip in ((2, hflip % 2), (1, vflip % 2)) if flip]
        image, mask = torch.rot90(image, k, (1, 2)), torch.rot90(mask, k, (1, 2))
        if dims:
            image, mask = torch.flip(image, dims), torch.flip(mask, dims)
        out_images.append(image)
        out_masks.append(mask)
    return torch.stack(out_images), torch.stack(out_masks)


def photometric(pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Brightness, contrast, saturation (each x0.75-1.25) and channel gains (x0.95-1.05), per image."""
    n, device = len(pixels), pixels.device
    brightness = _uniform(generator, n, 0.75, 1.25, 1, 1, 1).to(device)
    contrast = _uniform(generator, n, 0.75, 1.25, 1, 1, 1).to(device)
    saturation = _uniform(generator, n, 0.75, 1.25, 1, 1, 1).to(device)
    gain = _uniform(generator, n, 0.95, 1.05, 3, 1, 1).to(device)
    out = pixels * brightness
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * contrast + mean
    grey = (out * torch.tensor([0.299, 0.587, 0.114], device=device).view(1, 3, 1, 1)).sum(
        1, keepdim=True
    )
    out = (grey + (out - grey) * saturation) * gain
    return out.clamp(0, 255)


def highlights(pixels: torch.Tensor, generator: torch.Generator, p: float = 0.3) -> torch.Tensor:
    """Specular highlights: for a fraction ``p`` of the images, 1-3 soft white blobs."""
    n, _, height, width = pixels.shape
    chosen = torch.rand(n, generator=generator) < p
    blobs = torch.randint(1, 4, (n,), generator=generator)
    centres = torch.rand((n, 3, 2), generator=generator)
    radii = _uniform(generator, n, 0.01, 0.04, 3) * min(height, width)
    ys = torch.arange(height, device=pixels.device).view(-1, 1).float()
    xs = torch.arange(width, device=pixels.device).view(1, -1).float()
    out = pixels.clone()
    for i in torch.nonzero(chosen).flatten().tolist():
        light = torch.zeros((height, width), device=pixels.device)
        for b in range(int(blobs[i])):
            cy, cx = float(centres[i, b, 0]) * height, float(centres[i, b, 1]) * width
            r = float(radii[i, b])
            light = torch.maximum(
                light, torch.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * r * r))
            )
        out[i] = out[i] + (255 - out[i]) * light
    return out


def affine(
    pixels: torch.Tensor, masks: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale 0.75-1.25, rotation +-30 degrees, shift up to 10% per image; black outside the image."""
    n = len(pixels)
    scale = _uniform(generator, n, 0.75, 1.25)
    angle = _uniform(generator, n, -math.pi / 6, math.pi / 6)
    shift = _uniform(generator, n, -0.2, 0.2, 2)  # grid units: the image spans -1..1
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    ).to(pixels.device, pixels.dtype)
    grid = F.affine_grid(theta, list(pixels.shape), align_corners=False)
    moved = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    moved_masks = F.grid_sample(
        masks, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    hard = (moved_masks[:, :1] > 0.5).to(
        masks.dtype
    )  # channel 0 is the mask; more are soft targets
    return moved, torch.cat([hard, moved_masks[:, 1:]], 1)


def blur(pixels: torch.Tensor, generator: torch.Generator, p: float = 0.2) -> torch.Tensor:
    """Gaussian blur (sigma 0.5-1.5 pixels) of a fraction ``p`` of the images."""
    n = len(pixels)
    chosen = torch.rand(n, generator=generator) < p
    sigmas = _uniform(generator, n, 0.5, 1.5)
    out = pixels.clone()
    offsets = torch.arange(-3, 4, device=pixels.device, dtype=pixels.dtype)
    for i in torch.nonzero(chosen).flatten().tolist():
        kernel = torch.exp(-(offsets**2) / (2 * float(sigmas[i]) ** 2))
        kernel = kernel / kernel.sum()
        image = F.pad(out[i : i + 1], (3, 3, 3, 3), mode="reflect")
        image = F.conv2d(image, kernel.view(1, 1, 1, 7).expand(3, 1, 1, 7), groups=3)
        out[i : i + 1] = F.conv2d(image, kernel.view(1, 1, 7, 1).expand(3, 1, 7, 1), groups=3)
    return out


def gamma_contrast(pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per image: gamma 0.7-1.5 on the 0-255 scale, then brightness and contrast x0.85-1.15 (grey-safe:
    the same change in every channel)."""
    n, device = len(pixels), pixels.device
    gamma = _uniform(generator, n, 0.7, 1.5, 1, 1, 1).to(device)
    brightness = _uniform(generator, n, 0.85, 1.15, 1, 1, 1).to(device)
    contrast = _uniform(generator, n, 0.85, 1.15, 1, 1, 1).to(device)
    out = 255.0 * (pixels / 255.0).clamp(0, 1) ** gamma * brightness
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    return ((out - mean) * contrast + mean).clamp(0, 255)


def speckle(pixels: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Multiplicative speckle for a fraction ``p`` of the images: pixel x (1 + sigma * noise), sigma
    0.05-0.2, the noise the same in every channel and smoothed over about 2 pixels (speckle grains)."""
    n, _, height, width = pixels.shape
    chosen = (torch.rand(n, generator=generator) < p).float()
    sigma = _uniform(generator, n, 0.05, 0.2) * chosen
    noise = torch.randn((n, 1, height // 2, width // 2), generator=generator)
    noise = F.interpolate(noise, size=(height, width), mode="bilinear", align_corners=False)
    factor = 1 + sigma.view(n, 1, 1, 1) * noise
    return (pixels * factor.to(pixels.device, pixels.dtype)).clamp(0, 255)


def elastic(
    pixels: torch.Tensor, masks: torch.Tensor, generator: torch.Generator, strength: float = 0.04
) -> tuple[torch.Tensor, torch.Tensor]:
    """A mild elastic warp: a random 4x4 grid of displacements (at most ``strength`` / 2 of the side,
    grid units span 2), smoothly upsampled; image and mask channel 0 (re-binarised) moved together."""
    n, _, height, width = pixels.shape
    coarse = (torch.rand((n, 2, 4, 4), generator=generator) * 2 - 1) * strength
    field = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=True)
    ys = torch.linspace(-1, 1, height).view(1, height, 1).expand(n, height, width)
    xs = torch.linspace(-1, 1, width).view(1, 1, width).expand(n, height, width)
    grid = torch.stack([xs + field[:, 0], ys + field[:, 1]], -1).to(pixels.device, pixels.dtype)
    options = {"mode": "bilinear", "padding_mode": "border", "align_corners": True}
    moved = F.grid_sample(pixels, grid, **options)
    moved_masks = F.grid_sample(masks, grid, **options)
    hard = (moved_masks[:, :1] > 0.5).to(masks.dtype)
    return moved, torch.cat([hard, moved_masks[:, 1:]], 1)


def augment_batch(
    recipe: str,
    images: torch.Tensor,
    masks: torch.Tensor,
    contract: ModelContract,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (B, H, W, 3) RGB images and (B, C, H, W) float masks -> the model's augmented input and
    masks. Channel 0 is the mask (kept binary); further channels (soft targets) move with it."""
    pixels = images.permute(0, 3, 1, 2).float()
    if recipe == "strong":
        pixels = photometric(pixels, generator)
        pixels = highlights(pixels, generator)
        pixels, masks = affine(pixels, masks, generator)
        pixels = blur(pixels, generator)
    elif recipe == "ultrasound":
        pixels = gamma_contrast(pixels, generator)
        pixels = speckle(pixels, generator)
        pixels, masks = affine(pixels, masks, generator)
        pixels, masks = elastic(pixels, masks, generator)
    return flips(normalise(pixels, contract), masks, generator)


def multi_scale(
    inputs: torch.Tensor, masks: torch.Tensor, size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-scale training: the whole batch at one size drawn from {size - 128, size, size + 128}
    (at least 128; LV-UNet needs multiples of 128), resized bilinearly (antialiased when shrinking);
    mask channel 0 re-binarised, soft channels kept. Validation and export stay at ``size``."""
    sizes = [s for s in (size - 128, size, size + 128) if s >= 128]
    pick = sizes[int(torch.randint(len(sizes), (1,), generator=generator))]
    if pick == size:
        return inputs, masks
    options = {
        "size": (pick, pick),
        "mode": "bilinear",
        "align_corners": False,
        "antialias": pick < size,
    }
    moved = F.interpolate(masks, **options)
    hard = (moved[:, :1] > 0.5).to(masks.dtype)
    return F.interpolate(inputs, **options), torch.cat([hard, moved[:, 1:]], 1)
