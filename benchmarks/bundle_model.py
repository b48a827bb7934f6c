"""Build a bundled model from a training run: export it and record what the run saw and what it scores.

    python benchmarks/bundle_model.py polyp --ckpt runs/gpu16/polyp/best.pt --shared ../shared/data

1. ``lvunet-export`` (fused == trained in torch, ONNX Runtime == torch, onnx.checker) with the bundled
   file's label and training-data description;
2. ``record_provenance`` (migrate_bundled_models.py): hashes of the original, full-size train + validation
   images for lvunet-eval's overlap warning, and ``test_metrics`` of the written file on the run's test split,
   each image at its own size;
3. the result replaces ``runtime/lvunet_runtime/models/NAME.onnx``, and its masks on the test samples
   become the new references of tests/runtime/test_session.py::test_bundled_masks_unchanged.
The run's logs (log.jsonl, split.json, train.log, metrics.json) are kept under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from lvunet_runtime.image import load_image
from lvunet_runtime.model_files import MODELS_DIR
from lvunet_runtime.segmenter import Segmenter
from migrate_bundled_models import record_provenance
from PIL import Image

TESTS_DATA = Path(__file__).parent.parent / "tests" / "data"
BUNDLED = {  # name: (label, training-data description, datasets under --shared)
    "polyp": (
        "polyp",
        "Kvasir-SEG + CVC-ClinicDB, PraNet train split (1450 images)",
        ("kvasir-seg", "cvc-clinicdb"),
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name", choices=sorted(BUNDLED))
    parser.add_argument(
        "--ckpt", type=Path, required=True, help="best.pt of the run (split.json beside it)"
    )
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    args = parser.parse_args()
    label, description, datasets = BUNDLED[args.name]
    split = json.loads((args.ckpt.parent / "split.json").read_text())
    with tempfile.TemporaryDirectory() as scratch:
        exported = Path(scratch) / "model.onnx"
        export = Path(sys.executable).parent / "lvunet-export"
        subprocess.run(
            [str(export), "--ckpt", str(args.ckpt), "--out", str(exported), "--label", label,
             "--dataset", description],
            check=True,
        )  # fmt: skip
        contract = Segmenter(exported).contract
        metrics = record_provenance(
            exported, MODELS_DIR / f"{args.name}.onnx", contract, split, datasets, args.shared
        )
    print(args.name, json.dumps(metrics))
    segmenter = Segmenter(args.name, providers=["cpu"])
    for reference in sorted((TESTS_DATA / "bundled-masks").glob(f"{args.name}__*.png")):
        image = TESTS_DATA / "sample" / "images" / f"{reference.stem.split('__', 1)[1]}.jpg"
        mask = segmenter.predict(load_image(image)[0]).mask
        Image.fromarray(mask).save(reference)  # 1-bit PNG
        print(f"reference mask {reference.name}: {int(mask.sum())} pixels")


if __name__ == "__main__":
    main()
