"""Re-evaluate trained runs on their test splits (on this machine's CPU, true float32) and write the
accuracy table with the paper's Table I and the reference code's from-scratch runs beside ours.

    python benchmarks/accuracy_table.py --out benchmarks/results/accuracy.md \
        kvasir-seg=runs/s1/kvasir:.data/kvasir-seg cvc-clinicdb=runs/s1/cvc:.data/cvc-clinicdb ...

Each argument is NAME=RUN_DIR:DATA_DIR; RUN_DIR holds best.pt, split.json and log.jsonl from lvunet-train.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch
from lvunet_runtime.contract import ModelContract
from lvunet_runtime.data import find_pairs
from timing import machine_header

from lvunet_edge.config import TrainConfig, training_contract
from lvunet_edge.dataset import load_dataset
from lvunet_edge.evaluation import evaluate_trained_and_fused

# Paper Table I (ImageNet-pretrained encoder, 300 epochs, IoU/Dice pooled per batch of 8)
PAPER = {"kvasir-seg": (0.8069, 0.8917), "cvc-clinicdb": (0.8514, 0.9183), "busi": (0.6489, 0.7785)}
# Reference code trained from scratch here, 100 epochs, per-image IoU / Dice (its "last, fused" row)
REFERENCE = {"kvasir-seg": (0.753, 0.839), "cvc-clinicdb": (0.790, 0.867)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+", help="NAME=RUN_DIR:DATA_DIR")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--machine", default="one NVIDIA H200 (lent machine), torch 2.11 bf16 autocast"
    )
    args = parser.parse_args()
    rows, details = [], {}
    for spec in args.runs:
        name, rest = spec.split("=", 1)
        run_dir, data_dir = (Path(p) for p in rest.split(":", 1))
        split = json.loads((run_dir / "split.json").read_text())
        log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
        payload = torch.load(run_dir / "best.pt", weights_only=True)
        config = payload["train_config"]
        contract = (
            ModelContract.from_dict(payload["contract"])
            if "contract" in payload
            else training_contract(TrainConfig.from_dict(config))
        )
        dataset = load_dataset(find_pairs(data_dir), contract).subset(split["test"])
        metrics = evaluate_trained_and_fused(
            run_dir / "best.pt", dataset, torch.device("cpu"), contract
        )
        details[name] = {"split": split["source"], "epochs": len(log), **metrics}
        base = name.split(" ")[0]
        paper = PAPER.get(base, (None, None))
        ref = REFERENCE.get(base, (None, None))
        median_epoch = sorted(r["epoch_time_s"] for r in log)[len(log) // 2]

        def fmt(value):
            return "-" if value is None else f"{value:.3f}"

        rows.append(
            f"| {name} | {split['source']} | {len(split['train'])}/{len(split['val'])}/"
            f"{len(split['test'])} | {len(log)} (batch {config['batch_size']}) | "
            f"{metrics['trained']['iou']:.4f} / {metrics['trained']['dice']:.4f} | "
            f"{metrics['fused']['iou']:.4f} / {metrics['fused']['dice']:.4f} | "
            f"{metrics['max_abs_logit_diff']:.1e} | {metrics['trained']['batch_pooled_iou']:.4f} | "
            f"{fmt(paper[0])} / {fmt(paper[1])} | {fmt(ref[0])} / {fmt(ref[1])} | {median_epoch:.2f} s |"
        )
        print(rows[-1])
    header = [
        "# Accuracy: trained vs fused LV-UNet, from scratch",
        "",
        f"Trained on {args.machine}; re-evaluated by `benchmarks/accuracy_table.py` on "
        f"{platform.processor() or platform.machine()} CPU in float32 (torch {torch.__version__}).",
        "Images resized to 256x256 (`benchmarks/prepare_data.py`, INTER_AREA, JPEG q90), ImageNet "
        "mean/std, no ImageNet weights (none can be downloaded here). Per-image mean IoU / Dice are the "
        "primary numbers; 'pooled IoU' is the paper's per-batch (8) pooled IoU, for comparison only.",
        "",
        "| dataset | split | train/val/test | epochs | trained IoU / Dice | fused IoU / Dice | "
        "max abs logit diff | pooled IoU (trained) | paper Table I IoU / Dice (ImageNet, 300 ep) | "
        "reference code from scratch (100 ep, fused) | median epoch time |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(header + rows) + "\n")
    report = machine_header(torch=torch.__version__, runs=details)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
