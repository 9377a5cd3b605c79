/* Checkpoint writing: per-rank shard files with CRC32 per slice, the JSON
 * index, and the atomic commit (temporary directory, fsync files and
 * directory, rename, fsync the parent). Format: docs/checkpoints.md. */
#define _POSIX_C_SOURCE 200809L
#include "ckpt_impl.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

long lms_ckpt_test_crash_bytes(void) {
    const char *s = lms_env("LMS_TEST_CRASH_IN_SAVE");
    if (!s || !*s) return -1;
    char *end;
    long v = strtol(s, &end, 10);
    return (*end || v < 0) ? -1 : v;
}

lms_status ckpt_fsync_path(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return lms_errorf(LMS_ERR_IO, "cannot open '%s' to fsync it: %s", path, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0) return lms_errorf(LMS_ERR_IO, "cannot fsync '%s': %s (disk full?)", path, strerror(e));
    return LMS_OK;
}


/* Removes dir, a checkpoint directory (plain files only), following no
 * symlink: when dir itself is a symlink (or a file) only that name is
 * removed; a symlink inside it is unlinked, never what it points to (the
 * directory is opened O_NOFOLLOW and its entries unlinked relative to that
 * descriptor, so nothing swapped in meanwhile is followed either). A
 * subdirectory is not part of a checkpoint: it is refused, not descended. */
lms_status ckpt_rmtree(const char *dir) {
    struct stat sb;
    if (lstat(dir, &sb) != 0)
        return errno == ENOENT ? LMS_OK : lms_errorf(LMS_ERR_IO, "cannot remove '%s': %s", dir, strerror(errno));
    int fd = S_ISDIR(sb.st_mode) ? open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
    if (fd < 0) { /* a symlink or a file (or became one): remove the name only */
        if (unlink(dir) != 0 && errno != ENOENT)
            return lms_errorf(LMS_ERR_IO, "cannot remove '%s': %s", dir, strerror(errno));
        return LMS_OK;
    }
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        return lms_errorf(LMS_ERR_IO, "cannot open '%s': %s", dir, strerror(e));
    }
    lms_status st = LMS_OK;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (unlinkat(fd, e->d_name, 0) == 0 || errno == ENOENT) continue;
        if (st == LMS_OK)
            st = lms_errorf(LMS_ERR_IO, "cannot remove '%s/%s': %s (a checkpoint directory holds plain files "
                            "only; remove it by hand if it is yours)", dir, e->d_name,
                            errno == EISDIR ? "it is a directory" : strerror(errno));
    }
    closedir(d); /* closes fd */
    if (st == LMS_OK && rmdir(dir) != 0)
        st = lms_errorf(LMS_ERR_IO, "cannot remove '%s': %s", dir, strerror(errno));
    return st;
}

/* Takes root/name out of view first (renamed to root/.trash-name, which no
 * reader looks at), then deletes it: a crash part way leaves either the
 * whole checkpoint or none of it under its step-* name. */
lms_status ckpt_discard(const char *root, const char *name) {
    char trash[300];
    snprintf(trash, sizeof trash, ".trash-%s", name);
    char *from = ckpt_join(root, name), *to = ckpt_join(root, trash);
    lms_status st = from && to ? LMS_OK : lms_errorf(LMS_ERR_OOM, "out of memory");
    if (st == LMS_OK) st = ckpt_rmtree(to); /* one an earlier crash left */
    if (st == LMS_OK && rename(from, to) != 0 && errno != ENOENT)
        st = lms_errorf(LMS_ERR_IO, "cannot rename '%s' to '%s': %s", from, to, strerror(errno));
    if (st == LMS_OK) ckpt_fsync_path(root); /* the rename is durable before the files go */
    if (st == LMS_OK) st = ckpt_rmtree(to);
    free(from);
    free(to);
    return st;
}

char *ckpt_join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s/%s", a, b);
    return s;
}

