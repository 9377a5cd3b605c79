#!/usr/bin/env bash
# Pipeline parallelism end to end under mpirun (docs/parallelism.md): the
# 20-step losses at pp 2 and 4 with each schedule (gpipe, 1f1b, interleaved),
# an uneven --pp-layers split and dp2 x pp2 match the one-process run within
# relative 1e-5; every rank logs the same loss; the activation sets a stage
# holds at once are m under GPipe and min(p - s, m) under 1F1B; bad layouts
# fail on every rank before any compute with one message naming the flag; a
# checkpoint saved at pp 2 resumes at pp 1, pp 4, dp 4 and interleaved (and one
# saved at dp 2 at pp 4) with the uninterrupted losses (1e-6); validation and
# --save-model at pp 2 equal one process's; a hanging stage ends the job
# within the watchdog timeout with a line naming the operation and the peer.
# Usage: bash tests/test_pp.sh /path/to/lmscale
set -u
NAME=test_pp
MPI=$(cd "$(dirname "$0")" && pwd)/mpirun.sh # before lib.sh changes directory
# shellcheck source=tests/lib.sh
source "$(dirname "$0")/lib.sh"
need_python
export OMP_NUM_THREADS=1

for i in $(seq 1 400); do echo "line $i: the quick brown fox jumps over the lazy dog; $((i * 7919 % 1000))"; done >"$T/data.txt"
# 8 layers, 4 micro-batches of 2 (m = 4 at dp 1, 2 at dp 2)
COMMON=(train --data "$T/data.txt" --model nano --num-layers 8 --steps 20 --batch-size 8 --micro-batch-size 2
        --seq-len 16 --threads 1 --lr 2e-3 --warmup-steps 3 --eval-interval 0 --data-order sequential --quiet
        --peak-tflops 1)

"$BIN" "${COMMON[@]}" --metrics "$T/ref.jsonl" >"$T/ref.out" 2>&1 || bad "one-process run failed: $(tail -2 "$T/ref.out")"

# the peak activation sets per stage, from the last metrics line: "a,b,..."
peaks() { $PY -c 'import json,sys; print(",".join(map(str, json.loads(open(sys.argv[1]).readlines()[-1])["pp_peak_sets"])))' "$1"; }

run_case() { # label np want_peaks(or -) flags...
    local label=$1 np=$2 want=$3
    shift 3
    rm -f "$T/pp.jsonl"
    if bash "$MPI" "$np" "$BIN" "${COMMON[@]}" "$@" --metrics "$T/pp.jsonl" >"$T/pp.out" 2>&1; then
        compare_losses "$T/ref.jsonl" "$T/pp.jsonl" "$label" && ok || bad "$label: losses differ from the one-process run"
        [ "$(wc -l <"$T/pp.jsonl")" -eq 20 ] && ok || bad "$label: metrics has $(wc -l <"$T/pp.jsonl") lines (only rank 0 writes)"
        grep -q '"pp_bubble": \[' "$T/pp.jsonl" && grep -q '"pp_idle": \[' "$T/pp.jsonl" && ok ||
            bad "$label: no per-stage idle fraction in the metrics"
        if [ "$want" != - ]; then
            local got
            got=$(peaks "$T/pp.jsonl")
            [ "$got" = "$want" ] && ok || bad "$label: peak activation sets per stage $got, want $want"
        fi
    else
        bad "$label: run failed: $(tail -3 "$T/pp.out")"
    fi
}
run_case "pp=2 gpipe" 2 4,4 --pp 2 --pp-schedule gpipe
run_case "pp=2 1f1b" 2 2,1 --pp 2 --pp-schedule 1f1b
run_case "pp=4 gpipe" 4 4,4,4,4 --pp 4 --pp-schedule gpipe
run_case "pp=4 1f1b" 4 4,3,2,1 --pp 4 --pp-schedule 1f1b
run_case "pp=2 interleaved v=2" 2 - --pp 2 --pp-schedule interleaved --virtual-stages 2
run_case "pp=4 interleaved v=2" 4 - --pp 4 --virtual-stages 2
run_case "pp=2 --pp-layers 3,5" 2 2,1 --pp 2 --pp-layers 3,5
run_case "pp=2 1f1b --recompute full" 2 2,1 --pp 2 --recompute full
run_case "pp=2 interleaved --recompute selective" 2 - --pp 2 --virtual-stages 2 --recompute selective
run_case "dp=2 x pp=2 1f1b" 4 2,1 --pp 2 --dp 2
run_case "dp=2 x pp=2 gpipe" 4 2,2 --pp 2 --dp 2 --pp-schedule gpipe

