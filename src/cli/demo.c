/* `lmscale demo`: the built-in default job. Makes its own data (no
 * download), trains a small GPT on multi-digit addition for a few minutes on
 * a laptop-class CPU, then scores exact-match accuracy of greedy completions
 * on held-out problems — before and after training — and shows samples. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

/* Greedy completion of prompt until '\n' (or cap chars); *acc = accuracy
 * over n held-out problems, optionally printing the first `show`. */
static lms_status score(lms_gpt *m, lms_backend *be, const demo_task *t, int n, int show, double *acc) {
    lms_kv_cache kv;
    LMS_CHECK(lms_kv_cache_init_on(&kv, &m->cfg, be));
    lms_status st = LMS_OK;
    float *logits = malloc(sizeof(float) * (size_t)m->cfg.Vp);
    if (!logits) {
        st = lms_errorf(LMS_ERR_OOM, "out of memory for logits");
        goto fail;
    }
    lms_sampler greedy = {0, 0, 1};
    int correct = 0;
    for (int i = 0; i < n; i++) {
        char prompt[64], answer[32], got[32];
        demo_held_out_problem(t, (uint64_t)i, prompt, sizeof prompt, answer, sizeof answer);
        kv.len = 0;
        for (const char *p = prompt; *p; p++) LMS_TRY(lms_gpt_decode_step(m, be, &kv, (unsigned char)*p, logits));
        int n_got = 0;
        while (n_got < (int)sizeof got - 1 && kv.len < m->cfg.maxT) {
            int next = lms_sample(logits, m->cfg.V, &greedy, 0, NULL);
            if (next == '\n' || next > 255) break;
            got[n_got++] = (char)next;
            LMS_TRY(lms_gpt_decode_step(m, be, &kv, next, logits));
        }
        got[n_got] = 0;
        int ok = strcmp(got, answer) == 0;
        correct += ok;
        if (i < show)
            printf("  %-16s -> %-6s (expected %-5s) %s\n", prompt, got, answer, ok ? "ok" : "wrong");
    }
    *acc = (double)correct / n;
fail:
    free(logits);
    lms_kv_cache_free(&kv);
    return st;
}

int cmd_demo(int argc, char **argv) {
    train_opts o;
    train_opts_default(&o);
    demo_task task = {.digits = 2, .seed = 1337};
    int n_test = 500, n_show = 8;
    o.model.preset = "micro";
    o.model.L = 3;
    o.batch_size = 32;
    o.steps = 800;
    o.lr = 1e-3f;
    o.min_lr = 1e-4f;
    o.warmup = 50;
    o.eval_interval = 100;
    o.eval_batches = 8;
    o.log_interval = 25;
    o.comm = "single";
    const cli_opt opts[] = {
        {"steps", CLI_INT, &o.steps, "N", "training steps"},
        {"digits", CLI_INT, &task.digits, "D", "digits per operand (1..9)"},
        {"lr", CLI_FLOAT, &o.lr, "LR", "peak learning rate"},
        {"num-layers", CLI_INT, &o.model.L, "L", "transformer blocks"},
        {"seed", CLI_U64, &o.seed, "S", "seed for the data, the model and the order"},
        {"test-problems", CLI_INT, &n_test, "N", "held-out problems to score"},
        {"metrics", CLI_STR, &o.metrics, "FILE", "append one JSON object per step"},
        {"save-model", CLI_STR, &o.save_model, "FILE", "write the trained weights"},
        {"threads", CLI_INT, &o.threads, "N", "worker threads (0 = all cores)"},
        {"log-interval", CLI_INT, &o.log_interval, "N", "print a step line every N steps"},
    };
    cli_spec spec = {"demo", "lmscale demo: learn multi-digit addition from generated data, then score it.",
                     "lmscale demo [flags]", opts, (int)(sizeof opts / sizeof opts[0]),
                     "Problems look like 463+057=0250 (463+57=520): operands zero-padded, the sum\n"
                     "written least-significant digit first. A tenth of all problems is held out of\n"
                     "training; the score is the exact-match accuracy of greedy completions on those\n"
                     "(chance is one in 10^(digits+1))."};
    int help;
    lms_status st = cli_parse(&spec, argc, argv, &help);
    if (st != LMS_OK) return cli_fail("demo", st);
    if (help) {
        cli_print_help(&spec, stdout);
        return 0;
    }
    if (task.digits < 1 || task.digits > 9 || n_test < 1) {
        lms_errorf(LMS_ERR_INVALID_ARG, "--digits must be in 1..9 and --test-problems at least 1");
        return cli_fail("demo", LMS_ERR_INVALID_ARG);
    }
    task.seed = o.seed;
    /* Windows hold whole problems: sequential windows of a multiple of the
     * line length start at a problem boundary, so each answer digit is at a
     * fixed position relative to its operands (the prompts start at
     * position 0 too). The problems themselves are in random order. */
    int line = demo_line_len(&task);
    o.seq_len = line * (64 / line > 0 ? 64 / line : 1);
    o.model.maxT = o.seq_len;
    o.data_order = "sequential";
    lms_tokens train = {0}, val = {0};
    lms_gpt m = {0}, fresh = {0};
    lms_backend be;
    lms_backend_init(&be, "cpu");
    char *text = NULL;
    size_t len;
    printf("lmscale demo: %d-digit addition, answers written least-significant digit first "
           "(e.g. 463+057=0250 for 463+57=520)\n", task.digits);
    LMS_TRY(demo_make_text(&task, 400000, 0, &text, &len));
    lms_tokenizer tok;
    lms_tokenizer_init_bytes(&tok);
    LMS_TRY(lms_tokenizer_encode(&tok, (unsigned char *)text, len, &train.tokens, &train.n));
    free(text);
    text = NULL;
    LMS_TRY(demo_make_text(&task, 2000, 1, &text, &len));
    LMS_TRY(lms_tokenizer_encode(&tok, (unsigned char *)text, len, &val.tokens, &val.n));
    printf("data: %zu training tokens (generated), %zu held-out tokens; scoring %d held-out problems\n",
           train.n, val.n, n_test);

    lms_gpt_config cfg;
    LMS_TRY(cli_model_config(&o.model, &cfg));
    LMS_TRY(lms_gpt_init(&fresh, &cfg, 1, cfg.maxT, 0));
    lms_gpt_init_params(&fresh, o.seed);
    double before = 0, after = 0;
    LMS_TRY(score(&fresh, &be, &task, 100, 0, &before));
    lms_gpt_free(&fresh);

    LMS_TRY(train_run(&o, &train, &val, &m, NULL, NULL));
    printf("samples (greedy, held-out problems):\n");
    LMS_TRY(score(&m, &be, &task, n_test, n_show, &after));
    double chance = 100.0;
    for (int d = 0; d <= task.digits; d++) chance /= 10;
    printf("held-out exact-match accuracy: %.1f%% after training (untrained model: %.1f%%; "
           "chance %.2g%%)\n", 100 * after, 100 * before, chance);
fail:
    free(text);
    lms_tokens_free(&train);
    lms_tokens_free(&val);
    lms_gpt_free(&m);
    lms_gpt_free(&fresh);
    return st == LMS_OK ? 0 : cli_fail("demo", st);
}
