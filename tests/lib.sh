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
# compare_losses REF GOT LABEL [FIRST-LAST] [TOL]: GOT's --metrics losses
# equal REF's within relative TOL (1e-5); see tests/compare_losses.py.
compare_losses() { $PY "$TESTS_DIR/compare_losses.py" "$@"; }
# Prints the closing line ctest's log shows and sets the exit status.
summary() {
    echo "$PASS passed, $FAIL failed"
    [ "$FAIL" -eq 0 ]
}
