/* Tensor parallelism outside the model: a tp rank's tensors read from and
 * written to files that hold whole tensors (checkpoints, Hugging Face
 * weights), and the weight of each tensor in the global gradient norm
 * (parallel.h). The split computation itself is src/model/gpt_tp.c. */
#include "lmscale/checkpoint.h"
#include "lmscale/comm.h"
#include "lmscale/parallel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* rows of the whole tensor as files hold it: wte with lms_pad_vocab(V) */
static int64_t file_rows(const lms_gpt *m, const lms_tensor_view *v, const lms_tp_shard *s) {
    int64_t rows = v->spec->dims[0] == LMS_DIM_VP ? lms_pad_vocab(m->cfg.V) : 0;
    if (!rows) {
        lms_gpt_config whole = lms_gpt_config_whole(&m->cfg);
        rows = lms_gpt_dim(&whole, v->spec->dims[0]);
    }
    (void)s;
    return rows;
}

static int64_t whole_cols(const lms_gpt *m, const lms_tensor_view *v) {
    lms_gpt_config whole = lms_gpt_config_whole(&m->cfg);
    return lms_gpt_dim(&whole, v->spec->dims[1]);
}

lms_status lms_tp_extract(const lms_gpt *m, const lms_tensor_view *v, const float *whole, int64_t rows, float *dst) {
    lms_tp_shard s;
    LMS_CHECK(lms_gpt_local_shard(m, v, &s));
    const int64_t cols = whole_cols(m, v), lcols = s.shape[1];
    for (int k = 0; k < s.nchunks; k++) {
        const lms_tp_chunk *ch = &s.chunk[k];
        for (int64_t r = 0; r < ch->size[0]; r++) {
            const int64_t gr = ch->global[0] + r;
            float *d = dst + (ch->local[0] + r) * lcols + ch->local[1];
            if (gr < rows)
                memcpy(d, whole + gr * cols + ch->global[1], sizeof(float) * (size_t)ch->size[1]);
            else
                memset(d, 0, sizeof(float) * (size_t)ch->size[1]);
        }
    }
    return LMS_OK;
}

lms_status lms_tp_read(const lms_ckpt *ck, const char *group, const lms_gpt *m, const lms_tensor_view *v,
                       float *dst) {
    char nm[128];
    snprintf(nm, sizeof nm, "%s%s", group, v->name);
    const lms_ckpt_tensor *t = lms_ckpt_find_tensor(ck, nm);
    if (!t) return lms_errorf(LMS_ERR_FORMAT, "checkpoint %s has no tensor %s", ck->dir, nm);
    const int64_t cols = whole_cols(m, v), rows = t->ndim == 2 ? t->shape[0] : t->shape[0];
    if ((t->ndim == 2 ? t->shape[1] : 1) != cols)
        return lms_errorf(LMS_ERR_FORMAT, "checkpoint %s: tensor %s has %lld columns, the model %lld", ck->dir, nm,
                          (long long)(t->ndim == 2 ? t->shape[1] : 1), (long long)cols);
    float *buf = NULL;
    LMS_CHECK(lms_alloc_checked((void **)&buf, sizeof(float) * (size_t)(rows * cols), "checkpoint loading"));
    lms_status st = lms_ckpt_read_tensor(ck, nm, buf, (uint64_t)(rows * cols));
    if (st == LMS_OK) st = lms_tp_extract(m, v, buf, rows, dst);
    lms_free(buf);
    return st;
}

lms_status lms_tp_load_train(const lms_ckpt *ck, lms_gpt *m, lms_adamw *opt) {
    for (int i = 0; i < m->num_tensors; i++) {
        const lms_tensor_view *v = &m->tensors[i];
        LMS_CHECK(lms_tp_read(ck, "model.", m, v, m->params + v->offset));
        if (!opt) continue;
        LMS_CHECK(lms_tp_read(ck, "optim.exp_avg.", m, v, opt->m + v->offset));
        LMS_CHECK(lms_tp_read(ck, "optim.exp_avg_sq.", m, v, opt->v + v->offset));
    }
    if (opt) opt->step = ck->state.adam_step;
    return LMS_OK;
}

lms_status lms_tp_load_hf(const char *dir, const lms_gpt *m, float *dst) {
    lms_gpt_config whole = lms_gpt_config_whole(&m->cfg);
    lms_tensor_view *views = NULL;
    int n;
    size_t np;
    LMS_CHECK(lms_gpt_layout(&whole, &views, &n, &np));
    float *all = NULL;
    lms_status st = lms_alloc_checked((void **)&all, sizeof(float) * np, "the Hugging Face weights");
    if (st == LMS_OK) st = lms_hf_load_params(dir, &whole, all);
    for (int i = 0; i < m->num_tensors && st == LMS_OK; i++) { /* m may hold a part: by name */
        const lms_tensor_view *w = lms_gpt_find_view(views, n, m->tensors[i].name);
        st = lms_tp_extract(m, &m->tensors[i], all + w->offset, w->shape[0], dst + m->tensors[i].offset);
    }
    lms_free(all);
    free(views);
    return st;
}

/* one checkpoint piece: rows x ncols of the whole tensor from (row, col);
 * a 1-D tensor has no column dimension */
