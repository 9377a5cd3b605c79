#!/usr/bin/env bash
# ZeRO stages 1, 2 and 3 under mpirun: for a fixed global batch the losses of
# the first 20 steps at dp 2 and 4, with --zero 0..3, match the one-process
# run within relative 1e-5 (fp32); also with gradient accumulation, and at dp
# 3 where the units do not split evenly (padding). At dp 4, ZeRO-3 holds at
# most 30% of plain data parallelism's per-rank state bytes (parameters,
# gradients, optimizer state, working buffers included), as the metrics
# report them. Usage: bash tests/test_zero.sh /path/to/lmscale
set -u
NAME=test_zero
MPI=$(cd "$(dirname "$0")" && pwd)/mpirun.sh # before lib.sh changes directory
# shellcheck source=tests/lib.sh
source "$(dirname "$0")/lib.sh"
need_python
export OMP_NUM_THREADS=1

for i in $(seq 1 400); do echo "line $i: the quick brown fox jumps over the lazy dog; $((i * 7919 % 1000))"; done >"$T/data.txt"
COMMON=(train --data "$T/data.txt" --model nano --steps 20 --seq-len 16 --threads 1 --lr 2e-3 --grad-clip 0.5
        --warmup-steps 3 --eval-interval 0 --data-order sequential --quiet --peak-tflops 1)

# run_case label np ref extra-flags...
run_case() {
    local label=$1 np=$2 ref=$3
    shift 3
    rm -f "$T/z.jsonl"
    if bash "$MPI" "$np" "$BIN" "${COMMON[@]}" "$@" --metrics "$T/z.jsonl" >"$T/z.out" 2>&1; then
        compare_losses "$ref" "$T/z.jsonl" "$label" && ok || bad "$label: losses differ from the one-process run"
    else
        bad "$label: run failed: $(tail -3 "$T/z.out")"
    fi
}

"$BIN" "${COMMON[@]}" --batch-size 8 --metrics "$T/ref8.jsonl" >"$T/ref.out" 2>&1 || bad "one-process run failed: $(tail -2 "$T/ref.out")"
for np in 2 4; do
    for z in 0 1 2 3; do run_case "dp=$np zero=$z" "$np" "$T/ref8.jsonl" --batch-size 8 --zero "$z"; done
done
# accumulation: stage 1 reduce-scatters on the last micro-step only, stages 2
# and 3 on every micro-step
for z in 1 2 3; do run_case "dp=2 zero=$z micro=1 (4 accumulation steps)" 2 "$T/ref8.jsonl" --batch-size 8 --micro-batch-size 1 --zero "$z"; done
# dp 3: 64 channels give blocks of 49984 floats, not divisible by 3 (padded parts)
"$BIN" "${COMMON[@]}" --batch-size 6 --metrics "$T/ref6.jsonl" >"$T/ref.out" 2>&1 || bad "one-process run (batch 6) failed"
for z in 1 2 3; do run_case "dp=3 zero=$z (uneven parts)" 3 "$T/ref6.jsonl" --batch-size 6 --zero "$z"; done

# checkpoints: each rank writes its own shard under ZeRO; a checkpoint saved
# under one (dp, zero) resumes under another and gives the one-process losses
# of steps 11..20
resume_case() { # label save-np save-zero resume-np resume-zero
    rm -rf "$T/ck" "$T/r.jsonl"
    bash "$MPI" "$2" "$BIN" "${COMMON[@]}" --batch-size 8 --zero "$3" --save "$T/ck" --stop-after 10 >"$T/r1.out" 2>&1 ||
        { bad "$1: saving run failed: $(tail -2 "$T/r1.out")"; return; }
    local shards
    shards=$(ls "$T"/ck/step-00000010/shard-*.bin | wc -l)
    [ "$shards" -eq "$([ "$3" -gt 0 ] && echo "$2" || echo 1)" ] && ok || bad "$1: $shards shard files"
    bash "$MPI" "$4" "$BIN" "${COMMON[@]}" --batch-size 8 --zero "$5" --resume "$T/ck" --metrics "$T/r.jsonl" >"$T/r2.out" 2>&1 ||
        { bad "$1: resumed run failed: $(tail -2 "$T/r2.out")"; return; }
    compare_losses "$T/ref8.jsonl" "$T/r.jsonl" "$1" 11-20 && ok || bad "$1: steps 11-20 differ from the one-process run"
}
resume_case "saved dp=2 zero=3, resumed dp=4 zero=1" 2 3 4 1
resume_case "saved dp=4 zero=2, resumed dp=1 zero=0" 4 2 1 0
resume_case "saved dp=2 zero=0, resumed dp=4 zero=3" 2 0 4 3
resume_case "saved dp=4 zero=1, resumed dp=2 zero=2" 4 1 2 2

# memory: a deep, narrow model (no unit above 5% of the parameters), dp 4
MEM=(train --data "$T/data.txt" --num-layers 24 --hidden-size 64 --num-heads 4 --max-seq-len 16 --vocab-size 257
     --steps 2 --batch-size 4 --seq-len 16 --threads 1 --eval-interval 0 --quiet --peak-tflops 1)
for z in 0 3; do
    rm -f "$T/m$z.jsonl"
    bash "$MPI" 4 "$BIN" "${MEM[@]}" --zero "$z" --metrics "$T/m$z.jsonl" >"$T/m.out" 2>&1 || bad "memory run zero=$z failed: $(tail -2 "$T/m.out")"
done
$PY - "$T/m0.jsonl" "$T/m3.jsonl" <<'PYEOF' && ok || bad "ZeRO-3 at dp=4 holds more than 30% of plain DP's state bytes"
import json, sys
def state(p):
    r = [json.loads(l) for l in open(p)][-1]
    return r["param_mb"] + r["grad_mb"] + r["optim_mb"], r
s0, r0 = state(sys.argv[1])
s3, r3 = state(sys.argv[2])
print("  dp=4 per-rank state: plain %.3f MB (params %.3f grads %.3f optim %.3f), ZeRO-3 %.3f MB (params %.3f grads %.3f optim %.3f): %.1f%%"
      % (s0, r0["param_mb"], r0["grad_mb"], r0["optim_mb"], s3, r3["param_mb"], r3["grad_mb"], r3["optim_mb"], 100 * s3 / s0))
sys.exit(0 if s3 <= 0.30 * s0 and s3 > 0 else 1)
PYEOF

# --log-all-ranks: every rank prints and writes its own metrics (per-rank memory)
rm -f "$T/a.jsonl"*
bash "$MPI" 2 "$BIN" "${COMMON[@]}" --batch-size 8 --zero 3 --steps 2 --log-all-ranks --metrics "$T/a.jsonl" >"$T/a.out" 2>&1 ||
    bad "--log-all-ranks run failed: $(tail -2 "$T/a.out")"
[ -s "$T/a.jsonl" ] && [ -s "$T/a.jsonl.rank1" ] && ok || bad "--log-all-ranks: no per-rank metrics files"
grep -q "\[rank 1\].*done: 2 steps" "$T/a.out" && ok || bad "--log-all-ranks: rank 1 printed nothing"

# bad stage
if "$BIN" "${COMMON[@]}" --batch-size 8 --zero 4 >"$T/b.out" 2>&1; then bad "--zero 4 accepted"; else
    grep -q "ZeRO stage must be 0 (off), 1, 2 or 3" "$T/b.out" && ok || bad "--zero 4: unclear message: $(cat "$T/b.out")"
fi
summary
