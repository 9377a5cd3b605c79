/* lmscale model: the GPT-2 architecture (docs/model.md).
 *
 * Parameters and gradients are each one flat fp32 buffer, layer-major, with
 * named views (lms_tensor_view) derived from one tensor table. The model is
 * three pieces — embed, block l, head+loss — each with an explicit forward
 * and backward over caller-owned activations (lms_gpt_acts, one set per
 * micro-batch); the whole-model passes and KV-cache decoding are loops over
 * them. The pieces call the backend's ops explicitly, one per line. */
#ifndef LMSCALE_MODEL_H
#define LMSCALE_MODEL_H

#include "lmscale/backend.h"
#include "lmscale/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int L;    /* layers */
    int NH;   /* attention heads */
    int C;    /* channels (hidden size) */
    int maxT; /* maximum sequence length (rows of wpe) */
    int V;    /* vocabulary size */
    int Vp;   /* V padded up to a multiple of 64 (of 64·tp under tensor parallelism) */
    int tp;   /* 0 or 1: the whole model; N > 1: one tensor-parallel rank's part of it, where
               * every split tensor (lms_split) has 1/N of its rows or columns: the layout,
               * the views, the units and the pieces are then the rank's (lms_gpt_tp) */
} lms_gpt_config;

/* V rounded up to a multiple of 64. */
int lms_pad_vocab(int V);
/* Fill cfg from a preset name (gpt2-124m, gpt2-350m, gpt2-774m, gpt2-1558m,
 * aliases gpt2, gpt2-medium, gpt2-large, gpt2-xl; tiny sizes nano, micro,
 * mini). V is the GPT-2 vocabulary (50257) for the gpt2 presets and the
 * byte vocabulary (257) for the tiny ones; callers may override. */
lms_status lms_gpt_preset(lms_gpt_config *cfg, const char *name);
/* The preset names, comma separated, for help and error text. */
const char *lms_gpt_preset_names(void);
/* Checks every dimension (positive, NH divides C, ...), sets Vp and tp = 0
 * (the whole model). Errors name the flag to change. */
lms_status lms_gpt_config_validate(lms_gpt_config *cfg);
/* For tensor parallelism over tp ranks (after _validate): checks that tp
 * divides the heads and pads the vocabulary so that it divides
 * (lms_pad_vocab_tp; tp = 1 leaves Vp as _validate set it). */
lms_status lms_gpt_config_tp(lms_gpt_config *cfg, int tp);

/* ---- the tensor table ----
 * Every GPT parameter is described once, in src/model/tensors.c, by a
 * lms_gpt_tensor_spec; the flat layout (offsets, views), pointer binding,
 * ZeRO's parameter units, the model FLOP count, checkpoint names, the
 * Hugging Face names and the tensor-parallel split of each tensor are all
 * derived from that table. Weights are (out, in), as y = x·Wᵀ + b. */

/* How tensor parallelism (Megatron-LM's layers) splits a tensor over tp
 * ranks: COLUMN splits the output features (dim 0: weight rows and the
 * bias), ROW the input features (dim 1 of a weight; its bias is not
 * split), VOCAB the padded vocabulary rows of the embedding. */
typedef enum { LMS_SPLIT_NONE = 0, LMS_SPLIT_COLUMN, LMS_SPLIT_ROW, LMS_SPLIT_VOCAB } lms_split;
/* GPT-2's initialisation: N(0, 0.02); N(0, 0.02/sqrt(2L)) for the
 * projections into the residual stream; ones; zeros. */
typedef enum { LMS_INIT_NORMAL = 0, LMS_INIT_NORMAL_RESID, LMS_INIT_ONES, LMS_INIT_ZEROS } lms_init_rule;
/* A global dimension, as a function of the config. */
typedef enum { LMS_DIM_1 = 0, LMS_DIM_C, LMS_DIM_3C, LMS_DIM_4C, LMS_DIM_VP, LMS_DIM_MAXT } lms_dim;
/* Where a tensor lives: its parameter unit (below) is 0 for EMBED,
 * 1 + l for block l, L + 1 for FINAL. */
