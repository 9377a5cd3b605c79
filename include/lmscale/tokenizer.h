/* lmscale tokenizers. Today: the byte-level vocabulary (ids 0..255 are the
 * bytes, 256 is <|endoftext|>), so any text file trains. The BPE tokenizer
 * (GPT-2 compatible) plugs in behind the same functions. */
#ifndef LMSCALE_TOKENIZER_H
#define LMSCALE_TOKENIZER_H

#include "lmscale/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { LMS_TOK_BYTES = 0 } lms_tokenizer_kind;

typedef struct {
    lms_tokenizer_kind kind;
    int vocab_size; /* ids are in [0, vocab_size) */
    int eot;        /* id of <|endoftext|> */
} lms_tokenizer;

void lms_tokenizer_init_bytes(lms_tokenizer *t);
/* Encodes n bytes; *ids is malloc'ed (caller frees). */
lms_status lms_tokenizer_encode(const lms_tokenizer *t, const unsigned char *text, size_t n,
                                int32_t **ids, size_t *nids);
/* Writes the bytes of one token into buf (cap >= 16); returns their count. */
size_t lms_tokenizer_decode(const lms_tokenizer *t, int32_t id, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
