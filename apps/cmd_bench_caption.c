/* tessera bench for captioners (BLIP, and CoCa with --tower caption): captions per second at several
 * batch sizes, greedy and beam 3, and time per generated token at several
 * caption lengths, on random pixels with lengths forced (min = max), so
 * that every run generates the same number of tokens. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cli.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Seconds per call of n images' captions of exactly `tokens` new tokens,
 * timed until `seconds` have passed (twice at least, after a warm-up). */
static int time_captions(const tsr_model *m, tsr_session *s, const float *px, int n, int beams,
                         int tokens, double seconds, double *per_call, tsr_error *err)
{
    tsr_caption_params p = tsr_caption_default_params(m);
    p.beams = beams;
    p.beam_groups = 1; /* CoCa: beams searched as one group */
    p.repetition_penalty = 1;
    p.no_repeat_ngram = 0;
    p.length_penalty = 1;
    p.max_length = 0;
    int coca = strcmp(tsr_model_family(m), "clip") == 0;
    /* [DEC] and the tokens before an end may come; a CoCa's last token is the
     * end open_clip forces at its length limit (which must exceed
     * min_seq_len), so its captions are the start token, tokens - 1 and the
     * end: the same tokens + 1 ids and decoding steps */
    p.max_new_tokens = tokens;
    p.min_length = coca ? tokens : tokens + 1;
    tsr_caption *caps = calloc((size_t)n, sizeof *caps);
    if (!caps)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory"), EXIT_RUNTIME;
    tsr_status st = TSR_OK;
    int iters = 0;
    double t0 = 0, el = 0;
    for (int i = -1; st == TSR_OK; i++) {
        if (i == 0)
            t0 = now_s();
        st = tsr_session_caption_pixels(s, px, n, &p, caps, err);
        for (int k = 0; k < n && st == TSR_OK; k++) {
            if (caps[k].n_ids != tokens + 1)
                st = tsr_error_set(err, TSR_ERR_INVALID_ARG, "a caption of %d ids, not %d",
                                   caps[k].n_ids, tokens + 1);
            tsr_caption_free(&caps[k]);
        }
        if (i >= 0) {
            iters++;
            el = now_s() - t0;
            if (el >= seconds && iters >= 2)
                break;
        }
    }
    free(caps);
    *per_call = iters ? el / iters : 0;
    return st == TSR_OK ? EXIT_OK : EXIT_RUNTIME;
}

