#!/usr/bin/env bash
# End-to-end MFU of lmscale next to PyTorch at longer sequences, measured in
# the same run: GPT-2 124M at B=4 T=256 and B=1 T=1024, and the small model
# (4 layers, C=256, GPT-2 vocabulary) at B=4 T=256, fp32, all cores.
#
#   bash bench/mfu_bench.sh [build/lmscale] [steps] [configs]
#
# configs: a comma list of 124m-256, 124m-1024, small-256 (default: all).
# lmscale's MFU is against the sgemm peak `bench train` measures after each
# timed step of this run (the median; the smallest and largest are printed
# beside it: the speed of a shared machine drifts); the PyTorch peer
# (bench/pytorch_train.py, the OpenMP OpenBLAS lmscale links) is timed right
# after each lmscale run and its MFU taken against the same peak.
# The table has lmscale's time per phase, so where the step goes is visible.
# The machines are shared: wrap it in `flock /tmp/lms-heavy.lock`.
set -euo pipefail
BIN=${1:-build/lmscale}
STEPS=${2:-3}
CONFIGS=${3:-124m-256,124m-1024,small-256}
PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")" && pwd)
OMPBLAS=$(ls -d /usr/lib/*/openblas-openmp 2>/dev/null | head -1 || true)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
TH=$(nproc)
echo "| model | B×T | lmscale ms/step | peak GFLOP/s (median, min–max) | lmscale MFU | forward / backward / optim ms | PyTorch ms/step | PyTorch MFU | speed-up |"
echo "|---|---|---|---|---|---|---|---|---|"
for c in ${CONFIGS//,/ }; do
    case $c in
    124m-256) lf=(--model gpt2-124m); tf=(--model gpt2-124m); B=4; T=256 ;;
    124m-1024) lf=(--model gpt2-124m); tf=(--model gpt2-124m); B=1; T=1024 ;;
    small-256) lf=(--model gpt2-124m --num-layers 4 --num-heads 4 --hidden-size 256 --max-seq-len 256)
               tf=(--model small); B=4; T=256 ;;
    *) echo "unknown config $c (124m-256, 124m-1024, small-256)" >&2; exit 2 ;;
    esac
    rm -rf "$TMP/cache"
    XDG_CACHE_HOME="$TMP/cache" "$BIN" bench train "${lf[@]}" --batch-size $B --seq-len $T --steps "$STEPS" \
        --warmup 1 --threads "$TH" --json 2>"$TMP/lms.log" | tail -1 >"$TMP/l.json"
    t=$(env ${OMPBLAS:+LD_LIBRARY_PATH=$OMPBLAS} $PY "$HERE/pytorch_train.py" "${tf[@]}" --batch $B --seq $T \
        --steps $((STEPS - 1)) --warmup 1 --threads "$TH" 2>/dev/null | tail -1 | sed 's/.*step_ms=//')
    $PY - "$TMP/l.json" "$t" "$c" $B $T <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1])); t = float(sys.argv[2]); c, B, T = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
ph = d["phases_ms"]; fpt = d["flops_per_token"]; peak = d["peak_tflops"] * 1e12
tmfu = B * T * fpt / (t / 1e3) / peak
print("| %s | %d×%d | %.0f | %.0f (%.0f–%.0f) | %.1f %% | %.0f / %.0f / %.0f | %.0f | %.1f %% | %.2f× |" % (
    c.split("-")[0], B, T, d["step_ms"], peak / 1e9, d["peak_probe_min"] * 1e3, d["peak_probe_max"] * 1e3, 100 * d["mfu"], ph["forward"], ph["backward"], ph["optim"],
    t, 100 * tmfu, t / d["step_ms"]))
PYEOF
done
