#!/usr/bin/env bash
# lmscale estimate and plan from the command line: the seeds' figures, JSON
# output, and bad input explained by the one layout check that train uses
# too (the same message from every command), and layouts that do not fit.
NAME=plan_cli
source "$(dirname "$0")/lib.sh"
need_python

# the message after "error: "
msg() { sed -n 's/^lmscale [a-z]*: error: //p' "$1.err" | head -1; }
same_msg() {
    if [ -n "$(msg "$1")" ] && [ "$(msg "$1")" = "$(msg "$2")" ]; then ok; else
        bad "$1 and $2 explain the same layout differently:"; echo "  $(msg "$1")"; echo "  $(msg "$2")"; fi
}

# the seeds: GPT-3 175B, 300B tokens, 480 GPUs at 140 TFLOP/s, full recompute -> 72.3 days
GPT3=(--num-layers 96 --num-heads 96 --hidden-size 12288 --max-seq-len 2048 --vocab-size 51200 --seq-len 2048
      --batch-size 1536 --dtype bf16 --tp 8 --pp 16 --dp 12 --recompute full)
run seeds "$BIN" estimate "${GPT3[@]}" --params 175e9 --tokens 300e9 --devices 480 --achieved-tflops 140 &&
    { grep -q "72.3 days" seeds.out && ok || bad "175B on 480 GPUs: $(grep days seeds.out)"; }
run seeds-json "$BIN" estimate "${GPT3[@]}" --params 175e9 --tokens 300e9 --devices 480 --achieved-tflops 140 --json &&
    { $PY -c "import json,sys; d=json.load(open('seeds-json.out')); sys.exit(0 if round(d['train_days'],1)==72.3 and d['params']>1.7e11 else 1)" \
        && ok || bad "estimate --json: $(head -c 300 seeds-json.out)"; }

# the same bad layout, the same words from train, estimate and plan
D=$T/d.txt
printf 'hello world, a small text to train on.\n%.0s' $(seq 1 50) > "$D"
expect_fail train-batch "not divisible by --micro-batch-size 4" "$BIN" train --data "$D" --batch-size 6 --micro-batch-size 4 --steps 1
expect_fail est-batch "not divisible by --micro-batch-size 4" "$BIN" estimate --batch-size 6 --micro-batch-size 4
same_msg train-batch est-batch
expect_fail train-seq "above the model's maximum sequence length" "$BIN" train --data "$D" --seq-len 4096 --steps 1
expect_fail est-seq "above the model's maximum sequence length" "$BIN" estimate --seq-len 4096
same_msg train-seq est-seq
expect_fail plan-seq "above the model's maximum sequence length" "$BIN" plan --seq-len 4096
same_msg train-seq plan-seq
expect_fail train-zero "the ZeRO stage must be" "$BIN" train --data "$D" --zero 5 --steps 1
expect_fail est-zero "the ZeRO stage must be" "$BIN" estimate --zero 5
same_msg train-zero est-zero
expect_fail est-heads "--tp 5 does not divide the 12 attention heads" "$BIN" estimate --model gpt2 --tp 5
expect_fail plan-heads "--tp 5 does not divide the 12 attention heads" "$BIN" plan --model gpt2 --tp 5 --devices-per-node 8
same_msg est-heads plan-heads
expect_fail est-pp "--pp 16 is more than the model's 12 layers" "$BIN" estimate --model gpt2 --pp 16
expect_fail plan-pp "--pp 16 is more than the model's 12 layers" "$BIN" plan --model gpt2 --pp 16
same_msg est-pp plan-pp
expect_fail est-world "the job has 6 processes but --dp 2 x --tp 2 x --pp 1 = 4" "$BIN" estimate --world 6 --dp 2 --tp 2
if ! command -v "${LMS_MPIRUN:-mpirun}" >/dev/null; then
    skip "train's world-size message under mpirun" "apt-get install openmpi-bin libopenmpi-dev"
else
    OMP_NUM_THREADS=1 expect_fail train-world "the job has 2 processes but --dp 3" \
        bash "$TESTS_DIR/mpirun.sh" 2 "$BIN" train --data "$D" --dp 3 --steps 1 --threads 1
    expect_fail est-world3 "the job has 2 processes but --dp 3" "$BIN" estimate --world 2 --dp 3
    same_msg train-world est-world3
fi
expect_fail plan-batch "divides --batch-size 7" "$BIN" plan --model gpt2 --batch-size 7 --nodes 2 --micro-batch-size 2

# does not fit: by how much and what would
BIG=(--num-layers 24 --num-heads 16 --hidden-size 2048 --max-seq-len 2048 --vocab-size 51200 --seq-len 2048
     --batch-size 128 --micro-batch-size 16 --dp 8 --dtype bf16)
expect_fail est-fit "over by .*it would fit with .*--recompute full" "$BIN" estimate "${BIG[@]}" --device-memory 80
run est-fits "$BIN" estimate "${BIG[@]}" --recompute full --device-memory 80
expect_fail plan-fit "none of the" "$BIN" plan "${BIG[@]/--dp/--nodes}" --device-memory 1

# plan --json: sorted by step time, every layout within the device memory
run plan-json "$BIN" plan --model gpt2-350m --batch-size 64 --nodes 2 --top 8 --json &&
    { $PY - plan-json.out <<'PYEOF' && ok || bad "plan --json: $(head -c 400 plan-json.out)"; }
import json, sys
d = json.load(open(sys.argv[1]))
top = d["top"]
assert len(top) == 8 and d["layouts_fit"] >= 8
assert all(a["step_s"] <= b["step_s"] for a, b in zip(top, top[1:]))
assert all(r["memory_bytes"] <= d["cluster"]["device_memory_bytes"] for r in top)
assert all(r["dp"] * r["tp"] * r["pp"] == 16 for r in top)
PYEOF
run plan-table "$BIN" plan --model gpt2-350m --batch-size 64 --cluster dgx-h100
summary
