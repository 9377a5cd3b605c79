/* Token arrays loaded from text through a tokenizer. */
#include "lmscale/data.h"

#include <stdlib.h>
#include <string.h>

lms_status lms_tokens_load(const char *path, const lms_tokenizer *tok, lms_tokens *out) {
    memset(out, 0, sizeof *out);
    unsigned char *buf;
    size_t size;
    LMS_CHECK(lms_read_file(path, &buf, &size));
    if (size == 0) {
        free(buf);
        return lms_errorf(LMS_ERR_FORMAT, "data file '%s' is empty: give a file with text to train on",
                          path);
    }
    lms_status st = lms_tokenizer_encode(tok, buf, size, &out->tokens, &out->n);
    free(buf);
    if (st != LMS_OK) return lms_error_context(st, "while reading '%s'", path);
    int mx = 0;
    for (size_t i = 0; i < out->n; i++)
        if (out->tokens[i] > mx) mx = out->tokens[i];
    out->max_id = mx;
    return LMS_OK;
}

void lms_tokens_free(lms_tokens *t) {
    if (!t) return;
    free(t->tokens);
    memset(t, 0, sizeof *t);
}

lms_status lms_tokens_check_vocab(const lms_tokens *t, int V, const char *path) {
    for (size_t i = 0; i < t->n; i++)
        if (t->tokens[i] < 0 || t->tokens[i] >= V)
            return lms_errorf(LMS_ERR_INVALID_ARG, "data '%s' has token id %d at position %zu, which does "
                              "not fit the model's vocabulary of %d: raise --vocab-size to at least %d "
                              "or re-tokenize the data", path, t->tokens[i], i, V, t->max_id + 1);
    return LMS_OK;
}