typedef enum { LMS_SCOPE_EMBED = 0, LMS_SCOPE_BLOCK, LMS_SCOPE_FINAL } lms_scope;

typedef struct {
    const char *name;    /* "wte"; in a block the part after "h.<l>.", e.g. "attn.c_attn.weight" */
    const char *hf_name; /* transformers' GPT2Model name (a block's after "h.<l>.") */
    lms_scope scope;
    lms_dim dims[2];     /* global shape; dims[1] == LMS_DIM_1 for a 1-D tensor */
    lms_split split;
    int fused;           /* >1: rows are `fused` stacked matrices (q, k, v) split alike */
    int decay;           /* weight decay applies */
    lms_init_rule init;
    int hf_transpose;    /* transformers' Conv1D stores the weight as (in, out) */
    int flops;           /* counts in the model FLOPs (all but the position embedding) */
    size_t slot;         /* offsetof its pointer in lms_gpt_tensors (EMBED, FINAL) or lms_gpt_block */
} lms_gpt_tensor_spec;

/* The table, in flat-buffer order within each scope; *n entries. */
const lms_gpt_tensor_spec *lms_gpt_tensor_specs(int *n);
/* The size of a dimension for cfg. */
int64_t lms_gpt_dim(const lms_gpt_config *cfg, lms_dim d);

/* One tensor of the flat buffer: a table entry placed for a config. */
typedef struct {
    char name[48];
    const lms_gpt_tensor_spec *spec; /* its table entry (static) */
    int layer;      /* block index, -1 outside blocks */
    int unit;       /* parameter unit (lms_gpt_unit_range) */
    size_t offset;  /* in floats, into the flat buffer */
    size_t numel;
    int ndim;
    int shape[2];
    int decay;      /* 1: weight decay applies (2-D weights) */
    float init_std; /* >0: N(0, std); else constant init_value */
    float init_value;
    int valid_rows; /* rows [valid_rows, shape[0]) initialised to 0 (padded vocab) */
} lms_tensor_view;

/* Its Hugging Face name ("h.3.mlp.c_fc.weight", "wte.weight") into buf. */
void lms_gpt_hf_name(const lms_tensor_view *v, char *buf, size_t n);

/* ---- tensor-parallel shards ----
 * The part of a tensor that tp rank `rank` of `tp` holds: its local shape,
 * and where it lies in the global tensor as 1 chunk (or `fused` chunks for
 * QKV, whose rank r holds heads [r·NH/tp, (r+1)·NH/tp) of q, of k and of
 * v). A chunk is a box: offset and size per dimension, in the global
 * tensor and in the local one. An unsplit tensor is replicated: every rank
 * holds all of it. */
#define LMS_TP_MAX_CHUNKS 3
typedef struct {
    int64_t global[2]; /* offset in the global tensor, per dimension */
    int64_t local[2];  /* offset in the local tensor */
    int64_t size[2];
} lms_tp_chunk;
typedef struct {
    int ndim;
    int64_t shape[2]; /* local */
    int nchunks;
    lms_tp_chunk chunk[LMS_TP_MAX_CHUNKS];
} lms_tp_shard;
/* Errors (a clear message) when tp does not divide what it must split: the
 * heads, 4·C, or the padded vocabulary (see lms_pad_vocab_tp). */
lms_status lms_gpt_tp_shard(const lms_gpt_config *cfg, const lms_tensor_view *v, int tp, int rank,
                            lms_tp_shard *out);
/* V padded so that each of tp ranks holds a multiple of 64 rows (Megatron's
 * make-vocab-size-divisible-by × tp); lms_pad_vocab(V) is tp = 1. */
int lms_pad_vocab_tp(int V, int tp);

/* Pointers to one block's tensors inside a flat buffer. */
typedef struct {
    float *ln1w, *ln1b, *qkvw, *qkvb, *attprojw, *attprojb;
    float *ln2w, *ln2b, *fcw, *fcb, *fcprojw, *fcprojb;
} lms_gpt_block;

typedef struct {
    float *wte, *wpe, *lnfw, *lnfb;
    lms_gpt_block *h; /* L entries; owned by the lms_gpt */
} lms_gpt_tensors;

