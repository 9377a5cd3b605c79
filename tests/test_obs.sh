#!/usr/bin/env bash
# Seeing a run (docs/observability.md), each format checked by a reader that
# lmscale did not write:
#  - TensorBoard event files: protoc-compiled Event protobufs
#    (tests/obs/tensorboard_subset.proto, TensorFlow's field numbers) parsed by
#    python3-protobuf, CRC-32C recomputed in Python (check_tensorboard.py);
#  - traces: a structure check against the Trace Event Format (check_trace.py);
#  - plots: rendered by librsvg's rsvg-convert, the PNG decoded in Python and
#    its pixels counted (check_png.py);
# and each checker shown to fail on a broken file.
# Then the same readers on what `train` writes (--tensorboard-dir,
# --profile/--trace, alone and merged from 2 data-parallel ranks), phase
# timing in the step line, metrics and summary, results unchanged by any of
# it, `bench train --json`, `bench attention --json`, and progress reports (plain lines, and a bar on
# a terminal made by script(1)).
# Usage: bash tests/test_obs.sh /path/to/lmscale /path/to/test_obs [mpi]
set -u
NAME=test_obs
UNIT=${2:?usage: test_obs.sh lmscale test_obs [mpi]}
case $UNIT in /*) ;; *) UNIT=$PWD/$UNIT ;; esac
WITH_MPI=${3:-}
MPI=$(cd "$(dirname "$0")" && pwd)/mpirun.sh # before lib.sh changes directory
# shellcheck source=tests/lib.sh
source "$(dirname "$0")/lib.sh"
O=$TESTS_DIR/obs

# the readers: Debian's protobuf-compiler, python3-protobuf, librsvg2-bin (.ci/run installs them)
need_cmd protoc protobuf-compiler
need_cmd rsvg-convert librsvg2-bin
need_python numpy google.protobuf

# ---- the library's files: TensorBoard events and a trace of a forward/backward
run unit "$UNIT" "$T" && ok
run tb_unit $PY "$O/check_tensorboard.py" "$T/tb" --unit && ok
cat "$T/tb_unit.out"
run trace_unit $PY "$O/check_trace.py" "$T/trace.json" --ranks 1 --comm \
    --names step,forward,backward,encoder_fwd,matmul_fwd,matmul_bwd,attention_fwd,attention_bwd,layernorm_bwd,xent_fwd,allreduce && ok
cat "$T/trace_unit.out"

# ---- the checkers fail on broken files
mkdir -p "$T/tb_bad"
f=$(ls "$T"/tb/events.out.tfevents.*)
$PY -c 'import sys; d = bytearray(open(sys.argv[1], "rb").read()); d[40] ^= 1; open(sys.argv[2], "wb").write(d)' \
    "$f" "$T/tb_bad/$(basename "$f")"
$PY "$O/check_tensorboard.py" "$T/tb_bad" --unit >/dev/null 2>&1 && bad "a flipped bit passed the CRC check" || ok
$PY - "$T/trace.json" "$T/overlap.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
xs = [e for e in d["traceEvents"] if e["ph"] == "X"]
a, b = xs[1], xs[2]              # a phase and the op inside it: make the op end after the phase
b["dur"] = a["ts"] + a["dur"] - b["ts"] + 5.0
json.dump(d, open(sys.argv[2], "w"))
EOF
$PY "$O/check_trace.py" "$T/overlap.json" >/dev/null 2>&1 && bad "overlapping events passed the trace check" || ok

# ---- plots: two runs overlaid (loss + validation, lr, grad norm, throughput), rendered
DATA=$T/data.txt
$PY -c 'import random; r = random.Random(3); print("".join(r.choice("abcdefgh \n") for _ in range(20000)))' >"$DATA"
TRAIN=("$BIN" train --model nano --data "$DATA" --batch-size 4 --seq-len 32 --steps 12 --eval-interval 4
       --eval-batches 2 --threads 1 --peak-tflops 1)
run r1 "${TRAIN[@]}" --lr 3e-3 --metrics "$T/a.jsonl" && ok
run r2 "${TRAIN[@]}" --lr 1e-3 --seed 5 --metrics "$T/b.jsonl" && ok
run plot "$BIN" plot "$T/a.jsonl" "$T/b.jsonl" -o "$T/p.svg" --log-y --lr --grad-norm --throughput --x tokens && ok
grep -q "wrote $T/p.svg (2 runs, 4 panels)" "$T/plot.out" && ok || bad "plot: $(cat "$T/plot.out")"
for want in 'a: train' 'a: validation' 'b: train' 'tokens' 'learning rate' 'gradient norm' 'throughput' '(log)'; do
    grep -qF "$want" "$T/p.svg" && ok || bad "the SVG lacks '$want'"
done
run render rsvg-convert -o "$T/p.png" "$T/p.svg" && ok
run png $PY "$O/check_png.py" "$T/p.png" && ok
cat "$T/png.out"
# a blank picture fails the pixel check
printf '<svg xmlns="http://www.w3.org/2000/svg" width="300" height="200"><rect width="300" height="200" fill="#fff"/></svg>' >"$T/blank.svg"
rsvg-convert -o "$T/blank.png" "$T/blank.svg" && $PY "$O/check_png.py" "$T/blank.png" >/dev/null 2>&1 &&
    bad "a blank PNG passed the pixel check" || ok
# bad input: a clear message, non-zero exit, no SVG
echo '{"step": 1, "loss": 2.0' >"$T/broken.jsonl"
"$BIN" plot "$T/broken.jsonl" -o "$T/x.svg" 2>"$T/e1" && bad "plot accepted a broken line" || ok
grep -q "broken.jsonl line 1" "$T/e1" && ok || bad "no file:line in: $(cat "$T/e1")"
"$BIN" plot "$T/a.jsonl" 2>"$T/e2" && bad "plot without -o succeeded" || ok
grep -q "\-o FILE.svg is required" "$T/e2" && ok || bad "no -o message: $(cat "$T/e2")"
"$BIN" plot "$T/a.jsonl" -o "$T/x.svg" --x time 2>"$T/e3" && bad "--x time accepted" || ok
[ ! -e "$T/x.svg" ] && ok || bad "a refused plot left $T/x.svg"

# ---- train: phases in the step line, metrics and summary; TensorBoard; a trace
run trained "${TRAIN[@]}" --lr 3e-3 --metrics "$T/c.jsonl" --tensorboard-dir "$T/tbrun" --profile 3:4 \
    --trace "$T/run.json" --save "$T/ck" --save-every 4 && ok
steps=$(grep -cE '^step +[0-9]+/12 \| loss .* \| d [0-9.]+ f [0-9.]+ b [0-9.]+ c [0-9.]+ o [0-9.]+ ms$' "$T/trained.out")
[ "$steps" = 12 ] && ok || bad "step lines with the phases: $steps of 12: $(grep -m1 '^step' "$T/trained.out")"
for want in 'time per step \(mean of 11 steps' '^  forward +[0-9.]+ +[0-9.]+%' '^  grad_comm ' '^  optim ' \
    '^  step +[0-9.]+ +100.0%' '^throughput: [0-9]+ tokens/s \| [0-9.]+ TFLOP/s \| MFU [0-9.]+% .* peak memory [0-9.]+ MiB' \
    'profile: wrote .*run.json'; do
    grep -Eq "$want" "$T/trained.out" && ok || bad "train output lacks /$want/"
done
$PY - "$T/c.jsonl" <<'EOF2' && ok || bad "metrics: phases"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for r in rows:
    ph = sum(r[k + "_ms"] for k in ("data", "forward", "backward", "grad_comm", "optim", "tp_comm", "bubble"))
    assert ph <= r["step_ms"] + 0.01, (ph, r)
    assert r["forward_ms"] > 0 and r["backward_ms"] > 0 and r["tokens"] == r["step"] * 4 * 32, r
EOF2
run tb_run $PY "$O/check_tensorboard.py" "$T/tbrun" --metrics "$T/c.jsonl" && ok
cat "$T/tb_run.out"
run trace_run $PY "$O/check_trace.py" "$T/run.json" --ranks 1 --comm \
    --names step,data,forward,backward,optim,matmul_fwd,matmul_bwd,attention_bwd,xent_fused,adamw,checkpoint_save && ok
cat "$T/trace_run.out"
$PY - "$T/run.json" <<'EOF2' && ok || bad "the trace holds steps other than 3 and 4"
import json, sys
steps = sorted(e["args"]["step"] for e in json.load(open(sys.argv[1]))["traceEvents"] if e.get("name") == "step")
assert steps == [3, 4], steps
EOF2
# timing, tracing and TensorBoard change no result: the same losses and norms bit for bit as run r1
$PY - "$T/a.jsonl" "$T/c.jsonl" <<'EOF2' && ok || bad "results differ with --profile/--tensorboard-dir"
import json, sys
a, c = ([(r["loss"], r["grad_norm"], r.get("val_loss")) for r in map(json.loads, open(f))] for f in sys.argv[1:])
assert a == c, (a, c)
EOF2
# refused before training, nothing written
"${TRAIN[@]}" --profile 3:4 >/dev/null 2>"$T/e4" && bad "--profile without --trace accepted" || ok
grep -q "give both --profile STEP_A:STEP_B and --trace FILE.json" "$T/e4" && ok || bad "$(cat "$T/e4")"
"${TRAIN[@]}" --profile 4:2 --trace "$T/x.json" >/dev/null 2>"$T/e5" && bad "--profile 4:2 accepted" || ok
grep -q "is not a step range" "$T/e5" && ok || bad "$(cat "$T/e5")"
"${TRAIN[@]}" --profile 1:2 --trace "$T/no/such/dir/x.json" >"$T/o6" 2>"$T/e6" && bad "unwritable --trace accepted" || ok
! grep -q '^step' "$T/o6" && ok || bad "training started before refusing the --trace path"
"${TRAIN[@]}" --data "$T/missing.txt" --tensorboard-dir "$T/tb_refused" >/dev/null 2>&1 && bad "missing data accepted" || ok
[ ! -e "$T/tb_refused" ] && ok || bad "a refused run left a TensorBoard directory"

# ---- two data-parallel ranks: one trace with both, collectives with bytes and group; rank 0's events only
if [ "$WITH_MPI" = mpi ]; then
    run dp env OMP_NUM_THREADS=1 bash "$MPI" 2 "${TRAIN[@]}" --steps 4 --metrics "$T/dp.jsonl" \
        --tensorboard-dir "$T/tbdp" --profile 2:3 --trace "$T/dp.json" && ok
    # one node: the gradient sum in shared memory, traced as an allreduce, and the wait after AdamW
    run trace_dp $PY "$O/check_trace.py" "$T/dp.json" --ranks 2 --comm \
        --names "step,backward,grad_comm,allreduce,barrier,matmul_bwd" && ok
    cat "$T/trace_dp.out"
    # the MPI path (as across nodes): buckets issued during backward, waited for in grad_comm
    run dp_mpi env OMP_NUM_THREADS=1 LMSCALE_DP_SHM=0 bash "$MPI" 2 "${TRAIN[@]}" --steps 3 --profile 2:3 \
        --trace "$T/dpm.json" && ok
    run trace_dp_mpi $PY "$O/check_trace.py" "$T/dpm.json" --ranks 2 --comm \
        --names "step,backward,grad_comm,iallreduce (issue),wait (iallreduce),allreduce,matmul_bwd" && ok
    [ "$(ls "$T/tbdp" | wc -l)" = 1 ] && ok || bad "TensorBoard files of 2 ranks: $(ls "$T/tbdp")"
    run tb_dp $PY "$O/check_tensorboard.py" "$T/tbdp" --metrics "$T/dp.jsonl" && ok
fi

# ---- bench train --json
run bench "$BIN" bench train --model nano --batch-size 4 --seq-len 32 --steps 4 --warmup 1 --threads 1 --json && ok
$PY - "$T/bench.out" <<'EOF2' && ok || bad "bench train --json: $(cat "$T/bench.out")"
import json, sys
b = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
assert b["bench"] == "train" and b["timed_steps"] == 3 and b["tokens_per_s"] > 0 and b["mfu"] > 0, b
# MFU against the median of the peaks measured after each timed step (one
# probe per timed step, the median between the smallest and the largest)
assert abs(b["mfu"] - b["tflops"] / b["peak_tflops"]) < 1e-3 * b["mfu"] + 1e-5, b
assert b["peak_probes"] == b["timed_steps"], b
assert 0 < b["peak_probe_min"] <= b["peak_tflops"] <= b["peak_probe_max"], b
assert b["peak_tflops_startup"] > 0, b
assert abs(b["tokens_per_s"] - 128 / (b["step_ms"] / 1e3)) < 1e-3 * b["tokens_per_s"], b
assert abs(sum(b["phases_ms"].values()) - b["step_ms"]) < 0.01 + 1e-3 * b["step_ms"], b
assert b["peak_tflops"] > 0 and b["peak_rss_mb"] > 0 and b["phases_ms"]["forward"] > 0, b
EOF2
# a given peak is used as given: no probes
run bench_given "$BIN" bench train --model nano --batch-size 4 --seq-len 32 --steps 3 --threads 1 --json --peak-tflops 0.5 &&
    $PY -c 'import json, sys
b = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
assert b["peak_tflops"] == 0.5 and b["peak_probes"] == 0, b' "$T/bench_given.out" && ok || bad "bench train --peak-tflops: $(cat "$T/bench_given.out")"
run bench_table "$BIN" bench train --model nano --batch-size 4 --seq-len 32 --steps 3 --threads 1 && ok
grep -Eq '^throughput: [0-9]+ tokens/s' "$T/bench_table.out" && grep -q '^  backward ' "$T/bench_table.out" && ok ||
    bad "bench train table: $(cat "$T/bench_table.out")"

# ---- bench attention --json: both backends, times and shares consistent with the model FLOPs
for be in cpu ref; do
    run "battn_$be" "$BIN" bench attention --backend $be --batch-size 2 --seq-len 70 --hidden-size 48 --num-heads 3 \
        --iters 2 --threads 1 --json && ok
    $PY - "$T/battn_$be.out" $be <<'EOF2' && ok || bad "bench attention --json ($be): $(cat "$T/battn_$be.out")"
import json, sys
b = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
assert b["bench"] == "attention" and b["backend"] == sys.argv[2] and (b["B"], b["T"], b["C"], b["H"]) == (2, 70, 48, 3), b
assert b["fwd_ms"] > 0 and b["bwd_ms"] > 0 and b["peak_gflops"] > 0, b
f = 4 * 2 * 70 * 70 * 48  # forward model FLOPs; backward twice that
share = 3 * f / ((b["fwd_ms"] + b["bwd_ms"]) / 1e3) / (b["peak_gflops"] * 1e9)
assert abs(share - b["peak_share"]) < 1e-3 * share + 1e-4, (share, b)
EOF2
done
"$BIN" bench attention --hidden-size 48 --num-heads 5 >"$T/battn_bad.out" 2>&1 && bad "bench attention took 5 heads of 48 channels" ||
    { grep -q 'must divide --hidden-size' "$T/battn_bad.out" && ok || bad "bench attention bad heads: $(cat "$T/battn_bad.out")"; }

# ---- progress: plain lines off a terminal, a bar with rate and ETA on one (script(1) gives a pty)
$PY -c 'import random; r = random.Random(4); print("\n".join(" ".join("".join(r.choice("abcdefghij") for _ in range(r.randint(2, 7))) for _ in range(12)) for _ in range(40000)))' >"$T/big.txt"
LMSCALE_PROGRESS=0.000001 "$BIN" tokenizer train --input "$T/big.txt" --vocab-size 1000 --output "$T/tok" >/dev/null 2>"$T/p1" && ok || bad "tokenizer train failed"
grep -Eq '^tokenizer train \(merges\): [0-9]+% \([0-9.k]+/[0-9.k]+ merges\) \| [0-9.k]+ merges/s \| ETA ' "$T/p1" && ok ||
    bad "no plain progress lines: $(head -3 "$T/p1")"
grep -q '^tokenizer train (merges): done' "$T/p1" && ok || bad "no final progress line"
"$BIN" tokenizer train --input "$T/big.txt" --vocab-size 1000 --output "$T/tok2" >/dev/null 2>"$T/p2"
! grep -q 'ETA' "$T/p2" && ok || bad "a short task printed progress lines off a terminal: $(head -2 "$T/p2")"
# eval, export, checkpoint save and load report progress too (plain lines here: LMSCALE_PROGRESS makes them due at once)
export LMSCALE_PROGRESS=0.000001
"$BIN" eval --resume "$T/ck" --data "$DATA" --max-batches 4 >/dev/null 2>"$T/p4"
"$BIN" export --hf "$T/hf" --resume "$T/ck" >/dev/null 2>>"$T/p4"
"${TRAIN[@]}" --steps 2 --save "$T/ck2" --quiet >/dev/null 2>>"$T/p4"
"${TRAIN[@]}" --steps 3 --resume "$T/ck2" --quiet >/dev/null 2>>"$T/p4"
unset LMSCALE_PROGRESS
for what in 'eval: [0-9]+% \([0-9.k]+/[0-9.k]+ tokens\)' 'eval: done' 'export: done, [0-9.]+ MB' \
    'checkpoint save: [0-9]+% .* MB/s \| ETA' 'checkpoint save: done' 'checkpoint load: done'; do
    grep -Eq "^$what" "$T/p4" && ok || bad "no progress line /$what/ in: $(sort -u "$T/p4" | head -5)"
done
if command -v script >/dev/null; then
    LMSCALE_PROGRESS=0.000001 script -qec "'$BIN' data prepare --input '$T/big.txt' --output-dir '$T/sh' --val-fraction 0.1" \
        /dev/null >"$T/p3" 2>&1 && ok || bad "data prepare under script failed: $(tail -2 "$T/p3")"
    grep -aEq $'\rdata prepare \[[#-]{30}\] +[0-9]+% [0-9.kM]+/[0-9.kM]+ MB \| [0-9.kM]+ MB/s \| (ETA|took) ' "$T/p3" && ok ||
        bad "no progress bar on a terminal: $(tr '\r' '\n' <"$T/p3" | head -3)"
else
    skip "the progress bar on a terminal" "apt-get install bsdutils (script)"
fi

summary
