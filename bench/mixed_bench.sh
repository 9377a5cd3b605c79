#!/usr/bin/env bash
# Mixed precision x activation recomputation: tokens/s and peak RSS of
# `lmscale bench train` for --dtype fp32 / bf16 / fp16 x --recompute none /
# selective / full on GPT-2 124M (B=4, T=256), next to PyTorch (Debian's
# python3-torch, CPU) in fp32 and under bf16 autocast, in the same run
# (docs/benchmarks.md, docs/mixed-precision.md). Each measurement takes the
# heavy lock by itself (a shared machine: /tmp/lms-heavy.lock).
#
#   bash bench/mixed_bench.sh [build/lmscale] [steps]
#   RECOMPUTE="none full" bash bench/mixed_bench.sh ...   # only these recompute modes
set -euo pipefail
BIN=${1:-build/lmscale}
STEPS=${2:-3}
PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")" && pwd)
LOCK="flock /tmp/lms-heavy.lock"
command -v flock >/dev/null || LOCK=
echo "| program | dtype | recompute | ms/step | tok/s | peak RSS MiB |"
echo "|---|---|---|---|---|---|"
for dt in fp32 bf16 fp16; do
    for rc in ${RECOMPUTE:-none selective full}; do
        $LOCK "$BIN" bench train --model gpt2-124m --batch-size 4 --seq-len 256 --steps "$STEPS" --warmup 1 \
            --dtype "$dt" --recompute "$rc" --json 2>/dev/null | grep '^{' | $PY -c "
import json, sys
j = json.loads(sys.stdin.read())
print('| lmscale | %s | %s | %.0f | %.0f | %.0f |' % ('$dt', '$rc', j['step_ms'], j['tokens_per_s'], j['peak_rss_mb']))"
    done
done
for ac in none bf16; do
    $LOCK $PY "$HERE/pytorch_train.py" --model gpt2-124m --batch 4 --seq 256 --steps $((STEPS - 1)) --warmup 1 \
        --threads "$(nproc)" --autocast $ac 2>/dev/null | tail -1 | $PY -c "
import sys
kv = dict(x.split('=') for x in sys.stdin.read().split()[1:])
print('| PyTorch %s | %s | none | %.0f | %.0f | %s |' % ('$($PY -c 'import torch; print(torch.__version__)')',
      'fp32' if '$ac' == 'none' else 'bf16 autocast', float(kv['step_ms']), float(kv['tokens_per_s']), kv['peak_rss_mb']))"
done
