/* Checkpoint reading: the index, tensors assembled from slices with CRC
 * checks, verification, picking the newest valid checkpoint of a directory,
 * and the one-process save/load of the training state. */
#define _POSIX_C_SOURCE 200809L
#include "ckpt_impl.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

lms_status ckpt_read_json(const char *path, lms_json **out) {
    unsigned char *buf;
    size_t n;
    LMS_CHECK(lms_read_file(path, &buf, &n));
    lms_status st = lms_json_parse((const char *)buf, n, path, out);
    free(buf);
    return st;
}

static int num(const lms_json *o, const char *key, double *v) {
    const lms_json *j = lms_json_get(o, key);
    if (!j || j->type != LMS_JSON_NUMBER) return 0;
    *v = j->number;
    return 1;
}

static int u64str(const lms_json *o, const char *key, uint64_t *v) {
    const lms_json *j = lms_json_get(o, key);
    if (!j || j->type != LMS_JSON_STRING) return 0;
    char *end;
    *v = strtoull(j->str, &end, 10);
    return *j->str && !*end;
}

static int str(const lms_json *o, const char *key, char *dst, size_t cap) {
    const lms_json *j = lms_json_get(o, key);
    if (!j || j->type != LMS_JSON_STRING || j->str_len >= cap) return 0;
    memcpy(dst, j->str, j->str_len + 1);
    return 1;
}

#define BAD(what)                                                                                  \
    do {                                                                                           \
        st = lms_errorf(LMS_ERR_FORMAT, "'%s': %s is missing or invalid: the checkpoint index is "  \
                        "corrupt (resume from another checkpoint)", path, what);                    \
        goto fail;                                                                                 \
    } while (0)

static lms_status parse_state(const lms_json *root, const char *path, lms_ckpt_state *s) {
    lms_status st = LMS_OK;
    double v[8];
    const lms_json *c = lms_json_get(root, "config");
    if (!num(c, "n_layer", &v[0]) || !num(c, "n_head", &v[1]) || !num(c, "n_embd", &v[2]) ||
        !num(c, "n_positions", &v[3]) || !num(c, "vocab_size", &v[4]) || !num(c, "padded_vocab_size", &v[5]))
        BAD("\"config\"");
    s->cfg.L = (int)v[0];
    s->cfg.NH = (int)v[1];
    s->cfg.C = (int)v[2];
    s->cfg.maxT = (int)v[3];
    s->cfg.V = (int)v[4];
    if (lms_gpt_config_validate(&s->cfg) != LMS_OK || s->cfg.Vp != (int)v[5]) BAD("\"config\" (not a valid model)");
    const lms_json *t = lms_json_get(root, "tokenizer");
    if (!str(t, "kind", s->tok_kind, sizeof s->tok_kind)) BAD("\"tokenizer\".\"kind\"");
    if (!strcmp(s->tok_kind, "bpe")) {
        if (!str(t, "vocab", s->tok_vocab, sizeof s->tok_vocab) ||
            !str(t, "merges", s->tok_merges, sizeof s->tok_merges) || !num(t, "vocab_crc32", &v[0]) ||
            !num(t, "merges_crc32", &v[1]))
            BAD("\"tokenizer\" (bpe files)");
        s->tok_vocab_crc = (uint32_t)v[0];
        s->tok_merges_crc = (uint32_t)v[1];
    }
    const lms_json *S = lms_json_get(root, "state");
    if (!num(S, "step", &v[0]) || !u64str(S, "seed", &s->seed) || !u64str(S, "data_window", &s->data_window) ||
        !num(S, "global_batch", &v[1]) || !num(S, "seq_len", &v[2]) ||
        !str(S, "data_order", s->data_order, sizeof s->data_order))
        BAD("\"state\"");
    s->step = (int)v[0];
    s->global_batch = (int)v[1];
    s->seq_len = (int)v[2];
    const lms_json *sc = lms_json_get(S, "schedule");
    char kind[32];
    if (!str(sc, "kind", kind, sizeof kind) || lms_schedule_parse(kind, &s->sched.kind) != LMS_OK ||
        !num(sc, "lr", &v[0]) || !num(sc, "min_lr", &v[1]) || !num(sc, "warmup", &v[2]) || !num(sc, "total", &v[3]))
        BAD("\"state\".\"schedule\"");
    s->sched.lr = (float)v[0];
    s->sched.min_lr = (float)v[1];
    s->sched.warmup = (int)v[2];
    s->sched.total = (int)v[3];
    const lms_json *a = lms_json_get(S, "adamw");
    if (!num(a, "beta1", &v[0]) || !num(a, "beta2", &v[1]) || !num(a, "eps", &v[2]) ||
        !num(a, "weight_decay", &v[3]) || !num(a, "grad_clip", &v[4]) || !num(a, "step", &v[5]))
        BAD("\"state\".\"adamw\"");
    s->beta1 = (float)v[0];
    s->beta2 = (float)v[1];
    s->eps = (float)v[2];
    s->weight_decay = (float)v[3];
    s->grad_clip = (float)v[4];
    s->adam_step = (int)v[5];
fail:
    return st;
}

