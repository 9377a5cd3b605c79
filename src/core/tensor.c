/* Tensors: shape, dtype, name, shard placement and binding to a buffer
 * (include/lmscale/tensor.h). No memory is touched here. */
#include "lmscale/tensor.h"

#include <inttypes.h>
#include <string.h>

lms_status lms_tensor_init(lms_tensor *t, const char *name, lms_dtype dtype, int ndim, const int64_t *shape) {
    memset(t, 0, sizeof *t);
    if (!name || strlen(name) >= sizeof t->name)
        return lms_errorf(LMS_ERR_INVALID_ARG, "tensor name '%s' is empty or longer than %zu characters",
                          name ? name : "(null)", sizeof t->name - 1);
    strcpy(t->name, name);
    if (ndim < 1 || ndim > LMS_MAX_DIMS)
        return lms_errorf(LMS_ERR_INVALID_ARG, "tensor %s: %d dimensions (1 to %d are supported)", name, ndim,
                          LMS_MAX_DIMS);
    if (dtype < 0 || dtype >= LMS_DT_COUNT)
        return lms_errorf(LMS_ERR_INVALID_ARG, "tensor %s: dtype %d is not an lms_dtype", name, (int)dtype);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0)
            return lms_errorf(LMS_ERR_INVALID_ARG, "tensor %s: dimension %d is %" PRId64 " (must be >= 0)", name, d,
                              shape[d]);
        t->shape[d] = t->global_shape[d] = shape[d];
    }
    for (int d = ndim; d < LMS_MAX_DIMS; d++) t->shape[d] = t->global_shape[d] = 1;
    return LMS_OK;
}

lms_status lms_tensor_set_shard(lms_tensor *t, const int64_t *global_shape, const int64_t *offset) {
    for (int d = 0; d < t->ndim; d++)
        if (offset[d] < 0 || global_shape[d] < 0 || offset[d] + t->shape[d] > global_shape[d])
            return lms_errorf(LMS_ERR_INVALID_ARG, "tensor %s: a shard of %" PRId64 " at %" PRId64
                              " does not fit in dimension %d of size %" PRId64, t->name, t->shape[d], offset[d], d,
                              global_shape[d]);
    for (int d = 0; d < t->ndim; d++) {
        t->global_shape[d] = global_shape[d];
        t->offset[d] = offset[d];
    }
    return LMS_OK;
}

size_t lms_tensor_numel(const lms_tensor *t) {
    size_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
    return n;
}

size_t lms_tensor_nbytes(const lms_tensor *t) { return lms_tensor_numel(t) * lms_dtype_size(t->dtype); }

int lms_tensor_is_shard(const lms_tensor *t) {
    for (int d = 0; d < t->ndim; d++)
        if (t->offset[d] != 0 || t->shape[d] != t->global_shape[d]) return 1;
    return 0;
}

lms_status lms_tensor_bind(lms_tensor *t, lms_buffer *buf, size_t byte_offset) {
    const size_t es = lms_dtype_size(t->dtype), nb = lms_tensor_nbytes(t);
    if (!buf || !buf->data)
        return lms_errorf(LMS_ERR_INTERNAL, "tensor %s: bound to a buffer that was never allocated", t->name);
    if (byte_offset % es)
        return lms_errorf(LMS_ERR_INTERNAL, "tensor %s: byte offset %zu is not a multiple of its %s element size",
                          t->name, byte_offset, lms_dtype_name(t->dtype));
    if (byte_offset > buf->size || nb > buf->size - byte_offset)
        return lms_errorf(LMS_ERR_INTERNAL, "tensor %s: %zu bytes at %zu do not fit in a buffer of %zu bytes", t->name,
                          nb, byte_offset, buf->size);
    t->buf = buf;
    t->byte_offset = byte_offset;
    return LMS_OK;
}

void *lms_tensor_data(const lms_tensor *t) {
    return t->buf && t->buf->data ? (char *)t->buf->data + t->byte_offset : NULL;
}

float *lms_tensor_f32(const lms_tensor *t) { return t->dtype == LMS_DT_F32 ? lms_tensor_data(t) : NULL; }

static size_t put_dims(char *buf, size_t cap, size_t at, const int64_t *v, int n, char open, char close) {
    for (int d = 0; d < n && at < cap; d++)
        at += (size_t)snprintf(buf + at, cap - at, "%c%" PRId64, d ? ',' : open, v[d]);
    if (at < cap) at += (size_t)snprintf(buf + at, cap - at, "%c", close);
    return at;
}

const char *lms_tensor_describe(const lms_tensor *t, char *buf, size_t cap) {
    if (!cap) return buf;
    size_t at = (size_t)snprintf(buf, cap, "%s %s ", t->name, lms_dtype_name(t->dtype));
    at = put_dims(buf, cap, at, t->shape, t->ndim, '(', ')');
    if (lms_tensor_is_shard(t) && at < cap) {
        at += (size_t)snprintf(buf + at, cap - at, " at ");
        at = put_dims(buf, cap, at, t->offset, t->ndim, '[', ']');
        if (at < cap) at += (size_t)snprintf(buf + at, cap - at, " of ");
        put_dims(buf, cap, at, t->global_shape, t->ndim, '(', ')');
    }
    return buf;
}
