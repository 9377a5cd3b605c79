#!/usr/bin/env bash
# Tensor parallelism end to end under mpirun: for a fixed global batch the
# losses of the first 20 steps at tp 2 and tp 4, dp 2 x tp 2, each with and
# without --sequence-parallel, dp 2 x tp 2 with ZeRO 1 and 3, and with
# gradient accumulation, match the one-process run within relative 1e-5
# (fp32, clipping active). Checkpoints saved at tp 2 and at dp 2 x tp 2 with
# ZeRO 3 resume at tp 1, tp 4 and dp 4 with the one-process losses of steps
# 11..20 (1e-6); `export --hf` of a tp checkpoint gives the tensors of the
# one-process run's export. --recompute selective and full give the losses
# and gradient norms of the same layout without it, bit for bit. The
# per-rank parameter, gradient and optimizer bytes in the metrics are the
# blocks' 1/tp plus the replicated parts. Bad
# layouts fail before any compute: one message naming the flag, every rank
# non-zero. Usage: bash tests/test_tp_train.sh /path/to/lmscale
set -u
NAME=test_tp_train
MPI=$(cd "$(dirname "$0")" && pwd)/mpirun.sh # before lib.sh changes directory
# shellcheck source=tests/lib.sh
source "$(dirname "$0")/lib.sh"
need_python numpy
export OMP_NUM_THREADS=1

for i in $(seq 1 400); do echo "line $i: the quick brown fox jumps over the lazy dog; $((i * 7919 % 1000))"; done >"$T/data.txt"
# 4 heads of 16 channels: tp up to 4
COMMON=(train --data "$T/data.txt" --model nano --num-heads 4 --steps 20 --seq-len 16 --threads 1 --lr 2e-3
        --grad-clip 0.5 --warmup-steps 3 --eval-interval 0 --data-order sequential --quiet --peak-tflops 1
        --batch-size 8)

# run_case label np extra-flags...
run_case() {
    local label=$1 np=$2
    shift 2
    rm -f "$T/z.jsonl"
    if bash "$MPI" "$np" "$BIN" "${COMMON[@]}" "$@" --metrics "$T/z.jsonl" >"$T/z.out" 2>&1; then
        compare_losses "$T/ref.jsonl" "$T/z.jsonl" "$label" && ok || bad "$label: losses differ from the one-process run"
    else
        bad "$label: run failed: $(tail -3 "$T/z.out")"
    fi
}

"$BIN" "${COMMON[@]}" --metrics "$T/ref.jsonl" >"$T/ref.out" 2>&1 || bad "one-process run failed: $(tail -2 "$T/ref.out")"
for sp in "" --sequence-parallel; do
    run_case "tp=2 $sp" 2 --tp 2 $sp
    run_case "tp=4 $sp" 4 --tp 4 $sp
    run_case "dp=2 x tp=2 $sp" 4 --tp 2 $sp
done
run_case "dp=2 x tp=2 zero=1" 4 --tp 2 --zero 1
run_case "dp=2 x tp=2 zero=3" 4 --tp 2 --zero 3
run_case "dp=2 x tp=2 zero=3 --sequence-parallel" 4 --tp 2 --zero 3 --sequence-parallel
run_case "tp=2 micro=2 (4 accumulation steps)" 2 --tp 2 --micro-batch-size 2
run_case "dp=2 x tp=2 zero=2 micro=1 (4 accumulation steps)" 4 --tp 2 --zero 2 --micro-batch-size 1

# --recompute under tp: the same losses and gradient norms, bit for bit, as the same layout without it
# (selective recomputes the rank's heads' attention and its GELU columns; full the split block with
# its collectives)
same_bits() { # label np flags...
    local label=$1 np=$2
    shift 2
    rm -f "$T/n.jsonl" "$T/r.jsonl"
    if ! bash "$MPI" "$np" "$BIN" "${COMMON[@]}" "$@" --metrics "$T/n.jsonl" >"$T/n.out" 2>&1; then
        bad "$label: run without --recompute failed: $(tail -2 "$T/n.out")"
        return
    fi
    for rc in selective full; do
        rm -f "$T/r.jsonl"
        if ! bash "$MPI" "$np" "$BIN" "${COMMON[@]}" "$@" --recompute $rc --metrics "$T/r.jsonl" >"$T/r.out" 2>&1; then
            bad "$label --recompute $rc: run failed: $(tail -2 "$T/r.out")"
            continue
        fi
        $PY - "$T/n.jsonl" "$T/r.jsonl" "$label --recompute $rc" <<'EOF' && ok || bad "$label --recompute $rc: not bit-identical to the run without it"
import json, sys
a, b = ([(r["loss"], r["grad_norm"]) for r in map(json.loads, open(p))] for p in sys.argv[1:3])
print("  %s: %d steps, losses and gradient norms %s" % (sys.argv[3], len(b), "bit-identical" if a == b else "differ"))
sys.exit(0 if a == b and len(a) == 20 else 1)
EOF
    done
    compare_losses "$T/ref.jsonl" "$T/r.jsonl" "$label --recompute full vs one process" && ok ||
        bad "$label --recompute full: losses differ from the one-process run"
}
same_bits "tp=2" 2 --tp 2
same_bits "dp=2 x tp=2 --sequence-parallel zero=3" 4 --tp 2 --sequence-parallel --zero 3

