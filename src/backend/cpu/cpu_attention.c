/* Fast causal attention on the CPU: flash-attention tiles whose inner
 * products run on a register-blocked GEMM micro-kernel, with an online
 * softmax (the flash-attention recurrence), so no T×T score matrix is ever
 * held — each thread keeps one BT×BT tile of scores. Work is split over
 * (batch, head) pairs and each head is done by one thread in a fixed order,
 * so every gradient element has one writer and the result does not depend
 * on the thread count.
 *
 * Per head the thread gathers Q (pre-scaled by 1/sqrt(hs)), K, V and dO as
 * rows, and K^T, V^T as BT-wide column tiles, all zero-padded: T up to a
 * multiple of BT, the head size up to a multiple of 16 (hsp). Padding
 * contributes exact zeros to every inner product, so every GEMM runs whole
 * 16-wide columns. Key tiles above the diagonal are skipped; the diagonal
 * tile is masked.
 *
 * Forward, per query tile i and key tile j <= i:
 *   S = Q_i K_j^T;  m, l, O_i updated by the online softmax;  O_i += P V_j
 * and out = O_i / l, lse = m + log l (kept for backward).
 * Backward, with P = exp(S - lse) recomputed and D = rowsum(dO ∘ O):
 *   dP = dO_i V_j^T;  dS = P ∘ (dP - D);
 *   dV_j += P^T dO_i;  dK_j += dS^T Q_i;  dQ_i += dS K_j. */
#include "cpu_impl.h"
#include "vmath.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#define BT 64 /* query and key tile */
#define MR 6  /* micro-kernel rows */
#define NR 16 /* micro-kernel columns (two 8-float vectors) */

/* C[M×N] (acc ? += : =) A·B, where A(i,k) = a[i*rs + k*cs] (rows or
 * columns of a buffer), B(k,j) = b[k*ldb + j], N a multiple of NR. */
#if defined(__AVX2__) && defined(__FMA__)
static inline __attribute__((always_inline)) void kern(int mr, int K, const float *a, size_t rs, size_t cs,
                                                       const float *b, size_t ldb, float *c, size_t ldc, int acc) {
    __m256 c0[MR], c1[MR];
    for (int r = 0; r < mr; r++) {
        c0[r] = acc ? _mm256_loadu_ps(c + r * ldc) : _mm256_setzero_ps();
        c1[r] = acc ? _mm256_loadu_ps(c + r * ldc + 8) : _mm256_setzero_ps();
    }
    for (int k = 0; k < K; k++) {
        const __m256 b0 = _mm256_loadu_ps(b + k * ldb), b1 = _mm256_loadu_ps(b + k * ldb + 8);
        for (int r = 0; r < mr; r++) {
            const __m256 av = _mm256_broadcast_ss(a + r * rs + k * cs);
            c0[r] = _mm256_fmadd_ps(av, b0, c0[r]);
            c1[r] = _mm256_fmadd_ps(av, b1, c1[r]);
        }
    }
    for (int r = 0; r < mr; r++) {
        _mm256_storeu_ps(c + r * ldc, c0[r]);
        _mm256_storeu_ps(c + r * ldc + 8, c1[r]);
    }
}

static void gemm(int M, int N, int K, const float *a, size_t rs, size_t cs, const float *b, size_t ldb, float *c,
                 size_t ldc, int acc) {
    for (int i = 0; i < M; i += MR) {
        const int mr = M - i < MR ? M - i : MR;
        const float *ai = a + (size_t)i * rs;
        for (int j = 0; j < N; j += NR) {
            float *cij = c + (size_t)i * ldc + j;
            switch (mr) {
            case 6: kern(6, K, ai, rs, cs, b + j, ldb, cij, ldc, acc); break;
            case 5: kern(5, K, ai, rs, cs, b + j, ldb, cij, ldc, acc); break;
            case 4: kern(4, K, ai, rs, cs, b + j, ldb, cij, ldc, acc); break;
            case 3: kern(3, K, ai, rs, cs, b + j, ldb, cij, ldc, acc); break;
            case 2: kern(2, K, ai, rs, cs, b + j, ldb, cij, ldc, acc); break;
            default: kern(1, K, ai, rs, cs, b + j, ldb, cij, ldc, acc); break;
            }
        }
    }
}
#else
/* Portable form of the same loops (vectorised over j by the compiler). */
static void gemm(int M, int N, int K, const float *a, size_t rs, size_t cs, const float *b, size_t ldb, float *c,
                 size_t ldc, int acc) {
    for (int i = 0; i < M; i++) {
        float *ci = c + (size_t)i * ldc;
        if (!acc)
            for (int j = 0; j < N; j++) ci[j] = 0.0f;
        for (int k = 0; k < K; k++) {
            const float aik = a[(size_t)i * rs + (size_t)k * cs], *bk = b + (size_t)k * ldb;
#pragma omp simd
            for (int j = 0; j < N; j++) ci[j] += aik * bk[j];
        }
    }
}
#endif

