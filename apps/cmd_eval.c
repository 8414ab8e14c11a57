/* tessera eval: zero-shot accuracy, calibration and robustness of a CLIP
 * model on a folder of labelled images (one subfolder per class). */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

#define BATCH 16
#define PRINT_MATRIX_MAX 30 /* classes up to which the text output prints the matrix */

static const char *eval_help =
    "usage: tessera eval --model DIR --labels-from-folders DIR\n"
    "                    [--template T | --templates imagenet] [--temperature T]\n"
    "                    [--calibrate HELDOUT_DIR] [--corruptions] [--reliability FILE.png]\n"
    "                    [--bins N] [--json] [--strict] [--quiet] [--device D] [--verbose]\n"
    "                    [--dtype T]\n"
    "\n"
    "Zero-shot classification over a folder with one subfolder per class (the\n"
    "ImageFolder layout: classes are the subfolder names in byte order, \"_\" read as\n"
    "a space in the prompts; images are found by content, recursively). Reports\n"
    "top-1 and top-5 accuracy, per-class accuracy, the confusion matrix, and the\n"
    "calibration of the probabilities: expected calibration error over equal-width\n"
    "confidence bins (bin b holds confidences in (b/N, (b+1)/N]), maximum\n"
    "calibration error and negative log-likelihood.\n"
    "\n"
    "  --model DIR              a CLIP model (Hugging Face or open_clip directory)\n"
    "  --labels-from-folders D  the labelled images\n"
    "  --template T             prompt with {} for the class (default \"a photo of a {}.\")\n"
    "  --templates imagenet     the 80 prompts of the CLIP paper, averaged per class\n"
    "  --temperature T          probabilities are softmax(logits / T) (default 1)\n"
    "  --calibrate HELDOUT_DIR  fit the temperature on a held-out folder (same class\n"
    "                           names) by minimising its negative log-likelihood, and\n"
    "                           report the calibration before and after; apply it with\n"
    "                           `tessera classify --temperature T`\n"
    "  --corruptions            evaluate again under Gaussian noise, Gaussian blur and\n"
    "                           JPEG re-compression at severities 1, 2, 3 (ImageNet-C's\n"
    "                           1, 3 and 5: noise sigma 0.08/0.18/0.38, blur sigma 1/3/6\n"
    "                           px at 224 px, JPEG quality 25/15/7), applied to the\n"
    "                           image the model sees, and report the accuracy drops\n"
    "  --reliability FILE.png   write the reliability diagram (with --calibrate: before\n"
    "                           and after, side by side)\n"
    "  --bins N                 calibration bins (default 15)\n"
    "  --json                   one JSON object with everything on stdout\n"
    "  --strict                 stop at the first image that cannot be read\n"
    "  --quiet                  no progress bar (it is shown only on a terminal anyway)\n"
    "  --image-size N --mean R,G,B --std R,G,B   the preprocessing, as for classify\n"
    "  --device D               OpenCL device index or name substring\n"
    "  --dtype T                linear layers' weights on the device: f32 (default), f16, bf16 or int8\n"
    "  --verbose                log device and kernel cache use on stderr\n"
    "\n"
    "Exit codes: 0 ok, 1 runtime error (any image failed, or the model or device),\n"
    "2 usage error.\n";

typedef struct {
    char **names;  /* folder names */
    char **labels; /* the prompts' text: names with "_" as " " */
    int n;
} class_list;

typedef struct {
    cli_paths paths;
    int *label; /* per path */
    int walk_errors;
} dataset;

