/* Which BLAS kernels are in use, and a warning when they are slower than
 * this CPU allows.
 *
 * OpenBLAS picks its kernels when it is loaded, from the CPU model or from
 * the OPENBLAS_CORETYPE environment variable. Some machine images set
 * OPENBLAS_CORETYPE=Haswell (AVX2) for every program; on a CPU with AVX-512
 * that halves sgemm speed (docs/benchmarks.md), so lmscale warns and names
 * the fix rather than silently running at half speed. lmscale never changes
 * the variable itself: an explicit setting is the user's choice. */
#include "lmscale/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#ifdef LMS_HAVE_OPENBLAS
char *openblas_get_corename(void);
#endif

const char *lms_blas_corename(void) {
#ifdef LMS_HAVE_OPENBLAS
    return openblas_get_corename();
#else
    return "none";
#endif
}

int lms_blas_advice(char *buf, size_t cap) {
#if defined(LMS_HAVE_OPENBLAS) && defined(__x86_64__)
    const char *forced = lms_env("OPENBLAS_CORETYPE"), *core = openblas_get_corename();
    if (!forced || !core) return 0;
    if (strcasecmp(core, "haswell") != 0 && strcasecmp(core, "zen") != 0 &&
        strcasecmp(core, "sandybridge") != 0)
        return 0;
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
          __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")))
        return 0;
    snprintf(buf, cap, "OPENBLAS_CORETYPE=%s makes OpenBLAS use its AVX2 kernels, but this CPU has "
             "AVX-512: matmuls run about 2x slower. Unset it (or set OPENBLAS_CORETYPE=SkylakeX) "
             "for full speed.", forced);
    return 1;
#else
    (void)buf;
    (void)cap;
    return 0;
#endif
}
