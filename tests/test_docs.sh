#!/usr/bin/env bash
# Every command in README.md, docs/*.md and examples/*/README.md runs as
# written (issue 17, item 1). tests/docs_commands.py lists them; each is run
# with the tiny sizes it documents (a nano model, a few steps: the docs say
# their sizes are examples), in one directory per document, in order, on
# generated data, one OpenMP thread a process. mpirun lines run under tests/mpirun.sh (skipped without
# mpirun), lines needing GPT-2's files are skipped without them; usage lines
# with placeholders are checked against --help; sbatch lines against their
# script; CMake lines are configured (not built). A self-check first makes
# sure a broken command and an unknown flag in a synopsis do fail.
# Usage: bash tests/test_docs.sh /path/to/lmscale
set -u
NAME=test_docs
SRC=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=tests/lib.sh
source "$(dirname "$0")/lib.sh"
LIST="$PY $SRC/tests/docs_commands.py"
SHAKES=$GPT2_DIR/tinyshakespeare.txt

# ---- the data the documents use, generated once
mkdir data
if [ -r "$SHAKES" ]; then head -c 60000 "$SHAKES" >data/input.txt; else
    $PY -c 'import random; r=random.Random(1); print("".join(r.choice("abcdefghij klmno\n") for _ in range(60000)))' \
        >data/input.txt
fi
head -c 8000 data/input.txt >data/test.txt
head -c 20000 data/input.txt >data/a.txt
tail -c 20000 data/input.txt >data/b.txt
cp data/input.txt data/t.txt
$PY - <<'EOF'
import json, random
r = random.Random(2)
w = "the of and to in a is that for it as with was on be by".split()
for name, n in (("data/docs.jsonl", 2000), ("data/corpus.jsonl", 4000)):
    with open(name, "w") as f:
        for i in range(n):
            f.write(json.dumps({"text": " ".join(r.choice(w) for _ in range(r.randint(5, 40)))}) + "\n")
EOF
# metrics files for the plot examples
"$BIN" train --data data/t.txt --steps 3 --batch-size 2 --seq-len 16 --eval-interval 2 --quiet --threads 1 \
    --metrics data/run0.jsonl >/dev/null 2>&1
for f in run other a b; do cp data/run0.jsonl data/$f.jsonl; done
if have_gpt2; then ln -s "$GPT2_VOCAB" data/gpt2-vocab.json && ln -s "$GPT2_MERGES" data/gpt2-merges.txt; fi
mkdir -p bin
ln -s "$BIN" bin/lmscale

# needs_gpt2 CMD: the command reads GPT-2's files or what a GPT-2 command made
needs_gpt2() { grep -qE 'gpt2-vocab|gpt2-merges|shards/|m\.bin' <<<"$1"; }

