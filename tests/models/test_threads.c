/* One model, four sessions in four threads: each thread embeds its own
 * images and texts for many iterations, and every result must equal, byte
 * for byte, what one session computed alone before the threads started.
 * CTest runs it on both GEMM paths (tessera's kernel and CLBlast, with
 * TESSERA_GEMM=clblast), and .ci/run runs it again under ThreadSanitizer.
 *
 *   test_threads [ITERATIONS]   (default 200) */
#include <pthread.h>
#include <stdint.h>

#include "tsr_fusion.h"
#include "testutil.h"

#define THREADS 4
#define IMAGES 3 /* per thread and iteration */
#define TEXTS 3
#define MODEL TSR_FIXTURES "/models/clip-tiny-b"

static const char *image_files[] = {
    TSR_FIXTURES "/images/coffee.png",   TSR_FIXTURES "/images/chelsea.jpg",
    TSR_FIXTURES "/images/wide.png",     TSR_FIXTURES "/images/grey.jpg",
    TSR_FIXTURES "/images/palette.png",  TSR_FIXTURES "/images/tall.jpg",
    TSR_FIXTURES "/images/rgba.png",     TSR_FIXTURES "/images/small.png",
    TSR_FIXTURES "/images/astronaut.jpg", TSR_FIXTURES "/images/grey_alpha.png",
    TSR_FIXTURES "/images/cmyk.jpg",     TSR_FIXTURES "/images/one_pixel.png",
};
static const char *texts[] = {
    "a photo of a cat.", "a red circle", "naïve café 😀", "Σ σ ς ß İ", "12345 3.14", "",
    "the quick brown fox jumps over the lazy dog", "A PHOTO OF A DOG!!", "a blue star",
    "two shapes, one left of the other", "tessera", "zero-shot classification",
};

typedef struct {
    tsr_model *m;
    int id, iters, P;
    const float *pixels;       /* (IMAGES, C, S, S) for this thread */
    const float *want_img;     /* (IMAGES, P) */
    const float *want_txt;     /* (TEXTS, P) */
    int mismatches, failures;
    char err[1024];
} job;

static void *run(void *arg)
{
    job *j = arg;
    tsr_session *s = NULL;
    tsr_error err = {0};
    if (tsr_session_create(j->m, NULL, &s, &err) != TSR_OK) {
        snprintf(j->err, sizeof j->err, "%s", err.msg);
        j->failures++;
        return NULL;
    }
    float img[IMAGES * 64], txt[TEXTS * 64];
    size_t ib = sizeof(float) * IMAGES * j->P, tb = sizeof(float) * TEXTS * j->P;
    for (int it = 0; it < j->iters; it++) {
        /* every 8th iteration decodes the files too, so decoding runs in threads */
        tsr_status st = it % 8 == 0
                            ? tsr_session_embed_image_files(s, image_files + j->id * IMAGES, IMAGES,
                                                            1, img, &err)
                            : tsr_session_embed_pixels(s, j->pixels, IMAGES, 1, img, &err);
        if (st == TSR_OK)
            st = tsr_session_embed_texts(s, texts + j->id * TEXTS, TEXTS, 1, txt, NULL, &err);
        if (st != TSR_OK) {
            snprintf(j->err, sizeof j->err, "%s", err.msg);
            j->failures++;
            break;
        }
        j->mismatches += memcmp(img, j->want_img, ib) != 0;
        j->mismatches += memcmp(txt, j->want_txt, tb) != 0;
    }
    tsr_session_free(s);
    return NULL;
}

int main(int argc, char **argv)
{
    int iters = argc > 1 ? atoi(argv[1]) : 200;
    tsr_ctx *ctx = ctx_or_skip();
    printf("GEMM: %s\n", tsr_ctx_tuning(ctx));
    tsr_model *m = NULL;
    tsr_error err = {0};
    if (tsr_model_load(ctx, MODEL, &m, &err) != TSR_OK) {
        check(0, "load %s: %s", MODEL, err.msg);
        return finish();
    }
    int P = tsr_model_embed_dim(m), S = tsr_model_image_size(m), C = tsr_model_image_channels(m);
    size_t per = (size_t)C * S * S;
    check(P <= 64, "embedding width %d fits the test's buffers", P);
    /* the single-threaded results: one session, before any thread starts */
    float *pixels = malloc(sizeof(float) * per * IMAGES * THREADS);
    float *want_img = malloc(sizeof(float) * (size_t)P * IMAGES * THREADS);
    float *want_txt = malloc(sizeof(float) * (size_t)P * TEXTS * THREADS);
    size_t mem0, peak;
    tsr_ctx_device_memory(ctx, &mem0, &peak); /* the model's weights */
    tsr_session *s = new_session(m);
    tsr_status st = TSR_OK;
    for (int i = 0; i < IMAGES * THREADS && st == TSR_OK; i++) {
        tsr_image *im = NULL;
        st = tsr_image_load_file(image_files[i], &im, &err);
        if (st == TSR_OK)
            st = tsr_image_preprocess(im, tsr_model_preprocess_cfg(m), pixels + per * i, &err);
        tsr_image_free(im);
    }
    for (int t = 0; t < THREADS && st == TSR_OK; t++) {
        st = tsr_session_embed_pixels(s, pixels + per * IMAGES * t, IMAGES, 1,
                                      want_img + (size_t)P * IMAGES * t, &err);
        if (st == TSR_OK)
            st = tsr_session_embed_texts(s, texts + TEXTS * t, TEXTS, 1,
                                         want_txt + (size_t)P * TEXTS * t, NULL, &err);
    }
    tsr_session_free(s);
    check(st == TSR_OK, "single-threaded reference %s", st ? err.msg : "");
    if (st != TSR_OK)
        return finish();

    job jobs[THREADS];
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++) {
        jobs[t] = (job){m, t, iters, P, pixels + per * IMAGES * t,
                        want_img + (size_t)P * IMAGES * t, want_txt + (size_t)P * TEXTS * t, 0, 0,
                        ""};
        pthread_create(&th[t], NULL, run, &jobs[t]);
    }
    int mismatches = 0, failures = 0;
    for (int t = 0; t < THREADS; t++) {
        pthread_join(th[t], NULL);
        mismatches += jobs[t].mismatches;
        failures += jobs[t].failures;
        if (jobs[t].failures)
            printf("     thread %d: %s\n", t, jobs[t].err);
    }
    check(failures == 0 && mismatches == 0,
          "%d threads x %d iterations, each its own session on one model: %d results differ "
          "from the single-threaded ones, %d calls failed",
          THREADS, iters, mismatches, failures);
    size_t mem1 = device_memory_settled(ctx, mem0), now;
    tsr_ctx_device_memory(ctx, &now, &peak);
    check(mem1 == mem0, "device memory back to %zu bytes after the sessions (now %zu, peak %zu)",
          mem0, mem1, peak);
    free(pixels), free(want_img), free(want_txt);
    tsr_model_free(m);
    tsr_ctx_free(ctx);
    return finish();
}
