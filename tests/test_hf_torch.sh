#!/usr/bin/env bash
# Hugging Face interop against PyTorch (tests/ref/hf_interop.py):
#  (a) lmscale export --hf of a trained model, loaded into the PyTorch GPT-2:
#      its loss on fixed text == lmscale eval's (relative 1e-5);
#  (b) PyTorch writes a random GPT-2 in transformers' layout ("transformer."
#      names, Conv1D weights, V=300 padded to 320 inside lmscale):
#      lmscale eval --init gives PyTorch's loss (relative 1e-5).
# Skipped (tests/lib.sh's need_python) when /usr/bin/python3 has no torch.
# Usage: bash tests/test_hf_torch.sh /path/to/lmscale
set -u

NAME=test_hf_torch
REF=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/ref/hf_interop.py
# shellcheck source=tests/lib.sh
source "$(dirname "$0")/lib.sh"
need_python torch numpy
DATA=$T/data.txt
for _ in $(seq 1 30); do printf 'The quick brown fox jumps over the lazy dog. 0123456789\n'; done >"$DATA"
# compare NAME LMS_LINE PY_LINE: "loss=.. ppl=.. tokens=N" vs "loss N"
compare() {
    $PY - "$@" <<'EOF'
import sys
name, lms, ref = sys.argv[1], sys.argv[2], sys.argv[3].split()
f = dict(kv.split("=") for kv in lms.split())
a, b = float(f["loss"]), float(ref[0])
rel = abs(a - b) / abs(b)
print("  %s: lmscale %.6f PyTorch %.9f (rel %.2e), tokens %s vs %s" % (name, a, b, rel, f["tokens"], ref[1]))
# lmscale prints 6 decimals: allow that rounding on top of 1e-5
sys.exit(0 if rel <= 1e-5 + 5e-7 / abs(b) and f["tokens"] == ref[1] else 1)
EOF
}

# (a) export -> PyTorch
"$BIN" train --model nano --data "$DATA" --peak-tflops 1 --eval-interval 0 --quiet --threads 1 --steps 15 \
    --batch-size 4 --seq-len 32 --lr 3e-3 --save-model "$T/m.bin" >/dev/null 2>&1 || bad "train failed"
"$BIN" export --hf "$T/hf" --load "$T/m.bin" >/dev/null 2>&1 || bad "export failed"
lms=$("$BIN" eval --threads 1 --load "$T/m.bin" --data "$DATA" --seq-len 64 2>/dev/null | tail -n 1)
ref=$($PY "$REF" loss "$T/hf" "$DATA" 64)
compare export "$lms" "$ref" && ok || bad "(a) PyTorch loss of the exported model differs from lmscale eval"

# (b) PyTorch -> lmscale --init
$PY "$REF" write "$T/pt" 5 || bad "hf_interop.py write failed"
ref=$($PY "$REF" loss "$T/pt" "$DATA" 64)
lms=$("$BIN" eval --threads 1 --init "$T/pt" --data "$DATA" --seq-len 64 2>"$T/init.err" | tail -n 1)
[ -n "$lms" ] || grep -v OPENBLAS "$T/init.err" | head -3
compare init "$lms" "$ref" && ok || bad "(b) lmscale eval --init loss differs from PyTorch's"
# and the other direction again: export what was imported, PyTorch reads the same loss
"$BIN" train --init "$T/pt" --data "$DATA" --steps 1 --lr 1e-9 --min-lr 0 --batch-size 2 --seq-len 64 --peak-tflops 1 \
    --eval-interval 0 --quiet --threads 1 --save "$T/ck" >/dev/null 2>&1 || bad "train --init failed"
"$BIN" export --hf "$T/pt2" --resume "$T/ck" >/dev/null 2>&1 || bad "export --resume failed"
$PY - "$T/pt/model.safetensors" "$T/pt2/model.safetensors" "$REF" <<'EOF' && ok || bad "(b) re-export: weights moved more than lr 1e-9 allows"
import sys, importlib.util, numpy as np
spec = importlib.util.spec_from_file_location("hf", sys.argv[3]); hf = importlib.util.module_from_spec(spec); spec.loader.exec_module(hf)
a = {k[len("transformer."):]: v for k, v in hf.read_safetensors(sys.argv[1]).items() if ".attn.bias" not in k}
b = hf.read_safetensors(sys.argv[2])
assert sorted(a) == sorted(b), (sorted(set(a) ^ set(b)))
worst = max(float(np.abs(a[k] - b[k]).max()) for k in a)
print("  re-export after one step at lr 1e-9: max |diff| %.2e over %d tensors" % (worst, len(a)))
sys.exit(0 if worst < 1e-6 else 1)
EOF
summary
