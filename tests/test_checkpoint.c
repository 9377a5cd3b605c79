/* Checkpoint module: save/load round trip of the full training state,
 * tensors assembled from slices written by several "ranks", corruption,
 * truncation, version and missing-file errors, newest-valid selection,
 * --keep-last pruning, and the Hugging Face export -> import round trip
 * (with the safetensors layout checked byte by byte). */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include "lmscale/checkpoint.h"
#include "lmscale/json.h"

#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_root[256];

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...) {
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (system(cmd) != 0) fprintf(stderr, "command failed: %s\n", cmd);
}

static void fill(float *p, size_t n, uint64_t key) {
    for (size_t i = 0; i < n; i++) p[i] = lms_rng_normal(key, i);
}

static int contains(const char *s, const char *sub) { return strstr(s, sub) != NULL; }

static lms_gpt_config tiny(void) {
    lms_gpt_config c = {.L = 2, .NH = 2, .C = 32, .maxT = 16, .V = 100};
    lms_gpt_config_validate(&c);
    return c;
}

static void flip_byte(const char *path, long off) {
    FILE *f = fopen(path, "r+b");
    if (!f) return;
    fseek(f, off, SEEK_SET);
    int c = fgetc(f);
    fseek(f, off, SEEK_SET);
    fputc(c ^ 0x10, f);
    fclose(f);
}

static void test_roundtrip(void) {
    lms_gpt_config cfg = tiny();
    lms_gpt m, m2;
    lms_adamw o, o2;
    CHECK(lms_gpt_init(&m, &cfg, 1, 8, 0) == LMS_OK, "init");
    CHECK(lms_gpt_init(&m2, &cfg, 1, 8, 0) == LMS_OK, "init");
    lms_gpt_init_params(&m, 3);
    lms_adamw_init(&o, m.num_params, 0.9f, 0.95f, 1e-8f, 0.1f);
    lms_adamw_init(&o2, m.num_params, 0.9f, 0.95f, 1e-8f, 0.1f);
    fill(o.m, o.n, 11);
    fill(o.v, o.n, 12);
    o.step = 7;
    lms_ckpt_state st;
    lms_ckpt_state_init(&st, &cfg);
    st.step = 7;
    st.seed = 0xFFFFFFFFFFFFFFF1ull; /* above 2^53: must survive JSON */
    st.data_window = 56;
    st.global_batch = 8;
    st.seq_len = 8;
    st.sched = (lms_schedule){LMS_SCHED_COSINE, 3e-4f, 3e-5f, 2, 20};
    st.beta1 = 0.9f;
    st.beta2 = 0.95f;
    st.eps = 1e-8f;
    st.weight_decay = 0.1f;
    st.grad_clip = 1.0f;
    st.adam_step = 7;
    char root[300], *saved = NULL;
    snprintf(root, sizeof root, "%s/rt", g_root);
    CHECK(lms_ckpt_save_train(root, &st, &m, &o, 0, &saved) == LMS_OK, "save: %s", lms_last_error());
    CHECK(saved && contains(saved, "step-00000007"), "saved path %s", saved ? saved : "(null)");
    lms_ckpt ck;
    CHECK(lms_ckpt_open(&ck, saved) == LMS_OK, "open: %s", lms_last_error());
    CHECK(ck.state.seed == st.seed && ck.state.step == 7 && ck.state.data_window == 56 &&
              ck.state.sched.kind == LMS_SCHED_COSINE && ck.state.sched.lr == 3e-4f && ck.state.sched.total == 20 &&
              ck.state.beta2 == 0.95f && ck.state.eps == 1e-8f && ck.state.adam_step == 7 &&
              !strcmp(ck.state.tok_kind, "bytes") && ck.state.cfg.Vp == cfg.Vp,
          "state round trip (seed %llu)", (unsigned long long)ck.state.seed);
    CHECK(ck.ntensors == 3 * m.num_tensors, "%d tensors", ck.ntensors);
    CHECK(lms_ckpt_load_train(&ck, &m2, &o2) == LMS_OK, "load: %s", lms_last_error());
    CHECK(!memcmp(m.params, m2.params, m.num_params * 4), "params differ");
    CHECK(!memcmp(o.m, o2.m, o.n * 4) && !memcmp(o.v, o2.v, o.n * 4) && o2.step == 7, "adam state differs");
    lms_ckpt_close(&ck);

    /* a flipped byte in wpe's slice: checksum error naming the tensor and the file */
    char shard[400];
    snprintf(shard, sizeof shard, "%s/shard-00000-of-00001.bin", saved);
    const lms_tensor_view *wpe = lms_gpt_find(&m, "wpe");
    flip_byte(shard, 16 + (long)wpe->offset * 4 + 5);
    CHECK(lms_ckpt_open(&ck, saved) == LMS_OK, "open");
    lms_status s = lms_ckpt_load_train(&ck, &m2, &o2);
    CHECK(s == LMS_ERR_FORMAT && contains(lms_last_error(), "checksum") && contains(lms_last_error(), "model.wpe") &&
              contains(lms_last_error(), "shard-00000-of-00001.bin"),
          "flipped byte: %s", lms_last_error());
    CHECK(lms_ckpt_verify(&ck) != LMS_OK, "verify accepts a corrupt checkpoint");
    lms_ckpt_close(&ck);
    flip_byte(shard, 16 + (long)wpe->offset * 4 + 5); /* restore */
    CHECK(lms_ckpt_open(&ck, saved) == LMS_OK && lms_ckpt_verify(&ck) == LMS_OK, "restored: %s", lms_last_error());
    lms_ckpt_close(&ck);

    /* truncation */
    sh("cp -r '%s' '%s.trunc'", saved, saved);
    char tr[400];
    snprintf(tr, sizeof tr, "%s.trunc/shard-00000-of-00001.bin", saved);
    CHECK(truncate(tr, 1000) == 0, "truncate");
    snprintf(tr, sizeof tr, "%s.trunc", saved);
    CHECK(lms_ckpt_open(&ck, tr) == LMS_OK, "open truncated index");
    s = lms_ckpt_verify(&ck);
    CHECK(s == LMS_ERR_FORMAT && contains(lms_last_error(), "truncated"), "truncated: %s", lms_last_error());
    lms_ckpt_close(&ck);
    /* missing shard */
    sh("rm '%s.trunc/shard-00000-of-00001.bin'", saved);
    CHECK(lms_ckpt_open(&ck, tr) == LMS_OK, "open");
    s = lms_ckpt_verify(&ck);
    CHECK(s == LMS_ERR_IO && contains(lms_last_error(), "shard-00000-of-00001.bin"), "missing shard: %s",
          lms_last_error());
    lms_ckpt_close(&ck);
    /* unknown version, missing index */
    sh("sed -i 's/\"version\": 2,/\"version\": 99,/' '%s.trunc/index.json'", saved);
    s = lms_ckpt_open(&ck, tr);
    CHECK(s == LMS_ERR_FORMAT && contains(lms_last_error(), "version 99") && contains(lms_last_error(), "index.json"),
          "version: %s", lms_last_error());
    sh("rm '%s.trunc/index.json'", saved);
    s = lms_ckpt_open(&ck, tr);
    CHECK(s == LMS_ERR_IO && contains(lms_last_error(), "index.json"), "no index: %s", lms_last_error());

    /* shape mismatch: a checkpoint of another model does not load */
    lms_gpt_config big = cfg;
    big.C = 64;
    lms_gpt m3;
    lms_gpt_init(&m3, &big, 1, 8, 0);
    CHECK(lms_ckpt_open(&ck, saved) == LMS_OK, "open");
    s = lms_ckpt_load_train(&ck, &m3, NULL);
    CHECK(s != LMS_OK && contains(lms_last_error(), "model.wte"), "shape mismatch: %s", lms_last_error());
    lms_ckpt_close(&ck);
    lms_gpt_free(&m3);
    free(saved);
    lms_gpt_free(&m);
    lms_gpt_free(&m2);
    lms_adamw_free(&o);
    lms_adamw_free(&o2);
}

