/* The flag parser: --name VALUE, --name=VALUE, boolean --name; strict
 * number parsing; unknown flags answered with the closest known name. */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int edit_distance(const char *a, const char *b) {
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 63 || lb > 63) return 99;
    int d[64][64];
    for (int i = 0; i <= la; i++) d[i][0] = i;
    for (int j = 0; j <= lb; j++) d[0][j] = j;
    for (int i = 1; i <= la; i++)
        for (int j = 1; j <= lb; j++) {
            int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
            d[i][j] = c;
        }
    return d[la][lb];
}

/* The known flag an unknown one most likely meant: the smallest edit
 * distance, where a name that holds the unknown one whole ("layers" in
 * "num-layers") or is held by it counts as distance 1; NULL when nothing is
 * close (distance above a third of the longer name, at least 2). Underscores
 * count as dashes (--num_layers, as Megatron's Python spells them). */
static const char *closest_flag(const cli_spec *spec, const char *flag) {
    char f[64];
    snprintf(f, sizeof f, "%s", flag);
    for (char *c = f; *c; c++)
        if (*c == '_') *c = '-';
    const char *best = NULL;
    int bd = 99;
    for (int k = 0; k < spec->nopts; k++) {
        const char *n = spec->opts[k].name;
        int d = edit_distance(f, n);
        size_t lf = strlen(f), ln = strlen(n), lmax = lf > ln ? lf : ln;
        if (d > 0 && lf >= 3 && ln >= 3 && (strstr(n, f) || strstr(f, n))) d = 1;
        int limit = (int)lmax / 3 > 2 ? (int)lmax / 3 : 2;
        if (d <= limit && d < bd) {
            bd = d;
            best = n;
        }
    }
    return best;
}

static lms_status set_value(const cli_spec *spec, const cli_opt *o, const char *v) {
    char *end = NULL;
    errno = 0;
    switch (o->kind) {
    case CLI_INT: {
        long x = strtol(v, &end, 10);
        if (!*v || *end || errno || x < INT_MIN || x > INT_MAX)
            return lms_errorf(LMS_ERR_INVALID_ARG, "--%s expects an integer, got '%s'", o->name, v);
        *(int *)o->dst = (int)x;
        return LMS_OK;
    }
    case CLI_U64: {
        if (*v == '-')
            return lms_errorf(LMS_ERR_INVALID_ARG, "--%s expects a non-negative integer, got '%s'", o->name, v);
        unsigned long long x = strtoull(v, &end, 10);
        if (!*v || *end || errno)
            return lms_errorf(LMS_ERR_INVALID_ARG, "--%s expects a non-negative integer, got '%s'", o->name, v);
        *(uint64_t *)o->dst = (uint64_t)x;
        return LMS_OK;
    }
    case CLI_FLOAT: {
        float x = strtof(v, &end);
        if (!*v || *end || errno || !isfinite(x))
            return lms_errorf(LMS_ERR_INVALID_ARG, "--%s expects a finite number, got '%s'", o->name, v);
        *(float *)o->dst = x;
        return LMS_OK;
    }
    case CLI_STR:
        *(const char **)o->dst = v;
        return LMS_OK;
    case CLI_BOOL:
        break;
    }
    return lms_errorf(LMS_ERR_INTERNAL, "flag --%s of lmscale %s has no value kind", o->name, spec->cmd);
}

lms_status cli_parse(const cli_spec *spec, int argc, char **argv, int *help) {
    return cli_parse_given(spec, argc, argv, help, NULL);
}

