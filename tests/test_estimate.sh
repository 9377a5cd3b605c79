#!/usr/bin/env bash
# lmscale estimate against lmscale's own measurements: for a handful of the
# layouts runnable here (1 process; dp 2/4 x ZeRO 0-3 under mpirun), the
# per-rank state bytes that `estimate` predicts equal those `train --metrics`
# reports (param_mb, grad_mb, optim_mb, to the printed 0.001 MB), and the
# predicted peak memory is within 10 % of the measured peak RSS on a model
# whose activations dominate (docs/estimate.md).
NAME=estimate
source "$(dirname "$0")/lib.sh"
need_python
MPIRUN="bash $TESTS_DIR/mpirun.sh"

$PY -c "import random; random.seed(5); print(''.join(random.choice('abcdefgh ij\n') for _ in range(100000)), end='')" > d.txt
NTOK=$(stat -c %s d.txt)
MODEL=(--model micro --seq-len 256 --batch-size 16)

# check LABEL NP ZERO: trains 2 steps, compares with estimate --json
check() {
    local label=$1 np=$2 z=$3
    rm -f m.jsonl
    if [ "$np" = 1 ]; then
        run "$label" "$BIN" train "${MODEL[@]}" --data d.txt --steps 2 --eval-interval 0 --quiet --threads 2 \
            --metrics m.jsonl || return
    else
        OMP_NUM_THREADS=1 run "$label" $MPIRUN "$np" "$BIN" train "${MODEL[@]}" --data d.txt --steps 2 \
            --eval-interval 0 --quiet --threads 1 --zero "$z" --metrics m.jsonl || return
    fi
    run "$label-est" "$BIN" estimate "${MODEL[@]}" --world "$np" --zero "$z" --data-tokens "$NTOK" --json || return
    if $PY - "$label" m.jsonl "$label-est.out" <<'PYEOF'; then ok; else bad "$label: estimate vs measurement"; fi
import json, sys
label, metrics, est = sys.argv[1:]
m = json.loads(open(metrics).read().strip().splitlines()[-1])
e = json.load(open(est))["lmscale_metrics"]
fail = 0
for k in ("param_mb", "grad_mb", "optim_mb"):
    if "%.3f" % e[k] != "%.3f" % m[k]:
        print("  %s: %s predicted %.3f, measured %.3f" % (label, k, e[k], m[k])); fail = 1
rel = (e["peak_rss_mb"] - m["peak_rss_mb"]) / m["peak_rss_mb"]
print("  %-10s state %.3f/%.3f/%.3f MB | peak RSS predicted %.1f MB, measured %d MB (%+.1f%%)" %
      (label, m["param_mb"], m["grad_mb"], m["optim_mb"], e["peak_rss_mb"], m["peak_rss_mb"], 100 * rel))
if abs(rel) > 0.10: print("  %s: peak RSS off by more than 10 %%" % label); fail = 1
sys.exit(fail)
PYEOF
}

check single 1 0
if command -v "${LMS_MPIRUN:-mpirun}" >/dev/null; then
    check dp2-z0 2 0
    check dp2-z1 2 1
    check dp2-z3 2 3
    check dp4-z2 4 2
else
    skip "the dp 2/4 x ZeRO layouts" "apt-get install openmpi-bin libopenmpi-dev, then rebuild"
fi
summary
