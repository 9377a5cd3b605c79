#!/usr/bin/python3
"""Reference GPT-2 encoder -> tests/fixtures/gpt2_tokenizer_vectors.txt.

This is the algorithm of OpenAI's gpt-2/src/encoder.py (bytes_to_unicode,
get_pairs, bpe() merging the lowest-ranked pair, the pre-tokenization regex
run with the `regex` module), written out here so the C tokenizer can be
checked against it id for id. Invalid UTF-8 is handled the way the C side
defines it: the bytes are decoded with errors="surrogateescape", so each
invalid byte becomes one lone surrogate (class "other" for the regex) and is
turned back into that same byte before BPE.

Usage (Debian's Python with python3-regex):
  /usr/bin/python3 tests/ref/gpt2_tokenizer_reference.py \
      ../shared/data/gpt2-vocab.json ../shared/data/gpt2-merges.txt \
      > tests/fixtures/gpt2_tokenizer_vectors.txt

Fixture format, one case per line: the input bytes in hex, a tab, the ids
separated by spaces. Lines starting with '#' are comments.
"""
import json
import random
import sys

import regex

from gpt2_bytes import PAT, byte_order_and_map


def bytes_to_unicode():
    return byte_order_and_map()[1]


def get_pairs(word):
    return set(zip(word, word[1:]))


class Encoder:
    def __init__(self, vocab_path, merges_path):
        with open(vocab_path, encoding="utf-8") as f:
            self.encoder = json.load(f)
        with open(merges_path, encoding="utf-8") as f:
            lines = f.read().split("\n")[1:-1]
        merges = [tuple(l.split()) for l in lines]
        self.bpe_ranks = dict(zip(merges, range(len(merges))))
        self.byte_encoder = bytes_to_unicode()
        self.cache = {}

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token)
        pairs = get_pairs(word)
        if not pairs:
            return [token]
        while True:
            bigram = min(pairs, key=lambda p: self.bpe_ranks.get(p, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new_word = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                    new_word.extend(word[i:j])
                    i = j
                except ValueError:
                    new_word.extend(word[i:])
                    break
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            if len(word) == 1:
                break
            pairs = get_pairs(word)
        self.cache[token] = list(word)
        return list(word)

    def encode(self, data: bytes):
        text = data.decode("utf-8", errors="surrogateescape")
        ids = []
        for tok in regex.findall(PAT, text):
            b = tok.encode("utf-8", errors="surrogateescape")
            tok = "".join(self.byte_encoder[x] for x in b)
            ids.extend(self.encoder[t] for t in self.bpe(tok))
        return ids


CASES = [
    b"Hello world",
    b"Hello, world! How are you today?",
    b"",
    b"a",
    b" ",
    b"I'm sure you've heard they'll say it's John's and we'd've; I 'm 's 're",
    b"CAN'T WON'T 'S 'T don't",
    b"   leading spaces and trailing   ",
    b"tabs\tand\nnewlines\n\n\nand\r\nCRLF \n  \n",
    b"multiple    spaces between     words",
    b"numbers 1234567890 3.14159 -42 1,000,000 2024-05-20",
    b"punctuation!!! ??? ... --- ((()))) {[<>]} @#$%^&*_+=|\\~`",
    b"<|endoftext|> is text here: <|endoftext|>",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00fcber Stra\u00dfe \u0141\u00f3d\u017a".encode(),
    "\u4f60\u597d\uff0c\u4e16\u754c\u3002\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 \ud55c\uad6d\uc5b4".encode(),
    "emoji \U0001F600\U0001F44D\U0001F3FD and \u2764\ufe0f flags \U0001F1EB\U0001F1F7".encode(),
    "\u0420\u0443\u0441\u0441\u043a\u0438\u0439 \u0442\u0435\u043a\u0441\u0442 \u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u05e2\u05d1\u05e8\u05d9\u05ea".encode(),
    "Unicode spaces:\u00a0nbsp\u2003em\u3000ideographic\u2028line\u0085nel".encode(),
    "digits \u0661\u0662\u0663 \u00bd \u2167 superscript\u00b2 \u2460".encode(),
    "combining e\u0301 a\u0308 \u0915\u094d\u0937 \u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22".encode(),
    b"invalid \xff\xfe bytes \x80 in \xc3 text \xe2\x82 and \xf0\x9f\x98 end\xc3",
    b"\xed\xa0\x80 surrogate \xc0\xaf overlong \xf4\x90\x80\x80 too big \xf8\x88\x80\x80\x80",
    b"\x00\x01\x02 control \x1b[31m escape \x7f del",
    b"a" * 300,
    b"supercalifragilisticexpialidocious " * 3 + b"pneumonoultramicroscopicsilicovolcanoconiosis",
    b"x" * 40 + b"y" * 40 + b"0123456789" * 20,
    b"https://example.com/path?query=1&b=2#frag user@example.org",
    b"    def f(x):\n        return x ** 2  # comment\n",
    b"'''quoted''' \"double\" 'single' ''",
    b"end with space ",
    b"end with newline\n",
]


def random_cases(n, seed):
    rng = random.Random(seed)
    alphabet = ["a", "b", "Z", " ", " ", "  ", "\n", "\t", "'", "'s", "'ll", "1", "42", ".", ",", "!",
                "\u00e9", "\u4e2d", "\U0001F600", "\u00a0", "\u0661", "\u2003"]
    out = []
    for _ in range(n):
        parts = [rng.choice(alphabet) for _ in range(rng.randint(1, 40))]
        b = "".join(parts).encode()
        if rng.random() < 0.3:  # splice in an invalid byte
            k = rng.randint(0, len(b))
            b = b[:k] + bytes([rng.choice([0x80, 0xbf, 0xc3, 0xe2, 0xf0, 0xff])]) + b[k:]
        out.append(b)
    return out


def long_words(seed):
    """Pre-tokens longer than the C encoder's cache limit (256 bytes), which
    take its heap-based merge path."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return [" " + "".join(rng.choice(letters) for _ in range(n)).encode().decode() for n in (257, 1000, 3000)] + \
           ["".join(rng.choice("thequickbrownfox") for _ in range(2000)), "\u00e9t\u00e9" * 200, "12345" * 300]


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: gpt2_tokenizer_reference.py VOCAB_JSON MERGES_TXT > vectors.txt")
    enc = Encoder(sys.argv[1], sys.argv[2])
    print("# GPT-2 tokenizer test vectors: hex bytes <TAB> ids. Generated by")
    print("# tests/ref/gpt2_tokenizer_reference.py (OpenAI's encoder.py algorithm, `regex` module,")
    print(f"# regex {regex.__version__}) from gpt2-vocab.json and gpt2-merges.txt. Do not edit.")
    for b in CASES + [w.encode() for w in long_words(99)] + random_cases(200, 1234):
        print(b.hex() + "\t" + " ".join(map(str, enc.encode(b))))


if __name__ == "__main__":
    main()