static lms_status parse_tensors(const lms_json *root, const char *path, lms_ckpt *ck) {
    lms_status st = LMS_OK;
    const lms_json *ts = lms_json_get(root, "tensors");
    if (!ts || ts->type != LMS_JSON_ARRAY) BAD("\"tensors\"");
    ck->tensors = calloc(ts->count ? ts->count : 1, sizeof *ck->tensors);
    if (!ck->tensors) return lms_errorf(LMS_ERR_OOM, "out of memory");
    for (const lms_json *j = ts->child; j; j = j->next) {
        lms_ckpt_tensor *t = &ck->tensors[ck->ntensors++];
        char dtype[8];
        if (!str(j, "name", t->name, sizeof t->name)) BAD("a tensor's \"name\"");
        if (!str(j, "dtype", dtype, sizeof dtype) || strcmp(dtype, "F32"))
            BAD("a tensor's \"dtype\" (this version stores F32)");
        const lms_json *sh = lms_json_get(j, "shape"), *sl = lms_json_get(j, "slices");
        if (!sh || sh->type != LMS_JSON_ARRAY || sh->count < 1 || sh->count > LMS_CKPT_MAX_DIMS) BAD("a tensor's \"shape\"");
        for (const lms_json *d = sh->child; d; d = d->next) {
            if (d->type != LMS_JSON_NUMBER || d->number < 0) BAD("a tensor's \"shape\"");
            t->shape[t->ndim++] = (int64_t)d->number;
        }
        if (!sl || sl->type != LMS_JSON_ARRAY) BAD("a tensor's \"slices\"");
        t->slices = calloc(sl->count ? sl->count : 1, sizeof *t->slices);
        if (!t->slices) return lms_errorf(LMS_ERR_OOM, "out of memory");
        for (const lms_json *q = sl->child; q; q = q->next) {
            lms_ckpt_slice *s = &t->slices[t->nslices++];
            double o, a, c, crc;
            if (!str(q, "file", s->file, sizeof s->file) || strchr(s->file, '/') || !num(q, "offset", &o) ||
                !num(q, "start", &a) || !num(q, "count", &c) || !num(q, "crc32", &crc) || o < 0 || a < 0 || c < 0)
                BAD("a slice of a tensor");
            s->offset = (uint64_t)o;
            s->start = (uint64_t)a;
            s->count = (uint64_t)c;
            s->crc32 = (uint32_t)crc;
        }
    }
fail:
    return st;
}

