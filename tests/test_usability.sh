#!/usr/bin/env bash
# What a new user meets first (issue 17): eval/generate --init and --resume
# without --seq-len (batch capacity), "did you mean" for unknown flags, the
# presets' sizes in --help, the pytorch_model.bin hint, data prepare's token
# split of one file, a folder or a glob of shards as --data.
# Usage: bash tests/test_usability.sh /path/to/lmscale
set -u
NAME=test_usability
SRC=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=tests/lib.sh
source "$(dirname "$0")/lib.sh"
need_python numpy
RD="$PY $SRC/tests/ref/write_shards.py read"


$PY -c 'import random; r=random.Random(5); print("".join(r.choice("abcdefgh ijk\nlmnop,.") for _ in range(6000)), end="")' >t.txt

# ---- eval/generate --init and --resume with the default batch (8) and no --seq-len
run train "$BIN" train --data t.txt --steps 2 --batch-size 2 --seq-len 32 --save ck --save-model m.bin --quiet \
    --threads 1 && ok
run export "$BIN" export --hf hf --resume ck && ok
for src in "--load m.bin" "--init hf" "--resume ck"; do
    # shellcheck disable=SC2086
    if run "eval_${src%% *}" "$BIN" eval $src --data t.txt --threads 1; then
        grep -q '^loss=' "$T/eval_${src%% *}.out" && ok || bad "eval $src: no loss line"
    fi
    # shellcheck disable=SC2086
    run "gen_${src%% *}" "$BIN" generate $src --prompt ab --max-new-tokens 5 --threads 1 && ok
done
# the three give the same model, so the same loss
a=$(cat eval_--load.out) b=$(cat eval_--init.out) c=$(cat eval_--resume.out)
[ "$a" = "$b" ] && [ "$a" = "$c" ] && ok || bad "eval --load/--init/--resume differ: '$a' '$b' '$c'"

# ---- unknown flags: the closest known one
fails layers "did you mean '--num-layers'" -- "$BIN" train --layers 4 --data t.txt
fails num_layers "did you mean '--num-layers'" -- "$BIN" train --num_layers 4 --data t.txt
fails stepz "did you mean '--steps'" -- "$BIN" train --stepz 4 --data t.txt
fails hidden "did you mean '--hidden-size'" -- "$BIN" eval --hidden 64 --data t.txt
fails farfetched "unknown flag '--xyzzy'" -- "$BIN" train --xyzzy 4 --data t.txt
grep -q "did you mean" farfetched.err && bad "--xyzzy got a suggestion: $(cat farfetched.err)" || ok

# ---- presets and their sizes in --help; --model's help names the presets
for cmd in train eval generate; do
    "$BIN" $cmd --help >help.txt
    grep -qE '^  mini +L=6 +H=6 +C=384 +T=256 +V=257' help.txt && grep -qE '^  nano +L=2 +H=2 +C=64 +T=128' help.txt &&
        grep -qE '^  gpt2-124m \(gpt2\) +L=12 +H=12 +C=768 +T=1024 +V=50257 +124\.' help.txt && ok ||
        bad "$cmd --help lacks the preset sizes"
    grep -E '^  --model ' help.txt | grep -q "nano, micro, mini" && ok || bad "$cmd --help: --model's help"
done
# the sizes in --help are the sizes a run reports
"$BIN" train --model micro --data t.txt --steps 1 --batch-size 1 --seq-len 16 --threads 1 >micro.txt 2>&1
grep -q "L=4 H=4 C=128 maxT=256 V=257" micro.txt && ok || bad "micro preset: $(grep -m1 L= micro.txt)"

# ---- a folder with only pytorch_model.bin: the conversion hint
mkdir pt && cp hf/config.json pt/ && cp hf/model.safetensors pt/pytorch_model.bin
fails pytorch "Convert it once with: python3 -c" -- "$BIN" eval --init pt --data t.txt
grep -qF "save_pretrained('pt', safe_serialization=True)" pytorch.err && ok || bad "hint: $(cat pytorch.err)"

