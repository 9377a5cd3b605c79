#!/usr/bin/env bash
# A ctest that only says what could not be tested (e.g. no MPI at configure
# time): prints tests/lib.sh's SKIP line and exits 77 (a failure in CI).
# Usage: bash tests/skipped.sh NAME "WHAT was not tested" "HOW to get it"
set -u
NAME=${1:?usage: skipped.sh NAME WHAT HOW}
NO_BIN=1
NO_PYTHON=1
# shellcheck source=tests/lib.sh
source "$(dirname "$0")/lib.sh"
skip_test "${2:?}" "${3:?}"
