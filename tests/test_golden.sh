#!/usr/bin/env bash
# Recorded results: a fixed set of short runs (one process on the cpu and ref
# backends, dp 2 and 4 with ZeRO 0-3, gradient accumulation, checkpoint and
# resume) gives the per-step losses and gradient norms recorded in
# tests/fixtures/golden_runs.jsonl by the binary of 2026-12-01 (before the
# foundation refactor). A structural change must leave them bit-identical.
#
# Bits depend on the CPU's instruction set (-march=native), the OpenBLAS
# kernel and the thread count; the fixture records the machine it was made
# on. On the same kind of machine the comparison is exact; elsewhere it is
# within relative 1e-6 and says so.
#
# Usage: bash tests/test_golden.sh /path/to/lmscale [--record]
set -u
NAME=test_golden
HERE=$(cd "$(dirname "$0")" && pwd)
MPI=$HERE/mpirun.sh
FIXTURE=$HERE/fixtures/golden_runs.jsonl
# shellcheck source=tests/lib.sh
source "$HERE/lib.sh"
need_python
RECORD=0
[ "${2:-}" = --record ] && RECORD=1
export OMP_NUM_THREADS=1

# the data: deterministic text, no download
for i in $(seq 1 600); do echo "line $i: pack my box with five dozen liquor jugs; $((i * 7919 % 1000))"; done >data.txt
COMMON=(train --data data.txt --model nano --steps 12 --seq-len 16 --lr 2e-3 --grad-clip 0.5 --warmup-steps 3
        --quiet --peak-tflops 1)
HAVE_MPI=0
if command -v "${LMS_MPIRUN:-mpirun}" >/dev/null 2>&1 && "$BIN" train --help 2>&1 | grep -q -- '--zero'; then
    bash "$MPI" 2 true >/dev/null 2>&1 && HAVE_MPI=1
fi

: >runs.jsonl
# add LABEL METRICS: appends the run's steps to runs.jsonl
add() {
    $PY - "$1" "$2" >>runs.jsonl <<'PYEOF'
import json, sys
label, path = sys.argv[1], sys.argv[2]
for line in open(path):
    r = json.loads(line)
    out = {"run": label, "step": r["step"], "loss": r["loss"], "grad_norm": r["grad_norm"]}
    if "val_loss" in r:
        out["val_loss"] = r["val_loss"]
    print(json.dumps(out))
PYEOF
}
# one LABEL NP FLAGS...: a run on NP processes (1 = no launcher)
one() {
    local label=$1 np=$2
    shift 2
    rm -f m.jsonl
    if [ "$np" = 1 ]; then
        "$BIN" "${COMMON[@]}" "$@" --metrics m.jsonl >run.out 2>&1
    else
        bash "$MPI" "$np" "$BIN" "${COMMON[@]}" --threads 1 "$@" --metrics m.jsonl >run.out 2>&1
    fi || { bad "$label: run failed: $(tail -3 run.out)"; return 1; }
    add "$label" m.jsonl
}

one "cpu 1x2 threads" 1 --threads 2 --batch-size 8 --eval-interval 4 --eval-batches 2
one "cpu 1x1 thread random order" 1 --threads 1 --batch-size 8 --eval-interval 0
one "ref 1x1 thread" 1 --backend ref --threads 1 --batch-size 4 --eval-interval 0 --data-order sequential
one "cpu accumulation micro 2" 1 --threads 2 --batch-size 8 --micro-batch-size 2 --eval-interval 0
rm -rf ck
"$BIN" "${COMMON[@]}" --threads 2 --batch-size 8 --eval-interval 0 --save ck --stop-after 6 >run.out 2>&1 ||
    bad "saving run failed: $(tail -3 run.out)"