typedef struct {
    float *Q, *K, *V, *Kt, *Vt, *dO, *dQ, *dK, *dV, *D, *L, *O, *S, *dS;
} attn_scratch;

/* A thread's scratch (zeroed: the padding stays zero); on failure *oom is
 * set (every thread still runs the work-sharing loop, skipping the work, and
 * the op reports LMS_ERR_OOM). */
static float *scratch_alloc(size_t n, int *oom) {
    float *p = lms_alloc(n * sizeof(float));
    if (!p) {
#pragma omp atomic write
        *oom = 1;
    }
    return p;
}

static lms_status oom_error(int T, int hs) {
    return lms_errorf(LMS_ERR_OOM, "out of memory for attention scratch (T=%d, head size %d)", T, hs);
}

/* K^T (or V^T) of rows X (T rows of hsp floats) as column tiles: tile j
 * holds (d, k0+u) at [j*hsp*BT + d*BT + u], so a GEMM walks it with
 * stride BT. Tile by tile, so the rows read stay in L1. */
static void transpose_tiles(float *Xt, const float *X, int T, int hs, int hsp) {
    for (int t0 = 0; t0 < T; t0 += BT) {
        const int nu = T - t0 < BT ? T - t0 : BT;
        const float *x = X + (size_t)t0 * hsp;
        float *xt = Xt + (size_t)t0 * hsp;
        for (int d = 0; d < hs; d++)
            for (int u = 0; u < nu; u++) xt[(size_t)d * BT + u] = x[(size_t)u * hsp + d];
    }
}

/* Head (b, h) into the scratch: Q·scale, K and V as rows of hsp floats,
 * K^T, and V^T when wanted. */
static void gather_head(attn_scratch *s, const float *qkv, int b, int h, int T, int C, int hs, int hsp,
                        float scale, int want_vt) {
    for (int t = 0; t < T; t++) {
        const float *row = qkv + ((size_t)b * T + t) * 3 * C + h * hs;
        float *q = s->Q + (size_t)t * hsp;
#pragma omp simd
        for (int d = 0; d < hs; d++) q[d] = row[d] * scale;
        memcpy(s->K + (size_t)t * hsp, row + C, sizeof(float) * hs);
        memcpy(s->V + (size_t)t * hsp, row + 2 * C, sizeof(float) * hs);
    }
    transpose_tiles(s->Kt, s->K, T, hs, hsp);
    if (want_vt) transpose_tiles(s->Vt, s->V, T, hs, hsp);
}

/* keys of tile k0 that query q may see: 0..BT (0 for padding rows q >= T) */
static inline int causal_len(int q, int k0, int T) {
    if (q >= T) return 0;
    int n = q - k0 + 1;
    return n < BT ? n : BT;
}

static inline int round_up(int x, int m) { return (x + m - 1) / m * m; }

