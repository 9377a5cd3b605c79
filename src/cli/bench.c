/* `lmscale bench comm`: collective bandwidth over sizes, reported as
 * nccl-tests does: time is the slowest rank's mean per call; algbw = bytes /
 * time, where bytes is the full buffer (for reduce_scatter the input of
 * size·count elements, for allgather the output); busbw = algbw ·
 * 2(n-1)/n for all-reduce and algbw · (n-1)/n for reduce-scatter and
 * all-gather — the rate each link must carry, comparable across rank
 * counts. Run it under mpirun or srun.
 *
 * Besides the blocking calls, the all-reduce paths training can take
 * (lms_dp_sync, src/parallel/dp.c), reported as all-reduces: iallreduce
 * (MPI_Iallreduce in place, then wait); dp_buckets, the buffer in
 * --bucket-mb buckets each all-reduced out of place into a persistent
 * receive buffer, all in flight before the waits (training's path across
 * nodes, or with LMSCALE_DP_SHM=0); dp_shm, the sum in node-shared memory
 * in --bucket-mb chunks (training's path on one node). */
#include "cli.h"
#include "lmscale/comm.h"
#include "lmscale/parallel.h"

#include <stdlib.h>
#include <string.h>

static lms_status parse_bytes(const char *flag, const char *s, size_t *out) {
    char *end;
    double v = strtod(s, &end);
    double mul = 1;
    if (*end == 'K' || *end == 'k') mul = 1024, end++;
    else if (*end == 'M' || *end == 'm') mul = 1048576, end++;
    else if (*end == 'G' || *end == 'g') mul = 1073741824.0, end++;
    if (end == s || *end || !(v > 0))
        return lms_errorf(LMS_ERR_INVALID_ARG, "--%s '%s' is not a size (e.g. 1K, 64M, 1G)", flag, s);
    *out = (size_t)(v * mul);
    return LMS_OK;
}

typedef enum { OP_ALLREDUCE, OP_IALLREDUCE, OP_DP_BUCKETS, OP_DP_SHM, OP_REDUCE_SCATTER, OP_ALLGATHER, OP_COUNT } bench_op;
static const char *OP_NAMES[] = {"allreduce", "iallreduce", "dp_buckets", "dp_shm", "reduce_scatter", "allgather"};

/* training's path: backward reports the buffer in descending ranges of
 * about a bucket each; finish launches the rest and waits */
static lms_status run_dp(lms_dp_sync *d, size_t count) {
    lms_dp_sync_begin(d);
    size_t step = d->bucket_floats;
    for (size_t hi = count; hi > 0;) {
        size_t lo = hi > step ? hi - step : 0;
        LMS_CHECK(lms_dp_sync_ready(d, lo, hi - lo));
        hi = lo;
    }
    return lms_dp_sync_finish(d);
}

static lms_status run_op(lms_comm *w, bench_op op, float *a, float *b, size_t count, lms_dp_sync *d) {
    size_t per = count / (size_t)w->size;
    lms_comm_req *req;
    switch (op) {
    case OP_ALLREDUCE: return w->i->allreduce(w, a, b, count, LMS_DT_F32, LMS_RED_SUM);
    case OP_IALLREDUCE:
        LMS_CHECK(w->i->iallreduce(w, a, a, count, LMS_DT_F32, LMS_RED_SUM, &req));
        return lms_comm_wait(w, req);
    case OP_DP_BUCKETS:
    case OP_DP_SHM: return run_dp(d, count);
    case OP_REDUCE_SCATTER: return w->i->reduce_scatter(w, a, b, per, LMS_DT_F32, LMS_RED_SUM);
    case OP_ALLGATHER: return w->i->allgather(w, a, b, per, LMS_DT_F32);
    case OP_COUNT: break;
    }
    return LMS_OK;
}

/* whole names in a comma list ("allreduce" is not in "iallreduce") */
static int op_listed(const char *list, const char *name) {
    size_t n = strlen(name);
    for (const char *p = list; (p = strstr(p, name)) != NULL; p += n)
        if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == '\0')) return 1;
    return 0;
}

