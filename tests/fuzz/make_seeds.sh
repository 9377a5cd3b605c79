#!/usr/bin/env bash
# Regenerates the committed seed corpora tests/fuzz/corpus/NAME/ with
# lmscale's own writers (tests/fuzz/make_seeds.c; small files of a tiny
# model). Usage: bash tests/fuzz/make_seeds.sh [BUILD_DIR] (default build-fuzz)
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${1:-build-fuzz}
CC=clang cmake -S . -B "$B" -DLMS_FUZZ=ON -DLMS_WITH_MPI=OFF -DLMS_WITH_OPENMP=OFF -DLMS_WITH_BLAS=OFF \
    -DLMS_NATIVE=OFF >/dev/null
cmake --build "$B" -j2 --target make_seeds >/dev/null
rm -rf tests/fuzz/corpus
"$B/tests/fuzz/make_seeds" tests/fuzz/corpus
find tests/fuzz/corpus -type f | sort
