/* lmscale: the command. Dispatches to the subcommands; the only place that
 * exits. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

#define LMS_VERSION "0.1.0"

static void usage(FILE *out) {
    fprintf(out,
            "lmscale %s — train GPT-style language models, in C.\n\n"
            "usage: lmscale <command> [flags]      (lmscale <command> --help for its flags)\n\n"
            "commands:\n"
            "  demo       train a small model on generated arithmetic, score it, show samples\n"
            "  train      train a model on a text file\n"
            "  eval       loss and perplexity of a model on a text file\n"
            "  generate   sample text from a model (KV cache)\n"
            "  tokenizer  encode, decode, or train a byte-level BPE tokenizer\n"
            "  data       'data prepare': tokenize text or JSON Lines into token shards\n"
            "  bench      'bench train' (tokens/s, MFU, time per phase), 'bench comm' (collective bandwidth),\n             'bench attention' (attention vs the sgemm peak)\n"
            "  export     write a model or checkpoint as a Hugging Face GPT-2 directory\n"
            "  plot       loss curves of --metrics files as SVG\n"
            "  estimate   parameters, FLOPs, memory per device and time to train of one layout\n"
            "  plan       pick the fastest (dp, tp, pp, micro-batch, ZeRO, recompute) layout for a cluster\n",
            LMS_VERSION);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("lmscale %s\n", LMS_VERSION);
        return 0;
    }
    if (strcmp(cmd, "train") == 0) return cmd_train(argc - 2, argv + 2);
    if (strcmp(cmd, "eval") == 0) return cmd_eval(argc - 2, argv + 2);
    if (strcmp(cmd, "generate") == 0) return cmd_generate(argc - 2, argv + 2);
    if (strcmp(cmd, "export") == 0) return cmd_export(argc - 2, argv + 2);
    if (strcmp(cmd, "demo") == 0) return cmd_demo(argc - 2, argv + 2);
    if (strcmp(cmd, "bench") == 0) return cmd_bench(argc - 2, argv + 2);
    if (strcmp(cmd, "tokenizer") == 0) return cmd_tokenizer(argc - 2, argv + 2);
    if (strcmp(cmd, "data") == 0) return cmd_data(argc - 2, argv + 2);
    if (strcmp(cmd, "plot") == 0) return cmd_plot(argc - 2, argv + 2);
    if (strcmp(cmd, "estimate") == 0) return cmd_estimate(argc - 2, argv + 2);
    if (strcmp(cmd, "plan") == 0) return cmd_plan(argc - 2, argv + 2);
    fprintf(stderr, "lmscale: error: unknown command '%s' (commands: demo, train, eval, generate, tokenizer, data, export, bench, plot, estimate, plan; see "
            "'lmscale --help')\n", cmd);
    return 2;
}