lms_status lms_ckpt_open(lms_ckpt *ck, const char *dir) {
    memset(ck, 0, sizeof *ck);
    lms_status st = LMS_OK;
    lms_json *root = NULL;
    char *path = ckpt_join(dir, "index.json");
    ck->dir = malloc(strlen(dir) + 1);
    if (!path || !ck->dir) {
        st = lms_errorf(LMS_ERR_OOM, "out of memory");
        goto fail;
    }
    strcpy(ck->dir, dir);
    struct stat sb;
    if (stat(path, &sb) != 0) {
        st = lms_errorf(LMS_ERR_IO, "'%s' is not a checkpoint: '%s' is missing (give a step-NNNNNNNN "
                        "directory written by 'lmscale train --save', or the directory holding them)", dir, path);
        goto fail;
    }
    LMS_TRY(ckpt_read_json(path, &root));
    char fmt[64];
    double ver = 0;
    if (!str(root, "format", fmt, sizeof fmt) || strcmp(fmt, "lmscale-checkpoint")) {
        st = lms_errorf(LMS_ERR_FORMAT, "'%s' is not an lmscale checkpoint index (its \"format\" is not "
                        "\"lmscale-checkpoint\")", path);
        goto fail;
    }
    if (!num(root, "version", &ver) || ver != LMS_CKPT_VERSION) {
        st = lms_errorf(LMS_ERR_FORMAT, "'%s' is checkpoint version %g; this lmscale reads version %d "
                        "(use the lmscale that wrote it)", path, ver, LMS_CKPT_VERSION);
        goto fail;
    }
    ck->version = (int)ver;
    LMS_TRY(parse_state(root, path, &ck->state));
    LMS_TRY(parse_tensors(root, path, ck));
    lms_json_free(root);
    free(path);
    return LMS_OK;
fail:
    lms_json_free(root);
    free(path);
    lms_ckpt_close(ck);
    return st;
}

void lms_ckpt_close(lms_ckpt *ck) {
    if (!ck) return;
    for (int i = 0; i < ck->ntensors; i++) free(ck->tensors[i].slices);
    free(ck->tensors);
    free(ck->dir);
    memset(ck, 0, sizeof *ck);
}

const lms_ckpt_tensor *lms_ckpt_find_tensor(const lms_ckpt *ck, const char *name) {
    for (int i = 0; i < ck->ntensors; i++)
        if (!strcmp(ck->tensors[i].name, name)) return &ck->tensors[i];
    return NULL;
}

/* Reads one slice into dst (count floats) and checks its CRC. */
static lms_status read_slice(const lms_ckpt *ck, const lms_ckpt_tensor *t, const lms_ckpt_slice *s, float *dst) {
    char *p = ckpt_join(ck->dir, s->file);
    if (!p) return lms_errorf(LMS_ERR_OOM, "out of memory");
    lms_status st = LMS_OK;
    FILE *f = fopen(p, "rb");
    unsigned char h[CKPT_SHARD_HEADER];
    if (!f) {
        st = lms_errorf(LMS_ERR_IO, "checkpoint '%s': cannot open shard '%s' (tensor %s): %s: the checkpoint "
                        "is incomplete (resume from another one)", ck->dir, p, t->name, strerror(errno));
        goto done;
    }
    if (fread(h, 1, sizeof h, f) != sizeof h || memcmp(h, CKPT_SHARD_MAGIC, 4) != 0) {
        st = lms_errorf(LMS_ERR_FORMAT, "'%s' is not an lmscale checkpoint shard (bad magic): the "
                        "checkpoint is corrupt (resume from another one)", p);
        goto done;
    }
    uint32_t ver;
    memcpy(&ver, h + 4, 4);
    if (ver != LMS_CKPT_VERSION) {
        st = lms_errorf(LMS_ERR_FORMAT, "'%s' is shard version %u; this lmscale reads version %d", p, ver,
                        LMS_CKPT_VERSION);
        goto done;
    }
    if (fseeko(f, (off_t)s->offset, SEEK_SET) != 0 || fread(dst, sizeof(float), s->count, f) != s->count) {
        st = lms_errorf(LMS_ERR_FORMAT, "checkpoint shard '%s' is truncated: tensor %s needs bytes %llu..%llu "
                        "(the save was cut short; resume from another checkpoint)", p, t->name,
                        (unsigned long long)s->offset, (unsigned long long)(s->offset + s->count * 4));
        goto done;
    }
    if (lms_crc32(0, dst, s->count * sizeof(float)) != s->crc32)
        st = lms_errorf(LMS_ERR_FORMAT, "checksum mismatch in tensor %s (elements %llu..%llu) of '%s': the "
                        "checkpoint is corrupt (resume from another checkpoint)", t->name,
                        (unsigned long long)s->start, (unsigned long long)(s->start + s->count), p);
done:
    if (f) fclose(f);
    free(p);
    return st;
}

