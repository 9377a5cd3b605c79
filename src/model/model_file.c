/* Model files: config + weights, for `eval` and `generate` to load what
 * `train --save-model` wrote. Format (little-endian), documented in
 * docs/formats.md:
 *   char[8] "LMSMODEL" | u32 version (1) | u32 tokenizer kind
 *   i32 L, NH, C, maxT, V, Vp | u64 num_params | u32 crc32(params) | u32 0
 *   f32[num_params] params (flat layout of docs/model.md)
 * Written atomically; the reader checks magic, version, sizes and CRC. */
#include "lmscale/model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MODEL_MAGIC "LMSMODEL"
#define MODEL_VERSION 1u
#define HEADER_BYTES 48

lms_status lms_model_save(const char *path, const lms_gpt *m, int tokenizer_kind) {
    unsigned char h[HEADER_BYTES] = {0};
    const lms_gpt_config *c = &m->cfg;
    if (m->part || !m->params)
        return lms_errorf(LMS_ERR_INVALID_ARG, "model file %s: the model holds only part of its parameters (a "
                          "pipeline stage's): gather the whole model first (lms_trainer_gather_model)", path);
    uint32_t ver = MODEL_VERSION, tok = (uint32_t)tokenizer_kind;
    int32_t dims[6] = {c->L, c->NH, c->C, c->maxT, c->V, c->Vp};
    uint64_t np = m->num_params;
    uint32_t crc = lms_crc32(0, m->params, m->num_params * sizeof(float));
    memcpy(h, MODEL_MAGIC, 8);
    memcpy(h + 8, &ver, 4);
    memcpy(h + 12, &tok, 4);
    memcpy(h + 16, dims, sizeof dims);
    memcpy(h + 40, &np, 8);
    lms_atomic_file af;
    LMS_CHECK(lms_atomic_open(&af, path));
    lms_status st = lms_atomic_write(&af, h, HEADER_BYTES);
    if (st == LMS_OK) st = lms_atomic_write(&af, &crc, 4);
    uint32_t zero = 0;
    if (st == LMS_OK) st = lms_atomic_write(&af, &zero, 4);
    if (st == LMS_OK) st = lms_atomic_write(&af, m->params, m->num_params * sizeof(float));
    if (st != LMS_OK) {
        lms_atomic_abort(&af);
        return st;
    }
    return lms_atomic_commit(&af);
}

lms_status lms_model_load(const char *path, lms_gpt *m, int B, int T, int with_grads,
                          int *tokenizer_kind) {
    /* Header and size are checked before anything big is allocated, and the
     * weights are read straight into the model (no second copy). */
    lms_status st = LMS_OK;
    memset(m, 0, sizeof *m);
    FILE *f = NULL;
    st = lms_fopen_regular(path, &f); /* a FIFO or device is refused, without blocking */
    if (st != LMS_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", lms_last_error());
        return lms_errorf(st, "cannot open model file '%s': %s", path, msg);
    }
    struct stat sb;
    unsigned char h[HEADER_BYTES + 8];
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = lms_errorf(LMS_ERR_IO, "'%s' is not a regular file (give a model file written by 'lmscale "
                        "train --save-model')", path);
        goto fail;
    }
    size_t size = (size_t)sb.st_size;
    if (size < sizeof h || fread(h, 1, sizeof h, f) != sizeof h || memcmp(h, MODEL_MAGIC, 8) != 0) {
        st = lms_errorf(LMS_ERR_FORMAT, "'%s' is not an lmscale model file (bad magic or too short); "
                        "give a file written by 'lmscale train --save-model'", path);
        goto fail;
    }
    uint32_t ver, tok, crc;
    int32_t d[6];
    uint64_t np;
    memcpy(&ver, h + 8, 4);
    memcpy(&tok, h + 12, 4);
    memcpy(d, h + 16, sizeof d);
    memcpy(&np, h + 40, 8);
    memcpy(&crc, h + HEADER_BYTES, 4);
    if (ver != MODEL_VERSION) {
        st = lms_errorf(LMS_ERR_FORMAT, "'%s' is model file version %u; this lmscale reads version %u "
                        "(use the lmscale that wrote it, or re-export)", path, ver, MODEL_VERSION);
        goto fail;
    }
    lms_gpt_config cfg = {.L = d[0], .NH = d[1], .C = d[2], .maxT = d[3], .V = d[4]};
    st = lms_gpt_config_validate(&cfg);
    if (st != LMS_OK || cfg.Vp != d[5]) {
        st = lms_errorf(LMS_ERR_FORMAT, "'%s' has an invalid model config (L=%d NH=%d C=%d maxT=%d V=%d "
                        "Vp=%d): the file is corrupt", path, d[0], d[1], d[2], d[3], d[4], d[5]);
        goto fail;
    }
    lms_tensor_view *views;
    int nviews;
    size_t want;
    LMS_TRY(lms_gpt_layout(&cfg, &views, &nviews, &want));
    free(views);
    size_t want_bytes = sizeof h + want * sizeof(float);
    if (np != want || size != want_bytes) {
        st = lms_errorf(LMS_ERR_FORMAT, "'%s' is truncated or has extra bytes (%zu bytes; a model of this "
                        "config has %zu parameters, %zu bytes): the file is corrupt or was cut short",
                        path, size, want, want_bytes);
        goto fail;
    }
    if (B <= 0) B = 1;
    if (T <= 0) T = cfg.maxT;
    if (T > cfg.maxT) {
        st = lms_errorf(LMS_ERR_INVALID_ARG, "--seq-len %d is above the model's maximum %d (from '%s'): "
                        "use --seq-len %d or less", T, cfg.maxT, path, cfg.maxT);
        goto fail;
    }
    LMS_TRY(lms_gpt_init(m, &cfg, B, T, with_grads));
    if (fread(m->params, sizeof(float), want, f) != want) {
        st = lms_errorf(LMS_ERR_IO, "cannot read the weights of '%s': %s", path, strerror(errno));
        goto fail;
    }
    if (lms_crc32(0, m->params, want * sizeof(float)) != crc) {
        st = lms_errorf(LMS_ERR_FORMAT, "'%s': checksum mismatch in the weights: the file is corrupt "
                        "(re-save or copy it again)", path);
        goto fail;
    }
    if (tokenizer_kind) *tokenizer_kind = (int)tok;
    fclose(f);
    return LMS_OK;
fail:
    fclose(f);
    lms_gpt_free(m);
    return st;
}
