/* lmscale parallel layout: the topology that maps each world rank to its
 * (data, tensor, pipeline) coordinates and the process group of each axis.
 * Pipeline schedules, tensor-parallel splits, ZeRO and gradient bucketing
 * build on it. */
#ifndef LMSCALE_PARALLEL_H
#define LMSCALE_PARALLEL_H

#include "lmscale/checkpoint.h"
#include "lmscale/comm.h"
#include "lmscale/model.h"
#include "lmscale/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- topology: world rank <-> (dp, tp, pp) coordinates ----
 * tp varies fastest, then dp, then pp (Megatron-LM's order), so a tensor-
 * parallel group is a block of consecutive ranks (one node) and pipeline
 * stages are farthest apart:  rank = tp_rank + tp·(dp_rank + dp·pp_rank). */
typedef struct {
    int world, rank;
    int dp, tp, pp;
    int dp_rank, tp_rank, pp_rank;
} lms_topology;

/* Errors when a degree is below 1 or dp·tp·pp differs from world, naming
 * the flags (also called by lms_layout_check, plan.h). */
lms_status lms_topology_check(int world, int dp, int tp, int pp);
lms_status lms_topology_init(lms_topology *t, int world, int rank, int dp, int tp, int pp);
int lms_topology_rank_of(const lms_topology *t, int dp_rank, int tp_rank, int pp_rank);

/* The three groups of this rank, made by splitting `world`. */
typedef struct {
    lms_comm *dp, *tp, *pp;
} lms_groups;
lms_status lms_groups_init(lms_groups *g, lms_comm *world, const lms_topology *t);
void lms_groups_free(lms_groups *g);

/* ---- data-parallel gradient synchronisation ----
 * Backward reports ranges of gradients final (lms_grad_ready_fn) in
 * descending order (the model's layer-major layout guarantees it), and the
 * sum over the dp ranks is formed while the rest of backward runs, by one of
 * two paths (docs/parallelism.md, "Data parallelism"):
 *   shared memory  the ranks are all on one node: each rank's gradients live
 *                  in node-shared memory, and each rank sums its share of
 *                  bucket-sized chunks (chunk c is rank c mod p's) over
 *                  every rank's gradients, into one shared result, as soon
 *                  as every rank has reported the chunk; nothing is copied,
 *                  no message is sent, and the optimizer of every rank reads
 *                  the one result. The sum is taken in rank order.
 *   MPI            buckets of about bucket_bytes are all-reduced
 *                  (non-blocking, out of place) into a persistent receive
 *                  buffer as soon as they are complete; a bucket never
 *                  splits a reported range.
 * The sum is taken: scale the loss gradient by 1/dp to get the mean. */
typedef struct lms_dp_shm lms_dp_shm;
typedef struct {
    lms_comm *comm;    /* not owned */
    float *grads;      /* where backward must write: the caller's, or (shared memory) this rank's block */
    size_t n;          /* floats in grads */
    size_t bucket_floats;
    size_t ready_lo;    /* [ready_lo, n) is final */
    size_t launched_lo; /* [launched_lo, n) has its all-reduce started */
    int nreq, cap;
    lms_comm_req **reqs;
    float *recv;        /* n floats, the sums (NULL on one rank) */
    lms_status err;     /* first error from a launch */
    int buckets_before_finish; /* MPI: buckets launched, shared memory: chunks summed, while backward ran */
    lms_dp_shm *shm;    /* the shared-memory path's state, NULL on the MPI path */
} lms_dp_sync;

/* shm: 1 to take the shared-memory path when dp's ranks share a node (and
 * /dev/shm has room), 0 for MPI. On the shared-memory path the gradients
 * must be in lms_dp_sync_grads(s), not in `grads` (which is then unused):
 * point the model at it (lms_gpt_use_grads). Collective over dp. */
lms_status lms_dp_sync_init(lms_dp_sync *s, lms_comm *dp, float *grads, size_t n, size_t bucket_bytes, int shm);
/* Collective over dp (the shared memory is unmapped on every rank). */
void lms_dp_sync_free(lms_dp_sync *s);
/* Where backward must write the gradients (n floats). */
static inline float *lms_dp_sync_grads(const lms_dp_sync *s) { return s->grads; }
/* "shared memory" or "MPI" */
const char *lms_dp_sync_path(const lms_dp_sync *s);
/* Before the backward pass whose gradients are to be synchronised. */
void lms_dp_sync_begin(lms_dp_sync *s);
/* The lms_grad_ready_fn to pass to lms_gpt_backward_ex with ctx = s. */
lms_status lms_dp_sync_ready(void *s, size_t offset, size_t count);
/* Sums what is left and waits for every rank. The sums are then in
 * lms_dp_sync_reduced(s), not in the gradients (those keep this rank's
 * own, until the next step zeroes them; on the shared-memory path the next
 * step may zero them only after this returns on every rank, which it
 * does: it returns once every rank's share is summed). */
lms_status lms_dp_sync_finish(lms_dp_sync *s);
/* The summed gradients, in the layout of the gradients. */
const float *lms_dp_sync_reduced(const lms_dp_sync *s);
/* The optimizer step on the sums. MPI: AdamW over every parameter, on
 * every rank. Shared memory: the parameters and AdamW's moments live in
 * node-shared memory too, one copy per node (adopted at the first step:
 * the model and the optimizer are pointed there, their own buffers freed),
 * and each rank updates its own chunks, then waits for the others. The
 * arithmetic is AdamW's element by element, so the bits are the same. */
lms_status lms_dp_sync_step(lms_dp_sync *s, lms_gpt *m, lms_adamw *opt, lms_backend *be, float lr, float grad_scale);

/* ---- ZeRO: sharded optimizer state (1), gradients (2) and parameters (3) ----
 * Every parameter unit (lms_gpt_unit_range: embeddings, each block, ln_f)
 * is split into dp parts of ceil(n/dp) floats; rank r owns part r of every
 * unit, and its shard is the concatenation of those parts. AdamW moments
 * exist only for the shard.
 *   stage 1: full gradients; on the last micro-step each unit's gradients
 *            are reduce-scattered (non-blocking) as soon as backward
 *            finishes them; the shard is updated; parameters all-gathered.
 *   stage 2: no full gradient buffer: backward writes each unit's gradients
 *            into one of two working buffers, which is reduce-scattered
 *            and added to the shard (every micro-step) while backward goes
 *            on with the next unit.
 *   stage 3: as 2, and parameters exist only as the shard: each unit is
 *            all-gathered into a working buffer just before its use in
 *            forward or backward and given up after.
 * Clipping uses the global norm: the shards' sums of squares all-reduced. */
typedef struct {
    size_t off, n;    /* the unit in the flat layout */
    int copy;         /* a copy of tensors that other ranks also update (lms_zero_range) */
    size_t part;      /* floats per rank, ceil(n/dp) */
    size_t mine;      /* of this rank's part, how many are inside the unit */
    size_t shard_off; /* this rank's part in the shard buffers */
} lms_zero_unit;

typedef struct {
    float *p;         /* parameters: into the full buffer (stage 1, 2) or the shard (3) */
    size_t soff, n;   /* gradient / moments offset in the shard, floats */
    int decay;
    double norm_w;    /* weight in the global norm (lms_tp_norm_weight) */
} lms_zero_view;

/* Bytes this rank holds, persistent and in working buffers. */
typedef struct {
    size_t param, grad, optim; /* persistent: full or shard */
    size_t param_work, grad_work;
} lms_zero_mem;

typedef struct {
    int stage;
    lms_comm *comm; /* dp group; not owned */
    lms_gpt *m;     /* not owned */
    lms_backend *be; /* the device of every buffer; not owned */
    int dp, rank, nunits;
    lms_zero_unit *units;
    size_t shard_n, max_padded;
    float *master;  /* stage 3: the parameter shard */
    float *grad;    /* the gradient shard */
    int nviews;
    lms_zero_view *views;
    /* working buffers: gathered parameters (stage 3); two gradient buffers
     * with their reduce-scatter receive buffers and requests */
    float *pwork, *gwork[2], *grecv[2];
    /* the backend buffers behind master, grad, pwork, gwork, grecv (owned) */
    lms_buffer b_master, b_grad, b_pwork, b_gwork[2], b_grecv[2];
    lms_comm_req *greq[2];
    lms_comm_req **ureq; /* stage 1: one pending reduce-scatter per unit */
    int gunit[2], gcur;
    lms_gpt_hooks hooks;
    lms_status err; /* first failure of a pending reduce-scatter (reported by finish) */
    lms_zero_mem mem;
    int ncopy;          /* units that are copies */
    lms_comm *norm_also; /* NULL, or a group the norm's sum of squares is also summed over (pp); not owned */
} lms_zero;

/* A unit of a shard layout that is not the whole model (a pipeline stage's
 * units): a range of the flat buffer. copy = 1: tensors whose gradients
 * and updates other ranks hold too (the last stage's wte): updated as the
 * rest, but outside the norm and not written to checkpoints. */
typedef struct {
    size_t off, n;
    int copy;
} lms_zero_range;

/* Builds the shard layout for model m (whose parameters must already hold
 * their initial values for stages 1 and 2; for stage 3 create m with
 * LMS_GPT_NO_PARAMS and fill the shard with lms_zero_init_params or
 * lms_zero_shard_from_full). Installs m->hooks for stages 2 and 3. Buffers
 * are set, copied and summed through be. */
lms_status lms_zero_init(lms_zero *z, int stage, lms_comm *dp, lms_gpt *m, lms_backend *be);
/* The same over only the units r[0..nr) (in increasing offset; stage 1
 * only: the units of a pipeline stage, Megatron's distributed optimizer). */
lms_status lms_zero_init_units(lms_zero *z, int stage, lms_comm *dp, lms_gpt *m, lms_backend *be,
                               const lms_zero_range *r, int nr);
/* 1 when tensor v lies in a unit of z that is not a copy. */
int lms_zero_holds(const lms_zero *z, const lms_tensor_view *v);
void lms_zero_free(lms_zero *z);
/* Stage 3: this rank's parameter shard from the seed / from a full copy
 * (full in host memory, shard_dst in the backend's). */
void lms_zero_init_params(lms_zero *z, uint64_t seed);
lms_status lms_zero_shard_from_full(lms_zero *z, const float *full, float *shard_dst);
/* Every rank: the whole parameter buffer into dst (num_params floats). */
lms_status lms_zero_gather_full(lms_zero *z, float *dst);
/* The flat range [lo, lo+n) of this rank's part of unit u. */
static inline size_t lms_zero_part_lo(const lms_zero *z, int u) {
    return z->units[u].off + (size_t)z->rank * z->units[u].part;
}
/* Where tensor v meets this rank's part of unit u: the flat range [*a, *b);
 * 0 when they do not meet. */
static inline int lms_zero_overlap(const lms_zero *z, int u, const lms_tensor_view *v, size_t *a, size_t *b) {
    const size_t lo = lms_zero_part_lo(z, u), hi = lo + z->units[u].mine, end = v->offset + v->numel;
    *a = v->offset > lo ? v->offset : lo;
    *b = end < hi ? end : hi;
    return *a < *b;
}
/* Before the first micro-batch of a step: zeroes the gradients held. */
lms_status lms_zero_begin_step(lms_zero *z);
/* Stage 1: the ready hook for the last micro-step's backward (ctx = z). */
lms_status lms_zero_ready(void *z, size_t offset, size_t count);
/* After the last micro-step's backward: completes every reduce-scatter. */
lms_status lms_zero_finish_grads(lms_zero *z);
/* The global gradient norm: sum of squares over every shard. */
lms_status lms_zero_grad_norm(lms_zero *z, lms_backend *be, double *norm);
/* AdamW on the shard (moments of shard_n floats), then (stages 1, 2) the
 * all-gather that gives every rank the new parameters. */
lms_status lms_zero_step(lms_zero *z, lms_adamw *opt, lms_backend *be, float lr, float grad_scale);

/* ---- tensor parallelism: a tp rank's tensors and whole-tensor files ----
 * (src/parallel/tp.c; the split computation is the model's: lms_gpt_tp).
 * Checkpoints and Hugging Face files hold whole tensors, wte with
 * lms_pad_vocab(V) rows; a tp rank's part of a tensor is one box (three
 * for the fused QKV) of it, its padded vocabulary rows beyond the file's
 * zero. */
/* dst (v's local shape) = rank m->tp->rank's part of the whole tensor
 * `whole` (rows × the tensor's columns; rows may be fewer than the model's
 * padded vocabulary: the rest are 0). */
lms_status lms_tp_extract(const lms_gpt *m, const lms_tensor_view *v, const float *whole, int64_t rows, float *dst);
/* dst = this rank's part of checkpoint tensor group+v->name (host memory). */
lms_status lms_tp_read(const lms_ckpt *ck, const char *group, const lms_gpt *m, const lms_tensor_view *v,
                       float *dst);
/* Parameters (host m->params) and, with opt, AdamW's moments (laid out as
 * m's tensors) and step, from a checkpoint of any layout. */
lms_status lms_tp_load_train(const lms_ckpt *ck, lms_gpt *m, lms_adamw *opt);
/* m's local parameters (into dst) from Hugging Face GPT-2 weights in dir. */
lms_status lms_tp_load_hf(const char *dir, const lms_gpt *m, float *dst);
/* The checkpoint pieces (chunks of the whole tensor group+v->name) that
 * hold elements [start, start+count) of local tensor v, whose values are
 * data[0..count): at most 3·3 boxes, written to out (cap entries); returns
 * how many, or -1 when cap is too small. */
int lms_tp_pieces(const lms_gpt *m, const lms_tensor_view *v, const char *group, size_t start, size_t count,
                  const float *data, lms_ckpt_piece *out, int cap);
/* *whole (a new model without gradients, lms_pad_vocab(V) vocabulary rows,
 * the micro-batch capacity of m) = the whole model, from the parts of
 * every rank of m's tp group (collective over it). */
lms_status lms_tp_gather_whole(const lms_gpt *m, lms_gpt *whole);
/* The weight of v's squared gradient in the global norm on one rank: 1 for
 * a split tensor, 1/tp for a replicated one (every tp rank holds the same
 * values: summed over the group it counts once). */
double lms_tp_norm_weight(const lms_gpt *m, const lms_tensor_view *v);

/* ---- pipeline schedules (src/parallel/pipeline.c) ----
 * Stage s of p runs v model chunks (v > 1: interleaved 1F1B); chunk c of
 * stage s is virtual stage j = c·p + s, and virtual stage j holds the
 * layers [first[j], first[j+1]). Virtual stage 0 also holds the embedding,
 * virtual stage p·v − 1 ln_f and the LM head. A stage's schedule is the
 * order of its 2·m·v operations: the forward (F) and backward (B) of each
 * micro-batch through each of its chunks.
 *   gpipe        F of every micro-batch, then every B;
 *   1f1b         min(p − s − 1, m) warm-up forwards, then one F one B, then
 *                the remaining Bs (PipeDream-Flush: at most p − s
 *                micro-batches in flight);
 *   interleaved  Narayanan et al. 2021: 1F1B over the m·v (micro-batch,
 *                chunk) pairs, with (p − s − 1)·2 + (v − 1)·p warm-up
 *                forwards; m must be a multiple of p. */
typedef enum { LMS_PP_GPIPE = 0, LMS_PP_1F1B, LMS_PP_INTERLEAVED } lms_pp_schedule;
lms_status lms_pp_schedule_parse(const char *s, lms_pp_schedule *out);
const char *lms_pp_schedule_name(lms_pp_schedule s);
/* The schedule that runs for --pp-schedule `asked` and v chunks per stage:
 * v > 1 makes 1f1b interleaved; gpipe with v > 1, or interleaved with
 * v < 2, is an error naming the flags. */
lms_status lms_pp_schedule_resolve(lms_pp_schedule asked, int v, lms_pp_schedule *out);

typedef struct {
    int backward; /* 0: F, 1: B */
    int mb;       /* micro-batch, 0 .. m-1 */
    int chunk;    /* model chunk of this stage, 0 .. v-1 */
} lms_pp_op;

/* The 2·m·v operations of `stage` in order, into ops. */
lms_status lms_pp_schedule_ops(lms_pp_schedule sched, int p, int stage, int m, int v, lms_pp_op *ops);
/* first[0 .. p·v]: the layers of each virtual stage. given (n = p entries,
 * v = 1 only) is --pp-layers; NULL splits the L layers as evenly as
 * possible (the first L mod (p·v) virtual stages get one more). Errors name
 * the flag: fewer layers than stages, a count below 1, a sum other than L. */
lms_status lms_pp_split_layers(int L, int p, int v, const int *given, int n, int *first);
/* The stage of p (v chunks each, layers split by first[] as above) that
 * updates parameter unit `unit` of an L-layer model (lms_gpt_unit_range):
 * the embedding (0) on the first, ln_f (L + 1) on the last, block l's unit
 * (l + 1) on the stage of its virtual stage. */
int lms_pp_unit_owner(const int *first, int L, int p, int v, int unit);
/* Parses --pp-layers "a,b,c" into at most cap counts. */
lms_status lms_pp_layers_parse(const char *s, int *counts, int cap, int *n);

#ifdef __cplusplus
}
#endif
#endif
