/* Observability (src/obs): CRC-32C against its published check value, nice
 * ticks by their defining properties, phase accounting, that the tracing
 * wrappers change no result (a tiny GPT's loss and gradients bit for bit,
 * a collective), and -- when given a directory -- files for the
 * independent Python readers of tests/test_obs.sh: TensorBoard events
 * (tb/), a trace of a forward/backward (trace.json). */
#include "check.h"
#include "lmscale/model.h"
#include "lmscale/obs.h"

#include <math.h>
#include <string.h>

static void test_crc32c(void) {
    /* the CRC-32C check value of "123456789" (RFC 3720, B.4; iSCSI) */
    CHECK(lms_crc32c(0, "123456789", 9) == 0xE3069283u, "crc32c 0x%08x", lms_crc32c(0, "123456789", 9));
    uint32_t c = lms_crc32c(0, "1234", 4);
    CHECK(lms_crc32c(c, "56789", 5) == 0xE3069283u, "crc32c in two parts");
    unsigned char z[32] = {0};
    CHECK(lms_crc32c(0, z, 32) == 0x8A9136AAu, "crc32c of 32 zero bytes (RFC 3720 B.4)");
}

static int is_nice(double step) {
    double e = pow(10, floor(log10(step) + 1e-9)), m = step / e;
    return fabs(m - 1) < 1e-6 || fabs(m - 2) < 1e-6 || fabs(m - 5) < 1e-6 || fabs(m - 10) < 1e-6;
}

static void test_ticks(void) {
    const double ranges[][2] = {{0, 97}, {1.3, 4.7}, {0.0001, 0.0007}, {-3, 12}, {1000, 1e6}, {2.05, 2.15}};
    for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++) {
        double t[64], lo = ranges[r][0], hi = ranges[r][1];
        int n = lms_nice_ticks(lo, hi, 6, 0, t, 64);
        CHECK(n >= 3 && n <= 7, "[%g, %g]: %d ticks", lo, hi, n);
        for (int i = 0; i < n; i++) CHECK(t[i] >= lo - 1e-12 && t[i] <= hi + 1e-12, "tick %g outside", t[i]);
        for (int i = 1; i < n; i++) {
            double d = t[i] - t[i - 1];
            CHECK(is_nice(d), "[%g, %g]: step %g is not 1, 2 or 5 x 10^k", lo, hi, d);
            CHECK(fabs(d - (t[1] - t[0])) < 1e-9 * fabs(hi - lo) + 1e-15, "uneven ticks");
            CHECK(fabs(t[i] / d - round(t[i] / d)) < 1e-6, "tick %g not a multiple of %g", t[i], d);
        }
    }
    double t[64];
    int n = lms_nice_ticks(0.02, 300, 6, 1, t, 64);
    CHECK(n == 4 && fabs(t[0] - 0.1) < 1e-12 && fabs(t[3] - 100) < 1e-9, "log ticks over 4 decades: %d", n);
    n = lms_nice_ticks(1.4, 5.9, 6, 1, t, 64);
    CHECK(n >= 3, "log ticks inside a decade: %d", n);
    for (int i = 0; i < n; i++) CHECK(t[i] >= 1.4 && t[i] <= 5.9, "log tick %g outside", t[i]);
    char b[32];
    lms_tick_label(20000, b, sizeof b);
    CHECK(strcmp(b, "20k") == 0, "label %s", b);
    lms_tick_label(0.25, b, sizeof b);
    CHECK(strcmp(b, "0.25") == 0, "label %s", b);
}

static void test_phases(void) {
    lms_obs o;
    lms_obs_init(&o, 1);
    for (int s = 1; s <= 3; s++) {
        lms_obs_step_begin(&o, s);
        for (int p = 0; p < 3; p++) {
            lms_obs_phase_begin(&o, (lms_phase)p);
            double t0 = lms_now_s();
            while (lms_now_s() - t0 < 0.002 * (p + 1)) {}
            lms_obs_phase_end(&o, (lms_phase)p);
        }
        lms_obs_step_end(&o);
    }
    CHECK(o.steps == 3 && o.counted == 2, "steps %d counted %d", o.steps, o.counted);
    double sum = 0;
    for (int p = 0; p < LMS_PHASE_COUNT; p++) sum += lms_obs_mean_s(&o, p);
    CHECK(sum <= lms_obs_mean_s(&o, -1) + 1e-9, "phases %g exceed the step %g", sum, lms_obs_mean_s(&o, -1));
    CHECK(lms_obs_mean_s(&o, LMS_PHASE_BACKWARD) >= 0.006 && lms_obs_mean_s(&o, LMS_PHASE_DATA) >= 0.002,
          "phase means %g %g", lms_obs_mean_s(&o, LMS_PHASE_DATA), lms_obs_mean_s(&o, LMS_PHASE_BACKWARD));
    char line[128];
    lms_obs_format_compact(&o, line, sizeof line);
    CHECK(strstr(line, " d ") && strstr(line, " b ") && strstr(line, " ms") && !strstr(line, " t "), "'%s'", line);
}

