"""What ``lvunet-infer`` writes: for one image its mask, overlay, probability map and region statistics
(and the per-image finish step that makes them); the overlay video formats."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from lvunet_runtime.writer import OutputGuard

OVERLAY_COLOUR = (0, 255, 0)  # RGB
OVERLAY_ALPHA = 0.35
PNG_FAST = [cv2.IMWRITE_PNG_COMPRESSION, 1]  # level 1: images and maps, fastest zlib level
# Masks are written as 1-bit PNGs: 6x faster to encode than 8-bit (0.36 vs 2.3 ms for a Kvasir mask)
# and 2x smaller; OpenCV and image viewers read them as 0/255, Pillow as mode "1" (convert("L") -> 0/255).
PNG_BILEVEL = [cv2.IMWRITE_PNG_BILEVEL, 1, cv2.IMWRITE_PNG_COMPRESSION, 1]

# Overlay video formats, all encoded by OpenCV's own FFmpeg (LGPL build in the opencv wheels) with
# libvpx (BSD): WebM VP8/VP9 play in every current browser and in Windows' default player; mp4v (MPEG-4
# Part 2) plays in desktop players but not in browsers. H.264 would need x264, which is GPL (PyAV's
# wheels bundle it), so it is not offered. Encode speed of real 640x480 endoscopy frames on the 2-core
# test machine: mp4v about 270 frames/s, vp8 9-12, vp9 3-4 (OpenCV exposes no libvpx speed setting), so
# mp4v is the default and the browser formats are asked for.
VIDEO_CODECS = {"vp8": ("VP80", ".webm"), "vp9": ("VP90", ".webm"), "mp4v": ("mp4v", ".mp4")}


def encode_png(array: np.ndarray, *, bilevel: bool = False) -> bytes:
    """PNG bytes of a grey (H, W) or RGB (H, W, 3) uint8 array; ``bilevel`` for 0/255 masks."""
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(".png", array, PNG_BILEVEL if bilevel else PNG_FAST)
    if not ok:
        raise ValueError("PNG encoding failed")
    return buffer.tobytes()


def overlay(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image with the region tinted and its contour drawn (RGB uint8)."""
    out = rgb.copy()
    if mask.any():  # blend the whole frame in one OpenCV call, keep it where the mask is
        solid = np.empty_like(rgb)
        solid[:] = OVERLAY_COLOUR
        tinted = cv2.addWeighted(rgb, 1 - OVERLAY_ALPHA, solid, OVERLAY_ALPHA, 0)
        np.copyto(out, tinted, where=mask[..., None])
    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    thickness = max(1, round(max(rgb.shape[:2]) / 400))
    cv2.drawContours(out, contours, -1, OVERLAY_COLOUR, thickness)
    return out


TRUTH_COLOUR = (255, 0, 255)  # RGB: the ground truth's outline, beside the model's (OVERLAY_COLOUR)


