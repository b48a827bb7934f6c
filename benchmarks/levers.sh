#!/usr/bin/env bash
# Screen training levers with the cross-dataset proxy of issue #16: train on Kvasir-SEG's PraNet training
# part only (900 images: 720 train / 180 validation), then score the exported, fused file with lvunet-eval
# on the 100 Kvasir-SEG PraNet test images and on ALL 612 CVC-ClinicDB images (another centre, never
# seen), each with and without --tta hv. One run per (arm, seed); arms are lvunet-train options.
#
#   CPU (what this machine allows; 128x128, 30 epochs: ~12 min a run on 2 cores):
#     SIZE=128 EPOCHS=30 SEEDS="1 2" benchmarks/levers.sh benchmarks/results/levers/cpu-128
#   GPU (one 15-minute window; the runs go side by side, PARALLEL at once; .data from prepare_data.py,
#   whose 256x256 masks make the scores a proxy, not the model card's full-size numbers):
#     SIZE=256 EPOCHS=100 SEEDS="1 2 3" PARALLEL=8 EMA=0.999 DEVICE=cuda DATA=.data \
#       benchmarks/levers.sh runs/levers
#   TOGETHER=1 trains an arm's seeds in one process (lvunet-train --seeds: each device step carries a batch
#   of every seed's run; for a GPU, where one run leaves the device mostly idle; on 2 CPU cores it measured
#   2x slower than one run at a time, benchmarks/results/train-speed/), then scores each run as usual.
#   The reverse direction (train on CVC-ClinicDB's PraNet training part, score its PraNet test and ALL 1000
#   Kvasir-SEG images): SOURCE=cvc-clinicdb (files eval-cvc-test*.json, eval-kvasir-all*.json).
#   An arm's options may name {seed}, replaced by the run's seed (e.g. a teacher of the same split).
#   Runs trained elsewhere (benchmarks/gpu_generalise.sh) are only exported and scored: put their folders
#   (ARM-seedN with best.pt and metrics.json) in OUT and run with ARM_NAMES="basic strong".
# Then: python benchmarks/levers_table.py OUT   (mean and min-max over seeds per arm and test set)
set -euo pipefail
OUT=${1:?usage: levers.sh OUT_DIR}
DATA=${DATA:-../shared/data}
SIZE=${SIZE:-128}
EPOCHS=${EPOCHS:-30}
SEEDS=${SEEDS:-"1 2"}
PARALLEL=${PARALLEL:-1}
DEVICE=${DEVICE:-auto}
BATCH=${BATCH:-16}
BIN=${BIN:-.venv/bin}
SOURCE=${SOURCE:-kvasir-seg}
case $SOURCE in
  kvasir-seg) CROSS=cvc-clinicdb ;;
  cvc-clinicdb) CROSS=kvasir-seg ;;
  *) echo "SOURCE must be kvasir-seg or cvc-clinicdb" >&2; exit 1 ;;
esac
TEACHERS=${TEACHERS:-}
TOGETHER=${TOGETHER:-0}
declare -A ARMS=(
  [basic]="--augment basic"
  [strong]="--augment strong"
  [strong-ema]="--augment strong --ema ${EMA:-0.99}"
  [strong-ds]="--augment strong --deep-supervision ${DS:-0.4}"
  [strong-ms]="--augment strong --multi-scale"
  [strong-kd]="--augment strong --distill $TEACHERS/strong-seed{seed}/best.pt --distill-weight ${KD:-0.5}"
)
ARM_NAMES=${ARM_NAMES:-"basic strong strong-ema"}
mkdir -p "$OUT"
echo "levers: source $SOURCE, size $SIZE, $EPOCHS epochs, seeds $SEEDS, arms $ARM_NAMES, device $DEVICE, $(date -u +%FT%TZ)" > "$OUT/settings.txt"
test -f "$DATA/splits/pranet-$SOURCE-test.txt" && test -d "$DATA/$CROSS/images"