/* Two writer "ranks" each write half of every tensor (rank 1 its slices in
 * reverse order); the loader assembles whole tensors. */
static void test_slices(void) {
    char root[300], *tmp = NULL;
    snprintf(root, sizeof root, "%s/sl", g_root);
    float a[1000], b[1000];
    fill(a, 1000, 5);
    int64_t sa[2] = {10, 100}, sb[1] = {7};
    CHECK(lms_ckpt_begin(root, 3, &tmp) == LMS_OK, "begin: %s", lms_last_error());
    lms_ckpt_shard r0, r1;
    CHECK(lms_ckpt_shard_open(&r0, tmp, 0, 2) == LMS_OK, "open");
    CHECK(lms_ckpt_shard_open(&r1, tmp, 1, 2) == LMS_OK, "open");
    lms_ckpt_shard_put(&r0, "x", 2, sa, 0, a, 300);
    lms_ckpt_shard_put(&r1, "x", 2, sa, 700, a + 700, 300);
    lms_ckpt_shard_put(&r1, "x", 2, sa, 300, a + 300, 400);
    lms_ckpt_shard_put(&r1, "y", 1, sb, 4, a + 4, 3);
    lms_ckpt_shard_put(&r0, "y", 1, sb, 0, a, 4);
    CHECK(lms_ckpt_shard_close(&r0) == LMS_OK && lms_ckpt_shard_close(&r1) == LMS_OK, "close");
    lms_ckpt_shard both[2] = {r0, r1};
    lms_ckpt_state st;
    lms_gpt_config cfg = tiny();
    lms_ckpt_state_init(&st, &cfg);
    st.step = 3;
    CHECK(lms_ckpt_finish(root, tmp, 3, &st, both, 2) == LMS_OK, "finish: %s", lms_last_error());
    char dir[400];
    snprintf(dir, sizeof dir, "%s/step-00000003", root);
    lms_ckpt ck;
    CHECK(lms_ckpt_open(&ck, dir) == LMS_OK, "open: %s", lms_last_error());
    const lms_ckpt_tensor *t = lms_ckpt_find_tensor(&ck, "x");
    CHECK(t && t->nslices == 3 && t->ndim == 2 && t->shape[1] == 100, "x has 3 slices");
    memset(b, 0, sizeof b);
    CHECK(lms_ckpt_read_tensor(&ck, "x", b, 1000) == LMS_OK && !memcmp(a, b, 4000), "x assembled: %s", lms_last_error());
    CHECK(lms_ckpt_read_tensor(&ck, "y", b, 7) == LMS_OK && !memcmp(a, b, 28), "y assembled");
    lms_ckpt_close(&ck);
    /* a gap (drop a slice from the index) is refused when the index is read */
    sh("sed -i 's/, {\"file\": \"shard-00001-of-00002.bin\", \"offset\": 1216, [^}]*}//' '%s/step-00000003/index.json'", root);
    lms_status s = lms_ckpt_open(&ck, dir);
    CHECK(s == LMS_ERR_FORMAT && contains(lms_last_error(), "cover") && contains(lms_last_error(), "gap"),
          "gap: %s", lms_last_error());
    lms_ckpt_shard_free(&r0);
    lms_ckpt_shard_free(&r1);
    free(tmp);
}

/* Version-2 chunks: runs that start and end inside rows become a few
 * boxes (at most 2·ndim - 1 per run); N-D chunks written directly (a
 * row-parallel split: column halves; a fused-QKV-like split: three row
 * blocks per rank) assemble to the whole tensor. */