lms_status lms_ckpt_begin(const char *root, int step, char **tmp_dir) {
    *tmp_dir = NULL;
    LMS_CHECK(lms_mkdirs(root));
    char name[64];
    snprintf(name, sizeof name, ".tmp-step-%08d", step);
    char *t = ckpt_join(root, name);
    if (!t) return lms_errorf(LMS_ERR_OOM, "out of memory");
    lms_status st = ckpt_rmtree(t);
    if (st == LMS_OK && mkdir(t, 0777) != 0)
        st = lms_errorf(LMS_ERR_IO, "cannot create '%s': %s (check that '%s' is writable)", t,
                        strerror(errno), root);
    if (st != LMS_OK) {
        free(t);
        return st;
    }
    *tmp_dir = t;
    return LMS_OK;
}

lms_status lms_ckpt_shard_open(lms_ckpt_shard *s, const char *tmp_dir, int rank, int world) {
    memset(s, 0, sizeof *s);
    snprintf(s->file, sizeof s->file, "shard-%05d-of-%05d.bin", rank, world);
    s->dir = malloc(strlen(tmp_dir) + 1);
    if (!s->dir) return lms_errorf(LMS_ERR_OOM, "out of memory");
    strcpy(s->dir, tmp_dir);
    char *p = ckpt_join(tmp_dir, s->file);
    if (!p) return lms_errorf(LMS_ERR_OOM, "out of memory");
    s->f = fopen(p, "wb");
    lms_status st = LMS_OK;
    if (!s->f)
        st = lms_errorf(LMS_ERR_IO, "cannot create '%s': %s (check that the directory is writable)", p,
                        strerror(errno));
    free(p);
    if (st != LMS_OK) return st;
    /* 16-byte shard header: magic, version, rank, world */
    unsigned char h[CKPT_SHARD_HEADER] = {0};
    uint32_t v[3] = {LMS_CKPT_VERSION, (uint32_t)rank, (uint32_t)world};
    memcpy(h, CKPT_SHARD_MAGIC, 4);
    memcpy(h + 4, v, sizeof v);
    if (fwrite(h, 1, sizeof h, s->f) != sizeof h)
        return lms_errorf(LMS_ERR_IO, "cannot write '%s/%s': %s (disk full?)", tmp_dir, s->file, strerror(errno));
    s->offset = sizeof h;
    s->crash_after = lms_ckpt_test_crash_bytes();
    return LMS_OK;
}

static lms_status shard_write(lms_ckpt_shard *s, const void *data, size_t n) {
    const unsigned char *p = data;
    while (n) {
        size_t chunk = n < (1u << 20) ? n : (1u << 20);
        if (s->crash_after >= 0 && s->written + (long)chunk > s->crash_after) {
            chunk = (size_t)(s->crash_after - s->written);
            if (chunk) fwrite(p, 1, chunk, s->f);
            fflush(s->f);
            _exit(99); /* test hook: a crash in the middle of a save */
        }
        if (fwrite(p, 1, chunk, s->f) != chunk)
            return lms_errorf(LMS_ERR_IO, "cannot write '%s/%s': %s (disk full?)", s->dir, s->file,
                              strerror(errno));
        s->written += (long)chunk;
        p += chunk;
        n -= chunk;
    }
    return LMS_OK;
}

lms_status ckpt_shard_add_slice(lms_ckpt_shard *s, const char *name, int ndim, const int64_t *shape,
                                const lms_ckpt_slice *slice) {
    lms_ckpt_tensor *t = NULL;
    for (int i = 0; i < s->nt; i++)
        if (!strcmp(s->t[i].name, name)) t = &s->t[i];
    if (!t) {
        if (s->nt == s->cap) {
            int cap = s->cap ? 2 * s->cap : 64;
            lms_ckpt_tensor *nt = realloc(s->t, sizeof *nt * (size_t)cap);
            if (!nt) return lms_errorf(LMS_ERR_OOM, "out of memory");
            s->t = nt;
            s->cap = cap;
        }
        t = &s->t[s->nt++];
        memset(t, 0, sizeof *t);
        snprintf(t->name, sizeof t->name, "%s", name);
        t->ndim = ndim;
        for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
    }
    lms_ckpt_slice *ns = realloc(t->slices, sizeof *ns * (size_t)(t->nslices + 1));
    if (!ns) return lms_errorf(LMS_ERR_OOM, "out of memory");
    t->slices = ns;
    t->slices[t->nslices++] = *slice;
    return LMS_OK;
}

uint64_t lms_ckpt_slice_numel(const lms_ckpt_slice *s) {
    uint64_t n = 1;
    for (int d = 0; d < s->ndim; d++) n *= s->size[d];
    return n;
}

