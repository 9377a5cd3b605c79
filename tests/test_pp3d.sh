#!/usr/bin/env bash
# The 3D layout under mpirun (docs/parallelism.md, "Pipeline parallelism",
# "The 3D layout"): pipeline stages whose pieces are tensor-parallel, with
# data parallelism, ZeRO-1 over each stage's units (the distributed
# optimizer) and gradient accumulation. For a fixed global batch the 20-step
# losses of tp2 x pp2 (each schedule, with and without sequence
# parallelism), dp2 x tp2 x pp2 (8 ranks; accumulation, ZeRO-1) and
# dp x pp with ZeRO-1 match the one-process run within relative 1e-5 (fp32,
# clipping active); every rank logs the same losses; each stage's AdamW
# state under ZeRO-1 is its units' / dp; at tp 2 x pp 2 each rank's parameters and gradients are
# its stage's tensors' tp part. Checkpoints saved at tp2 x pp2 and
# at dp2 x tp2 x pp2 with ZeRO-1 resume at one process, pp 1, pp 4 and dp 4,
# and one saved at one process resumes at dp2 x tp2 x pp2, with the
# uninterrupted losses (1e-6); validation and --save-model at dp2 x tp2 x pp2
# give the one-process values; --recompute selective and full give the
# losses of tp2 x pp2 without it, bit for bit; bad layouts fail before any
# compute.
# Usage: bash tests/test_pp3d.sh /path/to/lmscale
set -u
NAME=test_pp3d
MPI=$(cd "$(dirname "$0")" && pwd)/mpirun.sh # before lib.sh changes directory
# shellcheck source=tests/lib.sh
source "$(dirname "$0")/lib.sh"
need_python
export OMP_NUM_THREADS=1

for i in $(seq 1 400); do echo "line $i: the quick brown fox jumps over the lazy dog; $((i * 7919 % 1000))"; done >"$T/data.txt"
# 4 layers of 4 heads (tp up to 4, pp up to 4); 4 micro-batches of 2 per step at dp 1
COMMON=(train --data "$T/data.txt" --model nano --num-heads 4 --num-layers 4 --steps 20 --batch-size 8
        --micro-batch-size 2 --seq-len 16 --threads 1 --lr 2e-3 --grad-clip 0.5 --warmup-steps 3 --eval-interval 0
        --data-order sequential --quiet --peak-tflops 1)

"$BIN" "${COMMON[@]}" --metrics "$T/ref.jsonl" >"$T/ref.out" 2>&1 || bad "one-process run failed: $(tail -2 "$T/ref.out")"

run_case() { # label np flags...
    local label=$1 np=$2
    shift 2
    rm -f "$T/c.jsonl"
    if bash "$MPI" "$np" "$BIN" "${COMMON[@]}" "$@" --metrics "$T/c.jsonl" >"$T/c.out" 2>&1; then
        compare_losses "${REF:-$T/ref.jsonl}" "$T/c.jsonl" "$label" "" "${TOL:-1e-5}" && ok ||
            bad "$label: losses differ from the reference run"
    else
        bad "$label: run failed: $(grep -m3 -i error "$T/c.out")"
    fi
}
run_case "tp=2 x pp=2 1f1b" 4 --tp 2 --pp 2
run_case "tp=2 x pp=2 gpipe --sequence-parallel" 4 --tp 2 --pp 2 --pp-schedule gpipe --sequence-parallel
run_case "tp=2 x pp=2 interleaved v=2" 4 --tp 2 --pp 2 --virtual-stages 2
run_case "dp=2 x tp=2 x pp=2 micro=1 (4 micro-batches)" 8 --tp 2 --pp 2 --dp 2 --micro-batch-size 1
run_case "dp=2 x tp=2 x pp=2 zero=1" 8 --tp 2 --pp 2 --dp 2 --zero 1
run_case "dp=2 x tp=2 x pp=2 zero=1 --sequence-parallel micro=1" 8 --tp 2 --pp 2 --dp 2 --zero 1 \
    --sequence-parallel --micro-batch-size 1
run_case "pp=2 zero=1" 2 --pp 2 --zero 1
# --recompute under tp x pp: the losses of the same layout without it, bit for bit (tolerance 0)
rm -f "$T/tpp.jsonl"
bash "$MPI" 4 "$BIN" "${COMMON[@]}" --tp 2 --pp 2 --metrics "$T/tpp.jsonl" >"$T/tpp.out" 2>&1 || bad "tp=2 x pp=2 run failed"
for rc in selective full; do
    REF=$T/tpp.jsonl TOL=0 run_case "tp=2 x pp=2 --recompute $rc vs without" 4 --tp 2 --pp 2 --recompute $rc