static void classes_free(class_list *c)
{
    for (int i = 0; i < c->n; i++) {
        free(c->names[i]);
        free(c->labels[i]);
    }
    free(c->names);
    free(c->labels);
    memset(c, 0, sizeof *c);
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The subfolders of dir, sorted (torchvision's ImageFolder order). */
static int list_classes(const char *dir, class_list *out)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "tessera eval: error: %s: cannot read the folder\n", dir);
        return EXIT_RUNTIME;
    }
    struct dirent *e;
    int rc = EXIT_OK;
    while (rc == EXIT_OK && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
            continue;
        if (!tsr_utf8_valid(e->d_name, strlen(e->d_name), NULL)) {
            fprintf(stderr, "tessera eval: error: %s: the class folder name is not UTF-8\n", path);
            rc = EXIT_RUNTIME;
            break;
        }
        char **nn = realloc(out->names, sizeof(char *) * (size_t)(out->n + 1));
        if (!nn) {
            rc = cli_usage_error("eval", "out of memory");
            break;
        }
        out->names = nn;
        if (!(out->names[out->n] = strdup(e->d_name))) {
            rc = cli_usage_error("eval", "out of memory");
            break;
        }
        out->n++;
    }
    closedir(d);
    if (rc == EXIT_OK && out->n == 0) {
        fprintf(stderr, "tessera eval: error: %s has no class folders (the ImageFolder layout: one "
                        "subfolder of images per class)\n", dir);
        rc = EXIT_RUNTIME;
    }
    if (rc != EXIT_OK)
        return rc;
    qsort(out->names, (size_t)out->n, sizeof(char *), cmp_name);
    out->labels = calloc((size_t)out->n, sizeof(char *));
    for (int i = 0; out->labels && i < out->n; i++) {
        if (!(out->labels[i] = strdup(out->names[i])))
            return cli_usage_error("eval", "out of memory");
        for (char *p = out->labels[i]; *p; p++)
            *p = *p == '_' ? ' ' : *p;
    }
    return out->labels ? EXIT_OK : cli_usage_error("eval", "out of memory");
}

static void dataset_free(dataset *d)
{
    cli_paths_free(&d->paths);
    free(d->label);
    memset(d, 0, sizeof *d);
}

/* Every image under dir/<class>/ for the classes of cl; a folder whose name
 * is no class of cl is an error when strict_names (a held-out set). */
static int collect(const char *dir, const class_list *cl, int strict_names, dataset *out)
{
    class_list here = {0};
    int rc = list_classes(dir, &here);
    for (int c = 0; rc == EXIT_OK && c < here.n; c++) {
        int k = -1;
        for (int j = 0; j < cl->n && k < 0; j++)
            k = strcmp(cl->names[j], here.names[c]) == 0 ? j : -1;
        if (k < 0) {
            if (strict_names) {
                fprintf(stderr, "tessera eval: error: %s/%s: not one of the %d classes of the "
                                "evaluation folder\n", dir, here.names[c], cl->n);
                rc = EXIT_RUNTIME;
            }
            continue;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, here.names[c]);
        const char *arg[1] = {path};
        cli_paths p = {0};
        rc = cli_collect_inputs("eval", arg, 1, NULL, &p);
        out->walk_errors += p.walk_errors;
        if (rc == EXIT_OK && p.n == 0)
            fprintf(stderr, "tessera eval: warning: %s: no images\n", path);
        int *nl = rc == EXIT_OK ? realloc(out->label, sizeof(int) * (size_t)(out->paths.n + p.n))
                                : NULL;
        if (rc == EXIT_OK && !nl && out->paths.n + p.n > 0)
            rc = cli_usage_error("eval", "out of memory");
        if (nl)
            out->label = nl;
        for (int i = 0; rc == EXIT_OK && i < p.n; i++) {
            if (!cli_paths_push(&out->paths, p.v[i])) {
                rc = cli_usage_error("eval", "out of memory");
                break;
            }
            out->label[out->paths.n - 1] = k;
        }
        cli_paths_free(&p);
    }
    classes_free(&here);
    return rc;
}

typedef struct {
    tsr_session *s;
    const tsr_model *m;
    const float *weights;
    int L, P, no_ahead, strict, quiet;
    size_t per;
    float *emb;
    cli_bar *bar;
    int bar_done, bar_errors;
} runner;

/* Logits (n, L) of the images; ok[i] = 0 where one failed (reported when
 * report). Returns EXIT_OK, or EXIT_RUNTIME when the device failed or
 * --strict stopped. */
