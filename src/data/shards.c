/* Token shards: one entry point, lms_tokens_open, that reads a comma list of
 * files and picks each file's reader by its content (docs/formats.md):
 *  - lmscale shards (magic "LMSTOKEN", u16 or u32 ids, CRC-32);
 *  - llm.c shards (256 x i32 header, magic 20240520, u16 ids);
 *  - Megatron-LM indexed datasets (PATH.idx "MMIDIDX" + PATH.bin), given as
 *    the .bin, the .idx or the common prefix;
 *  - anything else: text, through the tokenizer.
 * And the lmscale shard writer used by `lmscale data prepare`. */
#define _POSIX_C_SOURCE 200809L
#include "lmscale/data.h"

#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define LMSTOK_MAGIC "LMSTOKEN"
#define LMSTOK_HEADER 32
#define LLMC_MAGIC 20240520
#define LLMC_HEADER (256 * 4)
static const char MMIDX_MAGIC[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', 0, 0};
#define CHUNK 65536 /* tokens per read */

static uint32_t rd32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const unsigned char *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void wr64(unsigned char *p, uint64_t v) {
    wr32(p, (uint32_t)v);
    wr32(p + 4, (uint32_t)(v >> 32));
}

static int file_size(FILE *f, uint64_t *size) {
    if (fseek(f, 0, SEEK_END) != 0) return -1;
    long s = ftell(f);
    if (s < 0 || fseek(f, 0, SEEK_SET) != 0) return -1;
    *size = (uint64_t)s;
    return 0;
}

/* Grows out->tokens to hold `more` further ids. */
static lms_status reserve(lms_tokens *out, uint64_t more, size_t *cap, const char *path) {
    if (more > (uint64_t)(SIZE_MAX / 4) - out->n)
        return lms_errorf(LMS_ERR_FORMAT, "data '%s' claims %llu tokens, more than this machine can address",
                          path, (unsigned long long)more);
    size_t need = out->n + (size_t)more;
    if (need <= *cap) return LMS_OK;
    size_t nc = *cap ? *cap : 1024;
    while (nc < need) nc = nc > SIZE_MAX / 8 ? need : nc * 2;
    int32_t *t = realloc(out->tokens, nc * sizeof *t);
    if (!t)
        return lms_errorf(LMS_ERR_OOM, "out of memory holding %zu tokens of '%s' (%zu MB)", need, path,
                          need * 4 >> 20);
    out->tokens = t;
    *cap = nc;
    return LMS_OK;
}

/* Reads n ids of `width` bytes (1, 2, 4 or 8; `sign` for signed types) from
 * f at its position, appending; *crc (may be NULL) accumulates the bytes. */
static lms_status read_ids(FILE *f, uint64_t n, int width, int sign, lms_tokens *out, size_t *cap,
                           uint32_t *crc, const char *path) {
    LMS_CHECK(reserve(out, n, cap, path));
    unsigned char *buf = malloc((size_t)CHUNK * (size_t)width);
    if (!buf) return lms_errorf(LMS_ERR_OOM, "out of memory reading '%s'", path);
    lms_status st = LMS_OK;
    for (uint64_t done = 0; done < n && st == LMS_OK;) {
        size_t k = n - done < CHUNK ? (size_t)(n - done) : CHUNK;
        if (fread(buf, (size_t)width, k, f) != k) {
            st = lms_errorf(LMS_ERR_FORMAT, "data '%s' is truncated: it ends after %llu of its %llu tokens "
                            "(re-copy or re-create it)", path, (unsigned long long)(done), (unsigned long long)n);
            break;
        }
        if (crc) *crc = lms_crc32(*crc, buf, k * (size_t)width);
        int32_t *dst = out->tokens + out->n;
        for (size_t i = 0; i < k; i++) {
            const unsigned char *p = buf + i * (size_t)width;
            int64_t v;
            switch (width) {
            case 1: v = sign ? (int8_t)p[0] : p[0]; break;
            case 2: v = sign ? (int16_t)(p[0] | p[1] << 8) : (p[0] | p[1] << 8); break;
            case 4: v = sign ? (int32_t)rd32(p) : (int64_t)rd32(p); break;
            default: v = (int64_t)rd64(p); break;
            }
            if (v < 0 || v > INT32_MAX) {
                st = lms_errorf(LMS_ERR_FORMAT, "data '%s' has token id %lld at position %llu, which is not "
                                "a valid id", path, (long long)v, (unsigned long long)(done + i));
                break;
            }
            dst[i] = (int32_t)v;
            if (dst[i] > out->max_id) out->max_id = dst[i];
        }
        out->n += k;
        done += k;
    }
    free(buf);
    return st;
}

static lms_status open_lmstok(FILE *f, uint64_t size, const char *path, lms_tokens *out, size_t *cap) {
    unsigned char h[LMSTOK_HEADER];
    if (size < LMSTOK_HEADER || fread(h, 1, LMSTOK_HEADER, f) != LMSTOK_HEADER)
        return lms_errorf(LMS_ERR_FORMAT, "lmscale shard '%s' is truncated: %llu bytes, shorter than its "
                          "%d-byte header", path, (unsigned long long)size, LMSTOK_HEADER);
    if (memcmp(h, LMSTOK_MAGIC, 8) != 0)
        return lms_errorf(LMS_ERR_FORMAT, "'%s' has a bad magic number '%.8s' (an lmscale token shard starts "
                          "with 'LMSTOKEN'): the file is damaged or not a shard", path, (const char *)h);
    uint32_t version = rd32(h + 8), width = rd32(h + 12), crc = rd32(h + 24);
    uint64_t n = rd64(h + 16);
    if (version != 1)
        return lms_errorf(LMS_ERR_FORMAT, "lmscale shard '%s' has version %u; this build reads version 1 "
                          "(upgrade lmscale, or re-create the shard with 'lmscale data prepare')", path, version);
    if (width != 2 && width != 4)
        return lms_errorf(LMS_ERR_FORMAT, "lmscale shard '%s' has token width %u bytes; only 2 and 4 exist",
                          path, width);
    uint64_t payload = size - LMSTOK_HEADER;
    if (n > payload / width)
        return lms_errorf(LMS_ERR_FORMAT, "lmscale shard '%s' is truncated: its header says %llu tokens "
                          "(%llu bytes) but the file has %llu bytes (re-copy or re-create it)", path,
                          (unsigned long long)n, (unsigned long long)(LMSTOK_HEADER + n * width),
                          (unsigned long long)size);
    if (payload != n * width)
        return lms_errorf(LMS_ERR_FORMAT, "lmscale shard '%s' has %llu bytes but its header says %llu tokens "
                          "(%llu bytes): extra bytes at the end, the file is damaged", path,
                          (unsigned long long)size, (unsigned long long)n,
                          (unsigned long long)(LMSTOK_HEADER + n * width));
    uint32_t got = 0;
    LMS_CHECK(read_ids(f, n, (int)width, 0, out, cap, &got, path));
    if (got != crc)
        return lms_errorf(LMS_ERR_FORMAT, "lmscale shard '%s' fails its checksum (CRC-32 %08x, header says "
                          "%08x): the tokens are damaged; re-copy or re-create the shard", path, got, crc);
    return LMS_OK;
}

static lms_status open_llmc(FILE *f, uint64_t size, const char *path, lms_tokens *out, size_t *cap) {
    unsigned char h[LLMC_HEADER];
    if (size < LLMC_HEADER || fread(h, 1, LLMC_HEADER, f) != LLMC_HEADER)
        return lms_errorf(LMS_ERR_FORMAT, "llm.c shard '%s' is truncated: %llu bytes, shorter than its "
                          "1024-byte header", path, (unsigned long long)size);
    uint32_t version = rd32(h + 4);
    int32_t n = (int32_t)rd32(h + 8);
    if (version != 1)
        return lms_errorf(LMS_ERR_FORMAT, "llm.c shard '%s' has version %u; lmscale reads version 1 "
                          "(GPT-2, uint16 tokens)", path, version);
    if (n < 0 || size != LLMC_HEADER + 2 * (uint64_t)n)
        return lms_errorf(LMS_ERR_FORMAT, "llm.c shard '%s' has %llu bytes but its header says %d tokens "
                          "(%llu bytes): the file is %s", path, (unsigned long long)size, n,
                          (unsigned long long)(LLMC_HEADER + 2 * (uint64_t)(n < 0 ? 0 : n)),
                          n >= 0 && size < LLMC_HEADER + 2 * (uint64_t)n ? "truncated" : "damaged");
    return read_ids(f, (uint64_t)n, 2, 0, out, cap, NULL, path);
}

/* Megatron-LM MMIDIDX, version 1 (megatron/core/datasets/indexed_dataset.py):
 * header "MMIDIDX\0\0", u64 version, u8 dtype code, u64 sequence count S,
 * u64 document count D, i32 sizes[S], i64 pointers[S], i64 documents[D]. */
static lms_status open_megatron(const char *idx, const char *bin, lms_tokens *out, size_t *cap) {
    unsigned char *ix = NULL;
    size_t isz;
    FILE *f = NULL;
    lms_status st = lms_read_file(idx, &ix, &isz);
    if (st != LMS_OK) return st;
    if (isz < 34 || memcmp(ix, MMIDX_MAGIC, 9) != 0) {
        st = lms_errorf(LMS_ERR_FORMAT, "Megatron index '%s' (of data '%s') has a bad magic number (expected "
                        "'MMIDIDX\\0\\0')%s", idx, bin, isz < 34 ? " or is truncated" : "");
        goto fail;
    }
    uint64_t version = rd64(ix + 9), S = rd64(ix + 18), D = rd64(ix + 26);
    int code = ix[17];
    if (version != 1) {
        st = lms_errorf(LMS_ERR_FORMAT, "Megatron index '%s' has version %llu; lmscale reads version 1", idx,
                        (unsigned long long)version);
        goto fail;
    }
    /* DType codes: uint8 1, int8 2, int16 3, int32 4, int64 5, float64 6, float32 7, uint16 8 */
    int width = 0, sign = 1;
    switch (code) {
    case 1: width = 1; sign = 0; break;
    case 2: width = 1; break;
    case 3: width = 2; break;
    case 4: width = 4; break;
    case 5: width = 8; break;
    case 8: width = 2; sign = 0; break;
    default:
        st = lms_errorf(LMS_ERR_FORMAT, "Megatron index '%s' has dtype code %d, which is not an integer token "
                        "type (1-5 or 8)", idx, code);
        goto fail;
    }
    if (S > (isz - 34) / 12 || D > (isz - 34 - 12 * S) / 8 || isz != 34 + 12 * S + 8 * D) {
        st = lms_errorf(LMS_ERR_FORMAT, "Megatron index '%s' has %zu bytes but its header says %llu sequences and "
                        "%llu document indices (%llu bytes): the file is truncated or damaged", idx, isz,
                        (unsigned long long)S, (unsigned long long)D,
                        (unsigned long long)(34 + 12 * S + 8 * D));
        goto fail;
    }
    const unsigned char *sizes = ix + 34, *ptrs = sizes + 4 * S, *docs = ptrs + 8 * S;
    uint64_t total = 0;
    for (uint64_t i = 0; i < S; i++) {
        int32_t len = (int32_t)rd32(sizes + 4 * i);
        uint64_t p = rd64(ptrs + 8 * i);
        if (len < 0 || p != total * (uint64_t)width) {
            st = lms_errorf(LMS_ERR_FORMAT, "Megatron index '%s': sequence %llu has size %d at byte %llu, "
                            "expected byte %llu (sequences must be stored in order, back to back)", idx,
                            (unsigned long long)i, len, (unsigned long long)p,
                            (unsigned long long)(total * (uint64_t)width));
            goto fail;
        }
        total += (uint64_t)len;
    }
    for (uint64_t i = 0; i < D; i++) {
        uint64_t d = rd64(docs + 8 * i);
        if (d > S || (i > 0 && d < rd64(docs + 8 * (i - 1))) || (i == 0 && d != 0)) {
            st = lms_errorf(LMS_ERR_FORMAT, "Megatron index '%s': document index %llu (%llu) is out of order or "
                            "past the %llu sequences", idx, (unsigned long long)i, (unsigned long long)d,
                            (unsigned long long)S);
            goto fail;
        }
    }
    uint64_t bsz;
    st = lms_fopen_regular(bin, &f);
    if (st != LMS_OK) {
        lms_error_context(st, "the data file of Megatron index '%s' (both files are needed)", idx);
        goto fail;
    }
    if (file_size(f, &bsz) != 0) {
        st = lms_errorf(LMS_ERR_IO, "cannot read '%s', the data file of Megatron index '%s' (both files are "
                        "needed)", bin, idx);
        goto fail;
    }
    if (bsz != total * (uint64_t)width) {
        st = lms_errorf(LMS_ERR_FORMAT, "Megatron data '%s' has %llu bytes but its index '%s' says %llu tokens "
                        "(%llu bytes): the file is %s", bin, (unsigned long long)bsz, idx,
                        (unsigned long long)total, (unsigned long long)(total * (uint64_t)width),
                        bsz < total * (uint64_t)width ? "truncated" : "damaged or from another index");
        goto fail;
    }
    st = read_ids(f, total, width, sign, out, cap, NULL, bin);
fail:
    if (f) fclose(f);
    free(ix);
    return st;
}

static int exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0; /* never opened here: a FIFO would block */
}

