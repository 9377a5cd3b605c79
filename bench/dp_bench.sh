#!/usr/bin/env bash
# Data-parallel scaling on one machine: tokens/s of the same training job
# (same global batch) at dp = 1 (one process, all cores) and dp = 2 (two
# processes, cores split between them), and the ratio.
#   bash bench/dp_bench.sh [build/lmscale] [steps]
set -euo pipefail
BIN=${1:-build/lmscale}
STEPS=${2:-8}
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
CORES=$(nproc)
MODEL=(--model gpt2-124m --num-layers 4 --num-heads 4 --hidden-size 256 --max-seq-len 256)
JOB=(bench train "${MODEL[@]}" --batch-size 16 --micro-batch-size 8 --seq-len 64 --steps "$STEPS" --warmup 1
     --peak-tflops 1 --json)
# mean ms/step after the warm-up, from `lmscale bench train --json` (rank 0's line)
step_ms() { $PY -c 'import json,sys; print("%.1f" % json.loads(sys.stdin.read().splitlines()[-1])["step_ms"])'; }
d1=$("$BIN" "${JOB[@]}" --threads "$CORES" 2>/dev/null | step_ms)
d2=$(OMP_NUM_THREADS=$((CORES / 2 > 0 ? CORES / 2 : 1)) bash "$HERE/../tests/mpirun.sh" 2 "$BIN" "${JOB[@]}" \
    --threads $((CORES / 2 > 0 ? CORES / 2 : 1)) 2>/dev/null | step_ms)
$PY -c "
d1, d2 = $d1, $d2
tok = 16 * 64
print('| setting | ms/step | tokens/s |')
print('|---|---|---|')
print('| dp=1, %d threads | %.1f | %.0f |' % ($CORES, d1, tok / d1 * 1e3))
print('| dp=2 (MPI), %d thread(s) each | %.1f | %.0f |' % (max($CORES // 2, 1), d2, tok / d2 * 1e3))
print('| ratio dp=2 / dp=1 | | %.2f |' % (d1 / d2))"
