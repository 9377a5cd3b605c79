/* `lmscale bench attention`: the causal attention op alone, forward and
 * backward, timed on a backend next to the sgemm peak measured in the same
 * run (lms_backend_measure_peak_tflops, the peak `train` reports MFU
 * against). The FLOPs are the model's (docs/mfu.md): 4·B·T²·C forward and
 * 8·B·T²·C backward per layer, the attention term of 12·L·C·T per token,
 * so "% of peak" says how far the op is from running its model FLOPs at
 * sgemm speed. A causal kernel does about half of those multiply-adds
 * (plus the recomputed scores in backward). The run is --iters rounds,
 * each one sgemm, one forward and one backward call, after a warm-up round;
 * each is reported as its best round, so the peak and the op see the same
 * load (the machines are shared). */
#include "cli.h"
#include "lmscale/backend.h"

#include <stdlib.h>
#include <string.h>

/* One timed call: the sgemm of the peak (1024³, as lms_backend_measure_peak_tflops), attention
 * forward or attention backward. */
typedef struct {
    float *qkv, *dqkv, *out, *dout, *lse, *a, *b, *c;
    int B, T, C, NH;
} attn_bufs;

static double timed(lms_backend *be, int what, const attn_bufs *x, lms_status *st) {
    double t0 = lms_now_s();
    if (what == 0) *st = be->i->matmul_fwd(be, x->c, x->a, x->b, NULL, 1024, 1024, 1024);
    else if (what == 1) *st = be->i->attention_fwd(be, x->out, x->lse, x->qkv, x->B, x->T, x->C, x->NH);
    else *st = be->i->attention_bwd(be, x->dqkv, x->dout, x->qkv, x->out, x->lse, x->B, x->T, x->C, x->NH);
    return lms_now_s() - t0;
}

int cmd_bench_attention(int argc, char **argv) {
    int B = 1, T = 1024, C = 768, NH = 12, iters = 5, threads = 0, json = 0;
    const char *backend = "cpu";
    const cli_opt opts[] = {
        {"batch-size", CLI_INT, &B, "B", "sequences"},
        {"seq-len", CLI_INT, &T, "T", "sequence length"},
        {"hidden-size", CLI_INT, &C, "C", "channels (all heads)"},
        {"num-heads", CLI_INT, &NH, "H", "heads; must divide the hidden size"},
        {"iters", CLI_INT, &iters, "N", "timed rounds (sgemm, forward, backward); the best of each is reported"},
        {"threads", CLI_INT, &threads, "N", "worker threads (0 = all cores)"},
        {"backend", CLI_STR, &backend, "NAME", "cpu or ref"},
        {"json", CLI_BOOL, &json, NULL, "print one JSON object instead of the table"},
    };
    cli_spec spec = {"bench attention", "lmscale bench attention: causal attention forward and backward, ms and "
                     "share of the sgemm peak measured in the same run.", "lmscale bench attention [flags]", opts,
                     (int)(sizeof opts / sizeof opts[0]), NULL};
    int help;
    lms_status st = cli_parse(&spec, argc, argv, &help);
    if (st != LMS_OK) return cli_fail("bench attention", st);
    if (help) {
        cli_print_help(&spec, stdout);
        return 0;
    }
    if (B < 1 || T < 1 || C < 1 || NH < 1 || C % NH != 0 || iters < 1) {
        lms_errorf(LMS_ERR_INVALID_ARG, "--batch-size, --seq-len, --hidden-size, --num-heads and --iters must be "
                   "positive and --num-heads must divide --hidden-size (got B=%d T=%d C=%d H=%d iters=%d)", B, T, C,
                   NH, iters);
        return cli_fail("bench attention", LMS_ERR_INVALID_ARG);
    }
    lms_ctx ctx;
    lms_ctx_init(&ctx, 1, threads);
    lms_backend be;
    if ((st = lms_backend_init(&be, backend)) != LMS_OK) return cli_fail("bench attention", st);
    size_t n3 = (size_t)B * T * 3 * C, n = (size_t)B * T * C, nl = (size_t)B * NH * T, nm = 1024 * 1024;
    attn_bufs x = {lms_alloc(n3 * 4), lms_alloc(n3 * 4), lms_alloc(n * 4), lms_alloc(n * 4), lms_alloc(nl * 4),
                   lms_alloc(nm * 4), lms_alloc(nm * 4), lms_alloc(nm * 4), B, T, C, NH};
    if (!x.qkv || !x.dqkv || !x.out || !x.dout || !x.lse || !x.a || !x.b || !x.c) {
        st = lms_errorf(LMS_ERR_OOM, "out of memory for attention at B=%d T=%d C=%d", B, T, C);
        goto fail;
    }
    uint64_t key = lms_rng_key(1, "bench-attention");
    for (size_t i = 0; i < n3; i++) x.qkv[i] = lms_rng_normal(key, i);
    for (size_t i = 0; i < n; i++) x.dout[i] = lms_rng_normal(key, n3 + i);
    for (size_t i = 0; i < nm; i++) {
        x.a[i] = 0.001f * (float)(i % 97);
        x.b[i] = 0.001f * (float)(i % 89);
    }
    double best[3] = {1e30, 1e30, 1e30};
    for (int it = 0; it <= iters && st == LMS_OK; it++)
        for (int w = 0; w < 3 && st == LMS_OK; w++) {
            double dt = timed(&be, w, &x, &st);
            if (it > 0 && dt < best[w]) best[w] = dt;
        }
    if (st != LMS_OK) goto fail;
    double peak = 2.0 * 1024 * 1024 * 1024 / best[0], tf = best[1], tb = best[2];
    double ff = 4.0 * B * (double)T * T * C, fb = 2 * ff;
    if (json)
        printf("{\"bench\": \"attention\", \"backend\": \"%s\", \"B\": %d, \"T\": %d, \"C\": %d, \"H\": %d, "
               "\"threads\": %d, \"peak_gflops\": %.4f, \"fwd_ms\": %.4f, \"bwd_ms\": %.4f, \"fwd_peak_share\": "
               "%.4f, \"bwd_peak_share\": %.4f, \"peak_share\": %.4f}\n", backend, B, T, C, NH, ctx.threads,
               peak / 1e9, tf * 1e3, tb * 1e3, ff / tf / peak, fb / tb / peak, (ff + fb) / (tf + tb) / peak);
    else
        printf("lmscale bench attention: backend %s, B=%d T=%d C=%d H=%d, %d threads, sgemm peak %.1f GFLOP/s\n"
               "forward   %9.2f ms  %6.1f GFLOP/s  %5.1f %% of peak\n"
               "backward  %9.2f ms  %6.1f GFLOP/s  %5.1f %% of peak\n"
               "both      %9.2f ms  %6.1f GFLOP/s  %5.1f %% of peak (model FLOPs 12·B·T²·C; best of %d rounds)\n",
               backend, B, T, C, NH, ctx.threads, peak / 1e9, tf * 1e3, ff / tf / 1e9, 100 * ff / tf / peak,
               tb * 1e3, fb / tb / 1e9, 100 * fb / tb / peak, (tf + tb) * 1e3, (ff + fb) / (tf + tb) / 1e9,
               100 * (ff + fb) / (tf + tb) / peak, iters);
fail:
    lms_free(x.qkv);
    lms_free(x.dqkv);
    lms_free(x.out);
    lms_free(x.dout);
    lms_free(x.lse);
    lms_free(x.a);
    lms_free(x.b);
    lms_free(x.c);
    lms_backend_free(&be);
    return st == LMS_OK ? 0 : cli_fail("bench attention", st);
}
