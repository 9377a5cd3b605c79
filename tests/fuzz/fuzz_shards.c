/* libFuzzer: the token-shard readers (src/data/shards.c) through
 * lms_tokens_open. Split as in fuzz_common.h: the first part is data.idx,
 * the second data.bin; the input's first byte picks what is opened: the
 * .bin alone (lmscale, llm.c or text), the Megatron pair by prefix, or the
 * .idx. */
#include "fuzz_common.h"
#include "lmscale/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *a, *b;
    size_t na, nb;
    if (!fz_split(data, size, &a, &na, &b, &nb)) return 0;
    char path[600];
    snprintf(path, sizeof path, "%s/data.idx", fz_scratch());
    unlink(path);
    int mode = data[0] % 3;
    if (mode) fz_write(0, "data.idx", a, na);
    const char *bin = fz_write(1, "data.bin", b, nb);
    if (mode == 1) snprintf(path, sizeof path, "%s/data", fz_scratch());
    else if (mode == 0) snprintf(path, sizeof path, "%s", bin);
    lms_tokenizer tok;
    lms_tokenizer_init_bytes(&tok);
    lms_tokens t;
    if (lms_tokens_open(path, &tok, &t) == LMS_OK) {
        (void)lms_tokens_check_vocab(&t, 50257, path);
        lms_tokens_free(&t);
    }
    return 0;
}