static void test_chunks(void) {
    char root[300], *tmp = NULL, dir[400];
    snprintf(root, sizeof root, "%s/ch", g_root);
    float a[1000], b[1000], part[500];
    fill(a, 1000, 7);
    int64_t sz[3] = {3, 4, 5}, sx[2] = {10, 100}, sq[2] = {12, 10};
    CHECK(lms_ckpt_begin(root, 4, &tmp) == LMS_OK, "begin: %s", lms_last_error());
    lms_ckpt_shard r0, r1;
    CHECK(lms_ckpt_shard_open(&r0, tmp, 0, 2) == LMS_OK && lms_ckpt_shard_open(&r1, tmp, 1, 2) == LMS_OK, "open");
    /* z (3, 4, 5) in runs [0, 7), [7, 48), [48, 60) */
    lms_ckpt_shard_put(&r0, "z", 3, sz, 0, a, 7);
    lms_ckpt_shard_put(&r1, "z", 3, sz, 7, a + 7, 41);
    lms_ckpt_shard_put(&r0, "z", 3, sz, 48, a + 48, 12);
    /* x (10, 100) split by columns: rank r holds columns [50r, 50r + 50) */
    for (int r = 0; r < 2; r++) {
        for (int i = 0; i < 10; i++) memcpy(part + i * 50, a + i * 100 + 50 * r, 50 * sizeof(float));
        int64_t off[2] = {0, 50 * r}, size[2] = {10, 50};
        CHECK(lms_ckpt_shard_put_chunk(r ? &r1 : &r0, "x", 2, sx, off, size, part) == LMS_OK, "put chunk");
    }
    /* q (12, 10) = three stacked (4, 10) matrices, rank r rows [2r, 2r+2) of each */
    for (int r = 0; r < 2; r++)
        for (int k = 0; k < 3; k++) {
            int64_t off[2] = {4 * k + 2 * r, 0}, size[2] = {2, 10};
            lms_ckpt_shard_put_chunk(r ? &r1 : &r0, "q", 2, sq, off, size, a + off[0] * 10);
        }
    CHECK(lms_ckpt_shard_close(&r0) == LMS_OK && lms_ckpt_shard_close(&r1) == LMS_OK, "close");
    lms_ckpt_shard both[2] = {r0, r1};
    lms_ckpt_state st;
    lms_gpt_config cfg = tiny();
    lms_ckpt_state_init(&st, &cfg);
    st.step = 4;
    CHECK(lms_ckpt_finish(root, tmp, 4, &st, both, 2) == LMS_OK, "finish: %s", lms_last_error());
    snprintf(dir, sizeof dir, "%s/step-00000004", root);
    lms_ckpt ck;
    CHECK(lms_ckpt_open(&ck, dir) == LMS_OK && ck.version == 2, "open: %s", lms_last_error());
    const lms_ckpt_tensor *t = lms_ckpt_find_tensor(&ck, "z");
    CHECK(t && t->nslices == 2 + 5 + 2 && t->slices[0].ndim == 3, "z: %d chunks (2 + 5 + 2)", t ? t->nslices : -1);
    const char *names[3] = {"z", "x", "q"};
    const uint64_t n[3] = {60, 1000, 120};
    for (int i = 0; i < 3; i++) {
        memset(b, 0, sizeof b);
        CHECK(lms_ckpt_read_tensor(&ck, names[i], b, n[i]) == LMS_OK && !memcmp(a, b, n[i] * 4), "%s assembled: %s",
              names[i], lms_last_error());
    }
    CHECK(lms_ckpt_find_tensor(&ck, "x")->nslices == 2, "a column-parallel shard is one chunk");
    lms_ckpt_close(&ck);
    /* a corrupt non-contiguous chunk is caught by its CRC */
    sh("printf 'X' | dd of='%s/shard-00001-of-00002.bin' bs=1 seek=%d conv=notrunc 2>/dev/null", dir, 16 + 41 * 4 + 8);
    CHECK(lms_ckpt_open(&ck, dir) == LMS_OK, "reopen");
    CHECK(lms_ckpt_read_tensor(&ck, "x", b, 1000) == LMS_ERR_FORMAT && contains(lms_last_error(), "checksum") &&
              contains(lms_last_error(), "chunk [0:10, 50:100]"),
          "corrupt chunk: %s", lms_last_error());
    lms_ckpt_close(&ck);
    lms_ckpt_shard_free(&r0);
    lms_ckpt_shard_free(&r1);
    free(tmp);
}

/* A model saved as tensor-parallel shards (tp 2: each rank's part of every
 * split tensor as its chunks, from lms_gpt_tp_shard, initialised shard by
 * shard; replicated tensors written once) loads, whole, as the one-process
 * model: a column- or row-parallel shard is one chunk, fused QKV three. */
static void test_tp_shards(void) {
    lms_gpt_config cfg = tiny();
    lms_gpt m, m2;
    CHECK(lms_gpt_init(&m, &cfg, 1, 8, 0) == LMS_OK && lms_gpt_init(&m2, &cfg, 1, 8, 0) == LMS_OK, "init");
    lms_gpt_init_params(&m, 21);
    char root[300], *tmp = NULL, dir[400];
    snprintf(root, sizeof root, "%s/tp", g_root);
    CHECK(lms_ckpt_begin(root, 1, &tmp) == LMS_OK, "begin");
    lms_ckpt_shard sh[2];
    float *loc = malloc(sizeof(float) * m.num_params);
    int bad = 0;
    for (int r = 0; r < 2; r++) {
        CHECK(lms_ckpt_shard_open(&sh[r], tmp, r, 2) == LMS_OK, "open");
        for (int i = 0; i < m.num_tensors; i++) {
            const lms_tensor_view *v = &m.tensors[i];
            lms_tp_shard s;
            CHECK(lms_gpt_tp_shard(&cfg, v, 2, r, &s) == LMS_OK, "tp shard: %s", lms_last_error());
            if (v->spec->split == LMS_SPLIT_NONE && r) continue; /* replicated: rank 0 writes it */
            lms_gpt_init_tp_shard(v, &s, 21, loc);
            char nm[96];
            snprintf(nm, sizeof nm, "model.%s", v->name);
            int64_t shape[2] = {v->shape[0], v->shape[1]};
            for (int k = 0; k < s.nchunks; k++) {
                const lms_tp_chunk *c = &s.chunk[k];
                bad += lms_ckpt_shard_put_chunk(&sh[r], nm, v->ndim, shape, c->global, c->size,
                                                loc + c->local[0] * s.shape[1] + c->local[1]) != LMS_OK;
            }
        }
        CHECK(lms_ckpt_shard_close(&sh[r]) == LMS_OK, "close");
    }
    CHECK(!bad, "put chunks");
    lms_ckpt_state st;
    lms_ckpt_state_init(&st, &cfg);
    st.step = 1;
    CHECK(lms_ckpt_finish(root, tmp, 1, &st, sh, 2) == LMS_OK, "finish: %s", lms_last_error());
    snprintf(dir, sizeof dir, "%s/step-00000001", root);
    lms_ckpt ck;
    CHECK(lms_ckpt_open(&ck, dir) == LMS_OK, "open: %s", lms_last_error());
    CHECK(lms_ckpt_load_train(&ck, &m2, NULL) == LMS_OK, "load: %s", lms_last_error());
    CHECK(!memcmp(m.params, m2.params, sizeof(float) * m.num_params), "tp-sharded save loads as the whole model");
    const lms_ckpt_tensor *q = lms_ckpt_find_tensor(&ck, "model.h.0.attn.c_attn.weight"),
                          *p = lms_ckpt_find_tensor(&ck, "model.h.0.mlp.c_proj.weight");
    CHECK(q && q->nslices == 6 && p && p->nslices == 2, "QKV in 3 chunks per rank, row-parallel in 1");
    lms_ckpt_close(&ck);
    for (int r = 0; r < 2; r++) lms_ckpt_shard_free(&sh[r]);
    free(loc);
    free(tmp);
    lms_gpt_free(&m);
    lms_gpt_free(&m2);
}

