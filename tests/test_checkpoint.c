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
    sh("sed -i 's/\"version\": 1,/\"version\": 99,/' '%s.trunc/index.json'", saved);
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
    /* a gap (drop a slice from the index) is refused */
    sh("sed -i 's/, {\"file\": \"shard-00001-of-00002.bin\", \"offset\": 1216, [^}]*}//' '%s/step-00000003/index.json'", root);
    CHECK(lms_ckpt_open(&ck, dir) == LMS_OK, "open");
    lms_status s = lms_ckpt_read_tensor(&ck, "x", b, 1000);
    CHECK(s == LMS_ERR_FORMAT && contains(lms_last_error(), "cover"), "gap: %s", lms_last_error());
    lms_ckpt_close(&ck);
    lms_ckpt_shard_free(&r0);
    lms_ckpt_shard_free(&r1);
    free(tmp);
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

int main(void) {
    snprintf(g_root, sizeof g_root, "/tmp/lms_test_ckpt.XXXXXX");
    if (!mkdtemp(g_root)) return 2;
    test_roundtrip();
    test_slices();
    test_resolve_and_prune();
    test_hf();
    sh("rm -rf '%s'", g_root);
    return test_summary("checkpoint");
}