static lms_status bench_comm(const char *backend, size_t min_b, size_t max_b, int iters_opt, int warmup,
                             const char *ops, float timeout, float bucket_mb) {
    lms_comm *w = NULL;
    LMS_CHECK(lms_comm_world(backend, NULL, NULL, &w));
    float *a = NULL, *b = NULL;
    lms_status st;
    LMS_TRY(lms_comm_set_timeout(w, timeout));
    int P = w->size;
    size_t cap = (max_b / 4 / (size_t)P + 1) * (size_t)P;
    a = lms_alloc(cap * 4);
    b = lms_alloc(cap * 4);
    if (!a || !b) {
        st = lms_errorf(LMS_ERR_OOM, "cannot allocate 2 x %.0f MiB for --max-bytes", cap * 4 / 1048576.0);
        goto fail;
    }
    for (size_t i = 0; i < cap; i++) a[i] = 1.0f;
    if (w->rank == 0)
        printf("# lmscale bench comm: %d ranks (%s), float32; time = slowest rank's mean per call\n"
               "# algbw = bytes/time; busbw = algbw x 2(n-1)/n (allreduce), x (n-1)/n (reduce_scatter, "
               "allgather), as nccl-tests\n", P, w->i->name);
    for (int op = 0; op < OP_COUNT; op++) {
        if (!op_listed(ops, OP_NAMES[op])) continue;
        if (w->rank == 0)
            printf("\n%-14s %12s %12s %12s %12s %12s\n", OP_NAMES[op], "bytes", "count", "time(us)",
                   "algbw(GB/s)", "busbw(GB/s)");
        for (size_t bytes = min_b; bytes <= max_b; bytes *= 2) {
            size_t count = bytes / 4 / (size_t)P * (size_t)P;
            if (count == 0) continue;
            int iters = iters_opt > 0 ? iters_opt : (int)(64.0 * 1048576 / (double)bytes);
            if (iters_opt <= 0) iters = iters < 3 ? 3 : iters > 200 ? 200 : iters;
            lms_dp_sync dps = {0}, *d = op == OP_DP_BUCKETS || op == OP_DP_SHM ? &dps : NULL;
            if (d) {
                LMS_TRY(lms_dp_sync_init(d, w, a, count, (size_t)(bucket_mb * 1048576.0f), op == OP_DP_SHM));
                if (op == OP_DP_SHM && !d->shm) {
                    lms_dp_sync_free(d);
                    if (w->rank == 0) printf("%-14s (no shared memory: the ranks are on more than one node)\n", "");
                    break;
                }
                float *g = lms_dp_sync_grads(d);
                for (size_t i = 0; i < count; i++) g[i] = 1.0f;
            }
            for (int k = 0; k < warmup && st == LMS_OK; k++) st = run_op(w, (bench_op)op, a, b, count, d);
            if (st == LMS_OK) st = w->i->barrier(w);
            double t0 = lms_now_s();
            for (int k = 0; k < iters && st == LMS_OK; k++) st = run_op(w, (bench_op)op, a, b, count, d);
            double dt = (lms_now_s() - t0) / iters, worst = 0;
            lms_dp_sync_free(d);
            if (st != LMS_OK) goto fail;
            LMS_TRY(w->i->allreduce(w, &dt, &worst, 1, LMS_DT_F64, LMS_RED_MAX));
            double sz = (double)count * 4, algbw = sz / worst / 1e9;
            double factor = op <= OP_DP_SHM ? 2.0 * (P - 1) / P : (double)(P - 1) / P;
            if (w->rank == 0)
                printf("%-14s %12.0f %12zu %12.1f %12.3f %12.3f\n", "", sz, count, worst * 1e6, algbw,
                       algbw * factor);
            fflush(stdout);
        }
    }
fail:
    lms_free(a);
    lms_free(b);
    lms_comm_free(w);
    return st;
}

