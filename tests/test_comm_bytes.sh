#!/usr/bin/env bash
# Communication counts per step in the metrics (tp_coll_bytes, dp_coll_bytes:
# the sizes of the collectives a rank handed to its tp and DP group in the
# step, as nccl-tests counts them) against the analytic count of the layout,
# computed here from the model's shape and the layout alone: tp 2 and tp 4,
# dp 2 x tp 2 with ZeRO 0, 1, 2 and 3, each with and without
# --sequence-parallel where it applies, gradient accumulation, and dp 2
# without tp. Every rank reports the same counts (--log-all-ranks), and the
# end-of-run line gives the means. Usage: bash tests/test_comm_bytes.sh /path/to/lmscale
set -u
NAME=test_comm_bytes
MPI=$(cd "$(dirname "$0")" && pwd)/mpirun.sh # before lib.sh changes directory
# shellcheck source=tests/lib.sh
source "$(dirname "$0")/lib.sh"
need_python
export OMP_NUM_THREADS=1

for i in $(seq 1 400); do echo "line $i: the quick brown fox jumps over the lazy dog; $((i * 7919 % 1000))"; done >"$T/data.txt"
# nano with 4 heads: L=2, C=64, maxT=128, V=257
COMMON=(train --data "$T/data.txt" --model nano --num-heads 4 --steps 3 --seq-len 16 --threads 1 --eval-interval 0
        --data-order sequential --quiet --peak-tflops 1 --batch-size 8)

# check_case label np tp dp zero sp micro extra-flags...
check_case() {
    local label=$1 np=$2 tp=$3 dp=$4 zero=$5 sp=$6 micro=$7
    shift 7
    local flags=(--zero "$zero" --micro-batch-size "$micro")
    [ "$tp" -gt 1 ] && flags+=(--tp "$tp")
    [ "$sp" = 1 ] && flags+=(--sequence-parallel)
    rm -f "$T"/c.jsonl*
    if ! bash "$MPI" "$np" "$BIN" "${COMMON[@]}" "${flags[@]}" "$@" --metrics "$T/c.jsonl" >"$T/c.out" 2>&1; then
        bad "$label: run failed: $(tail -3 "$T/c.out")"
        return
    fi
    $PY - "$label" "$tp" "$dp" "$zero" "$sp" "$micro" "$T/c.jsonl" "$T/c.out" <<'EOF' && ok || bad "$label: bytes differ from the analytic count"
import glob, json, re, sys
label, tp, dp, zero, sp, micro, path, out = sys.argv[1], *map(int, sys.argv[2:7]), sys.argv[7], sys.argv[8]
L, C, maxT, V, T, G = 2, 64, 128, 257, 16, 8
Vp = -(-V // (64 * tp)) * 64 * tp              # the vocabulary padded to 64·tp
accum = G // dp // micro
N = micro * T                                  # rows of one micro-batch
# this rank's parameters per unit: the embeddings, each block, the final LayerNorm
emb = Vp // tp * C + maxT * C
block = 2 * C + (3 * C // tp) * C + 3 * C // tp + C * (C // tp) + C + 2 * C + (4 * C // tp) * C + 4 * C // tp + C * (4 * C // tp) + C
units = [emb] + [block] * L + [2 * C]
f = 4                                          # bytes per float
# tp: per micro-batch 4 all-reduces of N·C per layer, the embedding's and the head's, the
# cross-entropy's max (N) and sum-exp + target logit (2N); sequence parallel: each all-reduce becomes
# an all-gather + a reduce-scatter (the same N·C each), d(output) gathered for the row-parallel
# biases and wpe; the LayerNorm gradients (2C per use) all-reduced. Then the norm (one double).
want_tp = 0
if tp > 1:
    per = (8 * L * N * C + 4 * N * C + 3 * N + (2 * L + 1) * 2 * C) if sp else (4 * L * N * C + 2 * N * C + 3 * N)
    want_tp = accum * per * f + 8
# dp: ZeRO 0 all-reduces every gradient once; ZeRO splits each unit into dp parts of ceil(n/dp)
want_dp = 0
if dp > 1:
    padded = [-(-n // dp) * dp * f for n in units]
    if zero == 0:
        want_dp = sum(units) * f
    elif zero == 1:   # reduce-scatter each unit on the last micro-batch, all-gather after AdamW
        want_dp = 2 * sum(padded) + 8
    elif zero == 2:   # reduce-scatter at every release (wte twice: the head and the embedding), all-gather
        want_dp = accum * (sum(padded) + padded[0]) + sum(padded) + 8
    else:             # + every use gathers: forward 0, 1..L, L+1, 0; backward 0, L+1, L..1
        gathers = 3 * padded[0] + 2 * sum(padded[1:])  # units 0 (x3), blocks and ln_f (x2)
        want_dp = accum * (gathers + sum(padded) + padded[0]) + 8
    want_dp += 8                               # the mean loss (one double)
files = sorted(glob.glob(path + "*"))
worst = None
for p in files:
    rows = [json.loads(l) for l in open(p)]
    for r in rows:
        got = (r["tp_coll_bytes"], r["dp_coll_bytes"])
        if got != (want_tp, want_dp):
            worst = (p, r["step"], got)
line = [l for l in open(out) if "communication per step" in l]
m = re.search(r"tp ([0-9.]+) MB, dp ([0-9.]+) MB", line[0]) if line else None
summ = m and abs(float(m.group(1)) - want_tp / 1048576) < 1e-3 and abs(float(m.group(2)) - want_dp / 1048576) < 1e-3
print("  %s: tp %d, dp %d bytes per step (analytic %d, %d) in %d metrics file(s)%s" %
      (label, rows[-1]["tp_coll_bytes"], rows[-1]["dp_coll_bytes"], want_tp, want_dp, len(files),
       "" if summ else "; the end-of-run line: %s" % (line[0].strip() if line else "missing")))
if worst: print("  %s step %d: %s" % worst)
sys.exit(0 if worst is None and summ else 1)
EOF
}

check_case "tp=2" 2 2 1 0 0 8
check_case "tp=2 --sequence-parallel" 2 2 1 0 1 8
check_case "tp=4 --sequence-parallel" 4 4 1 0 1 8
check_case "tp=2 micro=2 (4 accumulation steps)" 2 2 1 0 0 2
check_case "dp=2 (no tp)" 2 1 2 0 0 4
check_case "dp=2 x tp=2" 4 2 2 0 0 4 --log-all-ranks
check_case "dp=2 x tp=2 --sequence-parallel" 4 2 2 0 1 4
check_case "dp=2 x tp=2 zero=1" 4 2 2 1 0 4
check_case "dp=2 x tp=2 zero=1 --sequence-parallel" 4 2 2 1 1 4
check_case "dp=2 x tp=2 zero=2 micro=2" 4 2 2 2 0 2
check_case "dp=2 x tp=2 zero=3" 4 2 2 3 0 4 --log-all-ranks
check_case "dp=2 x tp=2 zero=3 --sequence-parallel micro=2" 4 2 2 3 1 2

summary
