#!/usr/bin/env bash
# Pipeline parallelism end to end under mpirun (docs/parallelism.md): the
# 20-step losses at pp 2 and 4 with each schedule (gpipe, 1f1b, interleaved),
# an uneven --pp-layers split and dp2 x pp2 match the one-process run within
# relative 1e-5; every rank logs the same loss; the activation sets a stage
# holds at once are m under GPipe and min(p - s, m) under 1F1B; bad layouts
# fail on every rank before any compute with one message naming the flag.
# Usage: bash tests/test_pp.sh /path/to/lmscale
set -u
NAME=test_pp
MPI=$(cd "$(dirname "$0")" && pwd)/mpirun.sh # before lib.sh changes directory
# shellcheck source=tests/lib.sh
source "$(dirname "$0")/lib.sh"
need_python
export OMP_NUM_THREADS=1

for i in $(seq 1 400); do echo "line $i: the quick brown fox jumps over the lazy dog; $((i * 7919 % 1000))"; done >"$T/data.txt"
# 8 layers, 4 micro-batches of 2 (m = 4 at dp 1, 2 at dp 2)
COMMON=(train --data "$T/data.txt" --model nano --num-layers 8 --steps 20 --batch-size 8 --micro-batch-size 2
        --seq-len 16 --threads 1 --lr 2e-3 --warmup-steps 3 --eval-interval 0 --data-order sequential --quiet
        --peak-tflops 1)

"$BIN" "${COMMON[@]}" --metrics "$T/ref.jsonl" >"$T/ref.out" 2>&1 || bad "one-process run failed: $(tail -2 "$T/ref.out")"

# the peak activation sets per stage, from the last metrics line: "a,b,..."
peaks() { $PY -c 'import json,sys; print(",".join(map(str, json.loads(open(sys.argv[1]).readlines()[-1])["pp_peak_sets"])))' "$1"; }

run_case() { # label np want_peaks(or -) flags...
    local label=$1 np=$2 want=$3
    shift 3
    rm -f "$T/pp.jsonl"
    if bash "$MPI" "$np" "$BIN" "${COMMON[@]}" "$@" --metrics "$T/pp.jsonl" >"$T/pp.out" 2>&1; then
        compare_losses "$T/ref.jsonl" "$T/pp.jsonl" "$label" && ok || bad "$label: losses differ from the one-process run"
        [ "$(wc -l <"$T/pp.jsonl")" -eq 20 ] && ok || bad "$label: metrics has $(wc -l <"$T/pp.jsonl") lines (only rank 0 writes)"
        grep -q '"pp_bubble": \[' "$T/pp.jsonl" && grep -q '"pp_idle": \[' "$T/pp.jsonl" && ok ||
            bad "$label: no per-stage idle fraction in the metrics"
        if [ "$want" != - ]; then
            local got
            got=$(peaks "$T/pp.jsonl")
            [ "$got" = "$want" ] && ok || bad "$label: peak activation sets per stage $got, want $want"
        fi
    else
        bad "$label: run failed: $(tail -3 "$T/pp.out")"
    fi
}
run_case "pp=2 gpipe" 2 4,4 --pp 2 --pp-schedule gpipe
run_case "pp=2 1f1b" 2 2,1 --pp 2 --pp-schedule 1f1b
run_case "pp=4 gpipe" 4 4,4,4,4 --pp 4 --pp-schedule gpipe
run_case "pp=4 1f1b" 4 4,3,2,1 --pp 4 --pp-schedule 1f1b
run_case "pp=2 interleaved v=2" 2 - --pp 2 --pp-schedule interleaved --virtual-stages 2
run_case "pp=4 interleaved v=2" 4 - --pp 4 --virtual-stages 2
run_case "pp=2 --pp-layers 3,5" 2 2,1 --pp 2 --pp-layers 3,5
run_case "pp=2 1f1b --recompute full" 2 2,1 --pp 2 --recompute full
run_case "pp=2 interleaved --recompute selective" 2 - --pp 2 --virtual-stages 2 --recompute selective
run_case "dp=2 x pp=2 1f1b" 4 2,1 --pp 2 --dp 2
run_case "dp=2 x pp=2 gpipe" 4 2,2 --pp 2 --dp 2 --pp-schedule gpipe

# every rank prints the same loss (only the last stage computes it)
LOUD=()
for a in "${COMMON[@]}"; do [ "$a" = --quiet ] || LOUD+=("$a"); done
if bash "$MPI" 2 "$BIN" "${LOUD[@]}" --log-interval 5 --pp 2 --log-all-ranks >"$T/all.out" 2>&1; then
    n=$(grep -c 'step    20/20 | loss' "$T/all.out")
    d=$(grep 'step    20/20 | loss' "$T/all.out" | sed 's/.*| loss \([0-9.]*\).*/\1/' | sort -u | wc -l)
    [ "$n" -eq 2 ] && [ "$d" -eq 1 ] && ok || bad "ranks log different losses: $(grep 'step    20/20' "$T/all.out")"
else
    bad "--log-all-ranks run failed: $(tail -3 "$T/all.out")"
fi

# bad configurations: every rank exits non-zero, one message, nothing written
expect_mpi_fail "fewer layers than stages" "--pp 4 is more than the model's 3 layers" 4 \
    "$BIN" "${COMMON[@]}" --num-layers 3 --pp 4 --metrics "$T/never.jsonl"
expect_mpi_fail "--pp-layers not summing" "--pp-layers sums to 7 layers but the model has 8" 2 \
    "$BIN" "${COMMON[@]}" --pp 2 --pp-layers 3,4 --metrics "$T/never.jsonl"
expect_mpi_fail "--pp-layers with a zero" "stage 0 has 0 layers" 2 \
    "$BIN" "${COMMON[@]}" --pp 2 --pp-layers 0,8 --metrics "$T/never.jsonl"
expect_mpi_fail "interleaved, micro-batches not a multiple of pp" "needs the 2 micro-batches per step to be a multiple of --pp 4" 4 \
    "$BIN" "${COMMON[@]}" --pp 4 --virtual-stages 2 --micro-batch-size 4 --metrics "$T/never.jsonl"
expect_mpi_fail "interleaved, layers not divisible by pp x V" "the 8 layers do not split evenly into --pp 2 x --virtual-stages 3" 2 \
    "$BIN" "${COMMON[@]}" --pp 2 --virtual-stages 3 --metrics "$T/never.jsonl"
expect_mpi_fail "world != dp x pp" "the job has 3 processes but --dp 1 x --tp 1 x --pp 2 = 2" 3 \
    "$BIN" "${COMMON[@]}" --pp 2 --metrics "$T/never.jsonl"
expect_mpi_fail "gpipe with virtual stages" "--virtual-stages 2 needs the interleaved schedule" 2 \
    "$BIN" "${COMMON[@]}" --pp 2 --virtual-stages 2 --pp-schedule gpipe --metrics "$T/never.jsonl"
expect_mpi_fail "an unknown schedule" "--pp-schedule 'zigzag' is not known" 2 \
    "$BIN" "${COMMON[@]}" --pp 2 --pp-schedule zigzag --metrics "$T/never.jsonl"

summary