/* The message lms_read_file gives for PATH (cannot open, not a regular
 * file), else "WHAT 'PATH'". */
static lms_status read_error(const char *path, const char *what) {
    unsigned char *d;
    size_t n;
    lms_status st = lms_read_file(path, &d, &n);
    if (st != LMS_OK) return st;
    free(d);
    return lms_errorf(LMS_ERR_IO, "%s '%s'", what, path);
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* One file (or Megatron pair), appended to out. */
static lms_status open_one(const char *path, const lms_tokenizer *tok, lms_tokens *out, size_t *cap) {
    char idx[4096], bin[4096];
    size_t len = strlen(path);
    if (len + 5 > sizeof idx) return lms_errorf(LMS_ERR_INVALID_ARG, "data path too long: '%s'", path);
    /* Megatron: PATH.idx, or PATH itself (.idx), or PATH.bin's sibling .idx */
    FILE *f = NULL;
    if (!exists(path)) {
        snprintf(idx, sizeof idx, "%s.idx", path);
        snprintf(bin, sizeof bin, "%s.bin", path);
        if (exists(idx)) return open_megatron(idx, bin, out, cap);
        return read_error(path, "cannot open data file");
    }
    LMS_CHECK(lms_fopen_regular(path, &f)); /* a FIFO or device is refused, without blocking */
    unsigned char h[8] = {0};
    size_t got = fread(h, 1, 8, f);
    uint64_t size;
    if (file_size(f, &size) != 0) {
        fclose(f); /* a directory, on some file systems (tmpfs) */
        return read_error(path, "cannot seek in data file");
    }
    lms_status st;
    if (got == 8 && memcmp(h, LMSTOK_MAGIC, 8) == 0) {
        st = open_lmstok(f, size, path, out, cap);
    } else if (got >= 6 && memcmp(h, "LMSTOK", 6) == 0) {
        st = open_lmstok(f, size, path, out, cap); /* reports the bad magic */
    } else if (got >= 4 && rd32(h) == LLMC_MAGIC) {
        st = open_llmc(f, size, path, out, cap);
    } else if (got == 8 && memcmp(h, MMIDX_MAGIC, 8) == 0) {
        fclose(f);
        snprintf(idx, sizeof idx, "%s", path);
        snprintf(bin, sizeof bin, "%.*s.bin", (int)(ends_with(path, ".idx") ? len - 4 : len), path);
        return open_megatron(idx, bin, out, cap);
    } else {
        fclose(f);
        snprintf(idx, sizeof idx, "%.*s.idx", (int)(ends_with(path, ".bin") ? len - 4 : len), path);
        if (ends_with(path, ".bin") && exists(idx)) return open_megatron(idx, path, out, cap);
        lms_tokens t;
        st = lms_tokens_load(path, tok, &t);
        if (st != LMS_OK) return st;
        st = reserve(out, t.n, cap, path);
        if (st == LMS_OK) {
            memcpy(out->tokens + out->n, t.tokens, t.n * sizeof *t.tokens);
            out->n += t.n;
            if (t.max_id > out->max_id) out->max_id = t.max_id;
        }
        lms_tokens_free(&t);
        return st;
    }
    fclose(f);
    return st;
}

lms_status lms_tokens_open_role(const char *paths, const lms_tokenizer *tok, lms_data_role role, lms_tokens *out) {
    memset(out, 0, sizeof *out);
    size_t cap = 0;
    char **files;
    int nfiles;
    LMS_CHECK(lms_data_files(paths, role, &files, &nfiles));
    lms_status st = LMS_OK;
    for (int i = 0; st == LMS_OK && i < nfiles; i++) {
        size_t before = out->n;
        st = open_one(files[i], tok, out, &cap);
        if (st == LMS_OK && out->n == before)
            st = lms_errorf(LMS_ERR_FORMAT, "data file '%s' holds no tokens: give a file with data", files[i]);
    }
    lms_data_files_free(files, nfiles);
    if (st != LMS_OK) lms_tokens_free(out);
    return st;
}

lms_status lms_tokens_open(const char *paths, const lms_tokenizer *tok, lms_tokens *out) {
    return lms_tokens_open_role(paths, tok, LMS_DATA_TRAIN, out);
}

/* ---- which files: comma lists, globs, directories ---- */

lms_status lms_data_probe(const char *path, lms_data_format *fmt, int *shard_tok) {
    *fmt = LMS_DATA_TEXT;
    *shard_tok = LMS_SHARD_TOK_UNRECORDED;
    char idx[4096];
    size_t len = strlen(path);
    if (len + 5 > sizeof idx) return lms_errorf(LMS_ERR_INVALID_ARG, "data path too long: '%s'", path);
    struct stat sb;
    if (stat(path, &sb) != 0) {
        snprintf(idx, sizeof idx, "%s.idx", path);
        if (exists(idx)) {
            *fmt = LMS_DATA_MEGATRON;
            return LMS_OK;
        }
        return read_error(path, "cannot open data file");
    }
    if (!S_ISREG(sb.st_mode)) return LMS_OK; /* not opened here (a FIFO would block): the reader refuses it */
    FILE *f = fopen(path, "rb");
    if (!f) return read_error(path, "cannot open data file");
    unsigned char h[LMSTOK_HEADER] = {0};
    size_t got = fread(h, 1, sizeof h, f);
    fclose(f);
    snprintf(idx, sizeof idx, "%.*s.idx", (int)(ends_with(path, ".bin") ? len - 4 : len), path);
    if (got >= 6 && memcmp(h, "LMSTOK", 6) == 0) {
        *fmt = LMS_DATA_LMSTOK;
        if (got == LMSTOK_HEADER) *shard_tok = (int)rd32(h + 28);
    } else if (got >= 4 && rd32(h) == LLMC_MAGIC) {
        *fmt = LMS_DATA_LLMC;
    } else if ((got >= 8 && memcmp(h, MMIDX_MAGIC, 8) == 0) || (ends_with(path, ".bin") && exists(idx))) {
        *fmt = LMS_DATA_MEGATRON;
    }
    return LMS_OK;
}

typedef struct {
    char **v;
    int n, cap;
} strlist;

static lms_status push(strlist *l, const char *s, size_t len) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        char **v = realloc(l->v, sizeof *v * (size_t)cap);
        if (!v) return lms_errorf(LMS_ERR_OOM, "out of memory listing data files");
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n] = strndup(s, len);
    if (!l->v[l->n]) return lms_errorf(LMS_ERR_OOM, "out of memory listing data files");
    l->n++;
    return LMS_OK;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The token shards of directory dir for role. */
