/* Element types: sizes, names, and the fp32 <-> bf16 / fp16 conversions
 * (round to nearest, ties to even; NaN stays a quiet NaN of the same sign;
 * fp16 overflow gives infinity, underflow gives subnormals then zero). */
#include "lmscale/core.h"

#include <string.h>

size_t lms_dtype_size(lms_dtype t) {
    switch (t) {
    case LMS_DT_F32: return 4;
    case LMS_DT_F64: return 8;
    case LMS_DT_I32: return 4;
    case LMS_DT_I64: return 8;
    case LMS_DT_U8: return 1;
    case LMS_DT_BF16: return 2;
    case LMS_DT_F16: return 2;
    case LMS_DT_COUNT: break;
    }
    return 0;
}

const char *lms_dtype_name(lms_dtype t) {
    switch (t) {
    case LMS_DT_F32: return "fp32";
    case LMS_DT_F64: return "fp64";
    case LMS_DT_I32: return "int32";
    case LMS_DT_I64: return "int64";
    case LMS_DT_U8: return "uint8";
    case LMS_DT_BF16: return "bf16";
    case LMS_DT_F16: return "fp16";
    case LMS_DT_COUNT: break;
    }
    return "?";
}

static uint32_t f2u(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static float u2f(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

uint16_t lms_fp32_to_bf16(float x) {
    uint32_t u = f2u(x);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x0040u); /* quiet NaN */
    u += 0x7FFFu + ((u >> 16) & 1u); /* ties to even */
    return (uint16_t)(u >> 16);
}

float lms_bf16_to_fp32(uint16_t h) { return u2f((uint32_t)h << 16); }

uint16_t lms_fp32_to_fp16(float x) {
    const uint32_t u = f2u(x), sign = (u >> 16) & 0x8000u, ax = u & 0x7FFFFFFFu;
    if (ax > 0x7F800000u) return (uint16_t)(sign | 0x7E00u | ((ax >> 13) & 0x3FFu)); /* NaN */
    if (ax >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u); /* >= 65520 (or inf): infinity */
    if (ax >= 0x38800000u) {                                    /* normal: rebias 127 -> 15 */
        uint32_t h = (ax - 0x38000000u) >> 13, rem = ax & 0x1FFFu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
        return (uint16_t)(sign | h);
    }
    if (ax <= 0x33000000u) return (uint16_t)sign; /* at most half the smallest subnormal */
    /* subnormal: round(x · 2^24) */
    const uint32_t m = (ax & 0x7FFFFFu) | 0x800000u, e = ax >> 23, shift = 126u - e;
    uint32_t h = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

float lms_fp16_to_fp32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
    if (e == 0x1F) return u2f(sign | 0x7F800000u | (m << 13));
    if (e != 0) return u2f(sign | ((e + 112u) << 23) | (m << 13));
    if (m == 0) return u2f(sign);
    /* subnormal: m · 2^-24, exact in fp32 */
    float v = (float)m * (1.0f / 16777216.0f);
    return sign ? -v : v;
}

void lms_fp32_to_bf16_n(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = lms_fp32_to_bf16(src[i]);
}
void lms_bf16_to_fp32_n(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = lms_bf16_to_fp32(src[i]);
}
void lms_fp32_to_fp16_n(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = lms_fp32_to_fp16(src[i]);
}
void lms_fp16_to_fp32_n(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = lms_fp16_to_fp32(src[i]);
}
