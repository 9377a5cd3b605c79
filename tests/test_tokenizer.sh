#!/usr/bin/env bash
# `lmscale tokenizer` end to end: encode/decode round trips (bytes and GPT-2
# BPE, invalid UTF-8 included), ids checked against the Python reference
# encoder (tests/ref/gpt2_tokenizer_reference.py), BPE training checked merge
# for merge against a naive Python trainer (tests/ref/bpe_train_reference.py)
# and for the requested vocabulary size, and bad input refused with a clear
# message. GPT-2 parts need the GPT-2 files ($GPT2_DIR, tests/lib.sh) and
# python3-regex; they are skipped (tests/lib.sh's skip) when absent.
# Usage: bash tests/test_tokenizer.sh /path/to/lmscale
set -u
NAME=test_tokenizer
SRC=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=tests/lib.sh
source "$(dirname "$0")/lib.sh"
need_python
VOCAB=$GPT2_VOCAB
MERGES=$GPT2_MERGES
NO_REGEX=$(python_missing regex)

check() { # check "description" command... (succeeds -> ok)
    local desc=$1
    shift
    if "$@"; then ok; else bad "$desc"; fi
}

# ---- generated text: words, numbers, punctuation, UTF-8, invalid bytes
$PY - <<'PY' >text.txt
import random
r = random.Random(5)
words = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "don't", "it's",
         "caf\u00e9", "\u4e16\u754c", "42", "3.14", "!!", "\U0001F600", "  ", "\n", "\t"]
out = []
for i in range(4000):
    out.append(r.choice(words))
    out.append(" " if r.random() < 0.8 else "\n")
open("/dev/stdout", "wb").write("".join(out).encode() + b"\xff\xc3 end\xe2\x82")
PY
head -c 3000 /dev/urandom >random.bin

# ---- bytes tokenizer
"$BIN" tokenizer encode --input random.bin >bytes.ids 2>err.txt
check "bytes encode: one id per byte" [ "$(wc -w <bytes.ids)" -eq 3000 ]
"$BIN" tokenizer decode --input bytes.ids >bytes.out 2>>err.txt
check "bytes decode round trip" cmp -s random.bin bytes.out

# ---- GPT-2 BPE
if have_gpt2; then
    G=(--vocab "$VOCAB" --merges "$MERGES")
    for f in text.txt random.bin; do
        "$BIN" tokenizer encode "${G[@]}" --input $f >$f.ids
        "$BIN" tokenizer decode "${G[@]}" <$f.ids >$f.out
        check "GPT-2 round trip of $f" cmp -s $f $f.out
    done
    if [ -z "$NO_REGEX" ]; then
        # ids against the reference encoder (through its fixture writer's Encoder class)
        $PY - "$SRC/tests/ref" "$VOCAB" "$MERGES" <<'PY' >text.ref.ids
import sys
sys.path.insert(0, sys.argv[1])
from gpt2_tokenizer_reference import Encoder
e = Encoder(sys.argv[2], sys.argv[3])
print(" ".join(map(str, e.encode(open("text.txt", "rb").read()))))
PY
        check "GPT-2 ids equal the reference encoder's ($(wc -w <text.ref.ids) ids)" cmp -s text.txt.ids text.ref.ids
    else
        skip "GPT-2 ids against the reference encoder" "apt-get install $NO_REGEX"
    fi
    # stdin by default; <|endoftext|> is text unless --allow-special
    got=$(printf 'Hello world<|endoftext|>' | "$BIN" tokenizer encode "${G[@]}")
    check "default treats <|endoftext|> as text (got $got)" [ "$got" = "15496 995 27 91 437 1659 5239 91 29" ]
    got=$(printf 'Hello world<|endoftext|>' | "$BIN" tokenizer encode "${G[@]}" --allow-special)
    check "--allow-special gives id 50256 (got $got)" [ "$got" = "15496 995 50256" ]
