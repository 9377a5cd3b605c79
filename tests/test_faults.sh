#!/usr/bin/env bash
# Faults under mpirun (docs/parallelism.md, "Faults and timeouts"), injected
# with LMSCALE_FAULT: a rank that hangs is caught by the others' collective
# watchdog (--comm-timeout, LMSCALE_COMM_TIMEOUT), which aborts the job with a
# line naming the rank, the operation and the step; a rank that exits or is
# killed makes the launcher end the job. Either way the job ends promptly,
# and the newest checkpoint it left resumes at dp 1 and at dp 4 to the
# losses of a run that was never interrupted. Without the watchdog the hang
# is still hanging when `timeout` gives up: what the watchdog is for. Every
# MPI run is under `timeout`, so this test fails rather than hangs.
# Usage: bash tests/test_faults.sh /path/to/lmscale
set -u
NAME=test_faults
MPI=$(cd "$(dirname "$0")" && pwd)/mpirun.sh # before lib.sh changes directory
# shellcheck source=tests/lib.sh
source "$(dirname "$0")/lib.sh"
need_python
export OMP_NUM_THREADS=1
unset LMSCALE_FAULT LMSCALE_COMM_TIMEOUT

for i in $(seq 1 400); do echo "line $i: the quick brown fox jumps over the lazy dog; $((i * 7919 % 1000))"; done >"$T/data.txt"
STEPS=12
COMMON=(train --data "$T/data.txt" --model nano --steps $STEPS --batch-size 8 --seq-len 16 --threads 1 --lr 2e-3
        --warmup-steps 3 --eval-interval 0 --data-order sequential --quiet --peak-tflops 1)
run ref "$BIN" "${COMMON[@]}" --metrics "$T/ref.jsonl"

# faulty LABEL NP FAULT GUARD_S flags...: NP ranks with LMSCALE_FAULT=FAULT,
# checkpoints every 2 steps into $T/ck_LABEL, killed after GUARD_S seconds
# if still running; sets RC and SECS.
faulty() {
    local label=$1 np=$2 fault=$3 guard=$4
    shift 4
    local t0
    t0=$(date +%s.%N)
    LMSCALE_FAULT=$fault timeout -k 10 "$guard" bash "$MPI" "$np" "$BIN" "${COMMON[@]}" --save "$T/ck_$label" \
        --save-every 2 "$@" >"$T/$label.out" 2>"$T/$label.err"
    RC=$?
    SECS=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    echo "  $label ($np ranks, LMSCALE_FAULT=$fault${LMSCALE_COMM_TIMEOUT:+ LMSCALE_COMM_TIMEOUT=$LMSCALE_COMM_TIMEOUT}${*:+ $*}): exit status $RC after $SECS s"
}
# ended LABEL: the job ended by itself, non-zero, within 30 s
ended() {
    if [ "${SECS%.*}" -ge 30 ]; then
        bad "$1: the job took $SECS s to end, want < 30 s (exit status $RC; 124: still running when timeout stopped it)"
    elif [ "$RC" -eq 0 ]; then
        bad "$1: exit status 0 despite the fault"
    else
        ok
    fi
}
# has LABEL REGEX what: the job's output (stdout and stderr) matches REGEX
has() {
    if cat "$T/$1.out" "$T/$1.err" | grep -Eq -- "$2"; then ok; else
        bad "$1: no $3 in the output (/$2/):"
        grep -v OPENBLAS "$T/$1.err" | head -8 | sed 's/^/  /'
    fi
}
# resumes LABEL: the newest valid checkpoint in $T/ck_LABEL resumes at dp 1
# (one process, no mpirun) and at dp 4 (4 ranks) to the reference losses of
# the steps after it (relative 1e-5)
resumes() {
    local label=$1 np newest
    # the newest checkpoint now, by name: the first resume goes on saving into the run's folder
    newest=$(find "$T/ck_$label" -maxdepth 1 -name 'step-*' | sort | tail -n 1)
    for np in 1 4; do
        rm -f "$T/r.jsonl"
        local cmd=("$BIN" "${COMMON[@]}" --resume "${newest:-$T/ck_$label}" --metrics "$T/r.jsonl")
        [ "$np" -gt 1 ] && cmd=(timeout -k 10 120 bash "$MPI" "$np" "${cmd[@]}")
        if ! "${cmd[@]}" >"$T/r.out" 2>"$T/r.err"; then
            bad "$label: resuming at dp $np failed: $(grep -v OPENBLAS "$T/r.err" | tail -3)"
            continue
        fi
        local from
        from=$(sed -n 's/.*resumed from .*step-0*\([0-9][0-9]*\) at step .*/\1/p' "$T/r.out")
        $PY - "$T/ref.jsonl" "$T/r.jsonl" "$label" "$np" "${from:-0}" "$STEPS" <<'PYEOF' && ok || bad "$label: resumed at dp $np: losses differ from the uninterrupted run"
import json, sys
ref, res, label, np, start, steps = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
a = {json.loads(l)["step"]: json.loads(l)["loss"] for l in open(ref)}
b = {json.loads(l)["step"]: json.loads(l)["loss"] for l in open(res)}
good = start >= 2 and sorted(b) == list(range(start + 1, steps + 1))
worst = max(abs(a[k] - b[k]) / abs(a[k]) for k in b) if good else float("inf")
print("  %s: newest checkpoint step %d, resumed at dp %s: steps %d-%d, worst relative loss difference %.2e"
      % (label, start, np, start + 1, steps, worst))
sys.exit(0 if worst <= 1e-5 else 1)
PYEOF
    done
}

