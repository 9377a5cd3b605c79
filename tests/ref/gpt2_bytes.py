"""GPT-2's pre-tokenizer regex and byte-to-unicode map, shared by the
Python references (gpt2_tokenizer_reference.py, bpe_train_reference.py).
Written from GPT-2's published encoder algorithm; needs python3-regex."""

import regex

PAT = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def byte_order_and_map():
    """The 256 byte values in GPT-2's order, and byte -> printable character."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + \
        list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return bs, dict(zip(bs, [chr(c) for c in cs]))
