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

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define LMS_HAVE_VEXPF8 1
/* lms_vexpf on 8 lanes: the operations GCC's vectorisation of it performs
 * (with its FMA contractions), so every lane has lms_vexpf's bits -- for
 * every one of the 2^32 inputs, NaN included (checked once exhaustively;
 * tests/test_ops.c checks a spread of them). NaN in gives NaN out without
 * the clamp of n: p is NaN whatever the scale. */
static inline __m256 lms_vexpf8(__m256 x) {
    x = _mm256_max_ps(_mm256_set1_ps(-87.0f), x); /* x < -87 ? -87 : x (NaN stays) */
    x = _mm256_min_ps(_mm256_set1_ps(88.0f), x);
    __m256 n = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(12582912.0f));
    n = _mm256_sub_ps(n, _mm256_set1_ps(12582912.0f));
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(1.9875691500e-4f), r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r), _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
#endif

/* tanh(x) = 1 - 2/(exp(2x)+1); exact limits at large |x| */
static inline float lms_vtanhf(float x) {
    float e = lms_vexpf(2.0f * x);
    return 1.0f - 2.0f / (e + 1.0f);
}

#endif
