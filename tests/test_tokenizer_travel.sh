#!/usr/bin/env bash
# The tokenizer is part of the model (issue 17, item 2): data prepare writes
# it beside the shards and records it in their header; train records it from
# the shards or --vocab/--merges and copies it into every checkpoint; eval,
# generate and export use it (export --hf writes vocab.json + merges.txt,
# --init reads them); --vocab/--merges that agree are accepted, and data or a
# tokenizer that contradicts the model's is refused naming both. Uses BPE
# tokenizers trained here (no GPT-2 files needed).
# Usage: bash tests/test_tokenizer_travel.sh /path/to/lmscale
set -u
NAME=test_tokenizer_travel
SRC=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=tests/lib.sh
source "$(dirname "$0")/lib.sh"
need_python numpy
W="$PY $SRC/tests/ref/write_shards.py"

field() { $PY -c "import json,sys; print(json.load(open(sys.argv[1]))['tokenizer'][sys.argv[2]])" "$1" "$2"; }
hdr_tok() { $PY -c "import struct,sys; print(struct.unpack_from('<I', open(sys.argv[1],'rb').read(32), 28)[0])" "$1"; }

# repetitive words, so that BPE takes far fewer ids than bytes
$PY -c '
import random
r = random.Random(11)
w = ["the", "king", "queen", "sword", "castle", "river", "night", "shall", "upon", "thee"]
print(" ".join(r.choice(w) for _ in range(4000)))' >text.txt
run bpe "$BIN" tokenizer train --input text.txt --vocab-size 300 --output tok --special '<|endoftext|>' && ok
run bpe2 "$BIN" tokenizer train --input text.txt --vocab-size 280 --output tok2 --special '<|endoftext|>' && ok
TOK=(--vocab tok/vocab.json --merges tok/merges.txt)
TOK2=(--vocab tok2/vocab.json --merges tok2/merges.txt)
NB=$(wc -c <text.txt)
NBPE=$("$BIN" tokenizer encode "${TOK[@]}" --input text.txt | wc -w)
[ "$NBPE" -lt $((NB / 3)) ] && ok || bad "the test BPE does not compress ($NBPE ids, $NB bytes)"
TR=(train --model nano --vocab-size 300 --steps 4 --batch-size 2 --seq-len 32 --eval-interval 0 --threads 1
    --peak-tflops 1)

# ---- data prepare: the tokenizer beside the shards and in their header
run prep "$BIN" data prepare --input text.txt "${TOK[@]}" --val-fraction 0.1 --output-dir sh && ok
cmp -s sh/vocab.json tok/vocab.json && cmp -s sh/merges.txt tok/merges.txt && ok || bad "prepare: no tokenizer copy"
[ "$(hdr_tok sh/train.bin)" = 2 ] && [ "$(hdr_tok sh/val.bin)" = 2 ] && ok || bad "BPE shard header: $(hdr_tok sh/train.bin)"
run prepb "$BIN" data prepare --input text.txt --val-fraction 0.1 --output-dir shb && ok
[ "$(hdr_tok shb/train.bin)" = 1 ] && [ ! -e shb/vocab.json ] && ok || bad "byte shard header: $(hdr_tok shb/train.bin)"

# ---- train on the shards without --vocab: the checkpoint records and carries the tokenizer
run train "$BIN" "${TR[@]}" --data sh/train.bin --val-data sh/val.bin --save ck --stop-after 2 && ok
grep -q "tokenizer: .*sh/vocab.json" train.out && ok || bad "train does not say where the tokenizer came from"
IDX=$(ls -d ck/step-*/index.json | tail -1)
[ "$(field "$IDX" kind)" = bpe ] && ok || bad "checkpoint tokenizer kind: $(field "$IDX" kind)"
STEP=$(dirname "$IDX")
cmp -s "$STEP/vocab.json" tok/vocab.json && cmp -s "$STEP/merges.txt" tok/merges.txt && ok ||
    bad "the checkpoint holds no copy of the tokenizer"

