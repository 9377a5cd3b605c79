#!/usr/bin/python3
"""Naive reference for `lmscale tokenizer train`: the same BPE training rule
written the slow, obvious way, to check the C trainer merge for merge.

Rule: GPT-2 pre-tokenization (the `regex` module); each distinct pre-token
is a word weighted by its count; token ids 0..255 are the bytes in GPT-2's
bytes_to_unicode order, merge k makes id 256+k; at every step the adjacent
pair with the largest total count wins, ties going to the smallest
(left id, right id); all its occurrences are merged left to right. The
special token (if any) is cut out of the text first.

Usage: bpe_train_reference.py VOCAB_SIZE SPECIAL_OR_- FILE...   -> merges on stdout
in the merges.txt layout (with the "#version: 0.2" line).
"""
import collections
import sys

from gpt2_bytes import PAT, byte_order_and_map


def bytes_to_unicode():
    return byte_order_and_map()


def main():
    vocab_size, special, files = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    order, enc = bytes_to_unicode()
    byte_id = {b: i for i, b in enumerate(order)}
    counts = collections.Counter()
    for path in files:
        text = open(path, "rb").read().decode("utf-8", errors="surrogateescape")
        pieces = text.split(special) if special != "-" else [text]
        for piece in pieces:
            for tok in PAT.findall(piece):
                counts[tok.encode("utf-8", errors="surrogateescape")] += 1
    words = [([byte_id[b] for b in w], c) for w, c in counts.items()]
    tok_bytes = {i: bytes([b]) for i, b in enumerate(order)}
    target = vocab_size - (1 if special != "-" else 0)
    print("#version: 0.2")
    nid = 256
    while nid < target:
        pairs = collections.Counter()
        for syms, c in words:
            for p in zip(syms, syms[1:]):
                pairs[p] += c
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        a, b = best
        for k, (syms, c) in enumerate(words):
            out, i = [], 0
            while i < len(syms):
                if i + 1 < len(syms) and syms[i] == a and syms[i + 1] == b:
                    out.append(nid)
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            words[k] = (out, c)
        tok_bytes[nid] = tok_bytes[a] + tok_bytes[b]
        print("".join(enc[x] for x in tok_bytes[a]) + " " + "".join(enc[x] for x in tok_bytes[b]))
        nid += 1


if __name__ == "__main__":
    main()