def outlines(rgb: np.ndarray, predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The image with the model's outline (green) and the ground truth's (magenta), for a reader
    comparing them (``lvunet-eval --save-worst``)."""
    out = rgb.copy()
    thickness = max(1, round(max(rgb.shape[:2]) / 300))
    for mask, colour in ((truth, TRUTH_COLOUR), (predicted, OVERLAY_COLOUR)):
        contours, _ = cv2.findContours(
            mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
        )
        cv2.drawContours(out, contours, -1, colour, thickness)
    return out


def frame_stats(mask: np.ndarray) -> dict:
    """What a video's per-frame CSV needs: area (pixels, fraction) and the number of regions (one
    labelling pass without statistics, about half the cost of :func:`region_stats`)."""
    area = int(np.count_nonzero(mask))
    regions = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[0] - 1 if area else 0
    return {"area_px": area, "area_fraction": area / float(mask.size), "regions": int(regions)}


def region_stats(mask: np.ndarray, probability: np.ndarray | None = None) -> dict:
    """Area (pixels, fraction), bounding box, and each 8-connected region's area, box, contour and (with
    the probability map) mean probability."""
    mask8 = mask.astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask8, connectivity=8)
    height, width = mask.shape
    area = int(stats[1:, cv2.CC_STAT_AREA].sum()) if count > 1 else 0
    bbox = None
    if area:
        ys, xs = np.nonzero(mask8)
        bbox = [
            int(xs.min()),
            int(ys.min()),
            int(xs.max() - xs.min() + 1),
            int(ys.max() - ys.min() + 1),
        ]
    regions = []
    for index in np.argsort(-stats[1:, cv2.CC_STAT_AREA]) + 1 if count > 1 else []:
        x, y, w, h, region_area = (int(v) for v in stats[index])
        found, _ = cv2.findContours(
            (labels == index).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
        )
        contour = max(found, key=cv2.contourArea)[:, 0].tolist()
        region = {"area_px": region_area, "bbox_xywh": [x, y, w, h], "contour_xy": contour}
        if probability is not None:
            region["mean_probability"] = round(float(probability[labels == index].mean()), 4)
        regions.append(region)
    return {
        "width": width,
        "height": height,
        "area_px": area,
        "area_fraction": area / float(height * width),
        "bbox_xywh": bbox,
        "regions": len(regions),
        "region_list": regions,
    }


def mask_png(mask: np.ndarray) -> bytes:
    """The mask file ``lvunet-infer`` writes (and ``lvunet-serve`` serves): a 1-bit 0/255 PNG."""
    return encode_png(mask.astype(np.uint8) * 255, bilevel=True)


def probability_png(probability: np.ndarray) -> bytes:
    """The probability map as an 8-bit PNG (probability x 255, rounded)."""
    return encode_png((probability * 255 + 0.5).astype(np.uint8))


def image_json(
    meta: dict, mask: np.ndarray, probability: np.ndarray | None = None
) -> tuple[bytes, dict]:
    """The per-image JSON file (``meta`` then :func:`region_stats`), and the statistics."""
    stats = region_stats(mask, probability)
    return (json.dumps({**meta, **stats}, indent=1) + "\n").encode(), stats


def write_image_outputs(
    paths: dict[str, Path],
    guard: OutputGuard,
    rgb: np.ndarray | None,
    probability: np.ndarray,
    mask: np.ndarray,
    meta: dict,
    series=None,
    *,
    regions: bool = False,
) -> dict:
    """Write the given outputs of one image (``mask``, ``overlay``, ``prob``, ``json``, and ``seg``, a
    DICOM Segmentation in ``series``) through the guard; returns its summary statistics."""
    if "mask" in paths:
        guard.write(paths["mask"], mask_png(mask))
    if "seg" in paths and series is not None:
        from lvunet_runtime.dicom import write_seg

        with guard.writing(paths["seg"], ".dcm") as tmp:
            write_seg(Path(meta["input"]), mask[None], tmp, series)
    if "overlay" in paths and rgb is not None:
        guard.write(paths["overlay"], encode_png(overlay(rgb, mask)))
    if "prob" in paths:
        guard.write(paths["prob"], probability_png(probability))
    if "json" not in paths:  # the run summary needs only the area; regions cost a labelling pass
        if regions:  # (asked for a single-image run's console line)
            return frame_stats(mask)
        area = int(np.count_nonzero(mask))
        return {"area_px": area, "area_fraction": area / mask.size}
    data, stats = image_json(meta, mask, probability)
    guard.write(paths["json"], data)
    return {k: stats[k] for k in ("area_px", "area_fraction", "regions")}


def finish_image(
    segmenter,
    output: np.ndarray,
    size: tuple[int, int],
    image: np.ndarray | None,
    paths: dict[str, Path],
    guard: OutputGuard,
    *,
    keep_largest: bool,
    source: str,
    series=None,
    regions: bool = False,
) -> dict:
    """The one per-image finish step of every route (local pipeline, Ray actor): the model's output ->
    probability and mask at the image's ``size`` -> the files in ``paths``; returns the statistics the
    run record keeps."""
    prediction = segmenter.finish(output, size, keep_largest=keep_largest)
    meta = {"input": source, "model": segmenter.identity, "threshold": segmenter.threshold}
    return write_image_outputs(
        paths, guard, image, prediction.probability, prediction.mask, meta, series, regions=regions
    )
