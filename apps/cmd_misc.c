/* tessera embed, tokenize and devices. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static const char *embed_help =
    "usage: tessera embed --model DIR (--image | --audio | --text) [--out F.npy]\n"
    "                     [--lines FILE] [--strict] [--quiet] [--device D] [--dtype T]\n"
    "                     [--audio-window mean|first|fusion] INPUT...\n"
    "\n"
    "Embeddings of images or sounds (paths) or texts, one row per input. CLIP and\n"
    "CLAP models give L2-normalised rows; sentence-transformers models (BERT, e.g.\n"
    "all-MiniLM-L6-v2) pool and normalise as their modules.json says (--text only).\n"
    "\n"
    "  --image         inputs are image files (PNG, JPEG, WebP, GIF, TIFF, BMP), or folders (walked recursively,\n"
    "                  images found by content); a bad image is reported by name and\n"
    "                  skipped, the other rows are written, and the exit status is 1\n"
    "  --audio         inputs are audio files FFmpeg reads (WAV, FLAC, MP3, Ogg, M4A,\n"
    "                  ...), or folders walked for them by content (CLAP models)\n"
    "  --audio-window W  clips longer than 10 s: mean (default), first or fusion (see\n"
    "                  tessera classify --help)\n"
    "  --text          inputs are UTF-8 strings\n"
    "  --lines FILE    read the inputs from FILE, one per line (\"-\": stdin)\n"
    "  --out F.npy     write a float32 (N, dim) .npy file instead of JSON lines on stdout;\n"
    "                  with --image or --audio also F.paths.txt, the file of each row\n"
    "  --strict        stop at the first image that cannot be read, and write nothing\n"
    "  --quiet         no progress bar (it is shown only on a terminal anyway)\n"
    "  --image-size N --mean R,G,B --std R,G,B\n"
    "                  the preprocessing, over preprocessor_config.json's (needed when the\n"
    "                  model directory has none)\n"
    "  --device D      OpenCL device index or name substring\n"
    "  --dtype T       linear layers' weights on the device: f32 (default), f16, bf16 or int8\n"
    "  --verbose       log device and kernel cache use, and the embedding time, on stderr\n"
    "\n"
    "Exit codes: 0 ok, 1 runtime error, 2 usage error.\n";

static const char *tokenize_help =
    "usage: tessera tokenize --model DIR [--pad] [--json] TEXT...\n"
    "\n"
    "Prints the token ids of each text (with start and end tokens), one line per text:\n"
    "CLIP's BPE, BERT's WordPiece, or CLAP's RoBERTa byte-level BPE.\n"
    "  --pad     pad every text to the model's context length with the pad token\n"
    "  --json    one JSON array per line\n"
    "Needs only the tokenizer files of DIR, no OpenCL device.\n"
    "\n"
    "Exit codes: 0 ok, 1 runtime error, 2 usage error.\n";

static const char *devices_help =
    "usage: tessera devices [--json]\n"
    "\n"
    "Lists the OpenCL devices; use the index or a name substring with --device\n"
    "or TESSERA_DEVICE.\n"
    "\n"
    "Exit codes: 0 ok, 1 no OpenCL platform or device, 2 usage error.\n";

static void print_json_row(const char *input, const char *kind, const float *v, int n)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, kind, input);
    cJSON *arr = cJSON_AddArrayToObject(o, "embedding");
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateNumber(v[i]));
    cli_print_json(o);
}

/* F.npy -> F.paths.txt (F.x -> F.x.paths.txt). */
static void sidecar_path(const char *npy, char *out, size_t cap)
{
    size_t n = strlen(npy);
    if (n > 4 && strcmp(npy + n - 4, ".npy") == 0)
        n -= 4;
    snprintf(out, cap, "%.*s.paths.txt", (int)n, npy);
}

static int write_sidecar(const char *path, char *const *rows, int n, tsr_error *err)
{
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    int ok = f != NULL;
    for (int i = 0; i < n && ok; i++)
        ok = fprintf(f, "%s\n", rows[i]) > 0;
    if (f)
        ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        tsr_error_set(err, TSR_ERR_IO, "%s: write failed", path);
        return EXIT_RUNTIME;
    }
    return EXIT_OK;
}

