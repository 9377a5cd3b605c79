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
#ifdef LMS_HAVE_OPENMP
#include <omp.h>
#endif
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
/* The matmuls split their output rows between the OpenMP threads, each
 * thread one single-threaded sgemm on its rows (OpenBLAS's OpenMP build runs
 * single-threaded inside a parallel region). OpenBLAS's own threading packs
 * shared panels that its threads wait on (sched_yield: 12 % of a small-model
 * step); independent row blocks never wait until the end. Row blocks are
 * multiples of GEMM_ROWS and depend only on the shape and the thread count,
 * so results stay deterministic for a given thread count. */
#define GEMM_ROWS 16

#ifdef LMS_HAVE_OPENBLAS
int openblas_get_parallel(void); /* 0 sequential, 1 pthreads, 2 OpenMP */
#endif

/* Threads to split `rows` over: 1 inside a parallel region, or when the BLAS
 * keeps its own thread pool (a pthreads build would start threads per call). */
static int gemm_threads(int rows) {
#if defined(LMS_HAVE_OPENMP) && defined(LMS_HAVE_OPENBLAS)
    static int blas_kind = -1;
    if (blas_kind < 0) blas_kind = openblas_get_parallel();
    if (blas_kind == 1 || omp_in_parallel()) return 1;
    int t = omp_get_max_threads(), most = rows / GEMM_ROWS;
    return t < most ? t : (most > 0 ? most : 1);
#else
    (void)rows;
    return 1;
#endif
}

static int thread_id(void) {
#ifdef LMS_HAVE_OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* [lo, hi) of `rows` for thread i of n, in whole GEMM_ROWS blocks */
static void gemm_part(int rows, int i, int n, int *lo, int *hi) {
    int blocks = (rows + GEMM_ROWS - 1) / GEMM_ROWS;
    int b0 = (int)((long)blocks * i / n), b1 = (int)((long)blocks * (i + 1) / n);
    *lo = b0 * GEMM_ROWS < rows ? b0 * GEMM_ROWS : rows;
    *hi = b1 * GEMM_ROWS < rows ? b1 * GEMM_ROWS : rows;
}

static lms_status cpu_matmul_fwd(lms_backend *be, float *out, const float *inp, const float *w,
                            const float *bias, int N, int IC, int OC) {
    const float beta = bias ? 1.0f : 0.0f;
    const int nt = gemm_threads(N);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int lo, hi;
        gemm_part(N, thread_id(), nt, &lo, &hi);
        if (bias)
            for (int i = lo; i < hi; i++) memcpy(out + (size_t)i * OC, bias, sizeof(float) * OC);
        if (hi > lo)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, hi - lo, OC, IC, 1.0f, inp + (size_t)lo * IC, IC,
                        w, IC, beta, out + (size_t)lo * OC, OC);
    }
    return LMS_OK;
}

static lms_status cpu_matmul_bwd(lms_backend *be, float *dinp, float *dw, float *dbias,
                            const float *dout, const float *inp, const float *w, int N, int IC,
                            int OC) {
    const int nt = gemm_threads(N > OC ? N : OC);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int lo, hi;
        if (dinp) { /* dinp rows: dout rows times w */
            gemm_part(N, thread_id(), nt, &lo, &hi);
            if (hi > lo)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, hi - lo, IC, OC, 1.0f, dout + (size_t)lo * OC,
                            OC, w, IC, 1.0f, dinp + (size_t)lo * IC, IC);
        }
        /* dw rows (output channels): dout's columns times inp */
        gemm_part(OC, thread_id(), nt, &lo, &hi);
        if (hi > lo)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, hi - lo, IC, N, 1.0f, dout + lo, OC, inp, IC, 1.0f,
                        dw + (size_t)lo * IC, IC);
    }
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

/* The cross-entropy of one row x (V of Vp logits): *lse, and the loss
 * lse - x[target]; and its gradient d (Vp) = (softmax(x) - onehot(target))
 * ·dloss, 0 past V (d may be x; a target outside [0, V) adds no one-hot).
 * Shared by xent_fwd, xent_bwd and xent_fused, so that they give the same
 * bits. */
#ifdef LMS_HAVE_VEXPF8
/* With AVX2: the simd loops of the #else branch written out, the same
 * operations in the same order as GCC vectorises them (and golden runs
 * were recorded with): element j in lane j mod 8, the remainder from V & ~7
 * on into lane 0 one by one, then the lanes combined in order from lane 0.
 * Half the instructions of the compiler's version of lms_vexpf (no blends);
 * tests/test_ops.c checks the bits against the loops. */