lms_status lms_cpu_attention_fwd(lms_backend *be, float *out, float *lse, const float *qkv, int B, int T, int C,
                                 int NH) {
    const int hs = C / NH, hsp = round_up(hs, NR), Tp = round_up(T, BT);
    const float scale = 1.0f / sqrtf((float)hs);
    int oom = 0;
#pragma omp parallel
    {
        attn_scratch s = {0};
        size_t th = (size_t)Tp * hsp;
        s.Q = scratch_alloc(th, &oom);
        s.K = scratch_alloc(th, &oom);
        s.Kt = scratch_alloc(th, &oom);
        s.V = scratch_alloc(th, &oom);
        s.O = scratch_alloc((size_t)BT * hsp, &oom);
        s.S = scratch_alloc((size_t)BT * BT, &oom);
        float m[BT], l[BT];
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++) {
                if (!s.Q || !s.K || !s.Kt || !s.V || !s.O || !s.S) continue;
                gather_head(&s, qkv, b, h, T, C, hs, hsp, scale, 0);
                for (int q0 = 0; q0 < T; q0 += BT) {
                    for (int i = 0; i < BT; i++) {
                        m[i] = -INFINITY;
                        l[i] = 0.0f;
                    }
                    memset(s.O, 0, sizeof(float) * BT * hsp);
                    for (int k0 = 0; k0 <= q0; k0 += BT) {
                        gemm(BT, BT, hsp, s.Q + (size_t)q0 * hsp, hsp, 1, s.Kt + (size_t)k0 * hsp, BT, s.S, BT, 0);
                        for (int i = 0; i < BT; i++) {
                            const int n = causal_len(q0 + i, k0, T);
                            float *Si = s.S + i * BT, mx = m[i], sum = 0.0f;
                            if (n == 0) {
                                memset(Si, 0, sizeof(float) * BT);
                                continue;
                            }
#pragma omp simd reduction(max : mx)
                            for (int j = 0; j < n; j++) mx = Si[j] > mx ? Si[j] : mx;
                            const float corr = m[i] == -INFINITY ? 0.0f : lms_vexpf(m[i] - mx);
#pragma omp simd reduction(+ : sum)
                            for (int j = 0; j < n; j++) {
                                Si[j] = lms_vexpf(Si[j] - mx);
                                sum += Si[j];
                            }
                            for (int j = n; j < BT; j++) Si[j] = 0.0f; /* the diagonal tile's future keys */
                            l[i] = l[i] * corr + sum;
                            m[i] = mx;
                            if (corr != 1.0f) {
                                float *o = s.O + (size_t)i * hsp;
                                for (int d = 0; d < hsp; d++) o[d] *= corr;
                            }
                        }
                        gemm(BT, hsp, BT, s.S, BT, 1, s.V + (size_t)k0 * hsp, hsp, s.O, hsp, 1);
                    }
                    for (int i = 0; i < BT && q0 + i < T; i++) {
                        float inv = 1.0f / l[i], *dst = out + ((size_t)b * T + q0 + i) * C + h * hs;
                        for (int d = 0; d < hs; d++) dst[d] = s.O[(size_t)i * hsp + d] * inv;
                        lse[((size_t)b * NH + h) * T + q0 + i] = m[i] + logf(l[i]);
                    }
                }
            }
        lms_free(s.Q);
        lms_free(s.K);
        lms_free(s.Kt);
        lms_free(s.V);
        lms_free(s.O);
        lms_free(s.S);
    }
    return oom ? oom_error(T, hs) : LMS_OK;
}

