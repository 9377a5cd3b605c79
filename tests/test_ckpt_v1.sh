#!/usr/bin/env bash
# Old checkpoints keep loading: tests/fixtures/ckpt_v1/ holds two version-1
# checkpoints written at step 4 of 8 by the binary of 2026-12-01 (before
# checkpoint format 2), one by one process and one by 2 ranks under ZeRO-3
# (each rank's shard holds a run of the flattened parameter buffer, so slices
# start and end anywhere in a tensor). Resuming either must continue the run:
# steps 5-8 give the losses of the uninterrupted 8-step run (within relative
# 1e-5: the fixture was written on one machine, the reference run is made
# here), under one process and, with MPI, under other (dp, zero) layouts.
#
# The binary that wrote them held nothing out with --eval-interval 0; a resume
# of such a checkpoint keeps that split, and the reference run here gets it
# with --val-fraction 0. The fixture was made with (data.txt as written below,
# M without --val-fraction 0):
#   lmscale "${M[@]}" --stop-after 4 --save ck1
#   mpirun -np 2 lmscale "${M[@]}" --zero 3 --stop-after 4 --save ckz
# Usage: bash tests/test_ckpt_v1.sh /path/to/lmscale
set -u
NAME=test_ckpt_v1
HERE=$(cd "$(dirname "$0")" && pwd)
MPI=$HERE/mpirun.sh
FIX=$HERE/fixtures/ckpt_v1
# shellcheck source=tests/lib.sh
source "$HERE/lib.sh"
need_python
export OMP_NUM_THREADS=1

for i in $(seq 1 300); do echo "line $i: the quick brown fox jumps over the lazy dog; $((i * 7919 % 1000))"; done >data.txt
M=(train --data data.txt --num-layers 1 --num-heads 2 --hidden-size 16 --max-seq-len 16 --seq-len 16 --steps 8
   --batch-size 4 --micro-batch-size 2 --lr 2e-3 --warmup-steps 2 --grad-clip 0.5 --seed 11 --eval-interval 0
   --val-fraction 0 --quiet --peak-tflops 1 --threads 1)

for c in single dp2_zero3; do
    grep -q '"version": 1,' "$FIX/$c/index.json" && ok || bad "fixture $c is not a version-1 checkpoint"
done
run full "$BIN" "${M[@]}" --metrics full.jsonl || { summary; exit 1; }

# resume LABEL FIXTURE NP [FLAGS...]: resume a copy of the fixture on NP processes
resume() {
    local label=$1 fix=$2 np=$3
    shift 3
    rm -rf ck res.jsonl && cp -r "$FIX/$fix" ck
    if [ "$np" = 1 ]; then
        "$BIN" "${M[@]}" --resume ck "$@" --metrics res.jsonl >res.out 2>&1
    else
        bash "$MPI" "$np" "$BIN" "${M[@]}" --resume ck "$@" --metrics res.jsonl >res.out 2>&1
    fi || { bad "$label: resume failed: $(grep -v OPENBLAS res.out | tail -3)"; return; }
    grep -q "resumed from .* at step 4" res.out && ok || bad "$label: no 'resumed from ... at step 4' line"
    compare_losses full.jsonl res.jsonl "$label" 5-8 && ok || bad "$label: losses differ from the uninterrupted run"
}

resume "v1 one process -> one process" single 1
resume "v1 dp 2 zero 3 -> one process" dp2_zero3 1
if command -v "${LMS_MPIRUN:-mpirun}" >/dev/null 2>&1 && "$BIN" train --help 2>&1 | grep -q -- '--zero' &&
    bash "$MPI" 2 true >/dev/null 2>&1; then
    resume "v1 one process -> dp 2 zero 3" single 2 --zero 3
    resume "v1 dp 2 zero 3 -> dp 2 zero 1" dp2_zero3 2 --zero 1
    resume "v1 dp 2 zero 3 -> dp 4 zero 2" dp2_zero3 4 --zero 2 --micro-batch-size 1
else
    skip "resuming under mpirun" "no MPI launcher, or a build without MPI: apt-get install openmpi-bin libopenmpi-dev, then rebuild"
fi
summary
