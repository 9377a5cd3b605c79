"""Lists every command line of README.md, docs/*.md and examples/*/README.md
for tests/test_docs.sh, one per line, tab-separated:

    KIND  FILE:LINE  COMMAND-AS-WRITTEN  COMMAND-TO-RUN

Commands are the lines of fenced (```) and indented code blocks whose first
word (after VAR=value assignments) is a program the docs tell users to run;
a line ending in a backslash continues on the next; "# comments" are cut;
`a && b` and `a | b` are separate commands. KIND:

  run       an lmscale command: run it (COMMAND-TO-RUN has the tiny sizes)
  mpi       mpirun/mpiexec -np N lmscale ...: run it under tests/mpirun.sh
  synopsis  a usage line with placeholders (FILE..., [--flag], a|b, ...):
            its subcommand and flags must exist in --help
  sbatch    an sbatch line: its script must exist and parse, its variables
            must be read by the script
  cmake     a CMake configure line: configure it (no build)
  other     build, test-suite and shell lines (cmake --build, ctest, tail,
            ldd): listed, not run

Tiny sizes (the docs say their sizes and step counts are examples): presets
become nano (gpt2-* keep the GPT-2 vocabulary), --steps 6 (demo 20),
--stop-after 3, --save-every 2, --batch-size 8, --micro-batch-size 2,
--seq-len 32, --eval-interval 2, --warmup-steps 1, --max-new-tokens 8,
tokenizer train --vocab-size 300, --max-bytes 64K, --test-problems 10
(estimate and plan, which only compute, keep the documented sizes);
train and demo without --steps get one, demo without --test-problems too; /shared/ paths become shared/.
Usage: docs_commands.py REPO_ROOT
"""
import glob
import os
import re
import shlex
import sys

PROGRAMS = {"lmscale", "./build/lmscale", "./build-mpich/lmscale", "mpirun", "mpiexec", "mpiexec.mpich",
            "srun", "sbatch", "cmake", "ctest", "tail", "ldd"}
TINY = {"--steps": "6", "--stop-after": "3", "--save-every": "2", "--batch-size": "8",
        "--micro-batch-size": "2", "--seq-len": "32", "--eval-interval": "2", "--warmup-steps": "1",
        "--max-new-tokens": "8", "--max-bytes": "64K", "--test-problems": "10"}


