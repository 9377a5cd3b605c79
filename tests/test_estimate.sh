#!/usr/bin/env bash
# lmscale estimate against lmscale's own measurements: for a handful of the
# layouts runnable here (1 process with each recompute mode and bf16; dp 2/4 x
# ZeRO 0-3, tp 2 in fp32 and fp16, dp 2 x tp 2 with ZeRO 1, pp 2 with 1F1B,
# GPipe and interleaving, dp 2 x pp 2 with ZeRO 0 and 1, tp 2 x pp 2 under mpirun), the per-rank state bytes that `estimate` predicts equal those
# `train --metrics` reports (param_mb, grad_mb, optim_mb, to the printed 0.001 MB), and the
# predicted peak memory is within 10 % of the measured peak RSS on a model
# whose activations dominate (docs/estimate.md); in a sanitizer build
# (LMS_SANITIZED=1), whose instrumentation only adds memory, at most 10 % above it.
NAME=estimate
source "$(dirname "$0")/lib.sh"
need_python
MPIRUN="bash $TESTS_DIR/mpirun.sh"

$PY -c "import random; random.seed(5); print(''.join(random.choice('abcdefgh ij\n') for _ in range(100000)), end='')" > d.txt
NTOK=$(stat -c %s d.txt)
MODEL=(--model micro --seq-len 256 --batch-size 16)

# train_metrics LABEL NP ZERO MODEL...: 2 steps; the last --metrics record in m.jsonl
train_metrics() {
    local label=$1 np=$2 z=$3
    shift 3
    rm -f m.jsonl
    if [ "$np" = 1 ]; then
        run "$label" "$BIN" train "$@" --data d.txt --steps 2 --eval-interval 0 --quiet --threads 2 --metrics m.jsonl
    else
        OMP_NUM_THREADS=1 run "$label" $MPIRUN "$np" "$BIN" train "$@" --data d.txt --steps 2 --eval-interval 0 \
            --quiet --threads 1 --zero "$z" --metrics m.jsonl
    fi
}
# The fixed overhead (program, libraries, MPI) is measured, not derived: the peak RSS of a run of
# the tiny nano model minus everything else the estimate counts there (docs/estimate.md).
overhead_of() {
    local np=$1 label=overhead$1
    train_metrics "$label" "$np" 0 --model nano --seq-len 64 --batch-size 4 || return
    run "$label-est" "$BIN" estimate --model nano --seq-len 64 --batch-size 4 --world "$np" --data-tokens "$NTOK" \
        --overhead-mb 0 --json || return
    $PY -c "import json,sys; m=json.loads(open('m.jsonl').read().split(chr(10))[-2]); e=json.load(open(sys.argv[1]))
print('%.3f' % max(0.0, m['peak_rss_mb'] + 0.5 - e['lmscale_metrics']['peak_rss_mb']))" "$label-est.out"
}

# check LABEL NP ZERO OVERHEAD [FLAGS...]: trains 2 steps, compares with estimate --json
# (FLAGS, e.g. --recompute full, go to both)
check() {
    local label=$1 np=$2 z=$3 ov=$4
    shift 4
    train_metrics "$label" "$np" "$z" "${MODEL[@]}" "$@" || return
    run "$label-est" "$BIN" estimate "${MODEL[@]}" "$@" --impl lmscale --world "$np" --zero "$z" --data-tokens "$NTOK" \
        --overhead-mb "$ov" --json || return
    if $PY - "$label" m.jsonl "$label-est.out" "${LMS_SANITIZED:-0}" <<'PYEOF'; then ok; else bad "$label: estimate vs measurement"; fi
import json, sys
label, metrics, est, sanitized = sys.argv[1:]
m = json.loads(open(metrics).read().strip().splitlines()[-1])
e = json.load(open(est))["lmscale_metrics"]
fail = 0
for k in ("param_mb", "grad_mb", "optim_mb"):
    if "%.3f" % e[k] != "%.3f" % m[k]:
        print("  %s: %s predicted %.3f, measured %.3f" % (label, k, e[k], m[k])); fail = 1
rel = (e["peak_rss_mb"] - m["peak_rss_mb"]) / m["peak_rss_mb"]
print("  %-10s state %.3f/%.3f/%.3f MB | peak RSS predicted %.1f MB, measured %d MB (%+.1f%%)" %
      (label, m["param_mb"], m["grad_mb"], m["optim_mb"], e["peak_rss_mb"], m["peak_rss_mb"], 100 * rel))
if sanitized == "1":
    # ASan's redzones, shadow memory and freed-memory quarantine only add to
    # the RSS the model predicts for the normal build: the state bytes above
    # stay exact, and the prediction must not exceed the measurement
    if rel > 0.10: print("  %s: peak RSS predicted more than 10 %% above the sanitizer build's" % label); fail = 1
elif abs(rel) > 0.10: print("  %s: peak RSS off by more than 10 %%" % label); fail = 1
sys.exit(fail)
PYEOF
}

OV1=$(overhead_of 1)
echo "  measured fixed overhead: ${OV1:-?} MB (1 process)"
if [ -n "$OV1" ]; then
    check single 1 0 "$OV1"
    # activation recomputation: the activations the estimate models shrink as the run's do
    check selective 1 0 "$OV1" --recompute selective
    check full 1 0 "$OV1" --recompute full
    # mixed precision: the master is the fp32 parameter buffer; the 16-bit compute copy is a buffer
    check bf16 1 0 "$OV1" --dtype bf16
fi
if command -v "${LMS_MPIRUN:-mpirun}" >/dev/null; then
    OV2=$(overhead_of 2)
    echo "  measured fixed overhead: ${OV2:-?} MB (Open MPI ranks)"
    if [ -n "$OV2" ]; then
        check dp2-z0 2 0 "$OV2"
        check dp2-z1 2 1 "$OV2"
        check dp2-z3 2 3 "$OV2"
        check dp4-z2 4 2 "$OV2"
        # tensor parallelism: each rank's part of the model (its flat buffers, units, activations)
        check tp2 2 0 "$OV2" --tp 2
        check tp2-fp16 2 0 "$OV2" --tp 2 --dtype fp16
        check dp2tp2-z1 4 1 "$OV2" --tp 2
        # pipeline parallelism: the stage that holds the most (the first under 1F1B): its activation
        # sets as the schedule keeps them, the boundary buffers
        check pp2-1f1b 2 0 "$OV2" --pp 2 --micro-batch-size 4
        check pp2-gpipe 2 0 "$OV2" --pp 2 --micro-batch-size 4 --pp-schedule gpipe
        check pp2-v2 2 0 "$OV2" --pp 2 --virtual-stages 2 --micro-batch-size 2
        check dp2pp2 4 0 "$OV2" --pp 2 --micro-batch-size 2
        check dp2pp2-z1 4 1 "$OV2" --pp 2 --micro-batch-size 2
        check tp2pp2-sp 4 0 "$OV2" --tp 2 --pp 2 --micro-batch-size 4 --sequence-parallel
    fi
else
    skip "the dp 2/4 x ZeRO layouts" "apt-get install openmpi-bin libopenmpi-dev, then rebuild"
fi
summary
