"""The table of a `levers.sh` output folder: per arm, mean per-image Dice over seeds with its min-max, on
the Kvasir-SEG PraNet test (same centre) and all of CVC-ClinicDB (the cross-dataset proxy), without and
with --tta hv (or, for a SOURCE=cvc-clinicdb folder, the CVC-ClinicDB PraNet test and all of Kvasir-SEG);
best validation IoU and epoch time from the runs' logs.

    python benchmarks/levers_table.py /tmp/levers > benchmarks/results/levers/cpu-128/README-table.md
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

FORWARD = [
    ("eval-kvasir-test.json", "Kvasir test"),
    ("eval-kvasir-test-tta.json", "Kvasir test, TTA hv"),
    ("eval-cvc-all.json", "CVC all (cross)"),
    ("eval-cvc-all-tta.json", "CVC all, TTA hv"),
]
REVERSE = [
    ("eval-cvc-test.json", "CVC test"),
    ("eval-cvc-test-tta.json", "CVC test, TTA hv"),
    ("eval-kvasir-all.json", "Kvasir all (cross)"),
    ("eval-kvasir-all-tta.json", "Kvasir all, TTA hv"),
]


def cell(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def main() -> None:
    folder = Path(sys.argv[1])
    arms: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    reverse = any(folder.glob(f"*/{REVERSE[-1][0]}"))
    COLUMNS = REVERSE if reverse else FORWARD  # noqa: N806
    done = (p for p in folder.iterdir() if p.is_dir() and (p / COLUMNS[-1][0]).is_file())
    for run in sorted(done):  # finished runs only
        arm = run.name.rsplit("-seed", 1)[0]
        for name, _ in COLUMNS:
            if (run / name).is_file():
                arms[arm][name].append(json.loads((run / name).read_text())["dice"])
        log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
        arms[arm]["val"].append(max(r["val_iou"] for r in log if r["slope"] == 1.0))
        arms[arm]["epoch_s"].append(statistics.median(r["epoch_time_s"] for r in log))
        arms[arm]["seeds"].append(1)
    header = ["arm", "seeds", *(title for _, title in COLUMNS), "best val IoU", "s/epoch"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for arm, values in arms.items():
        row = [arm, str(len(values["seeds"]))]
        row += [cell(values[name]) for name, _ in COLUMNS]
        row += [cell(values["val"]), f"{statistics.median(values['epoch_s']):.0f}"]
        print("| " + " | ".join(row) + " |")
    print(
        "\nDice: mean per-image Dice of the exported fused file (lvunet-eval, full-size masks); "
        "mean over seeds (min-max)."
    )


if __name__ == "__main__":
    main()
