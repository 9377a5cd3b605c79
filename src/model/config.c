/* Model configurations: presets and validation. */
#include "lmscale/model.h"

#include <string.h>

#define GPT2_VOCAB 50257
#define BYTE_VOCAB 257

typedef struct {
    const char *name, *alias;
    int L, NH, C, maxT, V;
} preset;

static const preset PRESETS[] = {
    {"gpt2-124m", "gpt2", 12, 12, 768, 1024, GPT2_VOCAB},
    {"gpt2-350m", "gpt2-medium", 24, 16, 1024, 1024, GPT2_VOCAB},
    {"gpt2-774m", "gpt2-large", 36, 20, 1280, 1024, GPT2_VOCAB},
    {"gpt2-1558m", "gpt2-xl", 48, 25, 1600, 1024, GPT2_VOCAB},
    {"nano", NULL, 2, 2, 64, 128, BYTE_VOCAB},
    {"micro", NULL, 4, 4, 128, 256, BYTE_VOCAB},
    {"mini", NULL, 6, 6, 384, 256, BYTE_VOCAB},
};

int lms_pad_vocab(int V) { return (V + 63) / 64 * 64; }

const char *lms_gpt_preset_names(void) {
    return "gpt2-124m (gpt2), gpt2-350m (gpt2-medium), gpt2-774m (gpt2-large), gpt2-1558m "
           "(gpt2-xl), nano, micro, mini";
}

lms_status lms_gpt_preset(lms_gpt_config *cfg, const char *name) {
    for (size_t i = 0; i < sizeof PRESETS / sizeof PRESETS[0]; i++) {
        const preset *p = &PRESETS[i];
        if (strcmp(name, p->name) == 0 || (p->alias && strcmp(name, p->alias) == 0)) {
            cfg->L = p->L;
            cfg->NH = p->NH;
            cfg->C = p->C;
            cfg->maxT = p->maxT;
            cfg->V = p->V;
            cfg->Vp = lms_pad_vocab(p->V);
            cfg->tp = 0;
            return LMS_OK;
        }
    }
    return lms_errorf(LMS_ERR_INVALID_ARG, "--model '%s' is not a known preset (choose one of: %s; "
                      "or give --num-layers/--num-heads/--hidden-size)", name, lms_gpt_preset_names());
}

lms_status lms_gpt_config_validate(lms_gpt_config *cfg) {
    if (cfg->L < 1 || cfg->L > 1024)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--num-layers %d is out of range (1..1024)", cfg->L);
    if (cfg->NH < 1)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--num-heads %d must be at least 1", cfg->NH);
    if (cfg->C < 1 || cfg->C > 65536)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--hidden-size %d is out of range (1..65536)", cfg->C);
    if (cfg->C % cfg->NH != 0)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--num-heads %d does not divide --hidden-size %d: "
                          "choose a head count that divides the hidden size (e.g. %d)",
                          cfg->NH, cfg->C, cfg->C % 64 == 0 ? cfg->C / 64 : 1);
    if (cfg->maxT < 1 || cfg->maxT > 65536)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--max-seq-len %d is out of range (1..65536)", cfg->maxT);
    if (cfg->V < 2 || cfg->V > (1 << 24))
        return lms_errorf(LMS_ERR_INVALID_ARG, "--vocab-size %d is out of range (2..16777216)", cfg->V);
    cfg->Vp = lms_pad_vocab(cfg->V);
    cfg->tp = 0; /* a whole model (lms_gpt_config_local makes a tp rank's part) */
    return LMS_OK;
}

lms_status lms_gpt_config_tp(lms_gpt_config *cfg, int tp) {
    if (tp < 1) return lms_errorf(LMS_ERR_INVALID_ARG, "tensor parallelism %d must be at least 1", tp);
    if (cfg->NH % tp != 0)
        return lms_errorf(LMS_ERR_INVALID_ARG, "tensor parallelism %d does not divide the %d attention heads: "
                          "choose a tp degree that divides --num-heads", tp, cfg->NH);
    cfg->Vp = lms_pad_vocab_tp(cfg->V, tp);
    return LMS_OK;
}
