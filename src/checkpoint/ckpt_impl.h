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
/* Reads a JSON file into a tree; errors name the file. */
lms_status ckpt_read_json(const char *path, lms_json **out);

#endif
