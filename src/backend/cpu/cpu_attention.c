/* Fast causal attention on the CPU: tiled, with an online softmax (the
 * flash-attention recurrence), so no T×T score matrix is ever held — each
 * thread keeps one BQ×BK tile. Work is split over (batch, head) pairs, so
 * every gradient element has one writer and the result is deterministic.
 *
 * Per head the thread gathers Q (pre-scaled by 1/sqrt(hs)), K^T and V into
 * contiguous buffers; inner loops run over the contiguous dimension and
 * vectorise without reductions. */
#include "cpu_impl.h"
#include "vmath.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BQ 32
#define BK 64

typedef struct {
    float *Q, *K, *Kt, *V, *Vt, *dO, *dQ, *dK, *dV, *D, *L, *O, *m, *l;
} attn_scratch;

/* A thread's scratch; on failure *oom is set (every thread still runs
 * the work-sharing loop, skipping the work, and the op reports LMS_ERR_OOM). */
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

static void gather_head(attn_scratch *s, const float *qkv, int b, int h, int T, int C, int hs,
                        float scale, int need_k_rows, int need_vt) {
    for (int t = 0; t < T; t++) {
        const float *row = qkv + ((size_t)b * T + t) * 3 * C + h * hs;
        for (int d = 0; d < hs; d++) {
            s->Q[(size_t)t * hs + d] = row[d] * scale;
            s->Kt[(size_t)d * T + t] = row[C + d];
            s->V[(size_t)t * hs + d] = row[2 * C + d];
        }
        if (need_k_rows) memcpy(s->K + (size_t)t * hs, row + C, sizeof(float) * hs);
        if (need_vt)
            for (int d = 0; d < hs; d++) s->Vt[(size_t)d * T + t] = row[2 * C + d];
    }
}

/* S (nq×nk) = Q[q0..] · K[k0..]^T, rows limited to the causal range */
static void tile_scores(float *S, const attn_scratch *s, int q0, int nq, int k0, int nk, int T,
                        int hs) {
    for (int i = 0; i < nq; i++) {
        float *Si = S + i * BK;
        for (int j = 0; j < nk; j++) Si[j] = 0.0f;
        const float *q = s->Q + (size_t)(q0 + i) * hs;
        for (int d = 0; d < hs; d++) {
            const float qd = q[d], *kt = s->Kt + (size_t)d * T + k0;
#pragma omp simd
            for (int j = 0; j < nk; j++) Si[j] += qd * kt[j];
        }
    }
}

static inline int causal_len(int q0, int i, int k0, int nk) {
    int n = q0 + i - k0 + 1;
    return n < nk ? n : nk;
}

lms_status lms_cpu_attention_fwd(lms_backend *be, float *out, float *lse, const float *qkv, int B,
                                 int T, int C, int NH) {
    const int hs = C / NH;
    const float scale = 1.0f / sqrtf((float)hs);
    int oom = 0;
#pragma omp parallel
    {
        attn_scratch s = {0};
        s.Q = scratch_alloc((size_t)T * hs, &oom);
        s.Kt = scratch_alloc((size_t)T * hs, &oom);
        s.V = scratch_alloc((size_t)T * hs, &oom);
        s.O = scratch_alloc((size_t)BQ * hs, &oom);
        float S[BQ * BK], m[BQ], l[BQ];
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++) {
                if (!s.Q || !s.Kt || !s.V || !s.O) continue;
                gather_head(&s, qkv, b, h, T, C, hs, scale, 0, 0);
                for (int q0 = 0; q0 < T; q0 += BQ) {
                    int nq = T - q0 < BQ ? T - q0 : BQ;
                    for (int i = 0; i < nq; i++) {
                        m[i] = -INFINITY;
                        l[i] = 0.0f;
                    }
                    memset(s.O, 0, sizeof(float) * BQ * hs);
                    for (int k0 = 0; k0 < q0 + nq; k0 += BK) {
                        int nk = q0 + nq - k0 < BK ? q0 + nq - k0 : BK;
                        tile_scores(S, &s, q0, nq, k0, nk, T, hs);
                        for (int i = 0; i < nq; i++) {
                            int n = causal_len(q0, i, k0, nk);
                            if (n <= 0) continue;
                            float *Si = S + i * BK, mx = m[i];
                            for (int j = 0; j < n; j++) mx = Si[j] > mx ? Si[j] : mx;
                            float corr = lms_vexpf(m[i] - mx), sum = 0.0f;
                            if (m[i] == -INFINITY) corr = 0.0f;
#pragma omp simd reduction(+ : sum)
                            for (int j = 0; j < n; j++) {
                                Si[j] = lms_vexpf(Si[j] - mx);
                                sum += Si[j];
                            }
                            l[i] = l[i] * corr + sum;
                            m[i] = mx;
                            float *o = s.O + (size_t)i * hs;
                            for (int d = 0; d < hs; d++) o[d] *= corr;
                            for (int j = 0; j < n; j++) {
                                const float p = Si[j], *v = s.V + (size_t)(k0 + j) * hs;
#pragma omp simd
                                for (int d = 0; d < hs; d++) o[d] += p * v[d];
                            }
                        }
                    }
                    for (int i = 0; i < nq; i++) {
                        float inv = 1.0f / l[i], *dst = out + ((size_t)b * T + q0 + i) * C + h * hs;
                        for (int d = 0; d < hs; d++) dst[d] = s.O[(size_t)i * hs + d] * inv;
                        lse[((size_t)b * NH + h) * T + q0 + i] = m[i] + logf(l[i]);
                    }
                }
            }
        lms_free(s.Q);
        lms_free(s.Kt);
        lms_free(s.V);
        lms_free(s.O);
    }
    return oom ? oom_error(T, hs) : LMS_OK;
}

