/* Hugging Face interop: config.json (GPT2LMHeadModel) and model.safetensors
 * in transformers' GPT-2 names, written and read by our own code.
 *
 * safetensors: u64 little-endian header length N, N bytes of JSON
 * {"__metadata__": {...}, name: {"dtype", "shape", "data_offsets": [b, e]}}
 * padded with spaces so the data starts 8-byte aligned, then the data; byte
 * offsets are relative to the data start, tensors follow one another with
 * no gaps. We write names sorted (all F32, so that is the reference
 * writer's order). Conv1D weights are (in, out): ours (out, in) are
 * transposed both ways. wte is stored with V rows; the tied LM head is not
 * stored (lm_head.weight is ignored when present). */
#define _POSIX_C_SOURCE 200809L
#include "lmscale/obs.h"
#include "ckpt_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    char hf[96];        /* transformers name */
    int view;           /* index into the layout */
    int transpose;      /* Conv1D weight */
    int64_t shape[2];   /* HF shape */
    int ndim;
} hf_entry;

/* HF names and shapes for cfg's layout, sorted by name. */
static lms_status hf_entries(const lms_gpt_config *cfg, hf_entry **out, int *n, lms_tensor_view **views) {
    int nv;
    size_t np;
    LMS_CHECK(lms_gpt_layout(cfg, views, &nv, &np));
    hf_entry *e = calloc((size_t)nv, sizeof *e);
    if (!e) {
        free(*views);
        return lms_errorf(LMS_ERR_OOM, "out of memory");
    }
    for (int i = 0; i < nv; i++) { /* from the tensor table: HF name, Conv1D transpose, unpadded rows */
        const lms_tensor_view *v = &(*views)[i];
        lms_gpt_hf_name(v, e[i].hf, sizeof e[i].hf);
        e[i].view = i;
        e[i].ndim = v->ndim;
        e[i].transpose = v->spec->hf_transpose;
        e[i].shape[0] = e[i].transpose ? v->shape[1] : v->valid_rows;
        e[i].shape[1] = e[i].transpose ? v->shape[0] : v->shape[1];
    }
    for (int i = 1; i < nv; i++) /* insertion sort by name */
        for (int j = i; j > 0 && strcmp(e[j].hf, e[j - 1].hf) < 0; j--) {
            hf_entry t = e[j];
            e[j] = e[j - 1];
            e[j - 1] = t;
        }
    *out = e;
    *n = nv;
    return LMS_OK;
}

static size_t entry_numel(const hf_entry *e) {
    return (size_t)e->shape[0] * (size_t)(e->ndim > 1 ? e->shape[1] : 1);
}

/* A scratch buffer as large as the largest tensor (for transposes). */
static lms_status alloc_largest(const hf_entry *e, int n, float **tmp) {
    size_t maxn = 1;
    for (int i = 0; i < n; i++)
        if (entry_numel(&e[i]) > maxn) maxn = entry_numel(&e[i]);
    *tmp = malloc(sizeof(float) * maxn);
    return *tmp ? LMS_OK : lms_errorf(LMS_ERR_OOM, "out of memory for a %.1f MiB tensor buffer", maxn * 4.0 / 1048576);
}

/* config.json written to its temporary name and synced, not yet renamed:
 * the caller commits it after model.safetensors, so a failure (a full disk)
 * never leaves a config.json without its weights. */