# ---- eval and generate --resume use it: text is tokenized with the BPE, not as bytes
run ev "$BIN" eval --resume ck --data text.txt --seq-len 32 --threads 1 && ok
run evx "$BIN" eval --resume ck --data text.txt --seq-len 32 --threads 1 "${TOK[@]}" && ok
ntok=$(sed -n 's/.*tokens=\([0-9]*\).*/\1/p' ev.out)
[ -n "$ntok" ] && [ "$ntok" -le "$NBPE" ] && [ "$ntok" -gt $((NBPE - 9 * 32)) ] && ok ||
    bad "eval --resume tokenized $ntok tokens; the BPE gives $NBPE, bytes $NB"
cmp -s ev.out evx.out && ok || bad "eval --resume differs from the same with its --vocab/--merges"
G=(--prompt "the king" --max-new-tokens 30 --temperature 0.9 --seed 3 --threads 1)
run gen "$BIN" generate --resume ck "${G[@]}" && ok
run genx "$BIN" generate --resume ck "${G[@]}" "${TOK[@]}" && ok
cmp -s gen.out genx.out && ok || bad "generate --resume differs from the same with its --vocab/--merges"
grep -q '<|unk|>' gen.out && bad "generate printed <|unk|>: $(head -c 200 gen.out)" || ok

# ---- the original files gone: the copy in the checkpoint serves
mv tok tok.away
run ev_moved "$BIN" eval --resume ck --data text.txt --seq-len 32 --threads 1 && ok
cmp -s ev.out ev_moved.out && ok || bad "eval after the tokenizer files moved differs"
run resume_moved "$BIN" "${TR[@]}" --data sh/train.bin --val-data sh/val.bin --resume ck --save ck && ok
mv tok.away tok

# ---- export --hf writes vocab.json + merges.txt; --init picks them up
run export "$BIN" export --hf hf --resume ck && ok
cmp -s hf/vocab.json tok/vocab.json && cmp -s hf/merges.txt tok/merges.txt && ok || bad "export --hf: no tokenizer"
run ev_hf "$BIN" eval --init hf --data text.txt --seq-len 32 --threads 1 && ok
run ev_ck "$BIN" eval --resume ck --data text.txt --seq-len 32 --threads 1 && ok
cmp -s ev_hf.out ev_ck.out && ok || bad "eval --init of the export differs: $(cat ev_hf.out) vs $(cat ev_ck.out)"
run gen_hf "$BIN" generate --init hf "${G[@]}" && ok
run gen_ck "$BIN" generate --resume ck "${G[@]}" && ok
cmp -s gen_hf.out gen_ck.out && ok || bad "generate --init of the export differs from --resume"

# a Hugging Face folder without tokenizer files (and not a byte model, V != 257): bytes, with a warning
mkdir hfnotok && cp hf/config.json hf/model.safetensors hfnotok/
run init_notok_eval "$BIN" eval --init hfnotok --data text.txt --seq-len 32 --threads 1 && ok
grep -q "has no vocab.json/merges.txt: text is read as byte tokens" init_notok_eval.out init_notok_eval.err && ok ||
    bad "eval --init without tokenizer files: no warning"
run init_notok_vocab "$BIN" eval --init hfnotok --data text.txt --seq-len 32 --threads 1 "${TOK[@]}" && ok
cmp -s init_notok_vocab.out ev_hf.out && ok || bad "eval --init without files + --vocab differs from the export"
run init_notok_bpe "$BIN" eval --init hfnotok --data sh/val.bin --seq-len 32 --threads 1 && ok
run init_notok_gen "$BIN" generate --init hfnotok --prompt "the" --max-new-tokens 3 --threads 1 && ok

# ---- resuming on raw text: tokenized with the checkpoint's BPE (a run on text with --vocab/--merges,
# resumed without them)
run tr_text "$BIN" "${TR[@]}" --data text.txt "${TOK[@]}" --val-fraction 0 --save ckt --stop-after 2 && ok
run resume_text "$BIN" "${TR[@]}" --data text.txt --val-fraction 0 --resume ckt && ok
grep -q "train: $NBPE tokens" resume_text.out && ok ||
    bad "resume on text: $(grep -m1 'train:' resume_text.out) (the BPE gives $NBPE ids, bytes $NB)"

