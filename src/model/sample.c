/* Sampling one token from logits: temperature, top-k, top-p (nucleus). */
#include "lmscale/model.h"

#include <math.h>
#include <stdlib.h>

typedef struct {
    float p;
    int id;
} prob_id;

static int cmp_desc(const void *a, const void *b) {
    const prob_id *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return x->id - y->id; /* ties: lower id first, deterministic */
}

int lms_sample(const float *logits, int V, const lms_sampler *s, float u, void *scratch) {
    if (s->temperature <= 0.0f) { /* greedy; ties to the lowest id */
        int best = 0;
        for (int j = 1; j < V; j++)
            if (logits[j] > logits[best]) best = j;
        return best;
    }
    prob_id *pi = scratch;
    float mx = -INFINITY;
    for (int j = 0; j < V; j++)
        if (logits[j] > mx) mx = logits[j];
    for (int j = 0; j < V; j++) {
        pi[j].p = expf((logits[j] - mx) / s->temperature);
        pi[j].id = j;
    }
    int n = V;
    if (s->top_k > 0 || s->top_p < 1.0f) {
        qsort(pi, (size_t)V, sizeof *pi, cmp_desc);
        if (s->top_k > 0 && s->top_k < n) n = s->top_k;
        if (s->top_p < 1.0f) {
            double total = 0, acc = 0;
            for (int j = 0; j < n; j++) total += pi[j].p;
            for (int j = 0; j < n; j++) {
                acc += pi[j].p;
                if (acc >= s->top_p * total) {
                    n = j + 1;
                    break;
                }
            }
        }
    }
    double total = 0;
    for (int j = 0; j < n; j++) total += pi[j].p;
    double target = u * total, acc = 0;
    for (int j = 0; j < n; j++) {
        acc += pi[j].p;
        if (target < acc) return pi[j].id;
    }
    return pi[n - 1].id;
}
