#!/usr/bin/env bash
# One prepared session on a lent GPU machine (see benchmarks/README.md). Carries .data (made by
# benchmarks/prepare_data.py). Writes everything worth keeping under $OUT.
#   1. fused-model latency in torch (eager / CUDA graphs, fp32 / fp16, batch 1/8/64), alone on the GPU
#   2. a clean Kvasir-SEG epoch-time measurement (5 epochs, alone on the GPU)
#   3. four trainings side by side: Kvasir-SEG, CVC-ClinicDB, BUSI (paper protocol) and polyp (PraNet split)
# A hard deadline kills unfinished trainings; their last.pt comes back and resumes elsewhere.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
DATA=${DATA:-.data}; BUDGET=${BUDGET:-360}; DEADLINE_S=${DEADLINE_S:-470}; KEPOCHS=${KEPOCHS:-100}
EXTRA=${EXTRA:-}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
T0=$(date +%s)
elapsed() { echo $(( $(date +%s) - T0 )); }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; python3 -c "import torch,sys;print('torch',torch.__version__,'python',sys.version.split()[0])"; nproc; } > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

# The combined polyp set: Kvasir-SEG + CVC-ClinicDB (ids do not collide), as symlinks.
mkdir -p "$DATA/polyp/images" "$DATA/polyp/masks"
for d in kvasir-seg cvc-clinicdb; do
  for sub in images masks; do ln -sf "$(cd "$DATA/$d/$sub" && pwd)"/* "$DATA/polyp/$sub/"; done
done

[ -n "${SKIP_BENCH:-}" ] || timeout 90 python3 benchmarks/gpu_torch_bench.py --json "$OUT/gpu_torch_bench.json" --runs 200 > "$OUT/gpu_bench.log" 2>&1
tail -30 "$OUT/gpu_bench.log"; echo "bench done at $(elapsed) s"

R=runs; mkdir -p $R
RUNS=${RUNS:-kvasir cvc busi polyp}
if [ -n "${EPOCHS:-}" ]; then echo "epochs given: $EPOCHS"; else
timeout 120 python3 -m lvunet_edge.cli --data "$DATA/kvasir-seg" --out $R/kvasir-timing --epochs 5 --no-progress $EXTRA > $R/kvasir-timing.out 2>&1
cp $R/kvasir-timing/log.jsonl "$OUT/kvasir-timing-log.jsonl"
EPOCHS=$(python3 - "$R/kvasir-timing/log.jsonl" "$BUDGET" "$(elapsed)" "$KEPOCHS" "${MIN_EPOCHS:-30}" <<'PY'
import json, statistics, sys
log = [json.loads(l) for l in open(sys.argv[1])]
t_epoch = statistics.median(r["epoch_time_s"] for r in log[1:])  # first epoch includes warm-up
t_step = t_epoch / 80
budget, kepochs = float(sys.argv[2]), int(sys.argv[4])
# Worst case: the four runs share the GPU with no overlap. Steps per epoch: CVC 48, BUSI 62, polyp 145.
others = (budget / t_step / 1.15 - kepochs * 80) / (48 + 62 + 145)
print(max(int(sys.argv[5]), min(100, int(others))))
PY
)
echo "kvasir clean epoch times: $(python3 -c "import json;print([round(json.loads(l)['epoch_time_s'],2) for l in open('$R/kvasir-timing/log.jsonl')])"); other runs get $EPOCHS epochs; at $(elapsed) s"
fi

run() { name=$1; shift; case " $RUNS " in *" $name "*) ;; *) return;; esac; python3 -m lvunet_edge.cli --out $R/$name --no-progress $EXTRA "$@" > $R/$name.out 2>&1 & echo $! > $R/$name.pid; }
run kvasir --data "$DATA/kvasir-seg" --epochs "$KEPOCHS" ${ARGS_kvasir:-}
run cvc --data "$DATA/cvc-clinicdb" --epochs "$EPOCHS" ${ARGS_cvc:-}
run busi --data "$DATA/busi" --epochs "$EPOCHS" ${ARGS_busi:-}
run polyp --data "$DATA/polyp" --split-file "$DATA/polyp-pranet-test.txt" --epochs "$EPOCHS" ${ARGS_polyp:-}
while [ "$(elapsed)" -lt "$DEADLINE_S" ]; do
  alive=0; for n in $RUNS; do kill -0 "$(cat $R/$n.pid)" 2>/dev/null && alive=1; done
  [ $alive = 0 ] && break; sleep 5
done
for n in $RUNS; do kill "$(cat $R/$n.pid)" 2>/dev/null && echo "deadline: killed $n"; done
sleep 2
for n in $RUNS; do
  echo "== $n"; tail -3 $R/$n.out
  files="$n/log.jsonl $n/split.json $n/train.log $n/best.pt"
  [ -f $R/$n/metrics.json ] && files="$files $n/metrics.json" || files="$files $n/last.pt"
  (cd $R && tar -cf "$OUT/run-$n.tar" $(for f in $files; do [ -e $f ] && echo $f; done) $n.out)
done
echo "done at $(elapsed) s"; ls -la "$OUT"
