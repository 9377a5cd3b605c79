#!/usr/bin/env bash
# Where a training step's time goes, per op, two ways in one run of
# `lmscale train` (GPT-2 124M on tinyshakespeare as GPT-2 ids, fp32, all cores):
#  1. the trace (--profile A:B --trace): each backend op's wall time summed
#     over the profiled steps, per step, and the step time no op covers;
#  2. perf record of the same run, the samples of the last 40 % of its time
#     (after initialisation and the first steps) grouped by the function they
#     fall in (OpenBLAS sgemm, the attention kernel, GELU, ...).
# Needs perf (linux-perf) and GPT-2's vocab.json/merges.txt/tinyshakespeare.txt
# in $LMS_GPT2_DIR (default shared/data).
#
#   bash bench/op_breakdown.sh [build/lmscale] [batch] [seq] [steps] [model]
#
# default: batch 4, seq 256, 5 steps (steps 4-5 traced); model 124m or small
# (4 layers, C=256, GPT-2 vocabulary). The machines are shared: wrap it in
# `flock /tmp/lms-heavy.lock`.
set -euo pipefail
BIN=$(realpath "${1:-build/lmscale}")
B=${2:-4}
T=${3:-256}
STEPS=${4:-5}
case ${5:-124m} in
124m) MODEL=(--model gpt2-124m); NAME="GPT-2 124M" ;;
small) MODEL=(--model gpt2-124m --num-layers 4 --num-heads 4 --hidden-size 256 --max-seq-len "$T")
       NAME="small (4 layers, C=256, GPT-2 vocabulary)" ;;
*) echo "unknown model ${5} (124m, small)" >&2; exit 2 ;;
esac
DATA=${LMS_GPT2_DIR:-shared/data}
PY=/usr/bin/python3
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
"$BIN" data prepare --input "$DATA/tinyshakespeare.txt" --vocab "$DATA/gpt2-vocab.json" \
    --merges "$DATA/gpt2-merges.txt" --output-dir "$TMP/shards" >/dev/null
perf record -q -o "$TMP/perf.data" "$BIN" train "${MODEL[@]}" --data "$TMP/shards/train.bin" --batch-size "$B" \
    --seq-len "$T" --steps "$STEPS" --eval-interval 0 --val-fraction 0 --peak-tflops 1 --quiet \
    --profile "$((STEPS - 1)):$STEPS" --trace "$TMP/t.json" >"$TMP/train.log" 2>&1
perf report -i "$TMP/perf.data" --stdio --no-children --sort dso,sym --time 60%-100% 2>/dev/null | grep -v '^#' |
    grep '%' >"$TMP/rep.txt"
$PY - "$TMP/t.json" "$TMP/rep.txt" "$B" "$T" "$NAME" <<'PYEOF'
import json, re, sys
ev = json.load(open(sys.argv[1]))
ev = ev["traceEvents"] if isinstance(ev, dict) else ev
X = [e for e in ev if e.get("ph") == "X"]
steps = [e for e in X if e["name"] == "step"]
nst = len(steps)
step_ms = sum(e["dur"] for e in steps) / nst / 1e3
ops = {}
for e in X:
    if e.get("cat") == "op":
        ops[e["name"]] = ops.get(e["name"], 0.0) + e["dur"] / nst / 1e3
phases = {}
for e in X:
    if e["name"] in ("data", "forward", "backward", "grad_comm", "optim"):
        phases[e["name"]] = phases.get(e["name"], 0.0) + e["dur"] / nst / 1e3
print("%s, batch %s x seq %s: %.0f ms per step (mean of %d traced steps); phases: %s\n" % (
    sys.argv[5], sys.argv[3], sys.argv[4], step_ms, nst, ", ".join("%s %.0f" % kv for kv in phases.items())))
print("| op (trace) | ms per step | share |")
print("|---|---|---|")
for k, v in sorted(ops.items(), key=lambda kv: -kv[1]):
    print("| %s | %.1f | %.1f %% |" % (k, v, 100 * v / step_ms))
gap = step_ms - sum(ops.values())
print("| (no op: host work between ops) | %.1f | %.1f %% |" % (gap, 100 * gap / step_ms))

groups = [  # (group, regex on "dso sym"), first match wins
    ("model initialisation", r"lms_rng_normal|__cos|__ieee754_log|__sincos"),
    ("OpenBLAS sgemm (matmuls)", r"libopenblas"),
    ("attention kernel (GEMM tiles, softmax)", r"lms_cpu_attention|gemm\.constprop|\] gemm$|transpose_tiles|gather_head"),
    ("GELU", r"cpu_gelu"),
    ("cross-entropy", r"cpu_xent"),
    ("LayerNorm", r"cpu_layernorm"),
    ("AdamW", r"lms_cpu_adamw"),
    ("gradient norm (sum of squares)", r"cpu_sumsq"),
    ("bias, residual add, accumulate, scale", r"cpu_matmul_fwd|colsum_acc|cpu_add|cpu_accumulate|cpu_scale"),
    ("embedding", r"cpu_encoder"),
    ("OpenMP barriers and spinning (libgomp)", r"libgomp"),
    ("memset / memcpy", r"memset|memcpy|memmove"),
    ("kernel (page faults, scheduling)", r"\[kernel"),
]
by = {}
for line in open(sys.argv[2]):
    m = re.match(r"\s*([0-9.]+)%\s+(.*)$", line)
    if not m:
        continue
    g = next((name for name, rx in groups if re.search(rx, m.group(2))), "other")
    by[g] = by.get(g, 0.0) + float(m.group(1))
tot = sum(by.values())
print("\n| perf samples (last 40 %% of the run) | share |")
print("|---|---|")
for g, p in sorted(by.items(), key=lambda kv: -kv[1]):
    print("| %s | %.1f %% |" % (g, 100 * p / tot))
PYEOF