/* A tiny model's loss and gradients through a traced backend equal the plain ones bit for bit. */
static void test_wrapped_model(const char *dir) {
    lms_gpt_config cfg = {.L = 2, .NH = 2, .C = 16, .maxT = 8, .V = 50};
    CHECK(lms_gpt_config_validate(&cfg) == LMS_OK, "config");
    const int B = 2, T = 8;
    int32_t tok[16], tgt[16];
    for (int i = 0; i < B * T; i++) tok[i] = (i * 7) % 50, tgt[i] = (i * 11 + 3) % 50;
    lms_gpt a = {0}, b = {0};
    CHECK(lms_gpt_init(&a, &cfg, B, T, 1) == LMS_OK && lms_gpt_init(&b, &cfg, B, T, 1) == LMS_OK, "init");
    lms_gpt_init_params(&a, 5);
    lms_gpt_init_params(&b, 5);
    lms_gpt_acts aa, ab;
    CHECK(lms_gpt_acts_init(&aa, &cfg, B, T, 1) == LMS_OK && lms_gpt_acts_init(&ab, &cfg, B, T, 1) == LMS_OK, "acts");
    lms_backend plain, traced;
    lms_backend_init(&plain, "cpu");
    lms_backend_init(&traced, "cpu");
    lms_trace *t = NULL;
    CHECK(lms_trace_new(NULL, 1, 1, &t) == LMS_OK, "trace");
    CHECK(lms_trace_wrap_backend(&traced, t) == LMS_OK, "wrap");
    CHECK(strcmp(traced.i->name, "cpu") == 0, "the wrapper keeps the name");
    lms_obs o;
    lms_obs_init(&o, 0);
    o.trace = t;
    lms_obs_step_begin(&o, 1);
    lms_gpt_zero_grad(&a, &plain);
    lms_gpt_zero_grad(&b, &traced);
    float la = 0, lb = 1;
    CHECK(lms_gpt_forward(&a, &plain, &aa, tok, tgt, B, T, &la) == LMS_OK, "forward");
    lms_obs_phase_begin(&o, LMS_PHASE_FORWARD);
    CHECK(lms_gpt_forward(&b, &traced, &ab, tok, tgt, B, T, &lb) == LMS_OK, "traced forward");
    lms_obs_phase_end(&o, LMS_PHASE_FORWARD);
    CHECK(lms_gpt_backward(&a, &plain, &aa, tok, tgt, 1.0f / (B * T), NULL, NULL) == LMS_OK, "backward");
    lms_obs_phase_begin(&o, LMS_PHASE_BACKWARD);
    CHECK(lms_gpt_backward(&b, &traced, &ab, tok, tgt, 1.0f / (B * T), NULL, NULL) == LMS_OK, "traced backward");
    lms_obs_phase_end(&o, LMS_PHASE_BACKWARD);
    CHECK(memcmp(&la, &lb, sizeof la) == 0, "loss %.9g vs traced %.9g", la, lb);
    CHECK(memcmp(a.grads, b.grads, sizeof(float) * a.num_params) == 0, "gradients differ under the trace");
    /* a collective through the wrapped communicator */
    lms_comm *c = NULL;
    CHECK(lms_comm_world("single", NULL, NULL, &c) == LMS_OK, "comm");
    CHECK(lms_trace_wrap_comm(&c, t) == LMS_OK, "wrap comm");
    double x = 2.5, y = 0;
    lms_obs_phase_begin(&o, LMS_PHASE_GRAD_COMM);
    CHECK(c->i->allreduce(c, &x, &y, 1, LMS_DT_F64, LMS_RED_SUM) == LMS_OK && y == 2.5, "allreduce %g", y);
    lms_obs_phase_end(&o, LMS_PHASE_GRAD_COMM);
    lms_obs_step_end(&o);
    size_t dropped, n = lms_trace_count(t, &dropped);
    CHECK(n > 20 && dropped == 0, "%zu events", n);
    lms_trace_set_step(t, 2); /* outside 1:1: nothing more recorded */
    lms_gpt_forward(&b, &traced, &ab, tok, tgt, B, T, &lb);
    CHECK(lms_trace_count(t, NULL) == n, "recorded outside the profiled steps");
    if (dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/trace.json", dir);
        CHECK(lms_trace_write(t, c, path) == LMS_OK, "trace write: %s", lms_last_error());
    }
    lms_trace_unwrap_backend(&traced);
    CHECK(traced.i == &lms_backend_cpu_i, "unwrap");
    lms_comm_free(c);
    lms_trace_free(t);
    lms_gpt_acts_free(&aa);
    lms_gpt_acts_free(&ab);
    lms_gpt_free(&a);
    lms_gpt_free(&b);
}

/* Events for tests/check_tensorboard.py: steps 1..5, loss = 10/step, lr = 0.001 x step, and a tag with a space. */
static void write_tensorboard(const char *dir) {
    char sub[4096];
    snprintf(sub, sizeof sub, "%s/tb", dir);
    lms_tb *tb = NULL;
    CHECK(lms_tb_open(sub, &tb) == LMS_OK, "tb open: %s", lms_last_error());
    if (!tb) return;
    for (int s = 1; s <= 5; s++) {
        const char *tags[] = {"train/loss", "train/lr", "time/forward ms"};
        float v[] = {10.0f / s, 0.001f * s, 1.5f};
        CHECK(lms_tb_scalars(tb, s, tags, v, s == 5 ? 3 : 2) == LMS_OK, "tb write");
    }
    CHECK(strstr(lms_tb_path(tb), "/tb/events.out.tfevents.") != NULL, "%s", lms_tb_path(tb));
    lms_tb_close(tb);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : NULL;
    test_crc32c();
    test_ticks();
    test_phases();
    test_wrapped_model(dir);
    if (dir) write_tensorboard(dir);
    int a, b;
    CHECK(lms_trace_parse_range("3:5", &a, &b) == LMS_OK && a == 3 && b == 5, "range");
    CHECK(lms_trace_parse_range("4", &a, &b) == LMS_OK && a == 4 && b == 4, "one step");
    CHECK(lms_trace_parse_range("5:3", &a, &b) != LMS_OK && lms_trace_parse_range("0:2", &a, &b) != LMS_OK &&
          lms_trace_parse_range("x", &a, &b) != LMS_OK && lms_trace_parse_range("2:", &a, &b) != LMS_OK, "bad ranges");
    return test_summary("obs");
}
