/* Low-precision storage over any backend (backend.h, lms_lowp; docs/
 * mixed-precision.md): the portable bf16 / fp16 compute path.
 *
 * The wrapper is a copy of the wrapped table in which the ops that write
 * activations or activation gradients round what they wrote to the storage
 * type (round to nearest even; fp16 overflows to infinity), so every tensor
 * the model passes from op to op holds a bf16 / fp16 value, while the
 * arithmetic inside each op stays fp32 -- as a bf16 kernel that reads and
 * writes bf16 with fp32 accumulation computes. Kept in fp32, as mixed
 * precision does: LayerNorm statistics, the attention's log-sum-exp
 * (softmax in fp32), the per-position losses, and every parameter gradient
 * (fp32 accumulation). Everything else (memory, copies, sum, AdamW) passes
 * through. be->state is the wrapped backend's; the wrapper finds itself
 * from be->i, as the trace wrapper does (src/obs/trace_wrap.c). */
#include "lmscale/backend.h"

#include <math.h>
#if defined(__F16C__)
#include <immintrin.h>
#endif
#include <stdlib.h>
#include <string.h>

struct lms_lowp {
    lms_backend_i table; /* first: be->i points here */
    const lms_backend_i *inner;
    lms_dtype dt;
    float poison; /* non-zero: added to the next dlogits[0] (LMSCALE_FAULT inf/nan) */
    char name[32];
};

/* bf16: round to nearest even on the bit pattern (NaN kept as it is);
 * branch-free, so that the loop vectorises */
static inline uint32_t bf16_round_bits(uint32_t u) {
    const uint32_t r = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
    return (u & 0x7FFFFFFFu) > 0x7F800000u ? (u | 0x00400000u) & 0xFFFF0000u : r;
}

void lms_round_to(float *x, size_t n, lms_dtype dt) {
    if (!x) return;
    if (dt == LMS_DT_BF16) {
        uint32_t *u = (uint32_t *)(void *)x;
#pragma omp parallel for simd schedule(static) if (n > 65536)
        for (size_t i = 0; i < n; i++) u[i] = bf16_round_bits(u[i]);
    } else if (dt == LMS_DT_F16) {
#if defined(__F16C__)
        /* the hardware's conversion: IEEE round to nearest even, overflow to infinity, subnormals */
        const size_t n8 = n & ~(size_t)7;
#pragma omp parallel for schedule(static) if (n > 65536)
        for (size_t i = 0; i < n8; i += 8) {
            __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
            _mm256_storeu_ps(x + i, _mm256_cvtph_ps(h));
        }
        for (size_t i = n8; i < n; i++) x[i] = lms_fp16_to_fp32(lms_fp32_to_fp16(x[i]));
#else
#pragma omp parallel for schedule(static) if (n > 65536)
        for (size_t i = 0; i < n; i++) x[i] = lms_fp16_to_fp32(lms_fp32_to_fp16(x[i]));
#endif
    }
}

#define LP(be) ((lms_lowp *)(be)->i)
#define INNER(be) lms_backend in = {LP(be)->inner, (be)->state}
/* the wrapped call, then its output rounded */
#define ROUNDED(be, CALL, PTR, N)                 \
    do {                                          \
        INNER(be);                                \
        lms_status st_ = CALL;                    \
        if (st_ == LMS_OK) lms_round_to((PTR), (N), LP(be)->dt); \
        return st_;                               \
    } while (0)

