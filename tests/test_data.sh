#!/usr/bin/env bash
# Token data end to end: the same ids as text, an lmscale shard, an llm.c
# shard and a Megatron-LM indexed dataset (given as prefix, .bin or .idx)
# give the identical `lmscale eval` line; comma lists concatenate; every
# corrupt file is refused with a message naming it. `lmscale data prepare`
# from text and JSON Lines: token counts match the tokenizer's plus one
# <|endoftext|> per document, the ids match whole-file encoding across its
# streaming cuts, and train/eval read the shards. GPT-2 parts need the GPT-2
# files ($GPT2_DIR, tests/lib.sh; skipped when absent).
# Usage: bash tests/test_data.sh /path/to/lmscale
set -u
NAME=test_data
SRC=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=tests/lib.sh
source "$(dirname "$0")/lib.sh"
need_python numpy
W="$PY $SRC/tests/ref/write_shards.py"
VOCAB=$GPT2_VOCAB
MERGES=$GPT2_MERGES

check() { # check "description" command... (succeeds -> ok)
    local desc=$1
    shift
    if "$@"; then ok; else bad "$desc"; fi
}
trainq() { "$@" >train.txt 2>&1; }
EVAL=("$BIN" eval --model nano --seed 7 --seq-len 32 --batch-size 4 --threads 1)
ev() { "${EVAL[@]}" --data "$1" 2>err.txt | tail -1; }
# fails "description" "expected text in the error" data
fails() {
    local desc=$1 want=$2
    shift 2
    if "${EVAL[@]}" --data "$1" >out.txt 2>err.txt; then
        bad "$desc: accepted"
    elif ! grep -qF -- "$want" err.txt || ! grep -qF -- "${1%%,*}" err.txt; then
        bad "$desc: message lacks '$want' or the file name: $(cat err.txt)"
    else ok; fi
}

# ---- the same ids in every format
$PY -c 'import random; r=random.Random(3); print("".join(r.choice("abcdefgh ijk\nlmnop") for _ in range(1500)), end="")' >t.txt
$PY -c 'import sys; print(" ".join(str(b) for b in open("t.txt","rb").read()))' >t.ids
$W write t.ids s || bad "writer failed"
REF=$(ev t.txt)
check "eval on text prints a result line" grep -q "^loss=" <<<"$REF"
for d in s.lmstok s.llmc s_mg s_mg.bin s_mg.idx; do
    got=$(ev $d)
    check "$d gives the text's eval line ($got vs $REF)" [ "$got" = "$REF" ]
done
WIDTH=4 MG_DTYPE=4 $W write t.ids w
for d in w.lmstok w_mg; do
    got=$(ev $d)
    check "$d (32-bit ids) gives the text's eval line" [ "$got" = "$REF" ]
done
cat t.txt t.txt >tt.txt
check "a comma list is the concatenation" [ "$(ev s.lmstok,s_mg)" = "$(ev tt.txt)" ]

# ---- corrupt files
corrupt() { # corrupt SRC DST PYTHON-EXPR-ON-b
    $PY -c "import struct,sys; b=bytearray(open('$1','rb').read()); $3; open('$2','wb').write(b)"
}
corrupt s.lmstok c1.lmstok "b[6:8]=b'XX'"
fails "lmscale shard: bad magic" "bad magic" c1.lmstok
corrupt s.lmstok c2.lmstok "b[8:12]=struct.pack('<I',2)"
fails "lmscale shard: unknown version" "version 2" c2.lmstok
corrupt s.lmstok c3.lmstok "del b[-7:]"
fails "lmscale shard: truncated" "truncated" c3.lmstok
corrupt s.lmstok c4.lmstok "b+=b'\0\0'"
fails "lmscale shard: size does not match the header" "extra bytes" c4.lmstok
corrupt s.lmstok c5.lmstok "b[40]^=1"
fails "lmscale shard: checksum" "checksum" c5.lmstok
corrupt s.lmstok c6.lmstok "del b[20:]"
fails "lmscale shard: truncated header" "truncated" c6.lmstok
corrupt s.llmc c7.llmc "b[4:8]=struct.pack('<i',7)"
fails "llm.c shard: unknown version" "version 7" c7.llmc
corrupt s.llmc c8.llmc "del b[-3:]"
fails "llm.c shard: truncated" "truncated" c8.llmc
cp s_mg.idx c9.idx && corrupt s_mg.bin c9.bin "del b[-4:]"
fails "Megatron: .bin shorter than the index" "truncated" c9
cp s_mg.bin c10.bin && corrupt s_mg.idx c10.idx "b[9:17]=struct.pack('<Q',2)"
fails "Megatron: unknown index version" "version 2" c10.idx
cp s_mg.bin c11.bin && corrupt s_mg.idx c11.idx "del b[-8:]"
fails "Megatron: truncated index" "truncated" c11
cp s_mg.bin c12.bin && corrupt s_mg.idx c12.idx "b[0:2]=b'XX'"
fails "Megatron: bad index magic (given as .bin)" "bad magic" c12.bin
echo "300 1 2 3" >big.ids && $W write big.ids big
fails "ids beyond the vocabulary" "vocabulary" big.lmstok
fails "a missing file in a comma list" "cannot open" missing.bin,s.lmstok