static lms_status dir_files(const char *dir, lms_data_role role, strlist *out) {
    char path[4096];
    const char *own = role == LMS_DATA_VAL ? "val.bin" : "train.bin";
    snprintf(path, sizeof path, "%s/%s", dir, own);
    if (exists(path)) return push(out, path, strlen(path));
    DIR *d = opendir(dir);
    if (!d) return lms_errorf(LMS_ERR_IO, "cannot read directory '%s': %s", dir, strerror(errno));
    strlist names = {0};
    lms_status st = LMS_OK;
    for (struct dirent *e; st == LMS_OK && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        size_t nl = strlen(e->d_name);
        int is_val = strstr(e->d_name, "val") != NULL;
        if (is_val != (role == LMS_DATA_VAL)) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        lms_data_format fmt;
        int tk;
        if (ends_with(e->d_name, ".idx")) { /* a Megatron pair: its prefix */
            if (lms_data_probe(path, &fmt, &tk) == LMS_OK && fmt == LMS_DATA_MEGATRON)
                st = push(&names, path, strlen(path) - 4);
            continue;
        }
        if (ends_with(e->d_name, ".bin") && nl > 4) {
            char idx[4096];
            snprintf(idx, sizeof idx, "%.*s.idx", (int)(strlen(path) - 4), path);
            if (exists(idx)) continue; /* counted with its .idx */
        }
        if (lms_data_probe(path, &fmt, &tk) == LMS_OK && fmt != LMS_DATA_TEXT) st = push(&names, path, strlen(path));
    }
    closedir(d);
    if (st == LMS_OK && names.n == 0)
        st = lms_errorf(LMS_ERR_INVALID_ARG, "directory '%s' holds no %s token shards (%s, or shards whose name %s "
                        "\"val\"; text files are not taken from a directory: name them)", dir,
                        role == LMS_DATA_VAL ? "validation" : "training", own,
                        role == LMS_DATA_VAL ? "contains" : "lacks");
    if (st == LMS_OK) qsort(names.v, (size_t)names.n, sizeof *names.v, cmp_str);
    for (int i = 0; i < names.n; i++) {
        if (st == LMS_OK) st = push(out, names.v[i], strlen(names.v[i]));
        free(names.v[i]);
    }
    free(names.v);
    return st;
}

