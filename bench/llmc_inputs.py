"""Inputs for llm.c's CPU trainer (train_gpt2.c) as bench/llmc_bench.sh runs it:
a GPT-2 124M checkpoint with random weights (llm.c's model file, version 3:
a 256 x int32 header, then every parameter as float32 in llm.c's order), and
the token ids given on stdin as llm.c's train and val shards (a 256 x int32
header, then uint16 ids; docs/formats.md), the first 10 % for val. Only the
speed of train_gpt2 is measured, so the weights' values do not matter.

Usage: lmscale tokenizer encode ... | python3 llmc_inputs.py OUTDIR
"""
import os
import sys

import numpy as np


def write_model(path, L=12, NH=12, C=768, V=50257, Vp=50304, maxT=1024, seed=1):
    header = np.zeros(256, dtype=np.int32)
    header[:8] = [20240326, 3, maxT, V, L, NH, C, Vp]
    rng = np.random.default_rng(seed)
    # (count, kind): kind "w" ~ N(0, 0.02), "one" LayerNorm gains, "zero" biases
    shapes = [(Vp * C, "w"), (maxT * C, "w"), (L * C, "one"), (L * C, "zero"), (L * 3 * C * C, "w"),
              (L * 3 * C, "zero"), (L * C * C, "w"), (L * C, "zero"), (L * C, "one"), (L * C, "zero"),
              (L * 4 * C * C, "w"), (L * 4 * C, "zero"), (L * C * 4 * C, "w"), (L * C, "zero"), (C, "one"),
              (C, "zero")]
    with open(path + ".tmp", "wb") as f:
        header.tofile(f)
        for n, kind in shapes:
            if kind == "w":
                x = (rng.standard_normal(n, dtype=np.float32) * 0.02).astype(np.float32)
            else:
                x = np.full(n, 1.0 if kind == "one" else 0.0, dtype=np.float32)
            x.tofile(f)
    os.replace(path + ".tmp", path)


def write_shard(path, ids):
    header = np.zeros(256, dtype=np.int32)
    header[:3] = [20240520, 1, len(ids)]
    with open(path, "wb") as f:
        header.tofile(f)
        np.asarray(ids, dtype=np.uint16).tofile(f)


def main():
    out = sys.argv[1]
    ids = np.array(sys.stdin.read().split(), dtype=np.int64)
    if len(ids) < 10000 or ids.max() >= 50257:
        sys.exit("llmc_inputs.py: expected GPT-2 token ids on stdin (got %d)" % len(ids))
    d = os.path.join(out, "dev", "data", "tinyshakespeare")
    os.makedirs(d, exist_ok=True)
    nval = len(ids) // 10
    write_shard(os.path.join(d, "tiny_shakespeare_val.bin"), ids[:nval])
    write_shard(os.path.join(d, "tiny_shakespeare_train.bin"), ids[nval:])
    write_model(os.path.join(out, "gpt2_124M.bin"))


if __name__ == "__main__":
    main()
