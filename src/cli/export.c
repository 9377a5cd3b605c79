/* `lmscale export --hf DIR`: a model file or training checkpoint as a
 * Hugging Face GPT-2 directory; and cli_load_model, the one place eval,
 * generate and export turn --load / --init / --resume into a model. */
#include "cli.h"
#include "lmscale/checkpoint.h"

#include <stdlib.h>
#include <string.h>

lms_status cli_load_model(const char *load, const char *init, const char *resume, int B, int T, lms_gpt *m,
                          const lms_logger *lg) {
    memset(m, 0, sizeof *m);
    int given = (load != NULL) + (init != NULL) + (resume != NULL);
    if (given != 1)
        return lms_errorf(LMS_ERR_INVALID_ARG, "give exactly one of --load FILE, --init DIR or --resume DIR "
                          "(%d given)", given);
    if (load) return lms_model_load(load, m, B, T, 0, NULL);
    lms_status st = LMS_OK;
    lms_gpt_config cfg;
    char *path = NULL;
    lms_ckpt ck;
    memset(&ck, 0, sizeof ck);
    if (init) {
        LMS_TRY(lms_hf_read_config(init, &cfg));
    } else {
        LMS_TRY(lms_ckpt_resolve(resume, lg, &path));
        LMS_TRY(lms_ckpt_open(&ck, path));
        cfg = ck.state.cfg;
    }
    if (B <= 0) B = 1;
    if (T <= 0) T = cfg.maxT;
    if (T > cfg.maxT) {
        st = lms_errorf(LMS_ERR_INVALID_ARG, "--seq-len %d is above the model's maximum %d (from '%s'): use "
                        "--seq-len %d or less", T, cfg.maxT, init ? init : path, cfg.maxT);
        goto fail;
    }
    LMS_TRY(lms_gpt_init(m, &cfg, B, T, 0));
    if (init)
        LMS_TRY(lms_hf_load_params(init, &cfg, m->params));
    else
        LMS_TRY(lms_ckpt_load_train(&ck, m, NULL));
    lms_ckpt_close(&ck);
    free(path);
    return LMS_OK;
fail:
    lms_ckpt_close(&ck);
    free(path);
    lms_gpt_free(m);
    return st;
}

int cmd_export(int argc, char **argv) {
    const char *hf = NULL, *load = NULL, *resume = NULL;
    const cli_opt opts[] = {
        {"hf", CLI_STR, &hf, "DIR", "write config.json + model.safetensors (GPT2LMHeadModel) into DIR (required)"},
        {"load", CLI_STR, &load, "FILE", "model file from 'train --save-model'"},
        {"resume", CLI_STR, &resume, "DIR", "training checkpoint, or the newest valid one in DIR"},
    };
    cli_spec spec = {"export", "lmscale export: write a model as a Hugging Face GPT-2 directory.",
                     "lmscale export --hf DIR (--load FILE | --resume CKPT)", opts,
                     (int)(sizeof opts / sizeof opts[0]),
                     "the directory loads with transformers' GPT2LMHeadModel.from_pretrained(DIR), and with\n"
                     "'lmscale train|eval|generate --init DIR'"};
    int help;
    lms_status st = cli_parse(&spec, argc, argv, &help);
    if (st != LMS_OK) return cli_fail("export", st);
    if (help) {
        cli_print_help(&spec, stdout);
        return 0;
    }
    lms_ctx ctx;
    lms_ctx_init(&ctx, 0, 0);
    lms_gpt m = {0};
    if (!hf) {
        st = lms_errorf(LMS_ERR_INVALID_ARG, "--hf DIR is required: the directory to write");
        goto fail;
    }
    if (!load && !resume) {
        st = lms_errorf(LMS_ERR_INVALID_ARG, "give the model to export: --load FILE or --resume CKPT");
        goto fail;
    }
    LMS_TRY(cli_load_model(load, NULL, resume, 1, 1, &m, &ctx.log));
    LMS_TRY(lms_hf_export(hf, &m.cfg, m.params));
    printf("exported L=%d H=%d C=%d maxT=%d V=%d (%zu parameters) to %s\n", m.cfg.L, m.cfg.NH, m.cfg.C,
           m.cfg.maxT, m.cfg.V, m.num_params, hf);
fail:
    lms_gpt_free(&m);
    return st == LMS_OK ? 0 : cli_fail("export", st);
}