static inline void xent_row_fwd(const float *x, int target, int V, float *lse, float *loss) {
    const int V8 = V & ~7;
    float lane[8];
    __m256 m8 = _mm256_set1_ps(-INFINITY);
    for (int j = 0; j < V8; j += 8) m8 = _mm256_max_ps(_mm256_loadu_ps(x + j), m8); /* x > mx ? x : mx */
    _mm256_storeu_ps(lane, m8);
    for (int j = V8; j < V; j++) lane[0] = x[j] > lane[0] ? x[j] : lane[0];
    float mx = -INFINITY, sum = 0;
    for (int k = 0; k < 8; k++) mx = lane[k] > mx ? lane[k] : mx;
    const __m256 mv = _mm256_set1_ps(mx);
    __m256 s8 = _mm256_setzero_ps();
    for (int j = 0; j < V8; j += 8) s8 = _mm256_add_ps(s8, lms_vexpf8(_mm256_sub_ps(_mm256_loadu_ps(x + j), mv)));
    _mm256_storeu_ps(lane, s8);
    for (int j = V8; j < V; j++) lane[0] += lms_vexpf(x[j] - mx);
    for (int k = 0; k < 8; k++) sum += lane[k];
    float l = mx + logf(sum);
    *lse = l;
    *loss = l - x[target];
}

static inline void xent_row_bwd(float *d, const float *x, float lse, int target, float dloss, int V, int Vp) {
    const int V8 = V & ~7;
    const __m256 lv = _mm256_set1_ps(lse), dv = _mm256_set1_ps(dloss);
    for (int j = 0; j < V8; j += 8)
        _mm256_storeu_ps(d + j, _mm256_mul_ps(lms_vexpf8(_mm256_sub_ps(_mm256_loadu_ps(x + j), lv)), dv));
    for (int j = V8; j < V; j++) d[j] = lms_vexpf(x[j] - lse) * dloss;
    for (int j = V; j < Vp; j++) d[j] = 0.0f;
    if ((unsigned)target < (unsigned)V) d[target] -= dloss;
}
#else
static inline void xent_row_fwd(const float *x, int target, int V, float *lse, float *loss) {
    float mx = -INFINITY, sum = 0;
#pragma omp simd reduction(max : mx)
    for (int j = 0; j < V; j++) mx = x[j] > mx ? x[j] : mx;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < V; j++) sum += lms_vexpf(x[j] - mx);
    float l = mx + logf(sum);
    *lse = l;
    *loss = l - x[target];
}

static inline void xent_row_bwd(float *d, const float *x, float lse, int target, float dloss, int V, int Vp) {
#pragma omp simd
    for (int j = 0; j < V; j++) d[j] = lms_vexpf(x[j] - lse) * dloss;
    for (int j = V; j < Vp; j++) d[j] = 0.0f;
    if ((unsigned)target < (unsigned)V) d[target] -= dloss;
}
#endif

static lms_status cpu_xent_fwd(lms_backend *be, float *losses, float *lse, const float *logits,
                          const int32_t *targets, int N, int V, int Vp) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) xent_row_fwd(logits + (size_t)i * Vp, targets[i], V, &lse[i], &losses[i]);
    return LMS_OK;
}

static lms_status cpu_xent_bwd(lms_backend *be, float *dlogits, const float *logits, const float *lse,
                          const int32_t *targets, float dloss, int N, int V, int Vp) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++)
        xent_row_bwd(dlogits + (size_t)i * Vp, logits + (size_t)i * Vp, lse[i], targets[i], dloss, V, Vp);
    return LMS_OK;
}

/* Each row's three passes (max, exp-sum, gradient) run back to back, while
 * its Vp floats (200 KB at GPT-2's vocabulary) are in the core's L2: the
 * logits go through memory once instead of twice. */
static lms_status cpu_xent_fused(lms_backend *be, float *losses, float *lse, float *logits, const int32_t *targets,
                                 float dloss, int N, int V, int Vp) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        float *x = logits + (size_t)i * Vp;
        xent_row_fwd(x, targets[i], V, &lse[i], &losses[i]);
        xent_row_bwd(x, x, lse[i], targets[i], dloss, V, Vp);
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
    .op_dtypes = {F32, F32, F32, F32, F32, F32, F32, F32, F32, F32, F32, F32, F32, F32, F32, F32, F32, F32, F32, F32},
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
    .xent_fused = cpu_xent_fused,
    .sum = cpu_sum,
    .sumsq = cpu_sumsq,
    .adamw = lms_cpu_adamw,
    .attention_decode = lms_ref_attention_decode, /* the reference loop (one query row per head) */
};
