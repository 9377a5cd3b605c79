/* The fast CPU backend: OpenMP across cores, BLAS sgemm for the matmuls
 * (blocked, vectorised loops when built without BLAS), vectorised LayerNorm,
 * GELU, softmax cross-entropy and AdamW. Parallel loops split work so that
 * each output element is produced by one thread in a fixed order: results
 * are deterministic for a given thread count. Attention is in
 * cpu_attention.c, AdamW in cpu_adamw.c. */
#include "cpu_impl.h"
#include "vmath.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef LMS_HAVE_BLAS
#include <cblas.h>
#endif

#define LN_EPS 1e-5f
#define COL_BLOCK 64 /* channel block for column-parallel reductions */

static lms_status cpu_encoder_fwd(lms_backend *be, float *out, const int32_t *tok, const float *wte,
                             const float *wpe, int B, int T, int C) {
#pragma omp parallel for schedule(static)
    for (int bt = 0; bt < B * T; bt++) {
        float *o = out + (size_t)bt * C;
        const float *e = wte + (size_t)tok[bt] * C, *p = wpe + (size_t)(bt % T) * C;
        for (int c = 0; c < C; c++) o[c] = e[c] + p[c];
    }
    return LMS_OK;
}

/* Parallel over channel blocks: each thread owns a slice of columns of dwte
 * and dwpe, so repeated tokens never race and the order is fixed. */
static lms_status cpu_encoder_bwd(lms_backend *be, float *dwte, float *dwpe, const float *dout,
                             const int32_t *tok, int B, int T, int C) {
    int nblk = (C + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < nblk; blk++) {
        int c0 = blk * COL_BLOCK, c1 = c0 + COL_BLOCK < C ? c0 + COL_BLOCK : C;
        for (int bt = 0; bt < B * T; bt++) {
            const float *d = dout + (size_t)bt * C;
            float *e = dwte + (size_t)tok[bt] * C, *p = dwpe + (size_t)(bt % T) * C;
            for (int c = c0; c < c1; c++) {
                e[c] += d[c];
                p[c] += d[c];
            }
        }
    }
    return LMS_OK;
}

static lms_status cpu_layernorm_fwd(lms_backend *be, float *out, float *mean, float *rstd,
                               const float *inp, const float *w, const float *b, int N, int C) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C;
        float m = 0, v = 0;
#pragma omp simd reduction(+ : m)
        for (int c = 0; c < C; c++) m += x[c];
        m /= (float)C;
#pragma omp simd reduction(+ : v)
        for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
        v /= (float)C;
        float r = 1.0f / sqrtf(v + LN_EPS);
        float *o = out + (size_t)i * C;
#pragma omp simd
        for (int c = 0; c < C; c++) o[c] = (x[c] - m) * r * w[c] + b[c];
        mean[i] = m;
        rstd[i] = r;
    }
    return LMS_OK;
}

