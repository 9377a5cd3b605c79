/* The demo's generated task: multi-digit addition, one problem per line,
 * "463+057=0250": fixed-width operands, and the sum written least-significant
 * digit first (the order a person adds in, which a small transformer learns
 * far faster). A tenth of
 * all (a, b) pairs — chosen by a hash of the seed and the pair — is held
 * out: never in the training text, used only for scoring. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static uint64_t pow10u(int d) {
    uint64_t p = 1;
    while (d-- > 0) p *= 10;
    return p;
}

static int is_held_out(const demo_task *t, uint64_t a, uint64_t b) {
    return lms_rng_u64(lms_rng_key(t->seed, "demo.heldout"), a * pow10u(t->digits) + b) % 10 == 0;
}

/* Fixed width: operands zero-padded to `digits`, the sum to digits+1 and
 * reversed, so every answer digit sits at a fixed distance from the operand
 * digits it depends on. */
static int format_problem(char *dst, size_t cap, int digits, uint64_t a, uint64_t b, int with_answer) {
    char ans[32];
    snprintf(ans, sizeof ans, "%0*llu", digits + 1, (unsigned long long)(a + b));
    size_t n = strlen(ans);
    for (size_t i = 0; i < n / 2; i++) {
        char c = ans[i];
        ans[i] = ans[n - 1 - i];
        ans[n - 1 - i] = c;
    }
    if (with_answer)
        return snprintf(dst, cap, "%0*llu+%0*llu=%s\n", digits, (unsigned long long)a, digits,
                        (unsigned long long)b, ans);
    return snprintf(dst, cap, "%s", ans);
}

int demo_line_len(const demo_task *t) { return 3 * t->digits + 4; }

lms_status demo_make_text(const demo_task *t, size_t n_problems, int held_out, char **text,
                          size_t *len) {
    size_t cap = n_problems * (size_t)(3 * t->digits + 6) + 1;
    char *buf = malloc(cap);
    if (!buf) return lms_errorf(LMS_ERR_OOM, "out of memory generating demo data");
    uint64_t key = lms_rng_key(t->seed, held_out ? "demo.test" : "demo.train"), lim = pow10u(t->digits);
    size_t off = 0, made = 0;
    for (uint64_t i = 0; made < n_problems; i++) {
        uint64_t a = lms_rng_u64(key, 2 * i) % lim, b = lms_rng_u64(key, 2 * i + 1) % lim;
        if (is_held_out(t, a, b) != held_out) continue;
        off += (size_t)format_problem(buf + off, cap - off, t->digits, a, b, 1);
        made++;
    }
    *text = buf;
    *len = off;
    return LMS_OK;
}

void demo_held_out_problem(const demo_task *t, uint64_t i, char *prompt, size_t pcap, char *answer,
                           size_t acap) {
    uint64_t key = lms_rng_key(t->seed, "demo.test"), lim = pow10u(t->digits);
    uint64_t found = 0;
    for (uint64_t j = 0;; j++) {
        uint64_t a = lms_rng_u64(key, 2 * j) % lim, b = lms_rng_u64(key, 2 * j + 1) % lim;
        if (!is_held_out(t, a, b)) continue;
        if (found++ == i) {
            snprintf(prompt, pcap, "%0*llu+%0*llu=", t->digits, (unsigned long long)a, t->digits,
                     (unsigned long long)b);
            format_problem(answer, acap, t->digits, a, b, 0);
            return;
        }
    }
}
