/* The context, allocation and time. */
#include "lmscale/core.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef LMS_HAVE_OPENMP
#include <omp.h>
#endif

int lms_max_threads(void) {
#ifdef LMS_HAVE_OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

void lms_ctx_init(lms_ctx *ctx, uint64_t seed, int threads) {
    memset(ctx, 0, sizeof *ctx);
    ctx->rank = 0;
    ctx->world = 1;
    ctx->seed = seed;
#ifdef LMS_HAVE_OPENMP
    if (threads > 0) omp_set_num_threads(threads);
#endif
    ctx->threads = lms_max_threads();
    ctx->log.level = LMS_LOG_INFO;
    ctx->log.out = stdout;
}

void *lms_alloc(size_t bytes) {
    if (bytes == 0) bytes = 64;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, rounded);
    if (p) memset(p, 0, rounded);
    return p;
}

lms_status lms_alloc_checked(void **out, size_t bytes, const char *what) {
    *out = lms_alloc(bytes);
    if (!*out)
        return lms_errorf(LMS_ERR_OOM, "cannot allocate %.1f MiB for %s: reduce the model size, "
                          "batch size or sequence length", (double)bytes / 1048576.0, what);
    return LMS_OK;
}

void lms_free(void *p) { free(p); }

const char *lms_env(const char *name) {
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

double lms_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