# validation (every rank of a tp group runs it) and --save-model (the parts gathered): the
# one-process validation losses, and `eval` of the saved model gives the one-process model's loss
# (validation batches are --micro-batch-size sequences: the same 4 in both runs)
"$BIN" "${COMMON[@]}" --steps 10 --eval-interval 5 --micro-batch-size 4 --save-model "$T/m1.bin" --metrics "$T/v1.jsonl" >"$T/v1.out" 2>&1 ||
    bad "one-process validation run failed: $(tail -2 "$T/v1.out")"
if bash "$MPI" 4 "$BIN" "${COMMON[@]}" --steps 10 --eval-interval 5 --tp 2 --sequence-parallel --save-model "$T/m2.bin" \
    --metrics "$T/v2.jsonl" >"$T/v2.out" 2>&1; then
    $PY - "$T/v1.jsonl" "$T/v2.jsonl" <<'EOF' && ok || bad "dp=2 x tp=2: validation losses differ from the one-process run"
import json, sys
v = [{r["step"]: r["val_loss"] for r in map(json.loads, open(p)) if "val_loss" in r} for p in sys.argv[1:]]
worst = max(abs(v[1][k] - v[0][k]) / v[0][k] for k in v[0]) if v[0] and v[0].keys() == v[1].keys() else 1
print("  dp=2 x tp=2 validation at steps %s: worst relative difference %.2e" % (sorted(v[1]), worst))
sys.exit(0 if worst < 1e-5 else 1)
EOF
    l1=$("$BIN" eval --load "$T/m1.bin" --data "$T/data.txt" --seq-len 16 --threads 1 2>&1 | grep -oE 'loss=[0-9.]+')
    l2=$("$BIN" eval --load "$T/m2.bin" --data "$T/data.txt" --seq-len 16 --threads 1 2>&1 | grep -oE 'loss=[0-9.]+')
    [ -n "$l1" ] && [ "$l1" = "$l2" ] && ok || bad "eval of the tp-saved model: '$l2', one-process model: '$l1'"
else
    bad "dp=2 x tp=2 validation run failed: $(tail -2 "$T/v2.out")"
fi

# per-rank state bytes at tp 4: split tensors / 4 + replicated (L=2, C=64, maxT=128, Vp=512 at tp 4)
if bash "$MPI" 4 "$BIN" "${COMMON[@]}" --tp 4 --steps 1 --metrics "$T/m.jsonl" >"$T/m.out" 2>&1; then
    $PY - "$T/m.jsonl" <<'EOF' && ok || bad "tp=4: per-rank state bytes are not the analytic 1/tp split"
import json, sys
r = json.loads(open(sys.argv[1]).readline())
L, C, maxT, tp, Vp = 2, 64, 128, 4, 512
split = L * (3*C*C + 3*C + C*C + 4*C*C + 4*C + 4*C*C) + Vp * C
repl = L * 6 * C + maxT * C + 2 * C
want = (split / tp + repl) * 4 / 1048576
got = (r["param_mb"], r["grad_mb"], r["optim_mb"])
print("  tp=4 per rank: params %.4f grads %.4f optim %.4f MB; analytic %.4f / %.4f / %.4f" % (*got, want, want, 2 * want))
sys.exit(0 if all(abs(g - w) < 2e-3 * w + 1e-3 for g, w in zip(got, (want, want, 2 * want))) else 1)
EOF
else
    bad "tp=4 memory run failed: $(tail -2 "$T/m.out")"
fi