done
run_case "dp=2 x pp=2 zero=1 gpipe" 4 --pp 2 --dp 2 --zero 1 --pp-schedule gpipe
# dp 3 does not divide the units: padded shards
"$BIN" "${COMMON[@]}" --batch-size 6 --micro-batch-size 1 --metrics "$T/ref6.jsonl" >"$T/ref6.out" 2>&1 ||
    bad "one-process run (batch 6) failed"
REF=$T/ref6.jsonl run_case "dp=3 x pp=2 zero=1 (batch 6)" 6 --pp 2 --dp 3 --zero 1 --batch-size 6 --micro-batch-size 1

# every rank logs the same losses; under ZeRO-1 a stage's AdamW state is its own units' (the last
# stage's wte copy included) over dp: 8 bytes x ceil(n/dp) per unit
rm -f "$T"/all.jsonl*
if bash "$MPI" 4 "$BIN" "${COMMON[@]}" --pp 2 --dp 2 --zero 1 --steps 3 --log-all-ranks --metrics "$T/all.jsonl" \
    >"$T/all.out" 2>&1; then
    $PY - "$T"/all.jsonl "$T"/all.jsonl.rank{1,2,3} <<'EOF' && ok || bad "dp=2 x pp=2 zero=1: per-rank losses or AdamW bytes"