int bench_caption(tsr_ctx *ctx, tsr_model *m, const char *name, const int *batches, int nb,
                  double seconds, int json)
{
    tsr_session *s = NULL;
    tsr_error err = {0};
    int S, rc = EXIT_OK;
    if (tsr_session_create(m, NULL, &s, &err) != TSR_OK) {
        cli_error("bench", &err);
        return EXIT_RUNTIME;
    }
    int max_b = 1;
    for (int i = 0; i < nb; i++)
        max_b = batches[i] > max_b ? batches[i] : max_b;
    S = tsr_model_caption_image_size(m);
    size_t per = 3 * (size_t)S * S;
    float *px = malloc(sizeof(float) * per * (size_t)max_b);
    unsigned r = 12345;
    for (size_t i = 0; px && i < per * (size_t)max_b; i++) {
        r = r * 1664525u + 1013904223u;
        px[i] = (float)(r >> 8) / 16777216.0f * 2.0f - 1.0f;
    }
    if (!px) {
        tsr_session_free(s);
        return cli_usage_error("bench", "out of memory");
    }
    /* captions per second: greedy and beam 3, 20 new tokens */
    double cps[2][16] = {{0}};
    for (int g = 0; g < 2 && rc == EXIT_OK; g++)
        for (int i = 0; i < nb && rc == EXIT_OK; i++) {
            double t = 0;
            if (!json)
                fprintf(stderr, "measuring %s captions of 20 tokens, %d image(s) per call...\n",
                        g ? "beam 3" : "greedy", batches[i]);
            rc = time_captions(m, s, px, batches[i], g ? 3 : 1, 20, seconds, &t, &err);
            cps[g][i] = t > 0 ? batches[i] / t : 0;
        }
    /* time per token at several lengths, greedy, one image */
    const int lens[3] = {5, 20, 40};
    double ms[3] = {0};
    int nlen = 0; /* the lengths the model's positions allow */
    for (int i = 0; i < 3 && rc == EXIT_OK; i++) {
        double t = 0;
        if (!json)
            fprintf(stderr, "measuring one greedy caption of %d tokens...\n", lens[i]);
        rc = time_captions(m, s, px, 1, 1, lens[i], seconds, &t, &err);
        if (rc != EXIT_OK && i > 0 && err.code == TSR_ERR_INVALID_ARG && strstr(err.msg, "positions")) {
            rc = EXIT_OK; /* longer than the model's text positions */
            break;
        }
        ms[i] = t * 1e3;
        nlen = i + 1;
    }
    if (rc != EXIT_OK) {
        cli_error("bench", &err);
        free(px);
        tsr_session_free(s);
        return rc;
    }
    size_t dev_now, dev_peak;
    tsr_ctx_device_memory(ctx, &dev_now, &dev_peak);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double per_tok[3];
    for (int i = 0; i < nlen; i++) /* the step cost beyond the shortest caption */
        per_tok[i] = i ? (ms[i] - ms[0]) / (lens[i] - lens[0]) : 0;
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", name);
        cJSON_AddStringToObject(o, "device", tsr_ctx_device_name(ctx));
        cJSON_AddNumberToObject(o, "image_size", S);
        for (int g = 0; g < 2; g++) {
            cJSON *arr = cJSON_AddArrayToObject(o, g ? "beam3" : "greedy");
            for (int i = 0; i < nb; i++) {
                cJSON *e = cJSON_CreateObject();
                cJSON_AddNumberToObject(e, "batch", batches[i]);
                cJSON_AddNumberToObject(e, "new_tokens", 20);
                cJSON_AddNumberToObject(e, "captions_per_second", cps[g][i]);
                cJSON_AddItemToArray(arr, e);
            }
        }
        cJSON *arr = cJSON_AddArrayToObject(o, "caption_length");
        for (int i = 0; i < nlen; i++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "new_tokens", lens[i]);
            cJSON_AddNumberToObject(e, "ms_per_caption", ms[i]);
            if (i)
                cJSON_AddNumberToObject(e, "ms_per_token_beyond_5", per_tok[i]);
            cJSON_AddItemToArray(arr, e);
        }
        cJSON_AddNumberToObject(o, "peak_host_mb", ru.ru_maxrss / 1024.0);
        cJSON_AddNumberToObject(o, "peak_device_mb", dev_peak / 1048576.0);
        char *t = cJSON_Print(o);
        puts(t ? t : "{}");
        free(t);
        cJSON_Delete(o);
    } else {
        printf("tessera bench: %s captions on %s (%dx%d images)\n", name,
               tsr_ctx_device_name(ctx), S, S);
        printf("%-8s %6s %12s   (20 new tokens each)\n", "search", "batch", "captions/s");
        for (int g = 0; g < 2; g++)
            for (int i = 0; i < nb; i++)
                printf("%-8s %6d %12.3f\n", g ? "beam 3" : "greedy", batches[i], cps[g][i]);
        for (int i = 0; i < nlen; i++) {
            printf("greedy, %2d new tokens: %8.1f ms per caption", lens[i], ms[i]);
            if (i)
                printf(", %.2f ms per token beyond 5", per_tok[i]);
            printf("\n");
        }
        printf("peak memory: host %.0f MB, device %.0f MB\n", ru.ru_maxrss / 1024.0,
               dev_peak / 1048576.0);
    }
    free(px);
    tsr_session_free(s);
    return EXIT_OK;
}
