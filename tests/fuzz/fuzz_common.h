/* Shared by the libFuzzer harnesses (tests/fuzz, docs/reliability.md): a
 * private scratch directory per fuzzing process, files written into it, and
 * the split of one input into two files (a 4-byte little-endian length of
 * the first part, then both parts). */
#ifndef LMS_FUZZ_COMMON_H
#define LMS_FUZZ_COMMON_H

#define _POSIX_C_SOURCE 200809L
#include "lmscale/core.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fz_dir[256];

/* the scratch directory (made on first use, removed at exit) */
static inline void fz_cleanup(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fz_dir);
    if (system(cmd) != 0) fprintf(stderr, "fuzz: cannot remove %s\n", fz_dir);
}

static inline const char *fz_scratch(void) {
    if (!fz_dir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(fz_dir, sizeof fz_dir, "%s/lms_fuzz.XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(fz_dir)) abort();
        atexit(fz_cleanup);
    }
    return fz_dir;
}

/* dir/name := data (n bytes); returns the path (static buffer per slot) */
static inline const char *fz_write(int slot, const char *name, const void *data, size_t n) {
    static char paths[4][512];
    snprintf(paths[slot], sizeof paths[slot], "%s/%s", fz_scratch(), name);
    FILE *f = fopen(paths[slot], "wb");
    if (!f) abort();
    if (n && fwrite(data, 1, n, f) != n) abort();
    fclose(f);
    return paths[slot];
}

/* input = u32 length L, L bytes (a), the rest (b); 0 when too short */
static inline int fz_split(const uint8_t *d, size_t n, const uint8_t **a, size_t *na, const uint8_t **b, size_t *nb) {
    if (n < 4) return 0;
    uint32_t l = (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24;
    if (l > n - 4) l = (uint32_t)(n - 4);
    *a = d + 4;
    *na = l;
    *b = d + 4 + l;
    *nb = n - 4 - l;
    return 1;
}

#endif