one() {  # arm seed
  local arm=$1 seed=$2 run="$OUT/$1-seed$2" same=${SOURCE%%-*} cross=${CROSS%%-*}
  local options=${ARMS[$arm]//\{seed\}/$seed}
  [ -f "$run/eval-$cross-all-tta.json" ] && return 0  # done in an earlier call
  if [ ! -f "$run/metrics.json" ]; then  # a finished run (e.g. trained on a GPU) is only scored
    rm -rf "$run"
    # shellcheck disable=SC2086
    "$BIN/lvunet-train" --data "$DATA/$SOURCE" --split-file "$DATA/splits/pranet-$SOURCE-test.txt" \
      --out "$run" --image-size "$SIZE" --epochs "$EPOCHS" --batch-size "$BATCH" --seed "$seed" \
      --device "$DEVICE" --no-progress $options > "$run.train.out" 2>&1
  fi
  "$BIN/lvunet-export" --ckpt "$run/best.pt" --out "$run/model.onnx" > "$run.export.out" 2>&1
  for tta in off hv; do
    local suffix=$([ $tta = hv ] && echo -tta || true)
    "$BIN/lvunet-eval" --model "$run/model.onnx" --data "$DATA/$SOURCE" --tta $tta --no-progress \
      --split-file "$DATA/splits/pranet-$SOURCE-test.txt" --json "$run/eval-$same-test$suffix.json" > /dev/null
    "$BIN/lvunet-eval" --model "$run/model.onnx" --data "$DATA/$CROSS" --tta $tta --no-progress \
      --json "$run/eval-$cross-all$suffix.json" > /dev/null
  done
  rm -f "$run/last.pt"  # large and only for resuming
  echo "$arm seed $seed done $(date -u +%T)"
}
together() {  # arm: its seeds' runs trained in one process (skipped when each has finished)
  local arm=$1 seeds=${SEEDS// /,} pending=0 seed
  for seed in $SEEDS; do [ -f "$OUT/$arm-seed$seed/metrics.json" ] || pending=1; done
  [ $pending = 0 ] && return 0
  case ${ARMS[$arm]} in *"{seed}"*) echo "arm $arm names {seed}: it cannot use TOGETHER=1" >&2; return 1 ;; esac
  for seed in $SEEDS; do rm -rf "$OUT/$arm-seed$seed"; done
  # shellcheck disable=SC2086
  "$BIN/lvunet-train" --data "$DATA/$SOURCE" --split-file "$DATA/splits/pranet-$SOURCE-test.txt" \
    --out "$OUT/$arm" --seeds "$seeds" --image-size "$SIZE" --epochs "$EPOCHS" --batch-size "$BATCH" \
    --device "$DEVICE" --no-progress ${ARMS[$arm]} > "$OUT/$arm.train.out" 2>&1
}
export OUT DATA SIZE EPOCHS DEVICE BATCH BIN SOURCE CROSS SEEDS
jobs=()
if [ "$TOGETHER" = 1 ]; then
  for arm in $ARM_NAMES; do jobs+=("$arm"); done
else
  for seed in $SEEDS; do for arm in $ARM_NAMES; do jobs+=("$arm $seed"); done; done
fi
running=0
for job in "${jobs[@]}"; do
  if [ "$TOGETHER" = 1 ]; then
    task="together $job; for seed in \$SEEDS; do one $job \$seed; done"
  else
    task="one $job"
  fi
  # shellcheck disable=SC2086
  bash -c "$(declare -p ARMS); $(declare -f one together); set -euo pipefail; $task" || echo "FAILED: $job (see $OUT)" &
  running=$((running + 1))
  if [ "$running" -ge "$PARALLEL" ]; then wait -n || true; running=$((running - 1)); fi
done
wait
echo "all done $(date -u +%T)" >> "$OUT/settings.txt"
