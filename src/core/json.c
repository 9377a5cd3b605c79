/* A strict recursive-descent JSON reader and a string escaper. */
#include "lmscale/json.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 512

typedef struct {
    const char *s, *what;
    size_t n, i;
    int depth;
} parser;

static size_t line_of(const parser *p) {
    size_t line = 1;
    for (size_t k = 0; k < p->i && k < p->n; k++) line += p->s[k] == '\n';
    return line;
}

static lms_status fail(parser *p, const char *expected) {
    size_t line = 1, col = 1;
    for (size_t k = 0; k < p->i && k < p->n; k++) {
        if (p->s[k] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    if (p->i >= p->n)
        return lms_errorf(LMS_ERR_FORMAT, "%s: invalid JSON: %s, but the text ended (line %zu): the file "
                          "is truncated or not JSON", p->what, expected, line);
    return lms_errorf(LMS_ERR_FORMAT, "%s: invalid JSON at line %zu, column %zu: %s", p->what, line, col,
                      expected);
}

static void skip_ws(parser *p) {
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r'))
        p->i++;
}

static lms_json *node(lms_json_type t) {
    lms_json *j = calloc(1, sizeof *j);
    if (j) j->type = t;
    return j;
}

static int hex4(const char *s, unsigned *out) {
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        char c = s[k];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

static size_t put_utf8(char *d, unsigned cp) {
    if (cp < 0x80) {
        d[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        d[0] = (char)(0xC0 | (cp >> 6));
        d[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        d[0] = (char)(0xE0 | (cp >> 12));
        d[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        d[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    d[0] = (char)(0xF0 | (cp >> 18));
    d[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    d[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    d[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* at '"'; decodes into a malloc'ed buffer */
static lms_status parse_string(parser *p, char **out, size_t *out_len) {
    p->i++; /* opening quote */
    size_t start = p->i, end = start;
    while (end < p->n && p->s[end] != '"') end += p->s[end] == '\\' ? 2 : 1;
    if (end >= p->n) {
        p->i = p->n;
        return fail(p, "expected a closing '\"'");
    }
    char *buf = malloc(end - start + 1), *d = buf;
    if (!buf) return lms_errorf(LMS_ERR_OOM, "%s: out of memory parsing JSON", p->what);
    while (p->i < end) {
        unsigned char c = (unsigned char)p->s[p->i];
        if (c < 0x20) {
            free(buf);
            return fail(p, "control character inside a string (escape it)");
        }
        if (c != '\\') {
            *d++ = (char)c;
            p->i++;
            continue;
        }
        char e = p->s[p->i + 1];
        p->i += 2;
        switch (e) {
        case '"': *d++ = '"'; break;
        case '\\': *d++ = '\\'; break;
        case '/': *d++ = '/'; break;
        case 'b': *d++ = '\b'; break;
        case 'f': *d++ = '\f'; break;
        case 'n': *d++ = '\n'; break;
        case 'r': *d++ = '\r'; break;
        case 't': *d++ = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (p->i + 4 > end || !hex4(p->s + p->i, &cp)) {
                free(buf);
                return fail(p, "\\u must be followed by 4 hex digits");
            }
            p->i += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF && p->i + 6 <= end && p->s[p->i] == '\\' &&
                p->s[p->i + 1] == 'u' && hex4(p->s + p->i + 2, &lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p->i += 6;
            } else if (cp >= 0xD800 && cp <= 0xDFFF) {
                cp = 0xFFFD; /* lone surrogate */
            }
            d += put_utf8(d, cp);
            break;
        }
        default:
            free(buf);
            p->i -= 1;
            return fail(p, "unknown escape in a string");
        }
    }
    p->i = end + 1;
    *d = 0;
    *out = buf;
    *out_len = (size_t)(d - buf);
    return LMS_OK;
}

static lms_status parse_value(parser *p, lms_json **out);

static uint64_t key_hash(const char *s, size_t n) { /* FNV-1a */
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

/* A key given twice is an error (RFC 8259 leaves it open; taking either
 * one silently lets a crafted file change what is read). Hash set of the
 * members, linear probing. */
static lms_status check_unique_keys(parser *p, const lms_json *obj) {
    if (obj->count < 2) return LMS_OK;
    size_t cap = 4;
    while (cap < 2 * obj->count) cap *= 2;
    const lms_json **slot = calloc(cap, sizeof *slot);
    if (!slot) return lms_errorf(LMS_ERR_OOM, "%s: out of memory parsing JSON", p->what);
    lms_status st = LMS_OK;
    for (const lms_json *c = obj->child; c && st == LMS_OK; c = c->next) {
        size_t h = (size_t)key_hash(c->key, c->key_len) & (cap - 1);
        for (; slot[h]; h = (h + 1) & (cap - 1))
            if (slot[h]->key_len == c->key_len && memcmp(slot[h]->key, c->key, c->key_len) == 0) {
                p->i--; /* point at the object's closing brace */
                st = lms_errorf(LMS_ERR_FORMAT, "%s: invalid JSON: the key \"%.*s\" appears twice in one "
                                "object (the object ends at line %zu): keep one of them", p->what,
                                (int)(c->key_len < 60 ? c->key_len : 60), c->key, line_of(p));
                break;
            }
        slot[h] = c;
    }
    free(slot);
    return st;
}

static lms_status parse_container(parser *p, lms_json *j, char close) {
    p->i++;
    lms_json **tail = &j->child;
    skip_ws(p);
    if (p->i < p->n && p->s[p->i] == close) {
        p->i++;
        return LMS_OK;
    }
    for (;;) {
        char *key = NULL;
        size_t key_len = 0;
        skip_ws(p);
        if (close == '}') {
            if (p->i >= p->n || p->s[p->i] != '"') return fail(p, "expected a string key");
            LMS_CHECK(parse_string(p, &key, &key_len));
            skip_ws(p);
            if (p->i >= p->n || p->s[p->i] != ':') {
                free(key);
                return fail(p, "expected ':' after the key");
            }
            p->i++;
        }
        lms_json *v = NULL;
        lms_status st = parse_value(p, &v);
        if (st != LMS_OK) {
            free(key);
            return st;
        }
        v->key = key;
        v->key_len = key_len;
        *tail = v;
        tail = &v->next;
        j->count++;
        skip_ws(p);
        if (p->i < p->n && p->s[p->i] == ',') {
            p->i++;
            continue;
        }
        if (p->i < p->n && p->s[p->i] == close) {
            p->i++;
            return close == '}' ? check_unique_keys(p, j) : LMS_OK;
        }
        return fail(p, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static lms_status parse_value(parser *p, lms_json **out) {
    skip_ws(p);
    if (p->i >= p->n) return fail(p, "expected a value");
    if (++p->depth > MAX_DEPTH) return fail(p, "nesting deeper than 512 levels");
    lms_json *j = NULL;
    lms_status st = LMS_OK;
    char c = p->s[p->i];
    if (c == '{' || c == '[') {
        j = node(c == '{' ? LMS_JSON_OBJECT : LMS_JSON_ARRAY);
        if (!j) return lms_errorf(LMS_ERR_OOM, "%s: out of memory parsing JSON", p->what);
        st = parse_container(p, j, c == '{' ? '}' : ']');
    } else if (c == '"') {
        j = node(LMS_JSON_STRING);
        if (!j) return lms_errorf(LMS_ERR_OOM, "%s: out of memory parsing JSON", p->what);
        st = parse_string(p, &j->str, &j->str_len);
    } else if (c == 't' && p->n - p->i >= 4 && memcmp(p->s + p->i, "true", 4) == 0) {
        j = node(LMS_JSON_BOOL);
        if (j) j->boolean = 1;
        p->i += 4;
    } else if (c == 'f' && p->n - p->i >= 5 && memcmp(p->s + p->i, "false", 5) == 0) {
        j = node(LMS_JSON_BOOL);
        p->i += 5;
    } else if (c == 'n' && p->n - p->i >= 4 && memcmp(p->s + p->i, "null", 4) == 0) {
        j = node(LMS_JSON_NULL);
        p->i += 4;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        size_t k = p->i;
        if (p->s[k] == '-') k++;
        if (k >= p->n || p->s[k] < '0' || p->s[k] > '9') return fail(p, "expected a digit");
        if (p->s[k] == '0') k++;
        else
            while (k < p->n && p->s[k] >= '0' && p->s[k] <= '9') k++;
        if (k < p->n && p->s[k] == '.') {
            k++;
            if (k >= p->n || p->s[k] < '0' || p->s[k] > '9') {
                p->i = k;
                return fail(p, "expected a digit after '.'");
            }
            while (k < p->n && p->s[k] >= '0' && p->s[k] <= '9') k++;
        }
        if (k < p->n && (p->s[k] == 'e' || p->s[k] == 'E')) {
            k++;
            if (k < p->n && (p->s[k] == '+' || p->s[k] == '-')) k++;
            if (k >= p->n || p->s[k] < '0' || p->s[k] > '9') {
                p->i = k;
                return fail(p, "expected a digit in the exponent");
            }
            while (k < p->n && p->s[k] >= '0' && p->s[k] <= '9') k++;
        }
        char tmp[64], *num = tmp;
        size_t len = k - p->i;
        if (len >= sizeof tmp && !(num = malloc(len + 1)))
            return lms_errorf(LMS_ERR_OOM, "%s: out of memory parsing JSON", p->what);
        memcpy(num, p->s + p->i, len);
        num[len] = 0;
        double v = strtod(num, NULL);
        if (num != tmp) free(num);
        if (!isfinite(v)) return fail(p, "a number within the range of a double (this one overflows)");
        j = node(LMS_JSON_NUMBER);
        if (j) j->number = v;
        p->i = k;
    } else {
        return fail(p, "expected a value (object, array, string, number, true, false or null)");
    }
    if (!j) return lms_errorf(LMS_ERR_OOM, "%s: out of memory parsing JSON", p->what);
    p->depth--;
    if (st != LMS_OK) {
        lms_json_free(j);
        return st;
    }
    *out = j;
    return LMS_OK;
}

lms_status lms_json_parse(const char *text, size_t len, const char *what, lms_json **out) {
    parser p = {text, what ? what : "JSON", len, 0, 0};
    *out = NULL;
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) p.i = 3; /* UTF-8 BOM */
    lms_json *j = NULL;
    LMS_CHECK(parse_value(&p, &j));
    skip_ws(&p);
    if (p.i != p.n) {
        lms_json_free(j);
        return fail(&p, "unexpected text after the JSON value");
    }
    *out = j;
    return LMS_OK;
}

void lms_json_free(lms_json *j) {
    while (j) {
        lms_json *next = j->next;
        lms_json_free(j->child);
        free(j->str);
        free(j->key);
        free(j);
        j = next;
    }
}

const lms_json *lms_json_get(const lms_json *j, const char *key) {
    if (!j || j->type != LMS_JSON_OBJECT) return NULL;
    size_t n = strlen(key);
    for (const lms_json *c = j->child; c; c = c->next)
        if (c->key_len == n && memcmp(c->key, key, n) == 0) return c;
    return NULL;
}

int lms_json_int(const lms_json *j, int64_t lo, int64_t hi, int64_t *out) {
    /* integers up to 2^53 are exact in a double; beyond, a value read is
     * not necessarily the value written */
    const double exact = 9007199254740992.0;
    if (!j || j->type != LMS_JSON_NUMBER) return 0;
    double v = j->number;
    if (!(v >= -exact && v <= exact) || v != floor(v) || v < (double)lo || v > (double)hi) return 0;
    int64_t x = (int64_t)v;
    if (x < lo || x > hi) return 0;
    *out = x;
    return 1;
}

int lms_json_get_int(const lms_json *obj, const char *key, int64_t lo, int64_t hi, int64_t *out) {
    return lms_json_int(lms_json_get(obj, key), lo, hi, out);
}

int lms_json_get_float(const lms_json *obj, const char *key, float *out) {
    const lms_json *j = lms_json_get(obj, key);
    if (!j || j->type != LMS_JSON_NUMBER || !(fabs(j->number) <= FLT_MAX)) return 0;
    *out = (float)j->number;
    return 1;
}

const lms_json *lms_json_at(const lms_json *j, size_t i) {
    if (!j || (j->type != LMS_JSON_ARRAY && j->type != LMS_JSON_OBJECT)) return NULL;
    const lms_json *c = j->child;
    while (c && i--) c = c->next;
    return c;
}

void lms_json_write_string(FILE *f, const char *s, size_t n) {
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"') fputs("\\\"", f);
        else if (c == '\\') fputs("\\\\", f);
        else if (c == '\n') fputs("\\n", f);
        else if (c == '\r') fputs("\\r", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}
