/* lmscale checkpoints: the full training state in a layout-independent,
 * sharded, checksummed directory format (docs/checkpoints.md), and Hugging
 * Face interop (config.json + model.safetensors in GPT2LMHeadModel's names).
 *
 * A checkpoint is a directory <root>/step-NNNNNNNN holding
 *   index.json                  version, config, training state, tokenizer,
 *                               and per tensor: name, global shape, dtype and
 *                               the slices that hold it
 *   shard-RRRRR-of-WWWWW.bin    one data file per writer rank
 * Tensors are stored by global name and global shape; a slice (version 2)
 * is an N-dimensional chunk — an offset and a size per dimension, as
 * PyTorch's distributed checkpoint stores them — so any shard of any
 * parallel layout (a ZeRO run of the flat buffer, a row- or column-parallel
 * part) is one or a few chunks, and a loader assembles any tensor from
 * whatever set of chunks the writers produced. Version 1 (a slice is a run
 * [start, start+count) of the flattened tensor) still loads.
 *
 * Writing (one process today; with MPI every rank writes its own shard and
 * rank 0 the index):
 *   lms_ckpt_begin        create <root>/.tmp-step-NNNNNNNN (rank 0; others wait)
 *   lms_ckpt_shard_open   per rank: open its shard in the temporary directory
 *   lms_ckpt_shard_put    per rank: append a run of a tensor (as 1-3 chunks)
 *   lms_ckpt_shard_put_chunk  or one N-D chunk; CRC32 recorded per chunk
 *   lms_ckpt_shard_close  per rank: fsync; the slices are returned for the index
 *   lms_ckpt_finish       rank 0: write index.json (from every rank's slices),
 *                         fsync it and the directory, rename to step-NNNNNNNN,
 *                         fsync the parent.
 * A crash at any point leaves earlier checkpoints untouched; the partial
 * ".tmp-" directory is ignored by readers and removed by the next save. */
#ifndef LMSCALE_CHECKPOINT_H
#define LMSCALE_CHECKPOINT_H

#include "lmscale/comm.h"
#include "lmscale/core.h"
#include "lmscale/model.h"
#include "lmscale/optim.h"
#include "lmscale/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LMS_CKPT_VERSION 2 /* written; 1 and 2 are read */
#define LMS_CKPT_MAX_DIMS 4

/* The run a checkpoint belongs to and the settings of it that a resume
 * restores (index.json "run", docs/checkpoints.md). present is 0 in
 * checkpoints written before runs were recorded. */
typedef struct {
    int present;
    char id[40];                       /* new for each fresh run, kept on resume */
    float val_fraction;                /* of --data held out when no --val-data */
    int val_data;                      /* validation came from --val-data */
    uint64_t train_tokens, val_tokens; /* the data split */
    int eval_interval, eval_batches, save_every, keep_last;
} lms_ckpt_run;

/* Everything besides tensors that a run needs to continue exactly. */
typedef struct {
    lms_gpt_config cfg;
    int step;              /* optimizer steps done; the next step is `step` (0-based) */
    uint64_t seed;         /* initialisation and data-order seed */
    uint64_t data_window;  /* next global window index (= step · global_batch) */
    int global_batch, seq_len;
    char data_order[16];   /* "random" or "sequential" */
    lms_schedule sched;    /* schedule position is `step` within it */
    float beta1, beta2, eps, weight_decay, grad_clip;
    int adam_step;         /* AdamW updates done (bias correction) */
    /* mixed precision (the tensors are always the fp32 master): the compute
     * dtype, and fp16's loss scaler (scale, clean steps since it last
     * changed, steps skipped); "fp32" and 0s in older checkpoints */
    char dtype[8];
    float loss_scale;
    int loss_scale_clean, skipped_steps;
    float static_loss_scale, min_loss_scale; /* the run's --loss-scale (0: dynamic), --min-loss-scale */
    int loss_scale_window;                   /* and --loss-scale-window (0: not recorded) */
    /* tokenizer reference: "bytes", or "bpe" with the files' SHA-free
     * identity: CRC32 of vocab.json and merges.txt and their names. */
    char tok_kind[16];
    char tok_vocab[256], tok_merges[256];
    uint32_t tok_vocab_crc, tok_merges_crc;
    lms_ckpt_run run;
} lms_ckpt_state;

/* One slice of a tensor inside a shard file: an N-D chunk, elements
 * [off[d], off[d] + size[d]) in each dimension d, stored row-major in the
 * chunk's own shape. A version-1 slice, a run of the flattened tensor, is
 * read as a 1-D chunk of the flattened tensor (ndim 1). */
