# Shared by the shell tests: source it after setting NAME. Resolves the binary
# from $1 (set NO_BIN=1 first when there is none yet), picks Debian's
# python3, makes a temporary directory $T (removed on exit) and cd's into it,
# and provides the pass/fail counters, the summary and THE way to skip.
#
# ---- Skipping: one mechanism for every test (shell here, C in check.h) ----
# A test that cannot check something because an optional dependency is
# missing says so with one line naming what to install:
#   skip WHAT HOW         part of the test was not checked; the test goes on
#                         e.g. skip "GPT-2 BPE parts" "$GPT2_HOW"
#   skip_test WHAT HOW    nothing more can be checked: ends the test now
#   need_python [MOD...]  skip_test unless $PY runs and imports MOD... (the
#                         line names the Debian package: python3-numpy ...).
#                         Sourcing lib.sh already does `need_python` (python3
#                         alone) unless NO_PYTHON=1 is set before it.
#   need_cmd CMD PKG      skip_test unless CMD is on PATH (apt-get install PKG)
#   python_missing MOD... prints the packages of the modules $PY lacks
#   have_gpt2             true when $GPT2_VOCAB and $GPT2_MERGES are readable
# The line is "SKIP: WHAT (HOW)". A test with a skip ends with exit 77 (ctest:
# "Skipped") unless a check failed (exit 1), and the ctest run ends with a
# list of every skip and what to install (tests/skip_summary.sh).
# In CI (CI=true) a skip is a failure: the line reads "FAIL: skipped in CI:
# ..." and the test exits 1. Never skip silently or with a bare echo.
TESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=/usr/bin/python3
[ -x $PY ] || PY=python3
# The GPT-2 tokenizer files: $LMS_GPT2_DIR, by default shared/data beside the
# repository (never copied into it).
GPT2_DIR=${LMS_GPT2_DIR:-$(cd "$TESTS_DIR/../.." && pwd)/shared/data}
GPT2_VOCAB=$GPT2_DIR/gpt2-vocab.json
GPT2_MERGES=$GPT2_DIR/gpt2-merges.txt
GPT2_HOW="save GPT-2's vocab.json and merges.txt (Hugging Face gpt2) as gpt2-vocab.json and gpt2-merges.txt in $GPT2_DIR, or set LMS_GPT2_DIR"

PASS=0
FAIL=0
SKIPPED=0
ok() { PASS=$((PASS + 1)); }
bad() {
    FAIL=$((FAIL + 1))
    echo "FAIL: $*"
}
skip() {
    local line="$1 (${2:-no reason given})"
    [ -n "${LMS_SKIP_LOG:-}" ] && echo "${LMS_TEST_NAME:-$NAME}: $line" >>"$LMS_SKIP_LOG"
    if [ "${CI:-}" = true ]; then
        bad "skipped in CI: $line"
    else
        SKIPPED=$((SKIPPED + 1))
        echo "SKIP: $line"
    fi
}
skip_test() {
    skip "$@"
    summary
    exit
}
python_missing() {
    local m miss=
    local have=1
    command -v "$PY" >/dev/null 2>&1 || { have=0; miss=python3; }
    for m in "$@"; do
        [ $have = 1 ] && "$PY" -c "import $m" 2>/dev/null && continue
        case $m in
        google.protobuf) miss="$miss python3-protobuf" ;;
        *) miss="$miss python3-${m%%.*}" ;;
        esac
    done
    echo $miss
}
need_python() {
    local miss
    miss=$(python_missing "$@")
    [ -z "$miss" ] || skip_test "$NAME needs $PY${1:+ with $*}" "apt-get install $miss"
}
need_cmd() {
    command -v "$1" >/dev/null 2>&1 || skip_test "$NAME needs $1" "apt-get install $2"
}
have_gpt2() { [ -r "$GPT2_VOCAB" ] && [ -r "$GPT2_MERGES" ]; }
# Prints the closing line ctest's log shows and sets the exit status:
# 1 if a check failed, else 77 if something was skipped, else 0.
summary() {
    local s=
    [ "$SKIPPED" -eq 0 ] || s=", $SKIPPED skipped"
    echo "$PASS passed, $FAIL failed$s"
    [ "$FAIL" -eq 0 ] || return 1
    [ "$SKIPPED" -eq 0 ] || return 77
}

