#!/usr/bin/env bash
# CI step (issue 18, docs/reliability.md): the test suite built with
# AddressSanitizer + UndefinedBehaviorSanitizer (float-cast-overflow
# included, every report fatal) in build-asan, then each libFuzzer harness
# for a fixed time (tests/fuzz/run_fuzzers.sh, LMS_FUZZ_SECONDS each,
# default 30). As in the main step, a skipped test is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
# Leak checking is on; tests/sanitize/lsan.supp suppresses only Open MPI's
# own runtime allocations (each entry says why).
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:allocator_may_return_null=1 # test_ops asks for 2^62 bytes to check the out-of-memory error
export LSAN_OPTIONS=suppressions=$PWD/tests/sanitize/lsan.supp:print_suppressions=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# Ranks started by tests/mpirun.sh run without leak checking (Open MPI's
# allocations cannot be attributed); heap errors and UB stay fatal there.
# Every test runs. golden and estimate compare with numbers of the normal
# build (golden's bits, estimate's peak RSS); ctest tells them this build is
# instrumented (LMS_SANITIZED=1) and they say which tolerance they use.
t0=$(date +%s)
cmake -S . -B build-asan -DLMS_SANITIZE=ON >/dev/null
cmake --build build-asan -j2 >/dev/null
log=$(mktemp /tmp/lms-ci-asan.XXXXXX)
(cd build-asan && ctest --output-on-failure) 2>&1 | tee "$log"
if grep -q "The following tests did not run" "$log"; then
    echo ".ci/sanitize.sh: FAIL: tests did not run under the sanitizers" >&2
    exit 1
fi
rm -f "$log"
echo ".ci/sanitize.sh: sanitizer build and tests took $(($(date +%s) - t0)) s"
t1=$(date +%s)
bash tests/fuzz/run_fuzzers.sh build-fuzz "${LMS_FUZZ_SECONDS:-30}"
echo ".ci/sanitize.sh: fuzzing took $(($(date +%s) - t1)) s"
