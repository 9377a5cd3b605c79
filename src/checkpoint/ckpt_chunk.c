/* Checkpoint slices as N-dimensional chunks (docs/checkpoints.md): parsing
 * a slice of either version from the index, checking that a tensor's
 * chunks tile it exactly (overflow-safe, before anything is read), and
 * assembling a tensor from its chunks with a CRC check per chunk.
 *
 * A version-2 slice is a box (offset and size per dimension) of the tensor;
 * a version-1 slice, a run [start, start+count) of the flattened tensor, is
 * handled as a box of the tensor seen as 1-D. Either way a chunk's data is
 * stored row-major in its own shape. */
#define _POSIX_C_SOURCE 200809L
#include "ckpt_impl.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define LIM53 (UINT64_C(1) << 53)

/* The space the tensor's slices live in: its shape, or [numel] for runs. */
static int space(const lms_ckpt_tensor *t, int version, uint64_t *dims) {
    if (version >= 2) {
        for (int d = 0; d < t->ndim; d++) dims[d] = (uint64_t)t->shape[d];
        return t->ndim;
    }
    uint64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= (uint64_t)t->shape[d]; /* <= 2^53: checked at open */
    dims[0] = n;
    return 1;
}

static void describe(const lms_ckpt_slice *s, char *buf, size_t cap) {
    if (s->ndim == 1) {
        snprintf(buf, cap, "elements %llu..%llu", (unsigned long long)s->off[0],
                 (unsigned long long)(s->off[0] + s->size[0]));
        return;
    }
    size_t n = (size_t)snprintf(buf, cap, "chunk [");
    for (int d = 0; d < s->ndim && n < cap; d++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%llu:%llu", d ? ", " : "", (unsigned long long)s->off[d],
                              (unsigned long long)(s->off[d] + s->size[d]));
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

/* integers of a JSON array of exactly n entries, each in [0, 2^53] */
static int u53array(const lms_json *o, const char *key, int n, uint64_t *v) {
    const lms_json *a = lms_json_get(o, key);
    if (!a || a->type != LMS_JSON_ARRAY || (int)a->count != n) return 0;
    int d = 0;
    for (const lms_json *x = a->child; x; x = x->next, d++) {
        int64_t y;
        if (!lms_json_int(x, 0, (int64_t)LIM53, &y)) return 0;
        v[d] = (uint64_t)y;
    }
    return 1;
}

lms_status ckpt_parse_chunk(const lms_json *q, const lms_ckpt_tensor *t, int version, const char *path,
                            lms_ckpt_slice *s) {
    uint64_t dims[LMS_CKPT_MAX_DIMS];
    s->ndim = space(t, version, dims);
    int ok;
    if (version >= 2) {
        ok = u53array(q, "offsets", s->ndim, s->off) && u53array(q, "sizes", s->ndim, s->size);
    } else {
        int64_t a = 0, c = 0; /* read only when ok, but a failed parse must not leave them unset */
        ok = lms_json_get_int(q, "start", 0, (int64_t)LIM53, &a) && lms_json_get_int(q, "count", 0, (int64_t)LIM53, &c);
        s->off[0] = (uint64_t)a;
        s->size[0] = (uint64_t)c;
    }
    if (!ok)
        return lms_errorf(LMS_ERR_FORMAT, "'%s': a slice of tensor \"%s\" is malformed (%s: integers, one per "
                          "dimension of the tensor): the checkpoint index is corrupt (resume from another "
                          "checkpoint)", path, t->name, version >= 2 ? "\"offsets\" and \"sizes\"" : "\"start\", \"count\"");
    uint64_t numel = 1, end, bytes;
    int inside = 1;
    for (int d = 0; d < s->ndim && inside; d++)
        inside = !lms_add_overflow(s->off[d], s->size[d], &end) && end <= dims[d] &&
                 !lms_mul_overflow(numel, s->size[d], &numel);
    if (!inside || lms_mul_overflow(numel, 4, &bytes) || lms_add_overflow(s->offset, bytes, &end) ||
        s->offset < CKPT_SHARD_HEADER) {
        char c[160];
        describe(s, c, sizeof c);
        return lms_errorf(LMS_ERR_FORMAT, "'%s': a slice of tensor \"%s\" (%s, offset %llu) lies outside the "
                          "tensor or before the shard data: the checkpoint index is corrupt (resume from another "
                          "checkpoint)", path, t->name, c, (unsigned long long)s->offset);
    }
    return LMS_OK;
}

static int cmp_off0(const void *a, const void *b) {
    const lms_ckpt_slice *x = a, *y = b;
    return x->off[0] < y->off[0] ? -1 : x->off[0] > y->off[0];
}

lms_status ckpt_check_tiling(lms_ckpt_tensor *t, int version, const char *path) {
    uint64_t dims[LMS_CKPT_MAX_DIMS], numel = 1;
    const int nd = space(t, version, dims);
    for (int d = 0; d < nd; d++) numel *= dims[d];
    qsort(t->slices, (size_t)t->nslices, sizeof *t->slices, cmp_off0);
    if (nd == 1) { /* runs: each must start where the previous ended */
        uint64_t next = 0;
        for (int i = 0; i < t->nslices; i++) {
            if (t->slices[i].off[0] != next)
                return lms_errorf(LMS_ERR_FORMAT, "'%s': the slices of tensor \"%s\" do not cover it exactly (%s at "
                                  "element %llu): the checkpoint index is corrupt (resume from another checkpoint)",
                                  path, t->name, t->slices[i].off[0] < next ? "overlap" : "gap",
                                  (unsigned long long)next);
            next += t->slices[i].size[0]; /* <= numel: checked by ckpt_parse_chunk */
        }
        if (next != numel)
            return lms_errorf(LMS_ERR_FORMAT, "'%s': tensor \"%s\" is missing elements %llu..%llu: the checkpoint "
                              "index is corrupt (resume from another checkpoint)", path, t->name,
                              (unsigned long long)next, (unsigned long long)numel);
        return LMS_OK;
    }
    /* boxes: no two overlap (sweep along dimension 0), and together they
     * hold as many elements as the tensor */
    uint64_t total = 0;
    for (int i = 0; i < t->nslices; i++) {
        const lms_ckpt_slice *a = &t->slices[i];
        total += lms_ckpt_slice_numel(a); /* each <= numel; at most 2^31 slices of <= 2^53 */
        for (int j = i + 1; j < t->nslices && t->slices[j].off[0] < a->off[0] + a->size[0]; j++) {
            const lms_ckpt_slice *b = &t->slices[j];
            int meet = 1;
            for (int d = 0; d < nd && meet; d++)
                meet = a->off[d] < b->off[d] + b->size[d] && b->off[d] < a->off[d] + a->size[d];
            if (meet && lms_ckpt_slice_numel(a) && lms_ckpt_slice_numel(b)) {
                char ca[160], cb[160];
                describe(a, ca, sizeof ca);
                describe(b, cb, sizeof cb);
                return lms_errorf(LMS_ERR_FORMAT, "'%s': the slices of tensor \"%s\" do not cover it exactly "
                                  "(overlap: %s and %s): the checkpoint index is corrupt (resume from another "
                                  "checkpoint)", path, t->name, ca, cb);
            }
        }
    }
    if (total != numel)
        return lms_errorf(LMS_ERR_FORMAT, "'%s': the slices of tensor \"%s\" do not cover it exactly (a gap: "
                          "%llu of its %llu elements are missing): the checkpoint index is corrupt (resume from "
                          "another checkpoint)", path, t->name, (unsigned long long)(numel - total),
                          (unsigned long long)numel);
    return LMS_OK;
}

/* Reads one slice's elements into dst and checks its CRC. */
static lms_status read_slice(const lms_ckpt *ck, const lms_ckpt_tensor *t, const lms_ckpt_slice *s, float *dst) {
    char *p = ckpt_join(ck->dir, s->file);
    if (!p) return lms_errorf(LMS_ERR_OOM, "out of memory");
    FILE *f = NULL;
    lms_status st = lms_fopen_regular(p, &f);
    unsigned char h[CKPT_SHARD_HEADER];
    struct stat sb;
    const uint64_t n = lms_ckpt_slice_numel(s), bytes = n * sizeof(float), end = s->offset + bytes; /* checked */
    char c[160];
    describe(s, c, sizeof c);
    if (st != LMS_OK) {
        lms_error_context(st, "checkpoint '%s': shard of tensor %s: the checkpoint is incomplete (resume from "
                          "another one)", ck->dir, t->name);
        goto done;
    }
    if (fread(h, 1, sizeof h, f) != sizeof h || memcmp(h, CKPT_SHARD_MAGIC, 4) != 0) {
        st = lms_errorf(LMS_ERR_FORMAT, "'%s' is not an lmscale checkpoint shard (bad magic): the "
                        "checkpoint is corrupt (resume from another one)", p);
        goto done;
    }
    uint32_t ver;
    memcpy(&ver, h + 4, 4);
    if (ver != (uint32_t)ck->version) {
        st = lms_errorf(LMS_ERR_FORMAT, "'%s' is shard version %u, its index.json version %d: the checkpoint "
                        "is corrupt (resume from another one)", p, ver, ck->version);
        goto done;
    }
    if (fstat(fileno(f), &sb) != 0 || (uint64_t)sb.st_size < end || fseeko(f, (off_t)s->offset, SEEK_SET) != 0 ||
        fread(dst, sizeof(float), n, f) != n) {
        st = lms_errorf(LMS_ERR_FORMAT, "checkpoint shard '%s' is truncated: tensor %s needs bytes %llu..%llu "
                        "(the save was cut short; resume from another checkpoint)", p, t->name,
                        (unsigned long long)s->offset, (unsigned long long)end);
        goto done;
    }
    if (lms_crc32(0, dst, bytes) != s->crc32) {
        st = lms_errorf(LMS_ERR_FORMAT, "checksum mismatch in tensor %s (%s) of '%s': the checkpoint is corrupt "
                        "(resume from another checkpoint)", t->name, c, p);
        goto done;
    }
    for (uint64_t k = 0; k < n; k++) /* lmscale writes finite values only */
        if (!isfinite(dst[k])) {
            st = lms_errorf(LMS_ERR_NUMERIC, "checkpoint '%s': tensor %s holds %s at element %llu of %s (in '%s'): "
                            "it was saved from a diverged run; resume from an earlier checkpoint", ck->dir, t->name,
                            isnan(dst[k]) ? "NaN" : "an infinity", (unsigned long long)k, c, p);
            break;
        }
done:
    if (f) fclose(f);
    free(p);
    return st;
}

/* Places chunk data (row-major in s's shape) into the dense tensor dst. */
static void scatter(const lms_ckpt_slice *s, const uint64_t *dims, const float *src, float *dst) {
    const int nd = s->ndim;
    uint64_t idx[LMS_CKPT_MAX_DIMS] = {0}, rows = 1;
    for (int d = 0; d < nd - 1; d++) rows *= s->size[d];
    const uint64_t w = s->size[nd - 1];
    for (uint64_t r = 0; r < rows; r++) {
        uint64_t lin = 0;
        for (int d = 0; d < nd; d++) lin = lin * dims[d] + s->off[d] + (d < nd - 1 ? idx[d] : 0);
        memcpy(dst + lin, src + r * w, sizeof(float) * w);
        for (int d = nd - 2; d >= 0; d--) { /* next row index, last dimension fastest */
            if (++idx[d] < s->size[d]) break;
            idx[d] = 0;
        }
    }
}

lms_status lms_ckpt_read_tensor(const lms_ckpt *ck, const char *name, float *dst, uint64_t numel) {
    const lms_ckpt_tensor *t = lms_ckpt_find_tensor(ck, name);
    if (!t)
        return lms_errorf(LMS_ERR_FORMAT, "checkpoint '%s' has no tensor %s (it was written for another "
                          "model; check --resume)", ck->dir, name);
    uint64_t dims[LMS_CKPT_MAX_DIMS], n = 1;
    const int nd = space(t, ck->version, dims);
    for (int d = 0; d < nd; d++) n *= dims[d];
    if (n != numel)
        return lms_errorf(LMS_ERR_FORMAT, "checkpoint '%s': tensor %s has %llu elements, the model expects "
                          "%llu", ck->dir, name, (unsigned long long)n, (unsigned long long)numel);
    /* lms_ckpt_open checked that the chunks lie inside the tensor and tile
     * it exactly; checked again here, overflow-safe, before any write */
    uint64_t covered = 0, end;
    for (int i = 0; i < t->nslices; i++) {
        const lms_ckpt_slice *s = &t->slices[i];
        int ok = s->ndim == nd;
        for (int d = 0; d < nd && ok; d++) ok = !lms_add_overflow(s->off[d], s->size[d], &end) && end <= dims[d];
        if (!ok)
            return lms_errorf(LMS_ERR_FORMAT, "checkpoint '%s': a slice of tensor %s lies outside it: the index "
                              "is corrupt", ck->dir, name);
        covered += lms_ckpt_slice_numel(s);
    }
    if (covered != numel)
        return lms_errorf(LMS_ERR_FORMAT, "checkpoint '%s': the slices of tensor %s do not cover it exactly: the "
                          "index is corrupt", ck->dir, name);
    float *tmp = NULL;
    lms_status st = LMS_OK;
    for (int i = 0; i < t->nslices && st == LMS_OK; i++) {
        const lms_ckpt_slice *s = &t->slices[i];
        /* contiguous in dst when every dimension after the first one of
         * size > 1 is whole: read in place */
        int j = 0;
        while (j < nd - 1 && s->size[j] == 1) j++;
        int whole = 1;
        for (int d = j + 1; d < nd; d++) whole &= s->off[d] == 0 && s->size[d] == dims[d];
        if (whole) {
            uint64_t lin = 0;
            for (int d = 0; d < nd; d++) lin = lin * dims[d] + s->off[d];
            st = read_slice(ck, t, s, dst + lin);
            continue;
        }
        free(tmp);
        tmp = malloc(sizeof(float) * (size_t)lms_ckpt_slice_numel(s));
        if (!tmp) {
            st = lms_errorf(LMS_ERR_OOM, "out of memory reading tensor %s", name);
            break;
        }
        st = read_slice(ck, t, s, tmp);
        if (st == LMS_OK) scatter(s, dims, tmp, dst);
    }
    free(tmp);
    return st;
}
