#!/usr/bin/env bash
# Run by ctest around the suite (CTestCustom.cmake, written by
# tests/CMakeLists.txt): with --reset, empties the skip log before the tests;
# without, prints every skip the tests logged (tests/lib.sh's skip, check.h's
# test_skip) and what to install, after ctest's own summary.
# Usage: bash tests/skip_summary.sh [--reset] LOG
set -u
if [ "${1:-}" = --reset ]; then
    mkdir -p "$(dirname "$2")" && : >"$2"
    exit
fi
log=${1:?usage: skip_summary.sh [--reset] LOG}
[ -s "$log" ] || exit 0
echo
if [ "${CI:-}" = true ]; then
    echo "Skipped, each a failure in CI (CI=true); install these and re-run:"
else
    echo "Not tested on this machine (install these and re-run ctest to test them):"
fi
sort "$log" | sed 's/^/  /'
