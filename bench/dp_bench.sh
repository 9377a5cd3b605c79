#!/usr/bin/env bash
# Data-parallel scaling on one machine: tokens/s of the same training job
# (same global batch) at dp = 1 (one process, all cores) and dp = 2 (two
# processes, cores split between them), on both of dp's paths: the sum in
# node-shared memory (training's path on one node) and MPI's bucketed
# all-reduce (LMSCALE_DP_SHM=0, training's path across nodes). Each round
# runs the three one after the other; the table has every round (time per
# phase: forward, backward, the gradient sum backward did not hide, the
# optimizer) and the medians, and the ratios of the medians.
#   bash bench/dp_bench.sh [build/lmscale] [steps] [model] [batch] [seq] [micro] [rounds]
# model: small (4 layers, C=256, GPT-2 vocabulary; default, batch 16 micro 8
# seq 64) or 124m (GPT-2 124M; default batch 4, seq 64, micro = batch / dp).
# rounds: default 1. The machines are shared and noisy: take 3 or more, and
# wrap it in `flock /tmp/lms-heavy.lock`.
set -euo pipefail
BIN=${1:-build/lmscale}
STEPS=${2:-8}
ROUNDS=${7:-1}
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
H=$((CORES / 2 > 0 ? CORES / 2 : 1))
rows=()
for r in $(seq 1 "$ROUNDS"); do
    rows+=("1 $("$BIN" "${JOB[@]}" --threads "$CORES" 2>/dev/null | step_ms)")
    rows+=("shm $(OMP_NUM_THREADS=$H bash "$HERE/../tests/mpirun.sh" 2 "$BIN" "${JOB[@]}" --threads $H 2>/dev/null | step_ms)")
    rows+=("mpi $(LMSCALE_DP_SHM=0 OMP_NUM_THREADS=$H bash "$HERE/../tests/mpirun.sh" 2 "$BIN" "${JOB[@]}" --threads $H \
        2>/dev/null | step_ms)")
done
printf '%s\n' "${rows[@]}" >"$T/rows"
$PY - "$GB" "$SEQ" "$CORES" "$T/rows" <<'PYEOF'
import statistics, sys
gb, seq, cores = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
runs = {"1": [], "shm": [], "mpi": []}
for line in open(sys.argv[4]).read().split("\n"):
    if line.strip():
        k, *v = line.split()
        runs[k].append([float(x) for x in v])
tok = gb * seq
name = {"1": "dp=1, %d threads" % cores, "shm": "dp=2 × %d thread(s), shared memory" % max(cores // 2, 1),
        "mpi": "dp=2 × %d thread(s), MPI buckets" % max(cores // 2, 1)}
print("| setting | ms/step, each round | median ms/step | tokens/s | forward / backward / grad sum / optim ms (median) |")
print("|---|---|---|---|---|")
med = {}
for k in ("1", "shm", "mpi"):
    r = runs[k]
    med[k] = statistics.median(x[0] for x in r)
    ph = [statistics.median(x[i] for x in r) for i in range(1, 5)]
    print("| %s | %s | %.1f | %.0f | %.0f / %.0f / %.0f / %.0f |" % ((name[k], ", ".join("%.0f" % x[0] for x in r), med[k],
          tok / med[k] * 1e3) + tuple(ph)))
print("| ratio dp=2 / dp=1 (tokens/s, medians) | shared memory %.2f, MPI %.2f | | | |" % (med["1"] / med["shm"], med["1"] / med["mpi"]))
PYEOF
