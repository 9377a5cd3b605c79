#!/usr/bin/env python3
"""Compares the losses of a run's --metrics JSONL with a reference run's.

    compare_losses.py REF GOT LABEL [FIRST-LAST] [TOL]

GOT must hold exactly steps FIRST..LAST (default: the steps of REF), and each
loss must be within relative TOL (default 1e-5) of REF's loss at that step.
Prints one line with the worst relative difference; exit status 0 when it
holds, 1 when not (missing steps count as a failure)."""
import json
import sys


def losses(path):
    try:
        return {r["step"]: r["loss"] for r in map(json.loads, open(path))}
    except (OSError, ValueError, KeyError) as e:
        sys.exit("  %s: %s" % (path, e))


ref, got, label = losses(sys.argv[1]), losses(sys.argv[2]), sys.argv[3]
if len(sys.argv) > 4 and sys.argv[4]:
    first, last = map(int, sys.argv[4].split("-"))
    want = list(range(first, last + 1))
else:
    want = sorted(ref)
tol = float(sys.argv[5]) if len(sys.argv) > 5 else 1e-5
if sorted(got) != want or any(s not in ref for s in want):
    print("  %s: steps %s, want %d..%d" % (label, sorted(got)[:3] + ["..."] + sorted(got)[-2:], want[0], want[-1]))
    sys.exit(1)
worst = max(abs(got[s] - ref[s]) / abs(ref[s]) for s in want)
print("  %s: steps %d-%d, worst relative loss difference %.2e" % (label, want[0], want[-1], worst))
sys.exit(0 if worst <= tol else 1)
