/* Minimal test helpers: CHECK keeps going and counts failures; main returns
 * non-zero if any failed. */
#ifndef LMS_TEST_CHECK_H
#define LMS_TEST_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int g_checks, g_failures;

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

static inline int test_summary(const char *name) {
    printf("%s: %d checks, %d failed\n", name, g_checks, g_failures);
    return g_failures ? 1 : 0;
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
