#!/usr/bin/env bash
# Causal attention alone, forward + backward, at GPT-2 124M's shape (C=768,
# 12 heads) for B=4 T=256 and B=1 T=1024, as a share of the sgemm peak
# measured in the same rounds (`lmscale bench attention`, model FLOPs
# 12·B·T²·C per layer). Give two binaries for an A/B in one run (before,
# after), alternated ROUNDS times.
#
#   bash bench/attention_bench.sh [build/lmscale [other/lmscale]] [rounds] [threads]
#
# The machines are shared: wrap it in `flock /tmp/lms-heavy.lock`.
set -euo pipefail
A=${1:-build/lmscale}
B=${2:-}
ROUNDS=${3:-2}
TH=${4:-$(nproc)}
PY=/usr/bin/python3
echo "| binary | B×T | threads | sgemm peak GFLOP/s | forward ms | backward ms | fwd+bwd ms | % of peak |"
echo "|---|---|---|---|---|---|---|---|"
for r in $(seq 1 "$ROUNDS"); do
    for bin in "$A" ${B:+"$B"}; do
        for bt in 4x256 1x1024; do
            "$bin" bench attention --batch-size "${bt%x*}" --seq-len "${bt#*x}" --hidden-size 768 --num-heads 12 \
                --threads "$TH" --iters 5 --json | tail -1 |
                $PY -c 'import json, sys
b = json.loads(sys.stdin.read()); n = sys.argv[1]
print("| %s | %d×%d | %d | %.0f | %.2f | %.2f | %.2f | %.1f %% |" % (n, b["B"], b["T"], b["threads"], b["peak_gflops"],
      b["fwd_ms"], b["bwd_ms"], b["fwd_ms"] + b["bwd_ms"], 100 * b["peak_share"]))' "$bin"
        done
    done
done