static lms_status config_open(const char *dir, const lms_gpt_config *c, const char *torch_dtype, lms_atomic_file *af) {
    char *path = ckpt_join(dir, "config.json");
    if (!path) return lms_errorf(LMS_ERR_OOM, "out of memory");
    char buf[1024];
    int n = snprintf(buf, sizeof buf,
                     "{\n  \"architectures\": [\"GPT2LMHeadModel\"],\n  \"model_type\": \"gpt2\",\n"
                     "  \"n_embd\": %d,\n  \"n_head\": %d,\n  \"n_layer\": %d,\n  \"n_positions\": %d,\n"
                     "  \"n_ctx\": %d,\n  \"vocab_size\": %d,\n  \"n_inner\": null,\n"
                     "  \"layer_norm_epsilon\": 1e-05,\n  \"activation_function\": \"gelu_new\",\n"
                     "  \"tie_word_embeddings\": true,\n  \"bos_token_id\": %d,\n  \"eos_token_id\": %d,\n"
                     "  \"resid_pdrop\": 0.0,\n  \"embd_pdrop\": 0.0,\n  \"attn_pdrop\": 0.0,\n"
                     "  \"initializer_range\": 0.02,\n  \"torch_dtype\": \"%s\"\n}\n",
                     c->C, c->NH, c->L, c->maxT, c->maxT, c->V, c->V - 1, c->V - 1, torch_dtype);
    lms_status st = lms_atomic_open(af, path);
    free(path);
    LMS_CHECK(st);
    st = lms_atomic_write(af, buf, (size_t)n);
    if (st == LMS_OK && (fflush(af->f) != 0 || fsync(fileno(af->f)) != 0))
        st = lms_errorf(LMS_ERR_IO, "cannot write '%s': %s (disk full?)", af->tmp_path, strerror(errno));
    if (st != LMS_OK) lms_atomic_abort(af);
    return st;
}

lms_status lms_hf_export(const char *dir, const lms_gpt_config *cfg, const float *params) {
    return lms_hf_export_dtype(dir, cfg, params, LMS_DT_F32);
}

lms_status lms_hf_export_dtype(const char *dir, const lms_gpt_config *cfg, const float *params, lms_dtype dt) {
    if (dt != LMS_DT_F32 && dt != LMS_DT_BF16 && dt != LMS_DT_F16)
        return lms_errorf(LMS_ERR_INVALID_ARG, "export --dtype %s: choose fp32, bf16 or fp16", lms_dtype_name(dt));
    const char *st_name = dt == LMS_DT_F32 ? "F32" : dt == LMS_DT_BF16 ? "BF16" : "F16";
    const size_t esz = dt == LMS_DT_F32 ? 4 : 2;
    LMS_CHECK(lms_mkdirs(dir));
    lms_atomic_file caf = {0};
    LMS_CHECK(config_open(dir, cfg, dt == LMS_DT_F32 ? "float32" : dt == LMS_DT_BF16 ? "bfloat16" : "float16", &caf));
    hf_entry *e;
    int n;
    lms_tensor_view *views;
    lms_status hs = hf_entries(cfg, &e, &n, &views);
    if (hs != LMS_OK) {
        lms_atomic_abort(&caf);
        return hs;
    }
    lms_status st = LMS_OK;
    char *path = ckpt_join(dir, "model.safetensors"), *hdr = NULL;
    float *tmp = NULL;
    uint16_t *h16 = NULL;
    lms_atomic_file af = {0};
    lms_progress prog = {0};
    size_t cap = 256 + (size_t)n * 160, len = 0, off = 0, written = 0;
    hdr = malloc(cap);
    if (!path || !hdr) {
        st = lms_errorf(LMS_ERR_OOM, "out of memory");
        goto fail;
    }
    len += (size_t)snprintf(hdr + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < n; i++) {
        size_t bytes = entry_numel(&e[i]) * esz;
        if (e[i].ndim == 2)
            len += (size_t)snprintf(hdr + len, cap - len, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld,%lld],"
                                    "\"data_offsets\":[%zu,%zu]}", e[i].hf, st_name, (long long)e[i].shape[0],
                                    (long long)e[i].shape[1], off, off + bytes);
        else
            len += (size_t)snprintf(hdr + len, cap - len, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld],"
                                    "\"data_offsets\":[%zu,%zu]}", e[i].hf, st_name, (long long)e[i].shape[0],
                                    off, off + bytes);
        off += bytes;
    }
    len += (size_t)snprintf(hdr + len, cap - len, "}");
    while ((8 + len) % 8) hdr[len++] = ' '; /* data starts 8-byte aligned */
    uint64_t hlen = len;
    LMS_TRY(lms_atomic_open(&af, path));
    LMS_TRY(lms_atomic_write(&af, &hlen, 8));
    LMS_TRY(lms_atomic_write(&af, hdr, len));
    LMS_TRY(alloc_largest(e, n, &tmp));
    if (dt != LMS_DT_F32) LMS_TRY(alloc_largest(e, n, (float **)&h16));
    lms_progress_begin(&prog, "export", (double)off / 1e6, "MB", 1); /* shown for exports that take a while */
    for (int i = 0; i < n; i++) {
        const lms_tensor_view *v = &views[e[i].view];
        const float *src = params + v->offset;
        size_t ne = entry_numel(&e[i]);
        lms_progress_update(&prog, (double)written / 1e6);
        written += ne * esz;
        if (e[i].transpose) {
            int R = v->shape[0], Cc = v->shape[1]; /* ours (out=R, in=Cc) -> (in, out) */
            for (int r = 0; r < R; r++)
                for (int c = 0; c < Cc; c++) tmp[(size_t)c * R + r] = src[(size_t)r * Cc + c];
            src = tmp;
        }
        if (dt != LMS_DT_F32) { /* round to nearest even */
            if (dt == LMS_DT_BF16)
                lms_fp32_to_bf16_n(h16, src, ne);
            else
                lms_fp32_to_fp16_n(h16, src, ne);
            src = (const float *)(const void *)h16;
        }
        LMS_TRY(lms_atomic_write(&af, src, ne * esz));
    }
    st = lms_atomic_commit(&af); /* the weights first, then their config */
    af.f = NULL;
    if (st == LMS_OK) st = lms_atomic_commit(&caf);
    caf.f = NULL;
    if (st == LMS_OK) {
        lms_progress_update(&prog, (double)written / 1e6);
        lms_progress_end(&prog);
    }