static int run_pass(runner *r, const char *const *paths, int n, const cli_corruption *cc,
                    float *logits, unsigned char *ok, int report, int *failed)
{
    tsr_error err = {0};
    cli_prefetch *pf = cli_prefetch_start_corrupted(paths, n, BATCH, tsr_model_preprocess_cfg(r->m),
                                                    r->per, !r->no_ahead, cc);
    if (!pf) {
        tsr_error_set(&err, TSR_ERR_NOMEM, "out of host memory");
        cli_error("eval", &err);
        return EXIT_RUNTIME;
    }
    const cli_batch *bt;
    int rc = EXIT_OK;
    while (rc == EXIT_OK && (bt = cli_prefetch_next(pf))) {
        if (bt->n_ok && tsr_session_embed_pixels(r->s, bt->px, bt->n_ok, 1, r->emb, &err) != TSR_OK) {
            cli_bar_clear(r->bar);
            cli_error("eval", &err);
            rc = EXIT_RUNTIME;
            break;
        }
        for (int i = 0; i < bt->count; i++) {
            int idx = bt->first + i;
            if (bt->slot[i] >= 0) {
                tsr_zeroshot_logits(r->m, r->emb + (size_t)bt->slot[i] * r->P, 1, r->weights, r->L,
                                    logits + (size_t)idx * r->L);
                ok[idx] = 1;
                continue;
            }
            ok[idx] = 0;
            (*failed)++;
            r->bar_errors++;
            if (report) {
                cli_bar_clear(r->bar);
                fprintf(stderr, "tessera eval: error: %s\n", bt->err[i].msg);
            }
            if (r->strict) {
                rc = EXIT_RUNTIME;
                break;
            }
        }
        r->bar_done += bt->count;
        cli_bar_update(r->bar, r->bar_done, r->bar_errors);
    }
    cli_prefetch_stop(pf);
    return rc;
}

/* Rank of the label among the row's logits (0: the arg max; ties go to the
 * lower index, as an arg max does). */
static int rank_of(const float *z, int L, int y)
{
    int r = 0;
    for (int l = 0; l < L; l++)
        r += z[l] > z[y] || (z[l] == z[y] && l < y);
    return r;
}

/* Packs the rows with ok set to the front; returns how many. */
static int pack(float *logits, int *labels, const unsigned char *ok, int n, int L)
{
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (!ok[i])
            continue;
        if (k != i) {
            memmove(logits + (size_t)k * L, logits + (size_t)i * L, sizeof(float) * L);
            labels[k] = labels[i];
        }
        k++;
    }
    return k;
}

static double topk_acc(const float *logits, const int *labels, int n, int L, int k)
{
    int hit = 0;
    for (int i = 0; i < n; i++)
        hit += rank_of(logits + (size_t)i * L, L, labels[i]) < k;
    return n ? (double)hit / n : 0;
}

static cJSON *calib_json(const tsr_calibration *c)
{
    cJSON *o = cJSON_CreateObject(), *bins = cJSON_CreateArray();
    cJSON_AddNumberToObject(o, "temperature", c->temperature);
    cJSON_AddNumberToObject(o, "ece", c->ece);
    cJSON_AddNumberToObject(o, "mce", c->mce);
    cJSON_AddNumberToObject(o, "nll", c->nll);
    cJSON_AddNumberToObject(o, "accuracy", c->accuracy);
    for (int b = 0; b < c->bins; b++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "lo", (double)b / c->bins);
        cJSON_AddNumberToObject(e, "hi", (double)(b + 1) / c->bins);
        cJSON_AddNumberToObject(e, "count", c->count[b]);
        cJSON_AddNumberToObject(e, "confidence", c->conf[b]);
        cJSON_AddNumberToObject(e, "accuracy", c->acc[b]);
        cJSON_AddItemToArray(bins, e);
    }
    cJSON_AddItemToObject(o, "bins", bins);
    return o;
}

static void print_calib(const char *what, const tsr_calibration *c)
{
    printf("%-22s ECE %.4f  MCE %.4f  NLL %.4f  (temperature %g, %d bins)\n", what, c->ece, c->mce,
           c->nll, c->temperature, c->bins);
}