static int cmp_start(const void *a, const void *b) {
    const lms_ckpt_slice *x = *(const lms_ckpt_slice *const *)a, *y = *(const lms_ckpt_slice *const *)b;
    return x->start < y->start ? -1 : x->start > y->start;
}

lms_status lms_ckpt_read_tensor(const lms_ckpt *ck, const char *name, float *dst, uint64_t numel) {
    const lms_ckpt_tensor *t = lms_ckpt_find_tensor(ck, name);
    if (!t)
        return lms_errorf(LMS_ERR_FORMAT, "checkpoint '%s' has no tensor %s (it was written for another "
                          "model; check --resume)", ck->dir, name);
    uint64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= (uint64_t)t->shape[d];
    if (n != numel)
        return lms_errorf(LMS_ERR_FORMAT, "checkpoint '%s': tensor %s has %llu elements, the model expects "
                          "%llu", ck->dir, name, (unsigned long long)n, (unsigned long long)numel);
    const lms_ckpt_slice **order = malloc(sizeof *order * (size_t)(t->nslices ? t->nslices : 1));
    if (!order) return lms_errorf(LMS_ERR_OOM, "out of memory");
    for (int i = 0; i < t->nslices; i++) order[i] = &t->slices[i];
    qsort(order, (size_t)t->nslices, sizeof *order, cmp_start);
    lms_status st = LMS_OK;
    uint64_t next = 0; /* slices must tile [0, numel) exactly */
    for (int i = 0; i < t->nslices && st == LMS_OK; i++) {
        if (order[i]->start != next || order[i]->start + order[i]->count > numel) {
            st = lms_errorf(LMS_ERR_FORMAT, "checkpoint '%s': the slices of tensor %s do not cover it exactly "
                            "(gap or overlap at element %llu): the index is corrupt", ck->dir, name,
                            (unsigned long long)next);
            break;
        }
        st = read_slice(ck, t, order[i], dst + order[i]->start);
        next += order[i]->count;
    }
    if (st == LMS_OK && next != numel)
        st = lms_errorf(LMS_ERR_FORMAT, "checkpoint '%s': tensor %s is missing elements %llu..%llu: the index "
                        "is corrupt", ck->dir, name, (unsigned long long)next, (unsigned long long)numel);
    free(order);
    return st;
}

lms_status lms_ckpt_verify(const lms_ckpt *ck) {
    for (int i = 0; i < ck->ntensors; i++) {
        const lms_ckpt_tensor *t = &ck->tensors[i];
        uint64_t n = 1;
        for (int d = 0; d < t->ndim; d++) n *= (uint64_t)t->shape[d];
        float *buf = malloc(sizeof(float) * (n ? n : 1));
        if (!buf) return lms_errorf(LMS_ERR_OOM, "out of memory verifying '%s'", ck->dir);
        lms_status st = lms_ckpt_read_tensor(ck, t->name, buf, n);
        free(buf);
        if (st != LMS_OK) return st;
    }
    return LMS_OK;
}

