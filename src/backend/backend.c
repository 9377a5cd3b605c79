/* Backend selection, the registry, op names and support checks, and the
 * start-up peak measurement. */
#include "lmscale/backend.h"

#include <string.h>

static const lms_backend_i *const registered[] = {&lms_backend_ref_i, &lms_backend_cpu_i, NULL};

const lms_backend_i *lms_backend_registered(int index) {
    if (index < 0 || index >= (int)(sizeof registered / sizeof registered[0])) return NULL;
    return registered[index];
}

lms_status lms_buffer_alloc(lms_backend *be, size_t bytes, const char *what, lms_buffer *out) {
    if (be) return be->i->buffer_alloc(be, bytes, what, out);
    out->data = NULL;
    out->size = 0;
    out->ctx = NULL;
    if (bytes == 0) return lms_errorf(LMS_ERR_INTERNAL, "a buffer of 0 bytes for %s", what);
    LMS_CHECK(lms_alloc_checked(&out->data, bytes, what));
    out->size = bytes;
    return LMS_OK;
}

void lms_buffer_free(lms_backend *be, lms_buffer *buf) {
    if (!buf || !buf->data) return;
    if (be) {
        be->i->buffer_free(be, buf);
    } else {
        lms_free(buf->data);
        buf->data = NULL;
        buf->size = 0;
    }
}

lms_status lms_backend_init(lms_backend *be, const char *name) {
    be->state = NULL;
    if (!name) name = "cpu";
    for (int k = 0; registered[k]; k++)
        if (strcmp(name, registered[k]->name) == 0) {
            be->i = registered[k];
            return LMS_OK;
        }
    if (strcmp(name, "cuda") == 0)
        return lms_errorf(LMS_ERR_UNSUPPORTED, "--backend cuda: this build has no CUDA backend yet "
                          "(use --backend cpu)");
    return lms_errorf(LMS_ERR_INVALID_ARG, "--backend '%s' is not known (choose cpu or ref)", name);
}

void lms_backend_free(lms_backend *be) {
    if (!be) return;
    be->i = NULL;
    be->state = NULL;
}

static const char *const op_names[LMS_OP_COUNT] = {
    [LMS_OP_ENCODER_FWD] = "encoder_fwd",     [LMS_OP_ENCODER_BWD] = "encoder_bwd",
    [LMS_OP_LAYERNORM_FWD] = "layernorm_fwd", [LMS_OP_LAYERNORM_BWD] = "layernorm_bwd",
    [LMS_OP_MATMUL_FWD] = "matmul_fwd",       [LMS_OP_MATMUL_BWD] = "matmul_bwd",
    [LMS_OP_ATTENTION_FWD] = "attention_fwd", [LMS_OP_ATTENTION_BWD] = "attention_bwd",
    [LMS_OP_GELU_FWD] = "gelu_fwd",           [LMS_OP_GELU_BWD] = "gelu_bwd",
    [LMS_OP_ADD] = "add",                     [LMS_OP_ACCUMULATE] = "accumulate",
    [LMS_OP_SCALE] = "scale",                 [LMS_OP_XENT_FWD] = "xent_fwd",
    [LMS_OP_XENT_BWD] = "xent_bwd",           [LMS_OP_SUM] = "sum",
    [LMS_OP_SUMSQ] = "sumsq",                 [LMS_OP_ADAMW] = "adamw",
    [LMS_OP_ATTENTION_DECODE] = "attention_decode", [LMS_OP_XENT_FUSED] = "xent_fused",
};

const char *lms_op_name(lms_op op) {
    return op >= 0 && op < LMS_OP_COUNT && op_names[op] ? op_names[op] : "?";
}

