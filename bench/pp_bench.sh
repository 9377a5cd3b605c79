#!/usr/bin/env bash
# Pipeline parallelism on one machine: tokens/s and the measured bubble of a
# 12-layer model (C 128, 4 heads, byte vocabulary, T 64, batch 16) at pp 1
# (one process of 1 and of 2 threads), pp 2 (2 processes of 1 thread) with GPipe and
# 1F1B at m = 4 and 8 micro-batches, and pp 4 (4 processes on 2 cores,
# oversubscribed: the bubble only), next to the predicted bubble (p - 1)/m
# (docs/benchmarks.md, docs/parallelism.md).
#
#   bash bench/pp_bench.sh [build/lmscale] [steps] [part]
#
# part: all (default: pp1, pp2 and pp4), pp1, pp2, pp4, or ab (pp 1 and pp 2
# alternated twice, for the tokens/s ratio within one run); each part runs
# under 3 minutes here, so that the pieces can take flock /tmp/lms-heavy.lock
# one at a time.
# The measured bubble of a step is the mean over the stages of idle / compute
# (the metrics' pp_bubble); the table gives its median over the steps after
# the first, and the median step time's tokens/s.
set -euo pipefail
BIN=${1:-build/lmscale}
STEPS=${2:-10}
PART=${3:-all}
PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")" && pwd)
MPI=$HERE/../tests/mpirun.sh
T=$(mktemp -d /tmp/lms_pp_bench.XXXXXX)
trap 'rm -rf "$T"' EXIT
$PY -c 'import random; r=random.Random(1); print("".join(r.choice("abcdefghij klmno\n") for _ in range(400000)))' >"$T/data.txt"
MODEL=(--num-layers 12 --num-heads 4 --hidden-size 128 --max-seq-len 64 --seq-len 64 --batch-size 16)
COMMON=(train --data "$T/data.txt" "${MODEL[@]}" --steps "$STEPS" --lr 1e-3 --eval-interval 0 --quiet
        --peak-tflops 1 --data-order sequential)

row() { # label np threads micro schedule timing(1/0) [flags...]
    local label=$1 np=$2 th=$3 micro=$4 sched=$5 timing=$6
    shift 6
    local flags=(--micro-batch-size "$micro" --threads "$th")
    [ "$np" -gt 1 ] && flags+=(--pp "$np" --pp-schedule "$sched")
    rm -f "$T/m.jsonl"
    if [ "$np" -gt 1 ]; then
        OMP_NUM_THREADS=$th bash "$MPI" "$np" "$BIN" "${COMMON[@]}" "${flags[@]}" "$@" --metrics "$T/m.jsonl" >"$T/o.txt" 2>&1
    else
        OMP_NUM_THREADS=$th "$BIN" "${COMMON[@]}" "${flags[@]}" "$@" --metrics "$T/m.jsonl" >"$T/o.txt" 2>&1
    fi || { echo "run failed: $label"; tail -3 "$T/o.txt"; exit 1; }
    $PY - "$T/m.jsonl" "$label" "$np" "$micro" "$timing" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])][1:]
label, p, micro, timing = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
m = 16 // micro
ms = statistics.median(r["step_ms"] for r in rows)
tps = 16 * 64 / (ms / 1e3)
if p > 1:
    bub = statistics.median(statistics.mean(r["pp_bubble"]) for r in rows)
    idle = statistics.median(statistics.mean(r["pp_idle"]) for r in rows)
    pred = (p - 1) / m
    b = "%.3f | %.3f | %.3f" % (bub, idle, pred)
else:
    b = "— | — | 0"
print("| %s | %d | %d | %s | %s |" % (label, p, m, "%.0f | %.0f" % (ms, tps) if timing else "(oversubscribed) | —", b))
EOF
}

echo "| run | pp | m | ms/step | tok/s | bubble (idle/compute) | idle/step | predicted (p−1)/m |"
echo "|---|---|---|---|---|---|---|---|"
if [ "$PART" = all ] || [ "$PART" = pp1 ]; then
    row "pp 1 (1 process × 1 thread)" 1 1 2 - 1
    row "pp 1 (1 process × 2 threads)" 1 2 2 - 1
fi
if [ "$PART" = all ] || [ "$PART" = pp2 ]; then
    for sched in 1f1b gpipe; do
        row "pp 2 $sched (2 × 1 thread)" 2 1 4 "$sched" 1
        row "pp 2 $sched (2 × 1 thread)" 2 1 2 "$sched" 1
    done
fi
if [ "$PART" = ab ]; then # pp 1 and pp 2 alternated, twice: the tokens/s ratio from one run
    for round in 1 2; do
        row "pp 1 (1 process × 1 thread), round $round" 1 1 2 - 1
        row "pp 1 (1 process × 2 threads), round $round" 1 2 2 - 1
        row "pp 2 1f1b (2 × 1 thread), round $round" 2 1 2 1f1b 1
    done
fi
if [ "$PART" = all ] || [ "$PART" = pp4 ]; then
    row "pp 4 1f1b (4 × 1 thread on 2 cores)" 4 1 2 1f1b 0
    row "pp 4 gpipe (4 × 1 thread on 2 cores)" 4 1 2 gpipe 0
fi
