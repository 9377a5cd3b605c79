/* Saving a checkpoint from every rank of a communicator: each rank writes
 * its own shard file with the pieces it holds (ZeRO: its parts of the
 * parameters and optimizer state); rank 0 collects the slice records and
 * writes the index. Every rank returns the same status: an error on any
 * rank leaves the earlier checkpoints as they were and no step-* directory. */
#include "lmscale/obs.h"
#include "ckpt_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One slice as it travels to rank 0. */
typedef struct {
    char name[64];
    int32_t ndim;
    int64_t shape[LMS_CKPT_MAX_DIMS];
    lms_ckpt_slice s;
} slice_rec;

/* every rank learns whether any rank failed; the message is kept locally */
static lms_status agree(lms_comm *c, lms_status mine, const char *what) {
    if (!c || c->size == 1) return mine;
    int32_t bad = mine != LMS_OK, any = 0;
    lms_status st = c->i->allreduce(c, &bad, &any, 1, LMS_DT_I32, LMS_RED_MAX);
    if (st != LMS_OK) return st;
    if (mine != LMS_OK) return mine;
    return any ? lms_errorf(LMS_ERR_IO, "another rank failed while %s (its message is above)", what) : LMS_OK;
}

static lms_status put_records(lms_ckpt_shard *sh, const slice_rec *r, long n) {
    for (long i = 0; i < n; i++) LMS_CHECK(ckpt_shard_add_slice(sh, r[i].name, r[i].ndim, r[i].shape, &r[i].s));
    return LMS_OK;
}

/* rank 0 gets every rank's slice records as shards[world] */
static lms_status gather_index(lms_comm *c, const lms_ckpt_shard *mine, lms_ckpt_shard *all) {
    long n = 0;
    for (int i = 0; i < mine->nt; i++) n += mine->t[i].nslices;
    slice_rec *recs = calloc((size_t)(n ? n : 1), sizeof *recs);
    if (!recs) return lms_errorf(LMS_ERR_OOM, "out of memory");
    long k = 0;
    for (int i = 0; i < mine->nt; i++)
        for (int j = 0; j < mine->t[i].nslices; j++, k++) {
            memcpy(recs[k].name, mine->t[i].name, sizeof recs[k].name);
            recs[k].ndim = mine->t[i].ndim;
            memcpy(recs[k].shape, mine->t[i].shape, sizeof recs[k].shape);
            recs[k].s = mine->t[i].slices[j];
        }
    int64_t cnt = n, *counts = calloc((size_t)c->size, sizeof *counts);
    lms_status st = counts ? c->i->allgather(c, &cnt, counts, 1, LMS_DT_I64) : lms_errorf(LMS_ERR_OOM, "out of memory");
    if (st == LMS_OK && c->rank != 0)
        st = c->i->send(c, recs, (size_t)n * sizeof *recs, LMS_DT_U8, 0, 7101);
    for (int r = 0; st == LMS_OK && c->rank == 0 && r < c->size; r++) {
        snprintf(all[r].file, sizeof all[r].file, "shard-%05d-of-%05d.bin", r, c->size);
        if (r == 0) {
            st = put_records(&all[0], recs, n);
            continue;
        }
        slice_rec *in = calloc((size_t)(counts[r] ? counts[r] : 1), sizeof *in);
        if (!in) st = lms_errorf(LMS_ERR_OOM, "out of memory");
        if (st == LMS_OK) st = c->i->recv(c, in, (size_t)counts[r] * sizeof *in, LMS_DT_U8, r, 7101);
        if (st == LMS_OK) st = put_records(&all[r], in, (long)counts[r]);
        free(in);
    }
    free(counts);
    free(recs);
    return st;
}

/* 1 when some element is inf or NaN (exponent bits all ones); an integer OR
 * over the bit patterns, so the loop vectorises */
static int any_nonfinite(const float *x, uint64_t n) {
    uint32_t bad = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, &x[i], 4);
        bad |= (b & 0x7f800000u) == 0x7f800000u;
    }
    return bad != 0;
}

/* Non-finite values never reach a checkpoint: a diverged step is not saved
 * (the earlier checkpoints stay, and --keep-last does not prune them). */