int cmd_eval(int argc, char **argv)
{
    const char *model = NULL, *folders = NULL, *tmpl = NULL, *tmpls = NULL, *temp_s = NULL;
    const char *heldout = NULL, *png = NULL, *bins_s = NULL, *device = NULL;
    const char *isize = NULL, *mean = NULL, *std = NULL;
    int json = 0, strict = 0, quiet = 0, verbose = 0, corruptions = 0, no_ahead = 0;
    cli_opt opts[] = {{"model", 1, &model, NULL},
                      {"labels-from-folders", 1, &folders, NULL},
                      {"template", 1, &tmpl, NULL},
                      {"templates", 1, &tmpls, NULL},
                      {"temperature", 1, &temp_s, NULL},
                      {"calibrate", 1, &heldout, NULL},
                      {"corruptions", 0, NULL, &corruptions},
                      {"reliability", 1, &png, NULL},
                      {"bins", 1, &bins_s, NULL},
                      {"json", 0, NULL, &json},
                      {"strict", 0, NULL, &strict},
                      {"quiet", 0, NULL, &quiet},
                      {"no-decode-ahead", 0, NULL, &no_ahead},
                      {"device", 1, &device, NULL}, {"dtype", 1, &cli_dtype, NULL},
                      {"verbose", 0, NULL, &verbose},
                      {"image-size", 1, &isize, NULL},
                      {"mean", 1, &mean, NULL},
                      {"std", 1, &std, NULL}};
    const char **pos = NULL;
    int npos = 0;
    int rc = cli_parse(argc, argv, opts, sizeof opts / sizeof opts[0], &pos, &npos);
    if (rc < 0) {
        fputs(eval_help, stdout);
        free(pos);
        return EXIT_OK;
    }
    double temperature = 1;
    int bins = 15;
    if (rc == EXIT_OK) {
        char *end = NULL;
        if (!model)
            rc = cli_usage_error("eval", "--model DIR is required");
        else if (!folders)
            rc = cli_usage_error("eval", "--labels-from-folders DIR is required");
        else if (npos)
            rc = cli_usage_error("eval", "unexpected argument '%s' (the images come from "
                                         "--labels-from-folders)", pos[0]);
        else if (tmpl && tmpls)
            rc = cli_usage_error("eval", "give at most one of --template and --templates");
        else if (tmpls && strcmp(tmpls, "imagenet") != 0)
            rc = cli_usage_error("eval", "unknown template set '%s' (known: imagenet)", tmpls);
        else if (tmpl && (!strstr(tmpl, "{}") || !tsr_utf8_valid(tmpl, strlen(tmpl), NULL)))
            rc = cli_usage_error("eval", "--template needs {} where the class goes, in UTF-8");
        else if (temp_s && (temperature = strtod(temp_s, &end), *end || !(temperature >= TSR_TEMPERATURE_MIN) ||
                            !(temperature <= TSR_TEMPERATURE_MAX)))
            rc = cli_usage_error("eval", "--temperature must be a number in [%g, %g]",
                                 TSR_TEMPERATURE_MIN, TSR_TEMPERATURE_MAX);
        else if (bins_s && (bins = (int)strtol(bins_s, &end, 10), *end || bins < 1 ||
                            bins > TSR_CALIB_MAX_BINS))
            rc = cli_usage_error("eval", "--bins must be 1..%d", TSR_CALIB_MAX_BINS);
        else if (heldout && temp_s)
            rc = cli_usage_error("eval", "give --temperature or --calibrate, not both");
    }
    free(pos);
    if (rc != EXIT_OK)
        return rc;

    class_list cl = {0};
    dataset ev = {0}, ho = {0};
    rc = list_classes(folders, &cl);
    if (rc == EXIT_OK)
        rc = collect(folders, &cl, 0, &ev);
    if (rc == EXIT_OK && heldout)
        rc = collect(heldout, &cl, 1, &ho);
    if (rc == EXIT_OK && ev.paths.n == 0) {
        fprintf(stderr, "tessera eval: error: %s: no images in the class folders\n", folders);
        rc = EXIT_RUNTIME;
    }
    if (rc == EXIT_OK && heldout && ho.paths.n == 0) {
        fprintf(stderr, "tessera eval: error: %s: no images in the class folders\n", heldout);
        rc = EXIT_RUNTIME;
    }

    tsr_ctx *ctx = NULL;
    tsr_model *m = NULL;
    tsr_session *sess = NULL;
    tsr_error err = {0};
    float *weights = NULL, *logits = NULL, *hlogits = NULL, *clog = NULL;
    unsigned char *ok = NULL, *hok = NULL, *cok = NULL;
    int *labels = NULL, *hlabels = NULL, failed = 0, hfailed = 0, n = 0, hn = 0;
    cli_bar bar = {0};
    if (rc == EXIT_OK)
        rc = cli_load("eval", model, device, verbose, &ctx, &m, &sess);
    if (rc == EXIT_OK && strcmp(tsr_model_family(m), "clip") != 0)
        rc = cli_usage_error("eval", "%s is a %s model; eval needs a CLIP model", model,
                             tsr_model_family(m));
    if (rc == EXIT_OK)
        rc = cli_image_preprocess("eval", m, model, isize, mean, std);
    int L = cl.n, P = rc == EXIT_OK ? tsr_model_embed_dim(m) : 0;
    runner r = {0};
    if (rc == EXIT_OK) {
        int S = tsr_model_image_size(m);
        r = (runner){.s = sess, .m = m, .L = L, .P = P, .no_ahead = no_ahead, .strict = strict,
                     .per = (size_t)tsr_model_image_channels(m) * S * S, .bar = &bar};
        int nmax = ev.paths.n > ho.paths.n ? ev.paths.n : ho.paths.n;
        weights = malloc(sizeof(float) * (size_t)L * P);
        r.emb = malloc(sizeof(float) * (size_t)P * BATCH);
        logits = malloc(sizeof(float) * (size_t)ev.paths.n * L);
        clog = malloc(sizeof(float) * (size_t)nmax * L);
        ok = calloc((size_t)ev.paths.n, 1);
        cok = calloc((size_t)nmax, 1);
        labels = malloc(sizeof(int) * (size_t)ev.paths.n);
        if (!weights || !r.emb || !logits || !clog || !ok || !cok || !labels) {
            tsr_error_set(&err, TSR_ERR_NOMEM, "out of host memory for %d images and %d classes",
                          nmax, L);
            cli_error("eval", &err);
            rc = EXIT_RUNTIME;
        }
        r.weights = weights;
    }
    if (rc == EXIT_OK) {
        const char *const *tl = NULL;
        const char *single[1] = {tmpl ? tmpl : "a photo of a {}."};
        int nt = 1, cut = 0;
        if (tmpls)
            nt = tsr_templates_imagenet(&tl);
        else
            tl = single;
        if (tsr_session_zeroshot_weights(sess, (const char *const *)cl.labels, L, tl, nt, weights,
                                         &cut, &err) != TSR_OK) {
            cli_error("eval", &err);
            rc = EXIT_RUNTIME;
        } else if (cut) {
            fprintf(stderr, "tessera eval: warning: %d prompt(s) were longer than %d tokens and "
                            "were truncated\n", cut, tsr_model_max_text_len(m));
        }
    }
    /* clean pass */
    int total = ev.paths.n * (corruptions ? 10 : 1) + ho.paths.n;
    if (rc == EXIT_OK) {
        cli_bar_start(&bar, "eval", total, quiet);
        rc = run_pass(&r, (const char *const *)ev.paths.v, ev.paths.n, NULL, logits, ok, 1, &failed);
        memcpy(labels, ev.label, sizeof(int) * (size_t)ev.paths.n);
    }
    /* the images that decoded, for the corrupted passes */
    const char **good = NULL;
    if (rc == EXIT_OK) {
        good = malloc(sizeof(char *) * (size_t)ev.paths.n);
        for (int i = 0, k = 0; good && i < ev.paths.n; i++)
            if (ok[i])
                good[k++] = ev.paths.v[i];
        n = pack(logits, labels, ok, ev.paths.n, L);
        bar.total = ev.paths.n + ho.paths.n + (corruptions ? 9 * n : 0); /* the good ones again */
        if (!good) {
            cli_usage_error("eval", "out of memory");
            rc = EXIT_RUNTIME;
        } else if (n == 0) {
            cli_bar_clear(&bar);
            fprintf(stderr, "tessera eval: error: none of the %d images could be read\n",
                    ev.paths.n);
            rc = EXIT_RUNTIME;
        }
    }
    double fitted = 0;
    tsr_calibration cal[2], hcal[2];
    if (rc == EXIT_OK && heldout) {
        hlogits = malloc(sizeof(float) * (size_t)ho.paths.n * L);
        hok = calloc((size_t)ho.paths.n, 1);
        hlabels = malloc(sizeof(int) * (size_t)ho.paths.n);
        if (!hlogits || !hok || !hlabels) {
            cli_usage_error("eval", "out of memory");
            rc = EXIT_RUNTIME;
        }
        if (rc == EXIT_OK)
            rc = run_pass(&r, (const char *const *)ho.paths.v, ho.paths.n, NULL, hlogits, hok, 1,
                          &hfailed);
        if (rc == EXIT_OK) {
            memcpy(hlabels, ho.label, sizeof(int) * (size_t)ho.paths.n);
            hn = pack(hlogits, hlabels, hok, ho.paths.n, L);
            if (hn == 0 || tsr_fit_temperature(hlogits, hlabels, hn, L, &fitted, &err) != TSR_OK) {
                cli_bar_clear(&bar);
                if (hn == 0)
                    tsr_error_set(&err, TSR_ERR_INVALID_ARG, "no held-out image could be read");
                tsr_error_prefix(&err, "%s", heldout);
                cli_error("eval", &err);
                rc = EXIT_RUNTIME;
            }
        }
        if (rc == EXIT_OK && (tsr_calibration_compute(hlogits, hlabels, hn, L, 1.0, bins, &hcal[0], &err) ||
                              tsr_calibration_compute(hlogits, hlabels, hn, L, fitted, bins, &hcal[1], &err))) {
            cli_error("eval", &err);
            rc = EXIT_RUNTIME;
        }
    }
    int ncal = heldout ? 2 : 1;
    if (rc == EXIT_OK) {
        double ts[2] = {heldout ? 1.0 : temperature, fitted};
        for (int k = 0; k < ncal && rc == EXIT_OK; k++)
            if (tsr_calibration_compute(logits, labels, n, L, ts[k], bins, &cal[k], &err) != TSR_OK) {
                cli_error("eval", &err);
                rc = EXIT_RUNTIME;
            }
    }
    /* corrupted passes */
    static const char *const kinds[3] = {"gaussian_noise", "gaussian_blur", "jpeg"};
    static const int imagenet_c[3] = {1, 3, 5};
    double cacc[3][3] = {{0}};
    int cn[3][3] = {{0}};
    if (rc == EXIT_OK && corruptions) {
        int *clab = malloc(sizeof(int) * (size_t)n);
        for (int k = 0; clab && k < 3 && rc == EXIT_OK; k++)
            for (int s = 0; s < 3 && rc == EXIT_OK; s++) {
                cli_corruption cc = {(tsr_corruption)k, imagenet_c[s], 20261207ull};
                int cf = 0;
                memcpy(clab, labels, sizeof(int) * (size_t)n);
                rc = run_pass(&r, good, n, &cc, clog, cok, 1, &cf);
                int m2 = pack(clog, clab, cok, n, L);
                cn[k][s] = m2;
                cacc[k][s] = topk_acc(clog, clab, m2, L, 1);
                failed += cf;
            }
        if (!clab) {
            cli_usage_error("eval", "out of memory");
            rc = EXIT_RUNTIME;
        }
        free(clab);
    }
    cli_bar_end(&bar);

    if (rc == EXIT_OK) {
        int k5 = L < 5 ? L : 5;
        double top1 = topk_acc(logits, labels, n, L, 1), top5 = topk_acc(logits, labels, n, L, k5);
        int *conf = calloc((size_t)L * L, sizeof(int)), *cnt = calloc((size_t)L, sizeof(int));
        if (!conf || !cnt) {
            cli_usage_error("eval", "out of memory");
            rc = EXIT_RUNTIME;
        }
        for (int i = 0; conf && cnt && i < n; i++) {
            const float *z = logits + (size_t)i * L;
            int best = 0;
            for (int l = 1; l < L; l++)
                best = z[l] > z[best] ? l : best;
            conf[(size_t)labels[i] * L + best]++;
            cnt[labels[i]]++;
        }
        if (rc == EXIT_OK && json) {
            cJSON *o = cJSON_CreateObject(), *cls = cJSON_CreateArray(), *pc = cJSON_CreateArray(),
                  *mat = cJSON_CreateArray();
            cJSON_AddStringToObject(o, "model", model);
            cJSON_AddStringToObject(o, "folder", folders);
            cJSON_AddNumberToObject(o, "images", n);
            cJSON_AddNumberToObject(o, "failed", failed + hfailed);
            for (int c = 0; c < L; c++) {
                cJSON_AddItemToArray(cls, cJSON_CreateString(cl.names[c]));
                cJSON *e = cJSON_CreateObject();
                cJSON_AddStringToObject(e, "class", cl.names[c]);
                cJSON_AddNumberToObject(e, "images", cnt[c]);
                cJSON_AddNumberToObject(e, "correct", conf[(size_t)c * L + c]);
                if (cnt[c])
                    cJSON_AddNumberToObject(e, "accuracy", (double)conf[(size_t)c * L + c] / cnt[c]);
                else
                    cJSON_AddNullToObject(e, "accuracy");
                cJSON_AddItemToArray(pc, e);
                cJSON_AddItemToArray(mat, cJSON_CreateIntArray(conf + (size_t)c * L, L));
            }
            cJSON_AddItemToObject(o, "classes", cls);
            cJSON_AddNumberToObject(o, "top1", top1);
            cJSON_AddNumberToObject(o, "top5", top5);
            cJSON_AddNumberToObject(o, "top5_k", k5);
            cJSON_AddItemToObject(o, "per_class", pc);
            cJSON_AddItemToObject(o, "confusion", mat);
            cJSON_AddItemToObject(o, "calibration", calib_json(&cal[0]));
            if (heldout) {
                cJSON *h = cJSON_CreateObject();
                cJSON_AddStringToObject(h, "folder", heldout);
                cJSON_AddNumberToObject(h, "images", hn);
                cJSON_AddNumberToObject(h, "temperature", fitted);
                cJSON_AddItemToObject(h, "heldout_before", calib_json(&hcal[0]));
                cJSON_AddItemToObject(h, "heldout_after", calib_json(&hcal[1]));
                cJSON_AddItemToObject(h, "after", calib_json(&cal[1]));
                cJSON_AddItemToObject(o, "calibrated", h);
            }
            if (corruptions) {
                cJSON *arr = cJSON_CreateArray();
                for (int k = 0; k < 3; k++)
                    for (int s = 0; s < 3; s++) {
                        cJSON *e = cJSON_CreateObject();
                        cJSON_AddStringToObject(e, "corruption", kinds[k]);
                        cJSON_AddNumberToObject(e, "severity", s + 1);
                        cJSON_AddNumberToObject(e, "imagenet_c_severity", imagenet_c[s]);
                        cJSON_AddNumberToObject(e, "images", cn[k][s]);
                        cJSON_AddNumberToObject(e, "top1", cacc[k][s]);
                        cJSON_AddNumberToObject(e, "drop", top1 - cacc[k][s]);
                        cJSON_AddItemToArray(arr, e);
                    }
                cJSON_AddItemToObject(o, "corruptions", arr);
            }
            cli_print_json(o);
        } else if (rc == EXIT_OK) {
            printf("%d images in %d classes (%s)\n", n, L, folders);
            int right = 0;
            for (int c = 0; c < L; c++)
                right += conf[(size_t)c * L + c];
            printf("top-1 accuracy  %.4f  (%d/%d)\n", top1, right, n);
            printf("top-%d accuracy  %.4f\n", k5, top5);
            print_calib("calibration:", &cal[0]);
            if (heldout) {
                printf("temperature fitted on %s (%d images): %.4f\n", heldout, hn, fitted);
                print_calib("  held-out before:", &hcal[0]);
                print_calib("  held-out after:", &hcal[1]);
                print_calib("  this set after:", &cal[1]);
                printf("  apply it: tessera classify --temperature %.4f ...\n", fitted);
            }
            printf("per-class accuracy:\n");
            for (int c = 0; c < L; c++) {
                if (cnt[c])
                    printf("  %6.4f  %4d/%-4d  %s\n", (double)conf[(size_t)c * L + c] / cnt[c],
                           conf[(size_t)c * L + c], cnt[c], cl.names[c]);
                else
                    printf("       -     0/0     %s\n", cl.names[c]);
            }
            if (L <= PRINT_MATRIX_MAX) {
                printf("confusion matrix (rows: true class, columns: predicted, both in the order "
                       "above):\n");
                for (int a = 0; a < L; a++) {
                    printf("  %3d |", a);
                    for (int b = 0; b < L; b++)
                        printf(conf[(size_t)a * L + b] ? "%4d" : "   .", conf[(size_t)a * L + b]);
                    printf("\n");
                }
            } else {
                printf("most frequent confusions (--json has the whole matrix):\n");
                for (int k = 0; k < 10; k++) {
                    int ba = -1, bb = -1, bv = 0;
                    for (int a = 0; a < L; a++)
                        for (int b = 0; b < L; b++)
                            if (a != b && conf[(size_t)a * L + b] > bv) {
                                bv = conf[(size_t)a * L + b];
                                ba = a;
                                bb = b;
                            }
                    if (ba < 0)
                        break;
                    printf("  %4d  %s -> %s\n", bv, cl.names[ba], cl.names[bb]);
                    conf[(size_t)ba * L + bb] = -bv; /* taken */
                }
                for (size_t i = 0; i < (size_t)L * L; i++)
                    conf[i] = conf[i] < 0 ? -conf[i] : conf[i];
            }
            if (corruptions) {
                printf("corruptions (severity 1/2/3 = ImageNet-C 1/3/5), top-1 and drop:\n");
                for (int k = 0; k < 3; k++) {
                    printf("  %-15s", kinds[k]);
                    for (int s = 0; s < 3; s++)
                        printf("  %.4f (%+.4f)", cacc[k][s], cacc[k][s] - top1);
                    printf("\n");
                }
            }
        }
        free(conf);
        free(cnt);
        fflush(stdout);
    }
    if (rc == EXIT_OK && png) {
        char t0[64], t1[64];
        if (heldout)
            snprintf(t0, sizeof t0, "BEFORE (T=1)");
        else
            snprintf(t0, sizeof t0, "T=%g", cal[0].temperature);
        snprintf(t1, sizeof t1, "AFTER (T=%.3f)", fitted);
        const char *titles[2] = {t0, t1};
        rc = cli_reliability_png(png, cal, titles, ncal, &err);
        if (rc != EXIT_OK)
            cli_error("eval", &err);
        else if (!json)
            printf("reliability diagram: %s\n", png);
    }
    if (rc == EXIT_OK && (failed || hfailed))
        fprintf(stderr, "tessera eval: %d image(s) could not be read and were left out\n",
                failed + hfailed);
    free(good);
    free(weights);
    free(r.emb);
    free(logits);
    free(hlogits);
    free(clog);
    free(ok);
    free(hok);
    free(cok);
    free(labels);
    free(hlabels);
    tsr_session_free(sess);
    tsr_model_free(m);
    tsr_ctx_free(ctx);
    int walk = ev.walk_errors + ho.walk_errors;
    dataset_free(&ev);
    dataset_free(&ho);
    classes_free(&cl);
    if (rc == EXIT_OK && (failed || hfailed || walk))
        rc = EXIT_RUNTIME;
    return rc;
}