# ---- contradictions are refused, naming both tokenizers
fails res_bytes "byte tokenizer" "ck/step-" -- "$BIN" "${TR[@]}" --data shb/train.bin --resume ck --steps 6
fails ev_vocab2 "tok2/vocab.json" "ck/step-" -- "$BIN" eval --resume ck --data text.txt "${TOK2[@]}"
fails gen_vocab2 "tok2/vocab.json" "ck/step-" -- "$BIN" generate --resume ck --prompt a "${TOK2[@]}"
fails res_vocab2 "tok2/vocab.json" "ck/step-" -- "$BIN" "${TR[@]}" --data text.txt --resume ck --steps 6 "${TOK2[@]}"
fails tr_vocab2 "tok2/vocab.json" "sh/train.bin" -- "$BIN" "${TR[@]}" --data sh/train.bin "${TOK2[@]}"
fails ev_shb "byte tokenizer" "ck/step-" -- "$BIN" eval --resume ck --data shb/val.bin
fails init_vocab2 "tok2/vocab.json" "hf" -- "$BIN" eval --init hf --data text.txt "${TOK2[@]}"
# a byte-tokenizer checkpoint on BPE shards
run trb "$BIN" "${TR[@]}" --data text.txt --save ckb --stop-after 2 && ok
[ "$(field "$(ls -d ckb/step-*/index.json | tail -1)" kind)" = bytes ] && ok || bad "text run: not bytes"
fails res_bpe "byte tokenizer" "sh/train.bin" -- "$BIN" "${TR[@]}" --data sh/train.bin --resume ckb
fails ev_bpe "byte tokenizer" "sh/val.bin" -- "$BIN" eval --resume ckb --data sh/val.bin

# ---- a model file holds weights only: a BPE one needs --vocab/--merges
run trm "$BIN" "${TR[@]}" --data sh/train.bin --save-model m.bin && ok
fails load_novocab "BPE tokenizer" "--vocab/--merges" -- "$BIN" eval --load m.bin --data text.txt
run load_vocab "$BIN" eval --load m.bin --data text.txt --seq-len 32 "${TOK[@]}" && ok
fails export_novocab "BPE tokenizer" "--vocab/--merges" -- "$BIN" export --hf hfm --load m.bin
run export_vocab "$BIN" export --hf hfm --load m.bin "${TOK[@]}" && ok
cmp -s hfm/vocab.json tok/vocab.json && ok || bad "export --load --vocab: no vocab.json"
# a byte model exported over it removes the stale tokenizer
run trbm "$BIN" "${TR[@]}" --data text.txt --save-model mb.bin && ok
run export_bytes "$BIN" export --hf hfm --load mb.bin && ok
[ ! -e hfm/vocab.json ] && [ ! -e hfm/merges.txt ] && ok || bad "a byte export left vocab.json behind"

# ---- token data that names no tokenizer files (llm.c shards): recorded "unknown"
"$BIN" tokenizer encode "${TOK[@]}" --input text.txt >ids.txt
$W write ids.txt lc >/dev/null
run tr_llmc "$BIN" "${TR[@]}" --data lc.llmc --save ckl && ok
grep -q "names no tokenizer files" tr_llmc.err && ok || bad "no warning for llm.c shards without tokenizer"
[ "$(field "$(ls -d ckl/step-*/index.json | tail -1)" kind)" = unknown ] && ok || bad "llm.c run: not unknown"
fails gen_unknown "names no tokenizer files" "--vocab/--merges" -- "$BIN" generate --resume ckl --prompt a
run gen_unknown_vocab "$BIN" generate --resume ckl --prompt "the" --max-new-tokens 5 "${TOK[@]}" && ok
fails export_unknown "names no tokenizer files" "--vocab/--merges" -- "$BIN" export --hf hfl --resume ckl
fails llmc_bytes "byte tokenizer" "lc.llmc" -- "$BIN" "${TR[@]}" --data lc.llmc --resume ckb
summary
