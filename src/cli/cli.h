/* Internal to the CLI: the flag parser and the subcommands. */
#ifndef LMS_CLI_H
#define LMS_CLI_H

#include "lmscale/checkpoint.h"
#include "lmscale/core.h"
#include "lmscale/data.h"
#include "lmscale/model.h"
#include "lmscale/optim.h"
#include "lmscale/obs.h"
#include "lmscale/parallel.h"
#include "lmscale/train.h"

#include <stdio.h>

typedef enum { CLI_INT, CLI_FLOAT, CLI_STR, CLI_BOOL, CLI_U64 } cli_kind;

typedef struct {
    const char *name; /* without the leading "--" */
    cli_kind kind;
    void *dst; /* int*, float*, const char**, int* (bool), uint64_t* */
    const char *metavar;
    const char *help;
} cli_opt;

typedef struct {
    const char *cmd;     /* "train" */
    const char *summary; /* one line */
    const char *usage;   /* "lmscale train --data FILE [flags]" */
    const cli_opt *opts;
    int nopts;
    const char *epilog; /* may be NULL */
} cli_spec;

/* Parses argv (after the subcommand). *help is set for --help/-h.
 * Errors name the flag and suggest the closest known one. */
lms_status cli_parse(const cli_spec *spec, int argc, char **argv, int *help);
void cli_print_help(const cli_spec *spec, FILE *out);
/* cli_parse that also sets given[k] (spec->nopts of them, zeroed by the
 * caller) when flag k is on the command line; cli_given asks by name. */
lms_status cli_parse_given(const cli_spec *spec, int argc, char **argv, int *help, unsigned char *given);
int cli_given(const cli_spec *spec, const unsigned char *given, const char *name);

/* Model shape flags shared by train and eval. Dimensions left at -1 come
 * from the preset. */
typedef struct {
    const char *preset;
    int L, NH, C, maxT, V;
} cli_model_opts;
#define CLI_MODEL_OPTS_DEFAULT {"nano", -1, -1, -1, -1, -1}
#define CLI_MODEL_FLAGS(mo)                                                                      \
    {"model", CLI_STR, &(mo).preset, "NAME", "model preset: nano, micro, mini, gpt2-124m, ... (sizes listed below)"},         \
    {"num-layers", CLI_INT, &(mo).L, "L", "transformer blocks (overrides the preset)"},          \
    {"num-heads", CLI_INT, &(mo).NH, "H", "attention heads; must divide the hidden size"},       \
    {"hidden-size", CLI_INT, &(mo).C, "C", "channels"},                                          \
    {"max-seq-len", CLI_INT, &(mo).maxT, "T", "maximum sequence length (positions)"},            \
    {"vocab-size", CLI_INT, &(mo).V, "V", "vocabulary size (padded to a multiple of 64 inside)"}
lms_status cli_model_config(const cli_model_opts *mo, lms_gpt_config *cfg);

/* The identity of a tokenizer (tokid.c): which one a model, a checkpoint or
 * a data file belongs to, so that a contradiction is refused. */
typedef enum { CLI_TOK_UNKNOWN = 0, CLI_TOK_BYTES, CLI_TOK_BPE } cli_tok_kind;
typedef struct {
    cli_tok_kind kind;
    int have_files; /* BPE: vocab/merges (absolute) hold the files, CRC-32s of their bytes */
    char vocab[4096], merges[4096];
    uint32_t vocab_crc, merges_crc;
    char src[4200]; /* where it came from, for messages: "checkpoint 'ck/step-00000010'" */
    int text_as_bytes; /* unknown, but text is read as bytes (--init DIR without tokenizer files) */
} cli_tok_id;
void cli_tokid_set(cli_tok_id *id, cli_tok_kind kind, const char *src);
/* BPE from the two files (both required), CRCs computed. */
lms_status cli_tokid_files(cli_tok_id *id, const char *vocab, const char *merges, const char *src);
/* dir/vocab.json + dir/merges.txt when both exist (*found); one alone is an
 * error. */