# (a) rank 1 hangs before step 5: rank 0 waits in the step's gradient
# all-reduce until its watchdog aborts the job (exit status 75)
faulty hang 2 hang:rank=1:step=5 45 --comm-timeout 5
ended "hang, --comm-timeout 5"
[ "$RC" -eq 75 ] && ok || bad "hang: exit status $RC, want 75 (the watchdog's)"
has hang "fault injection .*rank 1 hangs.* before step 5" "fault-injection line"
has hang "lmscale: error: \[rank 0 of 2\] i?allreduce #[0-9]+ \([0-9.]+ [KM]?B, world of 2 ranks\) in step 5 has not completed after [0-9.]+ s: another rank has died or hung; aborting the job" \
    "watchdog line naming rank 0, the all-reduce and step 5"
resumes hang

# the same at 4 ranks with the timeout from the environment: every waiting
# rank may report before the job is gone
LMSCALE_COMM_TIMEOUT=5 faulty hang4 4 hang:rank=2:step=3 45
ended "hang at 4 ranks, LMSCALE_COMM_TIMEOUT=5"
has hang4 "\[rank [013] of 4\] i?allreduce #[0-9]+ .* in step 3 has not completed" "watchdog line"

# (b) rank 1 exits (status 3, as a crash) or is killed before step 5: the
# launcher ends the job; no watchdog needed (the default 600 s is far off)
faulty exit 2 exit:rank=1:step=5 45
ended "exit"
has exit "fault injection .*rank 1 exits with status 3 before step 5" "fault-injection line"
resumes exit
faulty kill 2 kill:rank=1:step=5 45
ended "kill -9"
resumes kill

# without the watchdog the hung job would wait forever: still running after 12 s
faulty off 2 hang:rank=1:step=5 12 --comm-timeout 0
if [ "$RC" -eq 124 ] || [ "$RC" -eq 137 ]; then ok; else
    bad "hang with --comm-timeout 0: exit status $RC, want 124 (still hanging when timeout stopped it)"
fi

# bad settings are refused before anything starts
expect_fail() { # label regex cmd...
    local label=$1 re=$2
    shift 2
    "$@" >"$T/$label.out" 2>"$T/$label.err"
    local rc=$?
    if [ $rc -eq 0 ] || [ $rc -ge 128 ]; then bad "$label: exit status $rc, want a clean failure"; return; fi
    grep -Eq -- "$re" "$T/$label.err" && ok || bad "$label: stderr does not match /$re/: $(head -2 "$T/$label.err")"
}
expect_fail bad_fault "LMSCALE_FAULT='boom:rank=1:step=2': unknown fault 'boom'" \
    env LMSCALE_FAULT=boom:rank=1:step=2 "$BIN" "${COMMON[@]}"
expect_fail bad_fault2 "give both rank=R and step=S" env LMSCALE_FAULT=hang:rank=1 "$BIN" "${COMMON[@]}"
expect_fail bad_timeout "LMSCALE_COMM_TIMEOUT='soon' is not a number of seconds" \
    env LMSCALE_COMM_TIMEOUT=soon "$BIN" "${COMMON[@]}"
expect_fail bad_flag "--comm-timeout 1e\+?30 is not a usable number" "$BIN" "${COMMON[@]}" --comm-timeout 1e30
expect_fail bench_timeout "LMSCALE_COMM_TIMEOUT='-' is not a number" \
    env LMSCALE_COMM_TIMEOUT=- "$BIN" bench comm --comm single --max-bytes 4K

summary
