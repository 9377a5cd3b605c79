"""Checks that a PNG (as rsvg-convert renders lmscale's SVG plots) is not
empty and not blank: decodes it here (zlib, the five PNG row filters of the
PNG specification, 8-bit RGB/RGBA) and counts pixels that differ from the
background (the most common colour) and coloured pixels (the curves'
palette, not the black/grey of text, frames and grid).

    check_png.py FILE.png [--min-colored N]
"""
import struct
import sys
import zlib

import numpy as np


def decode(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        sys.exit("%s: not a PNG" % path)
    off, idat, w = 8, b"", None
    while off < len(data):
        (n,) = struct.unpack(">I", data[off:off + 4])
        kind, body = data[off + 4:off + 8], data[off + 8:off + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or ctype not in (2, 6) or interlace:
                sys.exit("%s: only 8-bit RGB/RGBA without interlace is decoded here" % path)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        off += 12 + n
    raw = zlib.decompress(idat)
    stride = w * bpp
    img = np.zeros((h, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int32)
    for y in range(h):
        f = raw[y * (stride + 1)]
        row = np.frombuffer(raw, dtype=np.uint8, count=stride, offset=y * (stride + 1) + 1).astype(np.int32)
        if f == 0:
            cur = row
        elif f == 2:
            cur = (row + prev) & 255
        elif f in (1, 3, 4):
            cur = np.zeros(stride, dtype=np.int32)
            for x in range(stride):
                a = cur[x - bpp] if x >= bpp else 0
                b = prev[x]
                c = prev[x - bpp] if x >= bpp else 0
                if f == 1:
                    p = a
                elif f == 3:
                    p = (a + b) // 2
                else:
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    p = a if pa <= pb and pa <= pc else b if pb <= pc else c
                cur[x] = (row[x] + p) & 255
        else:
            sys.exit("%s: bad filter type %d in row %d" % (path, f, y))
        img[y] = cur
        prev = cur
    return img.reshape(h, w, bpp)


def main():
    path = sys.argv[1]
    min_colored = int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[2] == "--min-colored" else 200
    img = decode(path)
    h, w, bpp = img.shape
    rgb = img[:, :, :3].astype(np.int32)
    if bpp == 4:  # composite over white
        a = img[:, :, 3:4].astype(np.int32)
        rgb = (rgb * a + 255 * (255 - a)) // 255
    flat = rgb.reshape(-1, 3)
    colours, counts = np.unique(flat, axis=0, return_counts=True)
    bg = colours[np.argmax(counts)]
    differ = int(np.any(flat != bg, axis=1).sum())
    spread = flat.max(axis=1) - flat.min(axis=1)
    colored = int((spread > 60).sum())
    print("  %s: %dx%d, background %s, %d pixels differ from it (%.1f%%), %d coloured"
          % (path.split("/")[-1], w, h, tuple(int(c) for c in bg), differ, 100.0 * differ / (w * h), colored))
    if w < 100 or h < 100:
        sys.exit("  image too small")
    if differ < 0.01 * w * h:
        sys.exit("  the image is (nearly) blank")
    if colored < min_colored:
        sys.exit("  fewer than %d coloured pixels: the curves are missing" % min_colored)


main()
