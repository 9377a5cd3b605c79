#!/usr/bin/env bash
# Tensor parallelism on one machine: tokens/s of the same training job (same
# model, same global batch) at tp 1 (one process, 2 threads) and tp 2 (two
# MPI ranks of 1 thread each, --tp 2), run alternately (tp1 tp2 tp1 tp2 ...)
# PAIRS times; each run's figure is the median over its steps 2..STEPS (from
# --metrics: step_ms, and at tp 2 rank 0's tp_comm_ms, the time inside the
# tp collectives of forward and backward, waiting for the other rank
# included, and tp_coll_bytes). The summary is the median over pairs.
#
#   bash bench/tp_bench.sh [BIN] [PAIRS] [STEPS] [-- extra train flags]
#
# Default workload: GPT-2 124M (12 layers, 12 heads, C 768, the GPT-2
# vocabulary), batch 8 x 64 tokens, generated text (no download).
set -euo pipefail
BIN=${1:-build/lmscale}
PAIRS=${2:-3}
STEPS=${3:-6}
shift $(($# < 3 ? $# : 3))
[ "${1:-}" = -- ] && shift
EXTRA=("$@")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
$PY -c "import random; random.seed(3); print(' '.join(random.choice(['the','of','king','lord','and','to','my','thee','sir','good']) for _ in range(200000)))" >"$TMP/data.txt"
FLAGS=(train --model gpt2-124m --data "$TMP/data.txt" --batch-size 8 --seq-len 64 --steps "$STEPS" --eval-interval 0
       --quiet --peak-tflops 1 "${EXTRA[@]}")

# one "LAUNCHER..." FLAGS... -> "step_ms tp_comm_ms tp_bytes": medians of steps 2..STEPS of rank 0's metrics
one() {
    local -a launch
    read -ra launch <<<"$1"
    shift
    rm -f "$TMP/m.jsonl"
    "${launch[@]}" "${FLAGS[@]}" "$@" --metrics "$TMP/m.jsonl" >/dev/null 2>"$TMP/err" || { cat "$TMP/err" >&2; exit 1; }
    $PY -c 'import json,sys,statistics as st
r = [json.loads(l) for l in open(sys.argv[1])]
r = [x for x in r if x["step"] >= 2]
print("%.1f %.1f %d" % (st.median(x["step_ms"] for x in r), st.median(x["tp_comm_ms"] for x in r),
                        st.median(x["tp_coll_bytes"] for x in r)))' "$TMP/m.jsonl"
}

TOK=$((8 * 64))
echo "| pair | tp=1, 2 threads: ms/step | tokens/s | tp=2, 2 ranks x 1 thread: ms/step | tokens/s | tp comm ms (share) | tp=2 / tp=1 |"
echo "|---|---|---|---|---|---|---|"
rows=()
for p in $(seq 1 "$PAIRS"); do
    read -r a _ _ < <(one "$BIN" --threads 2)
    read -r b c bytes < <(OMP_NUM_THREADS=1 one "bash $HERE/../tests/mpirun.sh 2 $BIN" --threads 1 --tp 2)
    rows+=("$a $b $c")
    $PY -c "a, b, c, tok = $a, $b, $c, $TOK
print('| $p | %.1f | %.0f | %.1f | %.0f | %.1f (%.1f %%) | %.3f |' % (a, tok / a * 1e3, b, tok / b * 1e3, c, 100 * c / b, a / b))"
done
$PY -c 'import sys, statistics as st
rows = [tuple(map(float, r.split())) for r in sys.argv[2:]]
tok, bytes_ = int(sys.argv[1].split()[0]), int(sys.argv[1].split()[1])
a = st.median(r[0] for r in rows); b = st.median(r[1] for r in rows)
share = st.median(r[2] / r[1] for r in rows); ratio = st.median(r[0] / r[1] for r in rows)
print("medians over %d pairs: tp=1 %.0f tokens/s, tp=2 %.0f tokens/s (tp=2 / tp=1 %.3f, range %.3f-%.3f); "
      "tp communication %.1f %% of the tp=2 step, %.1f MB per rank per step"
      % (len(rows), tok / a * 1e3, tok / b * 1e3, ratio, min(r[0] / r[1] for r in rows),
         max(r[0] / r[1] for r in rows), 100 * share, bytes_ / 1048576))' "$TOK $bytes" "${rows[@]}"
