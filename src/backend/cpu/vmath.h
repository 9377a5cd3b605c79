/* Vectorisable math for the fast CPU kernels: expf and tanhf written as
 * branch-free polynomials so that loops calling them auto-vectorise
 * (AVX2/AVX-512) without -ffast-math. Accuracy: expf within ~2 ulp on the
 * range used (softmax arguments <= 0, GELU), checked against libm by the
 * backend tests through the ops that use it. */
#ifndef LMS_VMATH_H
#define LMS_VMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float lms_vexpf(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    /* x = n*ln2 + r, |r| <= ln2/2. n = round(x/ln2) by the 1.5*2^23 trick
     * (exact for |x/ln2| < 2^22; no libm call, so loops vectorise: GCC does
     * not inline floorf without -fno-trapping-math). */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    /* NaN in, NaN out (p is NaN); the conversion must not see the NaN (it
     * is undefined behaviour), and the exponent is built unsigned */
    n = n == n ? n : 0.0f;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* tanh(x) = 1 - 2/(exp(2x)+1); exact limits at large |x| */
static inline float lms_vtanhf(float x) {
    float e = lms_vexpf(2.0f * x);
    return 1.0f - 2.0f / (e + 1.0f);
}

#endif
