#!/usr/bin/python3
"""Hugging Face interop checks against PyTorch (tests/test_hf_torch.sh runs them).

    hf_interop.py loss DIR DATA T        loss of the GPT-2 in DIR (config.json +
                                         model.safetensors, transformers' GPT-2 names) on
                                         the byte tokens of DATA, in float64: the mean
                                         cross-entropy over consecutive windows of T
                                         (what `lmscale eval --seq-len T` computes)
    hf_interop.py write DIR SEED         random GPT-2 (V=300, not a multiple of 64) written
                                         as transformers' GPT2LMHeadModel.save_pretrained
                                         would: "transformer." prefix, Conv1D (in, out)
                                         weights, no lm_head (tied), plus the attn.bias
                                         buffers old checkpoints carry

safetensors is read and written here with numpy (Debian has no safetensors package):
u64 little-endian header length, JSON header, data. The model is tests/ref/gpt2_reference.py's.
"""

import json
import math
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt2_reference import GPT2, padded_vocab  # noqa: E402

CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    assert (8 + n) % 8 == 0, "data does not start 8-byte aligned"
    data = raw[8 + n:]
    out, end = {}, 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        b, e = info["data_offsets"]
        end = max(end, e)
        out[name] = np.frombuffer(data[b:e], dtype="<f4").reshape(info["shape"]).copy()
    assert end == len(data), "data has %d bytes, the header covers %d" % (len(data), end)
    return out


def write_safetensors(path, tensors):
    header, off = {"__metadata__": {"format": "pt"}}, 0
    names = sorted(tensors)
    for name in names:
        a = np.ascontiguousarray(tensors[name], dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for name in names:
            f.write(np.ascontiguousarray(tensors[name], dtype="<f4").tobytes())


def load_model(d):
    cfg = json.load(open(os.path.join(d, "config.json")))
    assert cfg["model_type"] == "gpt2" and cfg["activation_function"] == "gelu_new"
    assert cfg["layer_norm_epsilon"] == 1e-5 and cfg.get("tie_word_embeddings", True)
    V, L, NH, C, T = cfg["vocab_size"], cfg["n_layer"], cfg["n_head"], cfg["n_embd"], cfg["n_positions"]
    st = read_safetensors(os.path.join(d, "model.safetensors"))
    st = {k[len("transformer."):] if k.startswith("transformer.") else k: v for k, v in st.items()}
    model = GPT2(V, T, L, NH, C)
    with torch.no_grad():
        for name, p in model.layout():
            key = name + ".weight" if name in ("wte", "wpe") else name
            a = st[key]
            if name.endswith(CONV1D):
                a = a.T  # Conv1D (in, out) -> nn.Linear (out, in)
            if name == "wte":
                assert a.shape == (V, C)
                a = np.concatenate([a, np.zeros((padded_vocab(V) - V, C), np.float32)])
            assert tuple(a.shape) == tuple(p.shape), (name, a.shape, p.shape)
            p.copy_(torch.from_numpy(np.ascontiguousarray(a)))
    return model.double()


def cmd_loss(d, data_path, T):
    model = load_model(d)
    toks = np.frombuffer(open(data_path, "rb").read(), dtype=np.uint8).astype(np.int64)
    nw = (len(toks) - 1) // T
    x = torch.from_numpy(toks[: nw * T].reshape(nw, T))
    y = torch.from_numpy(toks[1: nw * T + 1].reshape(nw, T))
    with torch.no_grad():
        _, loss = model(x, y)
    print("%.9f %d" % (loss.item(), nw * T))


def cmd_write(d, seed):
    V, T, L, NH, C = 300, 64, 2, 4, 64
    torch.manual_seed(seed)
    model = GPT2(V, T, L, NH, C)
    tensors = {}
    with torch.no_grad():
        for name, p in model.layout():
            if name.endswith(("ln_1.weight", "ln_2.weight")) or name == "ln_f.weight":
                v = 1.0 + 0.1 * torch.randn(p.shape)
            else:
                v = 0.1 * torch.randn(p.shape)
            a = v.numpy().astype(np.float32)
            if name == "wte":
                a = a[:V]
            if name.endswith(CONV1D):
                a = a.T
            key = name + ".weight" if name in ("wte", "wpe") else name
            tensors["transformer." + key] = a
    for l in range(L):  # causal-mask buffers that old GPT-2 checkpoints carry: ignored on load
        tensors["transformer.h.%d.attn.bias" % l] = np.tril(np.ones((T, T), np.float32)).reshape(1, 1, T, T)
    os.makedirs(d, exist_ok=True)
    write_safetensors(os.path.join(d, "model.safetensors"), tensors)
    cfg = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_embd": C, "n_head": NH,
           "n_layer": L, "n_positions": T, "n_ctx": T, "vocab_size": V, "layer_norm_epsilon": 1e-5,
           "activation_function": "gelu_new", "tie_word_embeddings": True, "n_inner": None}
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"), indent=2)


if __name__ == "__main__":
    if sys.argv[1] == "loss":
        cmd_loss(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif sys.argv[1] == "write":
        cmd_write(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit("usage: hf_interop.py loss DIR DATA T | write DIR SEED")