/* --out: the rows (N, P) and their files beside them, F.paths.txt; nothing
 * when no row was made (what names the inputs: "image", "audio file"). */
static int write_rows(const char *out, char *const *rows, int good, const float *emb, int P,
                      const char *what, int verbose)
{
    tsr_error err = {0};
    char side[4200];
    sidecar_path(out, side, sizeof side);
    if (!good) {
        fprintf(stderr, "tessera embed: error: no %s could be read; %s not written\n", what, out);
    } else if (write_sidecar(side, rows, good, &err) != EXIT_OK ||
               cli_write_npy(out, emb, good, P, &err) != EXIT_OK) {
        cli_error("embed", &err);
        return EXIT_RUNTIME;
    } else if (verbose) {
        fprintf(stderr, "tessera embed: %d rows in %s, their files in %s\n", good, out, side);
    }
    return EXIT_OK;
}

static void print_json_failure(const char *path, const char *msg)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "image", path);
    cJSON_AddStringToObject(o, "error", msg);
    cli_print_json(o);
}

/* embed --image: every readable image gets a row; bad ones are reported and
 * skipped (or, with strict, end the run with nothing written). */
static int embed_images(const char *mdir, const char *device, int verbose, const char **args,
                        int nargs, const char *out, int strict, int quiet, const char *const pp[3])
{
    cli_paths in = {0};
    int rc = cli_collect_inputs("embed", args, nargs, NULL, &in);
    if (rc == EXIT_OK && in.n == 0)
        rc = in.walk_errors ? EXIT_RUNTIME : cli_usage_error("embed", "no images found");
    tsr_ctx *ctx = NULL;
    tsr_model *m = NULL;
    tsr_session *sess = NULL;
    tsr_error err = {0};
    if (rc == EXIT_OK)
        rc = cli_load("embed", mdir, device, verbose, &ctx, &m, &sess);
    if (rc == EXIT_OK)
        rc = cli_image_preprocess("embed", m, mdir, pp[0], pp[1], pp[2]);
    int P = m ? tsr_model_embed_dim(m) : 0, S = m ? tsr_model_image_size(m) : 0;
    size_t per = m ? (size_t)tsr_model_image_channels(m) * S * S : 0;
    float *emb = rc == EXIT_OK ? malloc(sizeof(float) * (size_t)in.n * P) : NULL;
    char **rows = rc == EXIT_OK ? malloc(sizeof(char *) * (size_t)in.n) : NULL;
    cli_prefetch *pf = rc == EXIT_OK ? cli_prefetch_start((const char *const *)in.v, in.n, 16,
                                                          tsr_model_preprocess_cfg(m), per, 1)
                                     : NULL;
    if (rc == EXIT_OK && (!emb || !rows || !pf)) {
        tsr_error_set(&err, TSR_ERR_NOMEM, "out of host memory");
        cli_error("embed", &err);
        rc = EXIT_RUNTIME;
    }
    int good = 0, failed = 0, stop = 0;
    cli_bar bar;
    cli_bar_start(&bar, "embed", in.n, quiet);
    const cli_batch *bt;
    while (rc == EXIT_OK && !stop && (bt = cli_prefetch_next(pf))) {
        int base = good, seen = 0;
        const char *why[CLI_MAX_BATCH];
        for (int i = 0; i < bt->count && !stop; i++, seen++) {
            const char *path = in.v[bt->first + i];
            why[i] = bt->slot[i] < 0 ? bt->err[i].msg : NULL;
            if (!why[i] && out && strchr(path, '\n'))
                why[i] = "the file name holds a line break, which F.paths.txt cannot map";
            if (!why[i] && bt->clipped16[i]) {
                cli_bar_clear(&bar);
                cli_warn_clipped("embed", path, bt->clipped16[i], bt->pixels[i]);
            }
            if (!why[i]) {
                rows[good++] = in.v[bt->first + i];
                continue;
            }
            failed++;
            cli_bar_clear(&bar);
            if (bt->slot[i] < 0)
                fprintf(stderr, "tessera embed: error: %s\n", why[i]);
            else
                fprintf(stderr, "tessera embed: error: %s: %s\n", path, why[i]);
            stop = strict;
        }
        /* the rows of this batch, in input order, skipping the ones refused above */
        float *tmp = bt->n_ok ? malloc(sizeof(float) * (size_t)bt->n_ok * P) : NULL;
        if (bt->n_ok && (!tmp || tsr_session_embed_pixels(sess, bt->px, bt->n_ok, 1, tmp, &err) !=
                                     TSR_OK)) {
            if (!tmp)
                tsr_error_set(&err, TSR_ERR_NOMEM, "out of host memory");
            cli_bar_clear(&bar);
            cli_error("embed", &err);
            free(tmp);
            rc = EXIT_RUNTIME;
            break;
        }
        for (int i = 0, r = base; i < seen; i++) { /* in input order */
            if (why[i]) {
                if (!out)
                    print_json_failure(in.v[bt->first + i], why[i]);
                continue;
            }
            memcpy(emb + (size_t)r * P, tmp + (size_t)bt->slot[i] * P, sizeof(float) * P);
            if (!out)
                print_json_row(rows[r], "image", emb + (size_t)r * P, P);
            r++;
        }
        free(tmp);
        fflush(stdout);
        cli_bar_update(&bar, bt->first + bt->count, failed);
    }
    cli_bar_end(&bar);
    cli_prefetch_stop(pf);
    if (rc == EXIT_OK && failed)
        fprintf(stderr, "tessera embed: %d of %d image(s) failed%s\n", failed, in.n,
                strict ? "; --strict: nothing written" : "");
    if (rc == EXIT_OK && out && !(strict && failed))
        rc = write_rows(out, rows, good, emb, P, "image", verbose);
    if (rc == EXIT_OK && (failed || in.walk_errors))
        rc = EXIT_RUNTIME;
    free(emb);
    free(rows);
    tsr_session_free(sess);
    tsr_model_free(m);
    tsr_ctx_free(ctx);
    cli_paths_free(&in);
    return rc;
}