lms_status lms_cpu_attention_bwd(lms_backend *be, float *dqkv, const float *dout, const float *qkv,
                                 const float *out, const float *lse, int B, int T, int C, int NH) {
    const int hs = C / NH, hsp = round_up(hs, NR), Tp = round_up(T, BT);
    const float scale = 1.0f / sqrtf((float)hs);
    int oom = 0;
#pragma omp parallel
    {
        attn_scratch s = {0};
        size_t th = (size_t)Tp * hsp;
        s.Q = scratch_alloc(th, &oom);
        s.K = scratch_alloc(th, &oom);
        s.Kt = scratch_alloc(th, &oom);
        s.V = scratch_alloc(th, &oom);
        s.Vt = scratch_alloc(th, &oom);
        s.dO = scratch_alloc(th, &oom);
        s.dQ = scratch_alloc(th, &oom);
        s.dK = scratch_alloc(th, &oom);
        s.dV = scratch_alloc(th, &oom);
        s.D = scratch_alloc((size_t)Tp, &oom);
        s.L = scratch_alloc((size_t)Tp, &oom);
        s.S = scratch_alloc((size_t)BT * BT, &oom);
        s.dS = scratch_alloc((size_t)BT * BT, &oom);
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++) {
                if (!s.Q || !s.K || !s.Kt || !s.V || !s.Vt || !s.dO || !s.dQ || !s.dK || !s.dV || !s.D || !s.L ||
                    !s.S || !s.dS)
                    continue;
                gather_head(&s, qkv, b, h, T, C, hs, hsp, scale, 1);
                for (int t = 0; t < T; t++) {
                    const float *go = dout + ((size_t)b * T + t) * C + h * hs;
                    const float *o = out + ((size_t)b * T + t) * C + h * hs;
                    float D = 0.0f;
                    memcpy(s.dO + (size_t)t * hsp, go, sizeof(float) * hs);
#pragma omp simd reduction(+ : D)
                    for (int d = 0; d < hs; d++) D += go[d] * o[d];
                    s.D[t] = D;
                    s.L[t] = lse[((size_t)b * NH + h) * T + t];
                }
                memset(s.dQ, 0, sizeof(float) * th);
                memset(s.dK, 0, sizeof(float) * th);
                memset(s.dV, 0, sizeof(float) * th);
                for (int q0 = 0; q0 < T; q0 += BT) {
                    const float *Qi = s.Q + (size_t)q0 * hsp, *dOi = s.dO + (size_t)q0 * hsp;
                    for (int k0 = 0; k0 <= q0; k0 += BT) {
                        gemm(BT, BT, hsp, Qi, hsp, 1, s.Kt + (size_t)k0 * hsp, BT, s.S, BT, 0);
                        gemm(BT, BT, hsp, dOi, hsp, 1, s.Vt + (size_t)k0 * hsp, BT, s.dS, BT, 0);
                        for (int i = 0; i < BT; i++) {
                            const int n = causal_len(q0 + i, k0, T);
                            float *Pi = s.S + i * BT, *dSi = s.dS + i * BT;
                            const float Li = s.L[q0 + i], Di = s.D[q0 + i];
#pragma omp simd
                            for (int j = 0; j < n; j++) {
                                Pi[j] = lms_vexpf(Pi[j] - Li);
                                dSi[j] = Pi[j] * (dSi[j] - Di);
                            }
                            for (int j = n; j < BT; j++) Pi[j] = dSi[j] = 0.0f; /* future keys, padding rows */
                        }
                        /* P^T and dS^T: A read by columns (rs = 1, cs = BT) */
                        gemm(BT, hsp, BT, s.S, 1, BT, dOi, hsp, s.dV + (size_t)k0 * hsp, hsp, 1);
                        gemm(BT, hsp, BT, s.dS, 1, BT, Qi, hsp, s.dK + (size_t)k0 * hsp, hsp, 1);
                        gemm(BT, hsp, BT, s.dS, BT, 1, s.K + (size_t)k0 * hsp, hsp, s.dQ + (size_t)q0 * hsp, hsp, 1);
                    }
                }
                for (int t = 0; t < T; t++) {
                    float *row = dqkv + ((size_t)b * T + t) * 3 * C + h * hs;
                    const float *dq = s.dQ + (size_t)t * hsp, *dk = s.dK + (size_t)t * hsp,
                                *dv = s.dV + (size_t)t * hsp;
#pragma omp simd
                    for (int d = 0; d < hs; d++) row[d] += dq[d] * scale;
#pragma omp simd
                    for (int d = 0; d < hs; d++) row[C + d] += dk[d];
#pragma omp simd
                    for (int d = 0; d < hs; d++) row[2 * C + d] += dv[d];
                }
            }
        lms_free(s.Q);
        lms_free(s.K);
        lms_free(s.Kt);
        lms_free(s.V);
        lms_free(s.Vt);
        lms_free(s.dO);
        lms_free(s.dQ);
        lms_free(s.dK);
        lms_free(s.dV);
        lms_free(s.D);
        lms_free(s.L);
        lms_free(s.S);
        lms_free(s.dS);
    }
    return oom ? oom_error(T, hs) : LMS_OK;
}
