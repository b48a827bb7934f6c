#!/usr/bin/env bash
# Issue #24 in one GPU window (one device call under 8 minutes; carries .data from prepare_data.py):
#   1. benchmarks/train_speed.py on the GPU: the step before #24 vs now, 3 and 8 runs together, and the
#      fused model's inference at the same total batch (~90 s)
#   2. the bundled models retrained, 3 seeds each in one process (lvunet-train --seeds 1,2,3), both
#      processes side by side: polyp (Kvasir-SEG + CVC-ClinicDB, PraNet split, batch 16) and BUSI
#      (random 64/16/20, batch 8), --augment strong, the longest schedule the measured rate allows in
#      the time left (at most 300 epochs, the paper's; at least MIN_EPOCHS)
# A deadline stops what has not finished; every run keeps last.pt, and calling the script again with the
# same RUNS_DIR continues them (--resume OUT --seeds 1,2,3). Afterwards, on the CPU machine: pick the seed
# by validation, export, benchmarks/bundle_model.py, the model card, accuracy_table.py, lvunet-eval.
#   device call: DEADLINE_S=450 bash benchmarks/gpu_train.sh          (timeout_s 480, carry .data)
#   dry run here: DEVICE=cpu DATA=/tmp/fakedata SPEED_ARGS="--size 128 --batch 2 --runs 2 --steps 1 \
#     --rounds 1" MIN_EPOCHS=2 MAX_EPOCHS=2 DEADLINE_S=300 bash benchmarks/gpu_train.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
DATA=${DATA:-.data}; DEVICE=${DEVICE:-cuda}; DEADLINE_S=${DEADLINE_S:-450}
MIN_EPOCHS=${MIN_EPOCHS:-30}; MAX_EPOCHS=${MAX_EPOCHS:-300}; SEEDS=${SEEDS:-1,2,3}
PY=${PY:-python3}
SPEED_ARGS=${SPEED_ARGS:---size 256 --batch 16 --runs 3 --steps 10 --rounds 5}
export PYTHONPATH=$PWD:$PWD/runtime PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
T0=$(date +%s)
elapsed() { echo $(($(date +%s) - T0)); }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import torch,sys;print('torch',torch.__version__,'python',sys.version.split()[0])"; nproc --all
} > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

