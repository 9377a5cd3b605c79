#!/usr/bin/env bash
# Hostile files and directories, end to end through the binary (issue 18):
# crafted checkpoint indexes (the slice-count heap overflow, out-of-range and
# fractional numbers, duplicate keys), symlinks inside a --save directory,
# --keep-last next to another run's checkpoints, a diverging run, FIFOs where
# files are expected, crafted safetensors/config.json, `export --hf` on a
# full disk (ulimit -f), and kill -9 during saves and pruning.
# Every hostile input must end in a clean error: a message naming the file
# and the fix, a non-zero exit that is not a signal, within the time limit,
# nothing written or deleted outside the directory it was given, nothing
# lost. The closing table (inputs, errors, crashes, hangs) is the one
# docs/reliability.md quotes. Usage: bash tests/test_hostile.sh /path/to/lmscale
set -u

NAME=test_hostile
MPI=$(cd "$(dirname "$0")" && pwd)/mpirun.sh # before lib.sh changes directory
# shellcheck source=tests/lib.sh
source "$(dirname "$0")/lib.sh"
need_python
LIMIT=${LMS_HOSTILE_TIMEOUT:-30}
INPUTS=0 ERRORS=0 CRASHES=0 HANGS=0 ACCEPTED=0

# probe LABEL REGEX cmd...: a hostile input; it must fail cleanly, stderr
# matching REGEX
probe() {
    local label=$1 re=$2
    shift 2
    INPUTS=$((INPUTS + 1))
    timeout -k 5 "$LIMIT" "$@" >"$T/$label.out" 2>"$T/$label.err"
    local rc=$?
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        HANGS=$((HANGS + 1))
        bad "$label: hung (killed after ${LIMIT} s): $*"
    elif [ $rc -ge 128 ] || grep -q "Sanitizer\|runtime error" "$T/$label.err"; then
        CRASHES=$((CRASHES + 1))
        bad "$label: crashed (exit $rc): $*"
        head -5 "$T/$label.err" | sed 's/^/  /'
    elif [ $rc -eq 0 ]; then
        ACCEPTED=$((ACCEPTED + 1))
        bad "$label: accepted (exit 0): $*"
    else
        ERRORS=$((ERRORS + 1))
        if grep -Eq -- "$re" "$T/$label.err"; then ok; else
            bad "$label: stderr does not match /$re/:"
            head -3 "$T/$label.err" | sed 's/^/  /'
        fi
    fi
}
# tree DIR: a listing with checksums, to show nothing changed
tree() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 -r md5sum; find . | sort); }

DATA=$T/data.txt
for _ in $(seq 1 40); do printf 'one two three four five.\nthe cat sat on the mat.\n'; done >"$DATA"
TR=("$BIN" train --model nano --data "$DATA" --batch-size 2 --seq-len 16 --peak-tflops 1 --eval-interval 0
    --quiet --threads 1)
run base "${TR[@]}" --steps 2 --save "$T/ck" || { summary; exit 1; }
GOOD=$T/ck/step-00000002

