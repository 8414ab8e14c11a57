/* `tessera tune`'s library side: the tuning run, its file, and how a new
 * context applies the file, ignores a bad one with a warning, and computes
 * correct results with what it applied. */
#include <sys/stat.h>
#include <unistd.h>

#include "../common/testutil.h"
#include "tsr_cl_internal.h"
#include "tsr_tower.h"

static char cache[256];

static tsr_ctx *new_ctx(int no_tuning)
{
    tsr_ctx_params p = test_ctx_params();
    p.gemm = NULL; /* the tuning file decides */
    p.cache_dir = cache;
    p.no_tuning = no_tuning;
    return ctx_with_or_skip(&p);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* tsr_linear on ctx against a double-precision reference */
static void check_linear(tsr_ctx *ctx, const char *what)
{
    int M = 23, N = 170, K = 45;
    float *x = malloc(sizeof(float) * M * K), *w = malloc(sizeof(float) * N * K);
    float *b = malloc(sizeof(float) * N), *got = malloc(sizeof(float) * M * N);
    float *ref = malloc(sizeof(float) * M * N);
    unsigned s = 99;
    for (int i = 0; i < M * K; i++)
        x[i] = (float)((s = s * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
    for (int i = 0; i < N * K; i++)
        w[i] = (float)((s = s * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
    for (int i = 0; i < N; i++)
        b[i] = (float)i / N;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double acc = b[j];
            for (int k = 0; k < K; k++)
                acc += (double)x[i * K + k] * w[j * K + k];
            ref[i * N + j] = (float)acc;
        }
    tsr_error err = {0};
    tsr_queue *q = NULL;
    tsr_status st = tsr_queue_create(ctx, &q, &err);
    cl_mem dx = tsr_buf_alloc(ctx, sizeof(float) * M * K, &err);
    cl_mem db = tsr_buf_alloc(ctx, sizeof(float) * N, &err);
    cl_mem dy = tsr_buf_alloc(ctx, sizeof(float) * M * N, &err);
    cl_mem dw = q ? tsr_linear_weight_upload(q, w, N, K, &err) : NULL;
    if (st == TSR_OK && !(dx && db && dy && dw))
        st = TSR_ERR_NOMEM;
    TSR_TRY(st, tsr_buf_write(q, dx, x, sizeof(float) * M * K, &err));
    TSR_TRY(st, tsr_buf_write(q, db, b, sizeof(float) * N, &err));
    TSR_TRY(st, tsr_linear(q, dx, M, K, dw, db, N, dy, TSR_ACT_NONE, &err));
    TSR_TRY(st, tsr_buf_read(q, dy, got, sizeof(float) * M * N, &err));
    double e = 0;
    int ok = st == TSR_OK && close_enough(got, ref, (size_t)M * N, 1e-4, 1e-4, &e);
    check(ok, "linear %dx%dx%d with %s: max error %.3g%s%s", M, N, K, what, e,
          st == TSR_OK ? "" : ": ", st == TSR_OK ? "" : err.msg);
    tsr_buf_free(dx), tsr_buf_free(db), tsr_buf_free(dy), tsr_buf_free(dw);
    tsr_queue_free(q);
    free(x), free(w), free(b), free(got), free(ref);
}

static void progress(void *user, int done, int total, const char *desc, double score)
{
    int *calls = user;
    (*calls)++;
    printf("     [%d/%d] %s: %g\n", done, total, desc, score);
}

int main(void)
{
    snprintf(cache, sizeof cache, "/tmp/tessera-test-tune-%ld", (long)getpid());
    tsr_ctx *ctx = new_ctx(1);
    char devname[256];
    snprintf(devname, sizeof devname, "%s", tsr_ctx_device_name(ctx));
    printf("device: %s\n", devname);
    check(strncmp(tsr_ctx_tuning(ctx), "untuned", 7) == 0 && !*tsr_ctx_warning(ctx),
          "no_tuning context: '%s'", tsr_ctx_tuning(ctx));

    /* a tuning run on small odd shapes: every candidate is correct here */
    tsr_gemm_shape shapes[2] = {{37, 130, 70, 1.0}, {5, 64, 33, 2.0}};
    tsr_tune_params tp = tsr_tune_default_params();
    tp.trials = 1;
    tp.min_seconds = 0.005;
    int calls = 0;
    tp.progress = progress;
    tp.user = &calls;
    tsr_tune_result *r = calloc(1, sizeof *r);
    tsr_error err = {0};
    int strips0 = ctx->gemm_strips;
    tsr_status st = tsr_tune_gemm(ctx, shapes, 2, &tp, r, &err);
    check(st == TSR_OK, "tuning run%s%s", st == TSR_OK ? "" : ": ", err.msg);
    check(ctx->gemm_strips == strips0 && ctx->util->gemm_strips == strips0,
          "the context has its own strips again after tuning (%d)", ctx->gemm_strips);
    int own_ok = !ctx->info.is_gpu, table_own;
    const char *table_x;
    long table_mi;
    tsr_gemm_table(ctx, &table_own, &table_x, &table_mi);
    int expect = 1 + (own_ok ? 4 : 0) + (*table_x ? 1 : 0) + 1 + 2;
    check(r->n == expect && calls == expect, "%d candidates tried and reported (expected %d)", r->n,
          expect);
    int bad = 0;
    for (int i = 0; i < r->n; i++)
        if (r->cand[i].score < 0) {
            bad++;
            printf("     rejected: %s: %s\n", r->cand[i].desc, r->cand[i].why);
        }
    check(bad == 0, "no candidate rejected on a correct device (%d were)", bad);
    check(r->best >= 0 && r->baseline >= 0 && r->cand[r->best].score <= r->cand[r->baseline].score,
          "best %s (%g s) is no slower than the untuned %s",
          r->best >= 0 ? r->cand[r->best].desc : "-", r->best >= 0 ? r->cand[r->best].score : 0,
          r->baseline >= 0 ? r->cand[r->baseline].desc : "-");
    st = tsr_tune_save(ctx, r, &err);
    struct stat sb;
    check(st == TSR_OK && stat(r->path, &sb) == 0 && strstr(r->path, cache) == r->path,
          "tuning file written: %s", r->path);
    tsr_ctx_free(ctx);

    /* bad arguments */
    ctx = new_ctx(1);
    tsr_tune_result *r2 = calloc(1, sizeof *r2);
    tsr_gemm_shape bad_shape = {0, 10, 10, 1.0};
    check(tsr_tune_gemm(ctx, &bad_shape, 1, &tp, r2, &err) == TSR_ERR_INVALID_ARG,
          "a 0x10x10 shape is refused: %s", err.msg);
    tp.trials = 1000;
    check(tsr_tune_gemm(ctx, shapes, 1, &tp, r2, &err) == TSR_ERR_INVALID_ARG,
          "1000 trials are refused: %s", err.msg);
    check(tsr_tune_save(ctx, r2, &err) == TSR_ERR_INVALID_ARG, "no result, nothing saved: %s",
          err.msg);
    free(r2);
    tsr_ctx_free(ctx);

    /* a new context applies the file */
    ctx = new_ctx(0);
    char want[64];
    snprintf(want, sizeof want, "%s", r->own_gemm ? "own GEMM" : "CLBlast");
    check(strncmp(tsr_ctx_tuning(ctx), "tuning file ", 12) == 0 &&
              strstr(tsr_ctx_tuning(ctx), want) && ctx->own_gemm == r->own_gemm &&
              (!r->own_gemm || ctx->gemm_strips == r->strips) && !*tsr_ctx_warning(ctx),
          "a new context applies it: %s", tsr_ctx_tuning(ctx));
    check_linear(ctx, "the tuned configuration");
    tsr_ctx_free(ctx);

    /* no_tuning (the CLI's TESSERA_NO_TUNING) ignores it */
    ctx = new_ctx(1);
    check(strncmp(tsr_ctx_tuning(ctx), "untuned", 7) == 0, "no_tuning: %s",
          tsr_ctx_tuning(ctx));
    tsr_ctx_free(ctx);

    /* files for the own kernel with each strip count are applied and compute correctly */
    char path[1024];
    snprintf(path, sizeof path, "%s", r->path);
    char text[2048];
    const int strips[2] = {2, 8};
    for (int i = 0; i < 2; i++) {
        snprintf(text, sizeof text,
                 "{\"format\": \"tessera-gemm-tuning\", \"version\": 1, \"device\": \"%s\", "
                 "\"gemm\": \"own\", \"own_strips\": %d, \"xgemm\": \"\", \"min_indirect\": -1}",
                 devname, strips[i]);
        write_text(path, text);
        ctx = new_ctx(0);
        check(ctx->own_gemm == 1 && ctx->gemm_strips == strips[i] && !*tsr_ctx_warning(ctx),
              "own kernel with %d strips from the file: %s", strips[i], tsr_ctx_tuning(ctx));
        char what[64];
        snprintf(what, sizeof what, "the own kernel, %d strips", strips[i]);
        check_linear(ctx, what);
        tsr_ctx_free(ctx);
    }
    snprintf(text, sizeof text,
             "{\"format\": \"tessera-gemm-tuning\", \"version\": 1, \"device\": \"%s\", "
             "\"gemm\": \"clblast\", \"own_strips\": 4, \"xgemm\": \"GEMMK=0 KREG=1 KWG=16 KWI=2 "
             "MDIMA=8 MDIMC=8 MWG=32 NDIMB=8 NDIMC=8 NWG=32 SA=0 SB=0 STRM=0 STRN=0 VWM=2 "
             "VWN=2\", \"min_indirect\": 0}",
             devname);
    write_text(path, text);
    ctx = new_ctx(0);
    check(ctx->own_gemm == 0 && strstr(tsr_ctx_tuning(ctx), "MWG=32") &&
              strstr(tsr_ctx_tuning(ctx), "direct kernel never") && !*tsr_ctx_warning(ctx),
          "CLBlast parameters from the file: %s", tsr_ctx_tuning(ctx));
    check_linear(ctx, "CLBlast Xgemm parameters from the file");
    tsr_ctx_free(ctx);

    /* unusable files: a warning that names the file and the problem, and the
     * built-in settings */
    static const struct {
        const char *text, *why;
    } bad_files[] = {
        {"{not json", "not valid JSON"},
        {"", "empty"},
        {"{\"format\": \"other\", \"version\": 1}", "\"format\""},
        {"{\"format\": \"tessera-gemm-tuning\", \"version\": 2}", "\"version\""},
        {"{\"format\": \"tessera-gemm-tuning\", \"version\": 1, \"device\": \"Some GPU\", "
         "\"gemm\": \"own\", \"own_strips\": 4, \"xgemm\": \"\", \"min_indirect\": -1}",
         "another device"},
        {"{\"format\": \"tessera-gemm-tuning\", \"version\": 1, \"device\": \"@\", \"gemm\": "
         "\"fast\", \"own_strips\": 4, \"xgemm\": \"\", \"min_indirect\": -1}",
         "\"gemm\""},
        {"{\"format\": \"tessera-gemm-tuning\", \"version\": 1, \"device\": \"@\", \"gemm\": "
         "\"own\", \"own_strips\": 3, \"xgemm\": \"\", \"min_indirect\": -1}",
         "\"own_strips\""},
        {"{\"format\": \"tessera-gemm-tuning\", \"version\": 1, \"device\": \"@\", \"gemm\": "
         "\"clblast\", \"own_strips\": 4, \"xgemm\": \"KWG=16; rm -rf /\", \"min_indirect\": -1}",
         "\"xgemm\""},
        {"{\"format\": \"tessera-gemm-tuning\", \"version\": 1, \"device\": \"@\", \"gemm\": "
         "\"clblast\", \"own_strips\": 4, \"xgemm\": \"\", \"min_indirect\": -7}",
         "\"min_indirect\""},
        {"{\"format\": \"tessera-gemm-tuning\", \"version\": 1, \"device\": \"@\", \"gemm\": "
         "\"clblast\", \"own_strips\": 4, \"xgemm\": \"KWG=16 FOO=3\", \"min_indirect\": -1}",
         "CLBlast rejected"},
    };
    int table_is_own = table_own;
    for (size_t i = 0; i < sizeof bad_files / sizeof bad_files[0]; i++) {
        /* "@" stands for this device's name */
        char t[2048];
        const char *at = strchr(bad_files[i].text, '@');
        if (at)
            snprintf(t, sizeof t, "%.*s%s%s", (int)(at - bad_files[i].text), bad_files[i].text,
                     devname, at + 1);
        else
            snprintf(t, sizeof t, "%s", bad_files[i].text);
        write_text(path, t);
        ctx = new_ctx(0);
        const char *w = tsr_ctx_warning(ctx);
        check(strstr(w, path) && strstr(w, bad_files[i].why) &&
                  strncmp(tsr_ctx_tuning(ctx), "built-in table", 14) == 0 &&
                  ctx->own_gemm == table_is_own,
              "bad tuning file %zu ignored with a warning: %s", i, w);
        if (i == 0)
            check_linear(ctx, "the built-in settings after a bad file");
        tsr_ctx_free(ctx);
    }
    free(r);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", cache);
    if (system(cmd) != 0)
        printf("could not remove %s\n", cache);
    return finish();
}
