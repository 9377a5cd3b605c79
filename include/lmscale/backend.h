/* lmscale backends: a device and its ops, behind one vtable (ggml's split).
 *
 * A backend is a device: it owns buffers (alloc/free), sets and copies
 * memory (host<->device, device<->device), and runs work in order on one
 * stream, with events to mark points in it and synchronize to wait for it.
 * On the CPU the stream is the calling thread, so memory is host memory,
 * events are trivially complete and synchronize returns at once; a CUDA
 * backend fills the same table with cudaMalloc, cudaMemcpyAsync, a
 * cudaStream_t and cudaEvent_t.
 *
 * Every op of the model has an explicit forward and backward here. The
 * "ref" backend is plain C, written for clarity, and is the oracle; "cpu" is
 * the fast one (OpenMP across cores, BLAS sgemm, vectorised loops, tiled
 * attention with an online softmax).
 *
 * Every op returns lms_status and its floating-point tensors have the dtype
 * the backend declares for it in op_dtypes (today fp32 for every op of both
 * CPU backends); lms_backend_supports turns an op a backend lacks, or a
 * dtype it does not take, into a clear LMS_ERR_UNSUPPORTED before any
 * compute. Integer inputs (tokens, targets) are int32.
 *
 * Conventions (row-major, pointers into buffers of this backend):
 *  - forward ops write (=) their outputs;
 *  - backward ops ACCUMULATE (+=) into every gradient they produce, both
 *    parameter gradients (so micro-batches accumulate) and activation
 *    gradients (so branches such as the residual stream sum naturally);
 *  - N is the number of rows (B*T), shapes are given in the comments;
 *  - results are deterministic for a given backend and thread count. */
#ifndef LMSCALE_BACKEND_H
#define LMSCALE_BACKEND_H

#include "lmscale/core.h"
#include "lmscale/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lms_backend lms_backend;

typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
    int step;          /* 1-based step count for bias correction */
    float grad_scale;  /* gradients are multiplied by this first (clipping, loss scaling) */
} lms_adamw_args;

/* The ops, for dtype declarations, support checks and tests. */
typedef enum {
    LMS_OP_ENCODER_FWD = 0,
    LMS_OP_ENCODER_BWD,
    LMS_OP_LAYERNORM_FWD,
    LMS_OP_LAYERNORM_BWD,
    LMS_OP_MATMUL_FWD,
    LMS_OP_MATMUL_BWD,
    LMS_OP_ATTENTION_FWD,
    LMS_OP_ATTENTION_BWD,
    LMS_OP_GELU_FWD,
    LMS_OP_GELU_BWD,
    LMS_OP_ADD,
    LMS_OP_ACCUMULATE,
    LMS_OP_SCALE,
    LMS_OP_XENT_FWD,
    LMS_OP_XENT_BWD,
    LMS_OP_SUM,
    LMS_OP_SUMSQ,
    LMS_OP_ADAMW,
    LMS_OP_ATTENTION_DECODE,
    LMS_OP_XENT_FUSED,
    LMS_OP_COUNT
} lms_op;
/* "matmul_fwd", ...; "?" for an unknown value. */
const char *lms_op_name(lms_op op);

/* Buffers (lms_buffer) are declared with tensors (tensor.h). */

/* A point in the backend's stream (opaque; backend-owned). */
typedef struct lms_event lms_event;

typedef enum { LMS_COPY_H2D = 0, LMS_COPY_D2H, LMS_COPY_D2D } lms_copy_kind;