# ---- crafted index.json (copies of a good checkpoint, one field changed)
# craft NAME PYTHON-EXPR-ON-j: writes $T/bad/NAME/step-00000002
craft() {
    local name=$1 expr=$2
    rm -rf "$T/bad/$name" && mkdir -p "$T/bad/$name" && cp -r "$GOOD" "$T/bad/$name/" &&
        $PY - "$T/bad/$name/step-00000002/index.json" "$expr" <<'EOF'
import json, sys
p, expr = sys.argv[1], sys.argv[2]
j = json.load(open(p))
j0 = json.dumps(j)
# the last large parameter: an overflowing read runs past the end of the buffer
# (version 2: a slice is a chunk, offsets/sizes per dimension; cnt() is its elements)
def cnt(s):
    n = 1
    for d in s["sizes"]:
        n *= d
    return n
t = max((t for t in j["tensors"] if t["name"].startswith("model.") and cnt(t["slices"][0]) > 2048),
        key=lambda t: t["slices"][0]["offset"])
s = t["slices"][0]
row = cnt(s) // s["sizes"][0]  # elements per index of dimension 0
rest = s["sizes"][1:]
zeros = [0] * len(rest)
def crc(s, n):  # CRC-32 of the first n floats of slice s, so that the slice passes its check
    import os, zlib
    with open(os.path.join(os.path.dirname(p), s["file"]), "rb") as f:
        f.seek(s["offset"])
        return zlib.crc32(f.read(4 * n))
exec(expr)
assert (j if isinstance(j, str) else json.dumps(j)) != j0, "nothing changed: " + expr
open(p, "w").write(j if isinstance(j, str) else json.dumps(j))
EOF
}
# the heap overflow (issue 18's, in version-2 chunks): chunks {rows 0..n-1} and
# {from row n-1, 2^64-2048 rows}, whose end wraps past 2^64 (version 1's
# start/count form of the same attack: tests/test_checkpoint.c, on the v1 fixture)
craft overflow 'n = s["sizes"][0]
t["slices"] = [dict(s, sizes=[n - 1] + rest, crc32=crc(s, (n - 1) * row)), dict(s, offsets=[n - 1] + zeros, sizes=[2**64 - 2048] + rest, offset=s["offset"] + 4 * (n - 1) * row)]'
craft count53 't["slices"] = [dict(s, sizes=[2**53] + rest)]'
craft step_neg 'j["state"]["step"] = -4'
craft step_big 'j["state"]["step"] = 1e10'
craft step_frac 'j["state"]["step"] = 1.5'
craft step_long 'j = json.dumps(j).replace("\"step\": 2,", "\"step\": 1" + "0" * 70 + ",", 1)'
craft offset_frac 't["slices"][0]["offset"] += 0.5'
craft shape_wrap 't["shape"] = [2**32, 2**32, 4]'
craft dup_key 'v = "\"version\": %d," % j["version"]; j = json.dumps(j).replace(v, v + " " + v, 1)'
craft dup_tensor 'j["tensors"].append(dict(t))'
craft file_up 't["slices"][0]["file"] = ".."'
# a run's token count beyond 2^64 - 1 is refused, not clamped to 2^64 - 1
craft run_u64 'j["run"]["train_tokens"] = "1" + "0" * 25'
for c in overflow count53 step_neg step_big step_frac step_long offset_frac shape_wrap dup_key dup_tensor file_up run_u64; do
    B=$T/bad/$c
    probe "eval_$c" "index.json|shard|checkpoint '" "$BIN" eval --resume "$B/step-00000002" --data "$DATA" --seq-len 16
    probe "export_$c" "index.json|shard|checkpoint '" "$BIN" export --resume "$B/step-00000002" --hf "$T/bad/hf_$c"
    [ ! -e "$T/bad/hf_$c/config.json" ] && ok || bad "export_$c: wrote $T/bad/hf_$c/config.json"
    # the parent directory: verified, skipped with a warning, nothing else valid
    probe "resume_$c" "no valid checkpoint" "${TR[@]}" --steps 3 --resume "$B"
done
grep -q "index.json.*slice" "$T/eval_overflow.err" && ok || bad "overflow: the error does not name index.json and the slice"

# ---- symlinks in a --save directory: nothing outside is deleted
V=$T/victim
mkdir -p "$V/sub" && echo precious >"$V/a" && echo precious >"$V/sub/b"
before=$(tree "$V")
S=$T/sym
mkdir -p "$S" && ln -s "$V" "$S/.tmp-step-00000002" && ln -s "$V" "$S/.trash-step-00000001"
run sym "${TR[@]}" --steps 3 --save "$S" --save-every 1 --keep-last 1
[ "$(tree "$V")" = "$before" ] && ok || bad "symlinks: files outside the --save directory were deleted"
[ -d "$S/step-00000003" ] && [ ! -e "$S/step-00000002" ] && [ ! -e "$S/.tmp-step-00000002" ] &&
    [ ! -e "$S/.trash-step-00000001" ] && ok || bad "symlinks: wrong entries left: $(ls -a "$S" | tr '\n' ' ')"
# a step-* symlink is another run's checkpoint: refused, then removed by --overwrite (the link, not its target)
ln -s "$V" "$S/step-00000000"
probe sym_other "another run" "${TR[@]}" --steps 3 --save "$S"
run sym_over "${TR[@]}" --steps 3 --save "$S" --overwrite --save-every 1 --keep-last 1
[ "$(tree "$V")" = "$before" ] && [ ! -e "$S/step-00000000" ] && ok ||
    bad "symlinks: --overwrite deleted through step-00000000 or left it: $(ls -a "$S" | tr '\n' ' ')"