# ---- data prepare: text, bytes tokenizer
mkdir -p out1 out2 out3
printf 'first document\nline two\n' >d1.txt
head -c 3000 t.txt >d2.txt
if "$BIN" data prepare --input d1.txt d2.txt --output-dir out1 >prep.txt 2>err.txt; then
    n=$($PY $SRC/tests/ref/write_shards.py read out1/train.bin | wc -w)
    want=$(( $(wc -c <d1.txt) + 1 + $(wc -c <d2.txt) + 1 ))
    check "text prepare: bytes + one separator per document ($n vs $want)" [ "$n" -eq "$want" ]
    first=$($PY $SRC/tests/ref/write_shards.py read out1/train.bin | cut -d' ' -f1-3)
    check "documents start with <|endoftext|> (256)" [ "$first" = "256 102 105" ]
    check "no progress line when stderr is not a terminal" [ ! -s err.txt ]
    check "prepare reports the shard" grep -q "train.bin: 2 documents" prep.txt
    check "eval reads the prepared shard" grep -q "^loss=" <<<"$(ev out1/train.bin)"
else
    bad "data prepare (text) failed: $(cat err.txt)"
fi

# ---- data prepare: JSON Lines, a validation split, then train on it
$PY - <<'PY' >docs.jsonl
import json, random
r = random.Random(1)
for i in range(40):
    print(json.dumps({"id": i, "text": "".join(r.choice("abc de\u00e9\n") for _ in range(r.randint(20, 90)))}))
PY
if "$BIN" data prepare --input docs.jsonl --jsonl-field text --val-fraction 0.25 --output-dir out2 >prep.txt 2>err.txt; then
    n=$(( $($PY $SRC/tests/ref/write_shards.py read out2/train.bin | wc -w) + $($PY $SRC/tests/ref/write_shards.py read out2/val.bin | wc -w) ))
    want=$($PY -c 'import json; print(sum(len(json.loads(l)["text"].encode())+1 for l in open("docs.jsonl")))')
    check "JSONL prepare: bytes + one separator per line ($n vs $want)" [ "$n" -eq "$want" ]
    check "train reads the shards" trainq "$BIN" train --model nano --data out2/train.bin --val-data out2/val.bin \
        --steps 2 --batch-size 2 --seq-len 16 --eval-interval 2 --eval-batches 1 --peak-tflops 1 --quiet --threads 1
else
    bad "data prepare (JSONL) failed: $(cat err.txt)"
fi
if "$BIN" data prepare --input docs.jsonl --jsonl-field body --output-dir out3 >/dev/null 2>err.txt; then
    bad "a missing JSONL field was accepted"
else
    check "a missing JSONL field is named" grep -q 'field "body"' err.txt
    check "a failed prepare leaves no shard" [ -z "$(ls out3)" ]
fi

# ---- GPT-2 BPE: the streaming cuts give whole-file ids (input > 1 MB pieces)
if [ -r "$VOCAB" ] && [ -r "$MERGES" ]; then
    G=(--vocab "$VOCAB" --merges "$MERGES")
    $PY - <<'PY' >big.txt
import random
r = random.Random(9)
w = ["the", "cat", " sat", "\n", "\n\n", "  ", "don't", "42", "caf\u00e9", "!!", "\t", "\u00a0", "\u3000", "'s"]
print("".join(r.choice(w) + r.choice(["", " ", " ", "\n"]) for _ in range(450000)), end="")
PY
    mkdir -p out4
    if "$BIN" data prepare "${G[@]}" --input big.txt --output-dir out4 >/dev/null 2>err.txt; then
        "$BIN" tokenizer encode "${G[@]}" --input big.txt >big.ref
        $PY $SRC/tests/ref/write_shards.py read out4/train.bin >big.got
        check "BPE prepare = 50256 + whole-file encoding" [ "$(cat big.got)" = "50256 $(tr '\n' ' ' <big.ref | sed 's/ *$//')" ]
        check "BPE eval reads the shard" grep -q "^loss=" <<<"$("${EVAL[@]}" --vocab-size 50257 --max-batches 2 --data out4/train.bin 2>&1 | tail -1)"
    else
        bad "data prepare (BPE) failed: $(cat err.txt)"
    fi
    check "eval --vocab/--merges tokenizes text with BPE" grep -q "tokens=" \
        <<<"$("${EVAL[@]}" "${G[@]}" --vocab-size 50257 --max-batches 1 --data d2.txt 2>&1 | tail -1)"
    # train --vocab/--merges records the tokenizer in its checkpoint; resume reloads it
    TR=("$BIN" train --model nano --vocab-size 50257 --data d2.txt --steps 2 --batch-size 2 --seq-len 16
        --eval-interval 0 --peak-tflops 1 --quiet --threads 1 --save ck)
    check "train --vocab/--merges --save" trainq "${TR[@]}" "${G[@]}" --stop-after 1
    check "resume takes the BPE tokenizer from the checkpoint" trainq "${TR[@]}" --resume ck
    # the checkpoint's own files given again agree (tests/test_tokenizer_travel.sh: files that differ are refused)
    check "--vocab/--merges equal to the checkpoint's are accepted on --resume" trainq "${TR[@]}" "${G[@]}" \
        --resume ck --steps 3
else
    skip "GPT-2 BPE parts" "$GPT2_HOW"
fi
summary
