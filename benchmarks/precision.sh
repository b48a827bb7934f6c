#!/usr/bin/env bash
# fp32 vs fp16 vs int8 of one checkpoint: export each (the export reports mask Dice vs fp32 on the verify
# images), then lvunet-bench each, one process per variant.
#   benchmarks/precision.sh CKPT CALIB_DIR VERIFY_DIR OUT_DIR
set -euo pipefail
ckpt=$1; calib=$2; verify=$3; out=$4
mkdir -p "$out"
for p in fp32 fp16 int8; do
  lvunet-export --ckpt "$ckpt" --out "$out/model-$p.onnx" --precision "$p" --calib "$calib" \
    --verify-images "$verify" --overwrite > "$out/export-$p.log"
  lvunet-bench --model "$out/model-$p.onnx" --threads auto --batch-sizes 1 --runs 300 \
    --json "$out/bench-$p.json" --markdown "$out/bench-$p.md" > /dev/null
done
grep -h "mask Dice\|wrote" "$out"/export-*.log
grep -h "| cpu" "$out"/bench-*.md