# every rank prints the same loss (only the last stage computes it)
LOUD=()
for a in "${COMMON[@]}"; do [ "$a" = --quiet ] || LOUD+=("$a"); done
if bash "$MPI" 2 "$BIN" "${LOUD[@]}" --log-interval 5 --pp 2 --log-all-ranks >"$T/all.out" 2>&1; then
    n=$(grep -c 'step    20/20 | loss' "$T/all.out")
    d=$(grep 'step    20/20 | loss' "$T/all.out" | sed 's/.*| loss \([0-9.]*\).*/\1/' | sort -u | wc -l)
    [ "$n" -eq 2 ] && [ "$d" -eq 1 ] && ok || bad "ranks log different losses: $(grep 'step    20/20' "$T/all.out")"
else
    bad "--log-all-ranks run failed: $(tail -3 "$T/all.out")"
fi

# each stage holds only its own parameters: every rank's param_mb and grad_mb are its stage's
# tensors (computed here from the layer shapes), AdamW's optim_mb twice that, and the stages
# together hold the whole model plus the last stage's copy of wte
for how in "2 --pp 2" "4 --pp 4" "2 --pp 2 --virtual-stages 2" "2 --pp 2 --pp-layers 3,5"; do
    read -r np flags <<<"$how"
    rm -f "$T"/mem.jsonl*
    # shellcheck disable=SC2086
    if bash "$MPI" "$np" "$BIN" "${COMMON[@]}" $flags --steps 2 --log-all-ranks --metrics "$T/mem.jsonl" \
        >"$T/mem.out" 2>&1; then
        files=("$T/mem.jsonl")
        for ((r = 1; r < np; r++)); do files+=("$T/mem.jsonl.rank$r"); done
        $PY - "$flags" "${files[@]}" <<'EOF' && ok || bad "pp $flags: per-stage parameter memory"
import json, sys
flags, paths = sys.argv[1].split(), sys.argv[2:]
p = int(flags[flags.index("--pp") + 1])
v = int(flags[flags.index("--virtual-stages") + 1]) if "--virtual-stages" in flags else 1
L, C, maxT, V = 8, 64, 128, 257
Vp = (V + 63) // 64 * 64
block = 4 * C + 3 * C * C + 3 * C + C * C + C + 4 * C * C + 4 * C + 4 * C * C + C  # ln1, attn, ln2, mlp
wte, wpe, lnf = Vp * C, maxT * C, 2 * C
if "--pp-layers" in flags:
    counts = [int(x) for x in flags[flags.index("--pp-layers") + 1].split(",")]