int cmd_bench(int argc, char **argv) {
    if (argc >= 1 && strcmp(argv[0], "train") == 0) return cmd_bench_train(argc - 1, argv + 1);
    if (argc >= 1 && strcmp(argv[0], "attention") == 0) return cmd_bench_attention(argc - 1, argv + 1);
    if (argc < 1 || strcmp(argv[0], "comm") != 0) {
        if (argc >= 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
            printf("lmscale bench: benchmarks.\n\nusage: lmscale bench train [flags]   training throughput, MFU, "
                   "time per phase (see 'lmscale bench train --help')\n       lmscale bench comm [flags]    "
                   "collective bandwidth (see 'lmscale bench comm --help')\n       lmscale bench attention [flags]  "
                   "attention forward/backward vs the sgemm peak (see 'lmscale bench attention --help')\n");
            return 0;
        }
        lms_errorf(LMS_ERR_INVALID_ARG, "unknown benchmark '%s' (choose: train, comm, attention)", argc >= 1 ? argv[0] : "");
        return cli_fail("bench", LMS_ERR_INVALID_ARG);
    }
    const char *min_s = "1K", *max_s = "256M", *backend = "auto", *ops = "allreduce,dp_buckets,dp_shm,reduce_scatter,allgather";
    int iters = 0, warmup = 3;
    float timeout = -1, bucket_mb = 25.0f;
    const cli_opt opts[] = {
        {"min-bytes", CLI_STR, &min_s, "SIZE", "smallest buffer (K, M, G suffixes)"},
        {"max-bytes", CLI_STR, &max_s, "SIZE", "largest buffer; sizes double from min to max"},
        {"ops", CLI_STR, &ops, "LIST", "collectives to time, comma separated: allreduce, iallreduce (in place, "
         "non-blocking), dp_buckets (training's MPI path), dp_shm (training's shared-memory path, one node), "
         "reduce_scatter, allgather"},
        {"bucket-mb", CLI_FLOAT, &bucket_mb, "MB", "dp_buckets, dp_shm: bucket size (as train --bucket-mb)"},
        {"iters", CLI_INT, &iters, "N", "timed calls per size (0 = by size, 3..200)"},
        {"warmup", CLI_INT, &warmup, "N", "untimed calls per size"},
        {"comm", CLI_STR, &backend, "NAME", "auto, single or mpi"},
        {"comm-timeout", CLI_FLOAT, &timeout, "S", "abort the job when a call waits S seconds (0 = off; -1 = $LMSCALE_COMM_TIMEOUT, else 600)"},
    };
    cli_spec spec = {"bench comm", "lmscale bench comm: all-reduce, reduce-scatter and all-gather bandwidth "
                     "(nccl-tests' algbw and busbw).", "mpirun -np N lmscale bench comm [flags]", opts,
                     (int)(sizeof opts / sizeof opts[0]), NULL};
    int help;
    lms_status st = cli_parse(&spec, argc - 1, argv + 1, &help);
    if (st != LMS_OK) return cli_fail("bench comm", st);
    if (help) {
        cli_print_help(&spec, stdout);
        return 0;
    }
    size_t min_b, max_b;
    if ((st = parse_bytes("min-bytes", min_s, &min_b)) != LMS_OK || (st = parse_bytes("max-bytes", max_s, &max_b)) != LMS_OK)
        return cli_fail("bench comm", st);
    for (const char *p = ops; *p;) {
        size_t n = strcspn(p, ",");
        int known = 0;
        for (int k = 0; k < OP_COUNT; k++) known |= strlen(OP_NAMES[k]) == n && !strncmp(p, OP_NAMES[k], n);
        if (!known) {
            lms_errorf(LMS_ERR_INVALID_ARG, "--ops: unknown collective '%.*s' (choose from allreduce, iallreduce, "
                       "dp_buckets, dp_shm, reduce_scatter, allgather)", (int)n, p);
            return cli_fail("bench comm", LMS_ERR_INVALID_ARG);
        }
        p += n + (p[n] == ',');
    }
    if (!(bucket_mb > 0)) {
        lms_errorf(LMS_ERR_INVALID_ARG, "--bucket-mb %g must be positive", bucket_mb);
        return cli_fail("bench comm", LMS_ERR_INVALID_ARG);
    }
    if (min_b > max_b || warmup < 0 || iters < 0) {
        lms_errorf(LMS_ERR_INVALID_ARG, "--min-bytes must not exceed --max-bytes; --iters and --warmup >= 0");
        return cli_fail("bench comm", LMS_ERR_INVALID_ARG);
    }
    st = bench_comm(backend, min_b, max_b, iters, warmup, ops, timeout, bucket_mb);
    return st == LMS_OK ? 0 : cli_fail("bench comm", st);
}
