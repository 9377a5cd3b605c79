#!/usr/bin/env bash
# The SLURM examples on a real SLURM: starts a private one-node cluster
# (munged, slurmctld, slurmd; config, state, spool, logs and the munge socket
# and key under the test's temporary directory, free ports), then submits
#   A  examples/slurm/train_gpt2.sbatch (srun --mpi=pmix), 2 tasks on 1 node,
#      30 steps of a nano model: the job COMPLETES, lmscale runs data parallel
#      over 2 MPI ranks, only rank 0 prints, and the loss falls;
#   B  train_gpt2_mpirun.sbatch (mpirun in the allocation) stopping at step 15;
#   C  train_gpt2.sbatch again on B's checkpoint directory: it resumes at step
#      15, and B + C give A's losses (a requeued or resubmitted job continues);
#   then requeues C, which finds the run complete and exits cleanly;
#   D  train_gpt2.sbatch out of time (EXIT_DURATION_MINS): lmscale saves and
#      exits 85, and the script requeues the job.
# Skipped (tests/lib.sh) when not root or SLURM/munge are missing. Stops every
# daemon it started by PID and checks that nothing of its cluster is left.
# Usage: bash tests/test_slurm.sh /path/to/lmscale
set -u
NAME=test_slurm
EXAMPLES=$(cd "$(dirname "$0")/../examples/slurm" && pwd) # before lib.sh changes directory
PATH=$PATH:/usr/sbin:/sbin
# shellcheck source=tests/lib.sh
source "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || skip_test "the SLURM examples: the test starts munged, slurmctld and slurmd" "run it as root"
for c in munged mungekey munge unmunge slurmctld slurmd sbatch srun squeue scontrol sinfo scancel setpriv; do
    need_cmd $c "slurm-wlm munge libpmix-dev"
done
id munge >/dev/null 2>&1 || skip_test "the SLURM examples: no munge user" "apt-get install munge"
need_python
# Under the sanitizer build: the jobs' ranks are MPI processes, so, as in
# tests/mpirun.sh, no leak checking in them (Open MPI's allocations cannot be
# attributed); heap errors and undefined behaviour stay fatal. sbatch and
# srun pass the environment on to the job.
[ -z "${ASAN_OPTIONS:-}" ] || export ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0"

HOST=$(hostname -s)
CONF=$T/slurm.conf
MSOCK=$T/munge/munge.sock
JOBS=()
DAEMONS=() # PIDs of munged, slurmctld, slurmd (our children, started in the foreground with &)
sl() { SLURM_CONF=$CONF "$@"; }