typedef struct {
    lms_gpt_config cfg;
    size_t num_params;
    int num_tensors;
    lms_tensor_view *tensors; /* owned */
    float *params;            /* param_buf's data: num_params floats (or NULL: LMS_GPT_NO_PARAMS) */
    float *grads;             /* grad_buf's data: num_params, or NULL for inference */
    lms_backend *be;          /* whose buffers hold them (NULL: host memory); not owned */
    lms_buffer param_buf, grad_buf; /* owned */
    lms_gpt_tensors p, g;     /* views into params and grads */
    int cap_B, cap_T;         /* the micro-batch size the caller set the model up for */
    const struct lms_gpt_hooks *hooks; /* NULL, or ZeRO's per-unit gather/scatter (below) */
    struct lms_gpt_tp *tp;    /* NULL, or this rank's tensor-parallel group (cfg.tp > 1; below) */
    int part;                 /* 1: only some tensors are held (lms_gpt_init_part: a pipeline stage's) */
} lms_gpt;

/* ---- tensor parallelism (Megatron-LM; src/model/gpt_tp.c, docs/parallelism.md) ----
 * A model made with cfg.tp = N holds one tp rank's part: QKV and MLP fc
 * column-parallel, the attention and MLP output projections row-parallel
 * (their biases whole, added once after the all-reduce), wte split over
 * the padded vocabulary; LayerNorms, wpe and row-parallel biases are
 * replicated. With m->tp set, the pieces run the split computation: the
 * conjugate operators f (identity forward, all-reduce backward) and g
 * (all-reduce forward, identity backward) around each block half, the
 * masked embedding lookup + all-reduce, and the vocabulary-parallel
 * cross-entropy (a local max and sum-exp, all-reduced; the logits are
 * never gathered: head.logits holds this rank's Vp/N columns). */
struct lms_comm;
typedef struct lms_gpt_tp {
    struct lms_comm *comm; /* the tp group; not owned */
    int size, rank;
    int seq_parallel;      /* Megatron sequence parallelism (--sequence-parallel) */
    double comm_s;         /* seconds in the pieces' tp collectives so far (their bytes: comm->coll_bytes) */
    void *work;            /* sequence parallelism's gather buffer; owned (lms_gpt_tp_free_work) */
} lms_gpt_tp;
void lms_gpt_tp_free_work(lms_gpt_tp *tp);
/* The config of tp rank's part of the model: cfg (validated) with the
 * vocabulary padded to 64·tp and cfg.tp = tp. Errors name --tp. */
lms_status lms_gpt_config_local(const lms_gpt_config *cfg, int tp, lms_gpt_config *local);
/* The whole model's config of a part's (cfg.tp = 0; Vp as the part pads it). */
lms_gpt_config lms_gpt_config_whole(const lms_gpt_config *local);
/* Initialises dst (laid out as m's local tensors) with exactly the values
 * the one-process model has there, for tp rank m->tp->rank. */
lms_status lms_gpt_init_params_tp(const lms_gpt *m, uint64_t seed, float *dst);
/* The shard of local view v (of m) in the whole tensor (of lms_gpt_config_whole). */
lms_status lms_gpt_local_shard(const lms_gpt *m, const lms_tensor_view *v, lms_tp_shard *s);

/* ---- activations: one caller-owned set per micro-batch ----
 * N = B·T rows. The residual stream between the pieces is stream[0..L]:
 * stream[0] is the embedding's output (block 0's input), stream[l+1] block
 * l's output, stream[L] the head's input. Each layer's saved activations
 * are one contiguous run of memory (so that a set can later drop and
 * recompute them layer by layer). Several sets may be in flight at once
 * (pipeline schedules); one model serves them all. */
typedef struct {
    float *ln1, *ln1_mean, *ln1_rstd; /* (N,C), (N), (N) */
    float *qkv;                       /* (N,3C): q | k | v, head h at columns h·hs of each */
    float *atty, *att_lse;            /* (N,C), (B,NH,T) */
    float *attproj, *resid2;          /* (N,C): attention output projection; in + attproj */
    float *ln2, *ln2_mean, *ln2_rstd; /* (N,C), (N), (N) */
    float *fch, *fch_gelu;            /* (N,4C) */
    float *fcproj;                    /* (N,C) */
} lms_gpt_layer_acts;

