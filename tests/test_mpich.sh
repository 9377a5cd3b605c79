#!/usr/bin/env bash
# lmscale under MPICH, beside the Open MPI build the rest of the suite uses:
# builds the lmscale target against MPICH (mpicc.mpich) into DIR, checks the
# binary links libmpich and not Open MPI's libmpi, then launches it with
# MPICH's hydra (mpiexec.mpich): the losses of 20 steps at dp 2 and 4, with
# --zero 0 and 3, match the one-process run within relative 1e-5 (as in
# test_zero.sh), and a job of 3 processes with --dp 2 fails with one clear
# message and every rank exiting non-zero; launched by Open MPI's mpirun
# instead, it refuses to run as N one-process copies. Skipped (tests/lib.sh)
# when MPICH is not installed (apt-get install mpich libmpich-dev).
# Usage: bash tests/test_mpich.sh DIR [C compiler]
# DIR is configured once and rebuilt incrementally on later runs.
set -u
SRC=$(cd "$(dirname "$0")/.." && pwd)
MPI=$SRC/tests/mpirun.sh
MPICC=/usr/bin/mpicc.mpich
MPIEXEC=/usr/bin/mpiexec.mpich
DIR=${1:?usage: test_mpich.sh BUILD_DIR [C compiler]}
CC_ARG=${2:+-DCMAKE_C_COMPILER=$2}
NAME=test_mpich
NO_BIN=1
# shellcheck source=tests/lib.sh
source "$SRC/tests/lib.sh"
for f in "$MPICC" "$MPIEXEC"; do
    [ -x "$f" ] || skip_test "lmscale under MPICH: $f not found" "apt-get install mpich libmpich-dev"
done
need_python

# build: the lmscale target only (the suite's other binaries are not needed)
t0=$(date +%s)
mkdir -p "$DIR" || exit 1
if [ ! -f "$DIR/CMakeCache.txt" ]; then
    cmake -S "$SRC" -B "$DIR" -DCMAKE_BUILD_TYPE=Release ${CC_ARG:+"$CC_ARG"} \
        -DMPI_C_COMPILER="$MPICC" -DMPIEXEC_EXECUTABLE="$MPIEXEC" >"$DIR/lms-configure.log" 2>&1 ||
        { echo "FAIL: configuring against MPICH failed:"; tail -20 "$DIR/lms-configure.log"; rm -f "$DIR/CMakeCache.txt"; exit 1; }
fi
cmake --build "$DIR" --target lmscale -j2 >"$DIR/lms-build.log" 2>&1 ||
    { echo "FAIL: building against MPICH failed:"; grep -E -A3 "error|Error" "$DIR/lms-build.log" | head -30; exit 1; }
echo "  MPICH build ($DIR): $(($(date +%s) - t0)) s"

BIN=$DIR/lmscale
export OMP_NUM_THREADS=1 LMS_MPIRUN=$MPIEXEC

# the binary is MPICH's: libmpich, and no Open MPI library anywhere
libs=$(ldd "$BIN")
grep -q "libmpich\.so" <<<"$libs" && ok || bad "$BIN does not link libmpich: $(grep -i mpi <<<"$libs")"
if grep -Eq "libmpi\.so|openmpi|libopen-(pal|rte)" <<<"$libs"; then bad "$BIN links Open MPI: $(grep -Ei "mpi|open-" <<<"$libs")"; else ok; fi

for i in $(seq 1 400); do echo "line $i: the quick brown fox jumps over the lazy dog; $((i * 7919 % 1000))"; done >"$T/data.txt"
COMMON=(train --data "$T/data.txt" --model nano --steps 20 --batch-size 8 --seq-len 16 --threads 1 --lr 2e-3
        --grad-clip 0.5 --warmup-steps 3 --eval-interval 0 --data-order sequential --peak-tflops 1)


"$BIN" "${COMMON[@]}" --quiet --metrics "$T/ref.jsonl" >"$T/ref.out" 2>&1 ||
    bad "one-process run failed: $(tail -2 "$T/ref.out")"
for np in 2 4; do
    for z in 0 3; do
        label="mpiexec.mpich -np $np, dp=$np zero=$z"
        rm -f "$T/m.jsonl"
        if bash "$MPI" "$np" "$BIN" "${COMMON[@]}" --zero "$z" --metrics "$T/m.jsonl" >"$T/m.out" 2>&1; then
            # one job of np ranks, not np one-process runs (the launcher was
            # recognised): rank 0 alone logs, and says mpi
            n=$(grep -c "^data parallel: $np ranks (mpi)" "$T/m.out")
            [ "$n" -eq 1 ] && ok || bad "$label: 'data parallel: $np ranks (mpi)' logged $n times: $(grep -m2 -E "^(model|data parallel)" "$T/m.out")"
            compare_losses "$T/ref.jsonl" "$T/m.jsonl" "$label" && ok || bad "$label: losses differ from the one-process run"
        else
            bad "$label: run failed: $(grep -m1 "error" "$T/m.out" || tail -3 "$T/m.out")"
        fi
    done
done

# a bad configuration: 3 processes, --dp 2. Each rank runs under a wrapper
# that records its own exit code, so a rank the launcher killed shows up.
rm -f "$T"/rc.*
# shellcheck disable=SC2016 # expanded by the wrapper
wrap='"$@"; rc=$?; echo $rc >"'$T'/rc.${PMI_RANK:-x}"; exit $rc'
if bash "$MPI" 3 bash -c "$wrap" rank "$BIN" "${COMMON[@]}" --dp 2 --metrics "$T/never.jsonl" >"$T/f.out" 2>"$T/f.err"; then
    bad "3 processes with --dp 2: succeeded"
else
    re="the job has 3 processes but --dp 2 x --tp 1 x --pp 1 = 2"
    n=$(grep -c "lmscale train: error" "$T/f.err")
    [ "$n" -eq 1 ] && grep -q -- "$re" "$T/f.err" && ok ||
        bad "3 processes with --dp 2: want one message /$re/, got $n: $(head -3 "$T/f.err")"
    for r in 0 1 2; do
        code=$(cat "$T/rc.$r" 2>/dev/null)
        [[ $code =~ ^[0-9]+$ ]] && [ "$code" -ne 0 ] && ok ||
            bad "3 processes with --dp 2: rank $r exit code '${code:-none: killed?}' (want non-zero, exited by itself)"
    done
    [ ! -e "$T/never.jsonl" ] && ok || bad "3 processes with --dp 2: metrics file written"
fi
# the MPICH build under Open MPI's launcher: every process would be a world
# of one (N copies of a one-process run); lmscale refuses, naming its MPI
if [ -x /usr/bin/mpirun.openmpi ]; then
    if LMS_MPIRUN=/usr/bin/mpirun.openmpi bash "$MPI" 2 "$BIN" "${COMMON[@]}" --metrics "$T/never.jsonl" >"$T/x.out" 2>"$T/x.err"; then
        bad "MPICH build under Open MPI's mpirun: succeeded"
    else
        re="the launcher started 2 processes \(OMPI_COMM_WORLD_SIZE=2\) but MPI sees each as a world of 1.*MPICH"
        n=$(grep -c "lmscale train: error" "$T/x.err")
        [ "$n" -eq 1 ] && grep -Eq -- "$re" "$T/x.err" && ok ||
            bad "MPICH build under Open MPI's mpirun: want one message /$re/, got $n: $(head -3 "$T/x.err")"
        [ ! -e "$T/never.jsonl" ] && ok || bad "MPICH build under Open MPI's mpirun: metrics file written"
    fi
fi
summary