import json, math, sys
rows = [[json.loads(l) for l in open(p)] for p in sys.argv[1:]]
losses = {tuple(r["loss"] for r in rs) for rs in rows}
assert len(losses) == 1, losses
L, C, maxT, Vp, dp = 4, 64, 128, 320, 2
block, embed, wte, lnf = 12 * C * C + 13 * C, (Vp + maxT) * C, Vp * C, 2 * C
part = lambda n: math.ceil(n / dp)
want = [8 * (part(embed) + 2 * part(block)) / 1048576, 8 * (part(wte) + 2 * part(block) + part(lnf)) / 1048576]
got = [rs[0]["optim_mb"] for rs in rows]  # world ranks 0, 1 (stage 0), 2, 3 (stage 1)
print("  optim_mb per rank %s, analytic %s" % (got, ["%.3f" % w for w in want]))
assert all(abs(g - want[r // 2]) < 1e-3 for r, g in enumerate(got)), (got, want)
EOF
else
    bad "--log-all-ranks run failed: $(grep -m3 -i error "$T/all.out")"
fi

# tp 2 x pp 2: each rank holds its stage's tensors' tp part (param_mb, grad_mb from the shapes)
rm -f "$T"/tpm.jsonl*
if bash "$MPI" 4 "$BIN" "${COMMON[@]}" --tp 2 --pp 2 --steps 2 --log-all-ranks --metrics "$T/tpm.jsonl" \
    >"$T/tpm.out" 2>&1; then
    $PY - "$T"/tpm.jsonl "$T"/tpm.jsonl.rank{1,2,3} <<'EOF' && ok || bad "tp=2 x pp=2: per-rank parameter memory"
import json, sys
L, C, maxT, V, tp = 4, 64, 128, 257, 2
Vp = (V + 64 * tp - 1) // (64 * tp) * (64 * tp)  # padded to a multiple of 64 tp
# a block's tp part: LayerNorms and the row-parallel layers' biases whole, the rest split
block = 2 * C + 3 * C * C // tp + 3 * C // tp + C * C // tp + C + 2 * C + 4 * C * C // tp + 4 * C // tp + 4 * C * C // tp + C
wte = Vp // tp * C
want = [wte + maxT * C + L // 2 * block, L // 2 * block + 2 * C + wte]  # stage 0; the last with ln_f, wte copy
rows = [json.loads(open(p).readlines()[-1]) for p in sys.argv[1:]]  # world ranks 0, 1 (stage 0), 2, 3 (stage 1)
got = [(r["param_mb"], r["grad_mb"]) for r in rows]
print("  tp=2 x pp=2 param_mb/grad_mb per rank %s, analytic %s" % (got, ["%.3f" % (4 * w / 1048576) for w in want]))
assert all("%.3f" % g == "%.3f" % (4 * want[k // 2] / 1048576) for k, gs in enumerate(got) for g in gs), got
EOF
else
    bad "tp=2 x pp=2 --log-all-ranks run failed: $(grep -m3 -i error "$T/tpm.out")"
fi

# resharding: steps 11..20 after a checkpoint at step 10 are the one-process run's (1e-6)
resume_cases() { # checkpoint label "np flags"...
    local ck=$1 label=$2 how np flags
    shift 2
    for how in "$@"; do
        read -r np flags <<<"$how"
        rm -f "$T/r.jsonl"
        # shellcheck disable=SC2086
        bash "$MPI" "$np" "$BIN" "${COMMON[@]}" $flags --resume "$ck" --metrics "$T/r.jsonl" >"$T/r.out" 2>&1 ||
            bad "$label, resumed at np=$np $flags: failed: $(grep -m3 -i error "$T/r.out")"
        compare_losses "$T/ref.jsonl" "$T/r.jsonl" "$label, resumed at np=$np $flags" 11-20 1e-6 && ok ||
            bad "$label, resumed at np=$np $flags: steps 11-20 differ from the one-process run"
    done
}
if bash "$MPI" 4 "$BIN" "${COMMON[@]}" --tp 2 --pp 2 --save "$T/ck" --stop-after 10 >"$T/s.out" 2>&1; then
    resume_cases "$T/ck/step-00000010" "saved at tp=2 x pp=2" "1 " "4 --tp 2" "4 --pp 4" "4 --dp 4" \
        "8 --tp 2 --pp 2 --dp 2 --zero 1"
else
    bad "tp=2 x pp=2 run with --save failed: $(grep -m3 -i error "$T/s.out")"
fi
if bash "$MPI" 8 "$BIN" "${COMMON[@]}" --tp 2 --pp 2 --dp 2 --zero 1 --save "$T/ckz" --stop-after 10 >"$T/s.out" 2>&1; then
    resume_cases "$T/ckz/step-00000010" "saved at dp=2 x tp=2 x pp=2 zero=1" "1 " "4 --pp 4" "4 --dp 4 --zero 1"
else
    bad "dp=2 x tp=2 x pp=2 zero=1 run with --save failed: $(grep -m3 -i error "$T/s.out")"
fi
if "$BIN" "${COMMON[@]}" --save "$T/ck1" --stop-after 10 >"$T/s.out" 2>&1; then
    resume_cases "$T/ck1/step-00000010" "saved at one process" "8 --tp 2 --pp 2 --dp 2" \
        "8 --tp 2 --pp 2 --dp 2 --zero 1 --sequence-parallel"
else
    bad "one-process run with --save failed"
fi

# validation (each tp group runs it, over the stages' gathered layers) and --save-model (the
# stages' layers and the tp parts put together) give the one-process values
"$BIN" "${COMMON[@]}" --eval-interval 10 --save-model "$T/ref.bin" --metrics "$T/vref.jsonl" >"$T/v1.out" 2>&1 ||
    bad "one-process run with validation failed"
if bash "$MPI" 8 "$BIN" "${COMMON[@]}" --tp 2 --pp 2 --dp 2 --zero 1 --sequence-parallel --eval-interval 10 \
    --save-model "$T/pp.bin" --metrics "$T/vpp.jsonl" >"$T/v2.out" 2>&1; then
    $PY - "$T/vref.jsonl" "$T/vpp.jsonl" <<'EOF' && ok || bad "validation at dp=2 x tp=2 x pp=2 differs from one process"
import json, sys
a, b = ({r["step"]: r["val_loss"] for r in map(json.loads, open(p)) if "val_loss" in r} for p in sys.argv[1:3])
assert sorted(a) == sorted(b) == [10, 20], (a, b)
worst = max(abs(a[k] - b[k]) / a[k] for k in a)
print("  validation at steps 10 and 20: worst relative difference %.2e" % worst)
assert worst < 1e-5
EOF
    e1=$("$BIN" eval --load "$T/ref.bin" --data "$T/data.txt" --seq-len 16 --threads 1 2>&1 | grep -o 'loss=[0-9.]*')
    e2=$("$BIN" eval --load "$T/pp.bin" --data "$T/data.txt" --seq-len 16 --threads 1 2>&1 | grep -o 'loss=[0-9.]*')
    [ -n "$e1" ] && $PY -c 'import sys; a, b = (float(x.split("=")[1]) for x in sys.argv[1:3]); sys.exit(abs(a - b) > 2e-4 * a)' "$e1" "$e2" &&
        ok || bad "--save-model at dp=2 x tp=2 x pp=2: eval $e2, the one-process model's $e1"
else
    bad "dp=2 x tp=2 x pp=2 run with validation failed: $(grep -m3 -i error "$T/v2.out")"
fi

# bad layouts: one message, every rank non-zero, before any compute
expect_mpi_fail "world != dp x tp x pp" "the job has 4 processes but --dp 2 x --tp 2 x --pp 2 = 8" 4 \
    "$BIN" "${COMMON[@]}" --tp 2 --pp 2 --dp 2 --metrics "$T/never.jsonl"
expect_mpi_fail "world not a multiple of tp x pp" "the job has 6 processes, not a multiple of --tp 2 x --pp 2" 6 \
    "$BIN" "${COMMON[@]}" --tp 2 --pp 2 --metrics "$T/never.jsonl"
expect_mpi_fail "ZeRO-2 with pp" "--zero 2 with --pp 2: .*use --zero 1" 4 \
    "$BIN" "${COMMON[@]}" --tp 2 --pp 2 --zero 2 --metrics "$T/never.jsonl"

summary
