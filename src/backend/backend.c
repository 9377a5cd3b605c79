/* Backend selection and the start-up peak measurement. */
#include "lmscale/backend.h"

#include <string.h>

lms_status lms_backend_init(lms_backend *be, const char *name) {
    be->state = NULL;
    if (!name || strcmp(name, "cpu") == 0) {
        be->i = &lms_backend_cpu_i;
        return LMS_OK;
    }
    if (strcmp(name, "ref") == 0) {
        be->i = &lms_backend_ref_i;
        return LMS_OK;
    }
    if (strcmp(name, "cuda") == 0)
        return lms_errorf(LMS_ERR_UNSUPPORTED, "--backend cuda: this build has no CUDA backend yet "
                          "(use --backend cpu)");
    return lms_errorf(LMS_ERR_INVALID_ARG, "--backend '%s' is not known (choose cpu or ref)", name);
}

void lms_backend_free(lms_backend *be) {
    if (!be) return;
    be->i = NULL;
    be->state = NULL;
}

double lms_backend_measure_peak_tflops(lms_backend *be) {
    const int n = 1024;
    float *a = lms_alloc(sizeof(float) * n * n), *b = lms_alloc(sizeof(float) * n * n),
          *c = lms_alloc(sizeof(float) * n * n);
    if (!a || !b || !c) {
        lms_free(a);
        lms_free(b);
        lms_free(c);
        return 0.0;
    }
    for (int i = 0; i < n * n; i++) {
        a[i] = 0.001f * (float)(i % 97);
        b[i] = 0.001f * (float)(i % 89);
    }
    /* Best of as many repetitions as fit in ~0.3 s (at least 5, after one
     * warm-up): on a shared machine the best is the least disturbed. */
    double best = 1e30, start = lms_now_s();
    be->i->matmul_fwd(be, c, a, b, NULL, n, n, n);
    for (int rep = 0; rep < 200 && (rep < 5 || lms_now_s() - start < 0.3); rep++) {
        double t0 = lms_now_s();
        be->i->matmul_fwd(be, c, a, b, NULL, n, n, n);
        double dt = lms_now_s() - t0;
        if (dt < best) best = dt;
    }
    lms_free(a);
    lms_free(b);
    lms_free(c);
    return 2.0 * n * n * (double)n / best / 1e12;
}