else:  # even split into p*v chunks, the first L % (p*v) one layer longer
    counts = [L // (p * v) + (j < L % (p * v)) for j in range(p * v)]
floats = [0] * p
for j, n in enumerate(counts):  # chunk j runs on stage j % p
    floats[j % p] += n * block
floats[0] += wte + wpe
floats[-1] += lnf + wte  # ln_f and the LM head's copy of the tied wte
MB = 1048576.0
rows = [json.loads(open(f).readlines()[-1]) for f in paths]
fail = 0
for s, r in enumerate(rows):
    want = 4 * floats[s] / MB
    got = (r["param_mb"], r["grad_mb"], r["optim_mb"])
    if ("%.3f" % got[0], "%.3f" % got[1], "%.3f" % got[2]) != ("%.3f" % want, "%.3f" % want, "%.3f" % (2 * want)):
        print("  stage %d: param/grad/optim %s MB, analytic %.3f/%.3f/%.3f" % (s, got, want, want, 2 * want)); fail = 1
whole = wte + wpe + L * block + lnf
if sum(floats) != whole + wte: print("  the stages hold %d floats, not whole + wte = %d" % (sum(floats), whole + wte)); fail = 1
print("  pp %-28s param_mb per stage %s (analytic %s; whole model %.3f MB)" % (" ".join(flags), [r["param_mb"] for r in rows],
      ["%.3f" % (4 * f / MB) for f in floats], 4 * whole / MB))
sys.exit(fail)
EOF
    else
        bad "pp $flags run failed: $(tail -3 "$T/mem.out")"
    fi
done

# bad configurations: every rank exits non-zero, one message, nothing written
expect_mpi_fail "fewer layers than stages" "--pp 4 is more than the model's 3 layers" 4 \
    "$BIN" "${COMMON[@]}" --num-layers 3 --pp 4 --metrics "$T/never.jsonl"
expect_mpi_fail "--pp-layers not summing" "--pp-layers sums to 7 layers but the model has 8" 2 \
    "$BIN" "${COMMON[@]}" --pp 2 --pp-layers 3,4 --metrics "$T/never.jsonl"
expect_mpi_fail "--pp-layers with a zero" "stage 0 has 0 layers" 2 \
    "$BIN" "${COMMON[@]}" --pp 2 --pp-layers 0,8 --metrics "$T/never.jsonl"
expect_mpi_fail "interleaved, micro-batches not a multiple of pp" "needs the 2 micro-batches per step to be a multiple of --pp 4" 4 \
    "$BIN" "${COMMON[@]}" --pp 4 --virtual-stages 2 --micro-batch-size 4 --metrics "$T/never.jsonl"
expect_mpi_fail "interleaved, layers not divisible by pp x V" "the 8 layers do not split evenly into --pp 2 x --virtual-stages 3" 2 \
    "$BIN" "${COMMON[@]}" --pp 2 --virtual-stages 3 --metrics "$T/never.jsonl"
expect_mpi_fail "world != dp x pp" "the job has 3 processes but --dp 1 x --tp 1 x --pp 2 = 2" 3 \
    "$BIN" "${COMMON[@]}" --pp 2 --metrics "$T/never.jsonl"
expect_mpi_fail "gpipe with virtual stages" "--virtual-stages 2 needs the interleaved schedule" 2 \
    "$BIN" "${COMMON[@]}" --pp 2 --virtual-stages 2 --pp-schedule gpipe --metrics "$T/never.jsonl"
expect_mpi_fail "an unknown schedule" "--pp-schedule 'zigzag' is not known" 2 \
    "$BIN" "${COMMON[@]}" --pp 2 --pp-schedule zigzag --metrics "$T/never.jsonl"

# resharding: 10 steps at pp 2 saved, resumed at pp 1 (one process), pp 4 and dp 4 (and a
# checkpoint saved at dp 2 resumed at pp 2): steps 11..20 are the one-process run's (1e-6)
if bash "$MPI" 2 "$BIN" "${COMMON[@]}" --pp 2 --save "$T/ck" --stop-after 10 >"$T/r1.out" 2>&1; then
    for how in "1 " "4 --pp 4" "4 --dp 4" "2 --pp 2 --virtual-stages 2"; do
        read -r np flags <<<"$how"
        rm -f "$T/r.jsonl"
        # shellcheck disable=SC2086
        bash "$MPI" "$np" "$BIN" "${COMMON[@]}" $flags --resume "$T/ck/step-00000010" --metrics "$T/r.jsonl" >"$T/r2.out" 2>&1 ||
            bad "resume at np=$np $flags failed: $(tail -2 "$T/r2.out")"
        compare_losses "$T/ref.jsonl" "$T/r.jsonl" "saved at pp=2, resumed at np=$np $flags" 11-20 1e-6 && ok ||
            bad "resume at np=$np $flags: steps 11-20 differ from the one-process run"
    done
else
    bad "pp=2 run with --save failed: $(tail -2 "$T/r1.out")"
fi
if bash "$MPI" 2 "$BIN" "${COMMON[@]}" --dp 2 --save "$T/ck2" --stop-after 10 >"$T/r1.out" 2>&1; then
    rm -f "$T/r.jsonl"
    bash "$MPI" 4 "$BIN" "${COMMON[@]}" --pp 4 --resume "$T/ck2/step-00000010" --metrics "$T/r.jsonl" >"$T/r2.out" 2>&1 ||
        bad "resume of a dp=2 checkpoint at pp=4 failed: $(tail -2 "$T/r2.out")"
    compare_losses "$T/ref.jsonl" "$T/r.jsonl" "saved at dp=2, resumed at pp=4" 11-20 1e-6 && ok ||
        bad "saved at dp=2, resumed at pp=4: steps 11-20 differ"
else
    bad "dp=2 run with --save failed: $(tail -2 "$T/r1.out")"
fi

# validation and --save-model at pp 2 give the one-process run's values
"$BIN" "${COMMON[@]}" --eval-interval 10 --save-model "$T/ref.bin" --metrics "$T/vref.jsonl" >"$T/v1.out" 2>&1 || bad "one-process run with validation failed"
if bash "$MPI" 2 "$BIN" "${COMMON[@]}" --pp 2 --eval-interval 10 --save-model "$T/pp.bin" --metrics "$T/vpp.jsonl" >"$T/v2.out" 2>&1; then
    $PY - "$T/vref.jsonl" "$T/vpp.jsonl" <<'PYEOF' && ok || bad "validation losses at pp=2 differ from the one-process run"
import json, sys
a, b = ([r.get("val_loss") for r in map(json.loads, open(p))] for p in sys.argv[1:3])
vals = [(x, y) for x, y in zip(a, b) if x is not None or y is not None]
assert len(vals) == 2 and all(x is not None and y is not None and abs(x - y) <= 1e-5 * abs(x) for x, y in vals), vals
print("  validation at steps 10 and 20: pp=2 %s vs one process %s" % ([y for _, y in vals], [x for x, _ in vals]))
PYEOF
    e1=$("$BIN" eval --load "$T/ref.bin" --data "$T/data.txt" --seq-len 16 2>&1 | grep -o 'loss=[0-9.]*')
    e2=$("$BIN" eval --load "$T/pp.bin" --data "$T/data.txt" --seq-len 16 2>&1 | grep -o 'loss=[0-9.]*')
    $PY -c 'import sys; a, b = (float(x.split("=")[1]) for x in sys.argv[1:3]); sys.exit(abs(a - b) > 2e-4)' "$e1" "$e2" && ok ||
        bad "--save-model at pp=2: eval $e2, the one-process model's $e1"
else
    bad "pp=2 run with validation failed: $(tail -2 "$T/v2.out")"
fi

# faults: a stage that hangs ends the job within the watchdog timeout, naming the operation and
# the peer stage; one that dies is ended by the launcher
start=$(date +%s)
LMSCALE_FAULT=hang:rank=1:step=3 bash "$MPI" 2 "$BIN" "${COMMON[@]}" --pp 2 --comm-timeout 3 >"$T/h.out" 2>&1
rc=$?
took=$(($(date +%s) - start))
[ "$rc" -eq 75 ] && ok || bad "hanging stage: exit $rc, want 75 (the watchdog's)"
grep -Eq "\[rank 0 of 2\] (irecv|isend) #[0-9]+ (from|to) rank 1 .*pp group of 2 ranks\) in step 3 has not completed" "$T/h.out" && ok ||
    bad "hanging stage: no watchdog line naming the p2p operation and peer stage: $(grep -m2 error "$T/h.out")"
[ "$took" -lt 30 ] && ok || bad "hanging stage: the job took ${took}s to end (timeout 3 s)"
LMSCALE_FAULT=exit:rank=0:step=3 bash "$MPI" 2 "$BIN" "${COMMON[@]}" --pp 2 --comm-timeout 3 >"$T/d.out" 2>&1
rc=$?
[ "$rc" -ne 0 ] && ok || bad "dying stage: the job exited 0"

summary