static int step_of(const char *name) {
    if (strncmp(name, "step-", 5) != 0) return -1;
    char *end;
    long v = strtol(name + 5, &end, 10);
    return (*end || v < 0 || end == name + 5) ? -1 : (int)v;
}

/* step numbers of the step-* subdirectories of root, descending */
static lms_status list_steps(const char *root, int **steps, int *n) {
    *steps = NULL;
    *n = 0;
    DIR *d = opendir(root);
    if (!d) return lms_errorf(LMS_ERR_IO, "cannot open '%s': %s (check the path)", root, strerror(errno));
    struct dirent *e;
    int cap = 0;
    while ((e = readdir(d))) {
        int s = step_of(e->d_name);
        if (s < 0) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            int *ns = realloc(*steps, sizeof(int) * (size_t)cap);
            if (!ns) {
                closedir(d);
                return lms_errorf(LMS_ERR_OOM, "out of memory");
            }
            *steps = ns;
        }
        (*steps)[(*n)++] = s;
    }
    closedir(d);
    for (int i = 1; i < *n; i++) /* insertion sort, descending */
        for (int j = i; j > 0 && (*steps)[j] > (*steps)[j - 1]; j--) {
            int t = (*steps)[j];
            (*steps)[j] = (*steps)[j - 1];
            (*steps)[j - 1] = t;
        }
    return LMS_OK;
}

lms_status lms_ckpt_resolve(const char *path, const lms_logger *lg, char **out) {
    *out = NULL;
    char *idx = ckpt_join(path, "index.json");
    if (!idx) return lms_errorf(LMS_ERR_OOM, "out of memory");
    struct stat sb;
    int is_ckpt = stat(idx, &sb) == 0;
    free(idx);
    if (is_ckpt) {
        *out = malloc(strlen(path) + 1);
        if (!*out) return lms_errorf(LMS_ERR_OOM, "out of memory");
        strcpy(*out, path);
        return LMS_OK;
    }
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return lms_errorf(LMS_ERR_IO, "--resume '%s': no such directory (give a checkpoint directory or the "
                          "--save directory holding step-NNNNNNNN checkpoints)", path);
    int *steps, n;
    LMS_CHECK(list_steps(path, &steps, &n));
    for (int i = 0; i < n; i++) {
        char name[64];
        snprintf(name, sizeof name, "step-%08d", steps[i]);
        char *dir = ckpt_join(path, name);
        if (!dir) break;
        lms_ckpt ck;
        lms_status st = lms_ckpt_open(&ck, dir);
        if (st == LMS_OK) {
            st = lms_ckpt_verify(&ck);
            lms_ckpt_close(&ck);
        }
        if (st == LMS_OK) {
            free(steps);
            *out = dir;
            return LMS_OK;
        }
        lms_log(lg, LMS_LOG_WARN, "skipping checkpoint '%s': %s", dir, lms_last_error());
        free(dir);
    }
    free(steps);
    return lms_errorf(LMS_ERR_IO, "--resume '%s': no valid checkpoint found (%d step-* director%s, none "
                      "complete and intact): start without --resume or give another directory", path, n,
                      n == 1 ? "y" : "ies");
}

void lms_ckpt_state_init(lms_ckpt_state *st, const lms_gpt_config *cfg) {
    memset(st, 0, sizeof *st);
    st->cfg = *cfg;
    snprintf(st->tok_kind, sizeof st->tok_kind, "bytes");
    snprintf(st->data_order, sizeof st->data_order, "random");
}

static void tensor_name(char *dst, size_t cap, const char *group, const char *name) {
    snprintf(dst, cap, "%s%s", group, name);
}

#define G_MODEL "model."
#define G_M "optim.exp_avg."
#define G_V "optim.exp_avg_sq."

static int64_t dims(const lms_tensor_view *v, int64_t *shape) {
    shape[0] = v->shape[0];
    shape[1] = v->shape[1];
    return v->ndim;
}

