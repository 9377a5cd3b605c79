/* The reference backend: every op in plain, single-threaded C, written to be
 * obviously right rather than fast. Reductions accumulate in double. This is
 * the oracle the fast backends are tested against, and it is itself checked
 * by finite differences (tests/test_ops.c) and against PyTorch
 * (tests/test_model.c). */
#include "cpu_impl.h"

#include <math.h>
#include <stdlib.h>

#define LN_EPS 1e-5

static lms_status ref_encoder_fwd(lms_backend *be, float *out, const int32_t *tok, const float *wte,
                            const float *wpe, int B, int T, int C) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            float *o = out + ((size_t)b * T + t) * C;
            const float *e = wte + (size_t)tok[b * T + t] * C, *p = wpe + (size_t)t * C;
            for (int c = 0; c < C; c++) o[c] = e[c] + p[c];
        }
    return LMS_OK;
}

static lms_status ref_encoder_bwd(lms_backend *be, float *dwte, float *dwpe, const float *dout,
                            const int32_t *tok, int B, int T, int C) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const float *d = dout + ((size_t)b * T + t) * C;
            float *e = dwte + (size_t)tok[b * T + t] * C, *p = dwpe + (size_t)t * C;
            for (int c = 0; c < C; c++) {
                e[c] += d[c];
                p[c] += d[c];
            }
        }
    return LMS_OK;
}

static lms_status ref_layernorm_fwd(lms_backend *be, float *out, float *mean, float *rstd,
                              const float *inp, const float *w, const float *b, int N, int C) {
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C;
        double m = 0, v = 0;
        for (int c = 0; c < C; c++) m += x[c];
        m /= C;
        for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
        v /= C;
        double r = 1.0 / sqrt(v + LN_EPS);
        float *o = out + (size_t)i * C;
        for (int c = 0; c < C; c++) o[c] = (float)((x[c] - m) * r * w[c] + b[c]);
        mean[i] = (float)m;
        rstd[i] = (float)r;
    }
    return LMS_OK;
}

static lms_status ref_layernorm_bwd(lms_backend *be, float *dinp, float *dw, float *db,
                              const float *dout, const float *inp, const float *w,
                              const float *mean, const float *rstd, int N, int C) {
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C, *d = dout + (size_t)i * C;
        double m = mean[i], r = rstd[i];
        double mean_dn = 0, mean_dn_n = 0;
        for (int c = 0; c < C; c++) {
            double n = (x[c] - m) * r, dn = (double)d[c] * w[c];
            mean_dn += dn;
            mean_dn_n += dn * n;
        }
        mean_dn /= C;
        mean_dn_n /= C;
        float *dx = dinp + (size_t)i * C;
        for (int c = 0; c < C; c++) {
            double n = (x[c] - m) * r, dn = (double)d[c] * w[c];
            dx[c] += (float)(r * (dn - mean_dn - n * mean_dn_n));
            dw[c] += (float)(d[c] * n);
            db[c] += d[c];
        }
    }
    return LMS_OK;
}

static lms_status ref_matmul_fwd(lms_backend *be, float *out, const float *inp, const float *w,
                           const float *bias, int N, int IC, int OC) {
    for (int i = 0; i < N; i++)
        for (int o = 0; o < OC; o++) {
            double acc = bias ? bias[o] : 0.0;
            const float *x = inp + (size_t)i * IC, *wr = w + (size_t)o * IC;
            for (int k = 0; k < IC; k++) acc += (double)x[k] * wr[k];
            out[(size_t)i * OC + o] = (float)acc;
        }
    return LMS_OK;
}

static lms_status ref_matmul_bwd(lms_backend *be, float *dinp, float *dw, float *dbias,
                           const float *dout, const float *inp, const float *w, int N, int IC,
                           int OC) {
    if (dinp)
        for (int i = 0; i < N; i++)
            for (int k = 0; k < IC; k++) {
                double acc = 0;
                for (int o = 0; o < OC; o++) acc += (double)dout[(size_t)i * OC + o] * w[(size_t)o * IC + k];
                dinp[(size_t)i * IC + k] += (float)acc;
            }
    for (int o = 0; o < OC; o++) {
        for (int k = 0; k < IC; k++) {
            double acc = 0;
            for (int i = 0; i < N; i++) acc += (double)dout[(size_t)i * OC + o] * inp[(size_t)i * IC + k];
            dw[(size_t)o * IC + k] += (float)acc;
        }
        if (dbias) {
            double acc = 0;
            for (int i = 0; i < N; i++) acc += dout[(size_t)i * OC + o];
            dbias[o] += (float)acc;
        }
    }
    return LMS_OK;
}

