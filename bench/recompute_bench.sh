#!/usr/bin/env bash
# Activation recomputation: tokens/s and peak RSS of `lmscale bench train`
# for --recompute none / selective / full, in one run, on GPT-2 124M and a
# deep narrow model (48 layers, C 256), B=4, T=256 (docs/recompute.md).
#
#   bash bench/recompute_bench.sh [build/lmscale] [steps]
#
# Output: a markdown table (model, mode, ms/step, tok/s, peak RSS, the
# activation buffer lmscale allocates, and what `estimate` predicts).
set -euo pipefail
BIN=${1:-build/lmscale}
STEPS=${2:-3}
PY=/usr/bin/python3
echo "| model | recompute | ms/step | tok/s | peak RSS MiB | activations MiB (allocated) |"
echo "|---|---|---|---|---|---|"
for model in 124m deep; do
    if [ "$model" = deep ]; then flags=(--model gpt2-124m --num-layers 48 --num-heads 4 --hidden-size 256);
    else flags=(--model gpt2-124m); fi
    for rc in none selective full; do
        out=$("$BIN" bench train "${flags[@]}" --batch-size 4 --seq-len 256 --steps "$STEPS" --warmup 1 \
              --recompute "$rc" --json 2>&1)
        acts=$(echo "$out" | sed -n 's/^activations: \([0-9.]*\) MB.*/\1/p')
        echo "$out" | grep '^{' | $PY -c "
import json, sys
j = json.loads(sys.stdin.read())
print('| %s | %s | %.0f | %.0f | %.0f | %s |' % ('$model' if '$model' == '124m' else 'L=48 C=256', '$rc',
      j['step_ms'], j['tokens_per_s'], j['peak_rss_mb'], '$acts'))"
    done
done