static lms_status check_finite(const lms_ckpt_state *state, const lms_ckpt_piece *pieces, int npieces) {
    for (int i = 0; i < npieces; i++) {
        const lms_ckpt_piece *p = &pieces[i];
        if (!any_nonfinite(p->data, p->count)) continue;
        uint64_t k = 0;
        while (k < p->count && isfinite(p->data[k])) k++;
        return lms_errorf(LMS_ERR_NUMERIC, "the %s became %s at step %d (tensor %s, element %llu): the checkpoint "
                          "of step %d is not written and the earlier ones are kept: lower --lr or set --grad-clip",
                          strncmp(p->name, "model.", 6) ? "optimizer state" : "parameters",
                          isnan(p->data[k]) ? "NaN" : "infinite", state->step, p->name,
                          (unsigned long long)(p->start + k), state->step);
    }
    return LMS_OK;
}

lms_status lms_ckpt_save_pieces(const char *root, const lms_ckpt_state *state, lms_comm *c,
                                const lms_ckpt_piece *pieces, int npieces, int keep_last, char **saved_path) {
    const int rank = c ? c->rank : 0, world = c ? c->size : 1;
    char *tmp = NULL;
    lms_ckpt_shard sh, *all = NULL;
    memset(&sh, 0, sizeof sh);
    lms_status st = LMS_OK;
    LMS_TRY(agree(c, check_finite(state, pieces, npieces), "checking its checkpoint data"));
    /* rank 0 makes the temporary directory and tells the others its name */
    char path[4096] = {0};
    if (rank == 0) {
        st = lms_ckpt_begin(root, state->step, &tmp);
        if (st == LMS_OK && strlen(tmp) >= sizeof path)
            st = lms_errorf(LMS_ERR_INVALID_ARG, "checkpoint path '%s' is too long", tmp);
        if (st == LMS_OK) snprintf(path, sizeof path, "%s", tmp);
    }
    LMS_TRY(agree(c, st, "creating the checkpoint directory"));
    if (world > 1) LMS_TRY(c->i->broadcast(c, path, sizeof path, LMS_DT_U8, 0));
    /* every rank writes its pieces */
    st = lms_ckpt_shard_open(&sh, path, rank, world);
    double mb = 0, done = 0; /* progress (rank 0; shown for saves that take a while) */
    for (int i = 0; i < npieces; i++) mb += (double)pieces[i].count * sizeof(float) / 1e6;
    lms_progress prog;
    lms_progress_begin(&prog, "checkpoint save", mb, "MB", rank == 0);
    for (int i = 0; i < npieces && st == LMS_OK; i++) {
        const lms_ckpt_piece *p = &pieces[i];
        st = p->chunk ? lms_ckpt_shard_put_chunk(&sh, p->name, p->ndim, p->shape, p->off, p->size, p->data)
                      : lms_ckpt_shard_put(&sh, p->name, p->ndim, p->shape, p->start, p->data, p->count);
        done += (double)p->count * sizeof(float) / 1e6;
        lms_progress_update(&prog, done);
    }
    if (st == LMS_OK) lms_progress_end(&prog);
    else lms_progress_abort(&prog);
    if (st == LMS_OK) st = lms_ckpt_shard_close(&sh);
    LMS_TRY(agree(c, st, "writing its checkpoint shard"));
    /* rank 0: the index from everyone's slices, then the atomic rename */
    if (world > 1) {
        all = calloc((size_t)world, sizeof *all);
        if (!all) st = lms_errorf(LMS_ERR_OOM, "out of memory");
        if (st == LMS_OK) st = gather_index(c, &sh, all);
        st = agree(c, st, "collecting the checkpoint index");
        if (st == LMS_OK && rank == 0) st = lms_ckpt_finish(root, path, state->step, state, all, world);
    } else {
        st = lms_ckpt_finish(root, path, state->step, state, &sh, 1);
    }
    if (rank == 0 && tmp) { /* finish removed it on failure, or renamed it */
        free(tmp);
        tmp = NULL;
    }
    LMS_TRY(agree(c, st, "committing the checkpoint"));
    if (rank == 0) {
        lms_logger warn = {LMS_LOG_WARN, 0, 0, NULL};
        ckpt_prune(root, keep_last, state->step, &warn);
    }
    if (saved_path) {
        char name[64];
        snprintf(name, sizeof name, "step-%08d", state->step);
        *saved_path = ckpt_join(root, name);
    }
fail:
    if (tmp) ckpt_rmtree(tmp);
    free(tmp);
    lms_ckpt_shard_free(&sh);
    for (int r = 0; all && r < world; r++) {
        sh = all[r];
        sh.f = NULL;
        sh.dir = NULL;
        lms_ckpt_shard_free(&sh);
    }
    free(all);
    return st;
}
