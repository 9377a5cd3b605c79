#!/usr/bin/env bash
# Checkpoints end to end: exact resume (20 steps == 10 + resume + 10, same
# losses and bitwise the same final model), --save-every/--keep-last, faults
# (corrupt, truncated, wrong version, model flags that contradict the
# checkpoint), a crash in the middle of a save (LMS_TEST_CRASH_IN_SAVE), kill
# -9 at random moments, and the C-only Hugging Face round trip through the
# binary (export, then eval/generate --init == --load).
# Usage: bash tests/test_resume.sh /path/to/lmscale
set -u

NAME=test_resume
# shellcheck source=tests/lib.sh
source "$(dirname "$0")/lib.sh"
need_python
losses() { $PY -c 'import json,sys; [print(repr(json.loads(l)["loss"])) for l in open(sys.argv[1])]' "$1"; }

DATA=$T/data.txt
for _ in $(seq 1 60); do
    printf 'one two three four five.\nthe cat sat on the mat.\nhello, world!\n'
done >"$DATA"
TH=(--threads 1)
# cosine schedule with warm-up, clipping and accumulation: every piece of state matters
C=("$BIN" train --model nano --data "$DATA" --peak-tflops 1 --eval-interval 0 --quiet "${TH[@]}"
    --steps 20 --batch-size 4 --micro-batch-size 2 --seq-len 32 --lr 2e-3 --warmup-steps 3 --seed 7)

# ---- exact resume
run full "${C[@]}" --metrics "$T/full.jsonl" --save-model "$T/full.bin"
run half "${C[@]}" --metrics "$T/res.jsonl" --save "$T/ck" --save-every 4 --keep-last 2 --stop-after 10
ls "$T/ck" >"$T/ls.txt"
if [ "$(tr '\n' ' ' <"$T/ls.txt")" = "step-00000008 step-00000010 " ]; then ok; else
    bad "--save-every 4 --keep-last 2 --stop-after 10 left: $(tr '\n' ' ' <"$T/ls.txt")"
fi
cp -r "$T/ck" "$T/ck10" # the run's step 10, for the fault cases below
# the resume keeps the run's --save-every 4 --keep-last 2 (docs/checkpoints.md "Resume rules")
run resume "${C[@]}" --metrics "$T/res.jsonl" --resume "$T/ck" --save "$T/ck" --save-model "$T/res.bin"
[ "$(ls "$T/ck" | tr '\n' ' ')" = "step-00000016 step-00000020 " ] && ok ||
    bad "the resumed run did not keep --save-every 4 --keep-last 2: $(ls "$T/ck" | tr '\n' ' ')"
grep -q "resumed from .*step-00000010 at step 10" "$T/resume.out" && ok || bad "resume: no 'resumed from ... at step 10' line"
if [ "$(losses "$T/full.jsonl")" = "$(losses "$T/res.jsonl")" ] && [ "$(wc -l <"$T/res.jsonl")" -eq 20 ]; then ok; else
    bad "exact resume: per-step losses differ"
    paste <(losses "$T/full.jsonl") <(losses "$T/res.jsonl") | sed 's/^/  /'
fi
cmp -s "$T/full.bin" "$T/res.bin" && ok || bad "exact resume: final parameters differ"
[ -d "$T/ck/step-00000020" ] && ok || bad "no final checkpoint step-00000020"
# and it is not trivially equal: a run resumed without the optimizer state would differ
run other "${C[@]}" --seed 8 --save-model "$T/other.bin"
cmp -s "$T/full.bin" "$T/other.bin" && bad "a different seed gave the same model" || ok

# ---- faults
cp -r "$T/ck10/step-00000010" "$T/bad"
$PY - "$T/bad/shard-00000-of-00001.bin" <<'EOF'
import sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[4000] ^= 0x40; open(p, "wb").write(b)
EOF
expect_fail corrupt "checksum mismatch in tensor model\.wte.*shard-00000-of-00001\.bin" "${C[@]}" --resume "$T/bad"
cp -r "$T/ck10/step-00000010" "$T/trunc"
truncate -s 5000 "$T/trunc/shard-00000-of-00001.bin"
expect_fail truncated "truncated" "${C[@]}" --resume "$T/trunc"
cp -r "$T/ck10/step-00000010" "$T/ver"
sed -i 's/"version": 2,/"version": 7,/' "$T/ver/index.json"
expect_fail version "index\.json' is checkpoint version 7" "${C[@]}" --resume "$T/ver"
expect_fail missing "no such directory" "${C[@]}" --resume "$T/nonexistent"
expect_fail shape "model flags ask for L=3.*holds.*L=2.*drop --model" "${C[@]}" --num-layers 3 --resume "$T/ck"
expect_fail batch "trained with --batch-size 4 --seq-len 32.*--batch-size 8" "${C[@]}" --batch-size 8 --resume "$T/ck10/step-00000010"
expect_fail done "already at step 20" "${C[@]}" --resume "$T/ck"
# a directory whose newest checkpoint is corrupt: warn, use the previous one
mkdir "$T/fall" && cp -r "$T/ck10/step-00000010" "$T/fall/" && cp -r "$T/bad" "$T/fall/step-00000012"
if run fallback "${C[@]}" --resume "$T/fall" --stop-after 11; then
    grep -q "warning: skipping checkpoint .*step-00000012.*checksum" "$T/fallback.err" && ok || bad "fallback: no warning"
    grep -q "at step 10" "$T/fallback.out" && ok || bad "fallback: did not resume from step 10"
