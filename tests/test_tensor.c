/* Core's dtypes and tensors: fp32 <-> bf16 / fp16 against values PyTorch
 * converted (tests/fixtures/dtype_torch.txt, written by
 * tests/ref/dtype_reference.py) and against values worked out by hand;
 * tensor shapes, shards, binding and their errors. */
#include "check.h"
#include "lmscale/backend.h"
#include "lmscale/tensor.h"

#include <string.h>

static uint32_t bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}
static float from_bits(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static void test_known_values(void) {
    /* bf16 keeps the top 16 bits, rounding the low 16 to nearest, ties to even */
    CHECK(lms_fp32_to_bf16(1.0f) == 0x3F80, "bf16(1)");
    CHECK(lms_fp32_to_bf16(from_bits(0x3F808000)) == 0x3F80, "bf16 tie rounds to even (down)");
    CHECK(lms_fp32_to_bf16(from_bits(0x3F818000)) == 0x3F82, "bf16 tie rounds to even (up)");
    CHECK(lms_fp32_to_bf16(from_bits(0x3F808001)) == 0x3F81, "bf16 above the tie rounds up");
    CHECK(lms_fp32_to_bf16(from_bits(0x7F7FFFFF)) == 0x7F80, "bf16: FLT_MAX rounds to inf");
    uint16_t bnan = lms_fp32_to_bf16(from_bits(0x7F800001)); /* a signalling NaN must not become inf */
    CHECK((bnan & 0x7F80) == 0x7F80 && (bnan & 0x7F), "bf16 NaN stays NaN: %04x", bnan);
    CHECK(lms_bf16_to_fp32(0xC040) == -3.0f, "bf16 -3 back to fp32");
    /* fp16: 1 + 2^-10 is the next value after 1; 65504 the largest finite */
    CHECK(lms_fp32_to_fp16(1.0f) == 0x3C00, "fp16(1)");
    CHECK(lms_fp32_to_fp16(-2.0f) == 0xC000, "fp16(-2)");
    CHECK(lms_fp32_to_fp16(65504.0f) == 0x7BFF, "fp16(65504)");
    CHECK(lms_fp32_to_fp16(65519.0f) == 0x7BFF, "fp16(65519) rounds down to 65504");
    CHECK(lms_fp32_to_fp16(65520.0f) == 0x7C00, "fp16(65520) is the tie: rounds to even = inf");
    CHECK(lms_fp32_to_fp16(1.0f + 0x1p-11f) == 0x3C00, "fp16 tie 1+2^-11 rounds to even (1)");
    CHECK(lms_fp32_to_fp16(1.0f + 3 * 0x1p-11f) == 0x3C02, "fp16 tie 1+3*2^-11 rounds to even (up)");
    CHECK(lms_fp32_to_fp16(0x1p-24f) == 0x0001, "fp16 smallest subnormal");
    CHECK(lms_fp32_to_fp16(0x1p-25f) == 0x0000, "fp16: half the smallest subnormal ties to 0");
    CHECK(lms_fp32_to_fp16(1.5f * 0x1p-24f) == 0x0002, "fp16: 1.5 subnormal units tie to even (2)");
    CHECK(lms_fp32_to_fp16(0x1p-14f) == 0x0400, "fp16 smallest normal");
    CHECK(lms_fp32_to_fp16(-0.0f) == 0x8000, "fp16 -0");
    CHECK(lms_fp16_to_fp32(0x0001) == 0x1p-24f, "fp16 subnormal back");
    CHECK(lms_fp16_to_fp32(0x7BFF) == 65504.0f, "fp16 max back");
    CHECK(lms_fp16_to_fp32(0xFC00) == -INFINITY, "fp16 -inf back");
    CHECK(isnan(lms_fp16_to_fp32(0x7E00)), "fp16 NaN back");
    /* every fp16 and bf16 value survives the round trip through fp32 */
    int bad16 = 0, badb = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = lms_fp16_to_fp32((uint16_t)h), g = lms_bf16_to_fp32((uint16_t)h);
        if (!isnan(f) && lms_fp32_to_fp16(f) != h) bad16++;
        if (!isnan(g) && lms_fp32_to_bf16(g) != h) badb++;
    }
    CHECK(bad16 == 0, "%d fp16 values do not round-trip", bad16);
    CHECK(badb == 0, "%d bf16 values do not round-trip", badb);
    CHECK(lms_dtype_size(LMS_DT_BF16) == 2 && lms_dtype_size(LMS_DT_F16) == 2 && lms_dtype_size(LMS_DT_F32) == 4,
          "dtype sizes");
    CHECK(!strcmp(lms_dtype_name(LMS_DT_BF16), "bf16") && !strcmp(lms_dtype_name(LMS_DT_F16), "fp16"), "names");
}