# synopsis_ok CMD: its subcommands exist and every --flag is in their --help
synopsis_ok() {
    local cmd=$1 ws w sub subs flags help=0
    read -ra ws <<<"${cmd//[\[\]]/ }"
    # skip the launcher (mpirun -np 4, srun -n 4) up to the lmscale binary
    while [ ${#ws[@]} -gt 0 ] && [[ ${ws[0]} != *lmscale ]]; do ws=("${ws[@]:1}"); done
    ws=("${ws[@]:1}")
    sub=${ws[0]}
    case $sub in tokenizer | data | bench) sub="$sub ${ws[1]}" ;; esac
    IFS='|' read -ra subs <<<"$sub"
    flags=$(printf '%s\n' "${ws[@]}" | grep -oE '^--[a-z][a-z0-9-]*' | sort -u)
    for s in "${subs[@]}"; do
        # shellcheck disable=SC2086
        "$BIN" $s --help >help.txt 2>&1 || { echo "  no command 'lmscale $s'"; return 1; }
        for w in $flags; do
            grep -qE "^  $w( |$)" help.txt || { echo "  'lmscale $s' has no flag $w"; return 1; }
        done
    done
    return 0
}

# sbatch_ok CMD: the script exists, parses, and reads each VAR= given
sbatch_ok() {
    local cmd=$1 script v
    script=$(grep -oE '[^ ]+\.sbatch' <<<"$cmd")
    [ -f "$SRC/$script" ] || { echo "  no script $script"; return 1; }
    bash -n "$SRC/$script" || return 1
    for v in $(grep -oE '(^| )[A-Z_]+=' <<<"$cmd" | tr -d ' ='); do
        grep -qE "\\\$\{?$v\b" "$SRC/$script" || { echo "  $script does not read \$$v"; return 1; }
    done
    return 0
}

# check_docs ROOT: runs every command of ROOT's documents
check_docs() {
    local root=$1 kind where cmd run dir n=0
    local -A dirs=()
    $LIST "$root" >cmds.tsv || { bad "docs_commands.py failed on $root"; return; }
    while IFS=$'\t' read -r kind where cmd run; do
        n=$((n + 1))
        local doc=${where%%:*}
        dir=${dirs[$doc]:-}
        if [ -z "$dir" ]; then
            dir=$(mktemp -d "$T/w.XXXXXX")
            cp -P "$T"/data/* "$dir"/ && mkdir "$dir/build" && ln -s "$BIN" "$dir/build/lmscale"
            dirs[$doc]=$dir
        fi
        case $kind in
        run | mpi)
            if needs_gpt2 "$cmd" && ! have_gpt2; then
                skip "$where: $cmd" "$GPT2_HOW"
                continue
            fi
            if [ "$kind" = mpi ] && ! command -v mpirun >/dev/null 2>&1; then
                skip "$where: $cmd" "apt-get install openmpi-bin libopenmpi-dev"
                continue
            fi
            local pre=
            [ "$kind" = mpi ] && pre="OMP_NUM_THREADS=1 bash $SRC/tests/mpirun.sh "
            local t0=$SECONDS
            # one thread a process: on a shared machine, spinning OpenMP threads are slow
            if (cd "$dir" && PATH=$T/bin:$PATH OMP_NUM_THREADS=1 timeout 300 bash -c "$pre$run" </dev/null \
                >"$T/last.out" 2>"$T/last.err"); then
                ok
                echo "ran ($where, $((SECONDS - t0)) s): $run"
            else
                bad "$where: '$cmd' (run as '$run') failed: $(grep -v OPENBLAS "$T/last.err" | tail -3)"
            fi
            ;;
        synopsis)
            if synopsis_ok "$cmd" >"$T/syn.txt"; then ok; else bad "$where: usage line '$cmd': $(cat "$T/syn.txt")"; fi
            ;;
        sbatch)
            if sbatch_ok "$cmd" >"$T/sb.txt" 2>&1; then ok; else bad "$where: '$cmd': $(cat "$T/sb.txt")"; fi
            ;;
        cmake)
            local mpicc
            mpicc=$(grep -oE 'MPI_C_COMPILER=[^ ]+' <<<"$cmd" | cut -d= -f2)
            if [ -n "$mpicc" ] && [ ! -x "$mpicc" ]; then
                skip "$where: $cmd" "apt-get install libmpich-dev (for $mpicc)"
                continue
            fi
            local args
            args=$(sed -E "s# -S \\.# -S $root#; s# -B ([^ ]+)# -B $T/cmake-$n#" <<<"$run")
            if (cd "$dir" && timeout 300 bash -c "$args" </dev/null >"$T/last.out" 2>&1); then ok; else
                bad "$where: '$cmd' does not configure: $(tail -3 "$T/last.out")"
            fi
            ;;
        other) echo "not run ($where): $cmd" ;;
        esac
    done <cmds.tsv
    [ "$n" -gt 0 ] || bad "no commands found in $root"
}

# ---- self-check: a broken command and a wrong flag in a usage line fail
mkdir fake
printf '# x\n\n```sh\n./build/lmscale train --data input.txt --stepz 3   # broken\n```\n\n    lmscale eval --data FILE [--no-such-flag N]\n\n```sh\n./build/lmscale eval --model nano --data test.txt\n```\n' \
    >fake/README.md
before_fail=$FAIL before_pass=$PASS
check_docs "$T/fake" >selfcheck.txt 2>&1
if [ $((FAIL - before_fail)) -eq 2 ] && [ $((PASS - before_pass)) -eq 1 ]; then
    FAIL=$before_fail PASS=$before_pass
    ok
else
    FAIL=$before_fail PASS=$before_pass
    bad "self-check: want 2 failures and 1 pass on a fake README: $(cat selfcheck.txt)"
fi

# ---- the real documents
check_docs "$SRC"
summary
