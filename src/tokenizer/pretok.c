/* The GPT-2 pre-tokenizer as a hand-written scanner (no regex library):
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * The alternatives are tried in order at each position, as the regex
 * engine does; the classes come from unicode_tables.c. An invalid UTF-8
 * byte is one code point of class "other", so any bytes split into
 * pre-tokens that concatenate back to the input. */
#include "tokenizer/unicode.h"

static int in_ranges(const lms_cp_range *r, size_t n, uint32_t cp) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < r[mid].lo)
            hi = mid;
        else if (cp > r[mid].hi)
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

lms_uc_class lms_uc_classify(uint32_t cp) {
    if (cp < 0x80) {
        if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return LMS_UC_LETTER;
        if (cp >= '0' && cp <= '9') return LMS_UC_NUMBER;
        if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return LMS_UC_SPACE;
        return LMS_UC_OTHER;
    }
    if (cp == UINT32_MAX) return LMS_UC_OTHER;
    if (in_ranges(lms_uc_letter, lms_uc_letter_count, cp)) return LMS_UC_LETTER;
    if (in_ranges(lms_uc_number, lms_uc_number_count, cp)) return LMS_UC_NUMBER;
    if (in_ranges(lms_uc_space, lms_uc_space_count, cp)) return LMS_UC_SPACE;
    return LMS_UC_OTHER;
}

/* Class and length of the code point at s[0..n). */
static inline lms_uc_class cls_at(const unsigned char *s, size_t n, size_t *len) {
    uint32_t cp;
    *len = lms_utf8_next(s, n, &cp);
    return lms_uc_classify(cp);
}

/* Length of the run of code points of class c starting at s[0]. */
static size_t run_of(const unsigned char *s, size_t n, lms_uc_class c) {
    size_t i = 0, l;
    while (i < n && cls_at(s + i, n - i, &l) == c) i += l;
    return i;
}

/* Length of the run of code points that are neither space, letter nor number. */
static size_t run_of_other(const unsigned char *s, size_t n) { return run_of(s, n, LMS_UC_OTHER); }

size_t lms_pretok_next(const unsigned char *s, size_t n) {
    /* 's 't 're 've 'm 'll 'd */
    if (s[0] == '\'' && n >= 2) {
        unsigned char a = s[1];
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
        if (n >= 3) {
            unsigned char b = s[2];
            if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
        }
    }
    size_t l0, l1;
    lms_uc_class c0 = cls_at(s, n, &l0);
    /* ` ?X+` for X = letter, number, other: the optional space is U+0020 only */
    size_t skip = 0;
    lms_uc_class c = c0;
    if (s[0] == ' ' && n > 1) {
        lms_uc_class c1 = cls_at(s + 1, n - 1, &l1);
        if (c1 != LMS_UC_SPACE) {
            skip = 1;
            c = c1;
        }
    }
    if (c != LMS_UC_SPACE) {
        if (c == LMS_UC_OTHER) return skip + run_of_other(s + skip, n - skip);
        return skip + run_of(s + skip, n - skip, c);
    }
    /* c0 is space: \s+(?!\S) then \s+ */
    size_t run = 0, last = 0; /* last: start of the run's last code point */
    while (run < n) {
        size_t l;
        if (cls_at(s + run, n - run, &l) != LMS_UC_SPACE) break;
        last = run;
        run += l;
    }
    if (run == n) return run;    /* whitespace to the end */
    if (last > 0) return last;   /* leave the last space to prefix the next word */
    return run;                  /* a single space before a non-space: \s+ */
}