static lms_status expand(const char *item, lms_data_role role, strlist *out) {
    struct stat sb;
    if (stat(item, &sb) == 0 && S_ISDIR(sb.st_mode)) return dir_files(item, role, out);
    if (stat(item, &sb) != 0 && strpbrk(item, "*?[")) {
        glob_t g;
        int rc = glob(item, 0, NULL, &g);
        if (rc == GLOB_NOMATCH || (rc == 0 && g.gl_pathc == 0)) {
            if (rc == 0) globfree(&g);
            return lms_errorf(LMS_ERR_INVALID_ARG, "data pattern '%s' matches no file (check the path; quote the "
                              "pattern so that lmscale, not the shell, expands it)", item);
        }
        if (rc != 0) return lms_errorf(LMS_ERR_IO, "cannot expand the data pattern '%s'", item);
        lms_status st = LMS_OK;
        for (size_t i = 0; st == LMS_OK && i < g.gl_pathc; i++) st = push(out, g.gl_pathv[i], strlen(g.gl_pathv[i]));
        globfree(&g);
        return st;
    }
    return push(out, item, strlen(item));
}

lms_status lms_data_files(const char *paths, lms_data_role role, char ***files, int *n) {
    *files = NULL;
    *n = 0;
    strlist l = {0};
    lms_status st = LMS_OK;
    const char *s = paths ? paths : "";
    while (st == LMS_OK && *s) {
        const char *c = strchr(s, ',');
        size_t len = c ? (size_t)(c - s) : strlen(s);
        if (len) {
            char *item = strndup(s, len);
            st = item ? expand(item, role, &l) : lms_errorf(LMS_ERR_OOM, "out of memory");
            free(item);
        }
        s += len + (c != NULL);
    }
    if (st == LMS_OK && l.n == 0)
        st = lms_errorf(LMS_ERR_INVALID_ARG, "no data file given (a file, a comma list, a directory or a glob)");
    if (st != LMS_OK) {
        lms_data_files_free(l.v, l.n);
        return st;
    }
    *files = l.v;
    *n = l.n;
    return LMS_OK;
}