/* embed --audio: one row per readable file; bad ones are reported and
 * skipped (or, with strict, end the run with nothing written). */
static int embed_audio(const char *mdir, const char *device, int verbose, const char **args,
                       int nargs, const char *out, int strict, int quiet, tsr_audio_window window)
{
    cli_paths in = {0};
    int rc = cli_collect_inputs_kind("embed", args, nargs, NULL, 1, &in);
    if (rc == EXIT_OK && in.n == 0)
        rc = in.walk_errors ? EXIT_RUNTIME : cli_usage_error("embed", "no audio files found");
    tsr_ctx *ctx = NULL;
    tsr_model *m = NULL;
    tsr_session *sess = NULL;
    tsr_error err = {0};
    if (rc == EXIT_OK)
        rc = cli_load("embed", mdir, device, verbose, &ctx, &m, &sess);
    if (rc == EXIT_OK && window == TSR_AUDIO_WINDOW_FUSION && !tsr_model_audio_fused(m))
        rc = cli_usage_error("embed", "--audio-window fusion needs a fused checkpoint; %s is "
                             "unfused (use mean or first)", mdir);
    int P = m ? tsr_model_embed_dim(m) : 0, good = 0, failed = 0;
    float *emb = rc == EXIT_OK ? malloc(sizeof(float) * (size_t)in.n * P) : NULL;
    char **rows = rc == EXIT_OK ? malloc(sizeof(char *) * (size_t)in.n) : NULL;
    if (rc == EXIT_OK && (!emb || !rows)) {
        tsr_error_set(&err, TSR_ERR_NOMEM, "out of host memory");
        cli_error("embed", &err);
        rc = EXIT_RUNTIME;
    }
    cli_bar bar;
    cli_bar_start(&bar, "embed", in.n, quiet);
    for (int i = 0; i < in.n && rc == EXIT_OK; i++) {
        const char *path = in.v[i];
        float *row = emb + (size_t)good * P;
        const char *why = out && strchr(path, '\n')
                              ? "the file name holds a line break, which F.paths.txt cannot map"
                              : NULL;
        if (!why && tsr_session_embed_audio_file(sess, path, window, row, &err) != TSR_OK)
            why = err.msg;
        cli_bar_clear(&bar);
        if (why) {
            failed++;
            fprintf(stderr, "tessera embed: error: %s%s%s\n", why == err.msg ? "" : path,
                    why == err.msg ? "" : ": ", why);
            if (!out) {
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "audio", path);
                cJSON_AddStringToObject(o, "error", why);
                cli_print_json(o);
            }
            if (strict)
                break;
        } else {
            rows[good++] = in.v[i];
            if (!out)
                print_json_row(path, "audio", row, P);
        }
        fflush(stdout);
        cli_bar_update(&bar, i + 1, failed);
    }
    cli_bar_end(&bar);
    if (rc == EXIT_OK && failed)
        fprintf(stderr, "tessera embed: %d of %d audio file(s) failed%s\n", failed, in.n,
                strict ? "; --strict: nothing written" : "");
    if (rc == EXIT_OK && out && !(strict && failed))
        rc = write_rows(out, rows, good, emb, P, "audio file", verbose);
    if (rc == EXIT_OK && (failed || in.walk_errors))
        rc = EXIT_RUNTIME;
    free(emb);
    free(rows);
    tsr_session_free(sess);
    tsr_model_free(m);
    tsr_ctx_free(ctx);
    cli_paths_free(&in);
    return rc;
}

