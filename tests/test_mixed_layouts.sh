#!/usr/bin/env bash
# Mixed precision under the parallel layouts (issue 13 item 1, docs/mixed-precision.md): for a
# fixed global batch (4 micro-batches of 2), the 20-step losses of --dtype bf16 and fp16 at tp 2,
# dp 2 x tp 2 (ZeRO 1 with sequence parallelism, ZeRO 3), pp 2 (1F1B and GPipe) and dp 2 x pp 2
# match the one-process run in the same dtype: the worst
# relative difference over the 20 steps is at most a quarter of the dtype's unit roundoff
# (bf16 2^-9, fp16 2^-12). That each layout really computes in the dtype: in bf16 the difference
# must also be at most 0.6 of bf16's own effect (the one-process bf16 run against fp32; a layout
# silently computing in fp32 would sit at 1.0); fp16 is too close to fp32 for that, so each
# layout runs fp16 with a static loss scale of 2^30 instead, whose scaled loss gradient overflows
# fp16 (never fp32): every step must be skipped on every rank. The bound is not fp32's 1e-5:
# tensor parallelism rounds each rank's partial product of a row-parallel layer to 16 bits before
# the sum (as a 16-bit GEMM followed by an all-reduce does), where one process rounds the whole
# sum once; a pipeline sums the parameter gradients and the gradient norm in another order (as in
# fp32, where it differs by ~1e-8), which can move a 16-bit rounding. An inf injected into one tp
# rank's or the last stage's fp16 gradients skips the step on every rank.
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
        --batch-size 8 --micro-batch-size 2)

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
if d == "bf16" and got > 0.6 * effect:
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
2 pp=2_1f1b --pp 2
2 pp=2_gpipe --pp 2 --pp-schedule gpipe
4 dp=2_x_pp=2 --pp 2
4 tp=2_x_pp=2 --tp 2 --pp 2
4 tp=2_x_pp=2_sp --tp 2 --pp 2 --sequence-parallel
EOF
done

# fp16 rounding applied in each layout: a loss scale of 2^30 overflows the 16-bit loss gradient
for layout in "1 --tp 1" "2 --tp 2" "4 --tp 2 --zero 3 --sequence-parallel" "2 --pp 2"; do
    # shellcheck disable=SC2086
    set -- $layout
    np=$1
    shift
    rm -f "$T/o.jsonl"
    if bash "$MPI" "$np" "$BIN" "${COMMON[@]}" --steps 2 --dtype fp16 --loss-scale 1073741824 "$@" \
        --metrics "$T/o.jsonl" >"$T/o.out" 2>&1 </dev/null; then
        $PY -c 'import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
sys.exit(0 if len(r) == 2 and all(x["skipped"] == 1 for x in r) else 1)' "$T/o.jsonl" && ok ||
            bad "fp16 $*: a loss scale of 2^30 did not overflow (is the layout computing in fp16?)"
    else
        bad "fp16 $* with --loss-scale 2^30 failed: $(tail -3 "$T/o.out")"
    fi
done

# an inf in one rank's fp16 gradients at step 3 (tp rank 1; the last pipeline stage, whose loss
# gradient it enters): skipped on both ranks, the scale halves
for layout in "--tp 2" "--pp 2"; do
    # shellcheck disable=SC2086
    if LMSCALE_FAULT=inf:rank=1:step=3 bash "$MPI" 2 "$BIN" "${COMMON[@]}" --steps 5 --dtype fp16 $layout \
        --log-all-ranks --metrics "$T/inf.jsonl" >"$T/inf.out" 2>&1 </dev/null; then
        $PY - "$layout" "$T/inf.jsonl" "$T/inf.jsonl.rank1" <<'PYEOF' && ok || bad "$layout: the injected inf did not skip step 3 on both ranks"
import json, sys
for f in sys.argv[2:]:
    r = {x["step"]: x for x in map(json.loads, open(f))}
    assert r[3]["skipped"] == 1 and r[3]["grad_norm"] is None, (f, r[3])
    assert r[2]["skipped"] == 0 and r[4]["skipped"] == 0 and r[4]["loss_scale"] == r[3]["loss_scale"] / 2, (f, r[4])
print("  %s fp16: the inf in rank 1's gradients skipped step 3 on both ranks; scale %g -> %g" %
      (sys.argv[1], r[3]["loss_scale"], r[4]["loss_scale"]))
PYEOF
    else
        bad "$layout with an injected inf failed: $(tail -3 "$T/inf.out")"
    fi
    rm -f "$T/inf.jsonl" "$T/inf.jsonl.rank1"
done
summary
