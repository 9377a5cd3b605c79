/* libFuzzer: BPE tokenizer files (vocab.json + merges.txt, split as in
 * fuzz_common.h) through lms_tokenizer_load_bpe, then encoding the same
 * bytes and decoding the ids. */
#include "fuzz_common.h"
#include "lmscale/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *v, *m;
    size_t nv, nm;
    if (!fz_split(data, size, &v, &nv, &m, &nm)) return 0;
    const char *vp = fz_write(0, "vocab.json", v, nv), *mp = fz_write(1, "merges.txt", m, nm);
    lms_tokenizer tok;
    if (lms_tokenizer_load_bpe(&tok, vp, mp) != LMS_OK) return 0;
    int32_t *ids = NULL;
    size_t n = 0;
    if (lms_tokenizer_encode(&tok, data, size, &ids, &n) == LMS_OK) {
        char buf[256];
        for (size_t i = 0; i < n; i++) (void)lms_tokenizer_decode(&tok, ids[i], buf, sizeof buf);
        free(ids);
    }
    lms_tokenizer_free(&tok);
    return 0;
}
