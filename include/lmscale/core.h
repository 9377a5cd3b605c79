/* lmscale core: status codes, errors as values, the context, logging,
 * the counter-based RNG, aligned allocation and timing.
 *
 * Every fallible function returns lms_status. On failure it records a
 * readable message in the context (lms_errorf) saying what was wrong and how
 * to fix it; the caller passes the status up with LMS_CHECK and only the CLI
 * prints it and exits. */
#ifndef LMSCALE_CORE_H
#define LMSCALE_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    LMS_OK = 0,
    LMS_ERR_INVALID_ARG,  /* a flag, config value or shape is invalid */
    LMS_ERR_IO,           /* a file could not be read or written */
    LMS_ERR_FORMAT,       /* a file's content is malformed */
    LMS_ERR_OOM,          /* an allocation failed */
    LMS_ERR_UNSUPPORTED,  /* asked for something this build cannot do */
    LMS_ERR_NUMERIC,      /* non-finite loss or gradient */
    LMS_ERR_INTERNAL,     /* a bug: an invariant did not hold */
} lms_status;

/* The short name of a status ("invalid argument", ...). Never NULL. */
const char *lms_status_str(lms_status s);

#define LMS_CHECK(call)                        \
    do {                                       \
        lms_status lms_check_s_ = (call);      \
        if (lms_check_s_ != LMS_OK) return lms_check_s_; \
    } while (0)

/* Inside functions that clean up through `goto fail`: sets `st` and jumps. */
#define LMS_TRY(call)                          \
    do {                                       \
        st = (call);                           \
        if (st != LMS_OK) goto fail;           \
    } while (0)

