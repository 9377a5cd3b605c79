/* Which run a checkpoint belongs to, and the settings of that run that a
 * resume restores: the "run" object of index.json (docs/checkpoints.md);
 * listing and removing the checkpoints of a run folder. */
#define _POSIX_C_SOURCE 200809L
#include "ckpt_impl.h"
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void ckpt_write_run(FILE *f, const lms_ckpt_run *r) {
    if (!r->present) return;
    fprintf(f, "  \"run\": {\"id\": ");
    lms_json_write_string(f, r->id, strlen(r->id));
    fprintf(f, ", \"val_fraction\": %.9g, \"val_data\": %s, \"train_tokens\": \"%llu\", \"val_tokens\": \"%llu\", "
            "\"eval_interval\": %d, \"eval_batches\": %d, \"save_every\": %d, \"keep_last\": %d},\n",
            r->val_fraction, r->val_data ? "true" : "false", (unsigned long long)r->train_tokens,
            (unsigned long long)r->val_tokens, r->eval_interval, r->eval_batches, r->save_every, r->keep_last);
}

static int get_int(const lms_json *o, const char *key, int *v) {
    const lms_json *j = lms_json_get(o, key);
    if (!j || j->type != LMS_JSON_NUMBER || j->number != floor(j->number) || j->number < 0 ||
        j->number > INT_MAX)
        return 0;
    *v = (int)j->number;
    return 1;
}

static int get_u64(const lms_json *o, const char *key, uint64_t *v) {
    const lms_json *j = lms_json_get(o, key);
    if (!j || j->type != LMS_JSON_STRING || !*j->str || strspn(j->str, "0123456789") != j->str_len) return 0;
    errno = 0;
    unsigned long long x = strtoull(j->str, NULL, 10);
    if (errno == ERANGE) return 0; /* more than 2^64 - 1: refused, not clamped */
    *v = (uint64_t)x;
    return 1;
}

lms_status ckpt_parse_run(const lms_json *root, const char *path, lms_ckpt_run *r) {
    memset(r, 0, sizeof *r);
    const lms_json *j = lms_json_get(root, "run"), *id = lms_json_get(j, "id"), *vf = lms_json_get(j, "val_fraction"),
                   *vd = lms_json_get(j, "val_data");
    if (!j) return LMS_OK; /* written before runs were recorded */
    const char *bad = NULL;
    if (!id || id->type != LMS_JSON_STRING || !id->str_len || id->str_len >= sizeof r->id) bad = "id";
    else if (!vf || vf->type != LMS_JSON_NUMBER || !(vf->number >= 0 && vf->number <= 1)) bad = "val_fraction";
    else if (!vd || vd->type != LMS_JSON_BOOL) bad = "val_data";
    else if (!get_u64(j, "train_tokens", &r->train_tokens)) bad = "train_tokens";
    else if (!get_u64(j, "val_tokens", &r->val_tokens)) bad = "val_tokens";
    else if (!get_int(j, "eval_interval", &r->eval_interval)) bad = "eval_interval";
    else if (!get_int(j, "eval_batches", &r->eval_batches)) bad = "eval_batches";
    else if (!get_int(j, "save_every", &r->save_every)) bad = "save_every";
    else if (!get_int(j, "keep_last", &r->keep_last)) bad = "keep_last";
    if (bad)
        return lms_errorf(LMS_ERR_FORMAT, "'%s': \"run\".\"%s\" is missing or invalid: the checkpoint index is "
                          "corrupt (resume from another checkpoint)", path, bad);
    memcpy(r->id, id->str, id->str_len + 1);
    r->val_fraction = (float)vf->number;
    r->val_data = vd->boolean;
    r->present = 1;
    return LMS_OK;
}

lms_status lms_ckpt_list_runs(const char *root, lms_ckpt_entry **out, int *n) {
    *out = NULL;
    *n = 0;
    struct stat sb;
    if (stat(root, &sb) != 0 || !S_ISDIR(sb.st_mode)) return LMS_OK; /* nothing saved there yet */
    int *steps, ns;
    LMS_CHECK(ckpt_list_steps(root, &steps, &ns));
    lms_ckpt_entry *e = calloc(ns ? (size_t)ns : 1, sizeof *e);
    if (!e) {
        free(steps);
        return lms_errorf(LMS_ERR_OOM, "out of memory");
    }
    for (int i = 0; i < ns; i++) {
        char name[64];
        snprintf(name, sizeof name, "step-%08d", steps[i]);
        e[i].step = steps[i];
        char *dir = ckpt_join(root, name);
        lms_ckpt ck;
        if (dir && lms_ckpt_open(&ck, dir) == LMS_OK) {
            e[i].readable = 1;
            snprintf(e[i].run_id, sizeof e[i].run_id, "%s", ck.state.run.id);
            lms_ckpt_close(&ck);
        }
        lms_clear_error();
        free(dir);
    }
    free(steps);
    *out = e;
    *n = ns;
    return LMS_OK;
}

lms_status lms_ckpt_remove_step(const char *root, int step) {
    char name[64];
    snprintf(name, sizeof name, "step-%08d", step);
    return ckpt_discard(root, name); /* renamed away first: never half-deleted in view */
}
