/* tessera bench for audio-text models (CLAP, --arch clap-htsat or a CLAP
 * --model): 10 s clips per second through the audio tower at several batch
 * sizes, on features of a fixed pseudo-random signal (the tower's cost does
 * not depend on the values), with the GEMM rate and memory beside them. */
#include <cjson/cJSON.h>
#include <math.h>
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

int bench_audio(tsr_ctx *ctx, tsr_model *m, const char *name, const int *bl, int nb,
                double seconds, int json)
{
    tsr_error err = {0};
    int C = 0, T = 0, F = 0, max_b = 1;
    tsr_model_audio_feature_shape(m, &C, &T, &F);
    for (int i = 0; i < nb; i++)
        max_b = bl[i] > max_b ? bl[i] : max_b;
    /* one 10 s window of a chirp in noise, repeated for every clip of a batch */
    int rate = tsr_model_audio_rate(m);
    size_t n = (size_t)rate * 10, per = (size_t)C * T * F;
    float *pcm = malloc(sizeof(float) * n), *feats = NULL, *all = malloc(sizeof(float) * per * max_b);
    int P = tsr_model_embed_dim(m), nw = 0;
    float *out = malloc(sizeof(float) * (size_t)P * max_b);
    uint32_t x = 12345;
    for (size_t i = 0; pcm && i < n; i++) {
        x = x * 1664525u + 1013904223u;
        double t = (double)i / rate;
        pcm[i] = (float)(0.3 * sin(2 * 3.14159265 * (200 + 300 * t) * t) +
                         0.05 * ((x >> 8) / 8388608.0 - 1.0));
    }
    tsr_session_params sp = tsr_session_default_params();
    sp.text_batch = max_b;
    tsr_session *s = NULL;
    int rc = pcm && all && out ? EXIT_OK : EXIT_RUNTIME;
    if (rc == EXIT_OK && (tsr_session_create(m, &sp, &s, &err) != TSR_OK ||
                          tsr_session_audio_features(s, pcm, n, TSR_AUDIO_WINDOW_FIRST, &feats, &nw,
                                                     &err) != TSR_OK)) {
        cli_error("bench", &err);
        rc = EXIT_RUNTIME;
    }
    for (int b = 0; rc == EXIT_OK && b < max_b; b++)
        memcpy(all + per * b, feats, sizeof(float) * per);
    double peak = rc == EXIT_OK ? tsr_ctx_gemm_gflops(ctx, 1600, 3072, 768, 3, &err) : -1;
    double per_s[16] = {0}, lat[16] = {0};
    for (int i = 0; i < nb && rc == EXIT_OK; i++) {
        if (!json)
            fprintf(stderr, "measuring the audio tower at batch %d...\n", bl[i]);
        int iters = 0;
        double t0 = 0, el = 0;
        for (int k = -1; rc == EXIT_OK; k++) {
            if (k == 0)
                t0 = now_s();
            if (tsr_session_embed_audio_features(s, all, bl[i], out, &err) != TSR_OK) {
                cli_error("bench", &err);
                rc = EXIT_RUNTIME;
                break;
            }
            if (k >= 0) {
                iters++;
                el = now_s() - t0;
                if (el >= seconds && iters >= 2)
                    break;
            }
        }
        lat[i] = iters ? el / iters : 0;
        per_s[i] = lat[i] > 0 ? bl[i] / lat[i] : 0;
    }
    size_t dev_now = 0, dev_peak = 0;
    tsr_ctx_device_memory(ctx, &dev_now, &dev_peak);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    if (rc == EXIT_OK && json) {
        cJSON *o = cJSON_CreateObject(), *arr = cJSON_CreateArray();
        cJSON_AddStringToObject(o, "model", name);
        cJSON_AddStringToObject(o, "device", tsr_ctx_device_name(ctx));
        cJSON_AddNumberToObject(o, "gemm_gflops_1600x3072x768", peak);
        cJSON_AddNumberToObject(o, "peak_host_mb", ru.ru_maxrss / 1024.0);
        cJSON_AddNumberToObject(o, "peak_device_mb", dev_peak / 1048576.0);
        for (int i = 0; i < nb; i++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "batch", bl[i]);
            cJSON_AddNumberToObject(e, "clips_per_second", per_s[i]);
            cJSON_AddNumberToObject(e, "batch_latency_ms", lat[i] * 1e3);
            cJSON_AddItemToArray(arr, e);
        }
        cJSON_AddItemToObject(o, "audio", arr);
        cli_print_json(o);
    } else if (rc == EXIT_OK) {
        printf("tessera bench: %s on %s (GEMM %.0f GFLOP/s)\n", name, tsr_ctx_device_name(ctx),
               peak);
        printf("  audio tower, 10 s clips (%d x %d x %d features each)\n", C, T, F);
        for (int i = 0; i < nb; i++)
            printf("  batch %3d: %8.2f clips/s  %9.1f ms per batch\n", bl[i], per_s[i],
                   lat[i] * 1e3);
        printf("  peak host memory %.0f MB, device %.0f MB\n", ru.ru_maxrss / 1024.0,
               dev_peak / 1048576.0);
    }
    tsr_session_free(s);
    free(pcm), free(feats), free(all), free(out);
    return rc;
}
