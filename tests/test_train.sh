#!/usr/bin/env bash
# Training behaviour end to end, on tiny models: determinism, seeds,
# gradient accumulation, the loss falling, eval, generate (KV cache vs none,
# seeds) and the two CPU backends agreeing.
# Usage: bash tests/test_train.sh /path/to/lmscale
set -u

NAME=test_train
# shellcheck source=tests/lib.sh
source "$(dirname "$0")/lib.sh"
need_python
# check "description" cmd...: passes when cmd exits 0
check() {
    local desc=$1
    shift
    if "$@"; then ok; else bad "$desc"; fi
}
# losses FILE: the "loss" field of each metrics line, one per line
losses() { $PY -c 'import json,sys; [print(repr(json.loads(l)["loss"])) for l in open(sys.argv[1])]' "$1"; }
# close_losses A B REL: same number of steps and every loss within REL
close_losses() {
    $PY - "$1" "$2" "$3" <<'EOF'
import json, sys
a = [json.loads(l)["loss"] for l in open(sys.argv[1])]
b = [json.loads(l)["loss"] for l in open(sys.argv[2])]
rel = float(sys.argv[3])
if len(a) != len(b) or not a:
    print("  step counts differ: %d vs %d" % (len(a), len(b))); sys.exit(1)
worst = max(abs(x - y) / max(abs(y), 1e-12) for x, y in zip(a, b))
if worst > rel:
    print("  worst relative difference %.3g > %g" % (worst, rel))
    for i, (x, y) in enumerate(zip(a, b)):
        print("  step %d: %.9g vs %.9g" % (i + 1, x, y))
    sys.exit(1)
EOF
}

# ---- data (generated here)
DATA=$T/data.txt
for _ in $(seq 1 60); do
    printf 'one two three four five.\nthe cat sat on the mat.\nhello, world!\n'
done >"$DATA"

# --peak-tflops skips the start-up sgemm measurement; --eval-interval 0 the
# held-out evaluation: neither matters here and both cost time. One thread:
# on a loaded machine OpenMP teams of tiny ops can stall for seconds, and
# the results are not meant to depend on it (determinism is also checked
# with 2 threads).
TH=(--threads 1)
COMMON=(--model nano --data "$DATA" --peak-tflops 1 --eval-interval 0 --quiet "${TH[@]}")

# ---- determinism: the same command twice gives the same bytes
TRAIN=("$BIN" train "${COMMON[@]}" --steps 5 --batch-size 4 --seq-len 32 --lr 1e-3 --seed 11)
run det_a "${TRAIN[@]}" --threads 2 --save-model "$T/A.bin" --metrics "$T/A.jsonl"
run det_b "${TRAIN[@]}" --threads 2 --save-model "$T/B.bin" --metrics "$T/B.jsonl"
check "determinism: model files differ" cmp -s "$T/A.bin" "$T/B.bin"
if [ "$(losses "$T/A.jsonl")" = "$(losses "$T/B.jsonl")" ] && [ -n "$(losses "$T/A.jsonl")" ]; then ok; else
    bad "determinism: losses differ"
    paste <(losses "$T/A.jsonl") <(losses "$T/B.jsonl") | sed 's/^/  /'
fi
[ "$(wc -l <"$T/A.jsonl")" -eq 5 ] && ok || bad "determinism: expected 5 metrics lines"

# ---- a different seed gives a different model (a later flag overrides an earlier one)
run seed_c "${TRAIN[@]}" --threads 2 --seed 12 --save-model "$T/C.bin"
if cmp -s "$T/A.bin" "$T/C.bin"; then bad "--seed 12 gave the same model as --seed 11"; else ok; fi

# ---- gradient accumulation: one micro-batch of 4 == four of 1
ACC=("$BIN" train "${COMMON[@]}" --steps 4 --batch-size 4 --seq-len 32 --lr 1e-3 --seed 5
    --data-order sequential)
run accum_1 "${ACC[@]}" --micro-batch-size 4 --metrics "$T/acc1.jsonl"
run accum_4 "${ACC[@]}" --micro-batch-size 1 --metrics "$T/acc4.jsonl"
check "gradient accumulation: losses differ (rel 1e-5)" close_losses "$T/acc4.jsonl" "$T/acc1.jsonl" 1e-5
run accum_2 "${ACC[@]}" --micro-batch-size 2 --metrics "$T/acc2.jsonl"
check "gradient accumulation (2 x 2): losses differ (rel 1e-5)" close_losses "$T/acc2.jsonl" "$T/acc1.jsonl" 1e-5

# ---- the loss falls on repetitive text
run fall "$BIN" train "${COMMON[@]}" --steps 60 --batch-size 8 --seq-len 32 --lr 3e-3 --seed 1 \
    --metrics "$T/fall.jsonl" --save-model "$T/trained.bin"
if $PY - "$T/fall.jsonl" <<'EOF'; then ok; else bad "loss did not halve in 60 steps"; fi
import json, sys
l = [json.loads(x)["loss"] for x in open(sys.argv[1])]
ok = len(l) == 60 and l[-1] < 0.5 * l[0]
print("  loss %.4f -> %.4f over %d steps" % (l[0], l[-1], len(l)) if l else "  no losses")
sys.exit(0 if ok else 1)
EOF

