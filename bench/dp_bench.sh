#!/usr/bin/env bash
# Data-parallel scaling on one machine: tokens/s of the same training job
# (same global batch) at dp = 1 (one process, all cores) and dp = 2 (two
# processes, cores split between them), and the ratio, with each run's time
# in forward, backward, the gradient all-reduce backward did not hide, and
# the optimizer.
#   bash bench/dp_bench.sh [build/lmscale] [steps] [model] [batch] [seq] [micro]
# model: small (4 layers, C=256, GPT-2 vocabulary; default, batch 16 micro 8
# seq 64) or 124m (GPT-2 124M; default batch 4, seq 64, micro = batch / dp).
# The machines are shared: wrap it in `flock /tmp/lms-heavy.lock`.
set -euo pipefail
BIN=${1:-build/lmscale}
STEPS=${2:-8}
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
CORES=$(nproc)
case ${3:-small} in
small) MODEL=(--model gpt2-124m --num-layers 4 --num-heads 4 --hidden-size 256 --max-seq-len 256)
       GB=${4:-16}; SEQ=${5:-64}; MICRO=(--micro-batch-size "${6:-8}") ;;
124m) MODEL=(--model gpt2-124m); GB=${4:-4}; SEQ=${5:-64}; MICRO=(${6:+--micro-batch-size "$6"}) ;;
*) echo "unknown model $3 (small, 124m)" >&2; exit 2 ;;
esac
JOB=(bench train "${MODEL[@]}" --batch-size "$GB" "${MICRO[@]}" --seq-len "$SEQ" --steps "$STEPS" --warmup 1
     --peak-tflops 1 --json)
# mean ms/step after the warm-up and its phases, from `lmscale bench train --json` (rank 0's line)
step_ms() { $PY -c 'import json,sys; d = json.loads(sys.stdin.read().splitlines()[-1]); p = d["phases_ms"]
print("%.1f %.0f %.0f %.0f %.0f" % (d["step_ms"], p["forward"], p["backward"], p["grad_comm"], p["optim"]))'; }
d1=$("$BIN" "${JOB[@]}" --threads "$CORES" 2>/dev/null | step_ms)
d2=$(OMP_NUM_THREADS=$((CORES / 2 > 0 ? CORES / 2 : 1)) bash "$HERE/../tests/mpirun.sh" 2 "$BIN" "${JOB[@]}" \
    --threads $((CORES / 2 > 0 ? CORES / 2 : 1)) 2>/dev/null | step_ms)
$PY - "$GB" "$SEQ" "$CORES" $d1 $d2 <<'PYEOF'
import sys
gb, seq, cores = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
a = [float(x) for x in sys.argv[4:9]]
b = [float(x) for x in sys.argv[9:14]]
tok = gb * seq
print("| setting | ms/step | tokens/s | forward / backward / grad comm / optim ms |")
print("|---|---|---|---|")
print("| dp=1, %d threads | %.1f | %.0f | %.0f / %.0f / %.0f / %.0f |" % ((cores, a[0], tok / a[0] * 1e3) + tuple(a[1:])))
print("| dp=2 (MPI), %d thread(s) each | %.1f | %.0f | %.0f / %.0f / %.0f / %.0f |" % (
    (max(cores // 2, 1), b[0], tok / b[0] * 1e3) + tuple(b[1:])))
print("| ratio dp=2 / dp=1 | | %.2f | |" % (a[0] / b[0]))
PYEOF
