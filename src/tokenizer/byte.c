/* The byte-level tokenizer: one id per byte, plus <|endoftext|>. */
#include "lmscale/tokenizer.h"

#include <stdlib.h>
#include <string.h>

void lms_tokenizer_init_bytes(lms_tokenizer *t) {
    t->kind = LMS_TOK_BYTES;
    t->vocab_size = 257;
    t->eot = 256;
    t->impl = NULL;
}

/* Until the BPE tokenizer lands (src/tokenizer/bpe.c replaces these two). */
lms_status lms_tokenizer_load_bpe(lms_tokenizer *t, const char *vocab_json, const char *merges_txt) {
    (void)merges_txt;
    lms_tokenizer_init_bytes(t);
    return lms_errorf(LMS_ERR_UNSUPPORTED, "cannot load '%s': this build has no BPE tokenizer yet "
                      "(byte-level only)", vocab_json);
}

void lms_tokenizer_free(lms_tokenizer *t) {
    if (t) t->impl = NULL;
}

lms_status lms_tokenizer_encode(const lms_tokenizer *t, const unsigned char *text, size_t n,
                                int32_t **ids, size_t *nids) {
    int32_t *out = malloc(sizeof(int32_t) * (n ? n : 1));
    if (!out) return lms_errorf(LMS_ERR_OOM, "out of memory encoding %zu bytes", n);
    for (size_t i = 0; i < n; i++) out[i] = text[i];
    *ids = out;
    *nids = n;
    return LMS_OK;
}

size_t lms_tokenizer_decode(const lms_tokenizer *t, int32_t id, char *buf, size_t cap) {
    if (id >= 0 && id < 256) {
        if (cap >= 1) buf[0] = (char)id;
        return 1;
    }
    const char *s = id == t->eot ? "<|endoftext|>" : "<|unk|>";
    size_t n = strlen(s);
    memcpy(buf, s, n < cap ? n : cap);
    return n;
}