void lms_data_files_free(char **files, int n) {
    for (int i = 0; i < n; i++) free(files[i]);
    free(files);
}

/* ---- writer ---- */

static void shard_header(unsigned char *h, int width, uint64_t n, uint32_t crc, uint32_t tokenizer) {
    memset(h, 0, LMSTOK_HEADER);
    memcpy(h, LMSTOK_MAGIC, 8);
    wr32(h + 8, 1);
    wr32(h + 12, (uint32_t)width);
    wr64(h + 16, n);
    wr32(h + 24, crc);
    wr32(h + 28, tokenizer);
}

lms_status lms_shard_writer_open(lms_shard_writer *w, const char *path, int width) {
    memset(w, 0, sizeof *w);
    LMS_ASSERT(width == 2 || width == 4);
    w->width = width;
    LMS_CHECK(lms_atomic_open(&w->af, path));
    unsigned char h[LMSTOK_HEADER];
    shard_header(h, width, 0, 0, 0);
    lms_status st = lms_atomic_write(&w->af, h, sizeof h);
    if (st != LMS_OK) lms_atomic_abort(&w->af);
    return st;
}

lms_status lms_shard_writer_append(lms_shard_writer *w, const int32_t *ids, size_t n) {
    unsigned char buf[65536];
    size_t per = sizeof buf / (size_t)w->width;
    for (size_t i = 0; i < n; i += per) {
        size_t k = n - i < per ? n - i : per;
        for (size_t j = 0; j < k; j++) {
            int32_t v = ids[i + j];
            if (v < 0 || (w->width == 2 && v > 65535))
                return lms_errorf(LMS_ERR_INVALID_ARG, "token id %d does not fit a %d-byte shard", v, w->width);
            if (w->width == 2) {
                buf[2 * j] = (unsigned char)v;
                buf[2 * j + 1] = (unsigned char)(v >> 8);
            } else {
                wr32(buf + 4 * j, (uint32_t)v);
            }
        }
        w->crc = lms_crc32(w->crc, buf, k * (size_t)w->width);
        LMS_CHECK(lms_atomic_write(&w->af, buf, k * (size_t)w->width));
    }
    w->n += n;
    return LMS_OK;
}

lms_status lms_shard_writer_commit(lms_shard_writer *w) {
    unsigned char h[LMSTOK_HEADER];
    shard_header(h, w->width, w->n, w->crc, w->tokenizer);
    if (fflush(w->af.f) != 0 || fseek(w->af.f, 0, SEEK_SET) != 0) {
        lms_atomic_abort(&w->af);
        return lms_errorf(LMS_ERR_IO, "cannot rewrite the header of '%s' (disk full?)", w->af.path);
    }
    lms_status st = lms_atomic_write(&w->af, h, sizeof h);
    if (st == LMS_OK && fseek(w->af.f, 0, SEEK_END) != 0)
        st = lms_errorf(LMS_ERR_IO, "cannot seek in '%s'", w->af.path);
    if (st != LMS_OK) {
        lms_atomic_abort(&w->af);
        return st;
    }
    return lms_atomic_commit(&w->af);
}

void lms_shard_writer_abort(lms_shard_writer *w) {
    if (w->af.f) lms_atomic_abort(&w->af);
}
