#!/usr/bin/env bash
# Bad input and usage, end to end through the binary: every mistake must be
# refused before any training starts (well under a second), with a message
# that says what is wrong, a non-zero exit code, and no files left behind.
# Usage: bash tests/test_cli.sh /path/to/lmscale
set -u

NAME=test_cli
# shellcheck source=tests/lib.sh
source "$(dirname "$0")/lib.sh"
need_python
: >"$T/stdout"
: >"$T/stderr"

# Outputs that a refused command must not create.
M=$T/out.metrics.jsonl
S=$T/out.model.bin
MAX_FAIL_S=${MAX_FAIL_S:-3} # generous: the machine may be loaded

# expect_fail "description" "regex for stderr" cmd...
expect_fail() {
    local desc=$1 re=$2
    shift 2
    local t0 t1 rc ms before after
    before=$(find "$T" | sort)
    t0=$(date +%s%N)
    "$@" >"$T/stdout" 2>"$T/stderr"
    rc=$?
    t1=$(date +%s%N)
    ms=$(((t1 - t0) / 1000000))
    local why=""
    [ $rc -ne 0 ] || why="$why exit code 0;"
    [ $rc -lt 128 ] || why="$why killed by a signal (rc $rc);"
    grep -Eq -- "$re" "$T/stderr" || why="$why stderr does not match /$re/;"
    [ ! -e "$M" ] || why="$why created $M;"
    [ ! -e "$S" ] || why="$why created $S;"
    local tmps
    tmps=$(find "$T" -name '*.tmp.*' | head -3)
    [ -z "$tmps" ] || why="$why left temporary files: $tmps;"
    after=$(find "$T" | sort)
    [ "$before" = "$after" ] || why="$why created or removed files: $(diff <(echo "$before") <(echo "$after") | grep '^[<>]' | head -3 | tr '\n' ' ');"
    ! grep -Eq '^step +[0-9]+/' "$T/stdout" || why="$why training started;"
    [ $ms -le $((MAX_FAIL_S * 1000)) ] || why="$why took ${ms} ms;"
    if [ -z "$why" ]; then
        ok
    else
        bad "$desc:$why"
        echo "  command: $*"
        echo "  exit code: $rc"
        sed 's/^/  stderr: /' "$T/stderr" | head -5
    fi
    rm -f "$M" "$S" "$T"/*.tmp.*
}

# expect_ok "description" "regex for stdout" cmd...
expect_ok() {
    local desc=$1 re=$2
    shift 2
    "$@" >"$T/stdout" 2>"$T/stderr"
    local rc=$?
    if [ $rc -eq 0 ] && grep -Eq -- "$re" "$T/stdout"; then
        ok
    else
        bad "$desc: exit code $rc, or stdout does not match /$re/"
        head -3 "$T/stdout" "$T/stderr" | sed 's/^/  /'
    fi
}

# ---- data files (generated here, never from shared data)
DATA=$T/data.txt
for i in $(seq 1 40); do printf 'the quick brown fox %d jumps over the lazy dog.\n' "$i"; done >"$DATA"
EMPTY=$T/empty.txt
: >"$EMPTY"
SHORT=$T/short.txt
printf 'tiny text' >"$SHORT" # 9 tokens < one window of 16 + 1
HIGH=$T/high.txt             # contains 'z' = 122 >= --vocab-size 100
printf 'abcxyz%.0s' $(seq 1 30) >"$HIGH"
LOW=$T/low.txt # only bytes < 100 (digits, punctuation, capitals)
printf 'ABC 123, DEF 456.\n%.0s' $(seq 1 30) >"$LOW"
DIR=$T/adir
mkdir "$DIR"
NOREAD=$T/noread.txt
cp "$DATA" "$NOREAD"
chmod 000 "$NOREAD"
GARBAGE=$T/garbage.bin
head -c 300 /dev/urandom >"$GARBAGE"

TR=(train --model nano --steps 2 --batch-size 2 --seq-len 16 --eval-interval 0 --peak-tflops 1)
TRAIN=("$BIN" "${TR[@]}" --data "$DATA" --metrics "$M" --save-model "$S")

# ---- the flag parser
expect_fail "unknown flag suggests the near name" "unknown flag '--step'.*did you mean '--steps'" \
    "${TRAIN[@]}" --step 3
expect_fail "unknown flag without a near name" "unknown flag '--frobnicate-everything'" \
    "${TRAIN[@]}" --frobnicate-everything
expect_fail "flag missing its value" "--steps needs a value" "${TRAIN[@]}" --steps
expect_fail "non-integer --steps" "--steps expects an integer, got '3x'" "${TRAIN[@]}" --steps 3x
expect_fail "empty --steps" "--steps expects an integer" "${TRAIN[@]}" --steps=
expect_fail "non-number --lr" "--lr expects a finite number" "${TRAIN[@]}" --lr fast
expect_fail "infinite --eps" "--eps expects a finite number" "${TRAIN[@]}" --eps inf
expect_fail "negative --seed" "--seed expects a non-negative integer" "${TRAIN[@]}" --seed -1
expect_fail "value for a boolean flag" "--quiet takes no value" "${TRAIN[@]}" --quiet=yes
expect_fail "stray positional argument" "unexpected argument 'data.txt'" "${TRAIN[@]}" data.txt

# ---- model shape
expect_fail "--num-heads not dividing --hidden-size" "--num-heads 3 does not divide --hidden-size 64" \
    "${TRAIN[@]}" --num-heads 3 --hidden-size 64
expect_fail "--num-layers 0" "--num-layers 0" "${TRAIN[@]}" --num-layers 0
expect_fail "unknown --model" "--model 'gpt5' is not a known preset" "${TRAIN[@]}" --model gpt5
expect_fail "--seq-len above the model maximum" "--seq-len 200 is above the model's maximum.*128" \
    "${TRAIN[@]}" --seq-len 200
expect_fail "--batch-size not divisible by --micro-batch-size" \
    "--batch-size 6 is not divisible by --micro-batch-size 4" \
    "${TRAIN[@]}" --batch-size 6 --micro-batch-size 4
expect_fail "--steps 0" "--steps 0 must be at least 1" "${TRAIN[@]}" --steps 0

# ---- data
expect_fail "missing data file" "cannot open '$T/missing.txt'" \
    "$BIN" "${TR[@]}" --data "$T/missing.txt" --metrics "$M" --save-model "$S"
expect_fail "no --data" "--data FILE is required" "$BIN" "${TR[@]}" --metrics "$M" --save-model "$S"
expect_fail "empty data file" "'$EMPTY' is empty" \
    "$BIN" "${TR[@]}" --data "$EMPTY" --metrics "$M" --save-model "$S"
expect_fail "a directory as data file" "directory '$DIR' holds no training token shards" \
    "$BIN" "${TR[@]}" --data "$DIR" --metrics "$M" --save-model "$S"
if [ ! -r "$NOREAD" ]; then
    expect_fail "unreadable data file" "cannot open '$NOREAD'.*[Pp]ermission denied" \
        "$BIN" "${TR[@]}" --data "$NOREAD" --metrics "$M" --save-model "$S"
elif [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
    # root reads a chmod 000 file: this one check runs as nobody
    chmod o+x "$T"
    expect_fail "unreadable data file (as nobody)" "cannot open '$NOREAD'.*[Pp]ermission denied" \
        setpriv --reuid=65534 --regid=65534 --clear-groups "$BIN" "${TR[@]}" --data "$NOREAD" --metrics "$M" --save-model "$S"
    chmod o-x "$T"
else
    skip "the unreadable-data-file check ($(id -un) reads a chmod 000 file)" "run it as an ordinary user, or as root with setpriv (util-linux)"
fi
expect_fail "data shorter than one window" "holds 9 tokens, fewer than one window of --seq-len 16" \
    "$BIN" "${TR[@]}" --data "$SHORT" --metrics "$M" --save-model "$S"
expect_fail "token ids >= the vocabulary" "token id 1[0-9][0-9].*vocabulary of 100" \
    "$BIN" "${TR[@]}" --data "$HIGH" --vocab-size 100 --metrics "$M" --save-model "$S"
expect_fail "validation data with ids >= the vocabulary" "'$HIGH' has token id .*vocabulary of 100" \
    "$BIN" "${TR[@]}" --data "$LOW" --val-data "$HIGH" --vocab-size 100 --metrics "$M" --save-model "$S"

# ---- optimiser and run options
expect_fail "unknown --lr-schedule" "--lr-schedule 'cosinus' is not known.*constant, cosine or linear" \
    "${TRAIN[@]}" --lr-schedule cosinus
expect_fail "unknown --data-order" "--data-order 'shuffled' is not known" "${TRAIN[@]}" --data-order shuffled
expect_fail "unknown --backend" "--backend 'tpu' is not known" "${TRAIN[@]}" --backend tpu
expect_fail "--lr 0" "--lr 0 must be a positive number" "${TRAIN[@]}" --lr 0
expect_fail "negative --lr" "--lr -0.001 must be a positive number" "${TRAIN[@]}" --lr -0.001
expect_fail "--min-lr above --lr" "--min-lr 0.1 must be between 0 and --lr" "${TRAIN[@]}" --min-lr 0.1
expect_fail "negative --grad-clip" "--grad-clip -1 must not be negative" "${TRAIN[@]}" --grad-clip -1
expect_fail "--beta2 1" "--beta2 1 must be in \[0, 1\)" "${TRAIN[@]}" --beta2 1
expect_fail "--val-fraction 0.9" "--val-fraction 0.9 must be in" "${TRAIN[@]}" --val-fraction 0.9
expect_fail "--metrics into a nonexistent directory" "cannot open --metrics file '$T/nodir/m.jsonl'" \
    "$BIN" "${TR[@]}" --data "$DATA" --metrics "$T/nodir/m.jsonl" --save-model "$S"
[ ! -e "$T/nodir" ] && ok || bad "--metrics into a nonexistent directory created it"
expect_fail "--save-model into a nonexistent directory" "cannot create '$T/nodir/model.bin.tmp.[0-9]+'" \
    "$BIN" "${TR[@]}" --data "$DATA" --metrics "$M" --save-model "$T/nodir/model.bin"
[ ! -e "$T/nodir" ] && ok || bad "--save-model into a nonexistent directory created it"

# ---- subcommands
expect_fail "unknown subcommand" "unknown command 'trian'" "$BIN" trian --data "$DATA"
expect_fail "no subcommand" "usage: lmscale <command>" "$BIN"
expect_fail "eval without --data" "--data FILE is required" "$BIN" eval --model nano
expect_fail "eval --load on a garbage file" "'$GARBAGE' is not an lmscale model file" \
    "$BIN" eval --load "$GARBAGE" --data "$DATA"
expect_fail "eval --load on a missing file" "cannot open model file '$T/nomodel.bin'" \
    "$BIN" eval --load "$T/nomodel.bin" --data "$DATA"
expect_fail "eval with an unknown flag" "unknown flag '--dta'.*did you mean '--data'" \
    "$BIN" eval --model nano --dta "$DATA"
expect_fail "eval --seq-len above the maximum" "--seq-len 500 is above the model's maximum 128" \
    "$BIN" eval --model nano --data "$DATA" --seq-len 500
expect_fail "eval on ids >= the vocabulary" "token id .*vocabulary of 100" \
    "$BIN" eval --model nano --vocab-size 100 --data "$HIGH" --seq-len 16
expect_fail "generate --top-p 0" "--top-p in \(0, 1\]" "$BIN" generate --model nano --top-p 0
expect_fail "generate --temperature -1" "--temperature >= 0" "$BIN" generate --model nano --temperature -1
expect_fail "generate --load on a garbage file" "'$GARBAGE' is not an lmscale model file" \
    "$BIN" generate --load "$GARBAGE" --prompt hi
expect_fail "demo --digits 0" "--digits must be in 1..9" "$BIN" demo --digits 0
expect_fail "demo unknown flag" "unknown flag '--stpes'.*did you mean '--steps'" "$BIN" demo --stpes 3

# ---- usage
expect_ok "lmscale --help" "usage: lmscale <command>" "$BIN" --help
expect_ok "lmscale train --help" "usage: lmscale train" "$BIN" train --help
expect_ok "lmscale train --help lists --micro-batch-size" "--micro-batch-size" "$BIN" train --help
expect_ok "lmscale eval --help" "usage: lmscale eval" "$BIN" eval --help
expect_ok "lmscale generate --help" "usage: lmscale generate" "$BIN" generate --help
expect_ok "lmscale demo --help" "usage: lmscale demo" "$BIN" demo --help
expect_ok "--help wins over bad flags before it" "usage: lmscale train" "$BIN" train --steps 3 --help
expect_ok "lmscale --version" "^lmscale [0-9]+\.[0-9]+" "$BIN" --version

# ---- a tiny training run: the step lines and the metrics file
RUN_M=$T/run.metrics.jsonl
"$BIN" train --model nano --data "$DATA" --steps 3 --batch-size 2 --seq-len 16 --metrics "$RUN_M" \
    >"$T/run.out" 2>"$T/run.err"
rc=$?
[ $rc -eq 0 ] && ok || {
    bad "tiny training run: exit code $rc"
    sed 's/^/  /' "$T/run.err" | head -5
}
grep -E '^step +[0-9]+/[0-9]+ \| loss ' "$T/run.out" >"$T/steps"
n=$(wc -l <"$T/steps")
[ "$n" -eq 3 ] && ok || bad "expected 3 step lines, got $n"
while IFS= read -r line; do
    missing=""
    for f in 'loss [0-9.]+' 'lr [0-9.e+-]+' 'norm [0-9.]+' '[0-9.]+ ms' '[0-9]+ tok/s' 'MFU +[0-9.]+%' \
        'ETA [0-9hms]+'; do
        echo "$line" | grep -Eq -- "$f" || missing="$missing /$f/"
    done
    [ -z "$missing" ] && ok || bad "step line lacks$missing: $line"
done <"$T/steps"
if [ -f "$RUN_M" ]; then
    n=$(wc -l <"$RUN_M")
    [ "$n" -eq 3 ] && ok || bad "metrics file has $n lines, expected 3"
    if $PY -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' "$RUN_M"; then ok; else
        bad "metrics file is not one JSON object per line"
    fi
    if $PY - "$RUN_M" <<'EOF'; then ok; else bad "metrics lines lack keys or have wrong values"; fi
import json, math, sys
need = ["step", "loss", "lr", "grad_norm", "step_ms", "tokens_per_s", "mfu"]
rows = [json.loads(l) for l in open(sys.argv[1])]
bad = 0
for i, r in enumerate(rows):
    miss = [k for k in need if k not in r]
    if miss:
        print("  line %d lacks %s" % (i + 1, miss)); bad = 1
        continue
    if r["step"] != i + 1:
        print("  line %d has step %r" % (i + 1, r["step"])); bad = 1
    if not all(isinstance(r[k], (int, float)) and math.isfinite(r[k]) for k in need):
        print("  line %d has a non-finite value: %r" % (i + 1, r)); bad = 1
    if not (r["loss"] > 0 and r["lr"] > 0 and r["step_ms"] > 0 and r["tokens_per_s"] > 0 and r["mfu"] >= 0):
        print("  line %d has implausible values: %r" % (i + 1, r)); bad = 1
sys.exit(bad)
EOF
else
    bad "no metrics file written"
fi
[ -z "$(find "$T" -name '*.tmp.*')" ] && ok || bad "temporary files left after training"

summary
