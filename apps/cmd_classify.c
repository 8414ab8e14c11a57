/* tessera classify: zero-shot image classification (CLIP), and of audio
 * (CLAP). */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define BATCH 16

static const char *classify_help =
    "usage: tessera classify --model DIR (--labels a,b,c | --labels-file F)\n"
    "                        [--template T | --templates imagenet] [--top-k K] [--json]\n"
    "                        [--temperature T]\n"
    "                        [--lines FILE] [--strict] [--quiet] [--device D] [--verbose]\n"
    "                        [--dtype T]\n"
    "                        [--audio-window mean|first|fusion]\n"
    "                        IMAGE|AUDIO|FOLDER...\n"
    "\n"
    "Zero-shot classification against text labels: of images (PNG, JPEG, WebP, GIF,\n"
    "TIFF, BMP) with a CLIP model, of sounds (any audio FFmpeg reads: WAV, FLAC,\n"
    "MP3, Ogg, M4A, the audio of a video) with a CLAP model. A folder is walked\n"
    "recursively and its images or audio files are found by content. A bad file\n"
    "is reported by name with the reason and the run carries on.\n"
    "\n"
    "  --model DIR         a Hugging Face CLIP or CLAP model directory\n"
    "  --labels a,b,c      comma-separated labels\n"
    "  --labels-file F     one label per line (UTF-8)\n"
    "  --template T        prompt with {} for the label (default \"a photo of a {}.\";\n"
    "                      with CLAP \"This is a sound of {}.\")\n"
    "  --templates imagenet  the 80 prompts of the CLIP paper, averaged per label\n"
    "  --top-k K           labels to print per image (default 5)\n"
    "  --temperature T     probabilities are softmax(logits / T) (default 1; `tessera eval\n"
    "                      --calibrate` fits one)\n"
    "  --json              one JSON object per image on stdout (failures: {\"image\", \"error\"})\n"
    "  --lines FILE        read image paths (or folders) from FILE, one per line (\"-\": stdin)\n"
    "  --strict            stop at the first image that cannot be read\n"
    "  --quiet             no progress bar (it is shown only on a terminal anyway)\n"
    "  --image-size N --mean R,G,B --std R,G,B\n"
    "                      the preprocessing, over preprocessor_config.json's (needed\n"
    "                      when the model directory has none)\n"
    "  --no-decode-ahead   decode one image at a time in the main thread, instead of\n"
    "                      the next batch on one thread per core while the device\n"
    "                      runs this one (for comparison)\n"
    "  --audio-window W    CLAP, clips longer than the model's 10 s: mean (default) of\n"
    "                      consecutive 10 s windows, the first 10 s, or fusion (fused\n"
    "                      checkpoints: the whole clip shrunk plus three crops). All\n"
    "                      three are deterministic; for clips of 10 s or less they\n"
    "                      equal transformers' ClapModel\n"
    "  --device D          OpenCL device index or name substring (default $TESSERA_DEVICE or 0)\n"
    "  --dtype T           linear layers' weights on the device: f32 (default), f16, bf16 or int8\n"
    "  --verbose           log device and kernel cache use on stderr\n"
    "\n"
    "Exit codes: 0 ok, 1 runtime error (any image failed, or the model or device),\n"
    "2 usage error.\n";

typedef struct {
    char **items;
    int n;
} label_list;

static void labels_free(label_list *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
}

/* Adds s[0..n) trimmed of spaces; empty entries are skipped. */
static int labels_add(label_list *l, const char *s, size_t n)
{
    while (n && (*s == ' ' || *s == '\t' || *s == '\r')) {
        s++;
        n--;
    }
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        n--;
    if (!n)
        return 1;
    char **ni = realloc(l->items, sizeof(char *) * (size_t)(l->n + 1));
    if (!ni)
        return 0;
    l->items = ni;
    l->items[l->n] = strndup(s, n);
    return l->items[l->n++] != NULL;
}

