"""CPU EP vs OpenVINO fp32 vs OpenVINO bf16 in one process, interleaved rounds, on the bundled polyp model;
and their mask agreement on real images (each at its own size).

    .venv-openvino/bin/python benchmarks/providers_interleaved.py --images ../shared/data/kvasir-seg \
        --split ../shared/data/splits/pranet-kvasir-seg-test.txt --json benchmarks/results/providers/interleaved.json

The CPU EP here is the one bundled with onnxruntime-openvino; `lvunet-bench` in .venv gives plain
onnxruntime's in its own process (benchmarks/results/providers/README.md has both).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from lvunet_runtime import Segmenter, load_image
from lvunet_runtime.data import find_pairs, read_id_list, read_mask
from lvunet_runtime.metrics import confusion_counts, per_image_scores
from lvunet_runtime.processing import to_model_input
from timing import interleaved, machine_header

CONFIGS = {
    "CPU EP fp32": {"providers": ["cpu"]},
    "OpenVINO fp32": {"providers": ["openvino"]},
    "OpenVINO bf16": {"providers": ["openvino"], "precision": "bf16"},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--images", type=Path, required=True, help="dataset folder (images/, masks/)"
    )
    parser.add_argument("--split", type=Path, required=True, help="ids to use")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--per-round", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    ort.set_default_logger_severity(3)
    sessions = {
        name: Segmenter("polyp", threads=args.threads, **config) for name, config in CONFIGS.items()
    }
    contract = sessions["CPU EP fp32"].contract
    x = to_model_input(
        np.random.default_rng(0).integers(0, 256, (1, *contract.input_size, 3), dtype=np.uint8),
        contract,
    )
    timed = interleaved(
        {name: (lambda s=segmenter: s.run(x)) for name, segmenter in sessions.items()},
        rounds=args.rounds,
        runs=args.per_round,
    )
    pairs = find_pairs(args.images, read_id_list(args.split))
    agreement = {name: [] for name in sessions}
    truth = {name: [] for name in sessions}
    for pair in pairs:
        rgb, _ = load_image(pair.image)
        target, _ = read_mask(pair.mask)
        masks = {name: s.predict(rgb).mask for name, s in sessions.items()}
        for name, mask in masks.items():
            counts = confusion_counts(mask[None], masks["CPU EP fp32"][None])
            agreement[name].append(float(per_image_scores(counts)[1][0]))
            truth[name].append(
                float(per_image_scores(confusion_counts(mask[None], target[None]))[1][0])
            )
    base = timed["CPU EP fp32"]["median_ms"]
    results = {
        name: {
            "active_providers": sessions[name].active_providers,
            "node_placement": sessions[name].node_placement(),
            "median_ms": t["median_ms"],
            "round_spread_ms": [t["round_min_ms"], t["round_max_ms"]],
            "p90_ms": t["p90_ms"],
            "ratio_to_cpu_ep": t["median_ms"] / base,
            "mean_dice_vs_cpu_fp32": float(np.mean(agreement[name])),
            "min_dice_vs_cpu_fp32": float(np.min(agreement[name])),
            "images_below_0.99": int(np.sum(np.array(agreement[name]) < 0.99)),
            "test_dice": float(np.mean(truth[name])),
        }
        for name, t in timed.items()
    }
    for name, r in results.items():
        print(
            f"{name:14s} median {r['median_ms']:.2f} ms  x{r['ratio_to_cpu_ep']:.2f}  "
            f"Dice vs CPU mean {r['mean_dice_vs_cpu_fp32']:.4f} min {r['min_dice_vs_cpu_fp32']:.4f}  "
            f"test Dice {r['test_dice']:.4f}"
        )
    report = machine_header(
        images=len(pairs),
        rounds=args.rounds,
        runs_per_round=args.per_round,
        threads=args.threads,
        results=results,
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