fi

# ---- a crash in the middle of a save leaves the previous checkpoint loadable
run crash_a "${C[@]}" --save "$T/cr" --stop-after 5
LMS_TEST_CRASH_IN_SAVE=30000 "${C[@]}" --resume "$T/cr" --save "$T/cr" --save-every 5 --stop-after 10 \
    >"$T/crash.out" 2>"$T/crash.err"
rc=$?
[ $rc -eq 99 ] && ok || bad "crash hook: exit code $rc, expected 99"
[ -d "$T/cr/.tmp-step-00000010" ] && [ ! -e "$T/cr/step-00000010" ] && ok || bad "crash hook: expected a partial .tmp-step-00000010 only: $(ls -a "$T/cr" | tr '\n' ' ')"
run crash_resume "${C[@]}" --resume "$T/cr" --save "$T/cr" --save-model "$T/crash.bin"
grep -q "at step 5" "$T/crash_resume.out" && ok || bad "after the crash: did not resume from step 5"
cmp -s "$T/full.bin" "$T/crash.bin" && ok || bad "after the crash: the resumed run's final model differs"
[ ! -e "$T/cr/.tmp-step-00000010" ] && ok || bad "the partial directory was not cleaned by the next save"

# ---- kill -9 at random moments of a run that saves every step
K=("$BIN" train --model nano --data "$DATA" --peak-tflops 1 --eval-interval 0 --quiet "${TH[@]}"
    --steps 100000 --batch-size 2 --seq-len 16 --save "$T/kk" --save-every 1 --keep-last 2)
for i in 1 2 3; do
    if [ $i -eq 1 ]; then "${K[@]}" >/dev/null 2>&1 & else "${K[@]}" --resume "$T/kk" >/dev/null 2>&1 & fi
    pid=$!
    sleep "0.$((RANDOM % 6 + 3))"
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    if "$BIN" export --hf "$T/kk_hf" --resume "$T/kk" >"$T/kk.out" 2>"$T/kk.err"; then ok; else
        bad "kill -9 round $i: no valid checkpoint: $(grep -v OPENBLAS "$T/kk.err" | head -3)"
        ls -a "$T/kk" | sed 's/^/  /'
    fi
done

# ---- Hugging Face export -> --init, C only
run export "$BIN" export --hf "$T/hf" --load "$T/full.bin"
[ -s "$T/hf/config.json" ] && [ -s "$T/hf/model.safetensors" ] && ok || bad "export: files missing"
grep -q '"model_type": "gpt2"' "$T/hf/config.json" && grep -q '"vocab_size": 257' "$T/hf/config.json" && ok ||
    bad "export: config.json lacks model_type gpt2 / vocab_size 257"
run ev_load "$BIN" eval "${TH[@]}" --load "$T/full.bin" --data "$DATA" --seq-len 64
run ev_init "$BIN" eval "${TH[@]}" --init "$T/hf" --data "$DATA" --seq-len 64
run ev_res "$BIN" eval "${TH[@]}" --resume "$T/ck" --data "$DATA" --seq-len 64
a=$(tail -n 1 "$T/ev_load.out")
[ -n "$a" ] && [ "$a" = "$(tail -n 1 "$T/ev_init.out")" ] && ok || bad "eval --init '$(tail -n 1 "$T/ev_init.out")' != --load '$a'"
[ -n "$a" ] && [ "$a" = "$(tail -n 1 "$T/ev_res.out")" ] && ok || bad "eval --resume '$(tail -n 1 "$T/ev_res.out")' != --load '$a'"
G=(generate "${TH[@]}" --prompt "the cat " --max-new-tokens 30 --temperature 0)
run g_load "$BIN" "${G[@]}" --load "$T/full.bin"
run g_init "$BIN" "${G[@]}" --init "$T/hf"
run g_init_nokv "$BIN" "${G[@]}" --init "$T/hf" --no-kv-cache
run g_res "$BIN" "${G[@]}" --resume "$T/ck"
cmp -s "$T/g_load.out" "$T/g_init.out" && ok || bad "generate --init differs from --load"
cmp -s "$T/g_init.out" "$T/g_init_nokv.out" && ok || bad "generate --init: KV cache and no KV cache differ"
cmp -s "$T/g_load.out" "$T/g_res.out" && ok || bad "generate --resume differs from --load"
# train --init starts from the exported weights: its first loss is the model's loss
run tr_init "$BIN" train --data "$DATA" --peak-tflops 1 --eval-interval 0 --quiet "${TH[@]}" --steps 1 \
    --batch-size 4 --seq-len 32 --init "$T/hf" --metrics "$T/init.jsonl"
