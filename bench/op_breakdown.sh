#!/usr/bin/env bash
# Where a training step's time goes, per op: `perf record` of `lmscale bench
# train`, samples grouped by the function they fall in (OpenBLAS sgemm = the
# matmuls; the attention kernel; GELU; cross-entropy; LayerNorm; AdamW; ...),
# model initialisation left out, each group's share times the mean step time
# bench train reports. Needs perf (linux-perf).
#
#   bash bench/op_breakdown.sh [build/lmscale] [model flags...]
#
# default: --model gpt2-124m --batch-size 4 --seq-len 256 --steps 4 --warmup 1, all cores.
# The machines are shared: wrap it in `flock /tmp/lms-heavy.lock`.
set -euo pipefail
BIN=${1:-build/lmscale}
shift || true
[ $# -gt 0 ] || set -- --model gpt2-124m --batch-size 4 --seq-len 256 --steps 4 --warmup 1
PY=/usr/bin/python3
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# --peak-tflops: no sgemm peak measurement in the profile (MFU is not the point here)
perf record -q -o "$TMP/perf.data" "$BIN" bench train "$@" --peak-tflops 1 --json 2>/dev/null | tail -1 >"$TMP/b.json"
perf report -i "$TMP/perf.data" --stdio --no-children --sort dso,sym 2>/dev/null | grep -v '^#' | grep '%' >"$TMP/rep.txt"
$PY - "$TMP/rep.txt" "$TMP/b.json" <<'PYEOF'
import json, re, sys
groups = [  # (group, regex on "dso sym"), first match wins
    ("model initialisation (not in the step)", r"lms_rng_normal|__cos|__ieee754_log|__sincos|lms_gpt_init"),
    ("matmuls (OpenBLAS sgemm)", r"libopenblas"),
    ("attention (GEMM tiles, softmax)", r"lms_cpu_attention|\bgemm\b|gemm\.constprop|transpose_tiles|gather_head"),
    ("GELU", r"cpu_gelu"),
    ("cross-entropy (softmax over the vocabulary)", r"cpu_xent"),
    ("LayerNorm", r"cpu_layernorm"),
    ("AdamW", r"lms_cpu_adamw"),
    ("gradient norm (sum of squares)", r"cpu_sumsq"),
    ("bias add / bias gradient, residual add, accumulate", r"cpu_matmul_fwd|colsum_acc|cpu_add|cpu_accumulate|cpu_scale"),
    ("embedding (encoder)", r"cpu_encoder"),
    ("OpenMP barriers and spinning", r"libgomp"),
    ("memset / memcpy", r"memset|memcpy|memmove"),
    ("kernel (page faults, scheduling)", r"\[kernel"),
]
tot, by = 0.0, {}
for line in open(sys.argv[1]):
    m = re.match(r"\s*([0-9.]+)%\s+(.*)$", line)
    if not m:
        continue
    pct, rest = float(m.group(1)), m.group(2)
    g = next((name for name, rx in groups if re.search(rx, rest)), "other: " + rest.split()[-1])
    by[g] = by.get(g, 0.0) + pct
init = by.pop(groups[0][0], 0.0)
rest_total = sum(by.values())
b = json.load(open(sys.argv[2]))
step = b["step_ms"]
print("%s L=%d C=%d, batch %d x seq %d, %d threads: %.0f ms/step (phases: %s)" % (b["model"], b["L"], b["C"],
      b["batch_size"], b["seq_len"], b["threads"], step,
      ", ".join("%s %.0f" % (k, v) for k, v in b["phases_ms"].items() if v >= 1)))
print("model initialisation: %.1f %% of the samples, left out\n" % init)
print("| op | share of the step | ms per step |")
print("|---|---|---|")
others = 0.0
for g, p in sorted(by.items(), key=lambda kv: -kv[1]):
    share = p / rest_total
    if g.startswith("other") and share < 0.005:
        others += share
        continue
    print("| %s | %.1f %% | %.0f |" % (g, 100 * share, share * step))
if others:
    print("| other functions below 0.5 %% each | %.1f %% | %.0f |" % (100 * others, others * step))
PYEOF
