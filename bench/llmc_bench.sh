#!/usr/bin/env bash
# GPT-2 124M at llm.c's CPU setting (B=4, T=64, fp32, all cores): llm.c's
# train_gpt2.c (built as its README says: `make train_gpt2`), lmscale
# (`bench train`) and PyTorch 1.13 (bench/pytorch_train.py), in one run.
# llm.c gets a 124M checkpoint with random weights and tinyshakespeare as
# GPT-2 ids in its shard format (bench/llmc_inputs.py); lmscale and PyTorch
# train on synthetic ids (speed does not depend on the ids). llm.c's step
# time is the median of its "took X ms" lines after step 0, within LIMIT
# seconds (it also runs 5 validation batches before step 0).
#
#   bash bench/llmc_bench.sh LLMC_DIR [build/lmscale] [part] [limit_s]
#
# part: llmc, peers or all (default); the machines are shared, so run each
# part in its own `flock /tmp/lms-heavy.lock` (each takes about LIMIT s).
# GPT-2's vocab.json/merges.txt and tinyshakespeare.txt come from
# $LMS_GPT2_DIR (default shared/data).
set -euo pipefail
LLMC=$(cd "${1:?usage: llmc_bench.sh LLMC_DIR [lmscale] [part] [limit_s]}" && pwd)
BIN=$(realpath "${2:-build/lmscale}")
PART=${3:-all}
LIMIT=${4:-170}
DATA=${LMS_GPT2_DIR:-shared/data}
PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")" && pwd)
OMPBLAS=$(ls -d /usr/lib/*/openblas-openmp 2>/dev/null | head -1 || true)
TH=$(nproc)
if [ "$PART" != peers ]; then
    W=${LLMC_WORK:-$(mktemp -d)}
    if [ ! -f "$W/gpt2_124M.bin" ]; then
        "$BIN" tokenizer encode --vocab "$DATA/gpt2-vocab.json" --merges "$DATA/gpt2-merges.txt" \
            --input "$DATA/tinyshakespeare.txt" | $PY "$HERE/llmc_inputs.py" "$W"
    fi
    # line-buffered: the lines must reach the log before the time limit stops it
    (cd "$W" && OMP_NUM_THREADS=$TH timeout "$LIMIT" stdbuf -oL "$LLMC/train_gpt2" >llmc.log 2>&1 || true)
    $PY - "$W/llmc.log" <<'PYEOF'
import re, statistics, sys
t = [float(m.group(2)) for m in re.finditer(r"step (\d+): train loss \S+ \(took ([0-9.]+) ms\)", open(sys.argv[1]).read())
     if int(m.group(1)) >= 1]
print("llm.c train_gpt2: %d timed steps, median %.0f ms/step (%s)" % (len(t), statistics.median(t) if t else float("nan"),
      ", ".join("%.0f" % x for x in t)))
PYEOF
    [ -n "${LLMC_WORK:-}" ] || rm -rf "$W"
fi
if [ "$PART" != llmc ]; then
    C=$(mktemp -d) # a fresh peak cache: the peak is measured in this run
    XDG_CACHE_HOME=$C "$BIN" bench train --model gpt2-124m --batch-size 4 --seq-len 64 --steps 5 --warmup 1 --threads "$TH" --json \
        2>/dev/null | tail -1 | $PY -c 'import json, sys
d = json.loads(sys.stdin.read())
print("lmscale: %.0f ms/step, MFU %.1f %% of the %.0f GFLOP/s sgemm peak measured after each timed step (median)" % (
      d["step_ms"], 100 * d["mfu"], d["peak_tflops"] * 1e3))'
    rm -rf "$C"
    env ${OMPBLAS:+LD_LIBRARY_PATH=$OMPBLAS} $PY "$HERE/pytorch_train.py" --model gpt2-124m --batch 4 --seq 64 --steps 4 \
        --warmup 1 --threads "$TH" 2>/dev/null | tail -1 | sed 's/^/PyTorch: /'
fi