static lms_status cpu_layernorm_bwd(lms_backend *be, float *dinp, float *dw, float *db,
                               const float *dout, const float *inp, const float *w,
                               const float *mean, const float *rstd, int N, int C) {
    int nblk = (C + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel
    {
#pragma omp for schedule(static)
        for (int i = 0; i < N; i++) {
            const float *x = inp + (size_t)i * C, *d = dout + (size_t)i * C;
            float m = mean[i], r = rstd[i], a = 0, bsum = 0;
#pragma omp simd reduction(+ : a, bsum)
            for (int c = 0; c < C; c++) {
                float dn = d[c] * w[c];
                a += dn;
                bsum += dn * (x[c] - m) * r;
            }
            a /= (float)C;
            bsum /= (float)C;
            float *dx = dinp + (size_t)i * C;
#pragma omp simd
            for (int c = 0; c < C; c++) dx[c] += r * (d[c] * w[c] - a - (x[c] - m) * r * bsum);
        }
#pragma omp for schedule(static)
        for (int blk = 0; blk < nblk; blk++) {
            int c0 = blk * COL_BLOCK, c1 = c0 + COL_BLOCK < C ? c0 + COL_BLOCK : C;
            for (int i = 0; i < N; i++) {
                const float *x = inp + (size_t)i * C, *d = dout + (size_t)i * C;
                float m = mean[i], r = rstd[i];
#pragma omp simd
                for (int c = c0; c < c1; c++) {
                    dw[c] += d[c] * (x[c] - m) * r;
                    db[c] += d[c];
                }
            }
        }
    }
    return LMS_OK;
}

/* dbias (OC) += column sums of dout (N,OC), parallel over column blocks */
static void colsum_acc(float *dbias, const float *dout, int N, int OC) {
    int nblk = (OC + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < nblk; blk++) {
        int o0 = blk * COL_BLOCK, o1 = o0 + COL_BLOCK < OC ? o0 + COL_BLOCK : OC;
        float acc[COL_BLOCK] = {0};
        for (int i = 0; i < N; i++) {
            const float *d = dout + (size_t)i * OC;
#pragma omp simd
            for (int o = o0; o < o1; o++) acc[o - o0] += d[o];
        }
        for (int o = o0; o < o1; o++) dbias[o] += acc[o - o0];
    }
}

#ifdef LMS_HAVE_BLAS
static lms_status cpu_matmul_fwd(lms_backend *be, float *out, const float *inp, const float *w,
                            const float *bias, int N, int IC, int OC) {
    float beta = 0.0f;
    if (bias) {
#pragma omp parallel for schedule(static)
        for (int i = 0; i < N; i++) memcpy(out + (size_t)i * OC, bias, sizeof(float) * OC);
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, IC, 1.0f, inp, IC, w, IC, beta,
                out, OC);
    return LMS_OK;
}

static lms_status cpu_matmul_bwd(lms_backend *be, float *dinp, float *dw, float *dbias,
                            const float *dout, const float *inp, const float *w, int N, int IC,
                            int OC) {
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IC, OC, 1.0f, dout, OC, w, IC,
                    1.0f, dinp, IC);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, IC, N, 1.0f, dout, OC, inp, IC, 1.0f,
                dw, IC);
    if (dbias) colsum_acc(dbias, dout, N, OC);
    return LMS_OK;
}
#else
/* Without BLAS: register-blocked loops that vectorise over the contiguous
 * dimension. Far from sgemm peak but several times the reference. */
static lms_status cpu_matmul_fwd(lms_backend *be, float *out, const float *inp, const float *w,
                            const float *bias, int N, int IC, int OC) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int i = 0; i < N; i++)
        for (int o = 0; o < OC; o++) {
            const float *x = inp + (size_t)i * IC, *wr = w + (size_t)o * IC;
            float acc = 0;
#pragma omp simd reduction(+ : acc)
            for (int k = 0; k < IC; k++) acc += x[k] * wr[k];
            out[(size_t)i * OC + o] = acc + (bias ? bias[o] : 0.0f);
        }
    return LMS_OK;
}

static lms_status cpu_matmul_bwd(lms_backend *be, float *dinp, float *dw, float *dbias,
                            const float *dout, const float *inp, const float *w, int N, int IC,
                            int OC) {
    if (dinp) {
#pragma omp parallel for schedule(static)
        for (int i = 0; i < N; i++) {
            float *dx = dinp + (size_t)i * IC;
            for (int o = 0; o < OC; o++) {
                float d = dout[(size_t)i * OC + o];
                const float *wr = w + (size_t)o * IC;
#pragma omp simd
                for (int k = 0; k < IC; k++) dx[k] += d * wr[k];
            }
        }
    }
#pragma omp parallel for schedule(static)
    for (int o = 0; o < OC; o++) {
        float *dwr = dw + (size_t)o * IC;
        for (int i = 0; i < N; i++) {
            float d = dout[(size_t)i * OC + o];
            const float *x = inp + (size_t)i * IC;
#pragma omp simd
            for (int k = 0; k < IC; k++) dwr[k] += d * x[k];
        }
    }
    if (dbias) colsum_acc(dbias, dout, N, OC);
    return LMS_OK;
}
#endif

#define GELU_K 0.7978845608028654f

static lms_status cpu_gelu_fwd(lms_backend *be, float *out, const float *inp, size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + lms_vtanhf(GELU_K * (x + 0.044715f * x * x * x)));
    }
    return LMS_OK;
}

static lms_status cpu_gelu_bwd(lms_backend *be, float *dinp, const float *inp, const float *dout,
                          size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i], th = lms_vtanhf(GELU_K * (x + 0.044715f * x * x * x));
        float du = GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
        float g = 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du;
        dinp[i] += g * dout[i];
    }
    return LMS_OK;
}

static lms_status cpu_add(lms_backend *be, float *out, const float *a, const float *b, size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
    return LMS_OK;
}

