/* The layout-independent GPT-2 initialisation, keyed by (seed, global
 * tensor name, global element index), of a flat range or of a
 * tensor-parallel shard; and looking views up by name. The layout itself
 * derives from the tensor table (tensors.c). */
#include "lmscale/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const lms_tensor_view *lms_gpt_find(const lms_gpt *m, const char *name) {
    return lms_gpt_find_view(m->tensors, m->num_tensors, name);
}

void lms_gpt_init_params_range(const lms_tensor_view *views, int nviews, uint64_t seed, size_t lo, size_t n,
                               float *dst) {
    const size_t hi = lo + n;
    for (int i = 0; i < nviews; i++) {
        const lms_tensor_view *t = &views[i];
        size_t a = t->offset > lo ? t->offset : lo, b = t->offset + t->numel < hi ? t->offset + t->numel : hi;
        if (a >= b) continue;
        float *p = dst + (a - lo);
        uint64_t key = lms_rng_key(seed, t->name);
        size_t valid = (size_t)t->valid_rows * (size_t)t->shape[1];
        long j0 = (long)(a - t->offset), cnt = (long)(b - a);
#pragma omp parallel for schedule(static)
        for (long k = 0; k < cnt; k++) {
            size_t j = (size_t)(j0 + k);
            if (j >= valid)
                p[k] = 0.0f;
            else if (t->init_std > 0)
                p[k] = t->init_std * lms_rng_normal(key, (uint64_t)j);
            else
                p[k] = t->init_value;
        }
    }
}

void lms_gpt_init_params(lms_gpt *m, uint64_t seed) {
    lms_gpt_init_params_range(m->tensors, m->num_tensors, seed, 0, m->num_params, m->params);
}

void lms_gpt_init_tp_shard(const lms_tensor_view *t, const lms_tp_shard *s, uint64_t seed, float *dst) {
    const uint64_t key = lms_rng_key(seed, t->name);
    const int64_t cols = t->shape[1], lcols = s->shape[1];
    for (int k = 0; k < s->nchunks; k++) {
        const lms_tp_chunk *ch = &s->chunk[k];
        for (int64_t r = 0; r < ch->size[0]; r++)
            for (int64_t q = 0; q < ch->size[1]; q++) {
                const int64_t gr = ch->global[0] + r, j = gr * cols + ch->global[1] + q;
                float x;
                if (gr >= t->valid_rows)
                    x = 0.0f;
                else if (t->init_std > 0)
                    x = t->init_std * lms_rng_normal(key, (uint64_t)j);
                else
                    x = t->init_value;
                dst[(ch->local[0] + r) * lcols + ch->local[1] + q] = x;
            }
    }
}
