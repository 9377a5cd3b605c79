/* AdamW for the fast CPU backend, vectorised: PyTorch's formula, the same
 * expression as the reference, one pass over p, g, m, v (28 bytes per
 * parameter), so it runs at memory speed.
 *
 * This file is compiled with -fno-math-errno (CMakeLists.txt). Without it,
 * sqrtf must set errno for negative inputs, so GCC emits a scalar vsqrtss
 * with a branch to libm's sqrtf and the loop cannot vectorise (3x slower at
 * 124M). IEEE square root and division are correctly rounded in the scalar
 * and the vector instructions alike, so the results are bit-identical to
 * the scalar loop, provided every product is rounded, or fused into an
 * FMA, exactly where the scalar code had it. GCC's contraction of a*b - c*d
 * picks a different product to fuse in the vector loop than it did in the
 * scalar one, so this file is compiled with -ffp-contract=off and the FMAs
 * the scalar build used are written out (FMA machines; elsewhere nothing is
 * fused, as before). The golden test and test_ops check the bits. */
#include "cpu_impl.h"

#include <math.h>

#ifdef __FMA__
#define FMA(a, b, c) fmaf(a, b, c)
#else
#define FMA(a, b, c) ((a) * (b) + (c))
#endif

lms_status lms_cpu_adamw(lms_backend *be, float *restrict p, const float *restrict g, float *restrict m,
                         float *restrict v, size_t n, const lms_adamw_args *a) {
    const float b1 = a->beta1, b2 = a->beta2, eps = a->eps, gs = a->grad_scale;
    const float bc1 = 1.0f - powf(b1, (float)a->step), bc2 = 1.0f - powf(b2, (float)a->step);
    const float step_size = a->lr / bc1, bc2_sqrt = sqrtf(bc2), decay = 1.0f - a->lr * a->weight_decay;
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * gs;
        float mi = FMA(b1, m[i], (1.0f - b1) * gi);
        float vi = FMA(b2, v[i], (1.0f - b2) * gi * gi);
        m[i] = mi;
        v[i] = vi;
        /* p·decay − step_size·(mi / (√vi / √bc2 + eps)), the second product fused */
        p[i] = FMA(-step_size, mi / (sqrtf(vi) / bc2_sqrt + eps), p[i] * decay);
    }
    return LMS_OK;
}
