"""The bundled model on the WebGPU EP against the CPU EP on the same machine, side by side in one process:
latency per batch size (after a long warm-up: GPUs leave their low-power clocks after ~100 runs), node
placement, the adapter, and agreement (logits and masks on the 16 sample images).

    python benchmarks/webgpu_latency.py --device gpu --json results/webgpu.json           # a GPU machine
    python benchmarks/webgpu_latency.py --device software --batches 1,2 --warmup 1 --runs 2 \\
        --images 4 --json /tmp/dry.json                                                    # SwiftShader

`benchmarks/webgpu_device.sh` runs it on a lent GPU machine (plugin wheel and Vulkan loader carried).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
from lvunet_runtime import Segmenter, load_image
from lvunet_runtime.processing import to_model_input
from timing import interleaved, machine_header

SAMPLES = Path(__file__).resolve().parents[1] / "tests" / "data" / "sample" / "images"


def agreement(gpu: Segmenter, cpu: Segmenter, count: int) -> dict:
    """Largest logit difference, and mask pixels that differ farther than 1e-4 from the threshold."""
    worst, flipped, pixels = 0.0, 0, 0
    for path in sorted(SAMPLES.glob("*.jpg"))[:count]:
        prepared = gpu.prepare(load_image(path)[0])
        a, b = gpu.run_prepared([prepared])[0], cpu.run_prepared([prepared])[0]
        worst = max(worst, float(np.abs(a - b).max()))
        got, want = gpu.finish(a, prepared.size), cpu.finish(b, prepared.size)
        decided = np.abs(want.probability - cpu.threshold) > 1e-4
        flipped += int((got.mask != want.mask)[decided].sum())
        pixels += got.mask.size
    return {
        "images": count,
        "max_abs_logit_diff": worst,
        "mask_pixels_flipped": flipped,
        "pixels": pixels,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="polyp")
    parser.add_argument("--device", default="gpu", help="gpu (hardware adapter) or software")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--runs", type=int, default=50, help="timed runs per batch and provider")
    parser.add_argument("--images", type=int, default=16, help="sample images for agreement")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    gpu = Segmenter(args.model, providers=["webgpu"], device=args.device)
    cpu = Segmenter(args.model, providers=["cpu"], threads=os.cpu_count())
    print(f"adapter: {gpu.adapter.line()}; providers {gpu.active_providers}", flush=True)
    placement = gpu.node_placement()
    print(f"node placement: {placement}", flush=True)
    agree = agreement(gpu, cpu, args.images)
    print(f"agreement: {agree}", flush=True)
    rows = []
    rng = np.random.default_rng(0)
    for batch in [int(b) for b in args.batches.split(",")]:
        images = rng.integers(0, 256, (batch, *gpu.contract.input_size, 3), dtype=np.uint8)
        x = to_model_input(images, gpu.contract)
        timed = interleaved(
            {"webgpu": lambda x=x: gpu.run(x), "cpu": lambda x=x: cpu.run(x)},
            rounds=args.runs,
            warmup=args.warmup,
        )
        for name, t in timed.items():
            rows.append(
                {
                    "provider": name,
                    "batch": batch,
                    "median_ms": t["median_ms"],
                    "round_min_ms": t["round_min_ms"],
                    "round_max_ms": t["round_max_ms"],
                    "images_per_s": batch / t["median_ms"] * 1e3,
                }
            )
        ratio = timed["cpu"]["median_ms"] / timed["webgpu"]["median_ms"]
        print(
            f"batch {batch:3d}: webgpu {timed['webgpu']['median_ms']:9.2f} ms, cpu ({os.cpu_count()} "
            f"threads) {timed['cpu']['median_ms']:9.2f} ms, webgpu {ratio:.2f}x the CPU's speed",
            flush=True,
        )
    report = machine_header(
        model=args.model,
        adapter=gpu.adapter.to_dict(),
        active_providers=gpu.active_providers,
        node_placement=placement,
        agreement=agree,
        warmup=args.warmup,
        runs=args.runs,
        cpu_threads=os.cpu_count(),
        results=rows,
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
