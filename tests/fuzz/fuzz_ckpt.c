/* libFuzzer: a checkpoint directory (index.json + one shard, split as in
 * fuzz_common.h) through lms_ckpt_open, lms_ckpt_verify, every tensor read,
 * and lms_ckpt_load_train into a model of the index's config when small. */
#include "fuzz_common.h"
#include "lmscale/checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *idx, *shard;
    size_t ni, ns;
    if (!fz_split(data, size, &idx, &ni, &shard, &ns)) return 0;
    fz_write(0, "index.json", idx, ni);
    fz_write(1, "shard-00000-of-00001.bin", shard, ns);
    lms_ckpt ck;
    if (lms_ckpt_open(&ck, fz_scratch()) != LMS_OK) return 0;
    if (lms_ckpt_verify(&ck) == LMS_OK) {
        for (int i = 0; i < ck.ntensors; i++) {
            uint64_t n = 1;
            for (int d = 0; d < ck.tensors[i].ndim; d++) n *= (uint64_t)ck.tensors[i].shape[d];
            if (n > (1u << 20)) continue;
            float *buf = malloc(sizeof(float) * (n ? n : 1));
            if (buf) (void)lms_ckpt_read_tensor(&ck, ck.tensors[i].name, buf, n);
            free(buf);
        }
        lms_gpt_config c = ck.state.cfg;
        if ((uint64_t)c.L * c.C * c.C + (uint64_t)c.Vp * c.C + (uint64_t)c.maxT * c.C < (1u << 16)) {
            lms_gpt m;
            lms_adamw o;
            if (lms_gpt_init(&m, &c, 1, 1, 0) == LMS_OK) {
                if (lms_adamw_init(&o, m.num_params, 0.9f, 0.95f, 1e-8f, 0.0f) == LMS_OK) {
                    (void)lms_ckpt_load_train(&ck, &m, &o);
                    lms_adamw_free(&o);
                }
                lms_gpt_free(&m);
            }
        }
    }
    lms_ckpt_close(&ck);
    return 0;
}