lms_status cli_tokid_dir(cli_tok_id *id, const char *dir, const char *src, int *found);
/* Same tokenizer, as far as both are known (unknown agrees with anything;
 * two BPE with files compare their CRCs). */
int cli_tokid_same(const cli_tok_id *a, const cli_tok_id *b);
/* Refuses a contradiction with a message naming both, then `fix`. */
lms_status cli_tokid_agree(const cli_tok_id *a, const cli_tok_id *b, const char *fix);
const char *cli_tokid_describe(const cli_tok_id *id, char *buf, size_t cap);
/* The tokenizer itself: BPE with files, else bytes. */
lms_status cli_tokid_load(const cli_tok_id *id, lms_tokenizer *tok);
/* Copies BPE files into dir as vocab.json and merges.txt (atomically;
 * checks they did not change); nothing for other tokenizers. */
lms_status cli_tokid_copy_to(const cli_tok_id *id, const char *dir);
/* A checkpoint's recorded tokenizer, found: with --vocab/--merges (given,
 * may be NULL or unknown) they must be the same and are used; else the copy
 * inside ckdir, else the recorded paths; CRCs checked. */
lms_status cli_tokid_ckpt(const lms_ckpt_state *s, const char *ckdir, const cli_tok_id *given, cli_tok_id *out);
/* --init DIR without tokenizer files: bytes when the model has the byte
 * vocabulary (V = 257); else unknown (any token data agrees) with text read
 * as bytes, and a warning. */
void cli_tokid_hf_bytes(cli_tok_id *id, const char *src, int V, const lms_logger *lg);
/* Refuses an unknown tokenizer where one is needed (why: "to encode the
 * prompt"). */
lms_status cli_tokid_require(const cli_tok_id *id, const char *why);
/* Into a checkpoint's state: "bpe" + files, "bytes", or "unknown" (BPE ids
 * whose files are not known, e.g. llm.c shards). */
lms_status cli_tokid_record(const cli_tok_id *id, lms_ckpt_state *s);
/* What the data files of a --data value were tokenized with: lmscale
 * shards' header, vocab.json + merges.txt beside a shard, llm.c shards (GPT-2
 * ids); unknown when nothing says. Files that disagree are refused.
 * *has_text: some files are text (tokenized by the run's tokenizer). */
lms_status cli_tokid_data(const char *paths, lms_data_role role, cli_tok_id *id, int *has_text);

/* Training, shared by `train` and `demo`. */
typedef struct {
    cli_model_opts model;
    const char *data, *val_data;
    const char *vocab, *merges; /* BPE tokenizer for text data (else bytes) */
    float val_fraction;
    int batch_size, micro_batch_size, seq_len, steps;
    float lr, min_lr;
    int warmup;
    const char *schedule;
    float beta1, beta2, eps, weight_decay, grad_clip;
    uint64_t seed;
    int eval_interval, eval_batches, log_interval;
    const char *metrics, *save_model, *data_order, *backend;
    float peak_tflops;
    int peak_probe; /* measure the sgemm peak again after each counted step (bench train) */
    int threads, quiet;
    /* checkpoints (train_ckpt.c) */
    const char *save_dir, *resume, *init;
    int save_every, keep_last, stop_after;
    int model_flags_given; /* --model or a dimension flag was on the command line */
    /* data parallelism (docs/parallelism.md) */
    int dp;             /* 0: the world size */
    int tp;             /* tensor-parallel degree (0 or 1: none) */
    int sequence_parallel; /* --sequence-parallel (with --tp > 1) */
    const char *comm;   /* auto, single, mpi */
    float bucket_mb;    /* gradient all-reduce bucket size */
    int zero;           /* ZeRO stage 0 (off), 1, 2, 3 */
    /* pipeline parallelism */
    int pp, vpp;             /* stages (0, 1: none); model chunks per stage (interleaved) */
    const char *pp_layers;   /* "a,b,...": layers per stage; NULL: even */
    const char *pp_schedule; /* gpipe, 1f1b, interleaved */
    const char *recompute; /* none, selective, full (docs/recompute.md) */
    const char *dtype;     /* fp32, bf16, fp16 (docs/mixed-precision.md) */
    float loss_scale, initial_loss_scale, min_loss_scale;
    int loss_scale_window;
    int log_all_ranks;  /* every rank prints (prefixed) and writes --metrics FILE.rank<R> */
    float comm_timeout; /* collective watchdog, seconds (0 off, < 0 LMSCALE_COMM_TIMEOUT or the default) */
    float exit_duration_mins; /* save and stop after this many minutes (0 = no limit) */
    int overwrite;            /* --save may delete another run's checkpoints */
    const cli_spec *cli;      /* the parsed command line and its flags given (cli_given); NULL when not */
    const unsigned char *given;
    /* seeing the run (train_obs.c, docs/observability.md) */
    const char *tensorboard_dir; /* TensorBoard event files (rank 0) */
    const char *profile, *trace; /* "A:B" and the trace file */
    lms_obs *obs;                /* when set, the caller's timing (bench train); else train's own */
} train_opts;