static int parse_labels(const char *arg, const char *file, label_list *l)
{
    tsr_error err = {0};
    if (arg) {
        size_t bad;
        if (!tsr_utf8_valid(arg, strlen(arg), &bad))
            return cli_usage_error("classify", "--labels is not valid UTF-8 (bad byte at offset %zu)",
                                   bad);
        for (const char *p = arg;;) {
            const char *c = strchr(p, ',');
            size_t n = c ? (size_t)(c - p) : strlen(p);
            if (!labels_add(l, p, n))
                return cli_usage_error("classify", "out of memory");
            if (!c)
                break;
            p = c + 1;
        }
    } else {
        size_t len = 0;
        char *text = cli_read_file(file, 16u << 20, &len, &err);
        if (!text) {
            cli_error("classify", &err);
            return EXIT_RUNTIME;
        }
        int line = 1;
        for (char *p = text; p && *p; line++) {
            char *nl = strchr(p, '\n');
            size_t n = nl ? (size_t)(nl - p) : strlen(p), bad;
            if (!tsr_utf8_valid(p, n, &bad)) {
                fprintf(stderr,
                        "tessera classify: error: %s: line %d is not valid UTF-8 (byte %zu)\n",
                        file, line, bad + 1);
                free(text);
                return EXIT_RUNTIME;
            }
            if (!labels_add(l, p, n)) {
                free(text);
                return cli_usage_error("classify", "out of memory");
            }
            p = nl ? nl + 1 : NULL;
        }
        free(text);
    }
    if (l->n == 0)
        return cli_usage_error("classify", "no labels given");
    return EXIT_OK;
}

static void print_result(const char *path, const float *probs, const label_list *l, int k,
                         int json, const char *key)
{
    int *order = malloc(sizeof(int) * (size_t)l->n);
    if (!order)
        return;
    for (int i = 0; i < l->n; i++)
        order[i] = i;
    for (int i = 0; i < k; i++) /* partial selection sort: k is small */
        for (int j = i + 1; j < l->n; j++)
            if (probs[order[j]] > probs[order[i]]) {
                int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
    if (json) {
        cJSON *o = cJSON_CreateObject(), *arr = cJSON_CreateArray();
        cJSON_AddStringToObject(o, key, path);
        for (int i = 0; i < k; i++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "label", l->items[order[i]]);
            cJSON_AddNumberToObject(e, "probability", probs[order[i]]);
            cJSON_AddItemToArray(arr, e);
        }
        cJSON_AddItemToObject(o, "predictions", arr);
        cli_print_json(o);
    } else {
        printf("%s\n", path);
        for (int i = 0; i < k; i++)
            printf("  %.4f  %s\n", probs[order[i]], l->items[order[i]]);
    }
    free(order);
}

static void print_failure(const char *path, const tsr_error *err, int json, const char *key)
{
    fprintf(stderr, "tessera classify: error: %s\n", err->msg);
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, key, path);
        cJSON_AddStringToObject(o, "error", err->msg);
        cli_print_json(o);
    }
}

/* Sounds one file at a time (each may hold several windows); returns the
 * number that failed. */
static int classify_audio(tsr_session *sess, const tsr_model *m, const cli_paths *in,
                          const label_list *l, const float *weights, float *probs, int topk,
                          int json, int quiet, int strict, tsr_audio_window window,
                          double temperature)
{
    int P = tsr_model_embed_dim(m), failed = 0;
    float *emb = malloc(sizeof(float) * (size_t)P);
    cli_bar bar;
    cli_bar_start(&bar, "classify", in->n, quiet);
    for (int i = 0; i < in->n && emb; i++) {
        tsr_error err = {0};
        if (tsr_session_embed_audio_file(sess, in->v[i], window, emb, &err) != TSR_OK) {
            failed++;
            cli_bar_clear(&bar);
            print_failure(in->v[i], &err, json, "audio");
            if (strict)
                break;
        } else {
            tsr_zeroshot_logits(m, emb, 1, weights, l->n, probs);
            tsr_softmax_rows(probs, 1, l->n, temperature);
            cli_bar_clear(&bar);
            print_result(in->v[i], probs, l, topk, json, "audio");
        }
        fflush(stdout);
        cli_bar_update(&bar, i + 1, failed);
    }
    cli_bar_end(&bar);
    free(emb);
    return failed + (emb ? 0 : in->n);
}

