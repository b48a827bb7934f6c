"""Flip test-time augmentation (`--tta h|hv`) on the bundled models: mean per-image Dice and IoU on each
test set (full-size masks, as `lvunet-eval` scores), the paired per-image difference against no TTA with
a bootstrap 95% interval, and the model-run cost.

    .venv/bin/python benchmarks/tta_effect.py --data ../shared/data --json benchmarks/results/tta/tta.json

Every number is reproducible with `lvunet-eval --model M --data D --split-file F --tta T`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from lvunet_runtime.data import find_pairs, read_id_list
from lvunet_runtime.evaluate import evaluate
from lvunet_runtime.segmenter import Segmenter
from timing import machine_header

BUSI_TEST = Path(__file__).parent / "results" / "models" / "breast-ultrasound-eval-busi-test.json"


def test_sets(data: Path, folder: Path) -> list[tuple[str, str, Path, Path]]:
    """(model, name, dataset folder, id file) for each test set of the model card."""
    busi = folder / "busi-test.txt"
    busi.write_text(
        "\n".join(r["id"] for r in json.loads(BUSI_TEST.read_text())["per_image"]) + "\n"
    )
    splits = data / "splits"
    return [
        (
            "polyp",
            "Kvasir-SEG PraNet test",
            data / "kvasir-seg",
            splits / "pranet-kvasir-seg-test.txt",
        ),
        (
            "polyp",
            "CVC-ClinicDB PraNet test",
            data / "cvc-clinicdb",
            splits / "pranet-cvc-clinicdb-test.txt",
        ),
        ("breast-ultrasound", "BUSI test (20%)", data / "busi", busi),
    ]


def bootstrap(diff: np.ndarray, rounds: int = 10000, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (rounds, len(diff)))].mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for model, name, dataset, ids in test_sets(args.data, Path(folder)):
            pairs = find_pairs(dataset, read_id_list(ids))
            results = {}
            for tta in ("off", "h", "hv"):
                results[tta] = evaluate(Segmenter(model, tta=tta, threads=2), pairs)
            base = {r["id"]: r for r in results["off"]["per_image"]}
            for tta, result in results.items():
                dice = np.array([r["dice"] - base[r["id"]]["dice"] for r in result["per_image"]])
                rows.append(
                    {
                        "model": model,
                        "test set": name,
                        "images": result["images"],
                        "tta": tta,
                        "dice": round(result["dice"], 4),
                        "iou": round(result["iou"], 4),
                        "dice_change": round(float(dice.mean()), 4),
                        "dice_change_95ci": [round(v, 4) for v in bootstrap(dice)]
                        if tta != "off"
                        else None,
                        "images_better_worse": [
                            int((dice > 1e-4).sum()),
                            int((dice < -1e-4).sum()),
                        ],
                        "median_ms": round(result["median_ms"], 1),
                    }
                )
                print(json.dumps(rows[-1]))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(machine_header(rows=rows), indent=1) + "\n")


if __name__ == "__main__":
    main()
