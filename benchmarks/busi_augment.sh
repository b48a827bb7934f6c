#!/usr/bin/env bash
# Issue #24's CPU screen of augmentation for ultrasound: BUSI (random 64/16/20 split by seed), 128 px,
# one run per (recipe, seed), two at a time with one thread each; then a table of test Dice/IoU (the
# fused model, metrics.json) and best validation IoU per recipe, mean over seeds (min-max).
#   SIZE=128 EPOCHS=40 SEEDS="1 2" ARMS="basic strong ultrasound" benchmarks/busi_augment.sh OUT
set -euo pipefail
OUT=${1:?usage: busi_augment.sh OUT_DIR}
DATA=${DATA:-../shared/data/busi}; SIZE=${SIZE:-128}; EPOCHS=${EPOCHS:-40}; SEEDS=${SEEDS:-"1 2"}
ARMS=${ARMS:-"basic strong ultrasound"}; BATCH=${BATCH:-8}; BIN=${BIN:-.venv/bin}; PARALLEL=${PARALLEL:-2}
mkdir -p "$OUT"
echo "busi_augment: $DATA, size $SIZE, $EPOCHS epochs, batch $BATCH, seeds $SEEDS, arms $ARMS, $(date -u +%FT%TZ)" > "$OUT/settings.txt"
running=0
for seed in $SEEDS; do for arm in $ARMS; do
  run="$OUT/$arm-seed$seed"
  if [ ! -f "$run/metrics.json" ]; then
    rm -rf "$run"
    OMP_NUM_THREADS=1 "$BIN/lvunet-train" --data "$DATA" --out "$run" --image-size "$SIZE" --epochs "$EPOCHS" \
      --batch-size "$BATCH" --seed "$seed" --augment "$arm" --no-progress > "$run.train.out" 2>&1 \
      || echo "FAILED: $arm seed $seed (see $run.train.out)" &
    running=$((running + 1))
    if [ "$running" -ge "$PARALLEL" ]; then wait -n || true; running=$((running - 1)); fi
  fi
done; done
wait
echo "all done $(date -u +%T)" >> "$OUT/settings.txt"
"$BIN/python" - "$OUT" <<'PY'
import json, statistics, sys
from collections import defaultdict
from pathlib import Path
rows = defaultdict(lambda: defaultdict(list))
for run in sorted(Path(sys.argv[1]).glob("*-seed*/metrics.json")):
    arm, m = run.parent.name.rsplit("-seed", 1)[0], json.loads(run.read_text())
    log = [json.loads(line) for line in (run.parent / "log.jsonl").read_text().splitlines()]
    rows[arm]["test Dice"].append(m["fused"]["dice"])
    rows[arm]["test IoU"].append(m["fused"]["iou"])
    rows[arm]["best val IoU"].append(max(r["val_iou"] for r in log if r["slope"] == 1.0))
    rows[arm]["s/epoch"].append(statistics.median(r["epoch_time_s"] for r in log))
cols = ["test Dice", "test IoU", "best val IoU", "s/epoch"]
print("| recipe | seeds | " + " | ".join(cols) + " |\n|" + "---|" * (len(cols) + 2))
for arm, v in rows.items():
    cells = [f"{statistics.mean(v[c]):.3f} ({min(v[c]):.3f}-{max(v[c]):.3f})" for c in cols[:3]]
    print(f"| {arm} | {len(v['test Dice'])} | " + " | ".join(cells) + f" | {statistics.median(v['s/epoch']):.0f} |")
PY
