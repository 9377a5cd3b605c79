/* lmscale data: token arrays and the deterministic window loader.
 *
 * A loader hands out windows of T+1 tokens (inputs and next-token targets).
 * Window w of the run is a pure function of (seed, w): with a global batch
 * of G sequences, step s takes windows s·G .. s·G+G-1, so any split of the
 * batch over micro-steps (and later over data-parallel ranks) reads the same
 * windows, and a run can resume from a step number alone. */
#ifndef LMSCALE_DATA_H
#define LMSCALE_DATA_H

#include "lmscale/core.h"
#include "lmscale/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int32_t *tokens; /* owned */
    size_t n;
    int max_id; /* largest id present */
} lms_tokens;

/* Loads a text file through the tokenizer. Errors: missing, unreadable or
 * empty file (naming it). */
lms_status lms_tokens_load(const char *path, const lms_tokenizer *tok, lms_tokens *out);
/* Reads a comma list of data files, concatenated in order. Each file's
 * reader is chosen by its content (docs/formats.md): an lmscale token shard,
 * an llm.c shard, a Megatron-LM indexed dataset (the .bin, the .idx or their
 * common prefix), else text through tok. Errors name the file: bad magic,
 * unknown version, size not matching the header, truncation, checksum
 * mismatch. On error *out is empty. */
lms_status lms_tokens_open(const char *paths, const lms_tokenizer *tok, lms_tokens *out);
/* Which files of a directory a --data value means (lms_data_files). */
typedef enum { LMS_DATA_TRAIN = 0, LMS_DATA_VAL = 1 } lms_data_role;
/* As lms_tokens_open, with directories read for `role`. */
lms_status lms_tokens_open_role(const char *paths, const lms_tokenizer *tok, lms_data_role role, lms_tokens *out);
void lms_tokens_free(lms_tokens *t);

/* The files a --data value names, in order (docs/formats.md): a comma list;
 * an item with * ? or [ that names no file is a glob (its matches in name
 * order; none is an error); a directory is its token shards in name order
 * (text files are not taken from directories): for LMS_DATA_TRAIN its
 * train.bin if it has one, else every shard whose name lacks "val"; for
 * LMS_DATA_VAL its val.bin, else the shards whose name has "val". A
 * Megatron pair counts once (as its prefix). Free with lms_data_files_free. */
lms_status lms_data_files(const char *paths, lms_data_role role, char ***files, int *n);
void lms_data_files_free(char **files, int n);

/* What a data file is, from its first bytes (nothing else read). */
typedef enum { LMS_DATA_TEXT = 0, LMS_DATA_LMSTOK, LMS_DATA_LLMC, LMS_DATA_MEGATRON } lms_data_format;
/* The tokenizer an lmscale shard's header records (offset 28). */
enum { LMS_SHARD_TOK_UNRECORDED = 0, LMS_SHARD_TOK_BYTES = 1, LMS_SHARD_TOK_BPE = 2 };
/* *fmt of path (a file, or a Megatron prefix); *shard_tok the lmscale
 * header's tokenizer field (LMS_SHARD_TOK_UNRECORDED for other formats). */
lms_status lms_data_probe(const char *path, lms_data_format *fmt, int *shard_tok);

/* Writes an lmscale token shard: ids of `width` bytes (2 or 4), streamed by
 * _append, the header (count, CRC-32) completed by _commit, which renames
 * the temporary into place (lms_atomic_*); _abort leaves nothing. */
typedef struct {
    lms_atomic_file af;
    int width;
    uint64_t n;
    uint32_t crc;
    uint32_t tokenizer; /* LMS_SHARD_TOK_*, written into the header by _commit; set after _open */
} lms_shard_writer;
lms_status lms_shard_writer_open(lms_shard_writer *w, const char *path, int width);
lms_status lms_shard_writer_append(lms_shard_writer *w, const int32_t *ids, size_t n);
lms_status lms_shard_writer_commit(lms_shard_writer *w);
void lms_shard_writer_abort(lms_shard_writer *w);
/* Refuses data whose ids do not fit a vocabulary of V. */
lms_status lms_tokens_check_vocab(const lms_tokens *t, int V, const char *path);

typedef enum { LMS_ORDER_RANDOM = 0, LMS_ORDER_SEQUENTIAL } lms_data_order;
lms_status lms_data_order_parse(const char *name, lms_data_order *order);

typedef struct {
    const int32_t *tokens; /* not owned */
    size_t n;
    int T;
    lms_data_order order;
    uint64_t key;
} lms_loader;

/* Errors when the data holds fewer than T+1 tokens (naming `what`). */
lms_status lms_loader_init(lms_loader *ld, const int32_t *tokens, size_t n, int T,
                           lms_data_order order, uint64_t seed, const char *what);
/* Window w: x (T) inputs, y (T) targets. Random order: a start drawn by
 * (seed, w); sequential: consecutive non-overlapping windows from the start,
 * window w at offset (w mod count)·T. */
void lms_loader_window(const lms_loader *ld, uint64_t w, int32_t *x, int32_t *y);
/* Number of distinct sequential windows. */
size_t lms_loader_num_windows(const lms_loader *ld);

#ifdef __cplusplus
}
#endif
#endif