/* Resume / --init state of a run (train_ckpt.c). */
typedef struct {
    int have_cfg;          /* cfg comes from a checkpoint or --init */
    lms_gpt_config cfg;
    char *resume_path;     /* the checkpoint resumed from; owned */
    void *ck;              /* lms_ckpt *, owned */
    int last_saved_step;
    /* the run's tokenizer, recorded in (and copied into) every checkpoint */
    cli_tok_id tok_id;
    lms_ckpt_run run; /* this run's id and settings, recorded in every checkpoint */
} train_ckpt_ctx;

/* Before validation: resolves --resume (newest valid checkpoint) or reads
 * --init's config.json and tokenizer; refuses model flags that contradict
 * them. */
lms_status train_ckpt_prepare(const train_opts *o, train_ckpt_ctx *c, lms_tokenizer *tok, const lms_logger *lg);
/* Checks the run's batch, sequence length and steps against the checkpoint
 * and returns the step to start from (0 without --resume). *seed and *order
 * are replaced by the checkpoint's. */
lms_status train_ckpt_start(const train_opts *o, train_ckpt_ctx *c, int G, int T, uint64_t *seed,
                            lms_data_order *order, int *start_step);
/* Saves a checkpoint after `steps_done` steps when --save is set and it is
 * due (every --save-every steps, or final). Every rank calls it; the
 * trainer's strategy decides what each writes (lms_trainer_save). The
 * starting state (checkpoint, --init or seed) is restored by
 * lms_trainer_init. */
lms_status train_ckpt_maybe_save(const train_opts *o, train_ckpt_ctx *c, int steps_done, int final,
                                 const lms_schedule *sched, int G, int T, uint64_t seed, lms_data_order order,
                                 const lms_tokenizer *tok, lms_trainer *tr, const lms_logger *lg);
void train_ckpt_free(train_ckpt_ctx *c);

/* A run across resumes (train_resume.c, docs/checkpoints.md). On --resume
 * (c->ck open): *out = o with the run's settings from the checkpoint where
 * the command line did not give them; a differing flag is applied with a
 * notice (schedule, steps, optimizer, validation cadence, save cadence) or
 * refused (seed, batch, sequence length, data order, --val-fraction); a
 * --stop-after not after the resumed step is refused. Without --save the
 * run saves where the checkpoint is (save_buf holds that path). */
lms_status train_resume_opts(const train_opts *o, const train_ckpt_ctx *c, train_opts *out, char *save_buf,
                             size_t save_cap, const lms_logger *lg);
/* Fills c->run, recorded in every checkpoint: the run id (the checkpoint's
 * on resume, else a new random one, the same on every rank: collective),
 * the split (n_train, n_val tokens) and the settings a resume restores. A
 * resumed run's split must be its checkpoint's. */
