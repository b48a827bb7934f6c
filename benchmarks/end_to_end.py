"""Whole-image speed of the runtime, measured side by side in one run.

    python benchmarks/end_to_end.py --images ../shared/data/kvasir-seg/images --json out.json

1. ``Segmenter.predict`` on a 256x256 image vs a bare ``session.run`` on the preprocessed input
   (interleaved rounds; median ratio).
2. ``lvunet-infer`` on one 1920x1080 JPEG, process start to mask written (median of repeated runs).
3. A folder: ``lvunet-infer`` (its own process, peak RSS from the OS) vs a plain sequential pipeline
   (Pillow decode, resize, session.run, resize back, Pillow PNG save) in this process, alternated, plus
   the mean IoU between the two pipelines' masks.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from lvunet_runtime import Segmenter
from lvunet_runtime.processing import postprocess, preprocess
from PIL import Image
from timing import interleaved, machine_header, time_once

INFER = [sys.executable, "-c", "from lvunet_runtime.cli import infer_main; infer_main()"]


def predict_overhead(segmenter: Segmenter, rounds: int = 7, runs: int = 50) -> dict:
    image = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    x = preprocess([image], segmenter.contract)
    feed = {segmenter.contract.input_name: x}
    timed = interleaved(
        {
            "bare": lambda: segmenter.session.run(None, feed),
            "predict": lambda: segmenter.predict(image),
        },
        rounds=rounds,
        runs=runs,
        warmup=5,
        warmup_each_round=True,
    )
    bare, full = timed["bare"]["median_ms"], timed["predict"]["median_ms"]
    return {"bare_session_run_ms": bare, "predict_ms": full, "overhead": full / bare - 1}


def single_image(model: str, source: Path, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        image = Path(scratch) / "frame_1920x1080.jpg"
        Image.open(source).convert("RGB").resize((1920, 1080)).save(image, quality=95)
        times = []
        for i in range(repeats):
            out = Path(scratch) / f"out{i}"
            runs = []
            times.append(
                time_once(
                    lambda out=out, runs=runs: runs.append(
                        subprocess.run(
                            [*INFER, str(image), "--model", model, "--out", str(out)],
                            capture_output=True,
                            text=True,
                        )
                    )
                )
            )
            (result,) = runs
            if result.returncode != 0 or not (out / "frame_1920x1080_mask.png").is_file():
                raise SystemExit(f"lvunet-infer failed: {result.stderr}")
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "runs": repeats,
    }


def plain_pipeline(model: str, images: list[Path], out: Path) -> float:
    """The baseline: everything sequential in one thread, Pillow for decode and PNG."""
    segmenter = Segmenter(model)
    contract = segmenter.contract
    out.mkdir(parents=True, exist_ok=True)

    def run_all() -> None:
        for path in images:
            with Image.open(path) as image:
                rgb = np.asarray(image.convert("RGB"))
            feed = {contract.input_name: preprocess([rgb], contract)}
            logits = segmenter.session.run(None, feed)[0][0, 0]
            _, mask = postprocess(logits, rgb.shape[:2], contract.threshold)
            Image.fromarray(mask.astype(np.uint8) * 255).save(out / f"{path.stem}_mask.png")

    return time_once(run_all)


def ours(model: str, folder: Path, out: Path, extra: list[str]) -> tuple[float, float]:
    runs = []
    elapsed = time_once(
        lambda: runs.append(
            subprocess.run(
                [*INFER, str(folder), "--model", model, "--out", str(out), "--no-progress", *extra],
                capture_output=True,
                text=True,
            )
        )
    )
    (result,) = runs
    if result.returncode != 0:
        raise SystemExit(f"lvunet-infer failed: {result.stderr}")
    return elapsed, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def mean_iou(a_dir: Path, b_dir: Path, stems: list[str]) -> float:
    scores = []
    for stem in stems:
        a = cv2.imread(str(a_dir / f"{stem}_mask.png"), cv2.IMREAD_GRAYSCALE) > 0
        b = cv2.imread(str(b_dir / f"{stem}_mask.png"), cv2.IMREAD_GRAYSCALE) > 0
        union = np.count_nonzero(a | b)
        scores.append(1.0 if union == 0 else np.count_nonzero(a & b) / union)
    return float(np.mean(scores))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--model", default="polyp")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--variants", default="default", help="comma list: default,batch1,batch8")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    report = machine_header(model=args.model)
    segmenter = Segmenter(args.model)
    report["predict_overhead"] = predict_overhead(segmenter)
    print("predict overhead:", report["predict_overhead"])
    images = sorted(
        p for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")
    )[: args.limit]
    report["single_image"] = single_image(args.model, images[0], 10)
    print("single 1920x1080 image:", report["single_image"])
    extra = {"default": [], "batch1": ["--batch-size", "1"], "batch8": ["--batch-size", "8"]}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "in"
        folder.mkdir()
        for path in images:
            shutil.copy(path, folder / path.name)
        plain_times, runs = [], {v: [] for v in args.variants.split(",")}
        peak = {}
        for repeat in range(args.repeats):
            plain_times.append(
                plain_pipeline(
                    args.model, [folder / p.name for p in images], Path(scratch) / "plain"
                )
            )
            for variant in runs:
                out = Path(scratch) / f"ours-{variant}-{repeat}"
                elapsed, rss = ours(args.model, folder, out, extra[variant])
                runs[variant].append(elapsed)
                peak[variant] = rss
            print(
                f"repeat {repeat}: plain {plain_times[-1]:.2f} s, ours {[(v, round(t[-1], 2)) for v, t in runs.items()]}"
            )
        stems = [p.stem for p in images]
        iou = {
            v: mean_iou(Path(scratch) / "plain", Path(scratch) / f"ours-{v}-0", stems) for v in runs
        }
    plain = statistics.median(plain_times)
    report["folder"] = {
        "images": len(images),
        "plain_sequential_s": plain,
        "plain_runs_s": plain_times,
        "plain_images_per_s": len(images) / plain,
        "ours": {
            v: {
                "median_s": statistics.median(t),
                "runs_s": t,
                "images_per_s": len(images) / statistics.median(t),
                "speedup_vs_plain": plain / statistics.median(t),
                "mean_iou_vs_plain": iou[v],
                "peak_rss_mb_max_over_children": peak[v],
            }
            for v, t in runs.items()
        },
    }
    print(json.dumps(report["folder"], indent=1))
    args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
