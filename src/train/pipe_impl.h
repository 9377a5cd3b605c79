/* Internal to src/train: the pipeline engine's state (pipe.c runs the
 * schedule, pipe_sync.c is its gradient strategy "pp"). */
#ifndef LMS_PIPE_IMPL_H
#define LMS_PIPE_IMPL_H

#include "train_impl.h"

typedef struct lms_pipe {
    lms_trainer *t;          /* not owned */
    lms_comm *pp;            /* the pipeline group (t->groups.pp); not owned */
    lms_comm *emb;           /* first and last stage: the embedding group (owned); else NULL */
    int p, s, v, m;          /* stages, this stage, chunks per stage, micro-batches per step */
    int world_rank;
    lms_pp_schedule sched;
    int *first;              /* p·v + 1: the layers of each virtual stage */
    lms_pp_op *ops;          /* 2·m·v: this stage's order */
    size_t NC;               /* floats of one activation (micro-batch · T · C; / tp when sequence parallel) */
    /* per (micro-batch, chunk) i = mb·v + c, for the whole step */
    float **fin;             /* activation received from the previous virtual stage */
    float **fout;            /* activation sent to the next one */
    float **gbuf;            /* d(loss)/d(output): received (or, on the last, computed), turned in
                              * place into d/d(input) and sent back */
    int *slot;               /* its activation set */
    lms_comm_req **rreq;     /* 2 per i: receives posted at the step's start */
    lms_comm_req **sreq;     /* sends of the step, waited at its end */
    int nsreq;
    /* the activation pool: sets of the largest chunk's layers */
    lms_gpt_config sub;
    lms_gpt_acts *pool;
    int npool, *freel, nfree, inflight, peak;
    int32_t *x, *y;          /* m micro-batches of tokens and targets (first and last stage) */
    /* what this stage updates: its units' tensors; the last stage also its wte copy (not in the norm) */
    lms_tensor_view *own;
    int nown, nnorm;
    const lms_tensor_view *wte;
    int *bdone;              /* per chunk: backwards done this step */
    lms_comm_req **dreq;     /* data-parallel all-reduces of final unit gradients */
    int ndreq, capdreq;
    lms_grad_sync zs;        /* --zero 1: ZeRO-1 over this stage's units (and the wte copy); else zs.i NULL */
    lms_status derr;
    double t_compute, t_total;
    lms_pp_stats stats;
    double *gather;          /* 2·p scratch for the stats */
} lms_pipe;

/* The stage that holds parameter unit u. */
int lms_pipe_unit_owner(const lms_pipe *p, int unit);
/* 1 when this stage owns unit u. */
int lms_pipe_owns(const lms_pipe *p, int unit);
/* Unit u's gradient is final for the step: its data-parallel all-reduce
 * starts (and, for the head, that of the wte copy). */
lms_status lms_pipe_unit_final(lms_pipe *p, int unit);
/* hold[0..L+1] (lms_gpt_init_part) of stage s of p under o's split: its
 * units, and on a last stage its copy of the tied wte. */
lms_status lms_pipe_hold(const lms_trainer_opts *o, int L, int p, int s, unsigned char *hold);
/* The whole model of this rank's tp part (*whole: host memory, caller
 * frees) assembled on stage 0 of data-parallel rank 0 from every stage's
 * parameters: *got = 1 there, 0 on the other ranks (which only send). */
lms_status lms_pipe_gather(lms_pipe *p, lms_gpt *whole, int *got);
/* Builds t->sync as the "pp" strategy over p. */
lms_status lms_pipe_sync_init(lms_pipe *p);

#endif