int cmd_embed(int argc, char **argv)
{
    const char *model = NULL, *out = NULL, *device = NULL;
    const char *lines = NULL;
    const char *isize = NULL, *mean = NULL, *std = NULL, *window_s = NULL;
    int image = 0, text = 0, audio = 0, verbose = 0, strict = 0, quiet = 0;
    cli_opt opts[] = {{"model", 1, &model, NULL},   {"out", 1, &out, NULL},
                      {"device", 1, &device, NULL}, {"image", 0, NULL, &image},
                      {"dtype", 1, &cli_dtype, NULL},
                      {"text", 0, NULL, &text},     {"verbose", 0, NULL, &verbose},
                      {"lines", 1, &lines, NULL},   {"strict", 0, NULL, &strict},
                      {"quiet", 0, NULL, &quiet},   {"image-size", 1, &isize, NULL},
                      {"mean", 1, &mean, NULL},     {"std", 1, &std, NULL},
                      {"audio", 0, NULL, &audio},   {"audio-window", 1, &window_s, NULL}};
    const char **in = NULL;
    int n = 0;
    int rc = cli_parse(argc, argv, opts, sizeof opts / sizeof opts[0], &in, &n);
    if (rc < 0) {
        fputs(embed_help, stdout);
        free(in);
        return EXIT_OK;
    }
    char *lines_buf = NULL;
    if (rc == EXIT_OK && lines) {
        if (n > 0) {
            rc = cli_usage_error("embed", "give inputs either as arguments or with --lines");
        } else if ((rc = cli_read_lines("embed", lines, &lines_buf, &in, &n)) != EXIT_OK) {
            free(in);
            return rc;
        }
    }
    if (rc == EXIT_OK && !model)
        rc = cli_usage_error("embed", "--model DIR is required");
    else if (rc == EXIT_OK && image + text + audio != 1)
        rc = cli_usage_error("embed", "give exactly one of --image, --audio and --text");
    tsr_audio_window window = TSR_AUDIO_WINDOW_MEAN;
    if (rc == EXIT_OK && window_s && !audio)
        rc = cli_usage_error("embed", "--audio-window goes with --audio");
    else if (rc == EXIT_OK && window_s && cli_audio_window("embed", window_s, &window) != EXIT_OK)
        rc = EXIT_USAGE;
    else if (rc == EXIT_OK && n == 0)
        rc = cli_usage_error("embed", "no inputs given");
    for (int i = 0; i < n && rc == EXIT_OK && text; i++)
        if (!tsr_utf8_valid(in[i], strlen(in[i]), NULL))
            rc = cli_usage_error("embed", "text %d is not valid UTF-8", i + 1);
    if (rc != EXIT_OK) {
        free(in);
        free(lines_buf);
        return rc;
    }
    tsr_ctx *ctx = NULL;
    tsr_model *m = NULL;
    tsr_session *sess = NULL;
    tsr_error err = {0};
    float *emb = NULL;
    char mdir[4096];
    rc = cli_model_dir("embed", model, verbose, mdir, sizeof mdir);
    const char *kind = rc == EXIT_OK ? tsr_model_kind(mdir, &err) : NULL;
    if (rc == EXIT_OK && !kind) {
        cli_error("embed", &err);
        rc = EXIT_RUNTIME;
    } else if (rc == EXIT_OK && strcmp(kind, "bert") == 0 && image) {
        rc = cli_usage_error("embed", "%s is a text model; --image needs a CLIP model", mdir);
    } else if (rc == EXIT_OK && strcmp(kind, "whisper") == 0) {
        rc = cli_usage_error("embed", "%s is a speech model; use tessera transcribe", mdir);
    } else if (rc == EXIT_OK && audio && strcmp(kind, "clap") != 0) {
        rc = cli_usage_error("embed", "%s is a %s model; --audio needs a CLAP model", mdir, kind);
    } else if (rc == EXIT_OK && image && strcmp(kind, "clap") == 0) {
        rc = cli_usage_error("embed", "%s is an audio-text (CLAP) model; use --audio or --text",
                             mdir);
    }
    if (rc != EXIT_OK) {
        free(in);
        free(lines_buf);
        return rc;
    }
    if (audio) {
        rc = embed_audio(mdir, device, verbose, in, n, out, strict, quiet, window);
        free(in);
        free(lines_buf);
        return rc;
    }
    if (image) {
        const char *pp[3] = {isize, mean, std};
        rc = embed_images(mdir, device, verbose, in, n, out, strict, quiet, pp);
        free(in);
        free(lines_buf);
        return rc;
    }
    rc = cli_load("embed", mdir, device, verbose, &ctx, &m, &sess);
    int P = m ? tsr_model_embed_dim(m) : 0, cut = 0, clip = m && strcmp(kind, "bert") != 0;
    if (rc == EXIT_OK && !(emb = malloc(sizeof(float) * (size_t)n * P))) {
        tsr_error_set(&err, TSR_ERR_NOMEM, "out of host memory");
        rc = EXIT_RUNTIME;
    }
    if (rc == EXIT_OK) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        /* CLIP rows are L2-normalised; BERT pools and normalises as its modules.json says */
        tsr_status st = tsr_session_embed_texts(sess, in, n, clip, emb, &cut, &err);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (st != TSR_OK)
            rc = EXIT_RUNTIME;
        else if (verbose)
            fprintf(stderr, "tessera embed: embedded %d inputs in %.4f s\n", n,
                    (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
        if (cut)
            fprintf(stderr, "tessera embed: warning: %d text(s) were longer than %d tokens "
                            "and were truncated\n", cut, tsr_model_max_text_len(m));
    }
    if (rc == EXIT_OK && out)
        rc = cli_write_npy(out, emb, n, P, &err);
    else if (rc == EXIT_OK)
        for (int i = 0; i < n; i++)
            print_json_row(in[i], "text", emb + (size_t)i * P, P);
    if (rc == EXIT_RUNTIME && err.msg[0])
        cli_error("embed", &err);
    free(emb);
    tsr_session_free(sess);
    tsr_model_free(m);
    tsr_ctx_free(ctx);
    free(in);
    free(lines_buf);
    return rc;
}

static void print_ids(const int *ids, int len, int json)
{
    if (json)
        putchar('[');
    for (int k = 0; k < len; k++)
        printf(k ? (json ? ", %d" : " %d") : "%d", ids[k]);
    puts(json ? "]" : "");
}

/* An integer in 2..hi from DIR/FILE ([section].key), or def. */
static int config_int(const char *dir, const char *file, const char *section, const char *key,
                      int def, int hi)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    tsr_error err = {0};
    char *text = cli_read_file(path, 1 << 20, NULL, &err);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    const cJSON *obj = root; /* section: a path of object names, "a.b" */
    for (const char *p = section; p && *p && obj;) {
        size_t n = strcspn(p, ".");
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(n < 63 ? n : 63), p);
        obj = cJSON_GetObjectItemCaseSensitive(obj, name);
        p += n + (p[n] == '.');
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (cJSON_IsNumber(v) && v->valuedouble >= 2 && v->valuedouble <= hi)
        def = (int)v->valuedouble;
    cJSON_Delete(root);
    free(text);
    return def;
}

