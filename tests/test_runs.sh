#!/usr/bin/env bash
# A run across resumes (docs/checkpoints.md, "Resume rules" and "Run folders"):
#   - --resume with no other flag than --data continues the run as it was
#     started: schedule, steps, optimizer, validation, split, data order and
#     save cadence come from the checkpoint, so the losses, learning rates and
#     validation losses equal the uninterrupted run's bit for bit;
#   - a flag that differs is applied with a one-line notice (lr, steps, save
#     cadence) or refused (seed, batch, sequence length, data order, the split,
#     other data); one that agrees says nothing; --stop-after at or below the
#     resumed step is refused;
#   - --eval-interval does not change the training data (the held-out part is
#     the same whether or not validation runs);
#   - a run folder belongs to one run: --save into another run's folder is
#     refused (also under mpirun, by every rank), --overwrite replaces it,
#     checkpoints from before run ids still resume.
# Usage: bash tests/test_runs.sh /path/to/lmscale
set -u
NAME=test_runs
HERE=$(cd "$(dirname "$0")" && pwd)
MPI=$HERE/mpirun.sh
# shellcheck source=tests/lib.sh
source "$HERE/lib.sh"
export OMP_NUM_THREADS=1 XDG_CACHE_HOME=$T/cache

for i in $(seq 1 500); do echo "line $i: sphinx of black quartz, judge my vow; $((i * 7919 % 1000))"; done >data.txt
head -n 400 data.txt >other.txt
# expect_fail LABEL REGEX cmd...: exit status 2 and REGEX on stderr
expect_fail() {
    local label=$1 re=$2
    shift 2
    "$@" >"$label.out" 2>"$label.err"
    local rc=$?
    [ $rc -eq 2 ] && grep -Eq -- "$re" "$label.err" && ok ||
        bad "$label: exit code $rc (want 2), stderr: $(head -c 400 "$label.err")"
}
ids() { sed -n 's/.*"run": {"id": "\([0-9a-f]*\)".*/\1/p' "$@" | sort -u; }

RUN=(train --data data.txt --model nano --threads 1 --peak-tflops 1 --quiet)
A=(--steps 24 --batch-size 4 --seq-len 32 --lr 1e-3 --min-lr 1e-4 --warmup-steps 5 --lr-schedule linear --seed 7
   --data-order sequential --val-fraction 0.2 --eval-interval 4 --eval-batches 2 --grad-clip 0.5 --weight-decay 0.05
   --beta2 0.99 --save-every 4 --keep-last 2)

# ---- the run restored from its checkpoint ----
run ref "$BIN" "${RUN[@]}" "${A[@]}" --save ref_ck --metrics ref.jsonl
run first "$BIN" "${RUN[@]}" "${A[@]}" --save ck --stop-after 10 --metrics m.jsonl
if run resumed "$BIN" train --data data.txt --threads 1 --peak-tflops 1 --quiet --resume ck --metrics m.jsonl; then
    grep -q "^resume: run [0-9a-f]\{16\} at step 10 of 24 | lr 0.001 -> 0.0001 (linear, warm-up 5) | batch 4 x seq 32 | seed 7, sequential order | validation: 20% of --data held out, every 4 steps | saving into ck every 4 steps, keeping the newest 2$" resumed.out &&
        ok || bad "resume: the summary line: $(grep '^resume' resumed.out)"
    grep -q "replaces" resumed.out && bad "resume without flags printed a notice: $(grep replaces resumed.out)" || ok
    $PY - ref.jsonl m.jsonl <<'EOF' && ok || bad "resume: lr, loss or val_loss differ from the uninterrupted run"
import json, sys
ref, got = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
assert [r["step"] for r in got] == list(range(1, 25)), [r["step"] for r in got]
for a, b in zip(ref, got):
    for k in ("loss", "lr", "grad_norm", "val_loss"):
        if a.get(k) != b.get(k):
            sys.exit("  step %d: %s %r != %r" % (a["step"], k, a.get(k), b.get(k)))