# ---- data prepare --val-fraction on one file: split by tokens
run prep_all "$BIN" data prepare --input t.txt --output-dir all && ok
run prep_split "$BIN" data prepare --input t.txt --val-fraction 0.1 --output-dir split && ok
all=$($RD all/train.bin) tr=$($RD split/train.bin) va=$($RD split/val.bin)
[ "$tr $va" = "$all" ] && ok || bad "train.bin + val.bin are not the unsplit ids"
nall=$(wc -w <<<"$all") nva=$(wc -w <<<"$va")
[ "$nva" -eq $(((nall + 5) / 10)) ] && ok || bad "val.bin has $nva of $nall ids, want 10%"
# several files: split by document, as before
cp t.txt u.txt
fails prep_docs "documents went to train.bin" -- "$BIN" data prepare --input t.txt u.txt --val-fraction 0.01 \
    --seed 1 --output-dir docs
fails prep_tiny "leaves val.bin empty" -- "$BIN" data prepare --input t.txt --val-fraction 0.00001 --output-dir tiny
[ ! -e tiny/train.bin ] && [ ! -e tiny/val.bin ] && ok || bad "a refused prepare left shards"

# ---- a folder or a glob of shards as --data
ntrain=$(wc -w <<<"$tr") nval=$(wc -w <<<"$va")
"$BIN" train --data split --steps 1 --batch-size 1 --seq-len 16 --threads 1 --val-fraction 0 >dir.txt 2>&1
grep -q "train: $ntrain tokens" dir.txt && ok || bad "--data DIR: $(grep -m1 -E 'train:|error' dir.txt) (train.bin has $ntrain)"
"$BIN" train --data split --val-data split --steps 1 --batch-size 1 --seq-len 16 --threads 1 >dirv.txt 2>&1
grep -q "train: $ntrain tokens | validation $nval" dirv.txt && ok || bad "--val-data DIR: $(grep -m1 -E 'train:|error' dirv.txt)"
run eval_dir "$BIN" eval --resume ck --data split --seq-len 16 --batch-size 1 --threads 1 && ok
run eval_val "$BIN" eval --resume ck --data split/val.bin --seq-len 16 --batch-size 1 --threads 1 && ok
cmp -s eval_dir.out eval_val.out && ok || bad "eval --data DIR is not its val.bin"
# llm.c-style names: *_train_* and *_val_* in one folder; a glob; an empty match
mkdir lc
head -c 3000 t.txt | "$BIN" tokenizer encode >ids1.txt
tail -c 2000 t.txt | "$BIN" tokenizer encode >ids2.txt
$PY "$SRC/tests/ref/write_shards.py" write ids1.txt lc/a >/dev/null && mv lc/a.llmc lc/corpus_train_000001.bin
$PY "$SRC/tests/ref/write_shards.py" write ids2.txt lc/b >/dev/null && mv lc/b.llmc lc/corpus_train_000002.bin
cp lc/corpus_train_000002.bin lc/corpus_val_000000.bin
rm -f lc/a.* lc/b.* lc/*_mg.*
n12=$(($(wc -w <ids1.txt) + $(wc -w <ids2.txt)))
for d in lc "lc/corpus_train_*.bin"; do
    "$BIN" train --data "$d" --steps 1 --batch-size 1 --seq-len 16 --threads 1 --val-fraction 0 >glob.txt 2>&1
    grep -q "train: $n12 tokens" glob.txt && ok || bad "--data '$d': $(grep -m1 -E 'train:|error' glob.txt) (want $n12)"
done
run ev_glob "$BIN" eval --model nano --data "lc/corpus_train_*.bin" --seq-len 16 --threads 1 && ok
run ev_list "$BIN" eval --model nano --data lc/corpus_train_000001.bin,lc/corpus_train_000002.bin --seq-len 16 \
    --threads 1 && ok
cmp -s ev_glob.out ev_list.out && ok || bad "a glob is not the comma list of its matches"
fails glob_none "matches no file" -- "$BIN" train --data "lc/nothing_*.bin" --steps 1
mkdir textonly && cp t.txt textonly/
fails dir_text "holds no training token shards" -- "$BIN" train --data textonly --steps 1
summary
