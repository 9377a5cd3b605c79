#!/usr/bin/env bash
# What `train` reports (docs/formats.md "Metrics", docs/mfu.md):
#   - a --metrics write error (/dev/full; a full tmpfs when this test may
#     mount one) stops the run with an error naming the file, exit non-zero;
#   - a resumed run drops the rows after the step it resumes from (and a line
#     cut short by a kill), so every step appears once, with the uninterrupted
#     run's losses bit for bit; a new run starts the file afresh;
#   - the ETA counts to --stop-after;
#   - the MFU peak is measured once and cached under $XDG_CACHE_HOME, read
#     back by the next run, measured again when the cache is unreadable, and
#     a cache that cannot be written is a warning.
# Usage: bash tests/test_metrics.sh /path/to/lmscale
set -u
NAME=test_metrics
# shellcheck source=tests/lib.sh
source "$(dirname "$0")/lib.sh"
export OMP_NUM_THREADS=1 XDG_CACHE_HOME=$T/cache

for i in $(seq 1 600); do echo "line $i: pack my box with five dozen liquor jugs; $((i * 7919 % 1000))"; done >data.txt
COMMON=(train --data data.txt --model nano --seq-len 32 --batch-size 8 --lr 2e-3 --eval-interval 0 --threads 1
        --peak-tflops 1)

# ---- write errors ----
"$BIN" "${COMMON[@]}" --steps 3 --metrics /dev/full >full.out 2>&1
rc=$?
[ $rc -ne 0 ] && grep -q "cannot write --metrics file '/dev/full': No space left on device" full.out && ok ||
    bad "--metrics /dev/full: exit code $rc: $(tail -n 1 full.out)"
mkdir small
if mount -t tmpfs -o size=16k tmpfs small 2>/dev/null; then
    "$BIN" "${COMMON[@]}" --steps 2000 --quiet --metrics small/m.jsonl >tmpfs.out 2>&1
    rc=$?
    n=$(wc -l <small/m.jsonl)
    umount small
    [ $rc -ne 0 ] && grep -q "cannot write --metrics file 'small/m.jsonl': No space left on device" tmpfs.out && ok ||
        bad "--metrics on a full 16 KB tmpfs: exit code $rc after $n rows: $(tail -n 1 tmpfs.out)"
else
    # not a skip: /dev/full above is the full disk; a tmpfs is a second one where mounting is allowed
    echo "  note: cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN): the full disk is /dev/full only"
fi

# ---- resume: no step twice ----
run ref "$BIN" "${COMMON[@]}" --steps 20 --metrics ref.jsonl
run first "$BIN" "${COMMON[@]}" --steps 20 --save ck --save-every 5 --stop-after 12 --metrics m.jsonl
rm -rf ck/step-00000012            # as if killed after step 12, before its checkpoint
printf '{"step": 13, "loss": 4.' >>m.jsonl # and in the middle of writing row 13
if run resumed "$BIN" "${COMMON[@]}" --steps 20 --save ck --resume ck --metrics m.jsonl; then
    grep -q "metrics: m.jsonl keeps its 10 rows up to step 10 and drops 3 after it" resumed.out && ok ||
        bad "resume: no notice of the dropped rows: $(grep metrics resumed.out)"
    $PY - m.jsonl <<'EOF' && ok || bad "resume: the metrics file does not hold steps 1..20 once each"
import json, sys
steps = [json.loads(l)["step"] for l in open(sys.argv[1])]
sys.exit(0 if steps == list(range(1, 21)) else "  steps: %s" % steps)
EOF
    compare_losses ref.jsonl m.jsonl "stopped at 12, resumed from 10" 1-20 0 && ok ||
        bad "resume: losses differ from the uninterrupted run"
fi
if run fresh "$BIN" "${COMMON[@]}" --steps 4 --metrics m.jsonl; then
    [ "$(wc -l <m.jsonl)" -eq 4 ] && ok || bad "a new run appended to an old metrics file ($(wc -l <m.jsonl) rows, want 4)"
fi

# ---- ETA to --stop-after ----
if run eta "$BIN" "${COMMON[@]}" --steps 100000 --stop-after 3; then
    grep "^step     3/100000 " eta.out | grep -Eq "ETA 0s( \||$)" && ok ||
        bad "--stop-after 3: the ETA of step 3 counts to --steps: $(grep '^step     3/' eta.out)"
fi

# ---- the MFU peak cache ----
NOPEAK=(train --data data.txt --model nano --seq-len 32 --batch-size 8 --steps 2 --eval-interval 0 --threads 1)
if run peak1 "$BIN" "${NOPEAK[@]}"; then
    f=$(ls "$T"/cache/lmscale/peak-*.json 2>/dev/null | head -n 1)
    [ -n "$f" ] && grep -q "(measured now, cached in $f)" peak1.out && ok ||
        bad "first run: no 'measured now, cached in' for a new cache file: $(grep peak peak1.out)"
    if [ -n "$f" ]; then
        grep -q '"key": "[^"]* | 1 threads | BLAS [^"]* | backend cpu"' "$f" && ok || bad "cache file lacks its key: $(cat "$f")"
        # the next run reads it: a value no measurement gives
        $PY - "$f" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
j["peak_tflops"] = 12.5
json.dump(j, open(sys.argv[1], "w"))
EOF
        run peak2 "$BIN" "${NOPEAK[@]}" && grep -q "peak 12500.0 GFLOP/s (cached in $f)" peak2.out && ok ||
            bad "second run did not use the cached peak: $(grep peak peak2.out)"
        grep -q "of a 12500.0 GFLOP/s peak per rank: cached in $f)" peak2.out && ok ||
            bad "the done line does not say where the peak came from: $(grep done peak2.out)"
        echo "not json" >"$f"
        run peak3 "$BIN" "${NOPEAK[@]}" && grep -q "(measured now, cached in $f)" peak3.out && ok ||
            bad "an unreadable cache was not measured again: $(grep peak peak3.out)"
        grep -q '"peak_tflops"' "$f" && ok || bad "the unreadable cache was not rewritten"
    fi
    # another thread count is another machine setting: its own file
    run peak4 "$BIN" "${NOPEAK[@]}" --threads 2 &&
        [ "$(ls "$T"/cache/lmscale/peak-*.json | wc -l)" -eq 2 ] && ok || bad "--threads 2 did not get its own cache file"
fi
if XDG_CACHE_HOME=/dev/null/x run peak5 "$BIN" "${NOPEAK[@]}"; then
    grep -q "warning: cannot cache the measured peak" peak5.err && grep -q "(measured now, not cached)" peak5.out && ok ||
        bad "an unwritable cache directory: $(grep -h peak peak5.out peak5.err)"
fi
summary