typedef struct {
    char file[64];      /* shard file name, relative to the checkpoint */
    uint64_t offset;    /* byte offset in the file */
    int ndim;           /* the tensor's, or 1 for a version-1 run */
    uint64_t off[LMS_CKPT_MAX_DIMS];
    uint64_t size[LMS_CKPT_MAX_DIMS];
    uint32_t crc32;     /* of the chunk's elements·4 bytes */
} lms_ckpt_slice;
/* Elements of a slice (no overflow: checked when the index is read). */
uint64_t lms_ckpt_slice_numel(const lms_ckpt_slice *s);

typedef struct {
    char name[64];
    int ndim;
    int64_t shape[LMS_CKPT_MAX_DIMS];
    int nslices;
    lms_ckpt_slice *slices; /* owned */
} lms_ckpt_tensor;

/* A per-rank shard writer. */
typedef struct {
    FILE *f;
    char *dir;           /* the temporary checkpoint directory; owned */
    char file[64];
    uint64_t offset;
    lms_ckpt_tensor *t;  /* tensors this rank wrote slices of; owned */
    int nt, cap;
    long crash_after;    /* test hook: _exit after this many bytes (-1: off) */
    long written;
} lms_ckpt_shard;

/* A checkpoint opened for reading (index parsed, nothing else read). */
typedef struct {
    char *dir; /* owned */
    int version;
    lms_ckpt_state state;
    int ntensors;
    lms_ckpt_tensor *tensors; /* owned */
} lms_ckpt;

/* ---- writing ---- */

/* The temporary directory for step under root (created, with root if
 * needed; a stale one of the same name is removed). *tmp_dir malloc'ed. */
lms_status lms_ckpt_begin(const char *root, int step, char **tmp_dir);
lms_status lms_ckpt_shard_open(lms_ckpt_shard *s, const char *tmp_dir, int rank, int world);
/* Appends data[0..count) as elements [start, start+count) of the
 * row-major flattened tensor `name` of global shape (ndim, shape): stored as
 * the fewest chunks that tile the run (at most 2·ndim - 1; one when it is
 * whole rows). */
lms_status lms_ckpt_shard_put(lms_ckpt_shard *s, const char *name, int ndim, const int64_t *shape,
                              uint64_t start, const float *data, uint64_t count);
/* Appends one N-D chunk of tensor `name`: elements [off[d], off[d]+size[d])
 * per dimension, data row-major in the chunk's shape (e.g. a tensor-parallel
 * shard: lms_tp_chunk). */
lms_status lms_ckpt_shard_put_chunk(lms_ckpt_shard *s, const char *name, int ndim, const int64_t *shape,
                                    const int64_t *off, const int64_t *size, const float *data);
/* fsyncs and closes the file; s keeps the slice records until _free. */
lms_status lms_ckpt_shard_close(lms_ckpt_shard *s);
void lms_ckpt_shard_free(lms_ckpt_shard *s);
/* Rank 0: writes index.json from the slices of every rank's shard, then
 * commits the directory atomically to <root>/step-NNNNNNNN. Frees tmp_dir's
 * directory on failure (removes it). */
lms_status lms_ckpt_finish(const char *root, const char *tmp_dir, int step, const lms_ckpt_state *st,
                           const lms_ckpt_shard *shards, int nshards);

/* Convenience for one process: saves the model, AdamW state and st as
 * <root>/step-<st->step>, then keeps only the newest keep_last checkpoints
 * (keep_last <= 0 keeps all). *saved_path (may be NULL) malloc'ed. */
lms_status lms_ckpt_save_train(const char *root, const lms_ckpt_state *st, const lms_gpt *m,
                               const lms_adamw *opt, int keep_last, char **saved_path);

/* One run of elements a rank holds: [start, start+count) of the flattened
 * tensor `name` of global shape (ndim, shape). */
typedef struct {
    char name[64];
    int ndim;
    int64_t shape[LMS_CKPT_MAX_DIMS];
    uint64_t start, count;
    const float *data;
    /* chunk 1: the piece is instead the N-D box [off[d], off[d]+size[d])
     * (data row-major in the box's shape; count = its elements), e.g. a
     * tensor-parallel rank's part (lms_tp_pieces, parallel.h) */
    int chunk;
    int64_t off[LMS_CKPT_MAX_DIMS], size[LMS_CKPT_MAX_DIMS];
} lms_ckpt_piece;
/* Every rank of c (NULL: one process) writes its pieces to its own shard;
 * rank 0 writes the index and commits <root>/step-<st->step> atomically,
 * then keeps the newest keep_last. The pieces of all ranks together must
 * tile every tensor exactly once. Collective: every rank gets the same
 * status, and on failure nothing but the earlier checkpoints is left. */