print("  resumed at 10 with --data only: steps 1-24 identical (loss, lr, grad norm, val_loss at every 4th step)")
EOF
    [ "$(ls ck | tr '\n' ' ')" = "step-00000020 step-00000024 " ] && ok ||
        bad "resume: --save-every 4 --keep-last 2 not restored: ck holds $(ls ck | tr '\n' ' ')"
    [ "$(ids ck/*/index.json ref_ck/*/index.json | wc -l)" -eq 2 ] && [ "$(ids ck/*/index.json | wc -l)" -eq 1 ] && ok ||
        bad "run ids: one per run, kept on resume: $(ids ck/*/index.json | tr '\n' ' ') / $(ids ref_ck/*/index.json)"
fi

# ---- flags on resume: notices, refusals, silence ----
rm -rf ck && run first2 "$BIN" "${RUN[@]}" "${A[@]}" --save ck --stop-after 8
cp -r ck ck8
if run notice "$BIN" "${RUN[@]}" --resume ck --lr 5e-4 --steps 30 --save-every 2 --eval-interval 0 --stop-after 12 --metrics n.jsonl; then
    for want in "resume: --lr 0.0005 replaces the run's 0.001" "resume: --steps 30 replaces the run's 24" \
        "resume: --save-every 2 replaces the run's 4" "resume: --eval-interval 0 replaces the run's 4"; do
        grep -qF "$want" notice.out && ok || bad "no notice '$want': $(grep '^resume' notice.out)"
    done
    [ "$(grep -c 'replaces' notice.out)" -eq 4 ] && ok || bad "notices: $(grep -c replaces notice.out), want 4"
    [ -d ck/step-00000010 ] && [ -d ck/step-00000012 ] && ok || bad "--save-every 2 not applied: $(ls ck | tr '\n' ' ')"
    grep -q "^step    12/30 " notice.out || $PY -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; sys.exit(0 if r[0]["step"]==9 and r[0]["lr"]<0.0005 else 1)' n.jsonl &&
        ok || bad "--lr 5e-4 --steps 30 not applied: $(head -c 200 n.jsonl)"
fi
rm -rf ck && cp -r ck8 ck
run same "$BIN" "${RUN[@]}" "${A[@]}" --resume ck --stop-after 9 && { grep -q replaces same.out && bad "flags equal to the run's gave a notice: $(grep replaces same.out)" || ok; }
rm -rf ck && cp -r ck8 ck
expect_fail seed "--seed 8 differs from the run's 7 .*drop --seed to continue the run" "$BIN" "${RUN[@]}" --resume ck --seed 8
expect_fail order "--data-order random differs from the run's sequential" "$BIN" "${RUN[@]}" --resume ck --data-order random
expect_fail valfrac "--val-fraction 0.1 differs from the run's 0.2 .*held out" "$BIN" "${RUN[@]}" --resume ck --val-fraction 0.1
expect_fail batch "trained with --batch-size 4 --seq-len 32, this run asks for --batch-size 8 --seq-len 32" \
    "$BIN" "${RUN[@]}" --resume ck --batch-size 8
expect_fail seqlen "trained with --batch-size 4 --seq-len 32, this run asks for --batch-size 4 --seq-len 16" \
    "$BIN" "${RUN[@]}" --resume ck --seq-len 16
expect_fail stop_at "--stop-after 8 is not after step 8, where checkpoint 'ck/step-00000008' resumes" \
    "$BIN" "${RUN[@]}" --resume ck --stop-after 8
expect_fail stop_below "--stop-after 5 is not after step 8" "$BIN" "${RUN[@]}" --resume ck --stop-after 5
expect_fail other_data "the data differ from the run's: checkpoint 'ck/step-00000008' trained on [0-9]+ tokens with [0-9]+ for validation" \
    "$BIN" "${RUN[@]/data.txt/other.txt}" --resume ck
expect_fail val_data "the data differ from the run's" "$BIN" "${RUN[@]}" --resume ck --val-data other.txt
[ "$(ls ck | tr '\n' ' ')" = "$(ls ck8 | tr '\n' ' ')" ] && ok || bad "a refused resume changed the folder: $(ls ck | tr '\n' ' ')"

