/* Data-parallel gradient synchronisation against the one-process run: each
 * rank computes the gradient of its slice of a global batch, buckets are
 * all-reduced while backward runs, and the result must equal the gradient
 * of the whole batch computed in one process (relative 1e-5). Also with
 * gradient accumulation, where only the last micro-step communicates. Both
 * paths: shared memory and MPI requests. Run alone and under mpirun with 2
 * and 4 ranks. */
#include "check.h"
#include "lmscale/parallel.h"

#include <string.h>

enum { G = 8, T = 16 };

static void make_batch(int32_t *x, int32_t *y, int V) {
    uint64_t k = lms_rng_key(99, "test_dp.tokens");
    for (int i = 0; i < G * T; i++) {
        x[i] = (int32_t)(lms_rng_u64(k, 2 * (uint64_t)i) % (uint64_t)V);
        y[i] = (int32_t)(lms_rng_u64(k, 2 * (uint64_t)i + 1) % (uint64_t)V);
    }
}

static void run(lms_comm *w, int accum, size_t bucket_bytes, int shm) {
    lms_backend be;
    lms_backend_init(&be, "cpu");
    lms_gpt_config cfg = {2, 2, 32, T, 100, 0, 0};
    lms_gpt_config_validate(&cfg);
    int32_t x[G * T], y[G * T];
    make_batch(x, y, cfg.V);
    int P = w->size, local = G / P, micro = local / accum;

    /* the one-process reference: the whole batch at once */
    lms_gpt ref;
    lms_gpt_init(&ref, &cfg, G, T, 1);
    lms_gpt_init_params(&ref, 5);
    lms_gpt_acts ra, a;
    lms_gpt_acts_init(&ra, &cfg, G, T, 1);
    lms_gpt_zero_grad(&ref, &be);
    float ref_loss = 0;
    CHECK(lms_gpt_forward(&ref, &be, &ra, x, y, G, T, &ref_loss) == LMS_OK, "forward");
    lms_gpt_backward(&ref, &be, &ra, x, y, 1.0f / (G * T), NULL, NULL);

    /* this rank's share, in `accum` micro-steps */
    lms_gpt m;
    lms_gpt_init(&m, &cfg, micro, T, 1);
    lms_gpt_init_params(&m, 5);
    lms_gpt_acts_init(&a, &cfg, micro, T, 1);
    lms_gpt_zero_grad(&m, &be);
    lms_dp_sync dp;
    CHECK(lms_dp_sync_init(&dp, w, m.grads, m.num_params, bucket_bytes, shm) == LMS_OK, "dp init: %s",
          lms_last_error());
    /* on one node (as every ctest is) the shared-memory path is taken when asked for */
    const char *path = lms_dp_sync_path(&dp);
    CHECK(strcmp(path, shm && P > 1 ? "shared memory" : "MPI") == 0, "[dp=%d shm=%d] path %s", P, shm, path);
    if (lms_dp_sync_grads(&dp) != m.grads)
        CHECK(lms_gpt_use_grads(&m, lms_dp_sync_grads(&dp)) == LMS_OK, "use grads: %s", lms_last_error());
    double loss = 0;
    for (int k = 0; k < accum; k++) {
        int first = w->rank * local + k * micro;
        float l = 0;
        CHECK(lms_gpt_forward(&m, &be, &a, x + first * T, y + first * T, micro, T, &l) == LMS_OK, "forward");
        loss += l;
        if (k == accum - 1) {
            lms_dp_sync_begin(&dp);
            lms_gpt_backward(&m, &be, &a, x + first * T, y + first * T, 1.0f / (G * T), lms_dp_sync_ready, &dp);
            CHECK(lms_dp_sync_finish(&dp) == LMS_OK, "dp finish: %s", lms_last_error());
        } else {
            lms_gpt_backward(&m, &be, &a, x + first * T, y + first * T, 1.0f / (G * T), NULL, NULL); /* accumulate locally, no communication */
        }
    }
    double sum = 0, mine = loss / accum / P;
    w->i->allreduce(w, &mine, &sum, 1, LMS_DT_F64, LMS_RED_SUM);
    CHECK(fabs(sum - ref_loss) < 1e-5 * ref_loss, "[dp=%d accum=%d] loss %.7f vs one process %.7f", P, accum,
          sum, ref_loss);
    double e = rel_err(lms_dp_sync_reduced(&dp), ref.grads, m.num_params, 1e-6);
    CHECK(e < 1e-5, "[dp=%d accum=%d bucket=%zu] gradients vs one process: rel err %g", P, accum, bucket_bytes, e);
    /* MPI: every rank starts buckets while its backward runs. Shared memory:
     * a chunk is summed once every rank has reported it, so which rank sums
     * during backward depends on which is ahead; the last to report sums all
     * of its chunks then, so the ranks' total is at least a rank's share. */
    int during = dp.buckets_before_finish;
    if (dp.shm) w->i->allreduce(w, &dp.buckets_before_finish, &during, 1, LMS_DT_I32, LMS_RED_SUM);
    if (bucket_bytes < 65536)
        CHECK(during >= cfg.L, "[dp=%d %s] %d buckets started during backward (overlap)", P, path, during);
    if (w->rank == 0)
        printf("[dp=%d accum=%d bucket=%zuB %s] loss %.7f (one process %.7f), gradient rel err %.2e, %d buckets "
               "reduced during backward\n", P, accum, bucket_bytes, path, sum, ref_loss, e, dp.buckets_before_finish);
    lms_dp_sync_free(&dp);
    lms_gpt_acts_free(&a);
    lms_gpt_acts_free(&ra);
    lms_gpt_free(&m);
    lms_gpt_free(&ref);
}

int main(int argc, char **argv) {
    lms_comm *w;
    if (lms_comm_world("auto", &argc, &argv, &w) != LMS_OK) {
        fprintf(stderr, "%s\n", lms_last_error());
        return 1;
    }
    if (G % w->size != 0) {
        int rc = 0;
        if (w->rank == 0) {
            test_skip("test_dp at this world size", "run it on a number of ranks that divides the batch");
            rc = test_summary("test_dp");
        }
        lms_comm_free(w);
        return rc;
    }
    for (int shm = 1; shm >= 0; shm--) { /* shared memory, then MPI requests */
        run(w, 1, 4096, shm);     /* many small buckets */
        run(w, 1, 64 << 20, shm); /* one bucket */
        if (G / w->size >= 2) run(w, 2, 8192, shm);
        run(w, 1, 4096, shm); /* again: a second dp_sync on the same communicator */
    }
    int f = g_failures, total = 0;
    w->i->allreduce(w, &f, &total, 1, LMS_DT_I32, LMS_RED_SUM);
    g_failures = total;
    char name[48];
    snprintf(name, sizeof name, "test_dp (%d ranks)", w->size);
    int rc = w->rank == 0 ? test_summary(name) : (total ? 1 : 0);
    lms_comm_free(w);
    return rc;
}
