#!/usr/bin/env bash
# Mixed precision end to end (docs/mixed-precision.md, issue 13):
#   - 300 steps on generated data in bf16 and in fp16 end within 2 % of the
#     fp32 run's final loss (same seed);
#   - fp16's step line and metrics carry the loss scale and the skipped steps;
#   - an inf injected into one rank's gradients (LMSCALE_FAULT) under
#     mpirun (ZeRO 1) skips that step on both ranks;
#   - a NaN that persists (at the minimum loss scale) stops training with a
#     message and a non-zero exit; the newest checkpoint is the last good one;
#   - resuming a bf16 and an fp16 run (checkpoints keep the fp32 master and the
#     loss scaler) gives the uninterrupted run's losses and scales bit for bit;
#   - a bad --dtype is refused with the choices.
# Usage: bash tests/test_mixed.sh /path/to/lmscale
set -u
NAME=test_mixed
HERE=$(cd "$(dirname "$0")" && pwd)
MPI=$HERE/mpirun.sh
# shellcheck source=tests/lib.sh
source "$HERE/lib.sh"
export OMP_NUM_THREADS=1 XDG_CACHE_HOME=$T/cache

for i in $(seq 1 800); do echo "line $i: pack my box with five dozen liquor jugs; $((i * 7919 % 1000))"; done >data.txt
COMMON=(train --data data.txt --model nano --seq-len 32 --batch-size 8 --lr 2e-3 --warmup-steps 10
        --eval-interval 0 --threads 1 --peak-tflops 1)
last_loss() { $PY -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["loss"])' "$1"; }

# ---- 300 steps: bf16 and fp16 within 2 % of fp32 ----
for d in fp32 bf16 fp16; do
    if "$BIN" "${COMMON[@]}" --steps 300 --log-interval 100 --dtype $d --metrics $d.jsonl >$d.out 2>&1; then ok
    else bad "--dtype $d: the 300-step run failed: $(tail -n 3 $d.out)"; fi
done
f32=$(last_loss fp32.jsonl)
for d in bf16 fp16; do
    got=$(last_loss $d.jsonl)
    if $PY -c "import sys; sys.exit(0 if abs($got - $f32) / $f32 < 0.02 else 1)"; then ok
    else bad "--dtype $d: final loss $got is not within 2 % of fp32's $f32"; fi
    echo "300 steps: $d final loss $got, fp32 $f32 ($($PY -c "print('%+.2f %%' % (100 * ($got - $f32) / $f32))"))"
done
grep -q "mixed precision: bf16 compute, fp32 master weights | no loss scaling" bf16.out && ok ||
    bad "bf16: no start-up line about the precision: $(grep -i precision bf16.out)"
grep -q "^bf16: this CPU" bf16.out && ok || bad "bf16: no line about the CPU's bf16 support"
grep -q "step   300/300 .*| scale 65536 | skipped 0" fp16.out && ok ||
    bad "fp16: the step line lacks the scale and skipped steps: $(grep 'step   300' fp16.out)"
$PY -c '
import json, sys
r = [json.loads(l) for l in open("fp16.jsonl")]
assert all(x["loss_scale"] == 65536 and x["skipped"] == 0 and x["skipped_steps"] == 0 for x in r), r[-1]
assert all("loss_scale" not in json.loads(l) for l in open("fp32.jsonl"))
' && ok || bad "fp16 metrics lack loss_scale / skipped_steps (or fp32's have them)"

# ---- an inf in rank 1's gradients at step 3: skipped on both ranks (ZeRO 1) ----
if [ -n "${LMS_MPIRUN+x}" ] || command -v mpirun >/dev/null 2>&1; then
    if LMSCALE_FAULT=inf:rank=1:step=3 bash "$MPI" 2 "$BIN" "${COMMON[@]}" --steps 5 --dtype fp16 --zero 1 \
        --log-all-ranks --metrics mpi.jsonl >mpi.out 2>&1; then
        [ "$(grep -c 'step     3/5 .*scale 65536 | skipped 1 (this step: inf/NaN gradients)' mpi.out)" = 2 ] && ok ||
            bad "the injected inf did not skip step 3 on both ranks: $(grep 'step     3' mpi.out)"
        grep -q 'step     4/5 .*scale 32768 | skipped 1 |' mpi.out && ok ||
            bad "the scale did not halve after the skip: $(grep 'step     4' mpi.out)"
        $PY -c '
import json
for f in ("mpi.jsonl", "mpi.jsonl.rank1"):
    r = {x["step"]: x for x in map(json.loads, open(f))}
    assert r[3]["skipped"] == 1 and r[3]["grad_norm"] is None and r[4]["loss_scale"] == 32768, r[3]
' && ok || bad "the metrics of both ranks do not record the skipped step"
    else
        bad "mpirun with an injected inf failed: $(tail -n 5 mpi.out)"
    fi
else
    skip "the two-rank skip" "apt-get install openmpi-bin libopenmpi-dev"
fi

# ---- a persistent NaN: stops with a message, no NaN checkpoint ----
LMSCALE_FAULT=nan:rank=0:step=3 "$BIN" "${COMMON[@]}" --steps 5 --dtype fp16 --initial-loss-scale 1 \
    --min-loss-scale 1 --save nan-ck --save-every 1 >nan.out 2>&1
rc=$?
[ $rc -ne 0 ] && grep -q "still inf/NaN at the minimum loss scale 1" nan.out && ok ||
    bad "a NaN at the minimum scale did not stop training with a message (exit $rc): $(tail -n 2 nan.out)"
