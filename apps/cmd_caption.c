/* tessera caption: image captions with a BLIP or CoCa checkpoint. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *caption_help =
    "usage: tessera caption --model DIR [--prompt TEXT] [--beams N] [--beam-groups G]\n"
    "                       [--max-length N]\n"
    "                       [--max-new-tokens N] [--min-length N] [--length-penalty X]\n"
    "                       [--repetition-penalty X] [--no-repeat-ngram N]\n"
    "                       [--early-stopping false|true|never] [--num-captions K]\n"
    "                       [--sample [--temperature T] [--top-k K] [--top-p P] [--seed S]]\n"
    "                       [--json] [--device D] [--dtype T] [--verbose] IMAGE...\n"
    "\n"
    "Writes a caption for each image (PNG, JPEG, WebP, GIF, TIFF, BMP), as transformers'\n"
    "BlipForConditionalGeneration.generate() does (greedy or beam search), or for a\n"
    "CoCa as open_clip's CoCa.generate() does.\n"
    "\n"
    "  --model DIR             a Hugging Face BLIP captioning directory\n"
    "                          (Salesforce/blip-image-captioning-base or -large), or an\n"
    "                          open_clip CoCa directory (open_clip_config.json and\n"
    "                          open_clip_model.safetensors)\n"
    "  --prompt TEXT           the text each caption starts with (\"a picture of\")\n"
    "  --beams N               beam search with N beams, 1 to 16 (default: the model's, 1;\n"
    "                          CoCa: open_clip's num_beams, default 6)\n"
    "  --beam-groups G         CoCa: open_clip's num_beam_groups (default 3, or 1 when N\n"
    "                          is not a multiple of 3); its groups never differ, so N/G\n"
    "                          beams are searched\n"
    "  --max-length N          tokens in all, [DEC] and prompt included (default: the\n"
    "                          model's; transformers' default 20 means 20 new tokens)\n"
    "  --max-new-tokens N      caption tokens at most (overrides --max-length)\n"
    "  --min-length N          tokens in all before the caption may end (default 0;\n"
    "                          CoCa: its start token counted, default 5, max length 30)\n"
    "  --length-penalty X      beam scores / length^X (default 1)\n"
    "  --repetition-penalty X  > 1 discourages repeated tokens (default 1: off)\n"
    "  --no-repeat-ngram N     no n-gram of N tokens repeats (default 0: off)\n"
    "  --early-stopping E      beam search stops: false (default), true or never\n"
    "  --num-captions K        captions per image: the K best of beam search (K <= beams),\n"
    "                          or K independent samples (default 1)\n"
    "  --sample                sample tokens instead of searching (beams 1)\n"
    "  --temperature T         sampling: logits / T (default 1)\n"
    "  --top-k K               sampling: only the K most likely tokens (default 50; 0: all)\n"
    "  --top-p P               sampling: the most likely tokens reaching mass P (default 1)\n"
    "                          (CoCa: open_clip's \"top_p\" type, top-p 0.1, by default;\n"
    "                          --top-k alone is its \"top_k\" type; the temperature\n"
    "                          applies after the cut, as open_clip applies it)\n"
    "  --seed S                sampling: the generator's seed (default 0); the same seed\n"
    "                          gives the same captions on every run and device\n"
    "  --json                  one JSON object per image on stdout: image, caption,\n"
    "                          ids, finished (ended by the model, not cut), score, and\n"
    "                          with --num-captions, captions (each with those fields)\n"
    "                          (JSON strings are UTF-8: other bytes of a file name\n"
    "                          become U+FFFD there)\n"
    "\n"
    "score: the search's own measure, the sum of the tokens' log-probabilities\n"
    "after the logit processors (sampling: after the temperature and the top-k and\n"
    "top-p cuts), divided by length^length-penalty (transformers' beam score).\n"
    "Sample k of --num-captions has its own generator, so the first samples do\n"
    "not change when more are asked for.\n"
    "  --device D              OpenCL device index or name substring\n"
    "  --dtype T               linear layers' weights on the device: f32 (default), f16, bf16 or int8\n"
    "  --verbose               log device and kernel cache use on stderr\n"
    "\n"
    "Output: one line per caption, PATH, a tab, the caption. An image that cannot be\n"
    "read is reported on stderr (and as {\"image\", \"error\"} with --json) and the\n"
    "others go on.\n"
    "\n"
    "Exit codes: 0 ok, 1 runtime error (a bad image, model or device), 2 usage error.\n";

static int parse_int(const char *s, const char *opt, int lo, int hi, int *out)
{
    if (!s)
        return EXIT_OK;
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi)
        return cli_usage_error("caption", "%s must be an integer from %d to %d", opt, lo, hi);
    *out = (int)v;
    return EXIT_OK;
}

static int parse_float(const char *s, const char *opt, double lo, double hi, float *out)
{
    if (!s)
        return EXIT_OK;
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !(v >= lo && v <= hi))
        return cli_usage_error("caption", "%s must be a number from %g to %g", opt, lo, hi);
    *out = (float)v;
    return EXIT_OK;
}

static void add_caption(cJSON *o, const tsr_caption *c)
{
    cJSON *ids = cJSON_CreateArray();
    cJSON_AddStringToObject(o, "caption", c->text);
    for (int i = 0; i < c->n_ids; i++)
        cJSON_AddItemToArray(ids, cJSON_CreateNumber(c->ids[i]));
    cJSON_AddItemToObject(o, "ids", ids);
    cJSON_AddBoolToObject(o, "finished", c->finished);
    cJSON_AddNumberToObject(o, "score", c->score);
}

/* The K captions of one image, best first. */
static void print_captions(const char *path, const tsr_caption *c, int K, int json)
{
    if (!json) {
        for (int k = 0; k < K; k++)
            printf("%s\t%s\n", path, c[k].text);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    char *name = tsr_utf8_lossy(path, strlen(path)); /* JSON strings are UTF-8 */
    cJSON_AddStringToObject(o, "image", name ? name : "");
    free(name);
    add_caption(o, &c[0]);
    if (K > 1) {
        cJSON *all = cJSON_CreateArray();
        for (int k = 0; k < K; k++) {
            cJSON *e = cJSON_CreateObject();
            add_caption(e, &c[k]);
            cJSON_AddItemToArray(all, e);
        }
        cJSON_AddItemToObject(o, "captions", all);
    }
    cli_print_json(o);
}

static void print_failure(const char *path, const tsr_error *err, int json)
{
    fprintf(stderr, "tessera caption: error: %s\n", err->msg);
    if (json) {
        cJSON *o = cJSON_CreateObject();
        char *name = tsr_utf8_lossy(path, strlen(path)), *msg = tsr_utf8_lossy(err->msg,
                                                                              strlen(err->msg));
        cJSON_AddStringToObject(o, "image", name ? name : "");
        cJSON_AddStringToObject(o, "error", msg ? msg : "");
        free(name);
        free(msg);
        cli_print_json(o);
    }
}

int cmd_caption(int argc, char **argv)
{
    const char *model = NULL, *prompt = NULL, *beams = NULL, *max_len = NULL, *max_new = NULL;
    const char *min_len = NULL, *lp = NULL, *rp = NULL, *ngram = NULL, *early = NULL;
    const char *device = NULL, *ncap = NULL, *temp = NULL, *topk = NULL, *topp = NULL;
    const char *seed = NULL, *groups = NULL;
    int json = 0, verbose = 0, sample = 0;
    cli_opt opts[] = {{"model", 1, &model, NULL},
                      {"prompt", 1, &prompt, NULL},
                      {"beams", 1, &beams, NULL},
                      {"beam-groups", 1, &groups, NULL},
                      {"max-length", 1, &max_len, NULL},
                      {"max-new-tokens", 1, &max_new, NULL},
                      {"min-length", 1, &min_len, NULL},
                      {"length-penalty", 1, &lp, NULL},
                      {"repetition-penalty", 1, &rp, NULL},
                      {"no-repeat-ngram", 1, &ngram, NULL},
                      {"early-stopping", 1, &early, NULL},
                      {"num-captions", 1, &ncap, NULL},
                      {"sample", 0, NULL, &sample},
                      {"temperature", 1, &temp, NULL},
                      {"top-k", 1, &topk, NULL},
                      {"top-p", 1, &topp, NULL},
                      {"seed", 1, &seed, NULL},
                      {"device", 1, &device, NULL}, {"dtype", 1, &cli_dtype, NULL},
                      {"json", 0, NULL, &json},
                      {"verbose", 0, NULL, &verbose}};
    const char **imgs = NULL;
    int nimg = 0;
    int rc = cli_parse(argc, argv, opts, sizeof opts / sizeof opts[0], &imgs, &nimg);
    if (rc < 0) {
        fputs(caption_help, stdout);
        free(imgs);
        return EXIT_OK;
    }
    if (rc == EXIT_OK && !model)
        rc = cli_usage_error("caption", "--model DIR is required");
    else if (rc == EXIT_OK && prompt && !tsr_utf8_valid(prompt, strlen(prompt), NULL))
        rc = cli_usage_error("caption", "--prompt is not valid UTF-8");
    else if (rc == EXIT_OK && early && strcmp(early, "false") != 0 && strcmp(early, "true") != 0 &&
             strcmp(early, "never") != 0)
        rc = cli_usage_error("caption", "--early-stopping must be false, true or never");
    else if (rc == EXIT_OK && nimg == 0)
        rc = cli_usage_error("caption", "no images given");
    if (rc != EXIT_OK) {
        free(imgs);
        return rc;
    }
    tsr_ctx *ctx = NULL;
    tsr_model *m = NULL;
    tsr_session *sess = NULL;
    rc = cli_load("caption", model, device, verbose, &ctx, &m, &sess);
    if (rc == EXIT_OK && !tsr_model_can_caption(m))
        rc = cli_usage_error("caption",
                             "%s is a %s model without a text decoder; caption needs a BLIP "
                             "captioning model or an open_clip CoCa",
                             model, tsr_model_family(m));
    int coca = rc == EXIT_OK && strcmp(tsr_model_family(m), "blip") != 0;
    tsr_caption_params p = tsr_caption_default_params(m);
    if (rc == EXIT_OK) {
        p.prompt = prompt;
        rc = parse_int(beams, "--beams", 1, 16, &p.beams);
        if (rc == EXIT_OK && coca && beams && !groups)
            p.beam_groups = p.beams % 3 == 0 ? 3 : 1;
        if (rc == EXIT_OK && groups && !coca)
            rc = cli_usage_error("caption", "--beam-groups is for CoCa models");
        if (rc == EXIT_OK)
            rc = parse_int(groups, "--beam-groups", 1, 16, &p.beam_groups);
        if (rc == EXIT_OK && coca && topk && !topp)
            p.top_p = 1.0f; /* open_clip's "top_k" generation type */
        if (rc == EXIT_OK && coca && topp && !topk)
            p.top_k = 0;
        if (rc == EXIT_OK)
            rc = parse_int(max_len, "--max-length", 2, 1 << 16, &p.max_length);
        if (rc == EXIT_OK)
            rc = parse_int(max_new, "--max-new-tokens", 1, 1 << 16, &p.max_new_tokens);
        if (rc == EXIT_OK)
            rc = parse_int(min_len, "--min-length", 0, 1 << 16, &p.min_length);
        if (rc == EXIT_OK)
            rc = parse_int(ngram, "--no-repeat-ngram", 0, 1 << 16, &p.no_repeat_ngram);
        if (rc == EXIT_OK)
            rc = parse_float(lp, "--length-penalty", -100, 100, &p.length_penalty);
        if (rc == EXIT_OK)
            rc = parse_float(rp, "--repetition-penalty", 0.01, 100, &p.repetition_penalty);
        if (rc == EXIT_OK)
            rc = parse_int(ncap, "--num-captions", 1, 16, &p.num_captions);
        if (rc == EXIT_OK)
            rc = parse_float(temp, "--temperature", 0.01, 100, &p.temperature);
        if (rc == EXIT_OK)
            rc = parse_int(topk, "--top-k", 0, 1 << 22, &p.top_k);
        if (rc == EXIT_OK)
            rc = parse_float(topp, "--top-p", 1e-6, 1, &p.top_p);
        if (rc == EXIT_OK && seed) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(seed, &end, 10);
            if (!*seed || *end || seed[0] == '-' || errno == ERANGE)
                rc = cli_usage_error("caption", "--seed must be a non-negative integer");
            p.seed = v;
        }
        if (rc == EXIT_OK && sample)
            p.do_sample = 1;
        if (rc == EXIT_OK && coca && sample && !beams)
            p.beams = 1; /* CoCa's default is beam search */
        if (rc == EXIT_OK && coca && early)
            rc = cli_usage_error("caption", "--early-stopping is for BLIP (open_clip's CoCa "
                                            "generate() has none)");
        if (rc == EXIT_OK && coca && groups && p.beams == 1)
            rc = cli_usage_error("caption", "--beam-groups needs beam search (--beams > 1)");
        if (rc == EXIT_OK && coca && p.beams == 1)
            p.beam_groups = 1;
        if (rc == EXIT_OK && !sample && (temp || topk || topp || seed))
            rc = cli_usage_error("caption", "--temperature, --top-k, --top-p and --seed need "
                                            "--sample");
        if (rc == EXIT_OK && sample && beams && p.beams > 1)
            rc = cli_usage_error("caption", "--sample takes no --beams");
        if (rc == EXIT_OK && !sample &&
            p.num_captions > (coca && p.beam_groups > 0 ? p.beams / p.beam_groups : p.beams))
            rc = cli_usage_error("caption", "--num-captions %d needs at least as many --beams",
                                 p.num_captions);
        if (rc == EXIT_OK && early)
            p.early_stopping = strcmp(early, "true") == 0 ? 1 : strcmp(early, "never") == 0 ? 2 : 0;
    }
    int failed = 0;
    for (int i = 0; i < nimg && rc == EXIT_OK; i++) {
        tsr_image *img = NULL;
        tsr_error err = {0};
        tsr_caption cap[16] = {{0}};
        if (tsr_image_load_file(imgs[i], &img, &err) != TSR_OK) {
            failed++; /* reported, and the others go on */
            print_failure(imgs[i], &err, json);
        } else {
            cli_warn_clipped("caption", imgs[i], img->clipped16,
                             (size_t)img->width * img->height);
            tsr_status st = tsr_session_caption_images(sess, (const tsr_image *const *)&img, 1,
                                                       &p, cap, &err);
            if (st == TSR_OK) {
                print_captions(imgs[i], cap, p.num_captions, json);
            } else {
                /* settings the model refuses (a prompt too long for --max-length, ...)
                 * fail every image alike: stop */
                cli_error("caption", &err);
                rc = st == TSR_ERR_INVALID_ARG ? EXIT_USAGE : EXIT_RUNTIME;
            }
        }
        tsr_image_free(img);
        for (int k = 0; k < 16; k++)
            tsr_caption_free(&cap[k]);
        fflush(stdout);
        cli_progress("caption", i + 1, nimg);
    }
    tsr_session_free(sess);
    tsr_model_free(m);
    tsr_ctx_free(ctx);
    free(imgs);
    if (rc == EXIT_OK && failed)
        rc = EXIT_RUNTIME;
    return rc;
}