/* keeps the newest keep steps under root (all when keep <= 0), removing
 * older step-* and stale .tmp-step-* directories (one writer per root) */
void ckpt_prune(const char *root, int keep, const lms_logger *lg) {
    int *steps, n;
    if (list_steps(root, &steps, &n) != LMS_OK) return;
    for (int i = keep > 0 ? keep : n; i < n; i++) {
        char name[64];
        snprintf(name, sizeof name, "step-%08d", steps[i]);
        char *dir = ckpt_join(root, name);
        if (dir && ckpt_rmtree(dir) != LMS_OK && lg)
            lms_log(lg, LMS_LOG_WARN, "cannot remove old checkpoint '%s': %s", dir, lms_last_error());
        free(dir);
    }
    free(steps);
    /* partial saves a crash left behind */
    DIR *d = opendir(root);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (strncmp(e->d_name, ".tmp-step-", 10) != 0) continue;
        char *dir = ckpt_join(root, e->d_name);
        if (dir && ckpt_rmtree(dir) != LMS_OK && lg)
            lms_log(lg, LMS_LOG_WARN, "cannot remove partial checkpoint '%s': %s", dir, lms_last_error());
        free(dir);
    }
    if (d) closedir(d);
}

lms_status lms_ckpt_save_train(const char *root, const lms_ckpt_state *state, const lms_gpt *m,
                               const lms_adamw *opt, int keep_last, char **saved_path) {
    lms_ckpt_piece *pc = calloc((size_t)m->num_tensors * 3, sizeof *pc);
    if (!pc) return lms_errorf(LMS_ERR_OOM, "out of memory");
    const char *groups[3] = {G_MODEL, G_M, G_V};
    const float *bufs[3] = {m->params, opt ? opt->m : NULL, opt ? opt->v : NULL};
    int n = 0;
    for (int g = 0; g < 3; g++) {
        if (!bufs[g]) continue;
        for (int i = 0; i < m->num_tensors; i++, n++) {
            const lms_tensor_view *v = &m->tensors[i];
            tensor_name(pc[n].name, sizeof pc[n].name, groups[g], v->name);
            pc[n].ndim = (int)dims(v, pc[n].shape);
            pc[n].count = v->numel;
            pc[n].data = bufs[g] + v->offset;
        }
    }
    lms_status st = lms_ckpt_save_pieces(root, state, NULL, pc, n, keep_last, saved_path);
    free(pc);
    return st;
}

lms_status lms_ckpt_load_train(const lms_ckpt *ck, lms_gpt *m, lms_adamw *opt) {
    char nm[96];
    for (int i = 0; i < m->num_tensors; i++) {
        const lms_tensor_view *v = &m->tensors[i];
        tensor_name(nm, sizeof nm, G_MODEL, v->name);
        const lms_ckpt_tensor *t = lms_ckpt_find_tensor(ck, nm);
        if (t && (t->ndim != v->ndim || t->shape[0] != v->shape[0] || (v->ndim > 1 && t->shape[1] != v->shape[1])))
            return lms_errorf(LMS_ERR_FORMAT, "checkpoint '%s': tensor %s has shape (%lld, %lld), the model "
                              "expects (%d, %d)", ck->dir, nm, (long long)t->shape[0],
                              (long long)(t->ndim > 1 ? t->shape[1] : 1), v->shape[0], v->shape[1]);
        LMS_CHECK(lms_ckpt_read_tensor(ck, nm, m->params + v->offset, v->numel));
        if (opt) {
            tensor_name(nm, sizeof nm, G_M, v->name);
            LMS_CHECK(lms_ckpt_read_tensor(ck, nm, opt->m + v->offset, v->numel));
            tensor_name(nm, sizeof nm, G_V, v->name);
            LMS_CHECK(lms_ckpt_read_tensor(ck, nm, opt->v + v->offset, v->numel));
        }
    }
    if (opt) opt->step = ck->state.adam_step;
    return LMS_OK;
}
