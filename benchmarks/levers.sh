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
declare -A ARMS=(
  [basic]="--augment basic"
  [strong]="--augment strong"
  [strong-ema]="--augment strong --ema ${EMA:-0.99}"
  [strong-ds]="--augment strong --deep-supervision ${DS:-0.4}"
)
ARM_NAMES=${ARM_NAMES:-"basic strong strong-ema"}
mkdir -p "$OUT"
echo "levers: size $SIZE, $EPOCHS epochs, seeds $SEEDS, arms $ARM_NAMES, device $DEVICE, $(date -u +%FT%TZ)" > "$OUT/settings.txt"
test -f "$DATA/splits/pranet-kvasir-seg-test.txt" && test -d "$DATA/cvc-clinicdb/images"

one() {  # arm seed
  local arm=$1 seed=$2 run="$OUT/$1-seed$2"
  [ -f "$run/eval-cvc-all-tta.json" ] && return 0  # done in an earlier call
  if [ ! -f "$run/metrics.json" ]; then  # a finished run (e.g. trained on a GPU) is only scored
    rm -rf "$run"
    # shellcheck disable=SC2086
    "$BIN/lvunet-train" --data "$DATA/kvasir-seg" --split-file "$DATA/splits/pranet-kvasir-seg-test.txt" \
      --out "$run" --image-size "$SIZE" --epochs "$EPOCHS" --batch-size "$BATCH" --seed "$seed" \
      --device "$DEVICE" --no-progress ${ARMS[$arm]} > "$run.train.out" 2>&1
  fi
  "$BIN/lvunet-export" --ckpt "$run/best.pt" --out "$run/model.onnx" > "$run.export.out" 2>&1
  for tta in off hv; do
    local suffix=$([ $tta = hv ] && echo -tta || true)
    "$BIN/lvunet-eval" --model "$run/model.onnx" --data "$DATA/kvasir-seg" --tta $tta --no-progress \
      --split-file "$DATA/splits/pranet-kvasir-seg-test.txt" --json "$run/eval-kvasir-test$suffix.json" > /dev/null
    "$BIN/lvunet-eval" --model "$run/model.onnx" --data "$DATA/cvc-clinicdb" --tta $tta --no-progress \
      --json "$run/eval-cvc-all$suffix.json" > /dev/null
  done
  rm -f "$run/last.pt"  # large and only for resuming
  echo "$arm seed $seed done $(date -u +%T)"
}
export OUT DATA SIZE EPOCHS DEVICE BATCH BIN
jobs=()
for seed in $SEEDS; do for arm in $ARM_NAMES; do jobs+=("$arm $seed"); done; done
running=0
for job in "${jobs[@]}"; do
  # shellcheck disable=SC2086
  bash -c "$(declare -p ARMS); $(declare -f one); set -euo pipefail; one $job" || echo "FAILED: $job (see $OUT)" &
  running=$((running + 1))
  if [ "$running" -ge "$PARALLEL" ]; then wait -n || true; running=$((running - 1)); fi
done
wait
echo "all done $(date -u +%T)" >> "$OUT/settings.txt"