lms_status lms_ckpt_shard_put_chunk(lms_ckpt_shard *s, const char *name, int ndim, const int64_t *shape,
                                    const int64_t *off, const int64_t *size, const float *data) {
    LMS_ASSERT(ndim >= 1 && ndim <= LMS_CKPT_MAX_DIMS && strlen(name) < 64);
    lms_ckpt_slice sl;
    memset(&sl, 0, sizeof sl);
    snprintf(sl.file, sizeof sl.file, "%s", s->file);
    sl.offset = s->offset;
    sl.ndim = ndim;
    for (int d = 0; d < ndim; d++) {
        LMS_ASSERT(off[d] >= 0 && size[d] >= 0 && off[d] + size[d] <= shape[d]);
        sl.off[d] = (uint64_t)off[d];
        sl.size[d] = (uint64_t)size[d];
    }
    const uint64_t bytes = lms_ckpt_slice_numel(&sl) * sizeof(float);
    sl.crc32 = lms_crc32(0, data, bytes);
    LMS_CHECK(ckpt_shard_add_slice(s, name, ndim, shape, &sl));
    LMS_CHECK(shard_write(s, data, bytes));
    s->offset += bytes;
    return LMS_OK;
}

/* Puts the run [start, start+count) of the row-major tensor as chunks,
 * dimension d onward (dimensions before d fixed in off): a partial first
 * row of dimension d (recursively), the whole rows, a partial last row. */
static lms_status put_run(lms_ckpt_shard *s, const char *name, int ndim, const int64_t *shape, int d,
                          int64_t *off, int64_t *size, uint64_t start, const float *data, uint64_t count) {
    uint64_t inner = 1;
    for (int k = d + 1; k < ndim; k++) inner *= (uint64_t)shape[k];
    if (count == 0) return LMS_OK;
    if (d == ndim - 1 || (start % inner == 0 && count % inner == 0)) { /* one chunk: whole rows of d */
        off[d] = (int64_t)(start / inner);
        size[d] = (int64_t)(count / inner);
        for (int k = d + 1; k < ndim; k++) {
            off[k] = 0;
            size[k] = shape[k];
        }
        return lms_ckpt_shard_put_chunk(s, name, ndim, shape, off, size, data);
    }
    uint64_t head = start % inner ? inner - start % inner : 0;
    if (head > count) head = count;
    if (head) { /* the rest of row start/inner */
        off[d] = (int64_t)(start / inner);
        size[d] = 1;
        LMS_CHECK(put_run(s, name, ndim, shape, d + 1, off, size, start % inner, data, head));
    }
    uint64_t mid = (count - head) / inner * inner, tail = count - head - mid;
    LMS_CHECK(put_run(s, name, ndim, shape, d, off, size, start + head, data + head, mid));
    if (tail) {
        off[d] = (int64_t)((start + head + mid) / inner);
        size[d] = 1;
        LMS_CHECK(put_run(s, name, ndim, shape, d + 1, off, size, 0, data + head + mid, tail));
    }
    return LMS_OK;
}

lms_status lms_ckpt_shard_put(lms_ckpt_shard *s, const char *name, int ndim, const int64_t *shape,
                              uint64_t start, const float *data, uint64_t count) {
    LMS_ASSERT(ndim >= 1 && ndim <= LMS_CKPT_MAX_DIMS);
    int64_t off[LMS_CKPT_MAX_DIMS] = {0}, size[LMS_CKPT_MAX_DIMS] = {0};
    return put_run(s, name, ndim, shape, 0, off, size, start, data, count);
}

lms_status lms_ckpt_shard_close(lms_ckpt_shard *s) {
    if (!s->f) return LMS_OK;
    lms_status st = LMS_OK;
    if (fflush(s->f) != 0 || fsync(fileno(s->f)) != 0)
        st = lms_errorf(LMS_ERR_IO, "cannot flush '%s/%s': %s (disk full?)", s->dir, s->file, strerror(errno));
    if (fclose(s->f) != 0 && st == LMS_OK)
        st = lms_errorf(LMS_ERR_IO, "cannot close '%s/%s': %s", s->dir, s->file, strerror(errno));
    s->f = NULL;
    return st;
}

