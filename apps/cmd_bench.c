/* tessera bench: throughput, latency, start-up and memory of full-size CLIP
 * towers with random weights, and the GEMM rate measured in the same run. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static const char *bench_help =
    "usage: tessera bench [--arch A | --model DIR] [--batches 1,8,32] [--tower image|text|both]\n"
    "                     [--seconds S] [--no-startup] [--json] [--device D]\n"
    "                     [--dtype T]\n"
    "\n"
    "Measures a full-size CLIP with random weights (speed does not depend on the\n"
    "values), so no download is needed:\n"
    "  - image and text throughput at each batch size, and latency at batch 1;\n"
    "  - achieved GFLOP/s, and that as a fraction of the best GEMM rate measured on\n"
    "    the device in the same run;\n"
    "  - time to the first embedding in a new process, with a cold and a warm\n"
    "    kernel cache;\n"
    "  - peak host memory and device memory;\n"
    "  - the launch counter: kernels, CLBlast calls, host waits and buffers created\n"
    "    per encoder layer of each tower.\n"
    "\n"
    "A captioner (--arch blip-base or blip-large, or a BLIP --model) is measured\n"
    "instead by captions per second at each batch size, greedy and beam 3 (20 new\n"
    "tokens each, lengths forced), and by the time per generated token at 5, 20\n"
    "and 40 new tokens.\n"
    "\n"
    "  --arch A       ViT-B-32 (default), ViT-B-16, ViT-L-14, blip-base, blip-large or\n"
    "                 clap-htsat (CLAP's audio tower: 10 s clips per second)\n"
    "  --model DIR    a CLIP or BLIP model directory instead of random weights\n"
    "  --batches L    comma-separated batch sizes (default 1,8,32; captioners 1,8)\n"
    "  --tower T      image, text or both (default both); caption: a CoCa --model's\n"
    "                 captions, measured as a BLIP's are\n"
    "  --seconds S    minimum time per measurement (default 3)\n"
    "  --no-startup   skip the cold/warm start-up measurement\n"
    "  --threads N    recorded in the output (set PoCL's threads with POCL_MAX_PTHREAD_COUNT)\n"
    "  --json         machine-readable output\n"
    "  --device D     OpenCL device index or name substring\n"
    "  --dtype T      linear layers' weights on the device: f32 (default), f16, bf16 or int8\n"
    "  --verbose      accepted for older scripts (the launch counter is always shown)\n"
    "\n"
    "Exit codes: 0 ok, 1 runtime error, 2 usage error.\n";

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static unsigned rng = 12345;
static float frand(void)
{
    rng = rng * 1664525u + 1013904223u;
    return (float)(rng >> 8) / 16777216.0f * 2.0f - 1.0f;
}

typedef struct {
    int batch;
    double per_s, latency_ms, gflops;
} result;

/* Times fn until at least `seconds` have passed (and twice at least). */
static int measure(tsr_model *m, tsr_session *sess, int image, int B, double seconds,
                   double *per_batch, tsr_error *err)
{
    int S = tsr_model_image_size(m), C = tsr_model_image_channels(m), T = tsr_model_max_text_len(m);
    int P = tsr_model_embed_dim(m);
    size_t npx = (size_t)B * C * S * S;
    float *px = image ? malloc(sizeof(float) * npx) : NULL;
    int *ids = image ? NULL : malloc(sizeof(int) * (size_t)B * T);
    int *lens = image ? NULL : malloc(sizeof(int) * (size_t)B);
    float *out = malloc(sizeof(float) * (size_t)B * P);
    for (size_t i = 0; px && i < npx; i++)
        px[i] = frand();
    /* the model's own start and end tokens, and ids inside its vocabulary */
    const tsr_tokenizer *tok = tsr_model_tokenizer(m);
    int bos = tok ? tsr_tokenizer_bos(tok) : 49406, eos = tok ? tsr_tokenizer_eos(tok) : 49407;
    int V = tok ? tsr_tokenizer_vocab_size(tok) : 49408;
    unsigned span = V > 2 && V - 2 < 49000 ? (unsigned)(V - 2) : 49000u;
    for (int b = 0; ids && b < B; b++) {
        lens[b] = T;
        for (int t = 0; t < T; t++) {
            rng = rng * 1664525u + 1013904223u;
            ids[b * T + t] = t == 0 ? bos : t == T - 1 ? eos : (int)((rng >> 8) % span);
        }
    }
    tsr_status st = TSR_OK;
    int iters = 0;
    double t0 = 0, el = 0;
    for (int i = -1; st == TSR_OK; i++) { /* i == -1: warm-up, not timed */
        if (i == 0)
            t0 = now_s();
        st = image ? tsr_session_embed_pixels(sess, px, B, 1, out, err)
                   : tsr_session_embed_ids(sess, ids, lens, B, T, 1, out, err);
        if (i >= 0) {
            iters++;
            el = now_s() - t0;
            if (el >= seconds && iters >= 2)
                break;
        }
    }
    free(px);
    free(ids);
    free(lens);
    free(out);
    *per_batch = iters ? el / iters : 0;
    return st == TSR_OK ? EXIT_OK : EXIT_RUNTIME;
}

