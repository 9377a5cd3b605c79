/* lmscale tensors (part of core): a typed, shaped, named view of memory in
 * a buffer that a backend owns.
 *
 * A tensor has a dtype (lms_dtype: fp32 today; bf16 and fp16 declared and
 * convertible), a shape of up to LMS_MAX_DIMS dimensions (row-major,
 * contiguous), and a global name ("h.3.attn.c_attn.weight"). A shard -- the
 * part of a tensor one rank holds under tensor parallelism or ZeRO -- also
 * says the global tensor's shape and where the shard starts in it, per
 * dimension (PyTorch DCP's chunk: offsets and sizes); a whole tensor is the
 * shard at offset 0 whose shape is the global shape.
 *
 * Storage is `buf->data + byte_offset`: buffers come from a backend
 * (lms_backend_i.buffer_alloc), so the bytes may live on a device; host
 * code touches them only through the backend's copies, or directly when
 * the backend says host_memory. A tensor never owns its buffer. */
#ifndef LMSCALE_TENSOR_H
#define LMSCALE_TENSOR_H

#include "lmscale/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LMS_MAX_DIMS 4

/* A block of memory owned by one backend (see backend.h). */
typedef struct {
    void *data;  /* device address (host address on the CPU backends) */
    size_t size; /* bytes */
    void *ctx;   /* backend-private */
} lms_buffer;

typedef struct {
    char name[64];                      /* global name */
    lms_dtype dtype;
    int ndim;                           /* 1..LMS_MAX_DIMS */
    int64_t shape[LMS_MAX_DIMS];        /* this tensor's (the shard's) shape */
    int64_t global_shape[LMS_MAX_DIMS]; /* the whole tensor's */
    int64_t offset[LMS_MAX_DIMS];       /* where the shard starts in the whole, per dimension */
    lms_buffer *buf;                    /* storage; not owned; NULL until bound */
    size_t byte_offset;                 /* into buf */
} lms_tensor;

/* A whole (unsharded, unbound) tensor. Errors: a name that does not fit,
 * ndim outside 1..LMS_MAX_DIMS, a negative dimension, an unknown dtype. */
lms_status lms_tensor_init(lms_tensor *t, const char *name, lms_dtype dtype, int ndim, const int64_t *shape);
/* Makes t (already init'ed with its local shape) the shard at `offset` of
 * a global tensor of `global_shape`; an error when the shard does not fit
 * inside it in some dimension. */
lms_status lms_tensor_set_shard(lms_tensor *t, const int64_t *global_shape, const int64_t *offset);
/* Places t at byte_offset of buf; an error naming the tensor when it does
 * not fit or byte_offset is not a multiple of the element size. */
lms_status lms_tensor_bind(lms_tensor *t, lms_buffer *buf, size_t byte_offset);

size_t lms_tensor_numel(const lms_tensor *t);
size_t lms_tensor_nbytes(const lms_tensor *t);
/* 1 when t is a proper part of its global tensor. */
int lms_tensor_is_shard(const lms_tensor *t);
/* The storage address (NULL when unbound). */
void *lms_tensor_data(const lms_tensor *t);
/* The storage as fp32 when t is fp32 and bound; else NULL. */
float *lms_tensor_f32(const lms_tensor *t);
/* "h.0.mlp.c_fc.weight fp32 (768,1536) at [0,1536] of (768,3072)" into buf
 * (for messages); returns buf. */
const char *lms_tensor_describe(const lms_tensor *t, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