static void put_piece(lms_ckpt_piece *p, const char *group, const lms_tensor_view *v, int64_t frows, int64_t cols,
                      int64_t row, int64_t col, int64_t rows, int64_t ncols, const float *src) {
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s%s", group, v->name);
    p->ndim = v->ndim;
    p->shape[0] = frows;
    p->shape[1] = v->ndim == 2 ? cols : 0;
    p->chunk = 1;
    p->off[0] = row;
    p->off[1] = v->ndim == 2 ? col : 0;
    p->size[0] = rows;
    p->size[1] = v->ndim == 2 ? ncols : 0;
    p->count = (uint64_t)(rows * ncols);
    p->data = src;
}

int lms_tp_pieces(const lms_gpt *m, const lms_tensor_view *v, const char *group, size_t start, size_t count,
                  const float *data, lms_ckpt_piece *out, int cap) {
    lms_tp_shard s;
    if (lms_gpt_local_shard(m, v, &s) != LMS_OK) return -1;
    const int64_t lrows = v->ndim == 2 ? v->shape[0] : v->shape[0], lcols = v->ndim == 2 ? v->shape[1] : 1;
    const int64_t frows = file_rows(m, v, &s), cols = whole_cols(m, v);
    int n = 0;
    /* the run as boxes of the local tensor: a partial first row, whole rows, a partial last row */
    int64_t a = (int64_t)start, b = (int64_t)(start + count);
    while (a < b) {
        const int64_t r = a / lcols, c0 = a % lcols;
        int64_t nr, c1;
        if (c0 != 0 || b - a < lcols) { /* within one row */
            nr = 1;
            c1 = b - r * lcols < lcols ? b - r * lcols : lcols;
        } else {
            nr = (b - a) / lcols;
            c1 = lcols;
        }
        /* intersect the local box rows [r, r+nr) x cols [c0, c1) with each chunk */
        for (int k = 0; k < s.nchunks; k++) {
            const lms_tp_chunk *ch = &s.chunk[k];
            const int64_t rlo = r > ch->local[0] ? r : ch->local[0];
            const int64_t rhi = r + nr < ch->local[0] + ch->size[0] ? r + nr : ch->local[0] + ch->size[0];
            const int64_t clo = c0 > ch->local[1] ? c0 : ch->local[1];
            const int64_t chi = c1 < ch->local[1] + ch->size[1] ? c1 : ch->local[1] + ch->size[1];
            if (rlo >= rhi || clo >= chi) continue;
            /* the box must be contiguous in data: whole local rows, or one row */
            const int64_t g0 = ch->global[0] + (rlo - ch->local[0]);
            int64_t grows = rhi - rlo;
            if (g0 >= frows) continue;                 /* padded vocabulary beyond the file */
            if (g0 + grows > frows) grows = frows - g0;
            if (chi - clo != lcols && grows > 1) { /* a column-split box of several rows: one piece per row */
                for (int64_t q = 0; q < grows; q++) {
                    if (n >= cap) return -1;
                    put_piece(&out[n++], group, v, frows, cols, g0 + q, ch->global[1] + (clo - ch->local[1]), 1,
                              chi - clo, data + ((rlo + q) * lcols + clo - (int64_t)start));
                }
                continue;
            }
            if (n >= cap) return -1;
            put_piece(&out[n++], group, v, frows, cols, g0, ch->global[1] + (clo - ch->local[1]), grows, chi - clo,
                      data + (rlo * lcols + clo - (int64_t)start));
        }
        a = r * lcols + (nr == 1 ? c1 : nr * lcols);
    }
    (void)lrows;
    return n;
}

double lms_tp_norm_weight(const lms_gpt *m, const lms_tensor_view *v) {
    if (!m->tp || m->tp->size <= 1 || v->spec->split != LMS_SPLIT_NONE) return 1.0;
    return 1.0 / m->tp->size;
}

lms_status lms_tp_gather_whole(const lms_gpt *m, lms_gpt *whole) {
    lms_gpt_config wc = lms_gpt_config_whole(&m->cfg);
    wc.Vp = lms_pad_vocab(wc.V);
    LMS_CHECK(lms_gpt_init(whole, &wc, m->cap_B, m->cap_T, 0));
    memset(whole->params, 0, sizeof(float) * whole->num_params);
    lms_status st = LMS_OK;
    for (int i = 0; i < m->num_tensors && st == LMS_OK; i++) {
        const lms_tensor_view *v = &m->tensors[i], *w = &whole->tensors[i];
        if (v->spec->split == LMS_SPLIT_NONE && m->tp->rank != 0) continue; /* replicated: once */
        lms_tp_shard s;
        st = lms_gpt_local_shard(m, v, &s);
        const int64_t cols = w->ndim == 2 ? w->shape[1] : 1, lcols = s.shape[1];
        for (int k = 0; k < s.nchunks && st == LMS_OK; k++) {
            const lms_tp_chunk *ch = &s.chunk[k];
            for (int64_t r = 0; r < ch->size[0]; r++) {
                const int64_t gr = ch->global[0] + r;
                if (gr >= w->shape[0]) break; /* padded vocabulary beyond the whole model's */
                memcpy(whole->params + w->offset + gr * cols + ch->global[1],
                       m->params + v->offset + (ch->local[0] + r) * lcols + ch->local[1],
                       sizeof(float) * (size_t)ch->size[1]);
            }
        }
    }
    /* every element comes from exactly one rank, the others add zeros: exact */
    if (st == LMS_OK)
        st = m->tp->comm->i->allreduce(m->tp->comm, whole->params, whole->params, whole->num_params, LMS_DT_F32,
                                       LMS_RED_SUM);
    if (st != LMS_OK) lms_gpt_free(whole);
    return st;
}