static void test_resolve_and_prune(void) {
    lms_gpt_config cfg = tiny();
    lms_gpt m;
    lms_adamw o;
    lms_gpt_init(&m, &cfg, 1, 8, 0);
    lms_gpt_init_params(&m, 1);
    lms_adamw_init(&o, m.num_params, 0.9f, 0.95f, 1e-8f, 0.1f);
    char root[300];
    snprintf(root, sizeof root, "%s/many", g_root);
    lms_ckpt_state st;
    lms_ckpt_state_init(&st, &cfg);
    for (int s = 1; s <= 4; s++) {
        st.step = s;
        CHECK(lms_ckpt_save_train(root, &st, &m, &o, 3, NULL) == LMS_OK, "save %d", s);
    }
    char p[800];
    struct stat sb;
    snprintf(p, sizeof p, "%s/step-00000001", root);
    CHECK(stat(p, &sb) != 0, "keep_last 3 kept step 1");
    snprintf(p, sizeof p, "%s/step-00000002", root);
    CHECK(stat(p, &sb) == 0, "keep_last 3 removed step 2");
    lms_logger lg = {LMS_LOG_ERROR, 0, 0, NULL}; /* the warnings are expected */
    char *out = NULL;
    CHECK(lms_ckpt_resolve(root, &lg, &out) == LMS_OK && contains(out, "step-00000004"), "newest: %s", out);
    free(out);
    /* newest corrupt, a partial .tmp of a later step: falls back to 3 */
    snprintf(p, sizeof p, "%s/step-00000004/shard-00000-of-00001.bin", root);
    flip_byte(p, 100);
    sh("mkdir -p '%s/.tmp-step-00000005'", root);
    CHECK(lms_ckpt_resolve(root, &lg, &out) == LMS_OK && contains(out, "step-00000003"), "fallback: %s", out);
    free(out);
    /* a checkpoint given directly is taken as it is */
    snprintf(p, sizeof p, "%s/step-00000002", root);
    CHECK(lms_ckpt_resolve(p, &lg, &out) == LMS_OK && !strcmp(out, p), "direct: %s", out);
    free(out);
    /* nothing valid */
    snprintf(p, sizeof p, "rm -rf '%s/step-00000002' '%s/step-00000003'", root, root);
    if (system(p) != 0) fprintf(stderr, "rm failed\n");
    CHECK(lms_ckpt_resolve(root, &lg, &out) != LMS_OK && contains(lms_last_error(), "no valid checkpoint"),
          "none valid: %s", lms_last_error());
    lms_gpt_free(&m);
    lms_adamw_free(&o);
}

/* Export -> import is the identity (wte padding rows zero); the file's
 * layout is checked against the safetensors rules directly. */
static void test_hf(void) {
    lms_gpt_config cfg = tiny();
    lms_gpt m;
    lms_gpt_init(&m, &cfg, 1, 8, 0);
    lms_gpt_init_params(&m, 9);
    char dir[300];
    snprintf(dir, sizeof dir, "%s/hf", g_root);
    CHECK(lms_hf_export(dir, &cfg, m.params) == LMS_OK, "export: %s", lms_last_error());
    lms_gpt_config c2;
    CHECK(lms_hf_read_config(dir, &c2) == LMS_OK && c2.L == cfg.L && c2.NH == cfg.NH && c2.C == cfg.C &&
              c2.maxT == cfg.maxT && c2.V == cfg.V && c2.Vp == cfg.Vp,
          "config: %s", lms_last_error());
    float *p2 = calloc(m.num_params, 4);
    for (size_t i = 0; i < m.num_params; i++) p2[i] = 7.0f; /* padding rows must be overwritten by zeros */
    CHECK(lms_hf_load_params(dir, &cfg, p2) == LMS_OK, "load: %s", lms_last_error());
    CHECK(!memcmp(p2, m.params, m.num_params * 4), "export -> import differs");

    /* raw file: header length, alignment, contiguous offsets, transposed Conv1D */
    char path[400];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unsigned char *buf;
    size_t n;
    CHECK(lms_read_file(path, &buf, &n) == LMS_OK, "read");
    uint64_t hl;
    memcpy(&hl, buf, 8);
    CHECK((8 + hl) % 8 == 0 && buf[8] == '{', "header length %llu not aligned", (unsigned long long)hl);
    lms_json *h;
    CHECK(lms_json_parse((char *)buf + 8, hl, path, &h) == LMS_OK, "header json");
    size_t total = 0;
    int ok_order = 1;
    const char *prev = "";
    for (const lms_json *t = h->child; t; t = t->next) {
        if (!strcmp(t->key, "__metadata__")) continue;
        const lms_json *of = lms_json_get(t, "data_offsets");
        ok_order &= (size_t)lms_json_at(of, 0)->number == total && strcmp(prev, t->key) < 0;
        total = (size_t)lms_json_at(of, 1)->number;
        prev = t->key;
    }
    CHECK(ok_order && 8 + hl + total == n, "offsets not contiguous/sorted or size %zu != %zu", 8 + hl + total, n);
    CHECK(!lms_json_get(h, "lm_head.weight"), "tied head stored");
    const lms_json *wte = lms_json_get(h, "wte.weight"), *ca = lms_json_get(h, "h.1.attn.c_attn.weight");
    CHECK(wte && lms_json_at(lms_json_get(wte, "shape"), 0)->number == cfg.V, "wte rows != V");
    CHECK(ca && lms_json_at(lms_json_get(ca, "shape"), 0)->number == cfg.C &&
              lms_json_at(lms_json_get(ca, "shape"), 1)->number == 3 * cfg.C,
          "c_attn shape is not (C, 3C)");
    if (ca) {
        const float *raw = (const float *)(buf + 8 + hl + (size_t)lms_json_at(lms_json_get(ca, "data_offsets"), 0)->number);
        const float *ours = m.params + lms_gpt_find(&m, "h.1.attn.c_attn.weight")->offset; /* (3C, C) */
        int tr = 1;
        for (int i = 0; i < cfg.C; i++)
            for (int j = 0; j < 3 * cfg.C; j++) tr &= raw[i * 3 * cfg.C + j] == ours[j * cfg.C + i];
        CHECK(tr, "c_attn weight is not the transpose of ours");
    }
    lms_json_free(h);
    free(buf);

    /* "transformer." prefix accepted; config/weights mismatch refused naming the tensor */
    sh("cd '%s' && sed -i 's/\"n_embd\": 32/\"n_embd\": 64/' config.json", dir);
    lms_gpt_config c3;
    CHECK(lms_hf_read_config(dir, &c3) == LMS_OK && c3.C == 64, "edited config");
    float *p3 = calloc(1 << 20, 4);
    lms_status s = lms_hf_load_params(dir, &c3, p3);
    CHECK(s == LMS_ERR_FORMAT && contains(lms_last_error(), "h.0.attn.c_attn.bias") &&
              contains(lms_last_error(), "shape [96]") && contains(lms_last_error(), "implies [192]"),
          "shape mismatch: %s", lms_last_error());
    free(p3);
    sh("rm '%s/config.json'", dir);
    s = lms_hf_read_config(dir, &c3);
    CHECK(s == LMS_ERR_IO && contains(lms_last_error(), "config.json"), "no config: %s", lms_last_error());
    free(p2);
    lms_gpt_free(&m);
}

