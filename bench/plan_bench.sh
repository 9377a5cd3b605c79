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
MODEL=(${PLAN_BENCH_MODEL:---num-layers 4 --num-heads 4 --hidden-size 256 --max-seq-len 128 --seq-len 128 --batch-size 16})
STEPS=${PLAN_BENCH_STEPS:-6}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
$PY -c "import random; random.seed(3); print(''.join(random.choice('abcdefghij klmnop\n') for _ in range(200000)), end='')" >"$T/d.txt"
for r in $(seq 1 "$REPS"); do
    for l in "${LAYOUTS[@]}"; do
        IFS=: read -r p m z <<<"$l"
        th=$((CORES / p))
        out="$T/$l.$r"
        # a fresh peak measurement for every run (train caches the first one per machine)
        export XDG_CACHE_HOME="$T/cache.$l.$r"
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
# the machine is shared: other jobs slow some runs (a multi-threaded process most, at every
# barrier). Each run's median step, then the least disturbed round (the minimum over rounds), is
# the measurement; the planner predicts at the best sgemm peak per core any run measured at
# start-up (0.3 s of 1024^3 sgemms), the undisturbed machine's
# (the 1-process runs measure the peak of all cores, the others of one; each value is per core)
PEAK=$(for l in "${LAYOUTS[@]}"; do
    IFS=: read -r p m z <<<"$l"
    for r in $(seq 1 "$REPS"); do
        v=$(sed -n 's/.*peak \([0-9.]*\) GFLOP\/s (measured.*/\1/p' "$T/$l.$r.log" | head -1)
        if [ -n "$v" ]; then echo "$v $((CORES / p))"; fi
    done
done | $PY -c "import sys; print('%.9f' % max(float(a) / int(b) / 1000 for a, b in (l.split() for l in sys.stdin)))")
for l in "${LAYOUTS[@]}"; do
    IFS=: read -r p m z <<<"$l"
    "$BIN" plan --cluster cpu --devices-per-node "$CORES" "${MODEL[@]}" --peak-tflops "$PEAK" --dp "$p" \
        --micro-batch-size "$m" --zero "$z" --top 1 --json >"$T/$l.plan"
done
$PY - "$T" "$REPS" "$CORES" "$PEAK" "${LAYOUTS[@]}" <<'PYEOF'
import json, os, statistics, sys
d, reps, cores, peak, lays = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5:]
rows = []
for l in lays:
    meas = []
    for r in range(1, reps + 1):
        ms = [json.loads(x)["step_ms"] for x in open("%s/%s.%d.jsonl" % (d, l, r)) if x.strip()][1:]
        meas.append(statistics.median(ms))
    pred = json.load(open("%s/%s.plan" % (d, l)))["top"][0]["step_s"] * 1e3
    p, m, z = l.split(":")
    rows.append({"layout": l, "processes": int(p), "threads": cores // int(p), "micro_batch": int(m), "zero": int(z),
                 "measured_ms": min(meas), "rounds_ms": meas, "predicted_ms": pred, "ratio": pred / min(meas)})
print("sgemm peak per core (best of the runs): %.1f GFLOP/s" % (peak * 1e3))
print("| processes x threads | micro-batch | ZeRO | measured ms/step: best round (each round's median) | predicted ms/step | predicted / measured |")
print("|---|---|---|---|---|---|")
for r in rows:
    print("| %d x %d | %d | %d | %.0f (%s) | %.0f | %.2f |" % (r["processes"], r["threads"], r["micro_batch"], r["zero"],
          r["measured_ms"], ", ".join("%.0f" % x for x in r["rounds_ms"]), r["predicted_ms"], r["ratio"]))
order = lambda key: [r["layout"] for r in sorted(rows, key=lambda r: r[key])]
print("ranking, fastest first: measured %s; predicted %s" % (" ".join(order("measured_ms")), " ".join(order("predicted_ms"))))
if os.environ.get("PLAN_BENCH_OUT"):
    json.dump({"peak_gflops_per_core": peak * 1e3, "rows": rows, "measured_order": order("measured_ms"),
               "predicted_order": order("predicted_ms")}, open(os.environ["PLAN_BENCH_OUT"], "w"), indent=1)
PYEOF
