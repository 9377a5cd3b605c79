#!/usr/bin/env bash
# Data-parallel training end to end under mpirun: the losses of the first 20
# steps at dp 2 and 4 (with and without gradient accumulation) match the
# one-process run within relative 1e-5 for the same global batch; only rank
# 0 writes metrics; bad configurations fail on every rank with one clear
# message. Usage: bash tests/test_dp_train.sh /path/to/lmscale
set -u
NAME=test_dp_train
MPI=$(cd "$(dirname "$0")" && pwd)/mpirun.sh # before lib.sh changes directory
# shellcheck source=tests/lib.sh
source "$(dirname "$0")/lib.sh"
need_python
export OMP_NUM_THREADS=1

for i in $(seq 1 400); do echo "line $i: the quick brown fox jumps over the lazy dog; $((i * 7919 % 1000))"; done >"$T/data.txt"
COMMON=(train --data "$T/data.txt" --model nano --steps 20 --batch-size 8 --seq-len 16 --threads 1 --lr 2e-3
        --warmup-steps 3 --eval-interval 0 --data-order sequential --quiet --peak-tflops 1)

"$BIN" "${COMMON[@]}" --metrics "$T/ref.jsonl" >"$T/ref.out" 2>&1 || bad "one-process run failed: $(tail -2 "$T/ref.out")"
for np in 2 4; do
    for micro in 0 1; do
        label="dp=$np micro=$micro"
        flags=()
        [ "$micro" -gt 0 ] && flags=(--micro-batch-size "$micro")
        if bash "$MPI" "$np" "$BIN" "${COMMON[@]}" "${flags[@]}" --metrics "$T/dp.jsonl" >"$T/dp.out" 2>&1; then
            compare_losses "$T/ref.jsonl" "$T/dp.jsonl" "$label" && ok || bad "$label: losses differ from the one-process run"
            [ "$(wc -l <"$T/dp.jsonl")" -eq 20 ] && ok || bad "$label: metrics has $(wc -l <"$T/dp.jsonl") lines (only rank 0 writes)"
            grep -q '"peak_rss_mb"' "$T/dp.jsonl" && grep -q '"optim_mb"' "$T/dp.jsonl" && ok || bad "$label: no memory figures in the metrics"
        else
            bad "$label: run failed: $(tail -3 "$T/dp.out")"
        fi
        rm -f "$T/dp.jsonl"
    done
done

# resume with a different dp: 10 steps at dp 2, checkpoint, 10 more at dp 4
# (and at dp 1) give the one-process losses of steps 11..20
if bash "$MPI" 2 "$BIN" "${COMMON[@]}" --save "$T/ck" --stop-after 10 >"$T/r1.out" 2>&1; then
    for np in 4 1; do
        rm -f "$T/r.jsonl"
        # the step-10 checkpoint itself: a resume goes on saving into the run's folder
        bash "$MPI" "$np" "$BIN" "${COMMON[@]}" --resume "$T/ck/step-00000010" --metrics "$T/r.jsonl" >"$T/r2.out" 2>&1 ||
            bad "resume at dp=$np failed: $(tail -2 "$T/r2.out")"
        compare_losses "$T/ref.jsonl" "$T/r.jsonl" "saved at dp=2, resumed at dp=$np" 11-20 && ok ||
            bad "resume at dp=$np: steps 11-20 differ from the one-process run"
    done
else
    bad "dp=2 run with --save failed: $(tail -2 "$T/r1.out")"
fi

# bad configurations: every rank exits non-zero, one message, nothing written
expect_mpi_fail "world size != dp" "3 processes but --dp 2 x --tp 1 x --pp 1" 3 "$BIN" "${COMMON[@]}" --dp 2 --metrics "$T/never.jsonl"
expect_mpi_fail "batch not divisible by dp x micro" "not divisible by dp 2 x --micro-batch-size 3" 2 \
    "$BIN" "${COMMON[@]}" --micro-batch-size 3 --metrics "$T/never.jsonl"
expect_mpi_fail "ranks disagree on the config" "ranks disagree on the configuration" 1 \
    "$BIN" "${COMMON[@]}" --metrics "$T/never.jsonl" : -np 1 "$BIN" "${COMMON[@]}" --lr 1e-3 --metrics "$T/never.jsonl"

summary