/* scores of query row t against keys 0..t of head h, scaled; returns max */
static double ref_scores(double *s, const float *qkv, int b, int t, int h, int T, int C, int hs) {
    const float *q = qkv + ((size_t)b * T + t) * 3 * C + h * hs;
    double scale = 1.0 / sqrt((double)hs), mx = -INFINITY;
    for (int u = 0; u <= t; u++) {
        const float *k = qkv + ((size_t)b * T + u) * 3 * C + C + h * hs;
        double acc = 0;
        for (int d = 0; d < hs; d++) acc += (double)q[d] * k[d];
        s[u] = acc * scale;
        if (s[u] > mx) mx = s[u];
    }
    return mx;
}

static lms_status ref_attention_fwd(lms_backend *be, float *out, float *lse, const float *qkv, int B,
                              int T, int C, int NH) {
    int hs = C / NH;
    double *s = malloc(sizeof(double) * T);
    if (!s) return lms_errorf(LMS_ERR_OOM, "out of memory for attention scores (T=%d)", T);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                double mx = ref_scores(s, qkv, b, t, h, T, C, hs), sum = 0;
                for (int u = 0; u <= t; u++) sum += exp(s[u] - mx);
                double l = mx + log(sum);
                float *o = out + ((size_t)b * T + t) * C + h * hs;
                for (int d = 0; d < hs; d++) {
                    double acc = 0;
                    for (int u = 0; u <= t; u++)
                        acc += exp(s[u] - l) * qkv[((size_t)b * T + u) * 3 * C + 2 * C + h * hs + d];
                    o[d] = (float)acc;
                }
                lse[((size_t)b * NH + h) * T + t] = (float)l;
            }
    free(s);
    return LMS_OK;
}

static lms_status ref_attention_bwd(lms_backend *be, float *dqkv, const float *dout, const float *qkv,
                              const float *out, const float *lse, int B, int T, int C, int NH) {
    int hs = C / NH;
    double scale = 1.0 / sqrt((double)hs);
    double *s = malloc(sizeof(double) * T);
    if (!s) return lms_errorf(LMS_ERR_OOM, "out of memory for attention scores (T=%d)", T);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                ref_scores(s, qkv, b, t, h, T, C, hs);
                double l = lse[((size_t)b * NH + h) * T + t];
                const float *dO = dout + ((size_t)b * T + t) * C + h * hs;
                const float *O = out + ((size_t)b * T + t) * C + h * hs;
                const float *q = qkv + ((size_t)b * T + t) * 3 * C + h * hs;
                float *dq = dqkv + ((size_t)b * T + t) * 3 * C + h * hs;
                double D = 0;
                for (int d = 0; d < hs; d++) D += (double)dO[d] * O[d];
                for (int u = 0; u <= t; u++) {
                    const float *k = qkv + ((size_t)b * T + u) * 3 * C + C + h * hs;
                    const float *v = k + C;
                    float *dk = dqkv + ((size_t)b * T + u) * 3 * C + C + h * hs;
                    float *dv = dk + C;
                    double p = exp(s[u] - l), dp = 0;
                    for (int d = 0; d < hs; d++) dp += (double)dO[d] * v[d];
                    double ds = p * (dp - D) * scale;
                    for (int d = 0; d < hs; d++) {
                        dq[d] += (float)(ds * k[d]);
                        dk[d] += (float)(ds * q[d]);
                        dv[d] += (float)(p * dO[d]);
                    }
                }
            }
    free(s);
    return LMS_OK;
}

#define GELU_K 0.7978845608028654 /* sqrt(2/pi) */

static lms_status ref_gelu_fwd(lms_backend *be, float *out, const float *inp, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double x = inp[i];
        out[i] = (float)(0.5 * x * (1.0 + tanh(GELU_K * (x + 0.044715 * x * x * x))));
    }
    return LMS_OK;
}

static lms_status ref_gelu_bwd(lms_backend *be, float *dinp, const float *inp, const float *dout,
                         size_t n) {
    for (size_t i = 0; i < n; i++) {
        double x = inp[i], u = GELU_K * (x + 0.044715 * x * x * x), th = tanh(u);
        double du = GELU_K * (1.0 + 3.0 * 0.044715 * x * x);
        double g = 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * du;
        dinp[i] += (float)(g * dout[i]);
    }
    return LMS_OK;
}

static lms_status ref_add(lms_backend *be, float *out, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
    return LMS_OK;
}

static lms_status ref_accumulate(lms_backend *be, float *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] += src[i];
    return LMS_OK;
}

static lms_status ref_xent_fwd(lms_backend *be, float *losses, float *lse, const float *logits,
                         const int32_t *targets, int N, int V, int Vp) {
    for (int i = 0; i < N; i++) {
        const float *x = logits + (size_t)i * Vp;
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j < V; j++)
            if (x[j] > mx) mx = x[j];
        for (int j = 0; j < V; j++) sum += exp(x[j] - mx);
        double l = mx + log(sum);
        lse[i] = (float)l;
        losses[i] = (float)(l - x[targets[i]]);
    }
    return LMS_OK;
}