/* ---- hostile inputs (issue 18) ---- */

static char *slurp(const char *path, size_t *n) {
    unsigned char *b = NULL;
    if (lms_read_file(path, &b, n) != LMS_OK) return NULL;
    char *s = realloc(b, *n + 1);
    if (s) s[*n] = 0;
    return s;
}

static void spit(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(data, 1, n, f);
    fclose(f);
}

/* dst = a copy of checkpoint src whose index.json has `from` replaced by
 * `to` (first occurrence); 0 when `from` is not there */
static int mutate_index(const char *src, const char *dst, const char *from, const char *to) {
    sh("rm -rf '%s' && cp -r '%s' '%s'", dst, src, dst);
    char p[600];
    snprintf(p, sizeof p, "%s/index.json", dst);
    size_t n;
    char *s = slurp(p, &n), *at = s ? strstr(s, from) : NULL;
    if (!at) {
        free(s);
        return 0;
    }
    FILE *f = fopen(p, "wb");
    fwrite(s, 1, (size_t)(at - s), f);
    fputs(to, f);
    fputs(at + strlen(from), f);
    fclose(f);
    free(s);
    return 1;
}

/* x (10, 100) in three slices over two shards, y (7) in two */
static void write_sliced(const char *root, int step) {
    float a[1000];
    fill(a, 1000, 5);
    int64_t sa[2] = {10, 100}, sb[1] = {7};
    char *tmp = NULL;
    lms_ckpt_shard r0, r1;
    CHECK(lms_ckpt_begin(root, step, &tmp) == LMS_OK && lms_ckpt_shard_open(&r0, tmp, 0, 2) == LMS_OK &&
              lms_ckpt_shard_open(&r1, tmp, 1, 2) == LMS_OK, "begin: %s", lms_last_error());
    lms_ckpt_shard_put(&r0, "x", 2, sa, 0, a, 300);
    lms_ckpt_shard_put(&r0, "y", 1, sb, 0, a, 4);
    lms_ckpt_shard_put(&r1, "x", 2, sa, 300, a + 300, 700);
    lms_ckpt_shard_put(&r1, "y", 1, sb, 4, a + 4, 3);
    CHECK(lms_ckpt_shard_close(&r0) == LMS_OK && lms_ckpt_shard_close(&r1) == LMS_OK, "close");
    lms_ckpt_shard both[2] = {r0, r1};
    lms_ckpt_state st;
    lms_gpt_config cfg = tiny();
    lms_ckpt_state_init(&st, &cfg);
    st.step = step;
    st.global_batch = 4;
    st.seq_len = 8;
    CHECK(lms_ckpt_finish(root, tmp, step, &st, both, 2) == LMS_OK, "finish: %s", lms_last_error());
    lms_ckpt_shard_free(&r0);
    lms_ckpt_shard_free(&r1);
    free(tmp);
}

/* open + verify must fail with a format error naming index.json (or the
 * shard) and `want`; nothing is read past a buffer (ASan in the sanitizer
 * build) */
static void expect_bad_index(const char *good, const char *from, const char *to, const char *want) {
    char bad[400];
    snprintf(bad, sizeof bad, "%s.bad", good);
    if (!mutate_index(good, bad, from, to)) {
        CHECK(0, "test bug: '%s' not in the index", from);
        return;
    }
    lms_ckpt ck;
    lms_status s = lms_ckpt_open(&ck, bad);
    if (s == LMS_OK) {
        s = lms_ckpt_verify(&ck);
        lms_ckpt_close(&ck);
    }
    CHECK(s == LMS_ERR_FORMAT && contains(lms_last_error(), bad) && contains(lms_last_error(), want),
          "%s -> %s: want a format error naming '%s' and '%s', got %d: %s", from, to, bad, want, (int)s,
          lms_last_error());
}

