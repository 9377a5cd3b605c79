/* Checkpoint reading: the index, tensors assembled from slices with CRC
 * checks, verification, picking the newest valid checkpoint of a directory,
 * and the one-process save/load of the training state. */
#define _POSIX_C_SOURCE 200809L
#include "lmscale/obs.h"
#include "ckpt_impl.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
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

/* integer member in [lo, hi] (checked: no fractional or out-of-range value is
 * ever cast) */
static int inum(const lms_json *o, const char *key, int64_t lo, int64_t hi, int *v) {
    int64_t x;
    if (!lms_json_get_int(o, key, lo, hi, &x)) return 0;
    *v = (int)x;
    return 1;
}

static int u32num(const lms_json *o, const char *key, uint32_t *v) {
    int64_t x;
    if (!lms_json_get_int(o, key, 0, UINT32_MAX, &x)) return 0;
    *v = (uint32_t)x;
    return 1;
}

/* byte offsets and element counts: integers in [0, 2^53] */
static int u53num(const lms_json *o, const char *key, uint64_t *v) {
    int64_t x;
    if (!lms_json_get_int(o, key, 0, INT64_C(1) << 53, &x)) return 0;
    *v = (uint64_t)x;
    return 1;
}

/* a u64 written as a decimal string (digits only, no sign, no overflow) */
static int u64str(const lms_json *o, const char *key, uint64_t *v) {
    const lms_json *j = lms_json_get(o, key);
    if (!j || j->type != LMS_JSON_STRING || j->str_len == 0 || j->str_len > 20) return 0;
    uint64_t x = 0;
    for (size_t i = 0; i < j->str_len; i++) {
        char c = j->str[i];
        if (c < '0' || c > '9' || lms_mul_overflow(x, 10, &x) || lms_add_overflow(x, (uint64_t)(c - '0'), &x))
            return 0;
    }
    *v = x;
    return 1;
}

static int str(const lms_json *o, const char *key, char *dst, size_t cap) {
    const lms_json *j = lms_json_get(o, key);
    if (!j || j->type != LMS_JSON_STRING || j->str_len >= cap || memchr(j->str, 0, j->str_len)) return 0;
    memcpy(dst, j->str, j->str_len + 1);
    return 1;
}

#define BAD(what)                                                                                  \
    do {                                                                                           \
        st = lms_errorf(LMS_ERR_FORMAT, "'%s': %s is missing or invalid: the checkpoint index is "  \
                        "corrupt (resume from another checkpoint)", path, what);                    \
        goto fail;                                                                                 \
    } while (0)

#define IMAX 2147483647