static lms_status l_encoder_fwd(lms_backend *be, float *out, const int32_t *tok, const float *wte, const float *wpe,
                                int B, int T, int C) {
    ROUNDED(be, in.i->encoder_fwd(&in, out, tok, wte, wpe, B, T, C), out, (size_t)B * T * C);
}
static lms_status l_layernorm_fwd(lms_backend *be, float *out, float *mean, float *rstd, const float *inp,
                                  const float *w, const float *b, int N, int C) {
    ROUNDED(be, in.i->layernorm_fwd(&in, out, mean, rstd, inp, w, b, N, C), out, (size_t)N * C);
}
static lms_status l_layernorm_bwd(lms_backend *be, float *dinp, float *dw, float *db, const float *dout,
                                  const float *inp, const float *w, const float *mean, const float *rstd, int N,
                                  int C) {
    ROUNDED(be, in.i->layernorm_bwd(&in, dinp, dw, db, dout, inp, w, mean, rstd, N, C), dinp, (size_t)N * C);
}
static lms_status l_matmul_fwd(lms_backend *be, float *out, const float *inp, const float *w, const float *bias,
                               int N, int IC, int OC) {
    ROUNDED(be, in.i->matmul_fwd(&in, out, inp, w, bias, N, IC, OC), out, (size_t)N * OC);
}
static lms_status l_matmul_bwd(lms_backend *be, float *dinp, float *dw, float *dbias, const float *dout,
                               const float *inp, const float *w, int N, int IC, int OC) {
    ROUNDED(be, in.i->matmul_bwd(&in, dinp, dw, dbias, dout, inp, w, N, IC, OC), dinp, (size_t)N * IC);
}
static lms_status l_attention_fwd(lms_backend *be, float *out, float *lse, const float *qkv, int B, int T, int C,
                                  int NH) {
    ROUNDED(be, in.i->attention_fwd(&in, out, lse, qkv, B, T, C, NH), out, (size_t)B * T * C);
}
static lms_status l_attention_bwd(lms_backend *be, float *dqkv, const float *dout, const float *qkv,
                                  const float *out, const float *lse, int B, int T, int C, int NH) {
    ROUNDED(be, in.i->attention_bwd(&in, dqkv, dout, qkv, out, lse, B, T, C, NH), dqkv, (size_t)B * T * 3 * C);
}
static lms_status l_gelu_fwd(lms_backend *be, float *out, const float *inp, size_t n) {
    ROUNDED(be, in.i->gelu_fwd(&in, out, inp, n), out, n);
}
static lms_status l_gelu_bwd(lms_backend *be, float *dinp, const float *inp, const float *dout, size_t n) {
    ROUNDED(be, in.i->gelu_bwd(&in, dinp, inp, dout, n), dinp, n);
}
static lms_status l_add(lms_backend *be, float *out, const float *a, const float *b, size_t n) {
    ROUNDED(be, in.i->add(&in, out, a, b, n), out, n);
}
/* dlogits as the wrapped op wrote them, then a test's injected overflow
 * (LMSCALE_FAULT=inf|nan, once) and the rounding */
static void round_dlogits(lms_lowp *w, float *dlogits, size_t n) {
    if (w->poison != 0) {
        dlogits[0] += w->poison;
        w->poison = 0;
    }
    lms_round_to(dlogits, n, w->dt);
}
static lms_status l_xent_bwd(lms_backend *be, float *dlogits, const float *logits, const float *lse,
                             const int32_t *targets, float dloss, int N, int V, int Vp) {
    INNER(be);
    lms_status st = in.i->xent_bwd(&in, dlogits, logits, lse, targets, dloss, N, V, Vp);
    if (st == LMS_OK) round_dlogits(LP(be), dlogits, (size_t)N * Vp);
    return st;
}
static lms_status l_xent_fused(lms_backend *be, float *losses, float *lse, float *logits, const int32_t *targets,
                               float dloss, int N, int V, int Vp) {
    INNER(be);
    lms_status st = in.i->xent_fused(&in, losses, lse, logits, targets, dloss, N, V, Vp);
    if (st == LMS_OK) round_dlogits(LP(be), logits, (size_t)N * Vp);
    return st;
}

lms_status lms_lowp_init(lms_lowp **out, const lms_backend *inner, lms_dtype dt, lms_backend *be) {
    *out = NULL;
    if (dt != LMS_DT_BF16 && dt != LMS_DT_F16)
        return lms_errorf(LMS_ERR_INVALID_ARG, "low-precision storage is bf16 or fp16, not %s", lms_dtype_name(dt));
    lms_lowp *w = calloc(1, sizeof *w);
    if (!w) return lms_errorf(LMS_ERR_OOM, "out of memory for the %s backend wrapper", lms_dtype_name(dt));
    w->table = *inner->i;
    w->inner = inner->i;
    w->dt = dt;
    snprintf(w->name, sizeof w->name, "%s+%s", inner->i->name, lms_dtype_name(dt));
    w->table.name = w->name;
    w->table.encoder_fwd = l_encoder_fwd;
    w->table.layernorm_fwd = l_layernorm_fwd;
    w->table.layernorm_bwd = l_layernorm_bwd;
    w->table.matmul_fwd = l_matmul_fwd;
    w->table.matmul_bwd = l_matmul_bwd;
    w->table.attention_fwd = l_attention_fwd;
    w->table.attention_bwd = l_attention_bwd;
    w->table.gelu_fwd = l_gelu_fwd;
    w->table.gelu_bwd = l_gelu_bwd;
    w->table.add = l_add;
    w->table.xent_bwd = l_xent_bwd;
    if (inner->i->xent_fused) w->table.xent_fused = l_xent_fused;
    be->i = &w->table;
    be->state = inner->state;
    *out = w;
    return LMS_OK;
}

void lms_lowp_free(lms_lowp *w) { free(w); }

void lms_lowp_poison(lms_lowp *w, float v) {
    if (w) w->poison = v;
}

lms_dtype lms_lowp_dtype(const lms_lowp *w) { return w ? w->dt : LMS_DT_F32; }

int lms_cpu_has_avx512bf16(void) {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
    return __builtin_cpu_supports("avx512bf16");
#else
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return 0;
    char line[8192];
    int has = 0;
    while (!has && fgets(line, sizeof line, f))
        if (strncmp(line, "flags", 5) == 0) has = strstr(line, " avx512_bf16") != NULL;
    fclose(f);
    return has;
#endif
}
