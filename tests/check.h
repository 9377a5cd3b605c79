/* Minimal test helpers: CHECK keeps going and counts failures; main returns
 * test_summary(): 1 if a check failed, else 77 (ctest "Skipped") if
 * something was skipped, else 0.
 *
 * Skipping (the C side of tests/lib.sh's skip; read the comment there):
 *   test_skip("GPT-2 vectors", "put GPT-2's vocab.json ... at ...");
 * prints "SKIP: WHAT (HOW)" naming what to install, and the test goes on.
 * In CI (CI=true) it is a failure instead. Never skip with a bare printf. */
#ifndef LMS_TEST_CHECK_H
#define LMS_TEST_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_checks, g_failures, g_skips;

#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        g_checks++;                                                           \
        if (!(cond)) {                                                        \
            g_failures++;                                                     \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);   \
            fprintf(stderr, __VA_ARGS__);                                     \
            fputc('\n', stderr);                                              \
        }                                                                     \
    } while (0)

/* WHAT was not checked; HOW names the package or file that would let it run. */
#define test_skip(what, how) test_skip_at(__FILE__, what, how)
static inline void test_skip_at(const char *file, const char *what, const char *how) {
    const char *log = getenv("LMS_SKIP_LOG"), *ci = getenv("CI"), *name = getenv("LMS_TEST_NAME");
    if (log && *log) {
        FILE *f = fopen(log, "a");
        if (f) {
            fprintf(f, "%s: %s (%s)\n", name && *name ? name : file, what, how);
            fclose(f);
        }
    }
    if (ci && !strcmp(ci, "true")) {
        g_failures++;
        printf("FAIL: skipped in CI: %s (%s)\n", what, how);
    } else {
        g_skips++;
        printf("SKIP: %s (%s)\n", what, how);
    }
    fflush(stdout);
}

static inline int test_summary(const char *name) {
    if (g_skips)
        printf("%s: %d checks, %d failed, %d skipped\n", name, g_checks, g_failures, g_skips);
    else
        printf("%s: %d checks, %d failed\n", name, g_checks, g_failures);
    return g_failures ? 1 : g_skips ? 77 : 0;
}

/* max |a-b| / max(max|b|, floor) */
static inline double rel_err(const float *a, const float *b, size_t n, double floor_) {
    double md = 0, mb = floor_;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > md || d != d) md = d != d ? INFINITY : d;
        if (fabs(b[i]) > mb) mb = fabs(b[i]);
    }
    return md / mb;
}

#endif