typedef tsr_status (*encode_fn)(const void *tok, const char *text, int max_len, int *ids, int *n,
                                int *truncated, tsr_error *err);

static tsr_status encode_bpe(const void *tok, const char *text, int max_len, int *ids, int *n,
                             int *truncated, tsr_error *err)
{
    return tsr_tokenizer_encode(tok, text, max_len, ids, n, truncated, err);
}

static tsr_status encode_wordpiece(const void *tok, const char *text, int max_len, int *ids,
                                   int *n, int *truncated, tsr_error *err)
{
    return tsr_wordpiece_encode(tok, text, max_len, ids, n, truncated, err);
}

static tsr_status encode_roberta(const void *tok, const char *text, int max_len, int *ids,
                                 int *n, int *truncated, tsr_error *err)
{
    return tsr_roberta_encode(tok, text, max_len, ids, n, truncated, err);
}

/* Prints the ids of each text, truncated to cap and padded with pad_id when asked. */
static int print_tokens(encode_fn encode, const void *tok, int pad_id, int cap, const char **in,
                        int n, int json, int pad)
{
    tsr_error err = {0};
    int rc = EXIT_OK, *ids = malloc(sizeof(int) * (size_t)cap);
    for (int i = 0; i < n && rc == EXIT_OK && ids; i++) {
        int len = 0, cut = 0;
        if (encode(tok, in[i], cap, ids, &len, &cut, &err) != TSR_OK) {
            tsr_error_prefix(&err, "text %d", i + 1);
            cli_error("tokenize", &err);
            rc = EXIT_RUNTIME;
            break;
        }
        if (cut)
            fprintf(stderr, "tessera tokenize: warning: text %d was truncated to %d tokens\n",
                    i + 1, cap);
        while (pad && len < cap)
            ids[len++] = pad_id;
        print_ids(ids, len, json);
    }
    free(ids);
    return rc;
}

