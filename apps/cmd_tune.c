/* tessera tune: times GEMM configurations on a model's shapes and stores the
 * best one for this device. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *tune_help =
    "usage: tessera tune [--arch A | --model DIR | --shapes MxNxK,...] [--batches 1,32]\n"
    "                    [--trials N] [--seed S] [--seconds S] [--dry-run] [--quiet]\n"
    "                    [--json] [--device D]\n"
    "\n"
    "Finds the fastest matrix-multiply configuration for this device on a model's\n"
    "GEMM shapes and stores it in the cache directory\n"
    "($TESSERA_CACHE_DIR/tuning/, by default ~/.cache/tessera/tuning/), keyed by the\n"
    "device, platform and driver. Every later tessera command on this device uses it;\n"
    "TESSERA_NO_TUNING=1 ignores it.\n"
    "\n"
    "Candidates: tessera's own GEMM kernel with 1, 2, 4 or 8 column strips per\n"
    "work-item (CPU devices), CLBlast with its own parameters, the built-in table's\n"
    "parameters, N random valid CLBlast Xgemm configurations, and the best CLBlast\n"
    "one with its direct kernel never or always used. Every candidate's results are\n"
    "checked against a host reference; a wrong one is rejected.\n"
    "\n"
    "  --arch A       ViT-B-32 (default), ViT-B-16 or ViT-L-14: the linear layers of\n"
    "                 both towers\n"
    "  --model DIR    the shapes of a CLIP model directory\n"
    "  --shapes L     explicit GEMM shapes, e.g. 1600x3072x768,50x768x768\n"
    "  --batches L    batch sizes whose shapes count equally per item (default 1,32)\n"
    "  --trials N     random CLBlast configurations to try (default 12, at most 52)\n"
    "  --seed S       seed of the random configurations (default 1)\n"
    "  --seconds S    timing per shape and candidate (default 0.1)\n"
    "  --dry-run      report, but do not write the tuning file\n"
    "  --quiet        no line per candidate on stderr\n"
    "  --json         machine-readable output\n"
    "\n"
    "Exit codes: 0 ok, 1 runtime error, 2 usage error.\n";

typedef struct {
    int quiet;
} progress_state;

static void on_progress(void *user, int done, int total, const char *desc, double score)
{
    progress_state *ps = user;
    if (ps->quiet)
        return;
    if (score >= 0)
        fprintf(stderr, "[%d/%d] %.6f s  %s\n", done, total, score, desc);
    else
        fprintf(stderr, "[%d/%d] failed     %s\n", done, total, desc);
}

static int parse_shapes(const char *s, tsr_gemm_shape *out, int max)
{
    int n = 0;
    for (const char *p = s; *p;) {
        long d[3];
        for (int i = 0; i < 3; i++) {
            char *end;
            d[i] = strtol(p, &end, 10);
            if (end == p || d[i] < 1 || d[i] > 65536 || (i < 2 && *end != 'x') ||
                (i == 2 && *end && *end != ','))
                return 0;
            p = *end ? end + 1 : end;
        }
        if (n >= max)
            return 0;
        out[n++] = (tsr_gemm_shape){(int)d[0], (int)d[1], (int)d[2], 1.0};
    }
    return n;
}

int cmd_tune(int argc, char **argv)
{
    const char *arch = NULL, *model = NULL, *shapes_s = NULL, *batches = "1,32";
    const char *trials_s = "12", *seed_s = "1", *seconds_s = "0.1", *device = NULL;
    int dry = 0, quiet = 0, json = 0;
    cli_opt opts[] = {{"arch", 1, &arch, NULL},         {"model", 1, &model, NULL},
                      {"shapes", 1, &shapes_s, NULL},   {"batches", 1, &batches, NULL},
                      {"trials", 1, &trials_s, NULL},   {"seed", 1, &seed_s, NULL},
                      {"seconds", 1, &seconds_s, NULL}, {"device", 1, &device, NULL},
                      {"dry-run", 0, NULL, &dry},       {"quiet", 0, NULL, &quiet},
                      {"json", 0, NULL, &json}};
    const char **pos = NULL;
    int npos = 0;
    int rc = cli_parse(argc, argv, opts, sizeof opts / sizeof opts[0], &pos, &npos);
    free(pos);
    if (rc < 0) {
        fputs(tune_help, stdout);
        return EXIT_OK;
    }
    if (rc != EXIT_OK)
        return rc;
    if (npos > 0)
        return cli_usage_error("tune", "unexpected argument (see 'tessera tune --help')");
    if ((arch != NULL) + (model != NULL) + (shapes_s != NULL) > 1)
        return cli_usage_error("tune", "give one of --arch, --model and --shapes");
    int bl[16], nb = cli_parse_ints(batches, bl, 16, 1, 4096);
    if (!nb)
        return cli_usage_error("tune", "--batches takes positive integers, e.g. 1,32");
    if (!shapes_s && nb > 8) /* 8 GEMM shapes per batch size, 64 at most */
        return cli_usage_error("tune", "too many batch sizes: at most 8");
    int trials[1], seedv[1];
    if (!cli_parse_ints(trials_s, trials, 1, 0, TSR_TUNE_MAX - 12))
        return cli_usage_error("tune", "--trials takes 0 to %d", TSR_TUNE_MAX - 12);
    if (!cli_parse_ints(seed_s, seedv, 1, 0, 1 << 30))
        return cli_usage_error("tune", "--seed takes a non-negative integer");
    char *end;
    double seconds = strtod(seconds_s, &end);
    if (*end || !(seconds > 0 && seconds <= 60))
        return cli_usage_error("tune", "--seconds takes a number above 0, at most 60");
    tsr_gemm_shape shapes[64];
    int n = 0;
    const char *what = arch ? arch : "ViT-B-32";
    if (shapes_s) {
        n = parse_shapes(shapes_s, shapes, 64);
        if (!n)
            return cli_usage_error("tune", "--shapes takes up to 64 MxNxK, e.g. 1600x3072x768");
        what = "the given shapes";
    } else if (!model) {
        n = tsr_arch_gemm_shapes(what, bl, nb, shapes, 64);
        if (n < 0)
            return cli_usage_error("tune", "unknown architecture '%s' (known: ViT-B-32, "
                                   "ViT-B-16, ViT-L-14)", what);
    }

    tsr_ctx_params cp = cli_ctx_params(device, 0);
    cp.no_tuning = 1; /* measure from CLBlast's own parameters */
    cp.xgemm = NULL;
    tsr_ctx *ctx = NULL;
    tsr_error err = {0};
    if (cli_ctx_with("tune", &cp, &ctx) != EXIT_OK)
        return EXIT_RUNTIME;
    if (model) {
        tsr_model *m = NULL;
        if (cli_load("tune", model, device, 0, &ctx, &m, NULL) != EXIT_OK) {
            tsr_ctx_free(ctx);
            return EXIT_RUNTIME;
        }
        n = tsr_model_gemm_shapes(m, bl, nb, shapes, 64);
        tsr_model_free(m);
        what = model;
        if (n < 0) {
            tsr_ctx_free(ctx);
            return cli_usage_error("tune", "%s is not a CLIP model", model);
        }
    }
    if (!quiet && !json)
        fprintf(stderr, "tuning GEMMs for %s on %s: %d shapes\n", what, tsr_ctx_device_name(ctx),
                n);
    progress_state ps = {quiet};
    tsr_tune_params tp = tsr_tune_default_params();
    tp.trials = trials[0];
    tp.seed = (unsigned)seedv[0];
    tp.min_seconds = seconds;
    tp.progress = on_progress;
    tp.user = &ps;
    tsr_tune_result *r = malloc(sizeof *r);
    if (!r) {
        tsr_ctx_free(ctx);
        fprintf(stderr, "tessera tune: out of host memory\n");
        return EXIT_RUNTIME;
    }
    tsr_status st = tsr_tune_gemm(ctx, shapes, n, &tp, r, &err);
    if (st == TSR_OK && !dry)
        st = tsr_tune_save(ctx, r, &err);
    if (st != TSR_OK) {
        cli_error("tune", &err);
        free(r);
        tsr_ctx_free(ctx);
        return st == TSR_ERR_INVALID_ARG ? EXIT_USAGE : EXIT_RUNTIME;
    }
    double best = r->cand[r->best].score;
    double base = r->baseline >= 0 ? r->cand[r->baseline].score : -1;
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "device", tsr_ctx_device_name(ctx));
        cJSON_AddStringToObject(o, "shapes_of", what);
        cJSON *sa = cJSON_AddArrayToObject(o, "shapes");
        for (int i = 0; i < n; i++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "M", shapes[i].M);
            cJSON_AddNumberToObject(e, "N", shapes[i].N);
            cJSON_AddNumberToObject(e, "K", shapes[i].K);
            cJSON_AddNumberToObject(e, "weight", shapes[i].weight);
            cJSON_AddItemToArray(sa, e);
        }
        cJSON *ca = cJSON_AddArrayToObject(o, "candidates");
        for (int i = 0; i < r->n; i++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "config", r->cand[i].desc);
            if (r->cand[i].score >= 0)
                cJSON_AddNumberToObject(e, "seconds", r->cand[i].score);
            else
                cJSON_AddStringToObject(e, "error", r->cand[i].why);
            cJSON_AddItemToArray(ca, e);
        }
        cJSON_AddStringToObject(o, "best", r->cand[r->best].desc);
        cJSON_AddNumberToObject(o, "best_seconds", best);
        if (base >= 0) {
            cJSON_AddStringToObject(o, "untuned", r->cand[r->baseline].desc);
            cJSON_AddNumberToObject(o, "untuned_seconds", base);
            cJSON_AddNumberToObject(o, "speedup", base / best);
        }
        if (!dry)
            cJSON_AddStringToObject(o, "tuning_file", r->path);
        char *s = cJSON_Print(o);
        puts(s ? s : "{}");
        free(s);
        cJSON_Delete(o);
    } else {
        printf("tessera tune: %s on %s, %d GEMM shapes, %d configurations\n", what,
               tsr_ctx_device_name(ctx), n, r->n);
        if (base >= 0)
            printf("untuned: %.6f s  %s\n", base, r->cand[r->baseline].desc);
        printf("best:    %.6f s  %s", best, r->cand[r->best].desc);
        if (base > 0)
            printf(" (%.2fx the untuned speed)", base / best);
        printf("\n");
        for (int i = 0; i < r->n; i++)
            if (r->cand[i].score < 0)
                printf("rejected: %s: %s\n", r->cand[i].desc, r->cand[i].why);
        if (dry)
            printf("--dry-run: nothing written\n");
        else
            printf("written to %s; later commands on this device use it\n", r->path);
    }
    free(r);
    tsr_ctx_free(ctx);
    return EXIT_OK;
}