# ---- --keep-last beside another run's later checkpoints: refused, nothing lost
K=$T/keep
run keep_old "${TR[@]}" --steps 10 --save "$K"
before=$(tree "$K")
probe keep_new "another run" "${TR[@]}" --steps 4 --save "$K" --save-every 1 --keep-last 2
[ "$(tree "$K")" = "$before" ] && ok || bad "keep-last: the other run's checkpoints changed"

# ---- a diverging run: no non-finite checkpoint, the finite ones kept
D=$T/div
probe diverge "became (infinite|NaN) at step.*lower --lr" "${TR[@]}" --steps 30 --lr 1e3 --grad-clip 0 \
    --save "$D" --save-every 1 --keep-last 3
n=0
for c in "$D"/step-*; do
    [ -d "$c" ] || continue
    n=$((n + 1))
    run "div_eval_$(basename "$c")" "$BIN" eval --resume "$c" --data "$DATA" --seq-len 16 &&
        grep -Eq "loss=[0-9]" "$T/div_eval_$(basename "$c").out" && ok || bad "diverge: $c does not evaluate to a finite loss"
done
[ $n -ge 1 ] && ok || bad "diverge: no checkpoint kept (the finite ones were pruned)"

# the same under ZeRO-1 on 2 ranks (every rank checks the shard it writes)
if ldd "$BIN" 2>/dev/null | grep -q libmpi; then
    DZ=$T/divz
    probe diverge_zero "became (infinite|NaN) at step.*lower --lr" env OMP_NUM_THREADS=1 bash "$MPI" 2 \
        "${TR[@]}" --steps 30 --lr 1e3 --grad-clip 0 --zero 1 --save "$DZ" --save-every 1 --keep-last 3
    for c in "$DZ"/step-*; do
        [ -d "$c" ] || continue
        run "divz_eval_$(basename "$c")" "$BIN" eval --resume "$c" --data "$DATA" --seq-len 16 &&
            grep -Eq "loss=[0-9]" "$T/divz_eval_$(basename "$c").out" && ok || bad "diverge_zero: $c is not finite"
    done
else
    skip "the ZeRO divergence case" "build lmscale with MPI (apt-get install libopenmpi-dev openmpi-bin)"
fi

# ---- FIFOs where a file is expected: refused at once, never waited on
mkfifo "$T/fifo"
probe fifo_data "fifo.* is not a regular file" "${TR[@]}" --steps 1 --data "$T/fifo"
probe fifo_load "fifo.* is not a regular file" "$BIN" eval --load "$T/fifo" --data "$DATA"
probe fifo_vocab "fifo.* is not a regular file" "${TR[@]}" --steps 1 --vocab "$T/fifo" --merges "$T/fifo"
F=$T/fifock
mkdir -p "$F" && cp -r "$GOOD" "$F/" && rm "$F/step-00000002/index.json" && mkfifo "$F/step-00000002/index.json"
probe fifo_index "index.json.* is not a regular file" "$BIN" eval --resume "$F/step-00000002" --data "$DATA"
rm -rf "$F" && mkdir -p "$F" && cp -r "$GOOD" "$F/" && rm "$F"/step-00000002/shard-* &&
    mkfifo "$F/step-00000002/shard-00000-of-00001.bin"
probe fifo_shard "shard.* is not a regular file" "$BIN" eval --resume "$F/step-00000002" --data "$DATA"

