/* TensorBoard event files, written natively.
 *
 * A file is a sequence of TFRecord records:
 *     uint64 length (little-endian), uint32 masked CRC-32C of those 8 bytes,
 *     length bytes of data, uint32 masked CRC-32C of the data,
 * masked(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8. Each record is a
 * serialized `Event` protobuf (TensorFlow's event.proto / summary.proto):
 *     Event   { double wall_time = 1; int64 step = 2; string file_version = 3;
 *               Summary summary = 5; }
 *     Summary { repeated Value value = 1; }
 *     Value   { string tag = 1; float simple_value = 2; }
 * The first record carries file_version "brain.Event:2". The encoder below
 * writes exactly these fields in the protobuf wire format (varint keys,
 * fixed64 for the double, fixed32 for the float, length-delimited strings
 * and sub-messages). */
#include "lmscale/obs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

struct lms_tb {
    FILE *f;
    char path[4096];
};

/* bit by bit (events are a few hundred bytes a step: no table needed) */
uint32_t lms_crc32c(uint32_t crc, const void *data, size_t n) {
    const unsigned char *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) crc = crc & 1 ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
    }
    return ~crc;
}

static uint32_t masked(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

/* ---- a tiny protobuf encoder into a growing buffer ---- */
typedef struct {
    unsigned char *p;
    size_t n, cap;
    int oom;
} pb;

static void pb_bytes(pb *b, const void *s, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        unsigned char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}
static void pb_varint(pb *b, uint64_t v) {
    unsigned char t[10];
    int k = 0;
    do {
        t[k] = (unsigned char)(v & 0x7f);
        v >>= 7;
        if (v) t[k] |= 0x80;
        k++;
    } while (v);
    pb_bytes(b, t, (size_t)k);
}
static void pb_key(pb *b, int field, int wire) { pb_varint(b, (uint64_t)field << 3 | (uint64_t)wire); }
static void pb_le(pb *b, uint64_t v, int n) {
    unsigned char t[8];
    for (int i = 0; i < n; i++) t[i] = (unsigned char)(v >> (8 * i));
    pb_bytes(b, t, (size_t)n);
}
static void pb_double(pb *b, int field, double d) {
    uint64_t u;
    memcpy(&u, &d, 8);
    pb_key(b, field, 1);
    pb_le(b, u, 8);
}
static void pb_float(pb *b, int field, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    pb_key(b, field, 5);
    pb_le(b, u, 4);
}
static void pb_string(pb *b, int field, const void *s, size_t n) {
    pb_key(b, field, 2);
    pb_varint(b, n);
    pb_bytes(b, s, n);
}

static double wall_now(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + 1e-6 * (double)tv.tv_usec;
}

static lms_status write_record(lms_tb *tb, const unsigned char *data, size_t n) {
    unsigned char head[12], tail[4];
    for (int i = 0; i < 8; i++) head[i] = (unsigned char)((uint64_t)n >> (8 * i));
    uint32_t c = masked(lms_crc32c(0, head, 8)), d = masked(lms_crc32c(0, data, n));
    for (int i = 0; i < 4; i++) {
        head[8 + i] = (unsigned char)(c >> (8 * i));
        tail[i] = (unsigned char)(d >> (8 * i));
    }
    if (fwrite(head, 1, 12, tb->f) != 12 || fwrite(data, 1, n, tb->f) != n || fwrite(tail, 1, 4, tb->f) != 4 ||
        fflush(tb->f) != 0)
        return lms_errorf(LMS_ERR_IO, "cannot write TensorBoard events to '%s': %s (disk full?)", tb->path,
                          strerror(errno));
    return LMS_OK;
}

lms_status lms_tb_open(const char *dir, lms_tb **out) {
    *out = NULL;
    LMS_CHECK(lms_mkdirs(dir));
    lms_tb *tb = calloc(1, sizeof *tb);
    if (!tb) return lms_errorf(LMS_ERR_OOM, "out of memory for the TensorBoard writer");
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = 0;
    double now = wall_now();
    snprintf(tb->path, sizeof tb->path, "%s/events.out.tfevents.%lld.%s", dir, (long long)now, host);
    tb->f = fopen(tb->path, "ab");
    if (!tb->f) {
        lms_status st = lms_errorf(LMS_ERR_IO, "--tensorboard-dir: cannot create '%s': %s (check that the "
                                   "directory is writable)", tb->path, strerror(errno));
        free(tb);
        return st;
    }
    pb b = {0};
    pb_double(&b, 1, now);
    pb_key(&b, 2, 0);
    pb_varint(&b, 0);
    pb_string(&b, 3, "brain.Event:2", 13);
    lms_status st = b.oom ? lms_errorf(LMS_ERR_OOM, "out of memory encoding an event") : write_record(tb, b.p, b.n);
    free(b.p);
    if (st != LMS_OK) {
        lms_tb_close(tb);
        return st;
    }
    *out = tb;
    return LMS_OK;
}

lms_status lms_tb_scalars(lms_tb *tb, int64_t step, const char *const *tags, const float *values, int n) {
    pb sum = {0}, val = {0}, ev = {0};
    for (int i = 0; i < n; i++) {
        val.n = 0;
        pb_string(&val, 1, tags[i], strlen(tags[i]));
        pb_float(&val, 2, values[i]);
        if (val.oom) break;
        pb_string(&sum, 1, val.p, val.n);
    }
    pb_double(&ev, 1, wall_now());
    pb_key(&ev, 2, 0);
    pb_varint(&ev, (uint64_t)step);
    if (!sum.oom) pb_string(&ev, 5, sum.p, sum.n);
    lms_status st = sum.oom || val.oom || ev.oom ? lms_errorf(LMS_ERR_OOM, "out of memory encoding an event")
                                                 : write_record(tb, ev.p, ev.n);
    free(sum.p);
    free(val.p);
    free(ev.p);
    return st;
}

const char *lms_tb_path(const lms_tb *tb) { return tb->path; }

void lms_tb_close(lms_tb *tb) {
    if (!tb) return;
    if (tb->f) fclose(tb->f);
    free(tb);
}
