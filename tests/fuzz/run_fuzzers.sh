#!/usr/bin/env bash
# Builds the libFuzzer harnesses (clang, ASan + UBSan with
# float-cast-overflow, coverage) into BUILD_DIR and runs each for SECONDS
# on a copy of its committed seed corpus (tests/fuzz/corpus/NAME), so the
# repository is not written to. Fails on the first crash, leak, sanitizer
# report or input slower than 10 s; the input that did it is kept as
# BUILD_DIR/fuzz-artifacts/NAME-crash-* (reproduce: BUILD_DIR/tests/fuzz/fuzz_NAME FILE).
# Usage: bash tests/fuzz/run_fuzzers.sh [BUILD_DIR [SECONDS [NAME...]]]
#   (defaults build-fuzz, 30, all five). docs/reliability.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${1:-build-fuzz}
SECONDS_EACH=${2:-30}
shift $(($# > 2 ? 2 : $#))
NAMES=("$@")
[ ${#NAMES[@]} -gt 0 ] || NAMES=(json ckpt safetensors shards bpe)
command -v clang >/dev/null || { echo "run_fuzzers: needs clang and libclang-rt-14-dev (apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }
# no MPI, OpenMP or BLAS: the readers do not use them, and the harnesses stay fast and self-contained
CC=clang cmake -S . -B "$B" -DLMS_FUZZ=ON -DLMS_WITH_MPI=OFF -DLMS_WITH_OPENMP=OFF -DLMS_WITH_BLAS=OFF \
    -DLMS_NATIVE=OFF >/dev/null
cmake --build "$B" -j2 --target fuzz_json fuzz_ckpt fuzz_safetensors fuzz_shards fuzz_bpe >/dev/null
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
mkdir -p "$B/fuzz-artifacts"
status=0
for n in "${NAMES[@]}"; do
    work=$(mktemp -d "/tmp/lms-fuzz-$n.XXXXXX")
    log="$B/fuzz-artifacts/$n.log"
    # -timeout: one input slower than 10 s is a hang; -rss_limit_mb: memory blow-ups fail too
    if "$B/tests/fuzz/fuzz_$n" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$B/fuzz-artifacts/$n-" "$work" "tests/fuzz/corpus/$n" >"$log" 2>&1; then
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo '?')
        echo "fuzz_$n: ${SECONDS_EACH} s, $runs inputs, coverage $cov edges, 0 crashes"
    else
        echo "fuzz_$n: FAILED (see $log):" >&2
        grep -E "ERROR|runtime error|SUMMARY|Test unit written" "$log" | head -8 >&2
        status=1
    fi
    rm -rf "$work"
done
exit $status