# ---- Hugging Face directories: crafted safetensors and config.json
run hf "$BIN" export --resume "$GOOD" --hf "$T/hf"
hfcraft() { # NAME PYTHON on h (header dict, ordered) / c (config text)
    rm -rf "$T/hf_$1" && cp -r "$T/hf" "$T/hf_$1" && $PY - "$T/hf_$1" "$2" <<'EOF'
import json, struct, sys
dirp, expr = sys.argv[1], sys.argv[2]
b = open(dirp + "/model.safetensors", "rb").read()
n = struct.unpack("<Q", b[:8])[0]
hdr, data = b[8:8 + n].decode(), b[8 + n:]
c = open(dirp + "/config.json").read()
hdr0, c0 = hdr, c
exec(expr)
assert hdr != hdr0 or c != c0, "nothing changed: " + expr
open(dirp + "/model.safetensors", "wb").write(struct.pack("<Q", len(hdr)) + hdr.encode() + data)
open(dirp + "/config.json", "w").write(c)
EOF
}
# a bogus first wte.weight: the first would win
hfcraft dup 'hdr = hdr.replace("{\"__metadata__\":{\"format\":\"pt\"}", "{\"__metadata__\":{\"format\":\"pt\"},\"wte.weight\":" + json.dumps(json.loads(hdr)["wpe.weight"]), 1)'
hfcraft obj 'h = json.loads(hdr); k = next(k for k in h if k != "__metadata__"); b0, b1 = h[k]["data_offsets"]
hdr = hdr.replace("\"data_offsets\":[%d,%d]" % (b0, b1), "\"data_offsets\":{\"b\":%d,\"e\":%d}" % (b0, b1), 1)'
hfcraft overlap 'h = json.loads(hdr); ks = [k for k in h if k != "__metadata__"]; b0, b1 = h[ks[1]]["data_offsets"]
hdr = hdr.replace("\"data_offsets\":[%d,%d]" % (b0, b1), "\"data_offsets\":[%d,%d]" % (b0 - 4, b1 - 4), 1)'
hfcraft cfg_dup 'c = c.replace("\"n_layer\":", "\"n_layer\": 1, \"n_layer\":", 1)'
hfcraft cfg_frac 'd = json.loads(c); d["n_embd"] += 0.5; c = json.dumps(d)'
probe hf_dup "model.safetensors.*appears twice" "$BIN" eval --init "$T/hf_dup" --data "$DATA" --seq-len 16
probe hf_obj "model.safetensors.*data_offsets" "$BIN" eval --init "$T/hf_obj" --data "$DATA" --seq-len 16
probe hf_overlap "model.safetensors.*overlap" "$BIN" eval --init "$T/hf_overlap" --data "$DATA" --seq-len 16
probe hf_cfg_dup "config.json.*appears twice" "$BIN" eval --init "$T/hf_cfg_dup" --data "$DATA" --seq-len 16
probe hf_cfg_frac "config.json.*n_embd" "$BIN" eval --init "$T/hf_cfg_frac" --data "$DATA" --seq-len 16
mkdir -p "$T/hf_fifo" && cp "$T/hf/config.json" "$T/hf_fifo/" && mkfifo "$T/hf_fifo/model.safetensors"
probe hf_fifo "model.safetensors.* is not a regular file" "$BIN" eval --init "$T/hf_fifo" --data "$DATA"

# ---- export --hf on a full disk (a file-size limit): no config.json without
# its weights; an earlier export in the same directory is left as it was
probe full_new "disk full|File too large|cannot write" bash -c "ulimit -f 20; trap '' XFSZ; exec \"\$@\"" _ \
    "$BIN" export --resume "$GOOD" --hf "$T/full"
[ ! -e "$T/full/config.json" ] && [ ! -e "$T/full/model.safetensors" ] && [ -z "$(ls -A "$T/full" 2>/dev/null)" ] &&
    ok || bad "full disk: left $(ls -A "$T/full" | tr '\n' ' ')"
before=$(tree "$T/hf")
probe full_over "disk full|File too large|cannot write" bash -c "ulimit -f 20; trap '' XFSZ; exec \"\$@\"" _ \
    "$BIN" export --resume "$GOOD" --hf "$T/hf"
[ "$(tree "$T/hf")" = "$before" ] && ok || bad "full disk: the earlier export was changed"

# ---- kill -9 during saves and pruning: every visible step-* stays loadable
P=$T/prune
for i in $(seq 1 8); do
    "${TR[@]}" --steps 40 --save "$P" --save-every 1 --keep-last 1 >/dev/null 2>&1 &
    pid=$!
    sleep "0.$((RANDOM % 9 + 1))"
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    for c in "$P"/step-*; do
        [ -d "$c" ] || continue
        "$BIN" eval --resume "$c" --data "$DATA" --seq-len 16 >/dev/null 2>"$T/kill.err" && ok ||
            bad "kill $i: visible $c does not load: $(head -1 "$T/kill.err")"
    done
done
run after_kills "${TR[@]}" --steps 41 --save "$P" --resume "$P" --keep-last 1
[ -z "$(find "$P" -maxdepth 1 -name '.t*' | head -1)" ] && ok || bad "kills: leftovers not swept: $(ls -a "$P" | tr '\n' ' ')"

echo "hostile inputs: $INPUTS | clean errors: $ERRORS | crashes: $CRASHES | hangs: $HANGS | accepted: $ACCEPTED"
summary
