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
DATA="$HERE/../../shared/data/tinyshakespeare.txt"
[ -f "$DATA" ] || { DATA="$T/data.txt"; head -c 2000000 /dev/urandom | base64 >"$DATA"; }
CORES=$(nproc)
MODEL=(--model gpt2-124m --num-layers 4 --num-heads 4 --hidden-size 256 --max-seq-len 256)
JOB=(train "${MODEL[@]}" --data "$DATA" --batch-size 16 --micro-batch-size 8 --seq-len 64 --steps "$STEPS"
     --eval-interval 0 --quiet --peak-tflops 1)
median_ms() { $PY -c 'import json,sys,statistics; l=[json.loads(x)["step_ms"] for x in open(sys.argv[1])][1:]; print("%.1f" % statistics.median(l))' "$1"; }
"$BIN" "${JOB[@]}" --threads "$CORES" --metrics "$T/dp1.jsonl" >/dev/null 2>&1
d1=$(median_ms "$T/dp1.jsonl")
OMP_NUM_THREADS=$((CORES / 2 > 0 ? CORES / 2 : 1)) bash "$HERE/../tests/mpirun.sh" 2 "$BIN" "${JOB[@]}" \
    --threads $((CORES / 2 > 0 ? CORES / 2 : 1)) --metrics "$T/dp2.jsonl" >/dev/null 2>&1
d2=$(median_ms "$T/dp2.jsonl")
$PY -c "
d1, d2 = $d1, $d2
tok = 16 * 64
print('| setting | ms/step | tokens/s |')
print('|---|---|---|')
print('| dp=1, %d threads | %.1f | %.0f |' % ($CORES, d1, tok / d1 * 1e3))
print('| dp=2 (MPI), %d thread(s) each | %.1f | %.0f |' % (max($CORES // 2, 1), d2, tok / d2 * 1e3))
print('| ratio dp=2 / dp=1 | | %.2f |' % (d1 / d2))"