typedef struct {
    float *lnf, *lnf_mean, *lnf_rstd; /* (N,C), (N), (N) */
    float *logits;                    /* (N,Vp); backward overwrites them with dlogits */
    float *losses, *xent_lse;         /* (N) */
    /* non-zero: the forward fused the loss gradient (lms_gpt_forward_train),
     * logits already hold the dlogits for this dloss */
    float dlogits_dloss;
} lms_gpt_head_acts;

/* what backward needs besides the saved activations (only with_backward) */
typedef struct {
    float *dx;          /* (N,C): d(loss)/d(residual stream), flowing from the head to the embedding */
    float *dln, *datty; /* (N,C) */
    float *dqkv;        /* (N,3C) */
    float *dfch, *dfch_gelu; /* (N,4C) */
} lms_gpt_grad_acts;

/* Activation recomputation (Korthikanti et al. 2022; docs/recompute.md):
 * what an activation set keeps per layer for backward.
 *   NONE       everything backward reads (17·C floats per row and layer);
 *   SELECTIVE  drops the attention output and its log-sum-exp (recomputed
 *              by one attention forward from the kept q, k, v), the GELU
 *              output (recomputed from its kept input) and the two
 *              projection outputs (backward never reads them): 10·C;
 *   FULL       keeps only each block's input (the residual stream) and
 *              recomputes the whole block before its backward: 1·C, plus
 *              one layer's set shared by all layers.
 * Backward recomputes with the same ops on the same inputs, so losses and
 * gradients are bit-identical to NONE on a given backend and thread count. */
typedef enum { LMS_RECOMPUTE_NONE = 0, LMS_RECOMPUTE_SELECTIVE, LMS_RECOMPUTE_FULL } lms_recompute;

typedef struct {
    int cap_B, cap_T;           /* capacity */
    int B, T;                   /* shape of the last forward */
    int has_loss;               /* the last forward had targets */
    int L;
    float **stream;             /* L+1 entries (N,C); owned */
    lms_gpt_layer_acts *layer;  /* L entries; owned */
    lms_gpt_head_acts head;
    lms_gpt_grad_acts grad;     /* all NULL when not with_backward */
    float *mem;                 /* buf's data: everything above */
    size_t floats;
    lms_backend *be;            /* whose buffer (NULL: host memory); not owned */
    lms_buffer buf;             /* owned */
    lms_recompute recompute;    /* what the layers keep (layers may share memory) */
} lms_gpt_acts;

/* Activations for micro-batches up to (B, T); with_backward adds what
 * backward needs. On failure nothing is left allocated. */
lms_status lms_gpt_acts_init(lms_gpt_acts *a, const lms_gpt_config *cfg, int B, int T, int with_backward);
/* As lms_gpt_acts_init, keeping for backward what `rc` says (with_backward
 * sets; an inference set ignores rc). */
lms_status lms_gpt_acts_init_rc(lms_gpt_acts *a, const lms_gpt_config *cfg, int B, int T, int with_backward,
                                lms_recompute rc);
/* The same in a buffer of backend be (NULL: host memory, as above). */
lms_status lms_gpt_acts_init_on(lms_gpt_acts *a, const lms_gpt_config *cfg, int B, int T, int with_backward,
                                lms_recompute rc, lms_backend *be);
void lms_gpt_acts_free(lms_gpt_acts *a);
/* Before block l's backward: recomputes what la dropped under rc (FULL:
 * the whole block forward from `in`, its output written to `out`, any
 * (N,C) scratch the caller no longer needs; SELECTIVE: attention and GELU
 * forward). A no-op for NONE. */
lms_status lms_gpt_block_recompute(lms_gpt *m, lms_backend *be, int l, const float *in, lms_gpt_layer_acts *la,
                                   float *out, int B, int T, lms_recompute rc);
/* Block l's saved activations (0 <= l < L). */
static inline lms_gpt_layer_acts *lms_gpt_acts_layer(lms_gpt_acts *a, int l) { return &a->layer[l]; }

