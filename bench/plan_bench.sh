#!/usr/bin/env bash
# The planner's CPU mode against measured step times on this machine: trains
# the same model and global batch in several layouts (processes x threads =
# the cores, micro-batch, ZeRO stage), REPS rounds with the layouts
# interleaved, takes each run's median step time (steps 2..STEPS) and the
# median over rounds, and prints it next to `lmscale plan --cluster cpu`'s
# prediction (with the sgemm peak per core the runs measured at start-up).
#   bash bench/plan_bench.sh [build/lmscale] [REPS] [P:M:Z ...]
# P processes, M micro-batch, Z ZeRO stage; default: the layouts of
# docs/plan.md. Takes /tmp/lms-heavy.lock unless PLAN_BENCH_NOLOCK=1 (the
# ctest, which runs inside it). Writes $PLAN_BENCH_OUT (JSON) when set.
set -euo pipefail
BIN=${1:-build/lmscale}
REPS=${2:-3}
shift $(($# < 2 ? $# : 2))
LAYOUTS=("$@")
[ ${#LAYOUTS[@]} -gt 0 ] || LAYOUTS=(1:16:0 1:4:0 1:1:0 2:8:0 2:8:1 2:8:2 2:8:3 2:2:0 2:1:3)
case $BIN in /*) ;; *) BIN=$PWD/$BIN ;; esac
HERE=$(cd "$(dirname "$0")" && pwd)
if [ "${PLAN_BENCH_NOLOCK:-0}" != 1 ] && [ -z "${PLAN_BENCH_LOCKED:-}" ]; then
    PLAN_BENCH_LOCKED=1 exec flock /tmp/lms-heavy.lock bash "$0" "$BIN" "$REPS" "${LAYOUTS[@]}"
fi
PY=/usr/bin/python3
CORES=${PLAN_BENCH_CORES:-$(nproc)}
MODEL=(--num-layers 4 --num-heads 4 --hidden-size 256 --max-seq-len 128 --seq-len 128 --batch-size 16)
STEPS=${PLAN_BENCH_STEPS:-6}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
$PY -c "import random; random.seed(3); print(''.join(random.choice('abcdefghij klmnop\n') for _ in range(200000)), end='')" >"$T/d.txt"
for r in $(seq 1 "$REPS"); do
    for l in "${LAYOUTS[@]}"; do
        IFS=: read -r p m z <<<"$l"
        th=$((CORES / p))
        out="$T/$l.$r"
        if [ "$p" = 1 ]; then
            OMP_NUM_THREADS=$th "$BIN" train "${MODEL[@]}" --micro-batch-size "$m" --data "$T/d.txt" --steps "$STEPS" \
                --eval-interval 0 --threads "$th" --metrics "$out.jsonl" >"$out.log" 2>&1
        else
            OMP_NUM_THREADS=$th bash "$HERE/../tests/mpirun.sh" "$p" "$BIN" train "${MODEL[@]}" --micro-batch-size "$m" \
                --zero "$z" --data "$T/d.txt" --steps "$STEPS" --eval-interval 0 --threads "$th" \
                --metrics "$out.jsonl" >"$out.log" 2>&1
        fi || { cat "$out.log"; exit 1; }
    done
done
# each run: the sgemm peak it measured at start-up (per core) and the planner's prediction at that
# peak, so that a machine slowed by other jobs slows prediction and measurement alike
for r in $(seq 1 "$REPS"); do
    for l in "${LAYOUTS[@]}"; do
        IFS=: read -r p m z <<<"$l"
        th=$((CORES / p))
        peak=$(sed -n 's/.*peak \([0-9.]*\) GFLOP\/s (measured.*/\1/p' "$T/$l.$r.log" | head -1)
        peak=$($PY -c "print('%.9f' % (${peak:-0} / $th / 1000))")
        "$BIN" plan --cluster cpu --devices-per-node "$CORES" "${MODEL[@]}" --peak-tflops "$peak" --dp "$p" \
            --micro-batch-size "$m" --zero "$z" --top 1 --json >"$T/$l.$r.plan"
        echo "$peak" >"$T/$l.$r.peak"
    done
done
$PY - "$T" "$REPS" "$CORES" "${LAYOUTS[@]}" <<'PYEOF'
import json, os, statistics, sys
d, reps, cores, lays = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
rows = []
for l in lays:
    meas, pred, peaks = [], [], []
    for r in range(1, reps + 1):
        ms = [json.loads(x)["step_ms"] for x in open("%s/%s.%d.jsonl" % (d, l, r)) if x.strip()][1:]
        meas.append(statistics.median(ms))
        pred.append(json.load(open("%s/%s.%d.plan" % (d, l, r)))["top"][0]["step_s"] * 1e3)
        peaks.append(float(open("%s/%s.%d.peak" % (d, l, r)).read()) * 1e3)
    p, m, z = l.split(":")
    ratios = [a / b for a, b in zip(pred, meas)]
    rows.append({"layout": l, "processes": int(p), "threads": cores // int(p), "micro_batch": int(m), "zero": int(z),
                 "measured_ms": statistics.median(meas), "rounds_ms": meas, "predicted_ms": statistics.median(pred),
                 "peak_gflops_per_core": peaks, "ratio": statistics.median(ratios)})
print("| processes x threads | micro-batch | ZeRO | measured ms/step: median (rounds) | predicted ms/step (at each run's peak) | predicted / measured | sgemm peak per core, GFLOP/s |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    print("| %d x %d | %d | %d | %.0f (%s) | %.0f | %.2f | %s |" % (r["processes"], r["threads"], r["micro_batch"], r["zero"],
          r["measured_ms"], ", ".join("%.0f" % x for x in r["rounds_ms"]), r["predicted_ms"], r["ratio"],
          ", ".join("%.0f" % x for x in r["peak_gflops_per_core"])))
meas_order = sorted(lays, key=lambda l: next(r["measured_ms"] for r in rows if r["layout"] == l))
pred_order = sorted(lays, key=lambda l: next(r["predicted_ms"] for r in rows if r["layout"] == l))
print("ranking, fastest first: measured %s; predicted %s" % (" ".join(meas_order), " ".join(pred_order)))
if os.environ.get("PLAN_BENCH_OUT"):
    json.dump({"rows": rows, "measured_order": meas_order, "predicted_order": pred_order},
              open(os.environ["PLAN_BENCH_OUT"], "w"), indent=1)
PYEOF
