/* The device half of the CPU backends: memory is host memory (64-byte
 * aligned), copies are memcpy, and the stream is the calling thread, so
 * every op has finished when it returns: synchronize and events have
 * nothing to wait for. */
#include "cpu_impl.h"

#include <string.h>

struct lms_event {
    int recorded;
};

/* exactly host memory without a backend (backend.c), so that a buffer may
 * outlive its backend (lms_gpt_to_host) */
lms_status lms_host_buffer_alloc(lms_backend *be, size_t bytes, const char *what, lms_buffer *out) {
    return lms_buffer_alloc(NULL, bytes, what, out);
}

void lms_host_buffer_free(lms_backend *be, lms_buffer *buf) { lms_buffer_free(NULL, buf); }

lms_status lms_host_memset(lms_backend *be, void *dst, int value, size_t bytes) {
    if (bytes) memset(dst, value, bytes);
    return LMS_OK;
}

lms_status lms_host_copy(lms_backend *be, void *dst, const void *src, size_t bytes, lms_copy_kind kind) {
    if (kind != LMS_COPY_H2D && kind != LMS_COPY_D2H && kind != LMS_COPY_D2D)
        return lms_errorf(LMS_ERR_INTERNAL, "copy kind %d is not host-to-device, device-to-host or "
                          "device-to-device", (int)kind);
    if (bytes) memcpy(dst, src, bytes);
    return LMS_OK;
}

lms_status lms_host_synchronize(lms_backend *be) { return LMS_OK; }

lms_status lms_host_event_new(lms_backend *be, lms_event **ev) {
    *ev = lms_alloc(sizeof **ev);
    if (!*ev) return lms_errorf(LMS_ERR_OOM, "out of memory for a backend event");
    return LMS_OK;
}

void lms_host_event_free(lms_backend *be, lms_event *ev) { lms_free(ev); }

lms_status lms_host_event_record(lms_backend *be, lms_event *ev) {
    ev->recorded = 1;
    return LMS_OK;
}

lms_status lms_host_event_sync(lms_backend *be, lms_event *ev) {
    if (!ev->recorded) return lms_errorf(LMS_ERR_INTERNAL, "event_sync on an event never recorded");
    return LMS_OK;
}
