/* Internal to the checkpoint module. */
#ifndef LMS_CKPT_IMPL_H
#define LMS_CKPT_IMPL_H

#include "lmscale/checkpoint.h"
#include "lmscale/json.h"

#define CKPT_SHARD_MAGIC "LMSS"
#define CKPT_SHARD_HEADER 16

lms_status ckpt_fsync_path(const char *path);
/* Removes a checkpoint directory without following symlinks (a symlink is
 * unlinked itself); subdirectories are refused. */
lms_status ckpt_rmtree(const char *dir);
/* Removes root/name by renaming it to root/.trash-name first (readers see
 * the whole checkpoint or none of it), then deleting it. */
lms_status ckpt_discard(const char *root, const char *name);
/* "a/b", malloc'ed; NULL when out of memory */
char *ckpt_join(const char *a, const char *b);
/* Records one slice of tensor `name` (added to s on first sight) in s's
 * index; writes no data. */
lms_status ckpt_shard_add_slice(lms_ckpt_shard *s, const char *name, int ndim, const int64_t *shape,
                                const lms_ckpt_slice *slice);
/* Parses slice q of tensor t (index version 1: start/count of the
 * flattened tensor; 2: offsets/sizes per dimension) into s, whose file and
 * offset are already set; checks it lies inside the tensor (overflow-safe). */
lms_status ckpt_parse_chunk(const lms_json *q, const lms_ckpt_tensor *t, int version, const char *path,
                            lms_ckpt_slice *s);
/* Sorts t's slices and checks that they tile it exactly (no gap, no
 * overlap); errors name path and the tensor. */
lms_status ckpt_check_tiling(lms_ckpt_tensor *t, int version, const char *path);
/* step-* directories under root, newest first; *steps malloc'ed */
lms_status ckpt_list_steps(const char *root, int **steps, int *n);
/* index.json's "run" object (ckpt_runs.c): written when r->present; absent
 * on reading leaves r->present 0 */
void ckpt_write_run(FILE *f, const lms_ckpt_run *r);
lms_status ckpt_parse_run(const lms_json *root, const char *path, lms_ckpt_run *r);
/* After step `saved` was written: keeps the newest keep step-* directories
 * of root at or below step `saved` (all when keep <= 0), so that a run never
 * prunes what it just wrote in favour of another run's higher steps (those
 * are left alone, with a warning); removes stale .tmp-step-* and .trash-*
 * directories. */
void ckpt_prune(const char *root, int keep, int saved, const lms_logger *lg);
/* Reads a JSON file into a tree; errors name the file. */
lms_status ckpt_read_json(const char *path, lms_json **out);

#endif