/* ---- parameter units ----
 * The pieces that ZeRO-3 gathers and ZeRO-2/3 reduce-scatter one at a time,
 * in flat-buffer order: unit 0 = embeddings (wte, wpe), 1..L = block u-1,
 * L+1 = ln_f. */
int lms_gpt_num_units(const lms_gpt_config *c);
void lms_gpt_unit_range(const lms_gpt_config *c, int unit, size_t *offset, size_t *count);
/* Where unit u's tensors lie in m's own flat buffers (under lms_gpt_init_part
 * only those the model holds, packed): 0 when it holds none of them. For a
 * whole model the same as lms_gpt_unit_range. */
int lms_gpt_unit_span(const lms_gpt *m, int unit, size_t *offset, size_t *count);
/* Points the parameter (pbase) and/or gradient (gbase) views of one unit at
 * a buffer holding just that unit; NULL leaves that side as it is. */
void lms_gpt_bind_unit(lms_gpt *m, int unit, float *pbase, float *gbase);

/* Called by forward and backward around each use of a unit. acquire must
 * leave the unit's parameter views valid and, in backward, its gradient
 * views pointing at memory that backward may accumulate into (zeroed for
 * this use); release says the use is over and, in backward, that this
 * use's gradient contribution is complete. A unit may be used more than
 * once per pass (the tied embedding: encoder and LM head). */
enum { LMS_USE_FORWARD = 0, LMS_USE_BACKWARD = 1, LMS_USE_GRAD_ONLY = 2 /* backward, no parameters read */ };
/* A failure (a collective that did not start or finish) stops the pass at
 * once: forward/backward return the hook's status. */
typedef struct lms_gpt_hooks {
    void *ctx;
    lms_status (*acquire)(void *ctx, lms_gpt *m, int unit, int use);
    lms_status (*release)(void *ctx, lms_gpt *m, int unit, int use);
} lms_gpt_hooks;

/* Allocates parameters (zeroed; call lms_gpt_init_params) and gradients
 * when with_grads; (B, T) is recorded as cap_B, cap_T, the micro-batch the
 * caller means to run (activations are the caller's: lms_gpt_acts_init).
 * cfg must have passed lms_gpt_config_validate. On failure everything is
 * freed. */
lms_status lms_gpt_init(lms_gpt *m, const lms_gpt_config *cfg, int B, int T, int with_grads);
/* As lms_gpt_init; flags: LMS_GPT_GRADS allocates the flat gradient buffer,
 * LMS_GPT_NO_PARAMS leaves params NULL (the views are bound per unit by
 * hooks: ZeRO-3). */
enum { LMS_GPT_GRADS = 1, LMS_GPT_NO_PARAMS = 2 };
lms_status lms_gpt_init_ex(lms_gpt *m, const lms_gpt_config *cfg, int B, int T, unsigned flags);
/* As lms_gpt_init_ex, with parameters and gradients in buffers of backend
 * be (be->i->buffer_alloc); NULL: host memory (lms_gpt_init_ex). */
lms_status lms_gpt_init_on(lms_gpt *m, const lms_gpt_config *cfg, int B, int T, unsigned flags, lms_backend *be);
/* Which tensors a part of the model holds: per unit (lms_gpt_num_units
 * entries), none, all, or of unit 0 only wte (the last pipeline stage's copy
 * of the tied embedding, for its LM head). */
enum { LMS_GPT_HOLD_NONE = 0, LMS_GPT_HOLD_ALL = 1, LMS_GPT_HOLD_WTE = 2 };
/* As lms_gpt_init_on, holding only the tensors hold[] names (NULL: all):
 * m->tensors lists just those, with their global names, layers and units,
 * at offsets packed into buffers of their size (num_params floats); the
 * pointers of tensors not held stay NULL (m->part = 1). A pipeline stage's
 * model (src/train/pipe.c). */
lms_status lms_gpt_init_part(lms_gpt *m, const lms_gpt_config *cfg, int B, int T, unsigned flags, lms_backend *be,
                             const unsigned char *hold);
