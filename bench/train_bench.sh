#!/usr/bin/env bash
# Training throughput of lmscale next to PyTorch (Debian's python3-torch, CPU),
# measured in the same run, on the same machine, in the same environment.
#
#   bash bench/train_bench.sh [build/lmscale] [steps]
#
# For each model (GPT-2 124M and a small 4-layer/256-wide GPT with the GPT-2
# vocabulary), batch 4 x 64 tokens, it runs lmscale and then the PyTorch peer
# (bench/pytorch_train.py: the same architecture, AdamW, clipping) and reports
# the step time after one warm-up step (lmscale: the mean of `lmscale bench
# train`; PyTorch: its script's median), tokens/s and the ratio.
# It does so under two BLAS settings, because the kernel OpenBLAS uses decides
# both programs' speed: the environment as it is (some images force
# OPENBLAS_CORETYPE=Haswell, AVX2) and with OPENBLAS_CORETYPE unset (OpenBLAS
# picks its kernels from the CPU). The peer runs against the system BLAS and
# against the OpenMP build of OpenBLAS that lmscale links; the better of the
# two is the one compared. Output: a markdown table for docs/benchmarks.md.
set -euo pipefail
BIN=${1:-build/lmscale}
STEPS=${2:-6}
PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")" && pwd)
OMPBLAS=$(ls -d /usr/lib/*/openblas-openmp 2>/dev/null | head -1 || true)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

DATA="$HERE/../../shared/data/tinyshakespeare.txt"
if [ ! -f "$DATA" ]; then DATA="$TMP/data.txt"; head -c 2000000 /dev/urandom | base64 > "$DATA"; fi

median() { $PY -c 'import sys,statistics; print("%.2f" % statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

# lmscale: mean step_ms after one warm-up step, from `lmscale bench train --json`
run_lms() { # envcmd model-flags...
    local envcmd=$1; shift
    $envcmd "$BIN" bench train "$@" --batch-size 4 --seq-len 64 --steps "$STEPS" --warmup 1 --json \
        2>"$TMP/lms.log" | $PY -c 'import json,sys; print("%.2f" % json.loads(sys.stdin.read().splitlines()[-1])["step_ms"])'
}
run_torch() { # envcmd ldpath model-flags...
    local envcmd=$1 ld=$2; shift 2
    env ${ld:+LD_LIBRARY_PATH=$ld} $envcmd $PY "$HERE/pytorch_train.py" "$@" --batch 4 --seq 64 \
        --steps $((STEPS - 1)) --warmup 1 --threads "$(nproc)" 2>/dev/null | tail -1 | sed 's/.*step_ms=//'
}

echo "| BLAS kernels | model | lmscale ms/step | lmscale tok/s | PyTorch ms/step (system BLAS / OpenMP OpenBLAS) | PyTorch tok/s (best) | speed-up |"
echo "|---|---|---|---|---|---|---|"
for setting in asis unset; do
    if [ "$setting" = asis ]; then envcmd="env"; label="as set: OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}";
    else envcmd="env -u OPENBLAS_CORETYPE"; label="chosen by OpenBLAS"; fi
    for model in gpt2-124m small; do
        if [ "$model" = small ]; then
            lflags=(--model gpt2-124m --num-layers 4 --num-heads 4 --hidden-size 256 --max-seq-len 256)
        else lflags=(--model gpt2-124m); fi
        core=$($envcmd "$BIN" train "${lflags[@]}" --data "$DATA" --steps 1 --batch-size 1 --seq-len 8 \
            --eval-interval 0 --quiet --peak-tflops 1 2>&1 | grep -o '(BLAS [A-Za-z0-9]*)' | head -1 | tr -d '()')
        l=$(run_lms "$envcmd" "${lflags[@]}")
        t1=$(run_torch "$envcmd" "" --model "$model")
        t2=$([ -n "$OMPBLAS" ] && run_torch "$envcmd" "$OMPBLAS" --model "$model" || echo "$t1")
        best=$($PY -c "print(min($t1, $t2))")
        $PY -c "
l, b = $l, $best
print('| %s (%s) | %s | %.0f | %.1f | %s / %s | %.1f | %.2fx |' % ('$label', '$core', '$model', l, 256e3 / l, '$t1', '$t2', 256e3 / b, b / l))"
    done
done
