#!/usr/bin/env bash
# Issue #16 in one GPU window: the candidate bundled models and the lever confirmation, side by side on
# one GPU. Carries .data (benchmarks/prepare_data.py: 256x256 copies, 40 MB). Writes under $OUT.
#   bundled (BUNDLED_EPOCHS, --augment strong, seed 42):
#     polyp      Kvasir-SEG + CVC-ClinicDB, PraNet split (test 162), batch 16 (the bundled polyp model)
#     busi       BUSI, random 64/16/20 split, batch 8 (the bundled breast-ultrasound model)
#     kvasir     Kvasir-SEG, the paper's protocol (random 640/160/200), batch 8 (accuracy table row)
#   levers (LEVER_EPOCHS, SEEDS x {basic, strong}): Kvasir-SEG PraNet train only, batch 16; scored later on
#     this machine's CPU by benchmarks/levers.sh's evaluation (Kvasir test, all of CVC-ClinicDB).
# A deadline kills what has not finished; a killed run brings back last.pt (and best.pt once an epoch at
# slope 1 finished) to be continued with `lvunet-train --resume`; calling the script again on the same warm
# machine resumes the unfinished runs there and skips the finished ones.
#   device call: DEADLINE_S=520 bash benchmarks/gpu_generalise.sh        (timeout_s 600, carry .data)
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
DATA=${DATA:-.data}; DEVICE=${DEVICE:-cuda}; DEADLINE_S=${DEADLINE_S:-520}
BUNDLED_EPOCHS=${BUNDLED_EPOCHS:-100}; LEVER_EPOCHS=${LEVER_EPOCHS:-40}; SEEDS=${SEEDS:-"1 2 3"}
PY=${PY:-python3}
export PYTHONPATH=$PWD:$PWD/runtime PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
T0=$(date +%s)
elapsed() { echo $(($(date +%s) - T0)); }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $PY -c "import torch,sys;print('torch',torch.__version__,'python',sys.version.split()[0])"; nproc --all
  echo "bundled $BUNDLED_EPOCHS epochs, levers $LEVER_EPOCHS epochs, seeds $SEEDS, deadline $DEADLINE_S s"
} > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

mkdir -p "$DATA/polyp/images" "$DATA/polyp/masks"  # Kvasir-SEG + CVC-ClinicDB (ids do not collide)
for d in kvasir-seg cvc-clinicdb; do
  for sub in images masks; do ln -sf "$(cd "$DATA/$d/$sub" && pwd)"/* "$DATA/polyp/$sub/"; done
done

R=${RUNS_DIR:-runs/gpu}; mkdir -p "$R"
names=()
start() {  # name, lvunet-train options; a second call on the same machine continues unfinished runs
  local name=$1; shift
  if [ -f "$R/$name/metrics.json" ]; then rm -f "$R/$name.pid"; names+=("$name"); return; fi
  if [ -f "$R/$name/last.pt" ]; then
    $PY -m lvunet_edge.cli --resume "$R/$name" --no-progress >> "$R/$name.out" 2>&1 &
  else
    rm -rf "${R:?}/$name"  # a run stopped before its first epoch ended: start it again
    $PY -m lvunet_edge.cli --out "$R/$name" --device "$DEVICE" --no-progress "$@" > "$R/$name.out" 2>&1 &
  fi
  echo $! > "$R/$name.pid"; names+=("$name")
}
start polyp --data "$DATA/polyp" --split-file "$DATA/polyp-pranet-test.txt" --epochs "$BUNDLED_EPOCHS" \
  --batch-size 16 --augment strong
start busi --data "$DATA/busi" --epochs "$BUNDLED_EPOCHS" --batch-size 8 --augment strong
start kvasir --data "$DATA/kvasir-seg" --epochs "$BUNDLED_EPOCHS" --batch-size 8 --augment strong
for seed in $SEEDS; do for arm in basic strong; do
  start "$arm-seed$seed" --data "$DATA/kvasir-seg" --split-file "$DATA/splits/pranet-kvasir-seg-test.txt" \
    --epochs "$LEVER_EPOCHS" --batch-size 16 --seed "$seed" --augment "$arm"
done; done

last_report=0
while [ "$(elapsed)" -lt "$DEADLINE_S" ]; do
  alive=0; for n in "${names[@]}"; do kill -0 "$(cat "$R/$n.pid" 2>/dev/null)" 2>/dev/null && alive=$((alive + 1)); done
  [ $alive = 0 ] && break
  if [ $(($(elapsed) - last_report)) -ge 60 ]; then
    last_report=$(elapsed)
    echo "at $(elapsed) s, $alive running: $(for n in "${names[@]}"; do
      printf '%s %s; ' "$n" "$(wc -l < "$R/$n/log.jsonl" 2>/dev/null || echo 0)"; done)"
  fi
  sleep 5
done
for n in "${names[@]}"; do kill "$(cat "$R/$n.pid" 2>/dev/null)" 2>/dev/null && echo "deadline: killed $n at $(elapsed) s"; done
sleep 3
for n in "${names[@]}"; do echo "== $n"; tail -2 "$R/$n.out"; done
# Pack into at most 7 tars under 60 MB: bundled runs first, then the lever runs by arm.
$PY - "$R" "$OUT" <<'PY'
import sys, tarfile
from pathlib import Path
runs, out = Path(sys.argv[1]), Path(sys.argv[2])
budget = 60_000_000
groups = {"polyp": ["polyp"], "busi": ["busi"], "kvasir": ["kvasir"],
          "levers-basic": sorted(p.name for p in runs.glob("basic-seed*") if p.is_dir()),
          "levers-strong": sorted(p.name for p in runs.glob("strong-seed*") if p.is_dir())}
for group, names in groups.items():
    files = []
    for name in names:
        run = runs / name
        files += [run.parent / f"{name}.out"] + [run / f for f in ("log.jsonl", "split.json", "train.log", "metrics.json")]
        files += [run / "best.pt"] + ([] if (run / "metrics.json").exists() else [run / "last.pt"])
    files = [f for f in files if f.exists()]
    size = sum(f.stat().st_size for f in files)
    if size > budget:
        files = [f for f in files if f.suffix != ".pt"]
        print(f"{group}: checkpoints left out, {size} bytes over the remaining budget")
        size = sum(f.stat().st_size for f in files)
    budget -= size
    with tarfile.open(out / f"{group}.tar", "w") as tar:
        for f in files:
            tar.add(f, arcname=str(f.relative_to(runs)))
    print(f"{group}.tar: {len(files)} files, {size / 1e6:.1f} MB")
PY
echo "done at $(elapsed) s"; ls -la "$OUT"