lms_status cli_parse_given(const cli_spec *spec, int argc, char **argv, int *help, unsigned char *given) {
    *help = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            *help = 1;
            return LMS_OK;
        }
        if (strncmp(a, "--", 2) != 0 || !a[2])
            return lms_errorf(LMS_ERR_INVALID_ARG, "unexpected argument '%s' (flags start with --; see "
                              "'lmscale %s --help')", a, spec->cmd);
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const cli_opt *o = NULL;
        for (int k = 0; k < spec->nopts; k++)
            if (strlen(spec->opts[k].name) == nlen && strncmp(spec->opts[k].name, name, nlen) == 0)
                o = &spec->opts[k];
        if (!o) {
            char flag[64];
            snprintf(flag, sizeof flag, "%.*s", (int)(nlen < 60 ? nlen : 60), name);
            const char *best = closest_flag(spec, flag);
            if (best)
                return lms_errorf(LMS_ERR_INVALID_ARG, "unknown flag '--%s' for 'lmscale %s' (did you "
                                  "mean '--%s'? see 'lmscale %s --help')", flag, spec->cmd, best, spec->cmd);
            return lms_errorf(LMS_ERR_INVALID_ARG, "unknown flag '--%s' for 'lmscale %s' (see 'lmscale %s "
                              "--help')", flag, spec->cmd, spec->cmd);
        }
        if (given) given[o - spec->opts] = 1;
        if (o->kind == CLI_BOOL) {
            if (eq)
                return lms_errorf(LMS_ERR_INVALID_ARG, "--%s takes no value", o->name);
            *(int *)o->dst = 1;
            continue;
        }
        const char *v;
        if (eq)
            v = eq + 1;
        else if (i + 1 < argc)
            v = argv[++i];
        else
            return lms_errorf(LMS_ERR_INVALID_ARG, "--%s needs a value (%s)", o->name,
                              o->metavar ? o->metavar : "VALUE");
        LMS_CHECK(set_value(spec, o, v));
    }
    return LMS_OK;
}

/* The presets' sizes, from the model module's own table. */
static void print_presets(FILE *out) {
    fprintf(out, "\nmodel presets (--model NAME; the size flags override single dimensions):\n");
    char names[512];
    snprintf(names, sizeof names, "%s", lms_gpt_preset_names()); /* "a (alias), b, c" */
    for (char *s = names, *e; s && *s; s = e) {
        e = strstr(s, ", ");
        if (e) {
            *e = 0;
            e += 2;
        }
        char name[64], alias[64] = "";
        if (sscanf(s, "%63s (%63[^)])", name, alias) < 1) continue;
        lms_gpt_config c;
        lms_tensor_view *v;
        int nv;
        size_t np = 0;
        if (lms_gpt_preset(&c, name) != LMS_OK || lms_gpt_layout(&c, &v, &nv, &np) != LMS_OK) continue;
        free(v);
        char label[140];
        snprintf(label, sizeof label, "%s%s%s%s", name, *alias ? " (" : "", alias, *alias ? ")" : "");
        fprintf(out, "  %-24s L=%-2d H=%-2d C=%-4d T=%-4d V=%-5d %8.2fM parameters\n", label, c.L, c.NH, c.C,
                c.maxT, c.V, (double)np / 1e6);
    }
    fprintf(out, "  (V=257 is the byte vocabulary; give --vocab-size 50257 for GPT-2 token data)\n");
}

int cli_given(const cli_spec *spec, const unsigned char *given, const char *name) {
    for (int k = 0; given && k < spec->nopts; k++)
        if (!strcmp(spec->opts[k].name, name)) return given[k];
    return 0;
}

void cli_print_help(const cli_spec *spec, FILE *out) {
    fprintf(out, "%s\n\nusage: %s\n\nflags:\n", spec->summary, spec->usage);
    for (int k = 0; k < spec->nopts; k++) {
        const cli_opt *o = &spec->opts[k];
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", o->name, o->metavar ? " " : "", o->metavar ? o->metavar : "");
        fprintf(out, "  %-28s %s", left, o->help);
        switch (o->kind) {
        case CLI_INT: fprintf(out, " [%d]", *(int *)o->dst); break;
        case CLI_FLOAT: fprintf(out, " [%g]", *(float *)o->dst); break;
        case CLI_U64: fprintf(out, " [%llu]", (unsigned long long)*(uint64_t *)o->dst); break;
        case CLI_STR:
            if (*(const char **)o->dst) fprintf(out, " [%s]", *(const char **)o->dst);
            break;
        case CLI_BOOL: break;
        }
        fputc('\n', out);
    }
    fprintf(out, "  %-28s %s\n", "--help", "show this help");
    if (spec->epilog) fprintf(out, "\n%s\n", spec->epilog);
    for (int k = 0; k < spec->nopts; k++)
        if (strcmp(spec->opts[k].name, "model") == 0) print_presets(out);
}

