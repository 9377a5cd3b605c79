#!/usr/bin/env bash
# `generate --tp N` under mpirun gives the tokens of one process: a trained
# model with 4 heads (byte tokens, so the text is the token sequence),
# greedy and sampled (temperature, top-k, top-p, each with a seed), with
# the KV cache and without it, at tp 2 and tp 4; an untrained model from
# the seed at tp 2. Only rank 0 prints. Bad layouts fail with one message
# naming --tp and every rank exiting non-zero.
# Usage: bash tests/test_tp_generate.sh /path/to/lmscale
set -u
NAME=test_tp_generate
MPI=$(cd "$(dirname "$0")" && pwd)/mpirun.sh # before lib.sh changes directory
# shellcheck source=tests/lib.sh
source "$(dirname "$0")/lib.sh"
export OMP_NUM_THREADS=1

for i in $(seq 1 400); do echo "line $i: the quick brown fox jumps over the lazy dog; $((i * 7919 % 1000))"; done >"$T/data.txt"
"$BIN" train --data "$T/data.txt" --model nano --num-heads 4 --steps 60 --seq-len 32 --threads 1 --lr 3e-3 \
    --eval-interval 0 --quiet --batch-size 8 --save-model "$T/m.bin" >"$T/train.out" 2>&1 ||
    bad "training the model failed: $(tail -2 "$T/train.out")"

# same_tokens label np generate-args...: the output of np ranks with --tp np equals one process's
same_tokens() {
    local label=$1 np=$2
    shift 2
    "$BIN" generate --threads 1 "$@" >"$T/one.txt" 2>"$T/one.err" || { bad "$label: one process failed: $(tail -2 "$T/one.err")"; return; }
    if ! bash "$MPI" "$np" "$BIN" generate --threads 1 --tp "$np" "$@" >"$T/tp.txt" 2>"$T/tp.err"; then
        bad "$label: --tp $np failed: $(tail -2 "$T/tp.err")"
        return
    fi
    local n
    n=$(grep -c "generated" "$T/tp.err")
    if cmp -s "$T/one.txt" "$T/tp.txt" && [ "$(wc -c <"$T/one.txt")" -gt 20 ] && [ "$n" -eq 1 ]; then
        echo "  $label, tp=$np: $(($(wc -c <"$T/tp.txt") - 1)) bytes, the same as one process: $(head -c 60 "$T/tp.txt" | tr '\n' ' ')"
        ok
    else
        bad "$label, tp=$np: '$(head -c 80 "$T/tp.txt")' ($n status lines), one process: '$(head -c 80 "$T/one.txt")'"
    fi
}
M=(--load "$T/m.bin" --prompt "line 12" --max-new-tokens 80)
for np in 2 4; do
    same_tokens "greedy" "$np" "${M[@]}" --temperature 0
    same_tokens "sampled (temperature 0.8, seed 7)" "$np" "${M[@]}" --temperature 0.8 --seed 7
    same_tokens "sampled (top-k 20, top-p 0.9, seed 3)" "$np" "${M[@]}" --temperature 1 --top-k 20 --top-p 0.9 --seed 3
done
same_tokens "greedy without the KV cache" 2 "${M[@]}" --temperature 0 --no-kv-cache
same_tokens "sampled without the KV cache" 2 "${M[@]}" --temperature 0.9 --seed 11 --no-kv-cache
same_tokens "untrained model from the seed, sampled" 2 --model nano --num-heads 4 --prompt "abc" --max-new-tokens 40 --seed 5

# bad layouts: one message naming --tp and the fix, every rank non-zero
expect_fail() { # description regex np args...
    local desc=$1 re=$2 np=$3
    shift 3
    if bash "$MPI" "$np" "$BIN" generate "$@" >"$T/f.out" 2>"$T/f.err"; then bad "$desc: succeeded"; return; fi
    grep -Eq -- "$re" "$T/f.err" && ok || bad "$desc: stderr does not match /$re/: $(head -3 "$T/f.err")"
    local n
    n=$(grep -c "lmscale generate: error" "$T/f.err")
    [ "$n" -eq 1 ] && ok || bad "$desc: the error was printed $n times (want once, by rank 0)"
}
expect_fail "heads not divisible by tp" "--tp 3 does not divide the 4 attention heads" 3 "${M[@]}" --tp 3
expect_fail "tp above the heads" "--tp 8 is more than the 4 attention heads" 8 "${M[@]}" --tp 8
expect_fail "job size is not tp" "--tp 2 splits the model over the job's processes, and the job has 4: launch it with mpirun -np 2" 4 "${M[@]}" --tp 2
if "$BIN" generate "${M[@]}" --tp 2 >"$T/f.out" 2>"$T/f.err"; then
    bad "--tp 2 without mpirun: succeeded"
else
    grep -q "the job has 1: launch it with mpirun -np 2" "$T/f.err" && ok || bad "--tp 2 without mpirun: $(head -2 "$T/f.err")"
fi

summary