void lms_ckpt_shard_free(lms_ckpt_shard *s) {
    if (!s) return;
    if (s->f) fclose(s->f);
    for (int i = 0; i < s->nt; i++) free(s->t[i].slices);
    free(s->t);
    free(s->dir);
    memset(s, 0, sizeof *s);
}

static void write_state(FILE *f, const lms_ckpt_state *st) {
    const lms_gpt_config *c = &st->cfg;
    fprintf(f, "  \"config\": {\"n_layer\": %d, \"n_head\": %d, \"n_embd\": %d, \"n_positions\": %d, "
            "\"vocab_size\": %d, \"padded_vocab_size\": %d},\n", c->L, c->NH, c->C, c->maxT, c->V, c->Vp);
    fprintf(f, "  \"tokenizer\": {\"kind\": ");
    lms_json_write_string(f, st->tok_kind, strlen(st->tok_kind));
    if (!strcmp(st->tok_kind, "bpe")) {
        fprintf(f, ", \"vocab\": ");
        lms_json_write_string(f, st->tok_vocab, strlen(st->tok_vocab));
        fprintf(f, ", \"merges\": ");
        lms_json_write_string(f, st->tok_merges, strlen(st->tok_merges));
        fprintf(f, ", \"vocab_crc32\": %u, \"merges_crc32\": %u", st->tok_vocab_crc, st->tok_merges_crc);
    }
    fprintf(f, "},\n");
    /* floats with 9 significant digits round-trip exactly; u64 as strings */
    fprintf(f, "  \"state\": {\"step\": %d, \"seed\": \"%llu\", \"data_window\": \"%llu\", "
            "\"global_batch\": %d, \"seq_len\": %d, \"data_order\": ", st->step,
            (unsigned long long)st->seed, (unsigned long long)st->data_window, st->global_batch, st->seq_len);
    lms_json_write_string(f, st->data_order, strlen(st->data_order));
    fprintf(f, ",\n    \"schedule\": {\"kind\": \"%s\", \"lr\": %.9g, \"min_lr\": %.9g, \"warmup\": %d, "
            "\"total\": %d},\n", lms_schedule_name(st->sched.kind), st->sched.lr, st->sched.min_lr,
            st->sched.warmup, st->sched.total);
    fprintf(f, "    \"adamw\": {\"beta1\": %.9g, \"beta2\": %.9g, \"eps\": %.9g, \"weight_decay\": %.9g, "
            "\"grad_clip\": %.9g, \"step\": %d}", st->beta1, st->beta2, st->eps, st->weight_decay,
            st->grad_clip, st->adam_step);
    if (st->dtype[0] && strcmp(st->dtype, "fp32") != 0) /* fp32 checkpoints stay as they were */
        fprintf(f, ",\n    \"precision\": {\"dtype\": \"%s\", \"loss_scale\": %.9g, \"clean_steps\": %d, "
                "\"skipped_steps\": %d, \"static_loss_scale\": %.9g, \"min_loss_scale\": %.9g, "
                "\"loss_scale_window\": %d}", st->dtype, st->loss_scale, st->loss_scale_clean, st->skipped_steps,
                st->static_loss_scale, st->min_loss_scale, st->loss_scale_window);
    fprintf(f, "},\n");
}