# ---- eval: the final line, and ppl = exp(loss)
if run eval_trained "$BIN" eval "${TH[@]}" --load "$T/trained.bin" --data "$DATA" --seq-len 64; then
    last=$(tail -n 1 "$T/eval_trained.out")
    if echo "$last" | grep -Eq '^loss=[0-9.]+ ppl=[0-9.]+ tokens=[0-9]+$'; then ok; else
        bad "eval: last line '$last' does not match loss=... ppl=... tokens=..."
    fi
    if $PY - "$last" <<'EOF'; then ok; else bad "eval: ppl is not exp(loss): $last"; fi
import math, re, sys
m = re.match(r"loss=([0-9.]+) ppl=([0-9.]+) tokens=([0-9]+)$", sys.argv[1])
loss, ppl, tok = float(m[1]), float(m[2]), int(m[3])
# tokens: every whole window of 64 (+1 target) in the file
n = 60 * len("one two three four five.\nthe cat sat on the mat.\nhello, world!\n")
sys.exit(0 if abs(ppl - math.exp(loss)) <= 1e-3 * math.exp(loss) and tok == (n - 1) // 64 * 64 and loss < 2.5 else 1)
EOF
fi
# an untrained model is near uniform over the 257 byte ids
if run eval_fresh "$BIN" eval "${TH[@]}" --model nano --data "$DATA" --seq-len 64; then
    last=$(tail -n 1 "$T/eval_fresh.out")
    if $PY -c 'import math,sys; l=float(sys.argv[1].split()[0][5:]); sys.exit(0 if abs(l-math.log(257))<0.3 else 1)' "$last"
    then ok; else bad "untrained eval: '$last', expected loss ~ ln(257) = 5.549"; fi
fi
# without --seq-len, a loaded model evaluates windows of its maximum length,
# in batches of the default size (a regression: this once aborted)
run eval_default_T "$BIN" eval "${TH[@]}" --load "$T/trained.bin" --data "$DATA" &&
    { tail -n 1 "$T/eval_default_T.out" | grep -Eq '^loss=[0-9.]+ ppl=[0-9.]+ tokens=[0-9]+$' && ok ||
        bad "eval --load without --seq-len: $(tail -n 1 "$T/eval_default_T.out")"; }
# --max-batches N stops after N batches of --batch-size windows
run eval_maxb "$BIN" eval "${TH[@]}" --load "$T/trained.bin" --data "$DATA" --seq-len 64 --max-batches 1 --batch-size 2 &&
    { tail -n 1 "$T/eval_maxb.out" | grep -Eq 'tokens=128$' && ok || bad "eval --max-batches 1 --batch-size 2: $(tail -n 1 "$T/eval_maxb.out")"; }

# ---- generate
GEN=("$BIN" generate "${TH[@]}" --load "$T/trained.bin" --prompt "the cat " --max-new-tokens 40)
run gen_kv "${GEN[@]}" --temperature 0
run gen_nokv "${GEN[@]}" --temperature 0 --no-kv-cache
check "generate: greedy output differs with and without the KV cache" cmp -s "$T/gen_kv.out" "$T/gen_nokv.out"
[ "$(head -c 8 "$T/gen_kv.out")" = "the cat " ] && ok || bad "generate: output does not start with the prompt"
[ "$(wc -c <"$T/gen_kv.out")" -ge 30 ] && ok || bad "generate: greedy output too short: $(cat "$T/gen_kv.out")"
grep -q "tokens/s" "$T/gen_kv.err" && ok || bad "generate: stderr lacks tokens/s"
grep -q "tokens/s" "$T/gen_nokv.err" && ok || bad "generate --no-kv-cache: stderr lacks tokens/s"
run gen_s1 "${GEN[@]}" --temperature 1 --seed 1
run gen_s1b "${GEN[@]}" --temperature 1 --seed 1
run gen_s2 "${GEN[@]}" --temperature 1 --seed 2
check "generate: the same seed gave different text" cmp -s "$T/gen_s1.out" "$T/gen_s1b.out"
if cmp -s "$T/gen_s1.out" "$T/gen_s2.out"; then bad "generate: seeds 1 and 2 gave the same text"; else ok; fi
run gen_s1nokv "${GEN[@]}" --temperature 1 --seed 1 --no-kv-cache
check "generate: sampled output differs with and without the KV cache" cmp -s "$T/gen_s1.out" "$T/gen_s1nokv.out"
run gen_topk "${GEN[@]}" --temperature 1 --top-k 1 --seed 3
check "generate: --top-k 1 differs from greedy" cmp -s "$T/gen_topk.out" "$T/gen_kv.out"

# ---- the reference and fast backends agree
BE=("$BIN" train "${COMMON[@]}" --steps 3 --batch-size 2 --seq-len 32 --lr 1e-3 --seed 3 --data-order sequential)
run be_ref "${BE[@]}" --backend ref --metrics "$T/ref.jsonl"
run be_cpu "${BE[@]}" --backend cpu --metrics "$T/cpu.jsonl"
check "backends: ref and cpu losses differ (rel 1e-4)" close_losses "$T/cpu.jsonl" "$T/ref.jsonl" 1e-4

summary
