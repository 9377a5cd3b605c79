"""Writes the same token ids as an lmscale shard, an llm.c shard and a
Megatron-LM indexed dataset (docs/formats.md), and reads shards back.

  write_shards.py write IDS_FILE OUT_PREFIX   ids: whitespace-separated ints
      -> OUT_PREFIX.lmstok, OUT_PREFIX.llmc, OUT_PREFIX_mg.bin/.idx
         (Megatron: the ids in three documents of one sequence each)
  write_shards.py read SHARD                  -> the ids, one line
Options for write (env): WIDTH=4 (lmscale uint32), MG_DTYPE=4 (int32).
"""
import os
import struct
import sys
import zlib

import numpy as np


def write_lmstok(path, ids, width):
    b = ids.astype("<u2" if width == 2 else "<u4").tobytes()
    with open(path, "wb") as f:
        f.write(b"LMSTOKEN" + struct.pack("<IIQII", 1, width, len(ids), zlib.crc32(b), 0) + b)


def write_llmc(path, ids):
    h = np.zeros(256, dtype="<i4")
    h[0], h[1], h[2] = 20240520, 1, len(ids)
    with open(path, "wb") as f:
        f.write(h.tobytes() + ids.astype("<u2").tobytes())


def write_megatron(prefix, ids, code):
    dt = {8: "<u2", 4: "<i4", 3: "<i2", 1: "u1", 5: "<i8"}[code]
    n = len(ids)
    cuts = [0, n // 3, 2 * n // 3, n]
    sizes = np.array([cuts[i + 1] - cuts[i] for i in range(3)], dtype="<i4")
    item = np.dtype(dt).itemsize
    pointers = np.array([c * item for c in cuts[:3]], dtype="<i8")
    docs = np.array([0, 1, 2, 3], dtype="<i8")
    with open(prefix + ".bin", "wb") as f:
        f.write(ids.astype(dt).tobytes())
    with open(prefix + ".idx", "wb") as f:
        f.write(b"MMIDIDX\x00\x00" + struct.pack("<Q", 1) + struct.pack("<B", code))
        f.write(struct.pack("<Q", len(sizes)) + struct.pack("<Q", len(docs)))
        f.write(sizes.tobytes() + pointers.tobytes() + docs.tobytes())


def read_lmstok(path):
    with open(path, "rb") as f:
        b = f.read()
    assert b[:8] == b"LMSTOKEN", path
    version, width, n, crc, _ = struct.unpack("<IIQII", b[8:32])
    assert version == 1 and zlib.crc32(b[32:]) == crc
    return np.frombuffer(b[32:], dtype="<u2" if width == 2 else "<u4")[:n]


if __name__ == "__main__":
    if sys.argv[1] == "write":
        ids = np.array([int(t) for t in open(sys.argv[2]).read().split()], dtype=np.int64)
        out = sys.argv[3]
        write_lmstok(out + ".lmstok", ids, int(os.environ.get("WIDTH", "2")))
        write_llmc(out + ".llmc", ids)
        write_megatron(out + "_mg", ids, int(os.environ.get("MG_DTYPE", "8")))
    else:
        print(" ".join(str(int(x)) for x in read_lmstok(sys.argv[2])))
