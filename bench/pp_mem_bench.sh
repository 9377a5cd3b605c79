#!/usr/bin/env bash
# Pipeline parallelism and memory: each rank's parameter, gradient and AdamW
# bytes (the metrics' param_mb, grad_mb, optim_mb) and its peak RSS
# (peak_rss_mb) for GPT-2 124M (12 layers, C 768, vocabulary 50257) on byte
# data, T 64, batch 4 in micro-batches of 1, one step, at pp 1, 2 and 4 (4
# processes on 2 cores: memory only), next to `lmscale estimate --impl lmscale`'s
# prediction for the largest stage (docs/benchmarks.md, docs/parallelism.md).
#
#   bash bench/pp_mem_bench.sh [build/lmscale] [pp...]
#
# pp defaults to "1 2 4"; each run takes under 2 minutes here, so that the
# pieces can take flock /tmp/lms-heavy.lock one at a time.
set -euo pipefail
BIN=${1:-build/lmscale}
shift || true
PPS=${*:-1 2 4}
PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")" && pwd)
MPI=$HERE/../tests/mpirun.sh
T=$(mktemp -d /tmp/lms_pp_mem.XXXXXX)
trap 'rm -rf "$T"' EXIT
$PY -c 'import random; r=random.Random(1); print("".join(r.choice("abcdefghij klmno\n") for _ in range(100000)))' >"$T/data.txt"
MODEL=(--model gpt2 --seq-len 64 --batch-size 4 --micro-batch-size 1)
COMMON=(train --data "$T/data.txt" "${MODEL[@]}" --steps 1 --lr 1e-4 --eval-interval 0 --quiet --threads 1
        --peak-tflops 1 --log-all-ranks)
echo "| pp | rank (stage) | param_mb | grad_mb | optim_mb | peak RSS MB | estimate, largest stage: state / peak MB |"
echo "|---|---|---|---|---|---|---|"
for pp in $PPS; do
    rm -f "$T"/m.jsonl*
    if [ "$pp" -gt 1 ]; then
        OMP_NUM_THREADS=1 bash "$MPI" "$pp" "$BIN" "${COMMON[@]}" --pp "$pp" --metrics "$T/m.jsonl" >"$T/o.txt" 2>&1
        "$BIN" estimate "${MODEL[@]}" --pp "$pp" --world "$pp" --impl lmscale --json >"$T/e.json"
    else
        "$BIN" "${COMMON[@]}" --metrics "$T/m.jsonl" >"$T/o.txt" 2>&1
        "$BIN" estimate "${MODEL[@]}" --impl lmscale --json >"$T/e.json"
    fi
    $PY - "$pp" "$T/e.json" "$T"/m.jsonl* <<'PY'
import json, sys
pp, est, files = int(sys.argv[1]), json.load(open(sys.argv[2]))["lmscale_metrics"], sys.argv[3:]
def rank(f): return int(f.rsplit("rank", 1)[1]) if ".rank" in f else 0
for f in sorted(files, key=rank):
    m = json.loads(open(f).read().strip().splitlines()[-1])
    print("| %d | %d | %.1f | %.1f | %.1f | %d | %.1f / %.0f |" % (pp, rank(f), m["param_mb"], m["grad_mb"], m["optim_mb"],
          m["peak_rss_mb"], est["param_mb"] + est["grad_mb"] + est["optim_mb"], est["peak_rss_mb"]))
PY
done
