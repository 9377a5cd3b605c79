/* Internal to the checkpoint module. */
#ifndef LMS_CKPT_IMPL_H
#define LMS_CKPT_IMPL_H

#include "lmscale/checkpoint.h"
#include "lmscale/json.h"

#define CKPT_SHARD_MAGIC "LMSS"
#define CKPT_SHARD_HEADER 16

lms_status ckpt_fsync_path(const char *path);
lms_status ckpt_rmtree(const char *dir);
/* "a/b", malloc'ed; NULL when out of memory */
char *ckpt_join(const char *a, const char *b);
/* Records one slice of tensor `name` (added to s on first sight) in s's
 * index; writes no data. */
lms_status ckpt_shard_add_slice(lms_ckpt_shard *s, const char *name, int ndim, const int64_t *shape,
                                const lms_ckpt_slice *slice);
/* keeps the newest keep step-* directories of root (all when keep <= 0)
 * and removes stale .tmp-step-* ones */
/* step-* directories under root, newest first; *steps malloc'ed */
lms_status ckpt_list_steps(const char *root, int **steps, int *n);
/* index.json's "run" object (ckpt_runs.c): written when r->present; absent
 * on reading leaves r->present 0 */
void ckpt_write_run(FILE *f, const lms_ckpt_run *r);
lms_status ckpt_parse_run(const lms_json *root, const char *path, lms_ckpt_run *r);
void ckpt_prune(const char *root, int keep, const lms_logger *lg);
/* Reads a JSON file into a tree; errors name the file. */
lms_status ckpt_read_json(const char *path, lms_json **out);

#endif
