# Shared by the shell tests: source it after setting NAME. Resolves the binary
# from $1, picks Debian's python3, makes a temporary directory $T (removed on
# exit) and cd's into it, and provides the pass/fail counters and summary.
TESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BIN=${1:?usage: $NAME /path/to/lmscale}
case $BIN in /*) ;; *) BIN=$PWD/$BIN ;; esac
[ -x "$BIN" ] || { echo "not executable: $BIN"; exit 2; }
PY=/usr/bin/python3
[ -x $PY ] || PY=python3

T=$(mktemp -d "/tmp/lms_$NAME.XXXXXX")
trap 'chmod -R u+rwx "$T" 2>/dev/null; rm -rf "$T"' EXIT
cd "$T" || exit 2

PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); }
bad() {
    FAIL=$((FAIL + 1))
    echo "FAIL: $*"
}
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
# Prints the closing line ctest's log shows and sets the exit status.
summary() {
    echo "$PASS passed, $FAIL failed"
    [ "$FAIL" -eq 0 ]
}
