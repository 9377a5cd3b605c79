#!/usr/bin/env bash
# Mixed precision under the parallel layouts (issue 13 item 1, docs/mixed-precision.md): for a
# fixed global batch, the 20-step losses of --dtype bf16 and fp16 at tp 2 and dp 2 x tp 2 (ZeRO 1
# with sequence parallelism, ZeRO 3) match the one-process run in the same dtype: the worst
# relative difference over the 20 steps is at most a quarter of the dtype's unit roundoff
# (bf16 2^-9, fp16 2^-12) and at most 0.6 of the dtype's own effect (the one-process 16-bit run
# against fp32), so that a layout that silently ran in fp32 fails. The bound is not fp32's 1e-5:
# tensor parallelism rounds each rank's partial product of a row-parallel layer to 16 bits before
# the sum (as a 16-bit GEMM followed by an all-reduce does), where one process rounds the whole
# sum once. Measured: bf16 1.3e-4 (effect 6.4e-4), fp16 1.3e-5 to 1.9e-5 (effect 4.6e-5). An inf
# injected into one tp rank's fp16 gradients skips the step on every rank.
# Usage: bash tests/test_mixed_layouts.sh /path/to/lmscale
set -u
NAME=test_mixed_layouts
MPI=$(cd "$(dirname "$0")" && pwd)/mpirun.sh # before lib.sh changes directory
# shellcheck source=tests/lib.sh
source "$(dirname "$0")/lib.sh"
need_python
export OMP_NUM_THREADS=1

for i in $(seq 1 400); do echo "line $i: sphinx of black quartz, judge my vow; $((i * 7919 % 1000))"; done >"$T/data.txt"
# 4 heads of 16 channels
COMMON=(train --data "$T/data.txt" --model nano --num-heads 4 --steps 20 --seq-len 16 --threads 1 --lr 2e-3
        --grad-clip 0.5 --warmup-steps 3 --eval-interval 0 --data-order sequential --quiet --peak-tflops 1
        --batch-size 8)

# worst relative difference of two runs' losses (compare_losses with no bound)
worst() { compare_losses "$1" "$2" x "" 1 | sed 's/.*difference //'; }

# check DTYPE LABEL GOT EFFECT: the two bounds above
check() {
    $PY - "$@" <<'PYEOF'
import sys
d, label, got, effect = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
u = {"bf16": 2.0 ** -9, "fp16": 2.0 ** -12}[d]  # unit roundoff
fail = 0
if got > u / 4:
    print("  %s %s: %.2e is more than a quarter of the unit roundoff (%.2e)" % (d, label, got, u / 4))
    fail = 1
if got > 0.6 * effect:
    print("  %s %s: %.2e is not well below the dtype's own effect %.2e (is the dtype applied?)" % (d, label, got, effect))
    fail = 1
sys.exit(fail)
PYEOF
}

"$BIN" "${COMMON[@]}" --metrics "$T/fp32.jsonl" >"$T/fp32.out" 2>&1 || bad "one-process fp32 run failed: $(tail -2 "$T/fp32.out")"
for d in bf16 fp16; do
    "$BIN" "${COMMON[@]}" --dtype $d --metrics "$T/$d.jsonl" >"$T/$d.out" 2>&1 ||
        bad "one-process $d run failed: $(tail -2 "$T/$d.out")"
    effect=$(worst "$T/fp32.jsonl" "$T/$d.jsonl")
    echo "  $d at one process vs fp32: worst relative loss difference $effect"
    while read -r np label flags; do
        rm -f "$T/z.jsonl"
        # shellcheck disable=SC2086
        if ! bash "$MPI" "$np" "$BIN" "${COMMON[@]}" --dtype $d $flags --metrics "$T/z.jsonl" >"$T/z.out" 2>&1 </dev/null; then
            bad "$d $label: run failed: $(tail -3 "$T/z.out")"
        elif ! compare_losses "$T/$d.jsonl" "$T/z.jsonl" "$d $label" "" 1; then
            bad "$d $label: steps missing"
        else
            check "$d" "$label" "$(worst "$T/$d.jsonl" "$T/z.jsonl")" "$effect" && ok ||
                bad "$d $label: losses differ from the one-process $d run"
        fi
    done <<EOF
2 tp=2 --tp 2
4 dp=2_x_tp=2_zero=1_sp --tp 2 --zero 1 --sequence-parallel
4 dp=2_x_tp=2_zero=3 --tp 2 --zero 3
EOF
done

# an inf in tp rank 1's fp16 gradients at step 3: skipped on both ranks, the scale halves
if LMSCALE_FAULT=inf:rank=1:step=3 bash "$MPI" 2 "$BIN" "${COMMON[@]}" --steps 5 --dtype fp16 --tp 2 \
    --log-all-ranks --metrics "$T/inf.jsonl" >"$T/inf.out" 2>&1 </dev/null; then
    $PY - "$T/inf.jsonl" "$T/inf.jsonl.rank1" <<'PYEOF' && ok || bad "tp=2: the injected inf did not skip step 3 on both ranks"
import json, sys
for f in sys.argv[1:]:
    r = {x["step"]: x for x in map(json.loads, open(f))}
    assert r[3]["skipped"] == 1 and r[3]["grad_norm"] is None, (f, r[3])
    assert r[2]["skipped"] == 0 and r[4]["skipped"] == 0 and r[4]["loss_scale"] == r[3]["loss_scale"] / 2, (f, r[4])
print("  tp=2 fp16: the inf in rank 1's gradients skipped step 3 on both ranks; scale %g -> %g" %
      (r[3]["loss_scale"], r[4]["loss_scale"]))
PYEOF
else
    bad "tp=2 with an injected inf failed: $(tail -3 "$T/inf.out")"
fi
summary
