/* The byte-level tokenizer: one id per byte, plus <|endoftext|>. Encoding
 * and decoding for both kinds are in bpe.c. */
#include "lmscale/tokenizer.h"

void lms_tokenizer_init_bytes(lms_tokenizer *t) {
    t->kind = LMS_TOK_BYTES;
    t->vocab_size = 257;
    t->eot = 256;
    t->impl = NULL;
}
