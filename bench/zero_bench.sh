#!/usr/bin/env bash
# ZeRO stages side by side: the same data-parallel job at --zero 0, 1, 2, 3
# (same global batch), with each rank's bytes for parameters, gradients and
# optimizer state (working buffers included), its peak RSS, and the step
# time. Default: GPT-2 124M, dp 2, batch 8 x 64 tokens.
#   bash bench/zero_bench.sh [build/lmscale] [dp] [steps] [model flags...]
set -euo pipefail
BIN=${1:-build/lmscale}
DP=${2:-2}
STEPS=${3:-4}
shift $(($# < 3 ? $# : 3))
MODEL=("$@")
[ ${#MODEL[@]} -gt 0 ] || MODEL=(--model gpt2-124m --vocab-size 257)
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
DATA="$T/data.txt"
head -c 1000000 /dev/urandom | base64 >"$DATA"
THREADS=$(($(nproc) / DP > 0 ? $(nproc) / DP : 1))
for z in 0 1 2 3; do
    OMP_NUM_THREADS=$THREADS bash "$HERE/../tests/mpirun.sh" "$DP" "$BIN" train "${MODEL[@]}" --data "$DATA" \
        --batch-size $((4 * DP)) --seq-len 64 --steps "$STEPS" --eval-interval 0 --quiet --peak-tflops 1 \
        --threads "$THREADS" --zero "$z" --metrics "$T/z$z.jsonl" >"$T/z$z.out" 2>&1 || { cat "$T/z$z.out"; exit 1; }
done
$PY - "$T" "$DP" <<'PYEOF'
import json, statistics, sys
d, dp = sys.argv[1], int(sys.argv[2])
print("| --zero | params MB | grads MB | optimizer MB | state MB (vs stage 0) | peak RSS MB | ms/step | tokens/s |")
print("|---|---|---|---|---|---|---|---|")
base = None
for z in range(4):
    rows = [json.loads(l) for l in open("%s/z%d.jsonl" % (d, z))]
    r = rows[-1]
    s = r["param_mb"] + r["grad_mb"] + r["optim_mb"]
    base = base or s
    ms = statistics.median([x["step_ms"] for x in rows[1:]] or [r["step_ms"]])
    print("| %d | %.1f | %.1f | %.1f | %.1f (%.0f%%) | %d | %.0f | %.0f |" % (z, r["param_mb"], r["grad_mb"], r["optim_mb"],
          s, 100 * s / base, r["peak_rss_mb"], ms, 4 * dp * 64 / ms * 1e3))
PYEOF