int cli_launch_rank(void) {
    const char *vars[] = {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = lms_env(vars[i]);
        if (v) return atoi(v);
    }
    return 0;
}

int cli_fail(const char *cmd, lms_status st) {
    int rank = cli_launch_rank();
    if (st == LMS_ERR_INVALID_ARG) {
        if (rank == 0) {
            fprintf(stderr, "lmscale %s: error: %s\n", cmd, lms_last_error());
        } else {
            /* Every rank found the same error; rank 0 says it. Exit a moment
             * later so the launcher, which ends the job at the first
             * non-zero exit, does not kill rank 0 before it has printed. */
            struct timespec ts = {1, 0};
            nanosleep(&ts, NULL);
        }
    } else if (rank == 0 && !lms_env("OMPI_COMM_WORLD_SIZE") && !lms_env("PMI_SIZE")) {
        fprintf(stderr, "lmscale %s: error: %s\n", cmd, lms_last_error());
    } else {
        fprintf(stderr, "lmscale %s: error: [rank %d] %s\n", cmd, rank, lms_last_error());
    }
    return st == LMS_ERR_INVALID_ARG ? 2 : 1;
}

lms_status cli_model_config(const cli_model_opts *mo, lms_gpt_config *cfg) {
    LMS_CHECK(lms_gpt_preset(cfg, mo->preset));
    if (mo->L != -1) cfg->L = mo->L;
    if (mo->NH != -1) cfg->NH = mo->NH;
    if (mo->C != -1) cfg->C = mo->C;
    if (mo->maxT != -1) cfg->maxT = mo->maxT;
    if (mo->V != -1) cfg->V = mo->V;
    return lms_gpt_config_validate(cfg);
}

lms_status cli_take_list(int argc, char **argv, const char *name, const char ***list, int *n, char ***rest,
                         int *nrest) {
    *list = NULL;
    *n = 0;
    *rest = malloc(sizeof(char *) * (size_t)(argc + 2));
    const char **l = malloc(sizeof(char *) * (size_t)(argc + 1));
    if (!*rest || !l) {
        free(*rest);
        free(l);
        *rest = NULL;
        return lms_errorf(LMS_ERR_OOM, "out of memory parsing flags");
    }
    size_t nlen = strlen(name);
    int k = 0, m = 0, seen = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) == 0 && strncmp(a + 2, name, nlen) == 0 && (a[2 + nlen] == 0 || a[2 + nlen] == '=')) {
            if (a[2 + nlen] == '=') l[k++] = a + 3 + nlen;
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) l[k++] = argv[++i];
            seen = 1;
            continue;
        }
        (*rest)[m++] = argv[i];
    }
    if (seen && k == 0) {
        free(*rest);
        free(l);
        *rest = NULL;
        return lms_errorf(LMS_ERR_INVALID_ARG, "--%s needs at least one value", name);
    }
    /* split comma lists in place (argv strings are writable) */
    int total = 0;
    for (int i = 0; i < k; i++)
        for (const char *c = l[i]; *c; c++) total += *c == ',';
    const char **out = malloc(sizeof(char *) * (size_t)(k + total + 1));
    if (!out) {
        free(*rest);
        free(l);
        *rest = NULL;
        return lms_errorf(LMS_ERR_OOM, "out of memory parsing flags");
    }
    int o = 0;
    for (int i = 0; i < k; i++) {
        char *s = (char *)l[i];
        for (char *c; (c = strchr(s, ',')); s = c + 1) {
            *c = 0;
            if (*s) out[o++] = s;
        }
        if (*s) out[o++] = s;
    }
    free(l);
    *list = out;
    *n = o;
    *nrest = m;
    return LMS_OK;
}

void cli_list_free(const char **list, char **rest) {
    free((void *)list);
    free(rest);
}