/* Makes the model's parameters and gradients host memory that needs no
 * backend (m->be NULL), so that the model can outlive its backend (a
 * trainer's model handed to its caller). On a host-memory backend (the CPU
 * backends) the buffers stay where they are; others are not supported yet
 * (LMS_ERR_UNSUPPORTED). */
lms_status lms_gpt_to_host(lms_gpt *m);
/* Tensor i of the table as an lms_tensor over the model's parameter buffer
 * (grad: over the gradient buffer): its global name, fp32, shape and the
 * byte offset into that buffer. LMS_ERR_INVALID_ARG when i is out of range
 * or that buffer is not held (LMS_GPT_NO_PARAMS, no gradients). */
lms_status lms_gpt_tensor(lms_gpt *m, int i, int grad, lms_tensor *out);
void lms_gpt_free(lms_gpt *m);
/* Makes `grads` (num_params floats of host memory, owned by the caller and
 * outliving m's use of it: data parallelism's node-shared block) m's
 * gradient buffer, in place of the one m allocated (freed here). m must
 * hold gradients and live in host memory. */
lms_status lms_gpt_use_grads(lms_gpt *m, float *grads);
/* The same for the parameters (their values are the caller's to fill). */
lms_status lms_gpt_use_params(lms_gpt *m, float *params);
/* Floats of the activation buffer lms_gpt_acts_init allocates for training
 * (with backward) micro-batches up to (B, T); the memory estimate of
 * src/plan/ uses it. */
size_t lms_gpt_act_floats(const lms_gpt_config *cfg, int B, int T);
/* The same under recomputation rc. */
size_t lms_gpt_act_floats_rc(const lms_gpt_config *cfg, int B, int T, lms_recompute rc);

/* Builds the named views for cfg; *out is malloc'ed (caller frees). Also
 * used by tools that read parameters without a model (export, checkpoint). */
lms_status lms_gpt_layout(const lms_gpt_config *cfg, lms_tensor_view **out, int *count,
                          size_t *num_params);
/* The same for only the tensors hold[] names (lms_gpt_init_part), packed. */
lms_status lms_gpt_layout_part(const lms_gpt_config *cfg, const unsigned char *hold, lms_tensor_view **out,
                               int *count, size_t *num_params);
/* Parameters of the whole model of cfg (lms_gpt_layout's num_params). */
size_t lms_gpt_num_params(const lms_gpt_config *cfg);
/* Binds per-tensor pointers over a flat buffer laid out as m's own
 * (m->tensors: lms_gpt_layout's, or a part's). */
void lms_gpt_bind_views(const lms_gpt *m, float *base, lms_gpt_tensors *t);
/* The view named name among v[0..n); NULL if none. */
const lms_tensor_view *lms_gpt_find_view(const lms_tensor_view *v, int n, const char *name);
/* Find a view by name; NULL if none. */
const lms_tensor_view *lms_gpt_find(const lms_gpt *m, const char *name);

/* GPT-2 initialisation keyed by (seed, tensor name, element index): the same
 * values whatever the thread count or (later) parallel layout. */
void lms_gpt_init_params(lms_gpt *m, uint64_t seed);
/* The same values for the flat range [lo, lo+n) only, written to dst[0..n):
 * how a ZeRO-3 rank initialises its shard without the whole model. */
void lms_gpt_init_params_range(const lms_tensor_view *views, int nviews, uint64_t seed, size_t lo, size_t n,
                               float *dst);
/* The same values for tensor-parallel shard s of tensor t, written to dst
 * in s's local shape (row-major). */
void lms_gpt_init_tp_shard(const lms_tensor_view *t, const lms_tp_shard *s, uint64_t seed, float *dst);

/* ---- the model in pieces ----
 * Each piece reads its input and writes its output activation explicitly
 * (in, out: (N,C) rows of the residual stream), acquires and releases the
 * parameter units it uses through m->hooks, and returns the first failing
 * op's or hook's status. Backward pieces accumulate into the gradient
 * views (m->g) and take dx (N,C) = d(loss)/d(their output), which they
 * turn into d(loss)/d(their input) in place (the residual branch is the
 * identity). Tokens and targets are the caller's, passed to each piece that
 * reads them. Shapes: B <= a->cap_B, T <= a->cap_T, pos0 + T <= maxT. */

