/* lmscale JSON: a small strict reader (RFC 8259) into a tree, and string
 * escaping for writers. Used for tokenizer vocabularies, Hugging Face
 * config.json and safetensors headers, and checkpoint indexes.
 *
 * Strings are decoded to UTF-8 (\uXXXX escapes and surrogate pairs
 * included) and carry their byte length, so they may contain NUL. */
#ifndef LMSCALE_JSON_H
#define LMSCALE_JSON_H

#include "lmscale/core.h"

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    LMS_JSON_NULL = 0,
    LMS_JSON_BOOL,
    LMS_JSON_NUMBER,
    LMS_JSON_STRING,
    LMS_JSON_ARRAY,
    LMS_JSON_OBJECT
} lms_json_type;

typedef struct lms_json {
    lms_json_type type;
    int boolean;
    double number;
    char *str; /* STRING: NUL-terminated UTF-8, length str_len */
    size_t str_len;
    char *key; /* member of an OBJECT: its key, length key_len */
    size_t key_len;
    struct lms_json *child; /* ARRAY/OBJECT: first element */
    struct lms_json *next;  /* next element of the parent */
    size_t count;           /* ARRAY/OBJECT: number of elements */
} lms_json;

/* Parses len bytes. Errors are LMS_ERR_FORMAT naming `what` (a file name),
 * the line and column, and what was expected. *out is freed with
 * lms_json_free. Refused: nesting deeper than 512 levels, a key that appears
 * twice in one object, a number beyond the range of a double. Numbers of
 * any length are read whole. */
lms_status lms_json_parse(const char *text, size_t len, const char *what, lms_json **out);
void lms_json_free(lms_json *j);

/* Member of an object by key (NULL if absent or j is not an object). */
const lms_json *lms_json_get(const lms_json *j, const char *key);
/* Checked numbers: 1 and *out set when j (or obj's member key) is a
 * number that is an integer in [lo, hi] and at most 2^53 in magnitude (so
 * exactly the integer written); 0 otherwise (absent, not a number,
 * fractional, out of range). Use these, never a cast of j->number. */
int lms_json_int(const lms_json *j, int64_t lo, int64_t hi, int64_t *out);
int lms_json_get_int(const lms_json *obj, const char *key, int64_t lo, int64_t hi, int64_t *out);
/* 1 when obj's member key is a number within float range. */
int lms_json_get_float(const lms_json *obj, const char *key, float *out);
/* Element i of an array (NULL if out of range). */
const lms_json *lms_json_at(const lms_json *j, size_t i);

/* Writes s (n bytes) as a JSON string literal with quotes, escaping what
 * must be escaped; bytes >= 0x80 are written as they are (UTF-8). */
void lms_json_write_string(FILE *f, const char *s, size_t n);

#ifdef __cplusplus
}
#endif
#endif