fail:
    lms_progress_abort(&prog);
    if (af.f) lms_atomic_abort(&af);
    if (caf.f) lms_atomic_abort(&caf);
    free(tmp);
    free(h16);
    free(hdr);
    free(path);
    free(e);
    free(views);
    return st;
}

lms_status lms_hf_read_config(const char *dir, lms_gpt_config *cfg) {
    char *path = ckpt_join(dir, "config.json");
    if (!path) return lms_errorf(LMS_ERR_OOM, "out of memory");
    lms_json *j = NULL;
    lms_status st = ckpt_read_json(path, &j);
    if (st != LMS_OK) {
        lms_error_context(st, "--init '%s' (a Hugging Face GPT-2 directory needs config.json)", dir);
        free(path);
        return st;
    }
    const char *keys[5] = {"n_layer", "n_head", "n_embd", "n_positions", "vocab_size"};
    int v[5];
    for (int k = 0; k < 5; k++) {
        const lms_json *x = lms_json_get(j, keys[k]);
        if (!x && k == 3) x = lms_json_get(j, "n_ctx");
        int64_t iv;
        if (!lms_json_int(x, 1, 1000000000, &iv)) {
            st = lms_errorf(LMS_ERR_FORMAT, "'%s': \"%s\" is missing or not a positive integer (a GPT-2 "
                            "config.json needs n_layer, n_head, n_embd, n_positions, vocab_size)", path, keys[k]);
            goto done;
        }
        v[k] = (int)iv;
    }
    const lms_json *mt = lms_json_get(j, "model_type");
    if (mt && (mt->type != LMS_JSON_STRING || strcmp(mt->str, "gpt2"))) {
        st = lms_errorf(LMS_ERR_UNSUPPORTED, "'%s': model_type is not \"gpt2\"; lmscale loads GPT-2 models only", path);
        goto done;
    }
    const lms_json *af = lms_json_get(j, "activation_function");
    if (af && (af->type != LMS_JSON_STRING || (strcmp(af->str, "gelu_new") && strcmp(af->str, "gelu_pytorch_tanh")))) {
        st = lms_errorf(LMS_ERR_UNSUPPORTED, "'%s': activation_function must be \"gelu_new\" (GELU, tanh "
                        "approximation), the only one lmscale implements", path);
        goto done;
    }
    const lms_json *eps = lms_json_get(j, "layer_norm_epsilon");
    if (eps && (eps->type != LMS_JSON_NUMBER || eps->number != 1e-5)) {
        st = lms_errorf(LMS_ERR_UNSUPPORTED, "'%s': layer_norm_epsilon must be 1e-05 (lmscale's LayerNorm)", path);
        goto done;
    }
    const lms_json *ni = lms_json_get(j, "n_inner");
    int64_t inner;
    if (ni && ni->type != LMS_JSON_NULL && !(lms_json_int(ni, 0, INT64_MAX, &inner) && inner == 4 * (int64_t)v[2])) {
        st = lms_errorf(LMS_ERR_UNSUPPORTED, "'%s': n_inner must be null or 4·n_embd", path);
        goto done;
    }
    memset(cfg, 0, sizeof *cfg);
    cfg->L = v[0];
    cfg->NH = v[1];
    cfg->C = v[2];
    cfg->maxT = v[3];
    cfg->V = v[4];
    st = lms_gpt_config_validate(cfg);
    if (st != LMS_OK) lms_error_context(st, "'%s'", path);
done:
    lms_json_free(j);
    free(path);
    return st;
}