static void test_hostile_index(void) {
    char root[300], good[400];
    snprintf(root, sizeof root, "%s/hostile", g_root);
    write_sliced(root, 3);
    snprintf(good, sizeof good, "%s/step-00000003", root);
    lms_ckpt ck;
    CHECK(lms_ckpt_open(&ck, good) == LMS_OK && lms_ckpt_verify(&ck) == LMS_OK, "good: %s", lms_last_error());
    lms_ckpt_close(&ck);
    const char *y2 = "\"offsets\": [4], \"sizes\": [3]"; /* y's second chunk */
    /* the heap overflow of issue 18: a size that wraps offset + size */
    expect_bad_index(good, y2, "\"offsets\": [4], \"sizes\": [18446744073709549568]", "slice");
    expect_bad_index(good, y2, "\"offsets\": [4], \"sizes\": [9007199254740000]", "outside the tensor");
    expect_bad_index(good, y2, "\"offsets\": [4], \"sizes\": [3.5]", "slice");
    expect_bad_index(good, y2, "\"offsets\": [3], \"sizes\": [3]", "overlap");
    expect_bad_index(good, y2, "\"offsets\": [5], \"sizes\": [2]", "gap");
    expect_bad_index(good, y2, "\"offsets\": [4], \"sizes\": [2]", "missing elements");
    expect_bad_index(good, y2, "\"offsets\": [-4], \"sizes\": [3]", "slice");
    expect_bad_index(good, y2, "\"offsets\": [4, 0], \"sizes\": [3, 1]", "slice");
    /* x (10, 100): rows [0, 3) on rank 0, [3, 10) on rank 1, as 2-D chunks */
    const char *x2 = "\"offsets\": [3, 0], \"sizes\": [7, 100]";
    expect_bad_index(good, x2, "\"offsets\": [4, 0], \"sizes\": [7, 100]", "outside the tensor");
    expect_bad_index(good, x2, "\"offsets\": [2, 0], \"sizes\": [8, 100]", "overlap");
    expect_bad_index(good, x2, "\"offsets\": [3, 0], \"sizes\": [7, 99]", "gap");
    expect_bad_index(good, x2, "\"offsets\": [3, 1], \"sizes\": [7, 100]", "outside the tensor");
    expect_bad_index(good, x2, "\"offsets\": [3, 0], \"sizes\": [7, 18446744073709551615]", "slice");
    expect_bad_index(good, x2, "\"offsets\": [3], \"sizes\": [7]", "slice");
    expect_bad_index(good, x2, "\"offsets\": [3, 0], \"sizes\": [7, 100], \"sizes\": [7, 100]", "appears twice");

    /* a version-1 index (the committed fixture written before format 2,
     * dp 2 ZeRO-3: wte in two runs of the flattened tensor) keeps its checks */
    char v1[400];
    snprintf(v1, sizeof v1, "%s/v1", g_root);
    sh("rm -rf '%s' && cp -r tests/fixtures/ckpt_v1/dp2_zero3 '%s'", v1, v1);
    CHECK(lms_ckpt_open(&ck, v1) == LMS_OK && ck.version == 1 && lms_ckpt_verify(&ck) == LMS_OK, "v1 fixture: %s",
          lms_last_error());
    lms_ckpt_close(&ck);
    const char *w2 = "\"start\": 2688, \"count\": 2432"; /* wte's second run */
    expect_bad_index(v1, w2, "\"start\": 2688, \"count\": 18446744073709549568", "slice");
    expect_bad_index(v1, w2, "\"start\": 2688, \"count\": 9007199254740000", "outside the tensor");
    expect_bad_index(v1, w2, "\"start\": 2688, \"count\": 3.5", "slice");
    expect_bad_index(v1, w2, "\"start\": 2687, \"count\": 2432", "overlap");
    expect_bad_index(v1, w2, "\"start\": 2689, \"count\": 2431", "gap");
    expect_bad_index(v1, w2, "\"start\": 2688, \"count\": 2431", "missing elements");
    expect_bad_index(v1, w2, "\"start\": -2688, \"count\": 2432", "slice");
    expect_bad_index(v1, "\"version\": 1,", "\"version\": 3,", "version");
    expect_bad_index(good, "\"offset\": 16", "\"offset\": 16.5", "slice");
    expect_bad_index(good, "\"offset\": 16", "\"offset\": 8", "before the shard data");
    expect_bad_index(good, "\"offset\": 16", "\"offset\": 999999", "truncated");
    expect_bad_index(good, "\"crc32\": ", "\"crc32\": 4294967296, \"x\": ", "slice");
    expect_bad_index(good, "\"file\": \"shard-00001-of-00002.bin\"", "\"file\": \"..\"", "slice");
    expect_bad_index(good, "\"file\": \"shard-00001-of-00002.bin\"", "\"file\": \"../x\"", "slice");
    /* unvalidated numbers: step range, fractions, huge values, > 63 characters */
    expect_bad_index(good, "\"step\": 3,", "\"step\": -4,", "\"step\"");
    expect_bad_index(good, "\"step\": 3,", "\"step\": 1e10,", "\"step\"");
    expect_bad_index(good, "\"step\": 3,", "\"step\": 3.5,", "\"step\"");
    expect_bad_index(good, "\"step\": 3,",
                     "\"step\": 100000000000000000000000000000000000000000000000000000000000000000000000,",
                     "\"step\"");
    expect_bad_index(good, "\"n_layer\": 2", "\"n_layer\": 2.5", "\"config\"");
    expect_bad_index(good, "\"n_layer\": 2", "\"n_layer\": 1e300", "\"config\"");
    expect_bad_index(good, "\"global_batch\": 4", "\"global_batch\": 4294967300", "\"state\"");
    expect_bad_index(good, "\"seed\": \"0\"", "\"seed\": \"-1\"", "\"state\"");
    expect_bad_index(good, "\"seed\": \"0\"", "\"seed\": \"18446744073709551616\"", "\"state\"");
    expect_bad_index(good, "\"warmup\": 0", "\"warmup\": -1", "\"schedule\"");
    expect_bad_index(good, "\"beta1\": 0", "\"beta1\": 1e300", "\"adamw\"");
    expect_bad_index(good, "\"version\": 2", "\"version\": 2.5", "version");
    /* a shape whose product wraps 64 bits */
    expect_bad_index(good, "\"shape\": [7]", "\"shape\": [4294967296, 4294967296, 7]", "overflows");
    expect_bad_index(good, "\"shape\": [7]", "\"shape\": [7.5]", "shape");
    /* duplicate keys and duplicate tensors */
    expect_bad_index(good, "\"version\": 2,", "\"version\": 2, \"version\": 2,", "appears twice");
    expect_bad_index(good, "{\"name\": \"y\", ", "{\"name\": \"y\", \"name\": \"x\", ", "appears twice");
    expect_bad_index(good, "{\"name\": \"y\"", "{\"name\": \"x\"", "listed twice");

    /* FIFOs where index.json or a shard should be: refused, not waited on */
    char bad[500], p[600];
    snprintf(bad, sizeof bad, "%s.fifo", good);
    sh("rm -rf '%s' && cp -r '%s' '%s' && rm '%s/shard-00001-of-00002.bin' && mkfifo '%s/shard-00001-of-00002.bin'",
       bad, good, bad, bad, bad);
    double t0 = lms_now_s();
    lms_status s = lms_ckpt_open(&ck, bad);
    if (s == LMS_OK) {
        s = lms_ckpt_verify(&ck);
        lms_ckpt_close(&ck);
    }
    CHECK(s == LMS_ERR_IO && contains(lms_last_error(), "not a regular file"), "FIFO shard: %s", lms_last_error());
    snprintf(p, sizeof p, "%s/index.json", bad);
    sh("rm '%s' && mkfifo '%s'", p, p);
    s = lms_ckpt_open(&ck, bad);
    CHECK(s == LMS_ERR_IO && contains(lms_last_error(), "not a regular file"), "FIFO index: %s", lms_last_error());
    CHECK(lms_now_s() - t0 < 5, "FIFOs waited on");
}