# checkpoints: saved under tp, resumed under other layouts, steps 11..20 as the one-process run
resume_case() { # label save-np save-flags resume-np resume-flags
    rm -rf "$T/ck" "$T/r.jsonl"
    bash "$MPI" "$2" "$BIN" "${COMMON[@]}" $3 --save "$T/ck" --stop-after 10 >"$T/r1.out" 2>&1 ||
        { bad "$1: saving run failed: $(tail -2 "$T/r1.out")"; return; }
    bash "$MPI" "$4" "$BIN" "${COMMON[@]}" $5 --resume "$T/ck" --metrics "$T/r.jsonl" >"$T/r2.out" 2>&1 ||
        { bad "$1: resumed run failed: $(tail -2 "$T/r2.out")"; return; }
    compare_losses "$T/ref.jsonl" "$T/r.jsonl" "$1" 11-20 1e-6 && ok || bad "$1: steps 11-20 differ from the one-process run"
}
resume_case "saved tp=2, resumed tp=1" 2 "--tp 2" 1 ""
resume_case "saved tp=2, resumed tp=4" 2 "--tp 2" 4 "--tp 4"
resume_case "saved tp=2, resumed dp=4" 2 "--tp 2" 4 ""
resume_case "saved dp=2 x tp=2 zero=3, resumed tp=1" 4 "--tp 2 --zero 3" 1 ""
resume_case "saved dp=2 x tp=2 zero=3, resumed tp=4" 4 "--tp 2 --zero 3" 4 "--tp 4"
resume_case "saved dp=2 x tp=2 zero=3, resumed dp=4" 4 "--tp 2 --zero 3" 4 ""

# export --hf from a tp checkpoint: the tensors of the one-process run's checkpoint after the same 5 steps
rm -rf "$T/ck" "$T/ck1"
if bash "$MPI" 2 "$BIN" "${COMMON[@]}" --tp 2 --steps 5 --save "$T/ck" >"$T/e1.out" 2>&1 &&
    "$BIN" "${COMMON[@]}" --steps 5 --save "$T/ck1" >"$T/e2.out" 2>&1 &&
    "$BIN" export --resume "$T/ck" --hf "$T/hf" >"$T/e3.out" 2>&1 &&
    "$BIN" export --resume "$T/ck1" --hf "$T/hf1" >"$T/e4.out" 2>&1; then
    $PY - "$T/hf/model.safetensors" "$T/hf1/model.safetensors" <<'EOF' && ok || bad "export --hf of the tp=2 checkpoint differs from the one-process export"
import json, struct, sys
import numpy as np
def load(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    return {k: np.frombuffer(b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]], dtype=np.float32).reshape(v["shape"])
            for k, v in h.items() if k != "__metadata__"}
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a.keys() == b.keys(), (sorted(a), sorted(b))
# 5 AdamW steps amplify the runs' rounding differences to ~1e-6 where gradients are
# near zero; a misplaced slice would differ by the weights' own size (~1e-2..1)
worst = max(float(np.abs(a[k] - b[k]).max()) for k in a)
print("  export --hf from tp=2 vs one process: %d tensors, worst absolute difference %.2e" % (len(a), worst))
sys.exit(0 if worst < 1e-4 else 1)
EOF
else
    bad "export from a tp checkpoint failed: $(tail -2 "$T"/e*.out)"
fi

# bad layouts: every rank exits non-zero, one message naming the flag and the fix, nothing written
expect_mpi_fail() { # description regex np args...
    local desc=$1 re=$2 np=$3
    shift 3
    rm -f "$T/never.jsonl"
    if bash "$MPI" "$np" "$@" --metrics "$T/never.jsonl" >"$T/f.out" 2>"$T/f.err"; then bad "$desc: succeeded"; return; fi
    grep -Eq -- "$re" "$T/f.err" && ok || bad "$desc: stderr does not match /$re/: $(head -3 "$T/f.err")"
    local n
    n=$(grep -c "lmscale train: error" "$T/f.err")
    [ "$n" -eq 1 ] && ok || bad "$desc: the error was printed $n times (want once, by rank 0)"
    [ ! -e "$T/never.jsonl" ] && ok || bad "$desc: metrics file written"
}
expect_mpi_fail "heads not divisible by tp" "--tp 3 does not divide the 4 attention heads.*choose --tp among 1, 2, 4" 3 \
    "$BIN" "${COMMON[@]}" --tp 3
expect_mpi_fail "tp above the heads" "--tp 8 is more than the 4 attention heads" 8 "$BIN" "${COMMON[@]}" --tp 8
expect_mpi_fail "world != dp x tp" "3 processes.*not a multiple of --tp 2" 3 "$BIN" "${COMMON[@]}" --tp 2
expect_mpi_fail "world != dp x tp (dp given)" "3 processes but --dp 2 x --tp 2 x --pp 1 = 4" 3 "$BIN" "${COMMON[@]}" --tp 2 --dp 2
expect_mpi_fail "sequence parallel, seq-len not divisible" "--sequence-parallel splits the 15 positions over --tp 2.*divisible by 2" 2 \
    "$BIN" "${COMMON[@]}" --tp 2 --sequence-parallel --seq-len 15

summary