/* bytes per element of a safetensors dtype; 0 when unknown */
static uint64_t dtype_bytes(const char *d) {
    static const struct {
        const char *name;
        unsigned bytes;
    } T[] = {{"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1},
             {"U64", 8}, {"U32", 4}, {"U16", 2}, {"U8", 1}, {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++)
        if (!strcmp(d, T[i].name)) return T[i].bytes;
    return 0;
}

typedef struct {
    uint64_t b, e;
    const char *name;
} byte_range;

static int cmp_range(const void *a, const void *b) {
    const byte_range *x = a, *y = b;
    return x->b < y->b ? -1 : x->b > y->b;
}

/* Every entry of a safetensors header (but __metadata__) is an object with a
 * string dtype, an integer shape and data_offsets [b, e] (an array of two
 * integers, b <= e <= data_len, e - b = numel * dtype size when the dtype is
 * known); no two tensors share a byte. Duplicate names were refused by the
 * JSON parser. */
static lms_status check_header(const lms_json *h, const char *path, uint64_t data_len) {
    if (h->type != LMS_JSON_OBJECT)
        return lms_errorf(LMS_ERR_FORMAT, "'%s': the safetensors header is not a JSON object: the file is corrupt",
                          path);
    byte_range *r = calloc(h->count ? h->count : 1, sizeof *r);
    if (!r) return lms_errorf(LMS_ERR_OOM, "out of memory");
    size_t n = 0;
    lms_status st = LMS_OK;
    for (const lms_json *t = h->child; t && st == LMS_OK; t = t->next) {
        if (!strcmp(t->key, "__metadata__")) continue;
        const lms_json *dt = lms_json_get(t, "dtype"), *sh = lms_json_get(t, "shape"),
                       *of = lms_json_get(t, "data_offsets");
        int64_t b0 = 0, b1 = 0, d;
        uint64_t numel = 1, bytes;
        int ok = dt && dt->type == LMS_JSON_STRING && sh && sh->type == LMS_JSON_ARRAY && of &&
                 of->type == LMS_JSON_ARRAY && of->count == 2 && lms_json_int(lms_json_at(of, 0), 0, INT64_MAX, &b0) &&
                 lms_json_int(lms_json_at(of, 1), 0, INT64_MAX, &b1) && b0 <= b1 && (uint64_t)b1 <= data_len;
        for (const lms_json *x = ok ? sh->child : NULL; x && ok; x = x->next)
            ok = lms_json_int(x, 0, INT64_MAX, &d) && !lms_mul_overflow(numel, (uint64_t)d, &numel);
        if (!ok) {
            st = lms_errorf(LMS_ERR_FORMAT, "'%s': tensor \"%.*s\" needs \"dtype\" (a string), \"shape\" (an array "
                            "of integers) and \"data_offsets\" (an array [begin, end] of integers within the %llu "
                            "data bytes): the file is corrupt or truncated", path, (int)(t->key_len < 80 ? t->key_len : 80),
                            t->key, (unsigned long long)data_len);
            break;
        }
        uint64_t size = dtype_bytes(dt->str);
        if (size && (lms_mul_overflow(numel, size, &bytes) || bytes != (uint64_t)(b1 - b0))) {
            st = lms_errorf(LMS_ERR_FORMAT, "'%s': tensor \"%.*s\" has data_offsets [%lld, %lld] (%lld bytes), but "
                            "its shape and dtype %s need %llu%s bytes: the file is corrupt", path,
                            (int)(t->key_len < 80 ? t->key_len : 80), t->key, (long long)b0, (long long)b1,
                            (long long)(b1 - b0), dt->str, (unsigned long long)(lms_mul_overflow(numel, size, &bytes) ? 0 : bytes),
                            lms_mul_overflow(numel, size, &bytes) ? " (overflowing)" : "");
            break;
        }
        r[n++] = (byte_range){(uint64_t)b0, (uint64_t)b1, t->key};
    }
    qsort(r, n, sizeof *r, cmp_range);
    for (size_t i = 1; i < n && st == LMS_OK; i++)
        if (r[i].b < r[i - 1].e)
            st = lms_errorf(LMS_ERR_FORMAT, "'%s': tensors \"%s\" and \"%s\" overlap (bytes %llu..%llu and "
                            "%llu..%llu): the file is corrupt", path, r[i - 1].name, r[i].name,
                            (unsigned long long)r[i - 1].b, (unsigned long long)r[i - 1].e, (unsigned long long)r[i].b,
                            (unsigned long long)r[i].e);
    free(r);
    return st;
}

lms_status lms_hf_load_params(const char *dir, const lms_gpt_config *cfg, float *params) {
    char *path = ckpt_join(dir, "model.safetensors");
    if (!path) return lms_errorf(LMS_ERR_OOM, "out of memory");
    lms_status st = LMS_OK;
    hf_entry *e = NULL;
    lms_tensor_view *views = NULL;
    lms_json *h = NULL;
    char *hdr = NULL;
    float *tmp = NULL;
    int n = 0;
    FILE *f = NULL;
    struct stat ls;
    if (stat(path, &ls) == 0) { /* there: open it only if it is a regular file (never blocks) */
        st = lms_fopen_regular(path, &f);
        if (st != LMS_OK) goto fail;
    } else {
        int err = errno;
        char *pt = ckpt_join(dir, "pytorch_model.bin"), *ix = ckpt_join(dir, "model.safetensors.index.json");
        struct stat ps;
        if (pt && stat(pt, &ps) == 0)
            st = lms_errorf(LMS_ERR_IO, "'%s' has pytorch_model.bin but no model.safetensors; lmscale reads only "
                            "safetensors (a pickle is not safe to load). Convert it once with: python3 -c "
                            "\"from transformers import GPT2LMHeadModel as M; M.from_pretrained('%s')."
                            "save_pretrained('%s', safe_serialization=True)\"", dir, dir, dir);
        else if (ix && stat(ix, &ps) == 0)
            st = lms_errorf(LMS_ERR_IO, "'%s' holds a sharded model (model.safetensors.index.json), which lmscale "
                            "does not read: save it as one file with: python3 -c \"from transformers "
                            "import GPT2LMHeadModel as M; M.from_pretrained('%s').save_pretrained('%s', "
                            "max_shard_size='1000GB')\"", dir, dir, dir);
        else
            st = lms_errorf(LMS_ERR_IO, "cannot open '%s': %s (--init needs a directory with config.json and "
                            "model.safetensors, e.g. from 'lmscale export --hf')", path, strerror(err));
        free(pt);
        free(ix);
        goto fail;
    }
    struct stat sb;
    uint64_t hlen = 0;
    if (fstat(fileno(f), &sb) != 0 || fread(&hlen, 8, 1, f) != 1 || hlen < 2 || hlen > 100000000ull ||
        8 + hlen > (uint64_t)sb.st_size) {
        st = lms_errorf(LMS_ERR_FORMAT, "'%s' is not a safetensors file (bad header length): the file is "
                        "corrupt or truncated", path);
        goto fail;
    }
    hdr = malloc(hlen);
    if (!hdr || fread(hdr, 1, hlen, f) != hlen) {
        st = lms_errorf(LMS_ERR_IO, "cannot read the header of '%s'", path);
        goto fail;
    }
    LMS_TRY(lms_json_parse(hdr, hlen, path, &h));
    uint64_t data_start = 8 + hlen, data_len = (uint64_t)sb.st_size - data_start;
    LMS_TRY(check_header(h, path, data_len));
    LMS_TRY(hf_entries(cfg, &e, &n, &views));
    LMS_TRY(alloc_largest(e, n, &tmp));
    for (int i = 0; i < n; i++) {
        char alt[128];
        snprintf(alt, sizeof alt, "transformer.%s", e[i].hf);
        const lms_json *t = lms_json_get(h, e[i].hf);
        if (!t) t = lms_json_get(h, alt);
        if (!t) {
            st = lms_errorf(LMS_ERR_FORMAT, "'%s' has no tensor \"%s\" (GPT-2 names as in transformers' "
                            "GPT2LMHeadModel, with or without \"transformer.\")", path, e[i].hf);
            goto fail;
        }
        const lms_json *dt = lms_json_get(t, "dtype"), *sh = lms_json_get(t, "shape"),
                       *of = lms_json_get(t, "data_offsets"); /* checked by check_header */
        const int is32 = dt && dt->type == LMS_JSON_STRING && !strcmp(dt->str, "F32");
        const int isbf = dt && dt->type == LMS_JSON_STRING && !strcmp(dt->str, "BF16");
        const int is16 = dt && dt->type == LMS_JSON_STRING && !strcmp(dt->str, "F16");
        if (!is32 && !isbf && !is16) {
            st = lms_errorf(LMS_ERR_UNSUPPORTED, "'%s': tensor \"%s\" has dtype %s; lmscale loads F32, BF16 and "
                            "F16 (convert the weights to one of them)", path, e[i].hf,
                            dt && dt->type == LMS_JSON_STRING ? dt->str : "(missing)");
            goto fail;
        }
        const size_t esz = is32 ? 4 : 2;
        int shape_ok = sh && sh->type == LMS_JSON_ARRAY && (int)sh->count == e[i].ndim;
        for (int d = 0; shape_ok && d < e[i].ndim; d++) {
            int64_t x;
            shape_ok = lms_json_int(lms_json_at(sh, (size_t)d), 0, INT64_MAX, &x) && x == e[i].shape[d];
        }
        if (!shape_ok) {
            char got[64] = "?";
            if (sh && sh->type == LMS_JSON_ARRAY && sh->count >= 1) {
                const lms_json *a = lms_json_at(sh, 0), *b = lms_json_at(sh, 1);
                if (b)
                    snprintf(got, sizeof got, "[%.0f, %.0f]", a->number, b->number);
                else
                    snprintf(got, sizeof got, "[%.0f]", a->number);
            }
            char want[64];
            if (e[i].ndim > 1)
                snprintf(want, sizeof want, "[%lld, %lld]", (long long)e[i].shape[0], (long long)e[i].shape[1]);
            else
                snprintf(want, sizeof want, "[%lld]", (long long)e[i].shape[0]);
            st = lms_errorf(LMS_ERR_FORMAT, "'%s': tensor \"%s\" has shape %s, config.json implies %s "
                            "(Conv1D weights are (in, out)): config.json and the weights do not match", path,
                            e[i].hf, got, want);
            goto fail;
        }
        size_t ne = entry_numel(&e[i]);
        int64_t b0, b1;
        lms_json_int(lms_json_at(of, 0), 0, INT64_MAX, &b0);
        lms_json_int(lms_json_at(of, 1), 0, INT64_MAX, &b1);
        if ((uint64_t)(b1 - b0) != ne * esz) {
            st = lms_errorf(LMS_ERR_FORMAT, "'%s': tensor \"%s\" has data_offsets [%lld, %lld], not %zu bytes: "
                            "the file is corrupt", path, e[i].hf, (long long)b0, (long long)b1, ne * esz);
            goto fail;
        }
        if (fseeko(f, (off_t)(data_start + (uint64_t)b0), SEEK_SET) != 0 || fread(tmp, esz, ne, f) != ne) {
            st = lms_errorf(LMS_ERR_IO, "cannot read tensor \"%s\" of '%s'", e[i].hf, path);
            goto fail;
        }
        if (!is32) { /* widen in place, from the end (2 bytes each into 4) */
            const uint16_t *h = (const uint16_t *)(void *)tmp;
            for (size_t k = ne; k-- > 0;) tmp[k] = isbf ? lms_bf16_to_fp32(h[k]) : lms_fp16_to_fp32(h[k]);
        }
        const lms_tensor_view *v = &views[e[i].view];
        float *dst = params + v->offset;
        if (e[i].transpose) {
            int R = v->shape[0], Cc = v->shape[1];
            for (int r = 0; r < R; r++)
                for (int c = 0; c < Cc; c++) dst[(size_t)r * Cc + c] = tmp[(size_t)c * R + r];
        } else {
            memcpy(dst, tmp, ne * sizeof(float));
            if (ne < v->numel) memset(dst + ne, 0, (v->numel - ne) * sizeof(float)); /* wte padding */
        }
    }
fail:
    if (f) fclose(f);
    lms_json_free(h);
    free(hdr);
    free(tmp);
    free(e);
    free(views);
    free(path);
    return st;
}

lms_status lms_hf_load_tokenizer(const char *dir, lms_tokenizer *tok, int *loaded) {
    *loaded = 0;
    char *vj = ckpt_join(dir, "vocab.json"), *mt = ckpt_join(dir, "merges.txt");
    if (!vj || !mt) {
        free(vj);
        free(mt);
        return lms_errorf(LMS_ERR_OOM, "out of memory");
    }
    struct stat a, b;
    int hv = stat(vj, &a) == 0, hm = stat(mt, &b) == 0;
    lms_status st = LMS_OK;
    if (hv && hm) {
        st = lms_tokenizer_load_bpe(tok, vj, mt);
        if (st != LMS_OK)
            lms_error_context(st, "--init '%s' has vocab.json and merges.txt, but the BPE tokenizer could "
                              "not be loaded (remove them to use byte tokens)", dir);
        else
            *loaded = 1;
    } else if (hv != hm) {
        st = lms_errorf(LMS_ERR_IO, "--init '%s' has %s but not %s: a GPT-2 tokenizer needs both", dir,
                        hv ? "vocab.json" : "merges.txt", hv ? "merges.txt" : "vocab.json");
    }
    free(vj);
    free(mt);
    return st;
}
