/* lmscale tokenizers, behind one set of functions:
 *  - bytes: ids 0..255 are the bytes, 256 is <|endoftext|> (any text trains);
 *  - BPE: byte-level BPE in the GPT-2 / Hugging Face layout (vocab.json +
 *    merges.txt), exact GPT-2 encoding (issue: tokenizer and datasets).
 * A tokenizer is initialised by one of the _init/_load functions and freed
 * with lms_tokenizer_free (a no-op for bytes). */
#ifndef LMSCALE_TOKENIZER_H
#define LMSCALE_TOKENIZER_H

#include "lmscale/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { LMS_TOK_BYTES = 0, LMS_TOK_BPE = 1 } lms_tokenizer_kind;

typedef struct {
    lms_tokenizer_kind kind;
    int vocab_size; /* ids are in [0, vocab_size) */
    int eot;        /* id of <|endoftext|>, -1 if the vocabulary has none */
    void *impl;     /* BPE tables; owned */
} lms_tokenizer;

void lms_tokenizer_init_bytes(lms_tokenizer *t);
/* Loads a GPT-2 style vocab.json + merges.txt pair. Errors name the file,
 * the line and the fix. */
lms_status lms_tokenizer_load_bpe(lms_tokenizer *t, const char *vocab_json, const char *merges_txt);
void lms_tokenizer_free(lms_tokenizer *t);

/* Encodes n bytes; *ids is malloc'ed (caller frees). */
lms_status lms_tokenizer_encode(const lms_tokenizer *t, const unsigned char *text, size_t n,
                                int32_t **ids, size_t *nids);
/* As lms_tokenizer_encode; with allow_special, the literal text
 * "<|endoftext|>" becomes the eot id (when the vocabulary has one).
 * lms_tokenizer_encode is allow_special = 0: like GPT-2's encoder, the
 * string is then ordinary text, so untrusted text cannot forge a document
 * boundary. */
lms_status lms_tokenizer_encode_opts(const lms_tokenizer *t, const unsigned char *text, size_t n,
                                     int allow_special, int32_t **ids, size_t *nids);
/* Writes the bytes of one token into buf (cap >= 16; BPE tokens may need
 * more: the return value is the full length, and at most cap bytes are
 * written). */
size_t lms_tokenizer_decode(const lms_tokenizer *t, int32_t id, char *buf, size_t cap);

/* Learns a byte-level BPE vocabulary (GPT-2 pre-tokenization, merges by
 * pair count) from the files and writes <out_dir>/vocab.json and
 * <out_dir>/merges.txt in the GPT-2 / Hugging Face layout (atomically).
 * vocab_size counts the 256 bytes, the merges and the special token (if
 * special is non-NULL; occurrences of it in the text are not learned from).
 * Stops early (fewer tokens) if the text has no pair left to merge;
 * *final_size (may be NULL) is the size reached. */
typedef struct {
    int vocab_size;
    const char *special; /* e.g. "<|endoftext|>", or NULL */
    int verbose;         /* progress lines on stderr */
} lms_bpe_train_opts;
lms_status lms_bpe_train(const char *const *inputs, int ninputs, const lms_bpe_train_opts *o,
                         const char *out_dir, int *final_size);

#ifdef __cplusplus
}
#endif
#endif
