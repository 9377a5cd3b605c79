/* Internal: pieces shared by the CPU backends' files (ref.c, cpu.c,
 * cpu_attention.c, host.c). */
#ifndef LMS_CPU_IMPL_H
#define LMS_CPU_IMPL_H

#include "lmscale/backend.h"

lms_status lms_cpu_attention_fwd(lms_backend *be, float *out, float *lse, const float *qkv, int B,
                                 int T, int C, int NH);
lms_status lms_cpu_attention_bwd(lms_backend *be, float *dqkv, const float *dout, const float *qkv,
                                 const float *out, const float *lse, int B, int T, int C, int NH);
lms_status lms_cpu_adamw(lms_backend *be, float *p, const float *g, float *m, float *v, size_t n,
                         const lms_adamw_args *a);

/* The host-memory device functions both CPU backends share (host.c); a table lists them with LMS_HOST_DEVICE_FNS. */
lms_status lms_host_buffer_alloc(lms_backend *be, size_t bytes, const char *what, lms_buffer *out);
void lms_host_buffer_free(lms_backend *be, lms_buffer *buf);
lms_status lms_host_memset(lms_backend *be, void *dst, int value, size_t bytes);
lms_status lms_host_copy(lms_backend *be, void *dst, const void *src, size_t bytes, lms_copy_kind kind);
lms_status lms_host_synchronize(lms_backend *be);
/* ref.c: decoding attention, shared by both CPU backends */
lms_status lms_ref_attention_decode(lms_backend *be, float *out, const float *q, const float *k, const float *v,
                                    int t, int C, int NH, size_t ld, float *scores);
lms_status lms_host_event_new(lms_backend *be, lms_event **ev);
void lms_host_event_free(lms_backend *be, lms_event *ev);
lms_status lms_host_event_record(lms_backend *be, lms_event *ev);
lms_status lms_host_event_sync(lms_backend *be, lms_event *ev);
#define LMS_HOST_DEVICE_FNS                                                                        \
    .host_memory = 1, .buffer_alloc = lms_host_buffer_alloc, .buffer_free = lms_host_buffer_free,  \
    .memset = lms_host_memset, .copy = lms_host_copy, .synchronize = lms_host_synchronize,         \
    .event_new = lms_host_event_new, .event_free = lms_host_event_free,                            \
    .event_record = lms_host_event_record, .event_sync = lms_host_event_sync

#endif