one "cpu resumed at 6" 1 --threads 2 --batch-size 8 --eval-interval 0 --resume ck
if [ $HAVE_MPI = 1 ]; then
    for np in 2 4; do
        for z in 0 1 2 3; do one "dp $np zero $z" "$np" --batch-size 8 --eval-interval 0 --zero "$z"; done
    done
    for z in 0 1 2 3; do one "dp 2 zero $z micro 1" 2 --batch-size 8 --micro-batch-size 1 --eval-interval 0 --zero "$z"; done
    rm -rf ck
    bash "$MPI" 2 "$BIN" "${COMMON[@]}" --threads 1 --batch-size 8 --eval-interval 0 --zero 3 --save ck --stop-after 6 \
        >run.out 2>&1 || bad "dp 2 zero 3 saving run failed: $(tail -3 run.out)"
    one "dp 2 zero 3 resumed at 6 as dp 4 zero 1" 4 --batch-size 8 --eval-interval 0 --zero 1 --resume ck
elif [ $RECORD = 1 ]; then
    bad "MPI is needed for the data-parallel runs (apt-get install openmpi-bin libopenmpi-dev, then rebuild)"
else
    skip "the data-parallel runs" "no MPI: apt-get install openmpi-bin libopenmpi-dev, then rebuild"
fi

# the machine: what the bits depend on
machine() {
    printf '%s | %s | %s | OPENBLAS_CORETYPE=%s\n' "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')" \
        "$(grep -m1 -o -w avx512f /proc/cpuinfo || echo no-avx512f)" "$(grep -m1 -o -w avx512_bf16 /proc/cpuinfo || echo no-bf16)" \
        "${OPENBLAS_CORETYPE:-unset}"
}
if [ $RECORD = 1 ]; then
    [ "$FAIL" -eq 0 ] || { summary; exit 1; }
    { echo "{\"machine\": \"$(machine)\"}"; cat runs.jsonl; } >"$FIXTURE"
    echo "recorded $(wc -l <runs.jsonl) steps into $FIXTURE"
    summary
    exit
fi
$PY - "$FIXTURE" runs.jsonl "$(machine)" "$HAVE_MPI" "${LMS_SANITIZED:-0}" <<'PYEOF' && ok || bad "results differ from the record"
import json, sys
fixture, got_path, machine, have_mpi = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
sanitized = sys.argv[5] == "1"
lines = [json.loads(l) for l in open(fixture)]
rec_machine = lines[0]["machine"]
want = {(r["run"], r["step"]): r for r in lines[1:]}
got = {(r["run"], r["step"]): r for r in map(json.loads, open(got_path))}
exact = machine == rec_machine and not sanitized
tol = 1e-6
if sanitized:
    # ASan/UBSan instrumentation changes GCC's vectorisation of the cpu
    # backend's loops (measured up to 1.6e-6 relative; the ref backend stays
    # identical): the project's fp32 reference tolerance instead of bits
    tol = 1e-5
    print("  note: sanitizer build (LMS_SANITIZED=1): comparing within relative %g, not bit for bit" % tol)
elif not exact:
    print("  note: recorded on '%s', running on '%s': comparing within relative %g, not bit for bit"
          % (rec_machine, machine, tol))
runs = sorted({k[0] for k in want})
bad = 0
for run in runs:
    keys = sorted(k for k in want if k[0] == run)
    if not have_mpi and run.startswith("dp "):
        continue
    worst, missing = 0.0, 0
    for k in keys:
        if k not in got:
            missing += 1
            continue
        for f in ("loss", "grad_norm", "val_loss"):
            if f not in want[k] and f not in got[k]:
                continue
            if f not in want[k] or f not in got[k]:
                missing += 1
                continue
            a, b = want[k][f], got[k][f]
            d = 0.0 if a == b else (abs(a - b) / abs(a) if a else float("inf"))
            worst = max(worst, d)
    extra = len([k for k in got if k[0] == run and k not in want])
    ok = missing == 0 and extra == 0 and (worst == 0.0 if exact else worst <= tol)
    bad += not ok
    print("  %-42s %2d steps: %s%s" % (run, len(keys), "identical" if worst == 0 else "worst relative difference %.3g" % worst,
                                       "" if missing == 0 and extra == 0 else " (%d missing, %d extra)" % (missing, extra)))
unknown = sorted({k[0] for k in got} - set(runs))
if unknown:
    print("  runs not in the record: %s" % unknown)
    bad += 1
sys.exit(1 if bad else 0)
PYEOF
summary