def blocks(path):
    """(line number, text) of the lines inside code blocks."""
    out, fenced, lines = [], False, open(path, encoding="utf-8").read().split("\n")
    for i, line in enumerate(lines, 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced or (line.startswith("    ") and line.strip() and not line.lstrip().startswith(("- ", "* ", "| "))):
            out.append((i, line))
    return out


def cut_comment(s):
    q = None
    for i, c in enumerate(s):
        if q:
            q = None if c == q else q
        elif c in "'\"":
            q = c
        elif c == "#" and (i == 0 or s[i - 1] in " \t"):
            return s[:i].rstrip()
    return s.rstrip()


def split_ops(s):
    """Pieces between && and | outside quotes and parentheses."""
    parts, q, cur, i = [], None, "", 0
    while i < len(s):
        c = s[i]
        if q:
            q = None if c == q else q
        elif c in "'\"":
            q = c
        elif s.startswith("&&", i) or (c == "|" and not s.startswith("||", i)):
            parts.append(cur)
            cur = ""
            i += 2 if c == "&" else 1
            continue
        cur += c
        i += 1
    parts.append(cur)
    return [p.strip().strip("()").strip() for p in parts if p.strip()]


def words(cmd):
    try:
        return shlex.split(cmd)
    except ValueError:
        return cmd.split()


def program(ws):
    k = 0
    while k < len(ws) and re.match(r"^[A-Z_][A-Z0-9_]*=", ws[k]):
        k += 1
    return k, (ws[k] if k < len(ws) else "")


LMSCALE = ("lmscale", "./build/lmscale", "./build-mpich/lmscale")
MPI = ("mpirun", "mpiexec", "mpiexec.mpich", "srun")
REDIRECT = {">", ">>", "<", "2>", "2>&1"}


def join(ws):
    return " ".join(w if w in REDIRECT else shlex.quote(w) for w in ws)


def is_synopsis(cmd):
    raw = cmd.replace("'<|endoftext|>'", "")
    for t in raw.split():
        if t == "..." or t.endswith("...") or t.startswith("[") or ("|" in t and not t.startswith("'")):
            return True
        if re.match(r"^[A-Z][A-Z_]*$", t) and t not in ("ROMEO:",):
            return True
        if "<" in t and ">" in t:
            return True
    return False


def tiny(ws):
    """The command with the tiny sizes (a list of words)."""
    out, i, sub = [], 0, " ".join(ws[1:3])
    if ws[1:2] in (["estimate"], ["plan"]):  # arithmetic only: run at the documented sizes
        return list(ws)
    while i < len(ws):
        w = ws[i]
        nxt = ws[i + 1] if i + 1 < len(ws) else None
        if w == "--model" and nxt:
            out += ["--model", "nano"] + (["--vocab-size", "50257"] if nxt.startswith("gpt2") else [])
            i += 2
            continue
        if w in TINY and nxt is not None:
            val = TINY[w]
            if w == "--steps" and "demo" in ws:
                val = "20"
            out += [w, val]
            i += 2
            continue
        if w == "--vocab-size" and sub.startswith("tokenizer train") and nxt:
            out += [w, "300"]
            i += 2
            continue
        out.append(w.replace("/shared/", "shared/") if w.startswith("/shared/") or "=/shared/" in w else w)
        if "=/shared/" in w:
            out[-1] = w.replace("=/shared/", "=shared/")
        i += 1
    if ("train" in ws[1:3] and "tokenizer" not in ws[1:3] or "demo" in ws[1:2]) and "--steps" not in ws:
        out += ["--steps", "20" if "demo" in ws[1:2] else "6"]
    if "demo" in ws[1:2] and "--test-problems" not in ws:
        out += ["--test-problems", "10"]
    return out


def classify(cmd):
    ws = words(cmd)
    k, prog = program(ws)
    if prog not in PROGRAMS:
        return None, None
    if prog not in LMSCALE + MPI:
        return ("cmake", cmd) if prog == "cmake" and "-S" in ws else \
            ("sbatch", cmd) if prog == "sbatch" else ("other", cmd)
    if is_synopsis(cmd):
        return "synopsis", cmd
    if prog in ("mpirun", "mpiexec", "mpiexec.mpich", "srun"):
        rest = ws[k:]
        # mpirun -np N BIN args
        if prog != "srun" and len(rest) > 3 and rest[1] in ("-np", "-n"):
            return "mpi", join([rest[2]] + tiny(rest[3:]))
        return "other", cmd
    if prog in ("lmscale", "./build/lmscale"):
        if len(ws) > k + 1 and ws[k + 1].endswith(":"):  # program output quoted in the docs ("lmscale x: error: ...")
            return None, None
        return "run", join(tiny(ws[k:]))
    return "other", cmd


def main():
    root = sys.argv[1]
    files = ["README.md"] + sorted(glob.glob("docs/*.md", root_dir=root)) + \
        sorted(glob.glob("examples/*/README.md", root_dir=root))
    for rel in files:
        lines = blocks(os.path.join(root, rel))
        j = 0
        while j < len(lines):
            no, text = lines[j]
            full = text.strip()
            while full.endswith("\\") and j + 1 < len(lines):
                j += 1
                full = full[:-1].rstrip() + " " + lines[j][1].strip()
            j += 1
            full = cut_comment(full)
            k, prog = program(words(full))
            pieces = [full] if prog in LMSCALE + MPI and is_synopsis(full) else split_ops(full)
            for cmd in pieces:
                kind, run = classify(cmd)
                if kind:
                    print(f"{kind}\t{rel}:{no}\t{cmd}\t{run}")


if __name__ == "__main__":
    main()