static lms_status parse_state(const lms_json *root, const char *path, lms_ckpt_state *s) {
    lms_status st = LMS_OK;
    int vp;
    const lms_json *c = lms_json_get(root, "config");
    if (!inum(c, "n_layer", 1, IMAX, &s->cfg.L) || !inum(c, "n_head", 1, IMAX, &s->cfg.NH) ||
        !inum(c, "n_embd", 1, IMAX, &s->cfg.C) || !inum(c, "n_positions", 1, IMAX, &s->cfg.maxT) ||
        !inum(c, "vocab_size", 1, IMAX, &s->cfg.V) || !inum(c, "padded_vocab_size", 1, IMAX, &vp))
        BAD("\"config\" (n_layer, n_head, n_embd, n_positions, vocab_size, padded_vocab_size: positive integers)");
    if (lms_gpt_config_validate(&s->cfg) != LMS_OK || s->cfg.Vp != vp) BAD("\"config\" (not a valid model)");
    const lms_json *t = lms_json_get(root, "tokenizer");
    if (!str(t, "kind", s->tok_kind, sizeof s->tok_kind)) BAD("\"tokenizer\".\"kind\"");
    if (!strcmp(s->tok_kind, "bpe")) {
        if (!str(t, "vocab", s->tok_vocab, sizeof s->tok_vocab) ||
            !str(t, "merges", s->tok_merges, sizeof s->tok_merges) || !u32num(t, "vocab_crc32", &s->tok_vocab_crc) ||
            !u32num(t, "merges_crc32", &s->tok_merges_crc))
            BAD("\"tokenizer\" (bpe files)");
    }
    const lms_json *S = lms_json_get(root, "state");
    if (!inum(S, "step", 0, IMAX, &s->step))
        BAD("\"state\".\"step\" (an integer 0..2147483647)");
    if (!u64str(S, "seed", &s->seed) || !u64str(S, "data_window", &s->data_window) ||
        !inum(S, "global_batch", 0, IMAX, &s->global_batch) || !inum(S, "seq_len", 0, IMAX, &s->seq_len) ||
        !str(S, "data_order", s->data_order, sizeof s->data_order))
        BAD("\"state\" (seed, data_window, global_batch, seq_len, data_order)");
    const lms_json *sc = lms_json_get(S, "schedule");
    char kind[32];
    if (!str(sc, "kind", kind, sizeof kind) || lms_schedule_parse(kind, &s->sched.kind) != LMS_OK ||
        !lms_json_get_float(sc, "lr", &s->sched.lr) || !lms_json_get_float(sc, "min_lr", &s->sched.min_lr) ||
        !inum(sc, "warmup", 0, IMAX, &s->sched.warmup) || !inum(sc, "total", 0, IMAX, &s->sched.total))
        BAD("\"state\".\"schedule\"");
    const lms_json *a = lms_json_get(S, "adamw");
    if (!lms_json_get_float(a, "beta1", &s->beta1) || !lms_json_get_float(a, "beta2", &s->beta2) ||
        !lms_json_get_float(a, "eps", &s->eps) || !lms_json_get_float(a, "weight_decay", &s->weight_decay) ||
        !lms_json_get_float(a, "grad_clip", &s->grad_clip) || !inum(a, "step", 0, IMAX, &s->adam_step))
        BAD("\"state\".\"adamw\"");
    const lms_json *pr = lms_json_get(S, "precision"); /* optional: absent before mixed precision */
    snprintf(s->dtype, sizeof s->dtype, "fp32");
    if (pr && (!str(pr, "dtype", s->dtype, sizeof s->dtype) || !lms_json_get_float(pr, "loss_scale", &s->loss_scale) ||
               !(s->loss_scale >= 0) || !inum(pr, "clean_steps", 0, IMAX, &s->loss_scale_clean) ||
               !inum(pr, "skipped_steps", 0, IMAX, &s->skipped_steps) ||
               !lms_json_get_float(pr, "static_loss_scale", &s->static_loss_scale) || !(s->static_loss_scale >= 0) ||
               !lms_json_get_float(pr, "min_loss_scale", &s->min_loss_scale) || !(s->min_loss_scale >= 0) ||
               !inum(pr, "loss_scale_window", 0, IMAX, &s->loss_scale_window) ||
               (strcmp(s->dtype, "fp32") && strcmp(s->dtype, "bf16") && strcmp(s->dtype, "fp16"))))
        BAD("\"state\".\"precision\" (dtype fp32, bf16 or fp16; loss_scale, clean_steps, skipped_steps)");
fail:
    return st;
}

/* Number of elements of a shape; 0 when the product does not fit in 2^53. */
static int shape_numel(const lms_ckpt_tensor *t, uint64_t *n) {
    uint64_t p = 1;
    for (int d = 0; d < t->ndim; d++)
        if (lms_mul_overflow(p, (uint64_t)t->shape[d], &p) || p > (UINT64_C(1) << 53)) return 0;
    *n = p;
    return 1;
}

