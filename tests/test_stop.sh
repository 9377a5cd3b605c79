#!/usr/bin/env bash
# Stopping a run early on request (docs/checkpoints.md, "Stopping early"):
#   - one process, SIGINT and SIGTERM: the run finishes its step, saves,
#     prints one line naming the checkpoint, exits 85; resuming gives the
#     uninterrupted run's losses bit for bit, and the metrics file holds every
#     step once;
#   - a second signal exits at once with 128 + the signal;
#   - --exit-duration-mins saves and exits 85; without --save it exits 85 too
#     and says that nothing was saved;
#   - under mpirun with ZeRO 3: SIGTERM to one rank, or SIGUSR1 to mpirun
#     (which forwards it), or --exit-duration-mins: every rank stops after the
#     same step, the checkpoint has every rank's shard, the job exits 85 and
#     resuming continues bit-identically.
# Usage: bash tests/test_stop.sh /path/to/lmscale
set -u
NAME=test_stop
HERE=$(cd "$(dirname "$0")" && pwd)
MPI=$HERE/mpirun.sh
# shellcheck source=tests/lib.sh
source "$HERE/lib.sh"
export OMP_NUM_THREADS=1 XDG_CACHE_HOME=$T/cache

for i in $(seq 1 800); do echo "line $i: pack my box with five dozen liquor jugs; $((i * 7919 % 1000))"; done >data.txt
N=400
COMMON=(train --data data.txt --model nano --steps $N --seq-len 32 --batch-size 8 --lr 2e-3 --warmup-steps 5
        --eval-interval 0 --threads 1 --peak-tflops 1 --log-interval 1000)

# rows FILE: the number of complete lines of FILE (0 when missing)
rows() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }
# wait_rows FILE N PID: until FILE has N rows or PID ended
wait_rows() {
    while [ "$(rows "$1")" -lt "$2" ] && kill -0 "$3" 2>/dev/null; do sleep 0.05; done
}
# once FILE: every step of FILE's rows appears once, in order 1..N
once() {
    $PY - "$1" "$N" <<'EOF'
import json, sys
steps = [json.loads(l)["step"] for l in open(sys.argv[1])]
sys.exit(0 if steps == list(range(1, int(sys.argv[2]) + 1)) else "  steps %s ... %s (%d rows)" % (steps[:3], steps[-3:], len(steps)))
EOF
}
# stopped_at OUT: the step of OUT's "stopped after step S" line
stopped_at() { sed -n 's/.*stopped after step \([0-9]*\) of .*/\1/p' "$1" | head -n 1; }

# ---- one process ----
run ref "$BIN" "${COMMON[@]}" --metrics ref.jsonl
for sig in INT TERM; do
    rm -rf ck m.jsonl
    "$BIN" "${COMMON[@]}" --save ck --metrics m.jsonl >"$sig.out" 2>&1 &
    pid=$!
    wait_rows m.jsonl 3 $pid
    kill -s $sig $pid
    wait $pid
    rc=$?
    [ $rc -eq 85 ] && ok || bad "SIG$sig: exit code $rc, want 85: $(tail -n 2 "$sig.out")"
    s=$(stopped_at "$sig.out")
    if [ -n "$s" ] && [ "$s" -lt $N ]; then
        ok
        grep -q "stopped after step $s of $N (SIG$sig): checkpoint ck/step-$(printf %08d "$s"); continue with --resume ck (exit 85)" "$sig.out" &&
            ok || bad "SIG$sig: the stop line: $(grep stopped "$sig.out")"
        [ -f "ck/step-$(printf %08d "$s")/index.json" ] && ok || bad "SIG$sig: no checkpoint of step $s"
        [ "$(rows m.jsonl)" -eq "$s" ] && ok || bad "SIG$sig: metrics has $(rows m.jsonl) rows, stopped after step $s"
        if run "resume_$sig" "$BIN" "${COMMON[@]}" --save ck --resume ck --metrics m.jsonl; then
            once m.jsonl && ok || bad "SIG$sig + resume: the metrics do not hold steps 1..$N once each"
            compare_losses ref.jsonl m.jsonl "SIG$sig at step $s, resumed" "1-$N" 0 && ok ||
                bad "SIG$sig + resume: losses differ from the uninterrupted run"
        fi
    else
        bad "SIG$sig: no 'stopped after step S of $N' line: $(tail -n 3 "$sig.out")"
    fi
done

# a second signal: at once, 128 + signal, without finishing the step (a model
# big enough that a step takes a while)
rm -rf ck2
"$BIN" train --data data.txt --model nano --hidden-size 256 --num-heads 4 --num-layers 4 --seq-len 128 \
    --batch-size 16 --steps 1000 --threads 1 --peak-tflops 1 --save ck2 --metrics m2.jsonl >twice.out 2>&1 &
pid=$!
wait_rows m2.jsonl 1 $pid
kill -TERM $pid
sleep 0.3 # two signals sent at once arrive as one (a pending signal is not queued twice)
kill -TERM $pid
wait $pid
rc=$?
[ $rc -eq 143 ] && ok || bad "two SIGTERMs: exit code $rc, want 143 (128 + 15): $(tail -n 2 twice.out)"
grep -q "second signal: exiting at once" twice.out && ok || bad "two SIGTERMs: no 'second signal' line: $(tail -n 2 twice.out)"