int cmd_tokenize(int argc, char **argv)
{
    const char *model = NULL;
    int json = 0, pad = 0;
    cli_opt opts[] = {{"model", 1, &model, NULL}, {"json", 0, NULL, &json}, {"pad", 0, NULL, &pad}};
    const char **in = NULL;
    int n = 0;
    int rc = cli_parse(argc, argv, opts, 3, &in, &n);
    if (rc < 0) {
        fputs(tokenize_help, stdout);
        free(in);
        return EXIT_OK;
    }
    if (rc == EXIT_OK && !model)
        rc = cli_usage_error("tokenize", "--model DIR is required");
    else if (rc == EXIT_OK && n == 0)
        rc = cli_usage_error("tokenize", "no text given");
    if (rc != EXIT_OK) {
        free(in);
        return rc;
    }
    tsr_tokenizer *tok = NULL;
    tsr_error err = {0};
    char mdir[4096];
    if (cli_model_dir("tokenize", model, 0, mdir, sizeof mdir) != EXIT_OK) {
        free(in);
        return EXIT_RUNTIME;
    }
    model = mdir;
    const char *kind = tsr_model_kind(model, &err);
    if (kind && strcmp(kind, "bert") == 0) { /* up to sentence_bert_config.json's max_seq_length */
        tsr_wordpiece *wp = NULL;
        if (tsr_wordpiece_load_dir(model, &wp, &err) != TSR_OK) {
            cli_error("tokenize", &err);
            free(in);
            return EXIT_RUNTIME;
        }
        int pos = config_int(model, "config.json", NULL, "max_position_embeddings", 512, 512);
        int cap = config_int(model, "sentence_bert_config.json", NULL, "max_seq_length", pos, pos);
        rc = print_tokens(encode_wordpiece, wp, tsr_wordpiece_pad(wp), cap, in, n, json, pad);
        tsr_wordpiece_free(wp);
        free(in);
        return rc;
    }
    if (kind && strcmp(kind, "clap") == 0) { /* RoBERTa: positions start past the pad id */
        char tj[4200];
        snprintf(tj, sizeof tj, "%s/tokenizer.json", model);
        tsr_bytelevel *bl = NULL;
        if (tsr_bytelevel_load(tj, &bl, &err) != TSR_OK) {
            cli_error("tokenize", &err);
            free(in);
            return EXIT_RUNTIME;
        }
        int pos = config_int(model, "config.json", "text_config", "max_position_embeddings", 514,
                             65536);
        int padid = tsr_bytelevel_id(bl, "<pad>");
        rc = print_tokens(encode_roberta, bl, padid < 0 ? 1 : padid, pos - (padid < 0 ? 1 : padid) - 1,
                          in, n, json, pad);
        tsr_bytelevel_free(bl);
        free(in);
        return rc;
    }
    if (tsr_tokenizer_load_dir(model, &tok, &err) != TSR_OK) {
        cli_error("tokenize", &err);
        free(in);
        return EXIT_RUNTIME;
    }
    char cfg[4200], oc_cfg[4200];
    snprintf(cfg, sizeof cfg, "%s/config.json", model);
    snprintf(oc_cfg, sizeof oc_cfg, "%s/open_clip_config.json", model);
    int cap, pad_id = tsr_tokenizer_pad(tok);
    /* open_clip's layout, as the library tells it (clip_detect): no
     * config.json, an open_clip_config.json; its tokenizer pads with 0 */
    if (access(cfg, F_OK) != 0 && access(oc_cfg, F_OK) == 0) {
        tsr_tokenizer_set_openclip(tok, 1);
        cap = config_int(model, "open_clip_config.json", "model_cfg.text_cfg", "context_length",
                         77, 65536);
        pad_id = 0;
    } else {
        cap = config_int(model, "config.json", "text_config", "max_position_embeddings", 77,
                         65536);
    }
    rc = print_tokens(encode_bpe, tok, pad_id, cap, in, n, json, pad);
    tsr_tokenizer_free(tok);
    free(in);
    return rc;
}

