/* Writes the seed corpora of the fuzz harnesses (tests/fuzz/corpus/<name>/)
 * with lmscale's own writers: a checkpoint, a Hugging Face export, token
 * shards of each format and a trained BPE vocabulary, all of a tiny model
 * so that the files stay small. Run by tests/fuzz/make_seeds.sh; the output
 * is committed. Usage: make_seeds OUT_DIR */
#include "fuzz_common.h"
#include "lmscale/checkpoint.h"
#include "lmscale/data.h"
#include "lmscale/json.h"

#include <sys/stat.h>

static const char *g_out;

static void put(const char *corpus, const char *name, const void *a, size_t na, const void *b, size_t nb,
                int split) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", g_out, corpus);
    mkdir(p, 0777);
    snprintf(p, sizeof p, "%s/%s/%s", g_out, corpus, name);
    FILE *f = fopen(p, "wb");
    if (!f) abort();
    if (split) {
        uint8_t l[4] = {(uint8_t)na, (uint8_t)(na >> 8), (uint8_t)(na >> 16), (uint8_t)(na >> 24)};
        fwrite(l, 1, 4, f);
    }
    fwrite(a, 1, na, f);
    if (nb) fwrite(b, 1, nb, f);
    fclose(f);
}

static unsigned char *slurp(const char *path, size_t *n) {
    unsigned char *d;
    if (lms_read_file(path, &d, n) != LMS_OK) {
        fprintf(stderr, "%s\n", lms_last_error());
        abort();
    }
    return d;
}

static void put_files(const char *corpus, const char *name, const char *dir, const char *fa, const char *fb) {
    char pa[700], pb[700];
    snprintf(pa, sizeof pa, "%s/%s", dir, fa);
    snprintf(pb, sizeof pb, "%s/%s", dir, fb);
    size_t na, nb;
    unsigned char *a = slurp(pa, &na), *b = slurp(pb, &nb);
    put(corpus, name, a, na, b, nb, 1);
    free(a);
    free(b);
}

static void wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> 8 * i);
}
static void wr64(uint8_t *p, uint64_t v) {
    wr32(p, (uint32_t)v);
    wr32(p + 4, (uint32_t)(v >> 32));
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: make_seeds OUT_DIR\n");
        return 2;
    }
    g_out = argv[1];
    mkdir(g_out, 0777);
    const char *tmp = fz_scratch();
    char dir[600];
    /* a checkpoint of a tiny model (index.json + shard) */
    lms_gpt_config cfg = {.L = 1, .NH = 1, .C = 4, .maxT = 4, .V = 8};
    lms_gpt m;
    lms_adamw o;
    if (lms_gpt_config_validate(&cfg) || lms_gpt_init(&m, &cfg, 1, 1, 0) ||
        lms_adamw_init(&o, m.num_params, 0.9f, 0.95f, 1e-8f, 0.1f))
        abort();
    lms_gpt_init_params(&m, 1);
    for (size_t i = 0; i < o.n; i++) o.m[i] = 0.001f * (float)(i % 7), o.v[i] = 1e-6f * (float)(i % 5);
    lms_ckpt_state st;
    lms_ckpt_state_init(&st, &cfg);
    st.step = 3;
    st.global_batch = 2;
    st.seq_len = 4;
    snprintf(dir, sizeof dir, "%s/ck", tmp);
    char *saved = NULL;
    if (lms_ckpt_save_train(dir, &st, &m, &o, 0, &saved) != LMS_OK) abort();
    put_files("ckpt", "tiny_model", saved, "index.json", "shard-00000-of-00001.bin");
    /* the same index alone is a JSON seed */
    char p[800];
    snprintf(p, sizeof p, "%s/index.json", saved);
    size_t n;
    unsigned char *d = slurp(p, &n);
    put("json", "ckpt_index", d, n, NULL, 0, 0);
    free(d);
    free(saved);
    /* a Hugging Face export of the same model */
    snprintf(dir, sizeof dir, "%s/hf", tmp);
    if (lms_hf_export(dir, &cfg, m.params) != LMS_OK) abort();
    put_files("safetensors", "tiny_export", dir, "config.json", "model.safetensors");
    snprintf(p, sizeof p, "%s/config.json", dir);
    d = slurp(p, &n);
    put("json", "hf_config", d, n, NULL, 0, 0);
    free(d);
    const char *doc = "{\"a\": [1, -2.5e3, true, false, null], \"s\": \"\\u00e9\\ud83d\\ude00\\n\", \"o\": {}}";
    put("json", "mixed", doc, strlen(doc), NULL, 0, 0);
    /* token shards: lmscale u16 and u32 (first part empty: the .bin alone) */
    int32_t ids[40];
    for (int i = 0; i < 40; i++) ids[i] = (i * 37) % 300;
    for (int width = 2; width <= 4; width += 2) {
        snprintf(p, sizeof p, "%s/t%d.bin", tmp, width);
        lms_shard_writer w;
        if (lms_shard_writer_open(&w, p, width) || lms_shard_writer_append(&w, ids, 40) || lms_shard_writer_commit(&w))
            abort();
        d = slurp(p, &n);
        put("shards", width == 2 ? "lmscale_u16" : "lmscale_u32", "", 0, d, n, 1);
        free(d);
    }
    /* llm.c: 256 x i32 header (magic 20240520, version 1, count), u16 ids */
    uint8_t llmc[1024 + 80] = {0};
    wr32(llmc, 20240520);
    wr32(llmc + 4, 1);
    wr32(llmc + 8, 40);
    for (int i = 0; i < 40; i++) llmc[1024 + 2 * i] = (uint8_t)ids[i], llmc[1025 + 2 * i] = (uint8_t)(ids[i] >> 8);
    put("shards", "llmc", "", 0, llmc, sizeof llmc, 1);
    /* Megatron MMIDIDX v1, uint16 (code 8): 2 sequences (15 + 25 tokens), 3
     * document indices; an 82-byte .idx (82 % 3 == 1: opened by prefix) */
    uint8_t idx[82] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', 0, 0};
    wr64(idx + 9, 1);
    idx[17] = 8;
    wr64(idx + 18, 2);
    wr64(idx + 26, 3);
    wr32(idx + 34, 15);
    wr32(idx + 38, 25);
    wr64(idx + 42, 0);
    wr64(idx + 50, 30);
    wr64(idx + 58, 0);
    wr64(idx + 66, 1);
    wr64(idx + 74, 2);
    put("shards", "megatron", idx, sizeof idx, llmc + 1024, 80, 1);
    const char *text = "the cat sat on the mat.\n";
    put("shards", "text", "", 0, text, strlen(text), 1);
    /* a trained BPE vocabulary (vocab.json + merges.txt) */
    snprintf(p, sizeof p, "%s/corpus.txt", tmp);
    FILE *f = fopen(p, "wb");
    for (int i = 0; i < 20; i++) fputs("the cat sat on the mat. a dog, a log; the end!\n", f);
    fclose(f);
    snprintf(dir, sizeof dir, "%s/bpe", tmp);
    const char *inputs[1] = {p};
    lms_bpe_train_opts bo = {.vocab_size = 280, .special = "<|endoftext|>", .verbose = 0};
    if (lms_bpe_train(inputs, 1, &bo, dir, NULL) != LMS_OK) {
        fprintf(stderr, "%s\n", lms_last_error());
        abort();
    }
    put_files("bpe", "trained_280", dir, "vocab.json", "merges.txt");
    lms_adamw_free(&o);
    lms_gpt_free(&m);
    return 0;
}
