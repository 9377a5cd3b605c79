/* libFuzzer: a Hugging Face directory: config.json and model.safetensors
 * (split as in fuzz_common.h) through lms_hf_read_config and, for a small
 * config, lms_hf_load_params. */
#include "fuzz_common.h"
#include "lmscale/checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *cfg_text, *st;
    size_t nc, ns;
    if (!fz_split(data, size, &cfg_text, &nc, &st, &ns)) return 0;
    fz_write(0, "config.json", cfg_text, nc);
    fz_write(1, "model.safetensors", st, ns);
    lms_gpt_config c;
    if (lms_hf_read_config(fz_scratch(), &c) != LMS_OK) {
        /* the weights alone, against a fixed small config */
        c = (lms_gpt_config){.L = 1, .NH = 1, .C = 4, .maxT = 4, .V = 8};
        if (lms_gpt_config_validate(&c) != LMS_OK) abort();
    }
    if ((uint64_t)c.L * c.C * c.C + (uint64_t)c.Vp * c.C + (uint64_t)c.maxT * c.C >= (1u << 16)) return 0;
    lms_gpt m;
    if (lms_gpt_init(&m, &c, 1, 1, 0) != LMS_OK) return 0;
    (void)lms_hf_load_params(fz_scratch(), &c, m.params);
    lms_gpt_free(&m);
    return 0;
}