# ---- stop everything, by PID; idempotent (also the EXIT trap) ----
stop_cluster() {
    local pid i
    if [ ${#JOBS[@]} -gt 0 ] && [ ${#DAEMONS[@]} -gt 1 ]; then
        # jobs first: cancel them, then let every slurmstepd finish (it reports
        # to slurmd and slurmctld on its way out) before the daemons stop
        sl scancel "${JOBS[@]}" 2>/dev/null
        for i in $(seq 1 60); do
            [ -z "$(sl squeue -h -o %i 2>/dev/null)" ] && [ -z "$(leftovers "${DAEMONS[@]}")" ] && break
            sleep 0.25
        done
    fi
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do # slurmd, slurmctld, then munged
        pid=${DAEMONS[i]}
        kill "$pid" 2>/dev/null
        for _ in $(seq 1 40); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.25
        done
        kill -9 "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    DAEMONS=()
    JOBS=()
}
# leftovers [PID...]: PIDs of processes of this cluster still alive, but the
# given ones and their children (slurmctld's slurmscriptd): everything it ran
# has SLURM_CONF=$CONF in its environment (the daemons, slurmstepd, the jobs).
leftovers() {
    local e p pp stat
    for e in /proc/[0-9]*/environ; do
        p=${e#/proc/}
        p=${p%/environ}
        grep -qzx "SLURM_CONF=$CONF" "$e" 2>/dev/null || continue
        stat=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        stat=${stat##*) } # "pid (comm) state ppid ...": comm may hold spaces
        pp=${stat#* }
        pp=${pp%% *}
        case " $$ $* " in *" $p "* | *" $pp "*) continue ;; esac
        echo "$p"
    done
}
cleanup() {
    stop_cluster
    local p
    for p in $(leftovers); do kill -9 "$p" 2>/dev/null; done
    chmod -R u+rwx "$T" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
show_logs() {
    local f
    for f in "$T"/*.out "$T"/log/*; do
        [ -s "$f" ] || continue
        echo "---- ${f#"$T"/} (last 15 lines)"
        tail -n 15 "$f" | grep -v OPENBLAS_CORETYPE
    done
}
fail_setup() {
    bad "$*"
    show_logs
    summary
    exit 1
}
# until SECONDS cmd...: retries cmd every 0.25 s for up to SECONDS
until_ok() {
    local end=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $end ] || return 1
        sleep 0.25
    done
}

# ---- munge: a private daemon on a private socket and key, whatever the system runs ----
chmod 755 "$T" # munged runs as the munge user and must reach its socket directory
mkdir -p "$T/munge" "$T/log" "$T/state" "$T/spool" "$T/tmp"
mungekey --create --keyfile="$T/munge/munge.key" || fail_setup "mungekey --create failed"
chown -R munge:munge "$T/munge"
chmod 755 "$T/munge"
chmod 600 "$T/munge/munge.key"
SLURM_CONF=$CONF setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --foreground \
    --socket="$MSOCK" --key-file="$T/munge/munge.key" --pid-file="$T/munge/munged.pid" \
    --seed-file="$T/munge/munged.seed" --log-file="$T/munge/munged.log" >"$T/log/munged.stderr" 2>&1 &
DAEMONS+=($!)
munge_ok() { munge -n -S "$MSOCK" | unmunge -S "$MSOCK"; }
until_ok 15 munge_ok || fail_setup "munged did not answer on $MSOCK"

# ---- slurm.conf: this host as the one node, free ports, everything under $T ----
read -r CTLD_PORT SLURMD_PORT < <($PY -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("", 0))
print(*(s.getsockname()[1] for s in socks))')
# Job ids name PMIx namespaces and MPI session directories on this host:
# start at a random one, so two copies of this test do not collide.
FIRST_JOB=$((RANDOM * 1000 + 1000 + $$ % 1000))
HW=$(slurmd -C | head -n 1) # NodeName=... CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=...
CPUS=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$HW")
MEM=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$HW")
[ "${CPUS:-0}" -ge 2 ] || skip_test "the SLURM examples: 2 tasks on this node, which has ${CPUS:-?} CPU(s)" "run it on a machine with 2 or more CPUs"
TOPO=$(tr ' ' '\n' <<<"$HW" | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=' | tr '\n' ' ')
cat >"$CONF" <<EOF
ClusterName=lmscaletest
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MSOCK
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MailProg=/bin/true
MinJobAge=300
FirstJobId=$FIRST_JOB
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
TmpFS=$T/tmp
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/log/slurmctld.log
SlurmdLogFile=$T/log/slurmd.log
NodeName=$HOST NodeAddr=127.0.0.1 ${TOPO}RealMemory=$((MEM * 9 / 10)) State=UNKNOWN
PartitionName=test Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
SLURM_CONF=$CONF slurmctld -D -c -f "$CONF" >"$T/log/slurmctld.stderr" 2>&1 &
DAEMONS+=($!)
SLURM_CONF=$CONF slurmd -D -N "$HOST" -f "$CONF" >"$T/log/slurmd.stderr" 2>&1 &
DAEMONS+=($!)
node_idle() { [ "$(sl sinfo -h -n "$HOST" -o %T)" = idle ]; }
until_ok 30 node_idle || fail_setup "the node did not become idle: $(sl sinfo -h 2>&1 | head -2)"
ok

# ---- the jobs ----
for i in $(seq 1 400); do echo "line $i: the quick brown fox jumps over the lazy dog; $((i * 7919 % 1000))"; done >"$T/data.txt"
# submit NAME SCRIPT [VAR=value...]: sbatch with tiny settings, 1 node x 2 tasks; sets JOB
submit() {
    local name=$1 script=$2
    shift 2
    JOB=$(env SLURM_CONF="$CONF" TMPDIR="$T/tmp" LMSCALE="$BIN" DATA="$T/data.txt" MODEL=nano SEQ_LEN=32 BATCH=8 STEPS=30 \
        LR=3e-3 MIN_LR=3e-4 WARMUP=2 EVAL_INTERVAL=0 SAVE_EVERY=0 KEEP_LAST=0 \
        EXTRA_ARGS="--peak-tflops 1 --data-order sequential" "$@" \
        sbatch --parsable --nodes=1 --ntasks-per-node=2 --cpus-per-task=1 --time=5 --job-name="$name" \
        --output="$T/$name.out" "$EXAMPLES/$script" 2>"$T/sbatch.err")
    JOB=${JOB%%;*}
    if [ -z "$JOB" ]; then
        bad "$name: sbatch failed: $(head -3 "$T/sbatch.err")"
        return 1
    fi
    JOBS+=("$JOB")
}
# finish NAME: waits (squeue every 0.5 s, at most 50 s) until JOB ends;
# passes when it COMPLETED with exit code 0:0
finish() {
    local name=$1 state="" end=$((SECONDS + 50)) info
    while [ $SECONDS -lt $end ]; do
        state=$(sl squeue -h -j "$JOB" -t all -o %T 2>/dev/null)
        case $state in PENDING | CONFIGURING | RUNNING | COMPLETING | REQUEUED | "") sleep 0.5 ;; *) break ;; esac
    done
    info=$(sl scontrol -o show job "$JOB" 2>&1)
    state=$(sed -n 's/.* JobState=\([A-Z_]*\) .*/\1/p' <<<"$info")
    local code
    code=$(sed -n 's/.* ExitCode=\([0-9:]*\) .*/\1/p' <<<"$info")
    if [ "$state" = COMPLETED ] && [ "$code" = 0:0 ]; then
        ok
        return 0
    fi
    [ "$state" = RUNNING ] || [ "$state" = PENDING ] && sl scancel "$JOB"
    bad "$name: job $JOB ended ${state:-unknown} ($(sed -n 's/.* \(Reason=[^ ]*\) .*/\1/p' <<<"$info")) with exit code ${code:-?} (want COMPLETED, 0:0)"
    grep -v OPENBLAS_CORETYPE "$T/$name.out" 2>/dev/null | tail -n 8 | sed 's/^/  /'
    return 1
}
# runs_dp2 NAME STEPS: the job's lmscale ran data parallel over 2 MPI ranks and
# only rank 0 printed its step lines
runs_dp2() {
    local name=$1 steps=$2
    grep -q "^data parallel: 2 ranks (mpi)" "$T/$name.out" && ok ||
        bad "$name: no 'data parallel: 2 ranks (mpi)' line in the job output"
    local n
    n=$(grep -c "^step " "$T/$name.out")
    [ "$n" -eq "$steps" ] && ok || bad "$name: $n step lines in the job output (want $steps: only rank 0 prints)"
}
# losses METRICS FIRST LAST [REF]: the metrics hold steps FIRST..LAST; with
# REF, their losses equal REF's within relative 1e-5; without, the loss fell
losses() {
    $PY - "$@" <<'PYEOF'
import json, sys
path, first, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
try:
    rows = [json.loads(l) for l in open(path)]
except (OSError, ValueError) as e:
    sys.exit("  %s: %s" % (path, e))
steps = [r["step"] for r in rows]
if steps != list(range(first, last + 1)):
    sys.exit("  %s: steps %s, want %d..%d" % (path, steps[:3] + ["..."] + steps[-2:], first, last))
loss = {r["step"]: r["loss"] for r in rows}
if len(sys.argv) > 4:
    try:
        ref = {json.loads(l)["step"]: json.loads(l)["loss"] for l in open(sys.argv[4])}
    except (OSError, ValueError) as e:
        sys.exit("  run A: %s" % e)
    if any(s not in ref for s in steps):
        sys.exit("  run A's metrics lack steps %d..%d" % (first, last))
    worst = max(abs(loss[s] - ref[s]) / ref[s] for s in steps)
    print("  steps %d-%d, worst relative difference from run A %.2e" % (first, last, worst))
    sys.exit(0 if worst <= 1e-5 else 1)
print("  loss %.4f at step %d -> %.4f at step %d" % (loss[first], first, loss[last], last))
sys.exit(0 if loss[last] < 0.8 * loss[first] else 1)
PYEOF
}

# A: srun --mpi=pmix, 30 steps
if submit A train_gpt2.sbatch SAVE="$T/ckA" && finish A; then
    runs_dp2 A 30
    losses "$T/ckA/metrics.jsonl" 1 30 && ok || bad "A: the loss did not fall by 20% in 30 steps"
    [ -f "$T/ckA/step-00000030/index.json" ] && ok || bad "A: no checkpoint step-00000030 in SAVE"
fi
# B: mpirun inside the allocation, stops at step 15 (as if the job had been cut off there)
if command -v mpirun >/dev/null 2>&1; then
    if submit B train_gpt2_mpirun.sbatch SAVE="$T/ckB" EXTRA_ARGS="--peak-tflops 1 --data-order sequential --stop-after 15" &&
        finish B; then
        runs_dp2 B 15
        grep -q "^lmscale: mpirun -np 2 --map-by ppr:2:node:PE=1 " "$T/B.out" && ok ||
            bad "B: not launched by mpirun, 2 ranks per node: $(grep "^lmscale: " "$T/B.out" | tail -n 1 | cut -c 1-100)"
        [ -f "$T/ckB/step-00000015/index.json" ] && ok || bad "B: no checkpoint step-00000015 in SAVE"
        losses "$T/ckB/metrics.jsonl" 1 15 "$T/ckA/metrics.jsonl" && ok || bad "B: losses differ from run A"
    fi
else
    echo "  no mpirun: train_gpt2_mpirun.sbatch not run"
    submit B train_gpt2.sbatch SAVE="$T/ckB" EXTRA_ARGS="--peak-tflops 1 --data-order sequential --stop-after 15" &&
        finish B
fi
# C: resubmitted on B's SAVE: resumes at step 15 and finishes steps 16..30 as A did
if submit C train_gpt2.sbatch SAVE="$T/ckB" && finish C; then
    grep -q "resumed from $T/ckB/step-00000015 at step 15" "$T/C.out" && ok ||
        bad "C: did not resume from B's checkpoint at step 15"
    runs_dp2 C 15
    tail -n 15 "$T/ckB/metrics.jsonl" >"$T/C.jsonl"
    losses "$T/C.jsonl" 16 30 "$T/ckA/metrics.jsonl" && ok || bad "C: steps 16-30 differ from run A"
    # a requeue runs the script again (same job, output appended): it finds
    # the run complete. SLURM holds a requeued job back ~2 minutes; StartTime=now lifts that.
    if sl scontrol requeue "$JOB" 2>"$T/requeue.err" &&
        sl scontrol update JobId="$JOB" StartTime=now 2>>"$T/requeue.err"; then
        if finish C; then
            grep -q "^lmscale: job $JOB (restart 1)" "$T/C.out" && ok || bad "C requeued: no 'restart 1' line"
            grep -q "the run is complete, nothing to do" "$T/C.out" && ok ||
                bad "C requeued: did not find the run complete"
            [ "$(grep -c "^step " "$T/C.out")" -eq 15 ] && ok || bad "C requeued: trained again"
        fi
    else
        bad "scontrol requeue $JOB failed: $(head -2 "$T/requeue.err")"
    fi
fi

# D: a job out of time: EXIT_DURATION_MINS (the scripts derive it from the
# time left) makes lmscale save and exit 85 on every rank; the script then
# requeues the job (SLURM holds it back; the test cancels it)
if submit D train_gpt2.sbatch SAVE="$T/ckD" STEPS=100000 EXIT_DURATION_MINS=0.02; then
    end=$((SECONDS + 60))
    while [ $SECONDS -lt $end ] && ! grep -q "requeueing job" "$T/D.out" 2>/dev/null; do sleep 0.5; done
    for _ in $(seq 1 20); do
        info=$(sl scontrol -o show job "$JOB" 2>&1)
        [ "$(sed -n 's/.* Restarts=\([0-9]*\) .*/\1/p' <<<"$info")" = 1 ] && break
        sleep 0.5
    done
    grep -q "^stopped after step [0-9]* of 100000 (--exit-duration-mins 0.02 reached): checkpoint $T/ckD/step-[0-9]*; continue with --resume $T/ckD (exit 85)" "$T/D.out" &&
        ok || bad "D: no 'stopped after step' line: $(grep -v OPENBLAS "$T/D.out" | tail -n 4)"
    s=$(sed -n 's/^stopped after step \([0-9]*\) .*/\1/p' "$T/D.out" | head -n 1)
    [ -n "$s" ] && [ -f "$T/ckD/step-$(printf %08d "$s")/index.json" ] && ok || bad "D: no checkpoint of step ${s:-?}"
    grep -q "^lmscale: stopped early with a checkpoint in $T/ckD (exit 85): requeueing job $JOB" "$T/D.out" && ok ||
        bad "D: the script did not requeue on exit 85: $(grep '^lmscale' "$T/D.out" | tail -n 2)"
    [ "$(sed -n 's/.* Restarts=\([0-9]*\) .*/\1/p' <<<"$info")" = 1 ] && ok ||
        bad "D: not requeued: $(sed -n 's/.*\(JobState=[^ ]*\).*\(Restarts=[^ ]*\).*/\1 \2/p' <<<"$info")"
    sl scancel "$JOB"
fi

# ---- stop the cluster; nothing of it may be left running ----
stop_cluster
for _ in $(seq 1 20); do # a slurmstepd may take a moment to finish exiting
    left=$(leftovers)
    [ -z "$left" ] && break
    sleep 0.25
done
[ -z "$left" ] && ok || bad "processes left running: $(for p in $left; do tr '\0' ' ' <"/proc/$p/cmdline"; echo; done)"
[ "$FAIL" -eq 0 ] || show_logs
echo "  ${SECONDS}s in all"
summary