lms_status train_run_record(train_ckpt_ctx *c, const train_opts *o, lms_comm *world, uint64_t n_train,
                            uint64_t n_val);
/* --save DIR holding checkpoints of a run other than `id` (a fresh run: any
 * checkpoint; a resumed one also owns those from before run ids) is an error
 * unless --overwrite, which deletes them (rank 0). */
lms_status train_check_run_folder(const train_opts *o, const char *id, int resumed, int rank, const lms_logger *lg);

/* Stopping early on request (train_stop.c): the first SIGINT, SIGTERM or
 * SIGUSR1, or --exit-duration-mins, stops the run after the step it is in,
 * on every rank at the same step; it saves (with --save) and `lmscale train`
 * exits TRAIN_EXIT_STOPPED. A second signal exits at once (128 + signal). */
#define TRAIN_EXIT_STOPPED 85 /* stopped early with a checkpoint: resume (75 is the watchdog's) */
typedef struct {
    double t_start, limit_s; /* --exit-duration-mins from t_start (0: none) */
    int installed;
    int reason; /* of the last poll: 0 go on, 1 time limit, 1000 + signal number */
} train_stop;
void train_stop_install(train_stop *s, float exit_duration_mins, double t_start);
/* Once per step on every rank (collective under MPI: one all-reduce of one
 * integer): sets s->reason, agreed by all ranks. */
lms_status train_stop_poll(train_stop *s, lms_comm *world);
const char *train_stop_reason(const train_stop *s, char *buf, size_t cap);
void train_stop_restore(train_stop *s); /* the handlers from before install */

/* The --metrics file and the MFU peak (train_report.c). */
typedef struct {
    FILE *f;
    char path[4096];
} train_metrics;
typedef struct {
    int step;
    double loss, lr, grad_norm, step_ms, tokens_per_s, mfu;
    int have_val;
    double val_loss;
    const double *state_mb; /* params, grads, optimizer: MB per rank */
    long peak_rss_mb;
    unsigned long long tokens; /* seen so far, the whole job's */
    const lms_obs *obs;        /* the step's phases (may be NULL) */
    const char *extra;         /* more JSON members (", \"pp_idle\": [...]"), or NULL */
    int fp16;                  /* loss scaling: the next three are written */
    double loss_scale;
    int skipped, skipped_total; /* this step was skipped (inf/NaN gradients); skipped so far */
} train_row;
/* Opens path for appending after dropping its rows of steps after
 * resumed_step (0: a new run, every row), atomically; only a regular file is
 * rewritten. */
lms_status train_metrics_open(train_metrics *m, const char *path, int resumed_step, const lms_logger *lg);
/* One JSON object per line, flushed; a failed write is an error. */
lms_status train_metrics_put(train_metrics *m, const train_row *r);
lms_status train_metrics_close(train_metrics *m);
/* The step's communication counts as metrics members (", \"tp_coll_bytes\":
 * N, \"dp_coll_bytes\": N", and the pipeline's with pipeline set), into buf. */
void train_comm_json(const lms_step_result *r, int pipeline, char *buf, size_t cap);
/* The peak for MFU in TFLOP/s: --peak-tflops when > 0, else the one measured
 * for this CPU, thread count, BLAS kernel and backend, cached in
 * $XDG_CACHE_HOME/lmscale/peak-<hash>.json (or ~/.cache/lmscale) so that runs
 * compare. src says where it came from. */
lms_status train_peak(float flag_tflops, lms_backend *be, int threads, const lms_logger *lg, double *peak,
                      char *src, size_t cap);
/* What train shows of a run (train_obs.c): per-phase timing, the --profile
 * trace, TensorBoard events, the summary table. */