lms_status lms_ckpt_save_pieces(const char *root, const lms_ckpt_state *st, lms_comm *c,
                                const lms_ckpt_piece *pieces, int npieces, int keep_last, char **saved_path);

/* ---- reading ---- */

/* Parses dir/index.json: format, version, config, state, tensors. Errors
 * name the file and the fix. */
lms_status lms_ckpt_open(lms_ckpt *ck, const char *dir);
void lms_ckpt_close(lms_ckpt *ck);
const lms_ckpt_tensor *lms_ckpt_find_tensor(const lms_ckpt *ck, const char *name);
/* Fills dst with the whole tensor `name` (numel floats), assembled from its
 * slices; every slice's CRC is checked and every element must be covered.
 * Errors name the tensor and the shard file. */
lms_status lms_ckpt_read_tensor(const lms_ckpt *ck, const char *name, float *dst, uint64_t numel);
/* Reads every slice and checks sizes and CRCs (no allocation of tensors). */
lms_status lms_ckpt_verify(const lms_ckpt *ck);

/* path is a checkpoint (has index.json) or a directory of step-* ones: picks
 * the checkpoint itself, or the newest step-* that opens and verifies,
 * logging a warning for each one skipped. *out malloc'ed. */
lms_status lms_ckpt_resolve(const char *path, const lms_logger *lg, char **out);

/* One step-* checkpoint of a run folder: its step and the run id its index
 * records ("" before run ids; readable 0 when the index cannot be read). */
typedef struct {
    int step;
    int readable;
    char run_id[40];
} lms_ckpt_entry;
/* The step-* checkpoints under root, newest first; none when root does not
 * exist. *out malloc'ed (free()). */
lms_status lms_ckpt_list_runs(const char *root, lms_ckpt_entry **out, int *n);
/* Removes root/step-NNNNNNNN. */
lms_status lms_ckpt_remove_step(const char *root, int step);

/* Loads parameters (into m->params, m already initialised for ck's config)
 * and, when opt is non-NULL, the AdamW moments and step. */
lms_status lms_ckpt_load_train(const lms_ckpt *ck, lms_gpt *m, lms_adamw *opt);

/* State for a fresh run's checkpoints. */
void lms_ckpt_state_init(lms_ckpt_state *st, const lms_gpt_config *cfg);

/* ---- Hugging Face interop ---- */

/* Writes dir/config.json (GPT2LMHeadModel) and dir/model.safetensors (F32,
 * Conv1D weights transposed to (in, out), wte unpadded to V rows, tied head
 * not stored). dir is created if needed. */
lms_status lms_hf_export(const char *dir, const lms_gpt_config *cfg, const float *params);
/* The same with the weights stored as dt: LMS_DT_F32, LMS_DT_BF16 or
 * LMS_DT_F16 (round to nearest even; config.json's torch_dtype says it). */
lms_status lms_hf_export_dtype(const char *dir, const lms_gpt_config *cfg, const float *params, lms_dtype dt);
/* Reads dir/config.json into cfg (validated; Vp set). */
lms_status lms_hf_read_config(const char *dir, lms_gpt_config *cfg);
/* Reads dir/model.safetensors into params (laid out for cfg): names with or
 * without "transformer.", shapes checked, wte padded with zero rows; F32,
 * BF16 and F16 tensors (widened exactly to fp32). */
lms_status lms_hf_load_params(const char *dir, const lms_gpt_config *cfg, float *params);
/* If dir holds vocab.json and merges.txt, loads them into tok (BPE) and
 * sets *loaded; else leaves tok alone. */
lms_status lms_hf_load_tokenizer(const char *dir, lms_tokenizer *tok, int *loaded);

/* ---- test hooks (the one place lmscale reads its own environment) ---- */

/* LMS_TEST_CRASH_IN_SAVE=N: a checkpoint writer calls _exit(99) after
 * writing N bytes of shard data (to test crash safety). Returns -1 when
 * unset or invalid. */
long lms_ckpt_test_crash_bytes(void);

#ifdef __cplusplus
}
#endif
#endif