[ -d nan-ck/step-00000002 ] && [ ! -e nan-ck/step-00000003 ] && ok ||
    bad "after the NaN the checkpoints are: $(ls nan-ck 2>&1)"

# ---- exact resume in bf16 and fp16 (the scale moves: window 2, an overflow at step 3) ----
for d in bf16 fp16; do
    R=("${COMMON[@]}" --steps 8 --dtype $d --loss-scale-window 2)
    F=; [ $d = fp16 ] && F=inf:rank=0:step=3 # bf16 has no loss scaling: an inf stops it
    LMSCALE_FAULT=$F "$BIN" "${R[@]}" --metrics $d-ref.jsonl >$d-ref.out 2>&1 || bad "$d reference run failed"
    LMSCALE_FAULT=$F "$BIN" "${R[@]}" --save $d-ck --stop-after 4 --metrics $d-res.jsonl \
        >$d-a.out 2>&1 || bad "$d first half failed: $(tail -n 2 $d-a.out)"
    "$BIN" train --data data.txt --resume $d-ck --metrics $d-res.jsonl --threads 1 --peak-tflops 1 >$d-b.out 2>&1 ||
        bad "$d resume failed: $(tail -n 2 $d-b.out)"
    compare_losses $d-ref.jsonl $d-res.jsonl "--dtype $d resumed at step 4" 1-8 0 && ok ||
        bad "--dtype $d: the resumed run's losses differ from the uninterrupted run's"
    $PY -c '
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
k = [x for x in ("grad_norm", "loss_scale", "skipped_steps") if x in a[0]]
assert [[x[y] for y in k] for x in a] == [[x[y] for y in k] for x in b], (a[-1], b[-1])
' $d-ref.jsonl $d-res.jsonl && ok || bad "--dtype $d: norms or loss scales differ after resume"
done
grep -q '"dtype": "fp16", "loss_scale": 65536, "clean_steps": 1, "skipped_steps": 1' fp16-ck/step-00000004/index.json && ok ||
    bad "the fp16 checkpoint lacks the scaler state: $(grep -o '"precision"[^}]*' fp16-ck/step-00000004/index.json)"

# ---- export --hf --dtype bf16|fp16 (PyTorch's rounding of the fp32 export), and --init reads them ----
miss=$(python_missing torch)
if [ -n "$miss" ]; then
    skip "the bf16/fp16 export against PyTorch" "apt-get install $miss"
else
    for d in fp32 bf16 fp16; do
        "$BIN" export --hf hf-$d --resume fp16-ck --dtype $d >ex-$d.out 2>&1 && ok || bad "export --dtype $d: $(cat ex-$d.out)"
    done
    $PY - <<'PY' && ok || bad "the bf16/fp16 exports are not PyTorch's rounding of the fp32 export"
import json, struct, torch
def read(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    return {k: (v["dtype"], b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]) for k, v in h.items()
            if k != "__metadata__"}
f32 = read("hf-fp32/model.safetensors")
for d, tt, name, td in (("bf16", torch.bfloat16, "BF16", "bfloat16"), ("fp16", torch.float16, "F16", "float16")):
    got = read("hf-%s/model.safetensors" % d)
    assert json.load(open("hf-%s/config.json" % d))["torch_dtype"] == td
    for k, (dt, raw) in f32.items():
        want = torch.frombuffer(bytearray(raw), dtype=torch.float32).to(tt)
        assert got[k][0] == name, (k, got[k][0])
        have = torch.frombuffer(bytearray(got[k][1]), dtype=tt)
        assert torch.equal(want.view(torch.int16), have.view(torch.int16)), (d, k)
    print("export --dtype %s: %d tensors equal PyTorch's rounding of the fp32 export" % (d, len(f32)))
PY
    ref=$("$BIN" eval --init hf-fp32 --data data.txt 2>&1 | sed -n 's/.*loss=\([0-9.]*\).*/\1/p')
    for d in bf16 fp16; do
        got=$("$BIN" eval --init hf-$d --data data.txt 2>&1 | sed -n 's/.*loss=\([0-9.]*\).*/\1/p')
        [ -n "$got" ] && $PY -c "import sys; sys.exit(0 if abs($got - $ref) / $ref < 0.01 else 1)" && ok ||
            bad "eval --init of the $d export: loss '$got' vs fp32's $ref"
        "$BIN" "${COMMON[@]}" --steps 1 --init hf-$d --quiet >init-$d.out 2>&1 && ok ||
            bad "train --init of the $d export failed: $(tail -n 2 init-$d.out)"
    done
fi
"$BIN" export --hf hf-x --resume fp16-ck --dtype fp8 >bad3.out 2>&1
[ $? -eq 2 ] && grep -q "choose fp32, bf16 or fp16" bad3.out && ok || bad "export --dtype fp8: $(cat bad3.out)"

# ---- bad flags ----
"$BIN" "${COMMON[@]}" --steps 1 --dtype fp8 >bad.out 2>&1
[ $? -eq 2 ] && grep -q "choose fp32, bf16 or fp16" bad.out && ok || bad "--dtype fp8: $(cat bad.out)"
"$BIN" "${COMMON[@]}" --steps 1 --dtype fp16 --loss-scale -1 >bad2.out 2>&1
[ $? -eq 2 ] && grep -q "loss-scale" bad2.out && ok || bad "--loss-scale -1: $(cat bad2.out)"
summary
