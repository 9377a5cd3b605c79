#!/usr/bin/env python3
"""fp32 -> bf16 and fp32 -> fp16 as PyTorch converts them (round to nearest,
ties to even), for tests/fixtures/dtype_torch.txt: one line per value,
"F32BITS BF16BITS FP16BITS" in hex. Edge cases (ties, overflow to inf, the
fp16 subnormal range, signed zeros, inf, NaN) and random bit patterns.

    /usr/bin/python3 tests/ref/dtype_reference.py > tests/fixtures/dtype_torch.txt
"""
import struct

import numpy as np
import torch


def bits_to_f32(u):
    return struct.unpack("<f", struct.pack("<I", u))[0]


vals = []
# signed zeros, inf, a quiet NaN, max/min normals
vals += [0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0x7F7FFFFF, 0x00800000, 0x00000001]
# bf16 ties: low 16 bits exactly 0x8000, with even and odd kept parts
vals += [0x3F808000, 0x3F818000, 0x3F807FFF, 0x3F808001, 0xBF808000, 0x7F7F8000]
for x in [1.0, -1.0, 0.1, 1 / 3, 3.14159265, 65504.0, 65519.99, 65520.0, 65536.0, -70000.0, 2.0**-14,
          2.0**-24, 2.0**-25, 2.0**-25 * 1.0000001, 3 * 2.0**-25, 2.0**-26, 1.5 * 2.0**-24, 2.0**-14 - 2.0**-25,
          1e-8, 5.96e-8, 6.1e-5, 1024.5, 2049.0, 2051.0, 1 + 2.0**-11, 1 + 3 * 2.0**-11]:
    vals.append(struct.unpack("<I", struct.pack("<f", x))[0])
rng = np.random.default_rng(1234)
vals += [int(u) for u in rng.integers(0, 2**32, size=2000, dtype=np.uint64)]
# values spread over fp16's range (normal and subnormal) rather than fp32's
for e in range(-30, 17):
    for m in rng.random(8):
        x = (1 + float(m)) * 2.0**e * (1 if rng.random() < 0.5 else -1)
        vals.append(struct.unpack("<I", struct.pack("<f", x))[0])

f = torch.tensor(np.array(vals, dtype=np.uint32).view(np.float32))
bf = f.to(torch.bfloat16).view(torch.int16).numpy().astype(np.uint16)
hf = f.to(torch.float16).view(torch.int16).numpy().astype(np.uint16)
print("# fp32 bf16 fp16 (hex bits); written by tests/ref/dtype_reference.py with torch %s" % torch.__version__)
for u, b, h in zip(vals, bf, hf):
    x = bits_to_f32(u)
    if x != x:  # NaN: PyTorch keeps a NaN; only "is NaN" is compared
        print("%08x nan nan" % u)
    else:
        print("%08x %04x %04x" % (u, b, h))