typedef struct lms_backend_i {
    const char *name;
    /* 1 when device memory is host memory (the CPU backends): the host may
     * read and write buffers directly, copies are memcpy. */
    int host_memory;

    /* ---- device: memory, stream, events ---- */
    /* bytes (> 0), 64-byte aligned, zeroed; LMS_ERR_OOM naming `what` */
    lms_status (*buffer_alloc)(lms_backend *be, size_t bytes, const char *what, lms_buffer *out);
    /* NULL data is a no-op */
    void (*buffer_free)(lms_backend *be, lms_buffer *buf);
    /* bytes of dst (device) = value */
    lms_status (*memset)(lms_backend *be, void *dst, int value, size_t bytes);
    /* enqueued on the stream; dst and src do not overlap */
    lms_status (*copy)(lms_backend *be, void *dst, const void *src, size_t bytes, lms_copy_kind kind);
    /* waits until every op and copy enqueued so far has finished */
    lms_status (*synchronize)(lms_backend *be);
    lms_status (*event_new)(lms_backend *be, lms_event **ev);
    void (*event_free)(lms_backend *be, lms_event *ev);
    /* marks the stream's current point */
    lms_status (*event_record)(lms_backend *be, lms_event *ev);
    /* waits (on the host) until the stream has passed the recorded point */
    lms_status (*event_sync)(lms_backend *be, lms_event *ev);

    /* ---- ops ---- */
    /* Per op, the set of dtypes (LMS_DTM bits) its floating-point tensors
     * may have; 0 where the backend lacks the op. */
    unsigned op_dtypes[LMS_OP_COUNT];

    /* out (B,T,C) = wte[tok] + wpe[t]; tok (B,T) in [0,Vp) */
    lms_status (*encoder_fwd)(lms_backend *be, float *out, const int32_t *tok, const float *wte,
                              const float *wpe, int B, int T, int C);
    /* dwte (Vp,C) += ..., dwpe (maxT,C) += ...; dout (B,T,C) */
    lms_status (*encoder_bwd)(lms_backend *be, float *dwte, float *dwpe, const float *dout,
                              const int32_t *tok, int B, int T, int C);

    /* out (N,C); mean, rstd (N) saved for backward; eps 1e-5 */
    lms_status (*layernorm_fwd)(lms_backend *be, float *out, float *mean, float *rstd, const float *inp,
                                const float *w, const float *b, int N, int C);
    lms_status (*layernorm_bwd)(lms_backend *be, float *dinp, float *dw, float *db, const float *dout,
                                const float *inp, const float *w, const float *mean, const float *rstd,
                                int N, int C);

    /* out (N,OC) = inp (N,IC) · w(OC,IC)^T + bias (OC); bias may be NULL */
    lms_status (*matmul_fwd)(lms_backend *be, float *out, const float *inp, const float *w,
                             const float *bias, int N, int IC, int OC);
    /* dinp (N,IC) += dout·w; dw (OC,IC) += dout^T·inp; dbias (OC) += colsum(dout).
     * dinp and dbias may be NULL (not wanted). */
    lms_status (*matmul_bwd)(lms_backend *be, float *dinp, float *dw, float *dbias, const float *dout,
                             const float *inp, const float *w, int N, int IC, int OC);

    /* Causal multi-head attention. qkv (B,T,3C) as [q | k | v], head h uses
     * columns h*hs..(h+1)*hs of each; out (B,T,C); lse (B,NH,T) is the
     * log-sum-exp of each softmax row, kept for the backward pass (no T×T
     * matrix is stored). */
    lms_status (*attention_fwd)(lms_backend *be, float *out, float *lse, const float *qkv, int B, int T,
                                int C, int NH);
    /* dqkv (B,T,3C) += ...; needs the forward's out and lse */
    lms_status (*attention_bwd)(lms_backend *be, float *dqkv, const float *dout, const float *qkv,
                                const float *out, const float *lse, int B, int T, int C, int NH);

    /* GELU, tanh approximation */
    lms_status (*gelu_fwd)(lms_backend *be, float *out, const float *inp, size_t n);
    lms_status (*gelu_bwd)(lms_backend *be, float *dinp, const float *inp, const float *dout, size_t n);

    /* out = a + b (the residual connection; its backward is two accumulates) */
    lms_status (*add)(lms_backend *be, float *out, const float *a, const float *b, size_t n);
    /* dst += src */
    lms_status (*accumulate)(lms_backend *be, float *dst, const float *src, size_t n);
    /* x *= s */
    lms_status (*scale)(lms_backend *be, float *x, float s, size_t n);

    /* Softmax cross-entropy over the first V of Vp logits per row.
     * losses (N) = lse - logit[target]; lse (N) saved for backward. */
    lms_status (*xent_fwd)(lms_backend *be, float *losses, float *lse, const float *logits,
                           const int32_t *targets, int N, int V, int Vp);
    /* dlogits (N,Vp) = (softmax - onehot)·dloss for j < V, 0 for padded j.
     * A target outside [0, V) adds no one-hot (a vocabulary-parallel rank
     * whose columns do not hold it). Overwrites (=); dlogits may alias
     * logits. */
    lms_status (*xent_bwd)(lms_backend *be, float *dlogits, const float *logits, const float *lse,
                           const int32_t *targets, float dloss, int N, int V, int Vp);
    /* Training's cross-entropy in one pass over the logits: losses and lse
     * as xent_fwd, then the logits (N,Vp) overwritten in place with
     * xent_bwd's dlogits for this dloss, each row while it is still in
     * cache. Bit for bit what xent_fwd then xent_bwd (dlogits over the
     * logits) give; targets in [0, V). */
    lms_status (*xent_fused)(lms_backend *be, float *losses, float *lse, float *logits, const int32_t *targets,
                             float dloss, int N, int V, int Vp);

    /* *out (host) = sum of x, accumulated in double in index order */
    lms_status (*sum)(lms_backend *be, const float *x, size_t n, double *out);
    /* *out (host) = sum of squares, accumulated in double */
    lms_status (*sumsq)(lms_backend *be, const float *x, size_t n, double *out);
    /* AdamW (decoupled weight decay, PyTorch's formula) on n elements */
    lms_status (*adamw)(lms_backend *be, float *p, const float *g, float *m, float *v, size_t n,
                        const lms_adamw_args *a);
    /* One decoding step's causal attention against a KV cache: for each of
     * NH heads (columns h·hs of C), out = softmax(q·K[0..t]ᵀ/√hs)·V[0..t],
     * where row u of K and of V starts at k + u·ld and v + u·ld (floats);
     * scores is scratch of t + 1 floats */
    lms_status (*attention_decode)(lms_backend *be, float *out, const float *q, const float *k, const float *v,
                                   int t, int C, int NH, size_t ld, float *scores);
} lms_backend_i;