/* Runs this binary as `bench --first-embedding` and returns its wall time. */
static double startup(const char *self, const char *arch, const char *device, const char *cache)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "TESSERA_CACHE_DIR=%s/tessera POCL_CACHE_DIR=%s/pocl %s bench --first-embedding "
             "--arch %s %s%s %s%s >/dev/null 2>&1",
             cache, cache, self, arch, device ? "--device " : "", device ? device : "",
             cli_dtype ? "--dtype " : "", cli_dtype ? cli_dtype : "");
    double t0 = now_s();
    int st = system(cmd);
    double el = now_s() - t0;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? el : -1;
}

int cmd_bench(int argc, char **argv)
{
    const char *arch = "ViT-B-32", *model = NULL, *batches = NULL, *tower = "both";
    const char *seconds_s = "3", *device = NULL, *threads = NULL;
    int json = 0, no_startup = 0, first = 0, verbose = 0;
    cli_opt opts[] = {{"arch", 1, &arch, NULL},        {"model", 1, &model, NULL},
                      {"batches", 1, &batches, NULL},  {"tower", 1, &tower, NULL},
                      {"seconds", 1, &seconds_s, NULL}, {"device", 1, &device, NULL},
                      {"dtype", 1, &cli_dtype, NULL},
                      {"threads", 1, &threads, NULL},  {"json", 0, NULL, &json},
                      {"no-startup", 0, NULL, &no_startup}, {"first-embedding", 0, NULL, &first},
                      {"verbose", 0, NULL, &verbose}};
    const char **pos = NULL;
    int npos = 0;
    int rc = cli_parse(argc, argv, opts, sizeof opts / sizeof opts[0], &pos, &npos);
    free(pos);
    if (rc < 0) {
        fputs(bench_help, stdout);
        return EXIT_OK;
    }
    if (rc != EXIT_OK)
        return rc;
    int caption = strncmp(arch, "blip", 4) == 0; /* also a BLIP --model, found below */
    int bl[16], nb = cli_parse_ints(batches ? batches : caption ? "1,8" : "1,8,32", bl, 16, 1,
                                    4096);
    if (!nb)
        return cli_usage_error("bench", "--batches takes up to 16 positive integers, e.g. 1,8,32");
    char *end;
    double seconds = strtod(seconds_s, &end);
    if (!*seconds_s || *end || !(seconds >= 0 && seconds <= 3600))
        return cli_usage_error("bench", "--seconds must be a number from 0 to 3600");
    if (strcmp(tower, "image") != 0 && strcmp(tower, "text") != 0 && strcmp(tower, "both") != 0 &&
        strcmp(tower, "caption") != 0)
        return cli_usage_error("bench", "--tower is image, text, both or caption");
    int do_image = strcmp(tower, "text") != 0, do_text = strcmp(tower, "image") != 0;

    tsr_ctx *ctx = NULL;
    tsr_model *m = NULL;
    tsr_session *sess = NULL;
    tsr_error err = {0};
    double t_start = now_s();
    int max_b = 1;
    for (int i = 0; i < nb; i++)
        max_b = bl[i] > max_b ? bl[i] : max_b;
    rc = cli_ctx("bench", device, 0, &ctx);
    if (rc != EXIT_OK)
        return rc;
    char mdir[4096];
    if (model && cli_model_dir("bench", model, 0, mdir, sizeof mdir) != EXIT_OK) {
        tsr_ctx_free(ctx);
        return EXIT_RUNTIME;
    }
    tsr_status st = model ? tsr_model_load(ctx, mdir, &m, &err)
                          : tsr_model_create_random(ctx, arch, &m, &err);
    if (st == TSR_OK && tsr_model_audio_rate(m) > 0 && !first) {
        if (!batches) /* the audio tower's default batch sizes */
            nb = cli_parse_ints("1,8", bl, 16, 1, 4096);
        rc = bench_audio(ctx, m, model ? model : arch, bl, nb, seconds, json);
        tsr_model_free(m);
        tsr_ctx_free(ctx);
        return rc;
    }
    if (st == TSR_OK && tsr_model_can_caption(m) && (!strcmp(tsr_model_family(m), "blip") ||
                                                     !strcmp(tower, "caption")) && !first) {
        if (model && !batches) /* the captioner's default batch sizes */
            nb = cli_parse_ints("1,8", bl, 16, 1, 4096);
        rc = bench_caption(ctx, m, model ? model : arch, bl, nb, seconds, json);
        tsr_model_free(m);
        tsr_ctx_free(ctx);
        return rc;
    }
    if (st == TSR_OK && strcmp(tsr_model_family(m), "clip") != 0)
        st = tsr_error_set(&err, TSR_ERR_INVALID_ARG,
                           "%s is a %s model; bench measures CLIP and BLIP", model,
                           tsr_model_family(m));
    tsr_session_params sp = tsr_session_default_params();
    sp.image_batch = sp.text_batch = max_b;
    if (st == TSR_OK)
        st = tsr_session_create(m, &sp, &sess, &err);
    if (st != TSR_OK) {
        cli_error("bench", &err);
        tsr_model_free(m);
        tsr_ctx_free(ctx);
        return st == TSR_ERR_INVALID_ARG ? EXIT_USAGE : EXIT_RUNTIME;
    }
    if (first) { /* the child of the start-up measurement: one embedding, then exit */
        double per;
        rc = measure(m, sess, 1, 1, 0, &per, &err);
        tsr_session_free(sess);
        tsr_model_free(m);
        tsr_ctx_free(ctx);
        return rc;
    }
    double load_s = now_s() - t_start;
    /* The device's GEMM rate on a transformer-sized product, measured now. */
    double peak = tsr_ctx_gemm_gflops(ctx, 1600, 3072, 768, 3, &err);
    if (peak < 0) {
        cli_error("bench", &err);
        tsr_session_free(sess);
        tsr_model_free(m);
        tsr_ctx_free(ctx);
        return EXIT_RUNTIME;
    }
    tsr_launch_counts layer[2] = {{0}};
    /* FLOPs per item, from the architecture */
    int S = tsr_model_image_size(m);
    result img[16] = {0}, txt[16] = {0};
    for (int tw = 0; tw < 2; tw++) {
        if ((tw == 0 && !do_image) || (tw == 1 && !do_text))
            continue;
        for (int i = 0; i < nb; i++) {
            double per = 0;
            if (!json)
                fprintf(stderr, "measuring %s tower at batch %d...\n", tw ? "text" : "image", bl[i]);
            if (measure(m, sess, tw == 0, bl[i], seconds, &per, &err) != EXIT_OK) {
                cli_error("bench", &err);
                tsr_session_free(sess);
                tsr_model_free(m);
                tsr_ctx_free(ctx);
                return EXIT_RUNTIME;
            }
            tsr_session_counters(sess, &layer[tw], NULL);
            result *r = tw ? &txt[i] : &img[i];
            r->batch = bl[i];
            r->per_s = per > 0 ? bl[i] / per : 0;
            r->latency_ms = per * 1e3;
        }
    }
    double fl_img = 0, fl_txt = 0;
    tsr_model_flops(m, &fl_img, &fl_txt);
    for (int i = 0; i < nb; i++) {
        img[i].gflops = img[i].per_s * fl_img / 1e9;
        txt[i].gflops = txt[i].per_s * fl_txt / 1e9;
    }
    double cold = -1, warm = -1;
    if (!no_startup && !model) {
        char cache[] = "/tmp/tessera-bench-XXXXXX";
        if (mkdtemp(cache)) {
            char self[4096];
            ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
            self[n > 0 ? n : 0] = 0;
            if (!json)
                fprintf(stderr, "measuring start-up (cold, then warm kernel cache)...\n");
            cold = startup(self, arch, device, cache);
            warm = startup(self, arch, device, cache);
            char cmd[128];
            snprintf(cmd, sizeof cmd, "rm -rf %s", cache);
            if (system(cmd) != 0)
                fprintf(stderr, "tessera bench: could not remove %s\n", cache);
        }
    }
    size_t dev_now, dev_peak;
    tsr_ctx_device_memory(ctx, &dev_now, &dev_peak);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double host_mb = ru.ru_maxrss / 1024.0;
    const char *dev = tsr_ctx_device_name(ctx);
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", model ? model : arch);
        cJSON_AddStringToObject(o, "device", dev);
        cJSON_AddStringToObject(o, "gemm_config", tsr_ctx_tuning(ctx));
        cJSON_AddStringToObject(o, "weights", tsr_ctx_dtype(ctx));
        if (threads)
            cJSON_AddNumberToObject(o, "threads", atoi(threads));
        cJSON_AddNumberToObject(o, "image_size", S);
        cJSON_AddNumberToObject(o, "gemm_gflops_1600x3072x768", peak);
        cJSON_AddNumberToObject(o, "image_gflop_per_item", fl_img / 1e9);
        cJSON_AddNumberToObject(o, "text_gflop_per_item", fl_txt / 1e9);
        cJSON_AddNumberToObject(o, "load_seconds", load_s);
        if (cold >= 0) {
            cJSON_AddNumberToObject(o, "first_embedding_cold_seconds", cold);
            cJSON_AddNumberToObject(o, "first_embedding_warm_seconds", warm);
        }
        cJSON_AddNumberToObject(o, "peak_host_mb", host_mb);
        cJSON_AddNumberToObject(o, "peak_device_mb", dev_peak / 1048576.0);
        for (int tw = 0; tw < 2; tw++) {
            if ((tw == 0 && !do_image) || (tw == 1 && !do_text))
                continue;
            cJSON *c = cJSON_AddObjectToObject(o, tw ? "text_per_layer" : "image_per_layer");
            cJSON_AddNumberToObject(c, "kernels", (double)layer[tw].launches);
            cJSON_AddNumberToObject(c, "clblast_calls", (double)layer[tw].gemms);
            cJSON_AddNumberToObject(c, "host_waits", (double)layer[tw].syncs);
            cJSON_AddNumberToObject(c, "buffers_created", (double)layer[tw].buffers);
        }
        for (int tw = 0; tw < 2; tw++) {
            if ((tw == 0 && !do_image) || (tw == 1 && !do_text))
                continue;
            cJSON *arr = cJSON_AddArrayToObject(o, tw ? "text" : "image");
            for (int i = 0; i < nb; i++) {
                result *r = tw ? &txt[i] : &img[i];
                cJSON *e = cJSON_CreateObject();
                cJSON_AddNumberToObject(e, "batch", r->batch);
                cJSON_AddNumberToObject(e, "items_per_second", r->per_s);
                cJSON_AddNumberToObject(e, "batch_latency_ms", r->latency_ms);
                cJSON_AddNumberToObject(e, "gflops", r->gflops);
                cJSON_AddNumberToObject(e, "fraction_of_gemm_rate", r->gflops / peak);
                cJSON_AddItemToArray(arr, e);
            }
        }
        char *s = cJSON_Print(o);
        puts(s ? s : "{}");
        free(s);
        cJSON_Delete(o);
    } else {
        printf("tessera bench: %s on %s\n", model ? model : arch, dev);
        printf("GEMM configuration: %s; linear weights %s\n", tsr_ctx_tuning(ctx),
               tsr_ctx_dtype(ctx));
        printf("GEMM 1600x3072x768: %.1f GFLOP/s (the reference rate below)\n", peak);
        printf("%-6s %6s %12s %14s %9s %8s\n", "tower", "batch", "items/s", "latency ms",
               "GFLOP/s", "of GEMM");
        for (int tw = 0; tw < 2; tw++) {
            if ((tw == 0 && !do_image) || (tw == 1 && !do_text))
                continue;
            for (int i = 0; i < nb; i++) {
                result *r = tw ? &txt[i] : &img[i];
                printf("%-6s %6d %12.2f %14.1f %9.1f %7.0f%%\n", tw ? "text" : "image", r->batch,
                       r->per_s, r->latency_ms, r->gflops, 100 * r->gflops / peak);
            }
        }
        printf("model set-up %.2f s", load_s);
        if (cold >= 0)
            printf("; first embedding in a new process: %.2f s cold, %.2f s warm kernel cache",
                   cold, warm);
        printf("\npeak memory: host %.0f MB, device %.0f MB\n", host_mb, dev_peak / 1048576.0);
        for (int tw = 0; tw < 2; tw++)
            if ((tw == 0 && do_image) || (tw == 1 && do_text))
                printf("per %s encoder layer: %llu kernels, %llu CLBlast calls, %llu host waits, "
                       "%llu buffers created\n", tw ? "text" : "image",
                       (unsigned long long)layer[tw].launches,
                       (unsigned long long)layer[tw].gemms, (unsigned long long)layer[tw].syncs,
                       (unsigned long long)layer[tw].buffers);
    }
    tsr_session_free(sess);
    tsr_model_free(m);
    tsr_ctx_free(ctx);
    return EXIT_OK;
}