static lms_status ref_xent_bwd(lms_backend *be, float *dlogits, const float *logits, const float *lse,
                         const int32_t *targets, float dloss, int N, int V, int Vp) {
    for (int i = 0; i < N; i++) {
        const float *x = logits + (size_t)i * Vp;
        float *d = dlogits + (size_t)i * Vp;
        double l = lse[i];
        for (int j = 0; j < Vp; j++) {
            double g = j < V ? exp(x[j] - l) - (j == targets[i] ? 1.0 : 0.0) : 0.0;
            d[j] = (float)(g * dloss);
        }
    }
    return LMS_OK;
}

/* The reference's fused cross-entropy is the unfused pair, in place. */
static lms_status ref_xent_fused(lms_backend *be, float *losses, float *lse, float *logits, const int32_t *targets,
                                 float dloss, int N, int V, int Vp) {
    LMS_CHECK(ref_xent_fwd(be, losses, lse, logits, targets, N, V, Vp));
    return ref_xent_bwd(be, logits, logits, lse, targets, dloss, N, V, Vp);
}

static lms_status ref_scale(lms_backend *be, float *x, float s, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] *= s;
    return LMS_OK;
}

static lms_status ref_sum(lms_backend *be, const float *x, size_t n, double *out) {
    double acc = 0;
    for (size_t i = 0; i < n; i++) acc += x[i];
    *out = acc;
    return LMS_OK;
}

static lms_status ref_sumsq(lms_backend *be, const float *x, size_t n, double *out) {
    double acc = 0;
    for (size_t i = 0; i < n; i++) acc += (double)x[i] * x[i];
    *out = acc;
    return LMS_OK;
}

static lms_status ref_adamw(lms_backend *be, float *p, const float *g, float *m, float *v, size_t n,
                      const lms_adamw_args *a) {
    /* PyTorch's AdamW: p *= 1 - lr*wd; m,v moments; p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps) */
    float bc1 = 1.0f - powf(a->beta1, (float)a->step), bc2 = 1.0f - powf(a->beta2, (float)a->step);
    float step_size = a->lr / bc1, bc2_sqrt = sqrtf(bc2);
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * a->grad_scale;
        p[i] *= 1.0f - a->lr * a->weight_decay;
        m[i] = a->beta1 * m[i] + (1.0f - a->beta1) * gi;
        v[i] = a->beta2 * v[i] + (1.0f - a->beta2) * gi * gi;
        float denom = sqrtf(v[i]) / bc2_sqrt + a->eps;
        p[i] -= step_size * (m[i] / denom);
    }
    return LMS_OK;
}

lms_status lms_ref_attention_decode(lms_backend *be, float *out, const float *qv, const float *kc, const float *vc,
                                    int t, int C, int NH, size_t ld, float *sc) {
    const int hs = C / NH;
    const float scale = 1.0f / sqrtf((float)hs);
    for (int h = 0; h < NH; h++) {
        const float *q = qv + h * hs;
        float mx = -INFINITY, sum = 0;
        for (int u = 0; u <= t; u++) {
            const float *k = kc + (size_t)u * ld + h * hs;
            float s = 0;
            for (int d = 0; d < hs; d++) s += q[d] * k[d];
            sc[u] = s * scale;
            if (sc[u] > mx) mx = sc[u];
        }
        for (int u = 0; u <= t; u++) {
            sc[u] = expf(sc[u] - mx);
            sum += sc[u];
        }
        float *o = out + h * hs;
        for (int d = 0; d < hs; d++) o[d] = 0;
        for (int u = 0; u <= t; u++) {
            const float p = sc[u] / sum, *v = vc + (size_t)u * ld + h * hs;
            for (int d = 0; d < hs; d++) o[d] += p * v[d];
        }
    }
    return LMS_OK;
}

#define F32 LMS_DTM(LMS_DT_F32)

const lms_backend_i lms_backend_ref_i = {
    .name = "ref",
    LMS_HOST_DEVICE_FNS,
    .op_dtypes = {F32, F32, F32, F32, F32, F32, F32, F32, F32, F32, F32, F32, F32, F32, F32, F32, F32, F32, F32, F32},
    .encoder_fwd = ref_encoder_fwd,
    .encoder_bwd = ref_encoder_bwd,
    .layernorm_fwd = ref_layernorm_fwd,
    .layernorm_bwd = ref_layernorm_bwd,
    .matmul_fwd = ref_matmul_fwd,
    .matmul_bwd = ref_matmul_bwd,
    .attention_fwd = ref_attention_fwd,
    .attention_bwd = ref_attention_bwd,
    .gelu_fwd = ref_gelu_fwd,
    .gelu_bwd = ref_gelu_bwd,
    .add = ref_add,
    .accumulate = ref_accumulate,
    .scale = ref_scale,
    .xent_fwd = ref_xent_fwd,
    .xent_bwd = ref_xent_bwd,
    .xent_fused = ref_xent_fused,
    .sum = ref_sum,
    .sumsq = ref_sumsq,
    .adamw = ref_adamw,
    .attention_decode = lms_ref_attention_decode, /* the reference loop (one query row per head) */
};
