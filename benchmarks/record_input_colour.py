"""Record in each bundled model what it was trained on, colour or grey images (contract version 5), by the
runtime's own rule on the very images it saw; the graph and every other field stay as they are.

    .venv/bin/python benchmarks/record_input_colour.py --shared ../shared/data

The images are those whose content hash the contract lists (``training_image_sha256``: the run's train and
validation images), found in the shared datasets; ``lvunet_runtime.contract.image_colour`` classifies each,
``dataset_colour`` gives the model's ``input_colour``. Counts go to benchmarks/results/input-colour.json.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import onnx
from lvunet_export.export import embed_contract
from lvunet_runtime.contract import CONTRACT_VERSION, dataset_colour, image_colour
from lvunet_runtime.data import content_hash, is_image_file
from lvunet_runtime.image import load_image
from lvunet_runtime.model_files import MODELS_DIR
from lvunet_runtime.segmenter import Segmenter

RESULTS = Path(__file__).parent / "results" / "input-colour.json"


def trained_on(contract, shared: Path) -> list[Path]:
    wanted = set(contract.training_image_sha256)
    return [
        path
        for name in ("kvasir-seg", "cvc-clinicdb", "busi")
        for path in sorted((shared / name / "images").iterdir())
        if is_image_file(path) and content_hash(path) in wanted
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    args = parser.parse_args()
    report = {}
    for name in ("polyp", "breast-ultrasound"):
        path = MODELS_DIR / f"{name}.onnx"
        contract = Segmenter(path).contract
        images = trained_on(contract, args.shared)
        colours = [image_colour(load_image(p)[0]) for p in images]
        colour = dataset_colour(colours)
        report[name] = {
            "images": len(images),
            "listed": len(contract.training_image_sha256),
            "counts": dict(Counter(colours)),
            "input_colour": colour,
        }
        print(name, report[name])
        updated = replace(contract, input_colour=colour, contract_version=CONTRACT_VERSION)
        embed_contract(onnx.load(str(path)), updated, path)
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