static lms_status cpu_accumulate(lms_backend *be, float *dst, const float *src, size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) dst[i] += src[i];
    return LMS_OK;
}

static lms_status cpu_xent_fwd(lms_backend *be, float *losses, float *lse, const float *logits,
                          const int32_t *targets, int N, int V, int Vp) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        const float *x = logits + (size_t)i * Vp;
        float mx = -INFINITY, sum = 0;
#pragma omp simd reduction(max : mx)
        for (int j = 0; j < V; j++) mx = x[j] > mx ? x[j] : mx;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < V; j++) sum += lms_vexpf(x[j] - mx);
        float l = mx + logf(sum);
        lse[i] = l;
        losses[i] = l - x[targets[i]];
    }
    return LMS_OK;
}

static lms_status cpu_xent_bwd(lms_backend *be, float *dlogits, const float *logits, const float *lse,
                          const int32_t *targets, float dloss, int N, int V, int Vp) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        const float *x = logits + (size_t)i * Vp;
        float *d = dlogits + (size_t)i * Vp, l = lse[i];
#pragma omp simd
        for (int j = 0; j < V; j++) d[j] = lms_vexpf(x[j] - l) * dloss;
        for (int j = V; j < Vp; j++) d[j] = 0.0f;
        if ((unsigned)targets[i] < (unsigned)V) d[targets[i]] -= dloss;
    }
    return LMS_OK;
}

/* Fixed blocks summed in order: the result does not depend on the thread
 * count. */
#define SUMSQ_BLOCK 65536
static lms_status cpu_sumsq(lms_backend *be, const float *x, size_t n, double *out) {
    size_t nblk = (n + SUMSQ_BLOCK - 1) / SUMSQ_BLOCK;
    double stackbuf[64], *part = nblk <= 64 ? stackbuf : malloc(sizeof(double) * nblk);
    if (!part) return lms_errorf(LMS_ERR_OOM, "out of memory for %zu partial sums", nblk);
#pragma omp parallel for schedule(static)
    for (size_t b = 0; b < nblk; b++) {
        size_t i0 = b * SUMSQ_BLOCK, i1 = i0 + SUMSQ_BLOCK < n ? i0 + SUMSQ_BLOCK : n;
        double acc = 0;
#pragma omp simd reduction(+ : acc)
        for (size_t i = i0; i < i1; i++) acc += (double)x[i] * x[i];
        part[b] = acc;
    }
    double total = 0;
    for (size_t b = 0; b < nblk; b++) total += part[b];
    if (part != stackbuf) free(part);
    *out = total;
    return LMS_OK;
}

/* In index order, one thread: the per-position losses of a micro-batch
 * (B·T values), where the order fixes the bits of the mean loss. */
static lms_status cpu_sum(lms_backend *be, const float *x, size_t n, double *out) {
    double acc = 0;
    for (size_t i = 0; i < n; i++) acc += x[i];
    *out = acc;
    return LMS_OK;
}

static lms_status cpu_scale(lms_backend *be, float *x, float s, size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) x[i] *= s;
    return LMS_OK;
}

#define F32 LMS_DTM(LMS_DT_F32)

const lms_backend_i lms_backend_cpu_i = {
    .name = "cpu",
    LMS_HOST_DEVICE_FNS,
    .op_dtypes = {F32, F32, F32, F32, F32, F32, F32, F32, F32, F32, F32, F32, F32, F32, F32, F32, F32, F32, F32},
    .encoder_fwd = cpu_encoder_fwd,
    .encoder_bwd = cpu_encoder_bwd,
    .layernorm_fwd = cpu_layernorm_fwd,
    .layernorm_bwd = cpu_layernorm_bwd,
    .matmul_fwd = cpu_matmul_fwd,
    .matmul_bwd = cpu_matmul_bwd,
    .attention_fwd = lms_cpu_attention_fwd,
    .attention_bwd = lms_cpu_attention_bwd,
    .gelu_fwd = cpu_gelu_fwd,
    .gelu_bwd = cpu_gelu_bwd,
    .add = cpu_add,
    .accumulate = cpu_accumulate,
    .scale = cpu_scale,
    .xent_fwd = cpu_xent_fwd,
    .xent_bwd = cpu_xent_bwd,
    .sum = cpu_sum,
    .sumsq = cpu_sumsq,
    .adamw = lms_cpu_adamw,
    .attention_decode = lms_ref_attention_decode, /* the reference loop (one query row per head) */
};