else
    skip "GPT-2 BPE checks" "$GPT2_HOW"
fi

# ---- training
"$BIN" tokenizer train --input text.txt random.bin --vocab-size 400 --output bpe --special '<|endoftext|>' \
    --quiet >train.out 2>err.txt
check "train exits 0 ($(head -c 200 err.txt))" [ -s bpe/vocab.json ] && [ -s bpe/merges.txt ]
n=$($PY -c 'import json,sys; v=json.load(open("bpe/vocab.json")); print(len(v), len(set(v.values())), max(v.values()), v.get("<|endoftext|>"))')
check "vocab.json has 400 tokens, ids 0..399, <|endoftext|> last (got $n)" [ "$n" = "400 400 399 399" ]
check "merges.txt has 400-256-1 merges" [ "$(($(wc -l <bpe/merges.txt) - 1))" -eq 143 ]
if [ -z "$NO_REGEX" ]; then
    $PY "$SRC/tests/ref/bpe_train_reference.py" 400 '<|endoftext|>' text.txt random.bin >ref_merges.txt
    check "merges equal the naive reference trainer's" cmp -s bpe/merges.txt ref_merges.txt
else
    skip "BPE training against the reference trainer" "apt-get install $NO_REGEX"
fi
B=(--vocab bpe/vocab.json --merges bpe/merges.txt)
for f in text.txt random.bin; do
    "$BIN" tokenizer encode "${B[@]}" --input $f >$f.tids
    "$BIN" tokenizer decode "${B[@]}" --input $f.tids >$f.tout
    check "trained tokenizer round trip of $f" cmp -s $f $f.tout
done
check "trained tokenizer compresses text ($(wc -w <text.txt.tids) ids for $(wc -c <text.txt) bytes)" \
    [ "$(wc -w <text.txt.tids)" -lt "$(($(wc -c <text.txt) / 2))" ]
got=$(printf 'x<|endoftext|>y' | "$BIN" tokenizer encode "${B[@]}" --allow-special | awk '{print $2}')
check "trained special token is id 399 (got $got)" [ "$got" = 399 ]

# ---- bad input
fails() { # fails "description" "stderr regex" cmd...
    local desc=$1 re=$2
    shift 2
    "$@" >out.txt 2>err.txt
    local rc=$?
    if [ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -Eq -- "$re" err.txt; then ok; else
        bad "$desc: rc $rc, stderr: $(head -c 300 err.txt)"
    fi
}
printf '{"a": 0,\n "b": }' >bad.json
fails "bad JSON vocab" "bad.json.*line 2" "$BIN" tokenizer encode --vocab bad.json --merges bpe/merges.txt --input text.txt
{ head -2 bpe/merges.txt; echo 'this line is bad'; } >bad.txt
fails "bad merges line" "bad.txt:3: expected two tokens" "$BIN" tokenizer encode --vocab bpe/vocab.json --merges bad.txt --input text.txt
fails "--vocab without --merges" "--vocab and --merges go together" "$BIN" tokenizer encode --vocab bpe/vocab.json
echo "1 2 400" >ids.txt
fails "decode id beyond the vocabulary" "ids.txt: token id 400 .* not in the vocabulary of 400" "$BIN" tokenizer decode "${B[@]}" --input ids.txt
echo "1 x2" >ids.txt
fails "decode of non-numbers" "ids.txt: expected token ids" "$BIN" tokenizer decode "${B[@]}" --input ids.txt
fails "train without --output" "--output DIR are required" "$BIN" tokenizer train --input text.txt --vocab-size 300
fails "train with a tiny vocabulary" "--vocab-size 100 is out of range" "$BIN" tokenizer train --input text.txt --vocab-size 100 --output o
fails "train on a missing file" "missing.txt" "$BIN" tokenizer train --input missing.txt --vocab-size 300 --output o
fails "unknown subcommand" "unknown subcommand 'encdoe'" "$BIN" tokenizer encdoe
summary