struct lms_backend {
    const lms_backend_i *i;
    void *state; /* backend-owned */
};

/* name: "ref" (plain C oracle) or "cpu" (fast). Unknown names are an
 * LMS_ERR_INVALID_ARG naming the choices. */
lms_status lms_backend_init(lms_backend *be, const char *name);
void lms_backend_free(lms_backend *be);

/* LMS_OK when be has op for tensors of dtype dt; else LMS_ERR_UNSUPPORTED
 * with a message naming the backend, the op, the dtype and what it takes. */
lms_status lms_backend_supports(const lms_backend *be, lms_op op, lms_dtype dt);

/* Memory from be's buffers (be->i->buffer_alloc: zeroed, 64-byte aligned,
 * LMS_ERR_OOM naming `what`); with be NULL, host memory, for code that holds
 * tensors without a backend (export, checkpoint tools). lms_buffer_free
 * takes the same be; NULL data is a no-op. The backends with host_memory
 * allocate exactly as be NULL does, so their buffers may be freed with NULL
 * once the backend is gone (lms_gpt_to_host). */
lms_status lms_buffer_alloc(lms_backend *be, size_t bytes, const char *what, lms_buffer *out);
void lms_buffer_free(lms_backend *be, lms_buffer *buf);

/* The registered backends, for code that runs on each (tests, benchmarks):
 * index 0.. until NULL. The first is the reference. */
const lms_backend_i *lms_backend_registered(int index);

/* The tables themselves (for tests that compare backends directly). */
extern const lms_backend_i lms_backend_ref_i;
extern const lms_backend_i lms_backend_cpu_i;

/* ---- low-precision storage (mixed precision; src/backend/lowp.c) ----
 * A wrapper over any backend whose ops round every activation and
 * activation gradient they write to bf16 or fp16 (round to nearest even;
 * fp16 overflows to infinity), with fp32 arithmetic inside each op; kept
 * in fp32: LayerNorm statistics, the attention's log-sum-exp, losses and
 * parameter gradients. *be becomes the wrapped backend (same state); the
 * wrapper is the caller's to free after the last use of *be. */
typedef struct lms_lowp lms_lowp;
lms_status lms_lowp_init(lms_lowp **w, const lms_backend *inner, lms_dtype dt, lms_backend *be);
void lms_lowp_free(lms_lowp *w);
lms_dtype lms_lowp_dtype(const lms_lowp *w);
/* For tests (LMSCALE_FAULT=inf|nan): v is added to the first logit
 * gradient of the next xent_bwd or xent_fused. */
void lms_lowp_poison(lms_lowp *w, float v);
/* x[0..n) rounded in place to dt's values (bf16, fp16; fp32: unchanged). */
void lms_round_to(float *x, size_t n, lms_dtype dt);
/* 1 when this CPU has AVX512-BF16 (vdpbf16ps). */
int lms_cpu_has_avx512bf16(void);

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
