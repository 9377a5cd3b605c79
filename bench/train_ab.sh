#!/usr/bin/env bash
# A/B training speed of two lmscale binaries on a shared, noisy machine:
# the two run alternately (A B A B ...), PAIRS times, on the same workload;
# each run's figure is the median step time of its steps 2..STEPS (from
# --metrics), and the verdict is the median over pairs of B/A, with the
# range. Alternating cancels slow drifts of the machine's load; the median
# of per-pair ratios discards pairs disturbed by a burst.
#
#   bash bench/train_ab.sh BIN_A BIN_B [PAIRS] [STEPS] [-- extra train flags]
#
# Default workload: GPT-2 124M, batch 4 x 64 tokens, 2 threads, generated
# text (no download). Output: one markdown table row per pair, then the
# summary line.
set -euo pipefail
A=$1 B=$2
PAIRS=${3:-5}
STEPS=${4:-8}
shift $(($# < 4 ? $# : 4))
[ "${1:-}" = -- ] && shift
EXTRA=("$@")
PY=/usr/bin/python3
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
$PY -c "import random; random.seed(3); print(' '.join(random.choice(['the','of','king','lord','and','to','my','thee','sir','good']) for _ in range(400000)))" >"$TMP/data.txt"
FLAGS=(train --model gpt2-124m --data "$TMP/data.txt" --batch-size 4 --seq-len 64 --steps "$STEPS" --eval-interval 0
       --quiet --threads 2 "${EXTRA[@]}")

one() { # BIN -> median step_ms of steps 2..STEPS
    rm -f "$TMP/m.jsonl"
    "$1" "${FLAGS[@]}" --metrics "$TMP/m.jsonl" >/dev/null 2>"$TMP/err" || { cat "$TMP/err" >&2; exit 1; }
    $PY -c 'import json,sys,statistics
r = [json.loads(l) for l in open(sys.argv[1]) if "step_ms" in l]
print("%.1f" % statistics.median(x["step_ms"] for x in r if x["step"] >= 2))' "$TMP/m.jsonl"
}

echo "| pair | A ms/step | B ms/step | B/A |"
echo "|---|---|---|---|"
ratios=()
for p in $(seq 1 "$PAIRS"); do
    a=$(one "$A")
    b=$(one "$B")
    r=$($PY -c "print('%.3f' % ($b / $a))")
    ratios+=("$r")
    echo "| $p | $a | $b | $r |"
done
$PY -c 'import sys,statistics; r=[float(x) for x in sys.argv[1:]]
print("B/A: median %.3f over %d pairs (range %.3f-%.3f)" % (statistics.median(r), len(r), min(r), max(r)))' "${ratios[@]}"