static lms_status parse_tensors(const lms_json *root, const char *path, lms_ckpt *ck) {
    lms_status st = LMS_OK;
    const lms_json *ts = lms_json_get(root, "tensors");
    if (!ts || ts->type != LMS_JSON_ARRAY || ts->count > IMAX) BAD("\"tensors\"");
    ck->tensors = calloc(ts->count ? ts->count : 1, sizeof *ck->tensors);
    if (!ck->tensors) return lms_errorf(LMS_ERR_OOM, "out of memory");
    for (const lms_json *j = ts->child; j; j = j->next) {
        lms_ckpt_tensor *t = &ck->tensors[ck->ntensors++];
        char dtype[8];
        if (!str(j, "name", t->name, sizeof t->name)) BAD("a tensor's \"name\"");
        if (lms_ckpt_find_tensor(ck, t->name) != t) {
            st = lms_errorf(LMS_ERR_FORMAT, "'%s': tensor \"%s\" is listed twice: the checkpoint index is "
                            "corrupt (resume from another checkpoint)", path, t->name);
            goto fail;
        }
        if (!str(j, "dtype", dtype, sizeof dtype) || strcmp(dtype, "F32"))
            BAD("a tensor's \"dtype\" (this version stores F32)");
        const lms_json *sh = lms_json_get(j, "shape"), *sl = lms_json_get(j, "slices");
        if (!sh || sh->type != LMS_JSON_ARRAY || sh->count < 1 || sh->count > LMS_CKPT_MAX_DIMS) BAD("a tensor's \"shape\"");
        for (const lms_json *d = sh->child; d; d = d->next)
            if (!lms_json_int(d, 0, INT64_C(1) << 53, &t->shape[t->ndim++])) BAD("a tensor's \"shape\"");
        uint64_t numel;
        if (!shape_numel(t, &numel)) {
            st = lms_errorf(LMS_ERR_FORMAT, "'%s': tensor \"%s\" has a shape whose element count overflows: the "
                            "checkpoint index is corrupt (resume from another checkpoint)", path, t->name);
            goto fail;
        }
        if (!sl || sl->type != LMS_JSON_ARRAY || sl->count > IMAX) BAD("a tensor's \"slices\"");
        t->slices = calloc(sl->count ? sl->count : 1, sizeof *t->slices);
        if (!t->slices) return lms_errorf(LMS_ERR_OOM, "out of memory");
        for (const lms_json *q = sl->child; q; q = q->next) {
            lms_ckpt_slice *s = &t->slices[t->nslices++];
            if (!str(q, "file", s->file, sizeof s->file) || !*s->file || strchr(s->file, '/') ||
                !strcmp(s->file, ".") || !strcmp(s->file, "..") || !u53num(q, "offset", &s->offset) ||
                !u32num(q, "crc32", &s->crc32))
                BAD("a slice of a tensor (file, offset, crc32: a shard name and integers)");
            LMS_TRY(ckpt_parse_chunk(q, t, ck->version, path, s));
        }
        /* the slices must tile the tensor exactly, each element once */
        LMS_TRY(ckpt_check_tiling(t, ck->version, path));
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
    int64_t ver = 0;
    if (!str(root, "format", fmt, sizeof fmt) || strcmp(fmt, "lmscale-checkpoint")) {
        st = lms_errorf(LMS_ERR_FORMAT, "'%s' is not an lmscale checkpoint index (its \"format\" is not "
                        "\"lmscale-checkpoint\")", path);
        goto fail;
    }
    if (!lms_json_get_int(root, "version", 0, IMAX, &ver) || ver < 1 || ver > LMS_CKPT_VERSION) {
        st = lms_errorf(LMS_ERR_FORMAT, "'%s' is checkpoint version %s%lld; this lmscale reads versions 1 to %d "
                        "(use the lmscale that wrote it)", path, ver ? "" : "(missing or not an integer) ",
                        (long long)ver, LMS_CKPT_VERSION);
        goto fail;
    }
    ck->version = (int)ver;
    LMS_TRY(parse_state(root, path, &ck->state));
    LMS_TRY(ckpt_parse_run(root, path, &ck->state.run));
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

lms_status lms_ckpt_verify(const lms_ckpt *ck) {
    for (int i = 0; i < ck->ntensors; i++) {
        const lms_ckpt_tensor *t = &ck->tensors[i];
        uint64_t n;
        if (!shape_numel(t, &n) || n > SIZE_MAX / sizeof(float))
            return lms_errorf(LMS_ERR_FORMAT, "checkpoint '%s': tensor %s is too large", ck->dir, t->name);
        /* before allocating n floats: the shards must hold that much */
        for (int k = 0; k < t->nslices; k++) {
            const lms_ckpt_slice *s = &t->slices[k];
            char *p = ckpt_join(ck->dir, s->file);
            struct stat sb;
            int ok = p && stat(p, &sb) == 0;
            if (ok && S_ISREG(sb.st_mode) && (uint64_t)sb.st_size < s->offset + lms_ckpt_slice_numel(s) * sizeof(float)) {
                lms_status e = lms_errorf(LMS_ERR_FORMAT, "checkpoint shard '%s' is truncated: tensor %s needs "
                                          "bytes %llu..%llu (the save was cut short; resume from another "
                                          "checkpoint)", p, t->name, (unsigned long long)s->offset,
                                          (unsigned long long)(s->offset + lms_ckpt_slice_numel(s) * sizeof(float)));
                free(p);
                return e;
            }
            free(p);
        }
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
lms_status ckpt_list_steps(const char *root, int **steps, int *n) {
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
    LMS_CHECK(ckpt_list_steps(path, &steps, &n));
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
    snprintf(st->dtype, sizeof st->dtype, "fp32");
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

/* See ckpt_impl.h. One writer per root. */
void ckpt_prune(const char *root, int keep, int saved, const lms_logger *lg) {
    int *steps, n;
    if (ckpt_list_steps(root, &steps, &n) != LMS_OK) return;
    int kept = 0, newer = 0;
    for (int i = 0; i < n; i++) {
        if (steps[i] > saved) { /* not this run's: another run's later steps */
            newer++;
            continue;
        }
        if (keep <= 0 || kept++ < keep) continue;
        char name[64];
        snprintf(name, sizeof name, "step-%08d", steps[i]);
        if (ckpt_discard(root, name) != LMS_OK && lg)
            lms_log(lg, LMS_LOG_WARN, "cannot remove old checkpoint '%s/%s': %s", root, name, lms_last_error());
    }
    if (newer && lg)
        lms_log(lg, LMS_LOG_WARN, "'%s' holds %d checkpoint%s after step %d, the one just saved (from another run, "
                "the newest step-%08d): --keep-last leaves %s alone, and --resume '%s' would pick the newest; "
                "remove %s or save into another directory", root, newer, newer == 1 ? "" : "s", saved, steps[0],
                newer == 1 ? "it" : "them", root, newer == 1 ? "it" : "them");
    free(steps);
    /* partial saves and deletions a crash left behind */
    DIR *d = opendir(root);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (strncmp(e->d_name, ".tmp-step-", 10) != 0 && strncmp(e->d_name, ".trash-step-", 12) != 0) continue;
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

static lms_status load_train(const lms_ckpt *ck, lms_gpt *m, lms_adamw *opt, lms_progress *prog) {
    char nm[96];
    for (int i = 0; i < m->num_tensors; i++) {
        lms_progress_update(prog, (double)m->tensors[i].offset * (opt ? 12 : 4) / 1e6);
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

lms_status lms_ckpt_load_train(const lms_ckpt *ck, lms_gpt *m, lms_adamw *opt) {
    double mb = (double)m->num_params * (opt ? 12 : 4) / 1e6;
    lms_progress prog; /* shown for loads that take a while */
    lms_progress_begin(&prog, "checkpoint load", mb, "MB", 1);
    lms_status st = load_train(ck, m, opt, &prog);
    if (st != LMS_OK) {
        lms_progress_abort(&prog);
        return st;
    }
    lms_progress_update(&prog, mb);
    lms_progress_end(&prog);
    return LMS_OK;
}
