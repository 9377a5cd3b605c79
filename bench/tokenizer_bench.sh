#!/usr/bin/env bash
# Tokenizer speed of lmscale next to SentencePiece, in the same run:
#  1. GPT-2 encode throughput (MB/s) on tinyshakespeare repeated REPEAT times
#     (so that the run is long enough to time), end to end through the CLI
#     (loading vocab/merges, reading the file, writing ids);
#  2. time to learn an 8192-token byte-level BPE vocabulary on tinyshakespeare
#     (lmscale tokenizer train) vs spm_train --model_type=bpe --vocab_size=8192;
#  3. encode throughput of both 8192-token models on the same repeated text
#     (the like-for-like encode comparison: same vocabulary size).
# Each number is the median of RUNS runs. Run it under the machine's heavy-job
# lock:   flock /tmp/lms-heavy.lock bash bench/tokenizer_bench.sh [build/lmscale]
# Needs: sentencepiece (spm_train, spm_encode), ../shared/data.
set -euo pipefail
BIN=$(realpath "${1:-build/lmscale}")
REPEAT=${REPEAT:-20}
RUNS=${RUNS:-3}
THREADS=${THREADS:-$(nproc)}
HERE=$(cd "$(dirname "$0")" && pwd)
D=$HERE/../../shared/data
PY=/usr/bin/python3
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
command -v spm_train >/dev/null || { echo "spm_train not found: apt-get install -y sentencepiece"; exit 2; }

TS=$D/tinyshakespeare.txt
for _ in $(seq "$REPEAT"); do cat "$TS"; done >"$TMP/big.txt"
MB=$($PY -c "import os; print('%.1f' % (os.path.getsize('$TMP/big.txt') / 1e6))")
G=(--vocab "$D/gpt2-vocab.json" --merges "$D/gpt2-merges.txt")

secs() { # median wall seconds of RUNS runs of a command (output discarded)
    local ts=()
    for _ in $(seq "$RUNS"); do
        local t0 t1
        t0=$(date +%s%N)
        "$@" >/dev/null 2>&1
        t1=$(date +%s%N)
        ts+=("$(((t1 - t0) / 1000))")
    done
    $PY -c 'import sys,statistics; print("%.3f" % (statistics.median(int(x) for x in sys.argv[1:]) / 1e6))' "${ts[@]}"
}

enc_gpt2=$(secs "$BIN" tokenizer encode "${G[@]}" --input "$TMP/big.txt")
train_lms=$(secs "$BIN" tokenizer train --input "$TS" --vocab-size 8192 --output "$TMP/lms8k" --quiet)
"$BIN" tokenizer train --input "$TS" --vocab-size 8192 --output "$TMP/lms8k" --quiet >/dev/null
train_spm=$(secs spm_train --input="$TS" --model_prefix="$TMP/spm8k" --model_type=bpe --vocab_size=8192 \
    --num_threads="$THREADS" --character_coverage=1.0 --byte_fallback=true)
spm_train --input="$TS" --model_prefix="$TMP/spm8k" --model_type=bpe --vocab_size=8192 \
    --num_threads="$THREADS" --character_coverage=1.0 --byte_fallback=true >/dev/null 2>&1
enc_lms8k=$(secs "$BIN" tokenizer encode --vocab "$TMP/lms8k/vocab.json" --merges "$TMP/lms8k/merges.txt" \
    --input "$TMP/big.txt")
enc_spm8k=$(secs spm_encode --model="$TMP/spm8k.model" --output_format=id --input="$TMP/big.txt")
ntok_g=$("$BIN" tokenizer encode "${G[@]}" --input "$TS" | wc -w)

rate() { $PY -c "print('%.1f' % ($MB / $1))"; }
cat <<MD
- **Date**: $(date -u +%Y-%m-%d) · **machine**: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//') · spm $(spm_train --version 2>&1 | head -1)
- **Command**: \`flock /tmp/lms-heavy.lock bash bench/tokenizer_bench.sh\` (REPEAT=$REPEAT, median of $RUNS runs; spm_train with --num_threads=$THREADS, lmscale single-threaded)
- **Data**: tinyshakespeare ($(wc -c <"$TS") bytes; $ntok_g GPT-2 tokens), repeated $REPEAT× = $MB MB for encoding

| task | lmscale | SentencePiece | lmscale / spm |
|---|---|---|---|
| encode, GPT-2 vocabulary (50257), MB/s | $(rate "$enc_gpt2") | — | — |
| encode, 8192-token BPE trained on tinyshakespeare, MB/s | $(rate "$enc_lms8k") | $(rate "$enc_spm8k") | $($PY -c "print('%.1fx' % ($enc_spm8k / $enc_lms8k))") faster |
| train an 8192-token BPE on tinyshakespeare, s | $train_lms | $train_spm | $($PY -c "print('%.1fx' % ($train_spm / max($train_lms, 1e-3)))") faster |
MD