/* out = wte[tokens] + wpe[pos0 .. pos0+T). Unit 0. */
lms_status lms_gpt_embed_forward(lms_gpt *m, lms_backend *be, const int32_t *tokens, int B, int T, int pos0,
                                 float *out);
/* d wte, d wpe += from dx (the gradient of the embedding's output). */
lms_status lms_gpt_embed_backward(lms_gpt *m, lms_backend *be, const int32_t *tokens, int B, int T,
                                  const float *dx);
struct lms_kv_cache;
/* out = block l (in), saving into la what backward needs. kv NULL: causal
 * attention over the T positions of each sequence. kv non-NULL (decoding,
 * B = T = 1): the token's k and v go into the cache at position kv->len
 * and it attends over positions 0..kv->len. Unit l+1. */
lms_status lms_gpt_block_forward(lms_gpt *m, lms_backend *be, int l, const float *in, lms_gpt_layer_acts *la,
                                 float *out, int B, int T, struct lms_kv_cache *kv);
/* Backward of block l, whose forward read `in` and saved la; dx in place
 * from d/d(out) to d/d(in); g scratch (dx is g->dx or any (N,C) buffer). */
lms_status lms_gpt_block_backward(lms_gpt *m, lms_backend *be, int l, const float *in,
                                  const lms_gpt_layer_acts *la, float *dx, lms_gpt_grad_acts *g, int B, int T);
/* Final LayerNorm and the tied LM head on `in`: h->logits (N,Vp); with
 * targets also the per-position losses and *loss (when loss is not NULL)
 * = their mean. Units L+1 and 0. */
lms_status lms_gpt_head_forward(lms_gpt *m, lms_backend *be, const float *in, lms_gpt_head_acts *h,
                                const int32_t *targets, int B, int T, float *loss);
/* The same for a backward that follows with this dloss (0: none): where
 * the backend has xent_fused (and not under tp), the cross-entropy also
 * writes the dlogits over h->logits in the same pass (bit for bit what the
 * backward's xent_bwd would write), h->dlogits_dloss = dloss, and the head
 * backward, which must get the same dloss, skips that pass. */
lms_status lms_gpt_head_forward_train(lms_gpt *m, lms_backend *be, const float *in, lms_gpt_head_acts *h,
                                      const int32_t *targets, int B, int T, float dloss, float *loss);
/* Backward of the head from the loss: writes dx (N,C) = d(loss)/d(in),
 * loss = sum of the per-position losses times dloss; dlogits overwrite
 * h->logits; g scratch. */
lms_status lms_gpt_head_backward(lms_gpt *m, lms_backend *be, const float *in, lms_gpt_head_acts *h,
                                 const int32_t *targets, float dloss, float *dx, lms_gpt_grad_acts *g, int B,
                                 int T);

/* ---- the whole model: thin loops over the pieces ---- */

/* Forward over tokens (B,T) into the activation set a (B <= a->cap_B,
 * T <= a->cap_T <= maxT). With targets, *loss (when loss is not NULL) is the
 * mean cross-entropy over the B·T positions; without, *loss is 0 and only
 * the logits are computed (a->head.logits, (B,T,Vp)). A failing op or hook
 * is returned at once (LMS_ERR_UNSUPPORTED before any compute when the
 * backend lacks an op for fp32). */
lms_status lms_gpt_forward(lms_gpt *m, lms_backend *be, lms_gpt_acts *a, const int32_t *tokens,
                           const int32_t *targets, int B, int T, float *loss);
/* lms_gpt_forward for training: the same results, where the backward that
 * follows (lms_gpt_backward with this dloss) finds the loss gradient over
 * the logits already (lms_gpt_head_forward_train): one pass over the
 * (B·T, Vp) logits less. Evaluation and generation use lms_gpt_forward. */
lms_status lms_gpt_forward_train(lms_gpt *m, lms_backend *be, lms_gpt_acts *a, const int32_t *tokens,
                                 const int32_t *targets, int B, int T, float dloss, float *loss);