typedef struct {
    lms_obs own, *obs;
    lms_trace *trace;
    lms_tb *tb;
    int rank0, step_a, step_b, written;
    double t_ckpt;
} train_obs;
typedef struct {
    int step;
    double loss;
    float lr;
    double grad_norm, val_loss, tokens_per_s, mfu, peak_rss_mb, step_s;
} train_obs_row;
/* After validation, before any collective of the run: wraps the backend and
 * *world when profiling (the wrapper replaces *world and owns it). */
lms_status train_obs_open(train_obs *to, const train_opts *o, lms_comm **world, lms_backend *be);
/* Right before the first step: opens the TensorBoard file (rank 0), says
 * where things go. */
lms_status train_obs_start(train_obs *to, const train_opts *o, const lms_logger *lg);
/* After each step's metrics: TensorBoard scalars; the trace is written
 * (collectively) after step STEP_B. */
lms_status train_obs_step(train_obs *to, const train_opts *o, lms_comm *world, const train_obs_row *r);
void train_obs_ckpt_begin(train_obs *to);
void train_obs_ckpt_end(train_obs *to, int saved);
/* The trace if not yet written, and the summary table (rank 0). */
lms_status train_obs_close(train_obs *to, const train_opts *o, lms_comm *world, const lms_logger *lg,
                           double tokens_per_step, double flops_per_token, double peak_tflops);
void train_obs_free(train_obs *to, lms_backend *be);

void train_opts_default(train_opts *o);
/* Validates o, loads data (unless train/val tokens are given), trains and
 * saves. When keep is non-NULL the trained model is moved there (caller
 * frees with lms_gpt_free). *stopped_early (may be NULL) is set when a signal
 * or --exit-duration-mins ended the run before its last step. */
lms_status train_run(const train_opts *o, const lms_tokens *train_tok, const lms_tokens *val_tok,
                     lms_gpt *keep, float *final_val_loss, int *stopped_early);