$PY - "$T/init.jsonl" <<'EOF' && ok || bad "train --init: first loss is not that of a trained model"
import json, sys
l = json.loads(open(sys.argv[1]).readline())["loss"]
print("  train --init first loss %.4f" % l); sys.exit(0 if l < 4.0 else 1)   # fresh: ~5.55
EOF
expect_fail init_flags "model flags ask for.*--init" "$BIN" train --data "$DATA" --init "$T/hf" --hidden-size 128 --steps 1
expect_fail init_both "cannot be combined" "$BIN" train --data "$DATA" --init "$T/hf" --resume "$T/ck" --steps 1
mkdir "$T/hfbad" && cp "$T/hf/config.json" "$T/hfbad/"
expect_fail init_missing "model\.safetensors" "$BIN" eval --init "$T/hfbad" --data "$DATA"
cp "$T/hf/model.safetensors" "$T/hfbad/" && touch "$T/hfbad/vocab.json" "$T/hfbad/merges.txt"
expect_fail init_bpe "has .*vocab\.json and .*merges\.txt" "$BIN" eval --init "$T/hfbad" --data "$DATA"
sed -i 's/"n_layer": 2/"n_layer": 3/' "$T/hfbad/config.json" && rm "$T/hfbad/vocab.json" "$T/hfbad/merges.txt"
expect_fail init_shape "no tensor \"h\.2\." "$BIN" eval --init "$T/hfbad" --data "$DATA"
expect_fail export_none "--load FILE or --resume" "$BIN" export --hf "$T/x"

# ---- a BPE run: --init with a tokenizer, checkpoints record the tokenizer
# files and their CRCs; 4 steps == 2 + resume + 2; a changed file is refused
run bpe_tok "$BIN" tokenizer train --input "$DATA" --vocab-size 300 --output "$T/tok" --special '<|endoftext|>'
run bpe_m "$BIN" train --model nano --vocab-size 300 --data "$DATA" --steps 1 --batch-size 2 --seq-len 16 \
    --eval-interval 0 --quiet "${TH[@]}" --save-model "$T/bpe0.bin"
run bpe_x "$BIN" export --hf "$T/hfbpe" --load "$T/bpe0.bin"
cp "$T/tok/vocab.json" "$T/tok/merges.txt" "$T/hfbpe/"
BT=(train --data "$DATA" --init "$T/hfbpe" --steps 4 --batch-size 2 --seq-len 16 --eval-interval 0 --quiet "${TH[@]}")
run bpe_full "$BIN" "${BT[@]}" --save-model "$T/bpe_full.bin"
run bpe_a "$BIN" "${BT[@]}" --save "$T/ckbpe" --stop-after 2
grep -q '"kind": "bpe"' "$T/ckbpe/step-00000002/index.json" && grep -q 'merges_crc32' "$T/ckbpe/step-00000002/index.json" &&
    ok || bad "BPE checkpoint does not record the tokenizer files"
RB=(train --data "$DATA" --resume "$T/ckbpe" --steps 4 --batch-size 2 --seq-len 16 --eval-interval 0 --quiet "${TH[@]}")
run bpe_b "$BIN" "${RB[@]}" --save-model "$T/bpe_res.bin"
cmp -s "$T/bpe_full.bin" "$T/bpe_res.bin" && ok || bad "BPE run: 2 + resume + 2 steps differs from 4 steps"
# the checkpoint carries a copy of the tokenizer: the original files may change or go
echo "x" >>"$T/hfbpe/merges.txt"
RB=(train --data "$DATA" --resume "$T/ckbpe/step-00000002" --steps 4 --batch-size 2 --seq-len 16 --eval-interval 0
    --quiet "${TH[@]}")
run bpe_orig_changed "$BIN" "${RB[@]}" --save-model "$T/bpe_res2.bin" &&
    cmp -s "$T/bpe_full.bin" "$T/bpe_res2.bin" && ok || bad "resume with the checkpoint's copy of the tokenizer"
echo "x" >>"$T/ckbpe/step-00000002/merges.txt" # the copy damaged too
expect_fail bpe_changed "tokenizer files .* changed since checkpoint" "$BIN" "${RB[@]}"
rm "$T/hfbpe/merges.txt" "$T/ckbpe/step-00000002/merges.txt"
expect_fail bpe_missing "neither in the checkpoint nor readable" "$BIN" "${RB[@]}"

summary