# ---- the binary and the scratch directory
if [ "${NO_BIN:-0}" != 1 ]; then
    BIN=${1:?usage: $NAME /path/to/lmscale}
    case $BIN in /*) ;; *) BIN=$PWD/$BIN ;; esac
    [ -x "$BIN" ] || { echo "not executable: $BIN"; exit 2; }
fi
T=$(mktemp -d "/tmp/lms_$NAME.XXXXXX")
trap 'chmod -R u+rwx "$T" 2>/dev/null; rm -rf "$T"' EXIT
cd "$T" || exit 2
# nearly every shell test uses $PY for its checks: without python3 they are skipped
[ "${NO_PYTHON:-0}" = 1 ] || need_python

# run NAME cmd...: runs cmd with stdout/stderr in $T/NAME.out/.err; a
# non-zero exit is a failure (shown with its stderr).
run() {
    local name=$1
    shift
    "$@" >"$T/$name.out" 2>"$T/$name.err"
    local rc=$?
    if [ $rc -ne 0 ]; then
        bad "$name: exit code $rc: $*"
        grep -v OPENBLAS_CORETYPE "$T/$name.err" | head -5 | sed 's/^/  /'
        return 1
    fi
    return 0
}
# fails NAME TEXT... -- CMD...: CMD exits non-zero and its stderr holds every
# TEXT (fixed strings); output in $T/NAME.out/.err.
fails() {
    local name=$1 want=()
    shift
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do
        want+=("$1")
        shift
    done
    shift
    if "$@" >"$T/$name.out" 2>"$T/$name.err"; then
        bad "$name: accepted: $*"
        return 1
    fi
    local w
    for w in "${want[@]}"; do
        if ! grep -qF -- "$w" "$T/$name.err"; then
            bad "$name: message lacks '$w': $(head -3 "$T/$name.err")"
            return 1
        fi
    done
    ok
}
# expect_fail NAME REGEX cmd...: non-zero exit (not a signal) and stderr matching
# REGEX (extended); the output is in $T/NAME.out/.err
expect_fail() {
    local name=$1 re=$2
    shift 2
    "$@" >"$T/$name.out" 2>"$T/$name.err"
    local rc=$?
    if [ $rc -eq 0 ] || [ $rc -ge 128 ]; then bad "$name: exit code $rc, expected a clean failure: $*"; return; fi
    if grep -Eq -- "$re" "$T/$name.err"; then ok; else
        bad "$name: stderr does not match /$re/:"
        sed 's/^/  /' "$T/$name.err" | head -5
    fi
}
# compare_losses REF GOT LABEL [FIRST-LAST] [TOL]: GOT's --metrics losses
# equal REF's within relative TOL (1e-5); see tests/compare_losses.py.
compare_losses() { $PY "$TESTS_DIR/compare_losses.py" "$@"; }
# A bad configuration under `bash "$MPI" NP ARGS...`: every rank exits
# non-zero, the error is printed once (by rank 0) and matches REGEX, no step
# ran, and $T/never.jsonl (pass it as --metrics) was not written.
# Usage: expect_mpi_fail DESCRIPTION REGEX NP ARGS...
expect_mpi_fail() {
    local desc=$1 re=$2 np=$3
    shift 3
    if bash "$MPI" "$np" "$@" >"$T/f.out" 2>"$T/f.err"; then bad "$desc: succeeded"; return; fi
    grep -Eq -- "$re" "$T/f.err" && ok || bad "$desc: stderr does not match /$re/: $(head -3 "$T/f.err")"
    local n
    n=$(grep -c "lmscale train: error" "$T/f.err")
    [ "$n" -eq 1 ] && ok || bad "$desc: the error was printed $n times (want once, by rank 0)"
    grep -q "^step \|\] step " "$T/f.out" && bad "$desc: training started" || ok
    [ ! -e "$T/never.jsonl" ] && ok || bad "$desc: metrics file written"
}