lms_status lms_cpu_attention_bwd(lms_backend *be, float *dqkv, const float *dout, const float *qkv,
                                 const float *out, const float *lse, int B, int T, int C, int NH) {
    const int hs = C / NH;
    const float scale = 1.0f / sqrtf((float)hs);
    int oom = 0;
#pragma omp parallel
    {
        attn_scratch s = {0};
        size_t th = (size_t)T * hs;
        s.Q = scratch_alloc(th, &oom);
        s.K = scratch_alloc(th, &oom);
        s.Kt = scratch_alloc(th, &oom);
        s.V = scratch_alloc(th, &oom);
        s.Vt = scratch_alloc(th, &oom);
        s.dO = scratch_alloc(th, &oom);
        s.dQ = scratch_alloc(th, &oom);
        s.dK = scratch_alloc(th, &oom);
        s.dV = scratch_alloc(th, &oom);
        s.D = scratch_alloc((size_t)T, &oom);
        s.L = scratch_alloc((size_t)T, &oom);
        float P[BQ * BK], dS[BQ * BK];
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++) {
                if (!s.Q || !s.K || !s.Kt || !s.V || !s.Vt || !s.dO || !s.dQ || !s.dK || !s.dV || !s.D || !s.L)
                    continue;
                gather_head(&s, qkv, b, h, T, C, hs, scale, 1, 1);
                for (int t = 0; t < T; t++) {
                    const float *go = dout + ((size_t)b * T + t) * C + h * hs;
                    const float *o = out + ((size_t)b * T + t) * C + h * hs;
                    float D = 0.0f;
                    for (int d = 0; d < hs; d++) {
                        s.dO[(size_t)t * hs + d] = go[d];
                        D += go[d] * o[d];
                    }
                    s.D[t] = D;
                    s.L[t] = lse[((size_t)b * NH + h) * T + t];
                }
                memset(s.dQ, 0, sizeof(float) * th);
                memset(s.dK, 0, sizeof(float) * th);
                memset(s.dV, 0, sizeof(float) * th);
                for (int q0 = 0; q0 < T; q0 += BQ) {
                    int nq = T - q0 < BQ ? T - q0 : BQ;
                    for (int k0 = 0; k0 < q0 + nq; k0 += BK) {
                        int nk = q0 + nq - k0 < BK ? q0 + nq - k0 : BK;
                        tile_scores(P, &s, q0, nq, k0, nk, T, hs);
                        for (int i = 0; i < nq; i++) {
                            int n = causal_len(q0, i, k0, nk);
                            float *Pi = P + i * BK, *dSi = dS + i * BK;
                            const float Li = s.L[q0 + i], Di = s.D[q0 + i];
                            const float *gi = s.dO + (size_t)(q0 + i) * hs;
                            if (n <= 0) continue;
#pragma omp simd
                            for (int j = 0; j < n; j++) {
                                Pi[j] = lms_vexpf(Pi[j] - Li);
                                dSi[j] = 0.0f;
                            }
                            for (int d = 0; d < hs; d++) {
                                const float g = gi[d], *vt = s.Vt + (size_t)d * T + k0;
#pragma omp simd
                                for (int j = 0; j < n; j++) dSi[j] += g * vt[j];
                            }
#pragma omp simd
                            for (int j = 0; j < n; j++) dSi[j] = Pi[j] * (dSi[j] - Di);
                            float *dq = s.dQ + (size_t)(q0 + i) * hs;
                            const float *q = s.Q + (size_t)(q0 + i) * hs;
                            for (int j = 0; j < n; j++) {
                                const float ds = dSi[j], p = Pi[j];
                                const float *k = s.K + (size_t)(k0 + j) * hs;
                                float *dk = s.dK + (size_t)(k0 + j) * hs, *dv = s.dV + (size_t)(k0 + j) * hs;
#pragma omp simd
                                for (int d = 0; d < hs; d++) {
                                    dq[d] += ds * k[d];
                                    dk[d] += ds * q[d];
                                    dv[d] += p * gi[d];
                                }
                            }
                        }
                    }
                }
                for (int t = 0; t < T; t++) {
                    float *row = dqkv + ((size_t)b * T + t) * 3 * C + h * hs;
                    for (int d = 0; d < hs; d++) {
                        row[d] += s.dQ[(size_t)t * hs + d] * scale;
                        row[C + d] += s.dK[(size_t)t * hs + d];
                        row[2 * C + d] += s.dV[(size_t)t * hs + d];
                    }
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
    }
    return oom ? oom_error(T, hs) : LMS_OK;
}