mkdir -p "$DATA/polyp/images" "$DATA/polyp/masks"  # Kvasir-SEG + CVC-ClinicDB (ids do not collide)
for d in kvasir-seg cvc-clinicdb; do
  for sub in images masks; do ln -sf "$(cd "$DATA/$d/$sub" && pwd)"/* "$DATA/polyp/$sub/"; done
done
POLYP_SPLIT="$DATA/polyp-pranet-test.txt"
[ -f "$POLYP_SPLIT" ] || cat "$DATA"/splits/pranet-*-test.txt > "$POLYP_SPLIT"

R=${RUNS_DIR:-runs/gpu-train}; mkdir -p "$R"
if [ ! -f "$OUT/train-speed.json" ]; then  # 1. the measurement (once per machine)
  # shellcheck disable=SC2086
  timeout 150 $PY benchmarks/train_speed.py --data "$DATA/kvasir-seg" --device "$DEVICE" $SPEED_ARGS \
    --out "$OUT/train-speed.json" > "$OUT/train-speed.log" 2>&1 || echo "train_speed.py failed (see train-speed.log)"
  # shellcheck disable=SC2086
  timeout 90 $PY benchmarks/train_speed.py --data "$DATA/kvasir-seg" --device "$DEVICE" $SPEED_ARGS \
    --runs 8 --no-before --out "$OUT/train-speed-8.json" > "$OUT/train-speed-8.log" 2>&1 || true
  grep -E "images/s|written" "$OUT"/train-speed*.log
fi
echo "measured at $(elapsed) s"

# 2. Epochs from the measured rate: both groups share the device, so the images of both per epoch.
EPOCHS=${EPOCHS:-$($PY - "$OUT/train-speed.json" "$DEADLINE_S" "$(elapsed)" "$MIN_EPOCHS" "$MAX_EPOCHS" <<'PY'
import json, sys
path, deadline, now, low, high = sys.argv[1], *map(float, sys.argv[2:])
try:
    arms = json.load(open(path))["arms"]
    rate = max(a["images_per_s"] for name, a in arms.items() if name.startswith("runs-"))
except (OSError, ValueError, KeyError):
    rate = 0.0
polyp, busi, seeds = 1160, 499, 3  # training images per epoch (80% of 1450; 64% of 780)
budget = (deadline - now - 90) * 0.7  # validation, checkpoints, the test and a margin
print(int(max(low, min(high, budget * rate / (seeds * (polyp + busi))))))
PY
)}
echo "training $EPOCHS epochs, seeds $SEEDS (deadline $DEADLINE_S s)"

names=()
start() {  # name, lvunet-train options: the seeds' runs OUT-seedN in one process; a second call continues
  local name=$1 s missing=0 done=1; shift
  for s in ${SEEDS//,/ }; do
    [ -f "$R/$name-seed$s/metrics.json" ] || done=0
    [ -f "$R/$name-seed$s/last.pt" ] || missing=1
  done
  names+=("$name")
  if [ $done = 1 ]; then rm -f "$R/$name.pid"; return; fi
  if [ $missing = 0 ]; then
    $PY -m lvunet_edge.cli --resume "$R/$name" --seeds "$SEEDS" --no-progress >> "$R/$name.out" 2>&1 &
  else
    for s in ${SEEDS//,/ }; do rm -rf "${R:?}/$name-seed$s"; done  # stopped before an epoch ended
    $PY -m lvunet_edge.cli --out "$R/$name" --seeds "$SEEDS" --device "$DEVICE" --no-progress \
      --epochs "$EPOCHS" --augment strong "$@" > "$R/$name.out" 2>&1 &
  fi
  echo $! > "$R/$name.pid"
}
start polyp --data "$DATA/polyp" --split-file "$POLYP_SPLIT" --batch-size 16
start busi --data "$DATA/busi" --batch-size 8

last_report=0
while [ "$(elapsed)" -lt "$DEADLINE_S" ]; do
  alive=0; for n in "${names[@]}"; do kill -0 "$(cat "$R/$n.pid" 2>/dev/null)" 2>/dev/null && alive=$((alive + 1)); done
  [ $alive = 0 ] && break
  if [ $(($(elapsed) - last_report)) -ge 60 ]; then
    last_report=$(elapsed)
    echo "at $(elapsed) s: $(for n in "${names[@]}"; do printf '%s %s epochs; ' "$n" "$(cat "$R/$n-seed1/log.jsonl" 2>/dev/null | wc -l)"; done)"
  fi
  sleep 5
done
for n in "${names[@]}"; do kill "$(cat "$R/$n.pid" 2>/dev/null)" 2>/dev/null && echo "deadline: stopped $n at $(elapsed) s (continue: call again)"; done
sleep 3
for n in "${names[@]}"; do echo "== $n"; tail -3 "$R/$n.out"; done
# Pack under 60 MB: logs and best.pt of every run, last.pt of unfinished runs (and of finished ones while
# the budget lasts, so a later window can continue training them).
$PY - "$R" "$OUT" <<'PY'
import sys, tarfile
from pathlib import Path
runs, out = Path(sys.argv[1]), Path(sys.argv[2])
budget = 60_000_000
first = [f for run in sorted(p for p in runs.iterdir() if p.is_dir())
         for f in [run / n for n in ("log.jsonl", "split.json", "train.log", "metrics.json", "best.pt")]
         + ([] if (run / "metrics.json").exists() else [run / "last.pt"])]
later = [run / "last.pt" for run in sorted(runs.iterdir()) if (run / "metrics.json").exists()]
files = [f for f in first + [*runs.glob("*.out")] if f.exists()]
size = sum(f.stat().st_size for f in files)
for f in later:
    if f.exists() and size + f.stat().st_size <= budget:
        files.append(f)
        size += f.stat().st_size
with tarfile.open(out / "runs.tar", "w") as tar:
    for f in files:
        tar.add(f, arcname=str(f.relative_to(runs)))
print(f"runs.tar: {len(files)} files, {size / 1e6:.1f} MB")
PY
echo "done at $(elapsed) s"; ls -la "$OUT"
