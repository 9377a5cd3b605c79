/* lmscale backends: the op vtable.
 *
 * Every op of the model has an explicit forward and backward here. The
 * "ref" backend is plain C, written for clarity, and is the oracle; "cpu" is
 * the fast one (OpenMP across cores, BLAS sgemm, vectorised loops, tiled
 * attention with an online softmax). A CUDA backend fills the same table.
 *
 * Conventions (all tensors fp32, row-major, pointers into flat buffers):
 *  - forward ops write (=) their outputs;
 *  - backward ops ACCUMULATE (+=) into every gradient they produce, both
 *    parameter gradients (so micro-batches accumulate) and activation
 *    gradients (so branches such as the residual stream sum naturally);
 *  - N is the number of rows (B*T), shapes are given in the comments;
 *  - results are deterministic for a given backend and thread count. */
#ifndef LMSCALE_BACKEND_H
#define LMSCALE_BACKEND_H

#include "lmscale/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lms_backend lms_backend;

typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
    int step;          /* 1-based step count for bias correction */
    float grad_scale;  /* gradients are multiplied by this first (clipping, loss scaling) */
} lms_adamw_args;

typedef struct lms_backend_i {
    const char *name;

    /* out (B,T,C) = wte[tok] + wpe[t]; tok (B,T) in [0,Vp) */
    void (*encoder_fwd)(lms_backend *be, float *out, const int32_t *tok, const float *wte,
                        const float *wpe, int B, int T, int C);
    /* dwte (Vp,C) += ..., dwpe (maxT,C) += ...; dout (B,T,C) */
    void (*encoder_bwd)(lms_backend *be, float *dwte, float *dwpe, const float *dout,
                        const int32_t *tok, int B, int T, int C);

    /* out (N,C); mean, rstd (N) saved for backward; eps 1e-5 */
    void (*layernorm_fwd)(lms_backend *be, float *out, float *mean, float *rstd, const float *inp,
                          const float *w, const float *b, int N, int C);
    void (*layernorm_bwd)(lms_backend *be, float *dinp, float *dw, float *db, const float *dout,
                          const float *inp, const float *w, const float *mean, const float *rstd,
                          int N, int C);

    /* out (N,OC) = inp (N,IC) · w(OC,IC)^T + bias (OC); bias may be NULL */
    void (*matmul_fwd)(lms_backend *be, float *out, const float *inp, const float *w,
                       const float *bias, int N, int IC, int OC);
    /* dinp (N,IC) += dout·w; dw (OC,IC) += dout^T·inp; dbias (OC) += colsum(dout).
     * dinp and dbias may be NULL (not wanted). */
    void (*matmul_bwd)(lms_backend *be, float *dinp, float *dw, float *dbias, const float *dout,
                       const float *inp, const float *w, int N, int IC, int OC);

    /* Causal multi-head attention. qkv (B,T,3C) as [q | k | v], head h uses
     * columns h*hs..(h+1)*hs of each; out (B,T,C); lse (B,NH,T) is the
     * log-sum-exp of each softmax row, kept for the backward pass (no T×T
     * matrix is stored). */
    void (*attention_fwd)(lms_backend *be, float *out, float *lse, const float *qkv, int B, int T,
                          int C, int NH);
    /* dqkv (B,T,3C) += ...; needs the forward's out and lse */
    void (*attention_bwd)(lms_backend *be, float *dqkv, const float *dout, const float *qkv,
                          const float *out, const float *lse, int B, int T, int C, int NH);

    /* GELU, tanh approximation */
    void (*gelu_fwd)(lms_backend *be, float *out, const float *inp, size_t n);
    void (*gelu_bwd)(lms_backend *be, float *dinp, const float *inp, const float *dout, size_t n);

    /* out = a + b (the residual connection; its backward is two accumulates) */
    void (*add)(lms_backend *be, float *out, const float *a, const float *b, size_t n);
    /* dst += src */
    void (*accumulate)(lms_backend *be, float *dst, const float *src, size_t n);

    /* Softmax cross-entropy over the first V of Vp logits per row.
     * losses (N) = lse - logit[target]; lse (N) saved for backward. */
    void (*xent_fwd)(lms_backend *be, float *losses, float *lse, const float *logits,
                     const int32_t *targets, int N, int V, int Vp);
    /* dlogits (N,Vp) = (softmax - onehot)·dloss for j < V, 0 for padded j.
     * Overwrites (=); dlogits may alias logits. */
    void (*xent_bwd)(lms_backend *be, float *dlogits, const float *logits, const float *lse,
                     const int32_t *targets, float dloss, int N, int V, int Vp);

    /* sum of squares, accumulated in double */
    double (*sumsq)(lms_backend *be, const float *x, size_t n);
    /* AdamW (decoupled weight decay, PyTorch's formula) on n elements */
    void (*adamw)(lms_backend *be, float *p, const float *g, float *m, float *v, size_t n,
                  const lms_adamw_args *a);
} lms_backend_i;

struct lms_backend {
    const lms_backend_i *i;
    void *state; /* backend-owned */
};

/* name: "ref" (plain C oracle) or "cpu" (fast). Unknown names are an
 * LMS_ERR_INVALID_ARG naming the choices. */
lms_status lms_backend_init(lms_backend *be, const char *name);
void lms_backend_free(lms_backend *be);

/* The tables themselves (for tests that compare backends directly). */
extern const lms_backend_i lms_backend_ref_i;
extern const lms_backend_i lms_backend_cpu_i;

/* A measured fp32 matmul peak of this process, in TFLOP/s: 1024^3 sgemms
 * through the backend, the best of those that fit in about 0.3 s. */
double lms_backend_measure_peak_tflops(lms_backend *be);

/* The BLAS kernel family in use ("SkylakeX", "Haswell", ... or "none"). */
const char *lms_blas_corename(void);
/* 1 and a message in buf when the BLAS runs slower kernels than this CPU
 * supports because of the environment (see blas_tune.c); else 0. */
int lms_blas_advice(char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
