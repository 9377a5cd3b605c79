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
# Usage: bash tests/test_obs.sh /path/to/lmscale /path/to/test_obs
set -u
NAME=test_obs
UNIT=${2:?usage: test_obs.sh lmscale test_obs}
case $UNIT in /*) ;; *) UNIT=$PWD/$UNIT ;; esac
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

summary