/* Programmer errors only (never for bad input). Aborts with file:line. */
#define LMS_ASSERT(cond)                                                     \
    do {                                                                     \
        if (!(cond)) lms_assert_fail(#cond, __FILE__, __LINE__);             \
    } while (0)
void lms_assert_fail(const char *expr, const char *file, int line);

/* ---- element types ----
 * The dtypes of tensors, buffers and messages. bf16 and fp16 are storage
 * types: lms_fp32_to_bf16 / lms_fp32_to_fp16 round to nearest, ties to even
 * (as PyTorch's .to(torch.bfloat16) / .half()); NaN stays NaN. */
typedef enum {
    LMS_DT_F32 = 0,
    LMS_DT_F64,
    LMS_DT_I32,
    LMS_DT_I64,
    LMS_DT_U8,
    LMS_DT_BF16,
    LMS_DT_F16,
    LMS_DT_COUNT
} lms_dtype;
/* Bytes per element; 0 for an unknown value. */
size_t lms_dtype_size(lms_dtype t);
/* "fp32", "fp64", "int32", "int64", "uint8", "bf16", "fp16"; "?" if unknown. */
const char *lms_dtype_name(lms_dtype t);
/* A set of dtypes as a bit mask (what an op accepts). */
#define LMS_DTM(t) (1u << (t))

uint16_t lms_fp32_to_bf16(float x);
float lms_bf16_to_fp32(uint16_t h);
uint16_t lms_fp32_to_fp16(float x);
float lms_fp16_to_fp32(uint16_t h);
/* n elements at a time (dst and src must not overlap). */
void lms_fp32_to_bf16_n(uint16_t *dst, const float *src, size_t n);
void lms_bf16_to_fp32_n(float *dst, const uint16_t *src, size_t n);
void lms_fp32_to_fp16_n(uint16_t *dst, const float *src, size_t n);
void lms_fp16_to_fp32_n(float *dst, const uint16_t *src, size_t n);

/* ---- error messages ---- */

/* The error message of the most recent failure, kept per thread of control
 * in a small buffer; lms_errorf writes it and returns `s` so that
 *     return lms_errorf(LMS_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
 * both records and propagates. */
lms_status lms_errorf(lms_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prefix the current message with context ("while reading X: ..."). */
lms_status lms_error_context(lms_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
const char *lms_last_error(void);
void lms_clear_error(void);

/* ---- logging ---- */

typedef enum { LMS_LOG_ERROR = 0, LMS_LOG_WARN, LMS_LOG_INFO, LMS_LOG_DEBUG } lms_log_level;

typedef struct {
    lms_log_level level;
    int rank;          /* only rank 0 prints below LMS_LOG_WARN unless all_ranks */
    int all_ranks;
    FILE *out;         /* stdout unless redirected; not owned */
} lms_logger;

void lms_log(const lms_logger *lg, lms_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- counter-based random numbers (layout independent) ---- */

/* A key derived from (seed, name); values are then a pure function of
 * (key, index): the same on any rank, thread or parallel layout. */
uint64_t lms_rng_key(uint64_t seed, const char *name);
uint64_t lms_rng_u64(uint64_t key, uint64_t index);
/* uniform in [0, 1) with 24 bits */
float lms_rng_uniform(uint64_t key, uint64_t index);
/* standard normal (Box–Muller on two 32-bit halves of one 64-bit draw) */
float lms_rng_normal(uint64_t key, uint64_t index);
uint64_t lms_hash_str(const char *s);

/* ---- allocation ---- */

/* 64-byte aligned, zeroed. NULL on failure (callers turn it into LMS_ERR_OOM
 * with lms_alloc_checked). */
void *lms_alloc(size_t bytes);
lms_status lms_alloc_checked(void **out, size_t bytes, const char *what);
void lms_free(void *p);

/* ---- environment ----
 * The one place lmscale reads environment variables (STYLE 11): NULL when
 * unset or empty. Variables read: OPENBLAS_CORETYPE (to warn about slow BLAS
 * kernels), and the launchers' OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMI_RANK,
 * PMIX_RANK, MPI_LOCALNRANKS, SLURM_NTASKS, SLURM_PROCID (to pick the MPI
 * communicator), OMPI_COMM_WORLD_RANK (to know the rank before MPI starts),
 * LMS_TEST_CRASH_IN_SAVE (test hook, docs/checkpoints.md),
 * LMSCALE_COMM_TIMEOUT (the collective watchdog) and LMSCALE_FAULT (fault
 * injection, a test hook); see docs/parallelism.md; LMSCALE_PROGRESS
 * (seconds between plain progress lines, 0 = none; docs/observability.md);
 * XDG_CACHE_HOME and HOME (where `train` caches the measured MFU peak,
 * docs/mfu.md). */
const char *lms_env(const char *name);

/* ---- time ---- */
double lms_now_s(void); /* monotonic seconds */

/* ---- the context ---- */

typedef struct lms_ctx {
    int rank, world;        /* 0 and 1 in one process */
    int threads;            /* worker threads (OpenMP) */
    uint64_t seed;
    lms_logger log;
} lms_ctx;

/* threads <= 0: use the OpenMP default (all cores). */
void lms_ctx_init(lms_ctx *ctx, uint64_t seed, int threads);
/* Number of worker threads this build will use (1 without OpenMP). */
int lms_max_threads(void);

/* ---- overflow-checked arithmetic (for counts, offsets and shapes read
 * from files): 1 when the exact result does not fit in *out (then *out is
 * unspecified), 0 when it does. */
static inline int lms_add_overflow(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_add_overflow(a, b, out);
}
static inline int lms_mul_overflow(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_mul_overflow(a, b, out);
}

/* ---- files ---- */

/* Opens path for reading only if it is a regular file: a FIFO, device or
 * directory is refused without blocking (the open is non-blocking and the
 * check is fstat on the opened descriptor, so nothing can be swapped in
 * between). Errors name the path and the fix. */
lms_status lms_fopen_regular(const char *path, FILE **out);

/* Read a whole regular file into a malloc'ed buffer (caller frees with
 * free()), followed by a NUL byte not counted in *size. Errors name the
 * path and the fix. */
lms_status lms_read_file(const char *path, unsigned char **data, size_t *size);

/* Atomic write: data goes to "<path>.tmp.<pid>", is fsynced, then renamed
 * over path; on any failure the temporary is removed and path is untouched. */
typedef struct {
    FILE *f;
    char *path;
    char *tmp_path;
} lms_atomic_file;
lms_status lms_atomic_open(lms_atomic_file *af, const char *path);
lms_status lms_atomic_write(lms_atomic_file *af, const void *data, size_t n);
lms_status lms_atomic_commit(lms_atomic_file *af);
void lms_atomic_abort(lms_atomic_file *af);

uint32_t lms_crc32(uint32_t crc, const void *data, size_t n);
/* Creates path and its missing parents (mkdir -p); an error names the part
 * that could not be made, or says path exists and is not a directory. */
lms_status lms_mkdirs(const char *path);

#ifdef __cplusplus
}
#endif
#endif