static void test_against_torch(void) {
    const char *path = "tests/fixtures/dtype_torch.txt";
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "cannot open %s (run from the source directory)", path);
    if (!f) return;
    char line[128];
    int n = 0, bad_b = 0, bad_h = 0, bad_nan = 0, bad_n = 0;
    float xs[8];
    uint16_t hb[8], hh[8];
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        unsigned u, b, h;
        if (sscanf(line, "%x %x %x", &u, &b, &h) == 3) {
            float x = from_bits(u);
            if (lms_fp32_to_bf16(x) != b) {
                if (bad_b++ < 5) fprintf(stderr, "bf16(%08x): %04x, PyTorch %04x\n", u, lms_fp32_to_bf16(x), b);
            }
            if (lms_fp32_to_fp16(x) != h) {
                if (bad_h++ < 5) fprintf(stderr, "fp16(%08x): %04x, PyTorch %04x\n", u, lms_fp32_to_fp16(x), h);
            }
            if (n < 8) { /* the array forms agree with the scalar ones */
                xs[n] = x;
                hb[n] = (uint16_t)b;
                hh[n] = (uint16_t)h;
            }
            n++;
        } else if (sscanf(line, "%x", &u) == 1) { /* a NaN: it must stay NaN */
            if (!isnan(lms_bf16_to_fp32(lms_fp32_to_bf16(from_bits(u)))) ||
                !isnan(lms_fp16_to_fp32(lms_fp32_to_fp16(from_bits(u)))))
                bad_nan++;
        }
    }
    fclose(f);
    CHECK(n > 2000, "%s: only %d values", path, n);
    CHECK(bad_b == 0, "%d of %d values convert to bf16 unlike PyTorch", bad_b, n);
    CHECK(bad_h == 0, "%d of %d values convert to fp16 unlike PyTorch", bad_h, n);
    CHECK(bad_nan == 0, "%d NaNs did not stay NaN", bad_nan);
    uint16_t ob[8], oh[8];
    float back[8];
    lms_fp32_to_bf16_n(ob, xs, 8);
    lms_fp32_to_fp16_n(oh, xs, 8);
    for (int i = 0; i < 8; i++) bad_n += ob[i] != hb[i] || oh[i] != hh[i];
    lms_fp16_to_fp32_n(back, oh, 8);
    for (int i = 0; i < 8; i++) bad_n += bits(back[i]) != bits(lms_fp16_to_fp32(oh[i]));
    lms_bf16_to_fp32_n(back, ob, 8);
    for (int i = 0; i < 8; i++) bad_n += bits(back[i]) != ((uint32_t)ob[i] << 16);
    CHECK(bad_n == 0, "array conversions differ from scalar ones (%d)", bad_n);
    printf("dtype conversions: %d values match PyTorch (bf16 and fp16)\n", n);
}

static void test_tensors(void) {
    lms_tensor t;
    char d[160];
    const int64_t shape[2] = {768, 1536}, global[2] = {768, 3072}, off[2] = {0, 1536}, bad_off[2] = {0, 1537};
    CHECK(lms_tensor_init(&t, "h.0.mlp.c_fc.weight", LMS_DT_F32, 2, shape) == LMS_OK, "init");
    CHECK(lms_tensor_numel(&t) == 768u * 1536 && lms_tensor_nbytes(&t) == 768u * 1536 * 4, "numel, nbytes");
    CHECK(!lms_tensor_is_shard(&t), "a whole tensor is no shard");
    CHECK(lms_tensor_set_shard(&t, global, bad_off) == LMS_ERR_INVALID_ARG && strstr(lms_last_error(), "dimension 1"),
          "a shard past the end is refused: %s", lms_last_error());
    CHECK(lms_tensor_set_shard(&t, global, off) == LMS_OK && lms_tensor_is_shard(&t), "shard");
    lms_tensor_describe(&t, d, sizeof d);
    CHECK(!strcmp(d, "h.0.mlp.c_fc.weight fp32 (768,1536) at [0,1536] of (768,3072)"), "describe: %s", d);
    CHECK(lms_tensor_data(&t) == NULL && lms_tensor_f32(&t) == NULL, "unbound");

    lms_backend be;
    CHECK(lms_backend_init(&be, "cpu") == LMS_OK, "backend");
    lms_buffer buf;
    CHECK(be.i->buffer_alloc(&be, 4096, "a test buffer", &buf) == LMS_OK, "buffer");
    lms_tensor a, h;
    const int64_t s1[1] = {512}, s2[1] = {1000};
    lms_tensor_init(&a, "a", LMS_DT_F32, 1, s1);
    CHECK(lms_tensor_bind(&a, &buf, 2048) == LMS_OK && lms_tensor_f32(&a) == (float *)((char *)buf.data + 2048),
          "bind at an offset");
    CHECK(lms_tensor_bind(&a, &buf, 2052) == LMS_ERR_INTERNAL && strstr(lms_last_error(), "do not fit"),
          "a tensor past the buffer's end is refused: %s", lms_last_error());
    lms_tensor_init(&h, "h", LMS_DT_BF16, 1, s2);
    CHECK(lms_tensor_bind(&h, &buf, 1) == LMS_ERR_INTERNAL && strstr(lms_last_error(), "multiple"),
          "misaligned: %s", lms_last_error());
    CHECK(lms_tensor_bind(&h, &buf, 2) == LMS_OK && lms_tensor_f32(&h) == NULL && lms_tensor_data(&h),
          "a bf16 tensor is no fp32 one");
    be.i->buffer_free(&be, &buf);
    CHECK(buf.data == NULL, "freed");

    const int64_t s5[5] = {1, 2, 3, 4, 5}, neg[2] = {3, -1};
    CHECK(lms_tensor_init(&t, "x", LMS_DT_F32, 5, s5) == LMS_ERR_INVALID_ARG, "5 dimensions refused");
    CHECK(lms_tensor_init(&t, "x", LMS_DT_F32, 2, neg) == LMS_ERR_INVALID_ARG, "negative dimension refused");
    CHECK(lms_tensor_init(&t, "x", LMS_DT_COUNT, 1, s1) == LMS_ERR_INVALID_ARG, "unknown dtype refused");
    char longname[100];
    memset(longname, 'n', sizeof longname - 1);
    longname[99] = 0;
    CHECK(lms_tensor_init(&t, longname, LMS_DT_F32, 1, s1) == LMS_ERR_INVALID_ARG, "long name refused");
}

int main(void) {
    test_known_values();
    test_against_torch();
    test_tensors();
    return test_summary("test_tensor");
}