/* grads = 0 through the backend (no-op without a gradient buffer). */
lms_status lms_gpt_zero_grad(lms_gpt *m, lms_backend *be);
/* Called during backward each time a range of the flat gradient buffer is
 * final for this micro-batch: [offset, offset+count) in floats, one
 * parameter unit (lms_gpt_unit_range) at a time. The ranges arrive in
 * strictly descending order and together cover the whole buffer: ln_f,
 * block L-1, ..., block 0, then wte+wpe. Data parallelism starts each
 * bucket's all-reduce from here. */
typedef lms_status (*lms_grad_ready_fn)(void *ctx, size_t offset, size_t count);
/* Backward of the forward that filled a (with the same tokens and
 * targets; a with_backward set). Accumulates into grads: d(loss_i)/d(params)
 * · dloss summed over positions i, so dloss = 1/(B·T·k) gives the gradient
 * of the mean over k accumulated micro-batches. ready (NULL: none) as above;
 * a hook's failure ends the pass with its status. */
lms_status lms_gpt_backward(lms_gpt *m, lms_backend *be, lms_gpt_acts *a, const int32_t *tokens,
                            const int32_t *targets, float dloss, lms_grad_ready_fn ready, void *ctx);

/* Number of parameters that count for model FLOPs: all but wpe, with the
 * unpadded vocabulary (the tied wte is the LM head matmul). */
size_t lms_gpt_flop_params(const lms_gpt_config *cfg);

/* ---- inference with a KV cache ----
 * Decoding runs the same pieces as training (lms_gpt_block_forward with the
 * cache) on a (1, 1) activation set the cache owns. */
typedef struct lms_kv_cache {
    int L, maxT, C, len;
    float *k, *v;      /* (L, maxT, C) each: buf's data */
    float *scores;     /* (maxT): buf's data */
    lms_gpt_acts acts; /* (1, 1), owned */
    lms_backend *be;   /* whose buffer (NULL: host memory); not owned */
    lms_buffer buf;    /* owned: k, v and scores */
} lms_kv_cache;

lms_status lms_kv_cache_init(lms_kv_cache *kv, const lms_gpt_config *cfg);
/* The same in buffers of backend be (NULL: host memory). */
lms_status lms_kv_cache_init_on(lms_kv_cache *kv, const lms_gpt_config *cfg, lms_backend *be);
void lms_kv_cache_free(lms_kv_cache *kv);
/* Feed one token at position kv->len (< maxT); writes logits (Vp, host
 * memory) and advances the cache. Under tensor parallelism (m->tp; the
 * cache made with the part's config holds the rank's heads) it is
 * collective over the tp group and every rank gets the whole vocabulary's
 * logits, the same bytes on every rank. */
lms_status lms_gpt_decode_step(lms_gpt *m, lms_backend *be, lms_kv_cache *kv, int32_t token,
                               float *logits);
/* out (Vp floats, host memory) = the logits of row `row` of h, a head
 * forward's activations: a copy, or under tensor parallelism every rank's
 * Vp/tp columns all-gathered (collective over the tp group). */
lms_status lms_gpt_logits_row(lms_gpt *m, lms_backend *be, const lms_gpt_head_acts *h, int row, float *out);

/* ---- model files (weights + config; the full training checkpoint is a
 * separate format) ---- */
/* tokenizer: 0 = byte-level. Written atomically. */
lms_status lms_model_save(const char *path, const lms_gpt *m, int tokenizer_kind);
/* Reads the config first and allocates *m with activations (B,T); B of 0
 * means 1, T of 0 means cfg.maxT. */
lms_status lms_model_load(const char *path, lms_gpt *m, int B, int T, int with_grads,
                          int *tokenizer_kind);

/* ---- sampling ---- */
typedef struct {
    float temperature; /* 0: greedy */
    int top_k;         /* 0: off */
    float top_p;       /* 1: off */
} lms_sampler;
/* Picks a token from logits over the first V entries; u is a uniform [0,1)
 * draw. scratch holds 2·V floats/ints. */
int lms_sample(const float *logits, int V, const lms_sampler *s, float u, void *scratch);

#ifdef __cplusplus
}
#endif
#endif