# --exit-duration-mins: saves and exits 85; without --save it says so
rm -rf ck3
"$BIN" "${COMMON[@]}" --steps 100000 --save ck3 --exit-duration-mins 0.02 >dur.out 2>&1
rc=$?
s=$(stopped_at dur.out)
[ $rc -eq 85 ] && [ -n "$s" ] && ok || bad "--exit-duration-mins: exit code $rc, want 85: $(tail -n 2 dur.out)"
grep -q "(--exit-duration-mins 0.02 reached): checkpoint ck3/step-" dur.out && [ -f "ck3/step-$(printf %08d "$s")/index.json" ] &&
    ok || bad "--exit-duration-mins: no checkpoint of step $s: $(grep stopped dur.out)"
"$BIN" "${COMMON[@]}" --steps 100000 --exit-duration-mins 0.01 >dur2.out 2>&1
rc=$?
[ $rc -eq 85 ] && grep -q "no --save, so no checkpoint (exit 85)" dur2.out && ok ||
    bad "--exit-duration-mins without --save: exit code $rc: $(tail -n 2 dur2.out)"
run stop_after "$BIN" "${COMMON[@]}" --stop-after 5 # a planned stop is a success (exit 0)

# ---- under MPI, ZeRO 3 ----
bash "$MPI" 2 true >/dev/null 2>&1 || skip_test "the MPI cases" "no working mpirun: apt-get install openmpi-bin libopenmpi-dev, then rebuild"
MCOMMON=("${COMMON[@]}" --zero 3 --log-all-ranks)
# pidfile wrapper: each rank writes its PID to pid.<rank>
WRAP='echo $$ >pid.${OMPI_COMM_WORLD_RANK:-${PMI_RANK:-x}}; exec "$@"'
bash "$MPI" 2 "$BIN" "${MCOMMON[@]}" --metrics mref.jsonl >mref.out 2>&1 || bad "dp 2 ZeRO 3 reference run failed: $(tail -n 3 mref.out)"
# every_rank OUT LABEL: both ranks stopped after the same step; prints it
every_rank() {
    local a b
    a=$(sed -n 's/^\[rank 0\] stopped after step \([0-9]*\) .*/\1/p' "$1")
    b=$(sed -n 's/^\[rank 1\] stopped after step \([0-9]*\) .*/\1/p' "$1")
    if [ -n "$a" ] && [ "$a" = "$b" ] && [ "$a" -lt $N ]; then
        echo "$a"
        return 0
    fi
    echo "FAIL: $2: ranks stopped after steps '${a}' and '${b}' (want one step below $N)" >&2
    return 1
}
# mpi_case LABEL HOW: HOW is rank1 (SIGTERM to rank 1 only), mpirun (SIGUSR1
# to mpirun) or duration (--exit-duration-mins)
mpi_case() {
    local label=$1 how=$2 extra=() pid rc s
    rm -rf mck m.jsonl pid.*
    [ "$how" = duration ] && extra=(--steps 100000 --exit-duration-mins 0.03)
    bash "$MPI" 2 bash -c "$WRAP" rank "$BIN" "${MCOMMON[@]}" --save mck --metrics m.jsonl "${extra[@]}" >"$label.out" 2>&1 &
    pid=$!
    if [ "$how" != duration ]; then
        wait_rows m.jsonl 3 $pid
        if [ "$how" = rank1 ]; then kill -TERM "$(cat pid.1)"; else kill -USR1 $pid; fi
    fi
    wait $pid
    rc=$?
    [ $rc -eq 85 ] && ok || bad "$label: exit code $rc, want 85: $(grep -v '^\[rank' "$label.out" | tail -n 3)"
    if s=$(every_rank "$label.out" "$label"); then
        ok
        local d
        d=mck/step-$(printf %08d "$s")
        [ -f "$d/index.json" ] && [ -f "$d/shard-00000-of-00002.bin" ] && [ -f "$d/shard-00001-of-00002.bin" ] && ok ||
            bad "$label: checkpoint $d lacks the index or a rank's shard: $(ls "$d" 2>&1)"
        [ "$how" = duration ] && return
        if bash "$MPI" 2 "$BIN" "${MCOMMON[@]}" --save mck --resume mck --metrics m.jsonl >"$label.r.out" 2>&1; then
            once m.jsonl && ok || bad "$label + resume: the metrics do not hold steps 1..$N once each"
            compare_losses mref.jsonl m.jsonl "dp 2 ZeRO 3, $label at step $s, resumed" "1-$N" 0 && ok ||
                bad "$label + resume: losses differ from the uninterrupted run"
        else
            bad "$label: resume failed: $(grep -v '^\[rank' "$label.r.out" | tail -n 3)"
        fi
    else
        FAIL=$((FAIL + 1))
    fi
}
mpi_case "SIGTERM to rank 1" rank1
if grep -q "Open MPI" <<<"$("${LMS_MPIRUN:-mpirun}" --version 2>&1)"; then
    mpi_case "SIGUSR1 to mpirun" mpirun
fi
mpi_case "exit-duration under MPI" duration
summary
