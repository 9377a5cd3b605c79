/* Deterministic windows over a token array (see data.h). */
#include "lmscale/data.h"

#include <string.h>

lms_status lms_data_order_parse(const char *name, lms_data_order *order) {
    if (strcmp(name, "random") == 0) *order = LMS_ORDER_RANDOM;
    else if (strcmp(name, "sequential") == 0) *order = LMS_ORDER_SEQUENTIAL;
    else
        return lms_errorf(LMS_ERR_INVALID_ARG, "--data-order '%s' is not known (choose random or "
                          "sequential)", name);
    return LMS_OK;
}

lms_status lms_loader_init(lms_loader *ld, const int32_t *tokens, size_t n, int T,
                           lms_data_order order, uint64_t seed, const char *what) {
    if (n < (size_t)T + 1)
        return lms_errorf(LMS_ERR_INVALID_ARG, "%s holds %zu tokens, fewer than one window of "
                          "--seq-len %d + 1: use more data or a shorter --seq-len", what, n, T);
    ld->tokens = tokens;
    ld->n = n;
    ld->T = T;
    ld->order = order;
    ld->key = lms_rng_key(seed, "data.windows");
    return LMS_OK;
}

size_t lms_loader_num_windows(const lms_loader *ld) { return (ld->n - 1) / (size_t)ld->T; }

void lms_loader_window(const lms_loader *ld, uint64_t w, int32_t *x, int32_t *y) {
    size_t start;
    if (ld->order == LMS_ORDER_SEQUENTIAL)
        start = (size_t)(w % lms_loader_num_windows(ld)) * (size_t)ld->T;
    else
        start = (size_t)(lms_rng_u64(ld->key, w) % (uint64_t)(ld->n - (size_t)ld->T));
    memcpy(x, ld->tokens + start, sizeof(int32_t) * (size_t)ld->T);
    memcpy(y, ld->tokens + start + 1, sizeof(int32_t) * (size_t)ld->T);
}