/* safetensors header of dir/model.safetensors rewritten: `from` -> `to` */
static int mutate_safetensors(const char *dir, const char *from, const char *to) {
    char p[700];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    size_t n;
    char *b = slurp(p, &n);
    if (!b) return 0;
    uint64_t hl;
    memcpy(&hl, b, 8);
    char *hdr = strndup(b + 8, hl), *at = strstr(hdr, from);
    if (!at) {
        free(hdr);
        free(b);
        return 0;
    }
    size_t nh = hl - strlen(from) + strlen(to), k = (size_t)(at - hdr);
    char *out = malloc(8 + nh + (n - 8 - hl));
    uint64_t nhl = nh;
    memcpy(out, &nhl, 8);
    memcpy(out + 8, hdr, k);
    memcpy(out + 8 + k, to, strlen(to));
    memcpy(out + 8 + k + strlen(to), at + strlen(from), hl - k - strlen(from));
    memcpy(out + 8 + nh, b + 8 + hl, n - 8 - hl);
    spit(p, out, 8 + nh + (n - 8 - hl));
    free(out);
    free(hdr);
    free(b);
    return 1;
}

static void expect_bad_safetensors(const char *good, const char *from, const char *to, const char *want) {
    lms_gpt_config cfg = tiny();
    char bad[500];
    snprintf(bad, sizeof bad, "%s.bad", good);
    sh("rm -rf '%s' && cp -r '%s' '%s'", bad, good, bad);
    if (!mutate_safetensors(bad, from, to)) {
        CHECK(0, "test bug: '%s' not in the header", from);
        return;
    }
    float *p = calloc(1 << 20, 4);
    lms_status s = lms_hf_load_params(bad, &cfg, p);
    CHECK(s == LMS_ERR_FORMAT && contains(lms_last_error(), "model.safetensors") && contains(lms_last_error(), want),
          "%s -> %s: want a format error with '%s', got %d: %s", from, to, want, (int)s, lms_last_error());
    free(p);
}

static void test_hostile_hf(void) {
    lms_gpt_config cfg = tiny();
    lms_gpt m;
    lms_gpt_init(&m, &cfg, 1, 8, 0);
    lms_gpt_init_params(&m, 9);
    char dir[300];
    snprintf(dir, sizeof dir, "%s/hfh", g_root);
    CHECK(lms_hf_export(dir, &cfg, m.params) == LMS_OK, "export: %s", lms_last_error());
    /* a bogus first wte.weight (pointing at other bytes) must not win */
    expect_bad_safetensors(dir, "{\"__metadata__\":{\"format\":\"pt\"}",
                           "{\"__metadata__\":{\"format\":\"pt\"},\"wte.weight\":{\"dtype\":\"F32\","
                           "\"shape\":[100,32],\"data_offsets\":[0,12800]}",
                           "appears twice");
    /* the first tensor is h.0.attn.c_attn.bias, 96 floats at [0, 384) */
    const char *first = "\"data_offsets\":[0,384]";
    expect_bad_safetensors(dir, first, "\"data_offsets\":{\"b\":0,\"e\":384}", "data_offsets");
    expect_bad_safetensors(dir, first, "\"data_offsets\":[0,384,768]", "data_offsets");
    expect_bad_safetensors(dir, first, "\"data_offsets\":[0.5,384.5]", "data_offsets");
    expect_bad_safetensors(dir, first, "\"data_offsets\":[0,1e300]", "data_offsets");
    expect_bad_safetensors(dir, first, "\"data_offsets\":[384,0]", "data_offsets");
    expect_bad_safetensors(dir, first, "\"data_offsets\":[4,388]", "overlap");
    expect_bad_safetensors(dir, "\"shape\":[96]", "\"shape\":[4294967296,4294967296,96]", "shape");
    expect_bad_safetensors(dir, "\"shape\":[96]", "\"shape\":[96.5]", "shape");
    /* config.json: duplicate keys, fractions, huge values */
    char cpath[400];
    snprintf(cpath, sizeof cpath, "%s/config.json", dir);
    size_t n;
    char *orig = slurp(cpath, &n);
    const char *cases[][3] = {
        {"\"n_layer\": 2,", "\"n_layer\": 2, \"n_layer\": 1,", "appears twice"},
        {"\"n_layer\": 2,", "\"n_layer\": 2.5,", "n_layer"},
        {"\"n_layer\": 2,", "\"n_layer\": 1e300,", "n_layer"},
        {"\"n_inner\": null", "\"n_inner\": 1e300", "n_inner"},
        {"\"n_inner\": null", "\"n_inner\": 128.5", "n_inner"},
    };
    for (size_t i = 0; orig && i < sizeof cases / sizeof cases[0]; i++) {
        char *at = strstr(orig, cases[i][0]);
        CHECK(at, "test bug: %s", cases[i][0]);
        if (!at) continue;
        FILE *f = fopen(cpath, "wb");
        fwrite(orig, 1, (size_t)(at - orig), f);
        fputs(cases[i][1], f);
        fputs(at + strlen(cases[i][0]), f);
        fclose(f);
        lms_gpt_config c2;
        lms_status s = lms_hf_read_config(dir, &c2);
        CHECK(s != LMS_OK && contains(lms_last_error(), "config.json") && contains(lms_last_error(), cases[i][2]),
              "config %s: %s", cases[i][1], lms_last_error());
    }
    if (orig) spit(cpath, orig, n);
    free(orig);
    lms_gpt_free(&m);
}

static int exists(const char *fmt, const char *a, const char *b) {
    char p[900];
    snprintf(p, sizeof p, fmt, a, b);
    struct stat sb;
    return lstat(p, &sb) == 0;
}

/* Deleting never follows a symlink; pruning keeps this run's newest steps,
 * renames away before deleting, and sweeps .tmp-/.trash- leftovers. */