# ---- --eval-interval does not change the training data ----
E=(--steps 10 --batch-size 4 --seq-len 32 --lr 2e-3 --seed 3)
run ev0 "$BIN" "${RUN[@]}" "${E[@]}" --eval-interval 0 --metrics e0.jsonl
run ev3 "$BIN" "${RUN[@]}" "${E[@]}" --eval-interval 3 --metrics e3.jsonl
compare_losses e0.jsonl e3.jsonl "--eval-interval 3 vs 0" 1-10 0 && ok || bad "--eval-interval changed the training losses"
grep -q "held out" ev0.out && [ "$(grep -o '[0-9]* held out' ev0.out)" = "$(grep -o '[0-9]* held out' ev3.out)" ] && ok ||
    bad "the held-out part depends on --eval-interval: '$(grep -o '[0-9]* held out' ev0.out)' vs '$(grep -o '[0-9]* held out' ev3.out)'"

# ---- run folders ----
rm -rf ck && cp -r ck8 ck
expect_fail folder "--save ck holds 2 checkpoints of another run \(newest: step-00000008, run [0-9a-f]{16}; this run is [0-9a-f]{16}\): continue that run with --resume ck, give this one a new --save folder, or add --overwrite" \
    "$BIN" "${RUN[@]}" --steps 3 --save ck
[ "$(ls ck | tr '\n' ' ')" = "step-00000004 step-00000008 " ] && ok || bad "a refused run wrote into the folder: $(ls ck | tr '\n' ' ')"
run other_run "$BIN" "${RUN[@]}" --steps 3 --save ckB
expect_fail resume_into "--save ckB holds 1 checkpoint of another run" "$BIN" "${RUN[@]}" --resume ck --save ckB
if run overwrite "$BIN" "${RUN[@]}" --steps 3 --save ck --overwrite; then
    grep -q "overwrite: removed 2 checkpoints of another run from ck" overwrite.out && ok || bad "--overwrite: no notice: $(head -3 overwrite.out)"
    [ "$(ls ck | tr '\n' ' ')" = "step-00000003 " ] && ok || bad "--overwrite left: $(ls ck | tr '\n' ' ')"
    run then_resume "$BIN" "${RUN[@]}" --resume ck --steps 5 && [ -d ck/step-00000005 ] && ok || bad "resuming the new run in ck"
fi
# a checkpoint from before run ids: resumes, and its folder is the resumed run's
rm -rf old && cp -r ck8 old
$PY - old/*/index.json <<'EOF'
import re, sys
for p in sys.argv[1:]:
    s = open(p).read()
    open(p, "w").write(re.sub(r'  "run": \{[^}]*\},\n', "", s))
EOF
if ! grep -q '"run"' old/step-00000008/index.json; then
    run legacy "$BIN" "${RUN[@]}" "${A[@]}" --resume old --stop-after 12 && [ -d old/step-00000012 ] && ok ||
        bad "a checkpoint without a run id did not resume into its folder"
    grep -q "resume: run (recorded before run ids) at step 8" legacy.out && ok || bad "legacy resume line: $(grep '^resume' legacy.out)"
else
    bad "could not strip the run record from the copy"
fi

# ---- under MPI: every rank refuses, one message ----
if bash "$MPI" 2 true >/dev/null 2>&1; then
    rm -rf ck && cp -r ck8 ck
    timeout -k 5 120 bash "$MPI" 2 "$BIN" "${RUN[@]}" --steps 3 --batch-size 4 --save ck >mpi.out 2>&1
    rc=$?
    [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ "$(grep -c 'holds 2 checkpoints of another run' mpi.out)" -eq 1 ] && ok ||
        bad "mpirun -np 2 into another run's folder: exit $rc, $(grep -c 'another run' mpi.out) messages (want 1)"
    if timeout -k 5 120 bash "$MPI" 2 "$BIN" "${RUN[@]}" --steps 3 --batch-size 4 --zero 3 --save ck --overwrite >mpi2.out 2>&1; then
        [ "$(ls ck | tr '\n' ' ')" = "step-00000003 " ] && [ "$(ids ck/*/index.json | wc -l)" -eq 1 ] && ok ||
            bad "mpirun --overwrite: $(ls ck | tr '\n' ' ')"
    else
        bad "mpirun -np 2 --zero 3 --overwrite failed: $(tail -n 3 mpi2.out)"
    fi
else
    skip "the MPI case" "no working mpirun: apt-get install openmpi-bin libopenmpi-dev, then rebuild"
fi
summary
