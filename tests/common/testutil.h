/* Shared test helpers: checks with counters, tolerances, .npy and JSON
 * fixture readers, and the OpenCL skip rule. Header-only. */
#ifndef TSR_TESTUTIL_H
#define TSR_TESTUTIL_H

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tsr_opencl.h"

#define TEST_SKIP 77 /* CTest SKIP_RETURN_CODE */

static int t_pass, t_fail;

#if defined(__GNUC__)
#define TSR_UNUSED __attribute__((unused))
#else
#define TSR_UNUSED
#endif

static void check(int ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%s ", ok ? "ok  " : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    if (ok)
        t_pass++;
    else
        t_fail++;
}

static int finish(void)
{
    printf("%d passed, %d failed\n", t_pass, t_fail);
    return t_fail ? 1 : 0;
}

/* max |a-b| and whether every |a-b| <= atol + rtol*|b| (b is the reference). */
TSR_UNUSED static int close_enough(const float *a, const float *b, size_t n, double atol, double rtol,
                        double *max_err)
{
    int ok = 1;
    *max_err = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= atol + rtol * fabs((double)b[i])))
            ok = 0;
        if (d > *max_err || d != d)
            *max_err = d;
    }
    return ok;
}

/* The ints of a JSON array into out (at most cap); returns the array's length. */
TSR_UNUSED static int json_int_array(const cJSON *a, int *out, int cap)
{
    int n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, a)
    {
        if (n < cap)
            out[n] = it->valueint;
        n++;
    }
    return n;
}

TSR_UNUSED static void print_head(const char *what, const float *v, size_t n)
{
    printf("     %s:", what);
    for (size_t i = 0; i < n && i < 5; i++)
        printf(" %.6f", v[i]);
    printf("\n");
}

/* Loads a little-endian float32 C-order .npy; shape into dims (up to 4). */
TSR_UNUSED static float *load_npy(const char *path, int *ndim, long *dims)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        printf("cannot open %s\n", path);
        return NULL;
    }
    unsigned char pre[10];
    float *data = NULL;
    if (fread(pre, 1, 10, f) == 10 && memcmp(pre, "\x93NUMPY", 6) == 0) {
        size_t hl = pre[8] | (pre[9] << 8);
        char *h = calloc(1, hl + 1);
        if (h && fread(h, 1, hl, f) == hl && strstr(h, "'<f4'") &&
            strstr(h, "'fortran_order': False")) {
            char *s = strstr(h, "'shape': (") + 10;
            *ndim = 0;
            long n = 1;
            while (*s && *s != ')') {
                long v = strtol(s, &s, 10);
                dims[(*ndim)++] = v;
                n *= v;
                while (*s == ',' || *s == ' ')
                    s++;
            }
            data = malloc(sizeof(float) * (size_t)(n ? n : 1));
            if (data && fread(data, sizeof(float), (size_t)n, f) != (size_t)n) {
                free(data);
                data = NULL;
            }
        }
        free(h);
    }
    fclose(f);
    if (!data)
        printf("bad npy file %s\n", path);
    return data;
}


/* Reads a whole file as a NUL-terminated string ("" when unreadable). */
TSR_UNUSED static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return calloc(1, 1);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = calloc(1, (size_t)n + 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n)
        b[0] = 0;
    fclose(f);
    return b;
}

/* How many times needle occurs in hay (overlaps counted). */
TSR_UNUSED static int count_str(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

/* A whole file (NUL-terminated, *n bytes), or NULL when it cannot be read. */
TSR_UNUSED static unsigned char *read_bytes(const char *path, size_t *n)
{
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (b && fread(b, 1, (size_t)len, f) == (size_t)len) {
        b[len] = 0;
        *n = (size_t)len;
    } else {
        free(b);
        b = NULL;
    }
    fclose(f);
    return b;
}

/* A JSON file, parsed, or NULL. */
TSR_UNUSED static cJSON *load_json(const char *path)
{
    size_t n;
    unsigned char *b = read_bytes(path, &n);
    cJSON *j = b ? cJSON_Parse((const char *)b) : NULL;
    free(b);
    return j;
}

TSR_UNUSED static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        if (n)
            fwrite(data, 1, n, f);
        fclose(f);
    }
}

/* Copies a text file, replacing the first occurrence of from (if given) by to. */
TSR_UNUSED static void copy_text(const char *src, const char *dst, const char *from, const char *to)
{
    char *b = slurp(src);
    char *hit = from ? strstr(b, from) : NULL;
    FILE *o = fopen(dst, "wb");
    if (hit) {
        fwrite(b, 1, (size_t)(hit - b), o);
        fputs(to, o);
        fputs(hit + strlen(from), o);
    } else {
        fputs(b, o);
    }
    fclose(o);
    free(b);
}

/* Creates a context on the default device, or reports the skip. */
/* A context made with p, or the test exits: skipped without a device. */
TSR_UNUSED static tsr_ctx *ctx_with_or_skip(const tsr_ctx_params *p)
{
    tsr_ctx *ctx = NULL;
    tsr_error err = {0};
    if (tsr_ctx_create(p, &ctx, &err) != TSR_OK) {
        if (err.code == TSR_ERR_NO_DEVICE) {
            printf("skipped: no OpenCL platform or device (%s)\n", err.msg);
            exit(TEST_SKIP);
        }
        printf("FAIL creating the OpenCL context: %s\n", err.msg);
        exit(1);
    }
    return ctx;
}

/* Context settings as the CLI takes them from the environment (the library
 * reads none): CTest sets TESSERA_CACHE_DIR, and TESSERA_GEMM=clblast for the
 * runs of the CLBlast path. */
TSR_UNUSED static tsr_ctx_params test_ctx_params(void)
{
    tsr_ctx_params p = tsr_ctx_default_params();
    p.cache_dir = getenv("TESSERA_CACHE_DIR");
    p.gemm = getenv("TESSERA_GEMM");
    p.device = getenv("TESSERA_DEVICE");
    return p;
}

TSR_UNUSED static tsr_ctx *ctx_or_skip(void)
{
    tsr_ctx_params p = test_ctx_params();
    tsr_ctx *ctx = ctx_with_or_skip(&p);
    printf("device: %s\n", tsr_ctx_device_name(ctx));
    return ctx;
}

/* Device memory the context counts, once it has come down to want: OpenCL
 * may release a freed buffer (and call tessera back) a little later, on a
 * thread of its own. Waits up to 5 s, then returns what is held. */
TSR_UNUSED static size_t device_memory_settled(const tsr_ctx *ctx, size_t want)
{
    size_t now = 0, peak = 0;
    for (int i = 0; i < 500; i++) {
        tsr_ctx_device_memory(ctx, &now, &peak);
        if (now == want)
            break;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return now;
}

#ifdef TSR_FUSION_H
/* A session on m with default parameters, or the test stops. */
TSR_UNUSED static tsr_session *new_session(tsr_model *m)
{
    tsr_session *s = NULL;
    tsr_error err = {0};
    if (tsr_session_create(m, NULL, &s, &err) != TSR_OK) {
        printf("FAIL creating a session: %s\n", err.msg);
        exit(1);
    }
    return s;
}

/* The same load with err = NULL: the same status and no model, no crash. */
TSR_UNUSED static void check_load_without_err(tsr_ctx *ctx, const char *dir, tsr_status want,
                                              const char *what)
{
    tsr_model *m = NULL;
    tsr_status st = tsr_model_load(ctx, dir, &m, NULL);
    check(st == want && !m, "%s, with err = NULL: status %d (%s)", what, (int)st,
          tsr_status_str(st));
    tsr_model_free(m);
}
#endif

#endif