static void test_hostile_fs(void) {
    lms_gpt_config cfg = tiny();
    lms_gpt m;
    lms_adamw o;
    lms_gpt_init(&m, &cfg, 1, 8, 0);
    lms_gpt_init_params(&m, 1);
    lms_adamw_init(&o, m.num_params, 0.9f, 0.95f, 1e-8f, 0.1f);
    char root[300], victim[300];
    snprintf(root, sizeof root, "%s/fs", g_root);
    snprintf(victim, sizeof victim, "%s/victim", g_root);
    sh("mkdir -p '%s/sub' '%s' && echo keep > '%s/precious' && echo keep > '%s/sub/deep'", victim, root, victim,
       victim);
    /* symlinks where a stale .tmp-step, an old step-* and a file inside a step are */
    sh("ln -s '%s' '%s/.tmp-step-00000001' && ln -s '%s' '%s/step-00000000' && ln -s '%s' '%s/.trash-step-00000009'",
       victim, root, victim, root, victim, root);
    lms_ckpt_state st;
    lms_ckpt_state_init(&st, &cfg);
    for (int s = 1; s <= 4; s++) {
        st.step = s;
        CHECK(lms_ckpt_save_train(root, &st, &m, &o, 2, NULL) == LMS_OK, "save %d: %s", s, lms_last_error());
        if (s == 2) sh("ln -s '%s' '%s/step-00000002/link' && ln -s '%s/precious' '%s/step-00000002/flink'", victim,
                       root, victim, root);
    }
    CHECK(exists("%s/precious", victim, "") && exists("%s/sub/deep", victim, ""),
          "files outside the checkpoint directory were deleted through a symlink");
    CHECK(!exists("%s/step-00000001", root, "") && !exists("%s/step-00000002", root, "") &&
              !exists("%s/step-00000000", root, "") && exists("%s/step-00000003", root, "") &&
              exists("%s/step-00000004", root, "") &&
              !exists("%s/.tmp-step-00000001", root, "") && !exists("%s/.trash-step-00000009", root, ""),
          "keep-last 2 with symlinks: wrong set of entries left");
    /* another run's higher steps are not kept in place of this run's */
    char other[300];
    snprintf(other, sizeof other, "%s/other", g_root);
    st.step = 100;
    CHECK(lms_ckpt_save_train(other, &st, &m, &o, 0, NULL) == LMS_OK, "old run");
    for (int s = 1; s <= 4; s++) {
        st.step = s;
        CHECK(lms_ckpt_save_train(other, &st, &m, &o, 2, NULL) == LMS_OK, "save %d", s);
    }
    CHECK(exists("%s/step-00000004", other, "") && exists("%s/step-00000003", other, "") &&
              !exists("%s/step-00000002", other, "") && exists("%s/step-00000100", other, ""),
          "keep-last pruned this run's new checkpoints (or another run's)");
    /* a kill during pruning leaves a half-deleted .trash-step-*: invisible
     * to readers, swept by the next save */
    sh("mkdir -p '%s/.trash-step-00000002' && cp '%s/step-00000003/index.json' '%s/.trash-step-00000002/'", other,
       other, other);
    lms_logger lg = {LMS_LOG_ERROR, 0, 0, NULL};
    char *out = NULL;
    char p[400];
    snprintf(p, sizeof p, "%s/step-00000003", other);
    sh("mv '%s/step-00000100' '%s/keep100'", other, other);
    CHECK(lms_ckpt_resolve(other, &lg, &out) == LMS_OK && contains(out, "step-00000004"), "resolve: %s", out);
    free(out);
    st.step = 5;
    CHECK(lms_ckpt_save_train(other, &st, &m, &o, 2, NULL) == LMS_OK, "save 5");
    CHECK(!exists("%s/.trash-step-00000002", other, "") && !exists("%s/step-00000003", other, "") &&
              exists("%s/step-00000004", other, ""), "trash swept, step 3 pruned");
    /* re-saving an existing step replaces it (the old one moved away first) */
    st.step = 5;
    CHECK(lms_ckpt_save_train(other, &st, &m, &o, 2, NULL) == LMS_OK && exists("%s/step-00000005", other, "") &&
              !exists("%s/.trash-step-00000005", other, ""), "re-save of step 5");
    /* a step whose state is not finite is not saved; the earlier ones stay */
    o.v[17] = INFINITY;
    st.step = 6;
    lms_status s = lms_ckpt_save_train(other, &st, &m, &o, 1, NULL);
    CHECK(s == LMS_ERR_NUMERIC && contains(lms_last_error(), "optimizer state became infinite at step 6") &&
              contains(lms_last_error(), "lower --lr"), "non-finite save: %s", lms_last_error());
    CHECK(!exists("%s/step-00000006", other, "") && !exists("%s/.tmp-step-00000006", other, "") &&
              exists("%s/step-00000005", other, "") && exists("%s/step-00000004", other, ""),
          "a refused save changed the directory");
    o.v[17] = 0;
    m.params[3] = NAN;
    s = lms_ckpt_save_train(other, &st, &m, &o, 1, NULL);
    CHECK(s == LMS_ERR_NUMERIC && contains(lms_last_error(), "parameters became NaN"), "NaN: %s", lms_last_error());
    m.params[3] = 0;
    /* a non-finite checkpoint an older lmscale wrote (CRCs intact): refused
     * on read, so --resume of the directory falls back to the finite one */
    char nf[300];
    snprintf(nf, sizeof nf, "%s/nonfinite", g_root);
    st.step = 1;
    CHECK(lms_ckpt_save_train(nf, &st, &m, &o, 0, NULL) == LMS_OK, "finite step 1");
    float bad[8] = {1, 2, 3, INFINITY, 5, 6, 7, 8};
    int64_t shp[1] = {8};
    char *tmp = NULL;
    lms_ckpt_shard w;
    CHECK(lms_ckpt_begin(nf, 2, &tmp) == LMS_OK && lms_ckpt_shard_open(&w, tmp, 0, 1) == LMS_OK &&
              lms_ckpt_shard_put(&w, "model.wte", 1, shp, 0, bad, 8) == LMS_OK && lms_ckpt_shard_close(&w) == LMS_OK,
          "write inf by hand");
    st.step = 2;
    CHECK(lms_ckpt_finish(nf, tmp, 2, &st, &w, 1) == LMS_OK, "finish");
    lms_ckpt_shard_free(&w);
    free(tmp);
    snprintf(p, sizeof p, "%s/step-00000002", nf);
    lms_ckpt ck;
    float got[8];
    CHECK(lms_ckpt_open(&ck, p) == LMS_OK, "open");
    s = lms_ckpt_read_tensor(&ck, "model.wte", got, 8);
    CHECK(s == LMS_ERR_NUMERIC && contains(lms_last_error(), "infinity at element 3") &&
              contains(lms_last_error(), "earlier checkpoint"), "inf read: %s", lms_last_error());
    lms_ckpt_close(&ck);
    CHECK(lms_ckpt_resolve(nf, &lg, &out) == LMS_OK && contains(out, "step-00000001"), "falls back: %s", out);
    free(out);
    lms_gpt_free(&m);
    lms_adamw_free(&o);
}

int main(void) {
    snprintf(g_root, sizeof g_root, "/tmp/lms_test_ckpt.XXXXXX");
    if (!mkdtemp(g_root)) return 2;
    test_roundtrip();
    test_slices();
    test_chunks();
    test_tp_shards();
    test_resolve_and_prune();
    test_hf();
    test_hostile_index();
    test_hostile_hf();
    test_hostile_fs();
    sh("rm -rf '%s'", g_root);
    return test_summary("checkpoint");
}