int cmd_devices(int argc, char **argv)
{
    int json = 0;
    cli_opt opts[] = {{"json", 0, NULL, &json}};
    const char **in = NULL;
    int n = 0;
    int rc = cli_parse(argc, argv, opts, 1, &in, &n);
    free(in);
    if (rc < 0) {
        fputs(devices_help, stdout);
        return EXIT_OK;
    }
    if (rc != EXIT_OK)
        return rc;
    if (n)
        return cli_usage_error("devices", "takes no arguments");
    tsr_device_info info[64];
    int count = 0;
    tsr_error err = {0};
    if (tsr_devices_list(info, 64, &count, &err) != TSR_OK) {
        cli_error("devices", &err);
        return EXIT_RUNTIME;
    }
    if (count > 64)
        count = 64;
    cJSON *arr = json ? cJSON_CreateArray() : NULL;
    for (int i = 0; i < count; i++) {
        tsr_device_info *d = &info[i];
        if (json) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "index", d->index);
            cJSON_AddStringToObject(o, "name", d->name);
            cJSON_AddStringToObject(o, "platform", d->platform);
            cJSON_AddStringToObject(o, "vendor", d->vendor);
            cJSON_AddStringToObject(o, "version", d->version);
            cJSON_AddStringToObject(o, "driver", d->driver);
            cJSON_AddStringToObject(o, "type", d->is_gpu ? "gpu" : "other");
            cJSON_AddNumberToObject(o, "compute_units", d->compute_units);
            cJSON_AddNumberToObject(o, "global_mem_bytes", (double)d->global_mem);
            cJSON_AddBoolToObject(o, "fp16", d->has_fp16);
            cJSON_AddItemToArray(arr, o);
        } else {
            printf("%d: %s\n   platform %s, %s, driver %s\n   %d compute units, %.1f GiB, %s%s\n",
                   d->index, d->name, d->platform, d->version, d->driver, d->compute_units,
                   d->global_mem / 1073741824.0, d->is_gpu ? "GPU" : "not a GPU",
                   d->has_fp16 ? ", fp16" : "");
        }
    }
    if (json) {
        char *s = cJSON_Print(arr);
        if (s)
            puts(s);
        free(s);
        cJSON_Delete(arr);
    }
    return EXIT_OK;
}