int cmd_classify(int argc, char **argv)
{
    const char *model = NULL, *labels = NULL, *labels_file = NULL, *tmpl = NULL, *tmpls = NULL;
    const char *topk_s = NULL, *device = NULL, *lines = NULL, *temp_s = NULL;
    const char *isize = NULL, *mean = NULL, *std = NULL, *window_s = NULL;
    int json = 0, verbose = 0, strict = 0, quiet = 0, no_ahead = 0;
    cli_opt opts[] = {{"model", 1, &model, NULL},       {"labels", 1, &labels, NULL},
                      {"labels-file", 1, &labels_file, NULL}, {"template", 1, &tmpl, NULL},
                      {"templates", 1, &tmpls, NULL},    {"top-k", 1, &topk_s, NULL},
                      {"device", 1, &device, NULL},      {"json", 0, NULL, &json},
                      {"dtype", 1, &cli_dtype, NULL},
                      {"verbose", 0, NULL, &verbose},    {"lines", 1, &lines, NULL},
                      {"strict", 0, NULL, &strict},      {"quiet", 0, NULL, &quiet},
                      {"no-decode-ahead", 0, NULL, &no_ahead}, {"image-size", 1, &isize, NULL},
                      {"mean", 1, &mean, NULL},          {"std", 1, &std, NULL},
                      {"temperature", 1, &temp_s, NULL}, {"audio-window", 1, &window_s, NULL}};
    const char **imgs = NULL;
    int nimg = 0;
    int rc = cli_parse(argc, argv, opts, sizeof opts / sizeof opts[0], &imgs, &nimg);
    if (rc < 0) {
        fputs(classify_help, stdout);
        free(imgs);
        return EXIT_OK;
    }
    if (rc == EXIT_OK) {
        if (!model)
            rc = cli_usage_error("classify", "--model DIR is required");
        else if (!labels == !labels_file)
            rc = cli_usage_error("classify", "give exactly one of --labels and --labels-file");
        else if (tmpl && tmpls)
            rc = cli_usage_error("classify", "give at most one of --template and --templates");
        else if (tmpls && strcmp(tmpls, "imagenet") != 0)
            rc = cli_usage_error("classify", "unknown template set '%s' (known: imagenet)", tmpls);
        else if (tmpl && !strstr(tmpl, "{}"))
            rc = cli_usage_error("classify", "--template needs {} where the label goes");
        else if (nimg == 0 && !lines)
            rc = cli_usage_error("classify", "no images given");
        else if (nimg > 0 && lines)
            rc = cli_usage_error("classify", "give images either as arguments or with --lines");
    }
    int topk = 5;
    if (rc == EXIT_OK && topk_s) {
        char *end;
        long v = strtol(topk_s, &end, 10);
        if (*end || v < 1 || v > 1000000)
            rc = cli_usage_error("classify", "--top-k must be a positive integer");
        topk = (int)v;
    }
    double temperature = 1;
    if (rc == EXIT_OK && temp_s) {
        char *end;
        temperature = strtod(temp_s, &end);
        if (*end || !(temperature >= TSR_TEMPERATURE_MIN) || !(temperature <= TSR_TEMPERATURE_MAX))
            rc = cli_usage_error("classify", "--temperature must be a number in [%g, %g]",
                                 TSR_TEMPERATURE_MIN, TSR_TEMPERATURE_MAX);
    }
    tsr_audio_window window = TSR_AUDIO_WINDOW_MEAN;
    if (rc == EXIT_OK && window_s && cli_audio_window("classify", window_s, &window) != EXIT_OK)
        rc = EXIT_USAGE;
    /* CLAP models classify sounds: folders are walked for audio */
    int audio = 0;
    if (rc == EXIT_OK) {
        tsr_error kerr = {0};
        const char *kind = tsr_model_kind(model, &kerr);
        audio = kind && strcmp(kind, "clap") == 0;
        if (!audio && window_s)
            rc = cli_usage_error("classify", "--audio-window is for CLAP models");
    }
    label_list l = {0};
    if (rc == EXIT_OK)
        rc = parse_labels(labels, labels_file, &l);
    cli_paths in = {0};
    if (rc == EXIT_OK)
        rc = cli_collect_inputs_kind("classify", imgs, nimg, lines, audio, &in);
    if (rc == EXIT_OK && in.n == 0)
        rc = in.walk_errors ? EXIT_RUNTIME
                            : cli_usage_error("classify", audio ? "no audio files found"
                                                                : "no images found");
    if (rc != EXIT_OK) {
        labels_free(&l);
        cli_paths_free(&in);
        free(imgs);
        return rc;
    }
    if (tmpl && !tsr_utf8_valid(tmpl, strlen(tmpl), NULL)) {
        labels_free(&l);
        cli_paths_free(&in);
        free(imgs);
        return cli_usage_error("classify", "--template is not valid UTF-8");
    }
    if (topk > l.n)
        topk = l.n;

    tsr_ctx *ctx = NULL;
    tsr_model *m = NULL;
    tsr_session *sess = NULL;
    tsr_error err = {0};
    float *weights = NULL, *emb = NULL, *probs = NULL;
    int failed = 0;
    rc = cli_load("classify", model, device, verbose, &ctx, &m, &sess);
    audio = rc == EXIT_OK && tsr_model_audio_rate(m) > 0;
    if (rc == EXIT_OK && !audio && strcmp(tsr_model_family(m), "clip") != 0)
        rc = cli_usage_error("classify", "%s is a %s model; classify needs a CLIP or CLAP model",
                             model, tsr_model_family(m));
    if (rc == EXIT_OK && !audio)
        rc = cli_image_preprocess("classify", m, model, isize, mean, std);
    else if (rc == EXIT_OK && window == TSR_AUDIO_WINDOW_FUSION && !tsr_model_audio_fused(m))
        rc = cli_usage_error("classify", "--audio-window fusion needs a fused checkpoint; %s is "
                             "unfused (use mean or first)", model);
    else if (rc == EXIT_OK && (isize || mean || std))
        rc = cli_usage_error("classify", "--image-size, --mean and --std are for image models");
    if (rc == EXIT_OK) {
        const char *const *tl = NULL;
        int nt = 1;
        const char *single[1] = {tmpl ? tmpl : audio ? "This is a sound of {}." : "a photo of a {}."};
        if (tmpls)
            nt = tsr_templates_imagenet(&tl);
        else
            tl = single;
        int P = tsr_model_embed_dim(m), S = tsr_model_image_size(m);
        size_t per = (size_t)tsr_model_image_channels(m) * S * S;
        weights = malloc(sizeof(float) * (size_t)l.n * P);
        emb = malloc(sizeof(float) * (size_t)P * BATCH);
        probs = malloc(sizeof(float) * (size_t)l.n * BATCH);
        int cut = 0;
        if (!weights || !emb || !probs) {
            tsr_error_set(&err, TSR_ERR_NOMEM, "out of host memory");
            cli_error("classify", &err);
            rc = EXIT_RUNTIME;
        } else if (tsr_session_zeroshot_weights(sess, (const char *const *)l.items, l.n, tl, nt,
                                                weights, &cut, &err) != TSR_OK) {
            cli_error("classify", &err);
            rc = EXIT_RUNTIME;
        } else if (cut) {
            fprintf(stderr, "tessera classify: warning: %d prompt(s) were longer than %d tokens "
                            "and were truncated\n", cut, tsr_model_max_text_len(m));
        }
        if (rc == EXIT_OK && audio) {
            failed = classify_audio(sess, m, &in, &l, weights, probs, topk, json, quiet, strict,
                                    window, temperature);
        } else {
            cli_prefetch *pf = rc == EXIT_OK ? cli_prefetch_start((const char *const *)in.v, in.n,
                                                                  BATCH, tsr_model_preprocess_cfg(m),
                                                                  per, !no_ahead)
                                             : NULL;
            if (rc == EXIT_OK && !pf) {
                tsr_error_set(&err, TSR_ERR_NOMEM, "out of host memory");
                cli_error("classify", &err);
                rc = EXIT_RUNTIME;
            }
            cli_bar bar;
            cli_bar_start(&bar, "classify", in.n, quiet);
            const cli_batch *bt;
            int stop = 0;
            while (rc == EXIT_OK && !stop && (bt = cli_prefetch_next(pf))) {
                if (bt->n_ok && tsr_session_embed_pixels(sess, bt->px, bt->n_ok, 1, emb, &err) != TSR_OK) {
                    cli_bar_clear(&bar);
                    cli_error("classify", &err);
                    rc = EXIT_RUNTIME;
                    break;
                }
                if (bt->n_ok) {
                    tsr_zeroshot_logits(m, emb, bt->n_ok, weights, l.n, probs);
                    tsr_softmax_rows(probs, bt->n_ok, l.n, temperature);
                }
                for (int i = 0; i < bt->count && !stop; i++) {
                    const char *path = in.v[bt->first + i];
                    if (bt->slot[i] >= 0) {
                        if (bt->clipped16[i]) {
                            cli_bar_clear(&bar);
                            cli_warn_clipped("classify", path, bt->clipped16[i], bt->pixels[i]);
                        }
                        print_result(path, probs + (size_t)bt->slot[i] * l.n, &l, topk, json,
                                     "image");
                        continue;
                    }
                    failed++;
                    cli_bar_clear(&bar);
                    print_failure(path, &bt->err[i], json, "image");
                    stop = strict;
                }
                fflush(stdout);
                cli_bar_update(&bar, bt->first + bt->count, failed);
            }
            cli_bar_end(&bar);
            cli_prefetch_stop(pf);
        }
        if (failed)
            fprintf(stderr, "tessera classify: %d of %d %s failed%s\n", failed, in.n,
                    audio ? "audio file(s)" : "image(s)",
                    strict && failed ? " (--strict: stopped at the first)" : "");
    }
    free(weights);
    free(emb);
    free(probs);
    tsr_session_free(sess);
    tsr_model_free(m);
    tsr_ctx_free(ctx);
    int walk_errors = in.walk_errors;
    labels_free(&l);
    cli_paths_free(&in);
    free(imgs);
    if (rc == EXIT_OK && (failed || walk_errors))
        rc = EXIT_RUNTIME;
    return rc;
}
