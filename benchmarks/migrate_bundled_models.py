"""Move the bundled models' metadata to the current contract and measure their accuracy on the file itself.

    python benchmarks/migrate_bundled_models.py --shared ../shared/data

The graphs are untouched (their masks on the samples are checked by tests/runtime/test_session.py); only
the metadata changes: ``contract_version`` 4, ``training_recipe`` (the settings of the run, from its
train.log and the model card: lvunet-train defaults but for epochs 80 and the batch size), ``training_size`` 256x256 (both trained at 256, see
benchmarks/results/gpu-h200-2026-11-26/session2-*/train.log), ``training_image_sha256`` (content hashes
of the run's train + validation images, for lvunet-eval's overlap warning), and ``test_metrics`` replaced by the
numbers of the written file through lvunet_runtime on the run's recorded test split, each image at its
own size (the v1 files carried the checkpoint's torch numbers at 256x256, copied).

Since 2026-11-28 only breast-ultrasound is migrated here: the polyp file is rebuilt from its run by
``benchmarks/bundle_model.py`` (which uses ``record_provenance`` below).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from dataclasses import replace
from pathlib import Path

import onnx
from lvunet_export.export import ACCURACY_KEYS, embed_contract
from lvunet_runtime.contract import CONTRACT_VERSION, ModelContract
from lvunet_runtime.data import content_hash, find_pairs
from lvunet_runtime.evaluate import evaluate
from lvunet_runtime.model_files import MODELS_DIR
from lvunet_runtime.segmenter import Segmenter

RUNS = Path(__file__).parent / "results" / "gpu-h200-2026-11-26"
MODELS = {  # bundled name: (run with its split.json, datasets it trained on); polyp: bundle_model.py
    "breast-ultrasound": ("session2-busi", ("busi",)),
}
RECIPE = {  # session2's lvunet-train settings (benchmarks/gpu_session.sh), as training_recipe() records them
    "epochs": 80, "deep_epochs": 72, "schedule": "cosine", "lr": 1e-3, "min_lr": 1e-6, "image_size": 256,
    "augment": "basic", "ema": 0.0, "pretrained": False, "combination": "II", "act_num": 1, "skip": "add",
    "seed": 42,
}  # fmt: skip
BATCH = {"breast-ultrasound": 8}


def combined(shared: Path, datasets: tuple[str, ...], scratch: Path) -> Path:
    """One images/ + masks/ folder of symlinks over the datasets (their ids do not collide)."""
    if len(datasets) == 1:
        return shared / datasets[0]
    for part in ("images", "masks"):
        (scratch / part).mkdir(parents=True)
        for name in datasets:
            for path in (shared / name / part).iterdir():
                os.symlink(path.resolve(), scratch / part / path.name)
    return scratch


def record_provenance(
    source: Path,
    out: Path,
    contract: ModelContract,
    split: dict,
    datasets: tuple[str, ...],
    shared: Path,
) -> dict:
    """Write ``source``'s graph to ``out`` with ``contract`` plus what the run saw and what the file scores.

    ``training_image_sha256``: content hashes of the ORIGINAL train + validation images (a run on resized
    copies hashed the copies, which lvunet-eval never meets); ``test_metrics``: the written file through
    lvunet_runtime on CPU on the run's test split, each image at its own size.
    """
    with tempfile.TemporaryDirectory() as scratch:
        data = combined(shared, datasets, Path(scratch) / "data")
        seen = find_pairs(data, split["train"] + split["val"])
        contract = replace(
            contract,
            training_image_sha256=tuple(sorted({content_hash(p.image) for p in seen})),
            test_metrics={},
        )
        tmp = Path(scratch) / "model.onnx"
        embed_contract(onnx.load(str(source)), contract, tmp)
        result = evaluate(Segmenter(tmp, providers=["cpu"]), find_pairs(data, split["test"]))
        metrics = {k: result[k] for k in ACCURACY_KEYS}
        metrics.update(
            measured_on="this file, through lvunet_runtime on CPU, each image at its own size",
            data=" + ".join(datasets),
            split=contract.split,
        )
        embed_contract(onnx.load(str(tmp)), replace(contract, test_metrics=metrics), out)
    return metrics


def migrate(name: str, shared: Path) -> dict:
    run, datasets = MODELS[name]
    split = json.loads((RUNS / run / "split.json").read_text())
    path = MODELS_DIR / f"{name}.onnx"
    contract = replace(
        Segmenter(path).contract,
        contract_version=CONTRACT_VERSION,
        training_size=(256, 256),
        training_recipe={**RECIPE, "batch_size": BATCH[name]},
    )
    return record_provenance(path, path, contract, split, datasets, shared)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    args = parser.parse_args()
    for name in MODELS:
        print(name, json.dumps(migrate(name, args.shared)))


if __name__ == "__main__":
    main()