static lms_status write_index(const char *tmp_dir, const lms_ckpt_state *st, const lms_ckpt_shard *shards,
                              int nshards) {
    char *path = ckpt_join(tmp_dir, "index.json");
    if (!path) return lms_errorf(LMS_ERR_OOM, "out of memory");
    FILE *f = fopen(path, "wb");
    if (!f) {
        lms_status s = lms_errorf(LMS_ERR_IO, "cannot create '%s': %s", path, strerror(errno));
        free(path);
        return s;
    }
    fprintf(f, "{\n  \"format\": \"lmscale-checkpoint\",\n  \"version\": %d,\n", LMS_CKPT_VERSION);
    write_state(f, st);
    ckpt_write_run(f, &st->run);
    fprintf(f, "  \"shards\": [");
    for (int r = 0; r < nshards; r++) fprintf(f, "%s\"%s\"", r ? ", " : "", shards[r].file);
    fprintf(f, "],\n  \"tensors\": [\n");
    /* tensors in the order of shard 0, slices gathered from every shard */
    int first = 1;
    for (int r = 0; r < nshards; r++)
        for (int i = 0; i < shards[r].nt; i++) {
            const lms_ckpt_tensor *t = &shards[r].t[i];
            int seen = 0; /* already listed from an earlier shard */
            for (int q = 0; q < r && !seen; q++)
                for (int k = 0; k < shards[q].nt; k++)
                    if (!strcmp(shards[q].t[k].name, t->name)) seen = 1;
            if (seen) continue;
            fprintf(f, "%s    {\"name\": ", first ? "" : ",\n");
            first = 0;
            lms_json_write_string(f, t->name, strlen(t->name));
            fprintf(f, ", \"dtype\": \"F32\", \"shape\": [");
            for (int d = 0; d < t->ndim; d++) fprintf(f, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
            fprintf(f, "], \"slices\": [");
            int fs = 1;
            for (int q = r; q < nshards; q++)
                for (int k = 0; k < shards[q].nt; k++) {
                    const lms_ckpt_tensor *u = &shards[q].t[k];
                    if (strcmp(u->name, t->name)) continue;
                    for (int j = 0; j < u->nslices; j++) {
                        const lms_ckpt_slice *sl = &u->slices[j];
                        fprintf(f, "%s{\"file\": \"%s\", \"offset\": %llu, \"offsets\": [", fs ? "" : ", ",
                                sl->file, (unsigned long long)sl->offset);
                        for (int d = 0; d < sl->ndim; d++)
                            fprintf(f, "%s%llu", d ? ", " : "", (unsigned long long)sl->off[d]);
                        fprintf(f, "], \"sizes\": [");
                        for (int d = 0; d < sl->ndim; d++)
                            fprintf(f, "%s%llu", d ? ", " : "", (unsigned long long)sl->size[d]);
                        fprintf(f, "], \"crc32\": %u}", sl->crc32);
                        fs = 0;
                    }
                }
            fprintf(f, "]}");
        }
    fprintf(f, "\n  ]\n}\n");
    lms_status s = LMS_OK;
    if (ferror(f) || fflush(f) != 0 || fsync(fileno(f)) != 0)
        s = lms_errorf(LMS_ERR_IO, "cannot write '%s': %s (disk full?)", path, strerror(errno));
    if (fclose(f) != 0 && s == LMS_OK) s = lms_errorf(LMS_ERR_IO, "cannot close '%s'", path);
    free(path);
    return s;
}

lms_status lms_ckpt_finish(const char *root, const char *tmp_dir, int step, const lms_ckpt_state *st,
                           const lms_ckpt_shard *shards, int nshards) {
    char name[64];
    snprintf(name, sizeof name, "step-%08d", step);
    char *final = ckpt_join(root, name);
    if (!final) return lms_errorf(LMS_ERR_OOM, "out of memory");
    lms_status s = write_index(tmp_dir, st, shards, nshards);
    if (s == LMS_OK) s = ckpt_fsync_path(tmp_dir);
    /* an existing checkpoint of the same step (a re-run) is replaced: moved
     * out of view, the new one renamed in, then the old one deleted */
    char trash[80];
    snprintf(trash, sizeof trash, ".trash-%s", name);
    char *old = ckpt_join(root, trash);
    struct stat sb;
    int replacing = 0;
    if (!old && s == LMS_OK) s = lms_errorf(LMS_ERR_OOM, "out of memory");
    if (s == LMS_OK && lstat(final, &sb) == 0) {
        s = ckpt_rmtree(old);
        if (s == LMS_OK && rename(final, old) != 0)
            s = lms_errorf(LMS_ERR_IO, "cannot rename '%s' to '%s': %s", final, old, strerror(errno));
        replacing = s == LMS_OK;
    }
    if (s == LMS_OK && rename(tmp_dir, final) != 0)
        s = lms_errorf(LMS_ERR_IO, "cannot rename '%s' to '%s': %s", tmp_dir, final, strerror(errno));
    if (s == LMS_OK) s = ckpt_fsync_path(root);
    if (s != LMS_OK) {
        ckpt_rmtree(tmp_dir);
        if (replacing) rename(old, final); /* put the earlier one back */
    } else if (replacing) {
        ckpt_rmtree(old);
    }
    free(old);
    free(final);
    return s;
}