int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_bench_train(int argc, char **argv);
int cmd_bench_attention(int argc, char **argv);
int cmd_tokenizer(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_plot(int argc, char **argv);

/* Collects every value of a repeated, multi-valued flag: "--name A B C",
 * "--name=A", comma lists "A,B"; the other arguments go to *rest for
 * cli_parse. Free both with cli_list_free. */
lms_status cli_take_list(int argc, char **argv, const char *name, const char ***list, int *n, char ***rest,
                         int *nrest);
void cli_list_free(const char **list, char **rest);
/* The BPE tokenizer from --vocab/--merges, or bytes when neither is given. */
lms_status cli_load_tokenizer(const char *vocab, const char *merges, lms_tokenizer *tok);

int cmd_export(int argc, char **argv);
int cmd_estimate(int argc, char **argv);
int cmd_plan(int argc, char **argv);

/* The layout flags shared by `estimate` and `plan` (estimate.c); the
 * checks are lms_layout_check's, the same as `train`'s. */
#include "lmscale/plan.h"
typedef struct {
    cli_model_opts model;
    int world, dp, tp, pp, vpp, seq_len, batch_size, micro_batch_size, zero, seq_parallel;
    const char *dtype, *recompute, *pp_schedule;
} cli_layout_opts;
#define CLI_LAYOUT_FLAGS(lo)                                                                               \
    {"seq-len", CLI_INT, &(lo).seq_len, "T", "sequence length (default: the model's, at most 1024)"},     \
    {"batch-size", CLI_INT, &(lo).batch_size, "B", "global batch, in sequences"},                         \
    {"micro-batch-size", CLI_INT, &(lo).micro_batch_size, "M", "sequences per forward/backward (default B/dp)"}, \
    {"world", CLI_INT, &(lo).world, "N", "processes of the job (default dp x tp x pp)"},                  \
    {"dp", CLI_INT, &(lo).dp, "N", "data-parallel degree (default world / (tp x pp), else 1)"},           \
    {"tp", CLI_INT, &(lo).tp, "N", "tensor-parallel degree"},                                              \
    {"pp", CLI_INT, &(lo).pp, "N", "pipeline stages"},                                                     \
    {"virtual-stages", CLI_INT, &(lo).vpp, "V", "model chunks per pipeline rank (interleaved 1F1B)"},      \
    {"pp-schedule", CLI_STR, &(lo).pp_schedule, "KIND", "gpipe, 1f1b (default), or interleaved"},           \
    {"zero", CLI_INT, &(lo).zero, "STAGE", "ZeRO stage 0..3"},                                            \
    {"dtype", CLI_STR, &(lo).dtype, "T", "fp32, bf16 or fp16 (mixed precision: 16-bit weights, fp32 master)"}, \
    {"recompute", CLI_STR, &(lo).recompute, "MODE", "activation recomputation: none, selective or full"}, \
    {"sequence-parallel", CLI_BOOL, &(lo).seq_parallel, NULL, "Megatron sequence parallelism (with --tp)"}
void cli_layout_opts_default(cli_layout_opts *o);
lms_status cli_layout_resolve(const cli_layout_opts *o, lms_gpt_config *cfg, lms_layout *lo);
lms_status cli_impl_parse(const char *s, lms_impl *out);


/* The model from exactly one of --load FILE, --init DIR (Hugging Face) or
 * --resume DIR (checkpoint, or the newest valid one in DIR), inference only,
 * activations for (B, T) (B <= 0: 1; T <= 0: the model's maxT); and its
 * tokenizer (*tok, identity *id): the one it records, or --vocab/--merges
 * (may be NULL), which must not contradict it. */
lms_status cli_load_model(const char *load, const char *init, const char *resume, const char *vocab,
                          const char *merges, int B, int T, lms_gpt *m, lms_tokenizer *tok, cli_tok_id *id,
                          const lms_logger *lg);
/* Refuses --data whose tokenizer contradicts the model's (eval). */
lms_status cli_check_data_tokenizer(const char *data, const cli_tok_id *model);

/* A forward of tokens x (B, T) with targets y: *loss, their mean loss. */
typedef lms_status (*eval_forward_fn)(void *ctx, const int32_t *x, const int32_t *y, int B, int T, float *loss);
/* Evaluate mean loss over sequential windows of ld, batches of up to B
 * (at most max_batches; <= 0: all) through fwd, reporting tokens done to
 * prog (may be NULL); used by train (the trainer's forward) and eval. */
lms_status eval_loss_fn(eval_forward_fn fwd, void *ctx, const lms_loader *ld, int B, long max_batches,
                        double *loss, long *tokens, lms_progress *prog);
/* The same through lms_gpt_forward(m, be, a, ...). */
lms_status eval_loss_ex(lms_gpt *m, lms_backend *be, lms_gpt_acts *a, const lms_loader *ld, int B,
                        long max_batches, double *loss, long *tokens, lms_progress *prog);

/* This process's rank as the launcher set it (0 when not launched by
 * mpirun/srun); used before a communicator exists. */
int cli_launch_rank(void);
/* Prints "lmscale <cmd>: error: <message>" and returns the exit code. In a
 * multi-process job, invalid-argument errors (the same on every rank) are
 * printed by rank 0 only; other errors by every rank, with its number. */
int cli_fail(const char *cmd, lms_status st);

/* The demo task (demo_task.c): generated arithmetic problems. */
typedef struct {
    int digits;
    uint64_t seed;
} demo_task;
/* Training text: n_problems lines "a+b=c\n" (c written reversed), skipping
 * held-out pairs. *text malloc'ed. */
lms_status demo_make_text(const demo_task *t, size_t n_problems, int held_out, char **text,
                          size_t *len);
/* Characters per problem line ("463+057=0250\n": 3·digits + 4). */
int demo_line_len(const demo_task *t);
/* Problem i of the held-out set: prompt "a+b=" and the expected answer. */
void demo_held_out_problem(const demo_task *t, uint64_t i, char *prompt, size_t pcap,
                           char *answer, size_t acap);

#endif