/* The function pointer of op in table i (NULL where missing). */
static const void *op_fn(const lms_backend_i *i, lms_op op) {
    switch (op) {
    case LMS_OP_ENCODER_FWD: return (const void *)i->encoder_fwd;
    case LMS_OP_ENCODER_BWD: return (const void *)i->encoder_bwd;
    case LMS_OP_LAYERNORM_FWD: return (const void *)i->layernorm_fwd;
    case LMS_OP_LAYERNORM_BWD: return (const void *)i->layernorm_bwd;
    case LMS_OP_MATMUL_FWD: return (const void *)i->matmul_fwd;
    case LMS_OP_MATMUL_BWD: return (const void *)i->matmul_bwd;
    case LMS_OP_ATTENTION_FWD: return (const void *)i->attention_fwd;
    case LMS_OP_ATTENTION_BWD: return (const void *)i->attention_bwd;
    case LMS_OP_GELU_FWD: return (const void *)i->gelu_fwd;
    case LMS_OP_GELU_BWD: return (const void *)i->gelu_bwd;
    case LMS_OP_ADD: return (const void *)i->add;
    case LMS_OP_ACCUMULATE: return (const void *)i->accumulate;
    case LMS_OP_SCALE: return (const void *)i->scale;
    case LMS_OP_XENT_FWD: return (const void *)i->xent_fwd;
    case LMS_OP_XENT_BWD: return (const void *)i->xent_bwd;
    case LMS_OP_SUM: return (const void *)i->sum;
    case LMS_OP_SUMSQ: return (const void *)i->sumsq;
    case LMS_OP_ADAMW: return (const void *)i->adamw;
    case LMS_OP_ATTENTION_DECODE: return (const void *)i->attention_decode;
    case LMS_OP_XENT_FUSED: return (const void *)i->xent_fused;
    case LMS_OP_COUNT: break;
    }
    return NULL;
}

lms_status lms_backend_supports(const lms_backend *be, lms_op op, lms_dtype dt) {
    const lms_backend_i *i = be->i;
    if (op < 0 || op >= LMS_OP_COUNT) return lms_errorf(LMS_ERR_INTERNAL, "op %d is not an lms_op", (int)op);
    unsigned mask = op_fn(i, op) ? i->op_dtypes[op] : 0;
    if (!mask)
        return lms_errorf(LMS_ERR_UNSUPPORTED, "backend '%s' has no %s op (use --backend cpu or ref)", i->name,
                          lms_op_name(op));
    if (dt < 0 || dt >= LMS_DT_COUNT || !(mask & LMS_DTM(dt))) {
        char takes[64] = "";
        for (int t = 0; t < LMS_DT_COUNT; t++)
            if (mask & LMS_DTM(t)) {
                if (takes[0]) strncat(takes, ", ", sizeof takes - strlen(takes) - 1);
                strncat(takes, lms_dtype_name((lms_dtype)t), sizeof takes - strlen(takes) - 1);
            }
        return lms_errorf(LMS_ERR_UNSUPPORTED, "backend '%s': op %s does not take %s tensors (it takes %s)",
                          i->name, lms_op_name(op), lms_dtype_name(dt), takes);
    }
    return LMS_OK;
}

double lms_backend_measure_peak_tflops(lms_backend *be) {
    const int n = 1024;
    float *a = lms_alloc(sizeof(float) * n * n), *b = lms_alloc(sizeof(float) * n * n),
          *c = lms_alloc(sizeof(float) * n * n);
    double best = 1e30;
    if (!a || !b || !c) goto done;
    for (int i = 0; i < n * n; i++) {
        a[i] = 0.001f * (float)(i % 97);
        b[i] = 0.001f * (float)(i % 89);
    }
    /* Best of as many repetitions as fit in ~0.3 s (at least 5, after one
     * warm-up): on a shared machine the best is the least disturbed. */
    double start = lms_now_s();
    if (be->i->matmul_fwd(be, c, a, b, NULL, n, n, n) != LMS_OK) goto done;
    for (int rep = 0; rep < 200 && (rep < 5 || lms_now_s() - start < 0.3); rep++) {
        double t0 = lms_now_s();
        if (be->i->matmul_fwd(be, c, a, b, NULL, n, n, n) != LMS_OK) goto done;
        double dt = lms_now_s() - t0;
        if (dt < best) best = dt;
    }
done:
    lms_free(a);
    lms_free(b);
    lms_free(c);
    return best < 1e30 ? 2.0 * n * n * (double)n / best / 1e12 : 0.0;
}
