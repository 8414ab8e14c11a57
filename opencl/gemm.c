/* Matrix products through CLBlast. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tsr_cl_internal.h"
#include <clblast_c.h>
#include <pthread.h>

static tsr_status blast_fail(tsr_error *err, CLBlastStatusCode s, const char *what, int M, int N,
                             int K)
{
    tsr_status code = (s == CLBlastOpenCLOutOfResources || s == CLBlastTempBufferAllocFailure ||
                       s == CLBlastOpenCLOutOfHostMemory)
                          ? TSR_ERR_NOMEM
                          : TSR_ERR_CLBLAST;
    return tsr_error_set(err, code, "CLBlast %s (M=%d N=%d K=%d) failed with status %d", what, M,
                         N, K, (int)s);
}

tsr_status tsr_gemm_nt(tsr_queue *q, int M, int N, int K, float alpha, cl_mem A, size_t a_off,
                       int lda, cl_mem B, size_t b_off, int ldb, float beta, cl_mem C,
                       size_t c_off, int ldc, tsr_error *err)
{
    q->n.gemms++;
    CLBlastStatusCode s;
    if (q->gemm_tmp) /* the plan's temporary buffer: CLBlast allocates nothing */
        s = CLBlastSgemmWithTempBuffer(CLBlastLayoutRowMajor, CLBlastTransposeNo,
                                       CLBlastTransposeYes, (size_t)M, (size_t)N, (size_t)K,
                                       alpha, A, a_off, (size_t)lda, B, b_off, (size_t)ldb, beta,
                                       C, c_off, (size_t)ldc, &q->q, NULL, q->gemm_tmp);
    else
        s = CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes,
                         (size_t)M, (size_t)N, (size_t)K, alpha, A, a_off, (size_t)lda, B, b_off,
                         (size_t)ldb, beta, C, c_off, (size_t)ldc, &q->q, NULL);
    return s == CLBlastSuccess ? TSR_OK : blast_fail(err, s, "Sgemm", M, N, K);
}

tsr_status tsr_linear_plan(tsr_queue *q, int M, int N, int K, tsr_error *err)
{
    if (q->ctx->own_gemm || M < 1)
        return TSR_OK;
    if (q->wdt != TSR_WDT_F32 && sizeof(float) * (size_t)N * K > q->wide_need)
        q->wide_need = sizeof(float) * (size_t)N * K;
    /* leading dimensions one wider than the matrices force every temporary
     * matrix, so the size bounds any call with up to M rows */
    size_t bytes = 0;
    CLBlastStatusCode s = CLBlastSGemmTempBufferSize(
        CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes, (size_t)M, (size_t)N,
        (size_t)K, 0, (size_t)K + 1, 0, (size_t)K + 1, 0, (size_t)N + 1, &q->q, &bytes);
    if (s != CLBlastSuccess)
        return blast_fail(err, s, "GemmTempBufferSize", M, N, K);
    if (bytes > q->gemm_tmp_need)
        q->gemm_tmp_need = bytes;
    return TSR_OK;
}

void tsr_linear_plan_reserve(tsr_queue *q, tsr_arena *a)
{
    q->gemm_tmp_bytes = q->gemm_tmp_need;
    if (q->gemm_tmp_need)
        tsr_arena_reserve(a, &q->gemm_tmp, q->gemm_tmp_need);
    q->wide_bytes = q->wide_need;
    if (q->wide_need)
        tsr_arena_reserve(a, &q->wide, q->wide_need);
}

size_t tsr_wdt_size(int wdt) { return wdt == TSR_WDT_F32 ? 4 : wdt == TSR_WDT_I8 ? 1 : 2; }

const char *tsr_wdt_name(int wdt)
{
    return wdt == TSR_WDT_F16    ? "f16"
           : wdt == TSR_WDT_BF16 ? "bf16"
           : wdt == TSR_WDT_I8   ? "int8"
                                 : "f32";
}

uint16_t tsr_f32_to_bf16(float f)
{
    uint32_t b;
    memcpy(&b, &f, 4);
    if ((b & 0x7f800000u) == 0x7f800000u) /* Inf stays Inf, NaN stays NaN */
        return (uint16_t)((b >> 16) | ((b & 0xffffu) ? 0x40u : 0));
    b += 0x7fffu + ((b >> 16) & 1u); /* to nearest, ties to even */
    return (uint16_t)(b >> 16);
}

uint16_t tsr_f32_to_f16(float f)
{
    uint32_t b;
    memcpy(&b, &f, 4);
    uint16_t sign = (uint16_t)((b >> 16) & 0x8000u);
    uint32_t a = b & 0x7fffffffu;
    if (a >= 0x7f800000u) /* Inf, NaN */
        return (uint16_t)(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0));
    if (a >= 0x477ff000u) /* rounds past 65504 */
        return (uint16_t)(sign | 0x7c00u);
    if (a < 0x38800000u) { /* below 2^-14: a subnormal half (or zero) */
        if (a < 0x33000000u) /* below half the smallest subnormal */
            return sign;
        uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
        int shift = 126 - (int)e; /* 14..24: m >> shift is the subnormal's bits */
        uint32_t r = m >> shift, rest = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        r += rest > half || (rest == half && (r & 1u));
        return (uint16_t)(sign | r);
    }
    /* normal: rebias the exponent, round the 13 dropped bits to nearest even */
    uint32_t r = a - 0x38000000u;
    r += 0xfffu + ((r >> 13) & 1u);
    return (uint16_t)(sign | (r >> 13));
}

float tsr_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, b;
    if (e == 0x1f)
        b = sign | 0x7f800000u | (m << 13);
    else if (e)
        b = sign | ((e + 112) << 23) | (m << 13);
    else if (!m)
        b = sign;
    else { /* subnormal: normalise */
        int s = 0;
        while (!(m & 0x400u)) {
            m <<= 1;
            s++;
        }
        b = sign | ((uint32_t)(113 - s) << 23) | ((m & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &b, 4);
    return f;
}

size_t tsr_linear_weight_bytes(int wdt, int N, int K)
{
    if (wdt == TSR_WDT_I8) /* the integers, padding to 64 bytes, the row scales */
        return ((size_t)N * K + 63) / 64 * 64 + sizeof(float) * (size_t)N;
    return tsr_wdt_size(wdt) * (size_t)N * (size_t)K;
}

void tsr_quantize_rows_i8(const float *w, int N, int K, int8_t *q, float *scales)
{
    for (int n = 0; n < N; n++) {
        const float *r = w + (size_t)n * K;
        float mx = 0.0f;
        for (int k = 0; k < K; k++)
            mx = fabsf(r[k]) > mx ? fabsf(r[k]) : mx;
        /* in double, so that a row of subnormals does not overflow 127 / mx */
        double inv = mx > 0 ? 127.0 / (double)mx : 0.0;
        float sc = mx / 127.0f;
        for (int k = 0; k < K; k++) {
            long v = lrint((double)r[k] * inv);
            q[(size_t)n * K + k] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
        }
        scales[n] = sc;
    }
}

/* panels of TSR_GEMM_PANEL columns, each K rows of its width (the last may be
 * narrower), as gemm.cl reads them; one body for both element sizes */
#define PACK_BODY(w, N, K, dst)                                                                  \
    for (int n0 = 0; n0 < (N); n0 += TSR_GEMM_PANEL) {                                          \
        int width = (N) - n0 < TSR_GEMM_PANEL ? (N) - n0 : TSR_GEMM_PANEL;                      \
        for (int j = 0; j < width; j++) {                                                       \
            size_t row = (size_t)(n0 + j) * (K), p = (size_t)n0 * (K);                          \
            for (int k = 0; k < (K); k++)                                                       \
                (dst)[p + (size_t)k * width + j] = (w)[row + k];                                \
        }                                                                                       \
    }

void tsr_linear_weight_pack(const float *w, int N, int K, float *dst) { PACK_BODY(w, N, K, dst) }

void tsr_linear_weight_pack16(const uint16_t *w, int N, int K, uint16_t *dst)
{
    PACK_BODY(w, N, K, dst)
}

void tsr_linear_weight_pack8(const int8_t *w, int N, int K, int8_t *dst) { PACK_BODY(w, N, K, dst) }
#undef PACK_BODY

tsr_status tsr_linear_weight_write(tsr_queue *q, cl_mem dst, const float *w, int N, int K,
                                   tsr_error *err)
{
    size_t n = (size_t)N * K, bytes = tsr_linear_weight_bytes(q->wdt, N, K);
    if (q->wdt == TSR_WDT_F32 && !q->ctx->own_gemm)
        return tsr_buf_write(q, dst, w, bytes, err);
    /* converted (16-bit) and packed (own GEMM) on the host: at most two copies */
    void *t = calloc(1, bytes ? bytes : 1), *u = NULL;
    if (!t)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    const void *out = t;
    if (q->wdt == TSR_WDT_F32) {
        tsr_linear_weight_pack(w, N, K, t);
    } else if (q->wdt == TSR_WDT_I8) {
        int8_t *i8 = t;
        float *scales = (float *)(void *)(i8 + (n + 63) / 64 * 64);
        tsr_quantize_rows_i8(w, N, K, i8, scales);
        if (q->ctx->own_gemm) { /* pack the integers in place through a copy */
            int8_t *c = malloc(n ? n : 1);
            if (!c) {
                free(t);
                return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
            }
            memcpy(c, i8, n);
            tsr_linear_weight_pack8(c, N, K, i8);
            free(c);
        }
    } else {
        uint16_t *h = t;
        for (size_t i = 0; i < n; i++)
            h[i] = q->wdt == TSR_WDT_F16 ? tsr_f32_to_f16(w[i]) : tsr_f32_to_bf16(w[i]);
        if (q->ctx->own_gemm) {
            if (!(u = malloc(bytes ? bytes : 1))) {
                free(t);
                return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
            }
            tsr_linear_weight_pack16(h, N, K, u);
            out = u;
        }
    }
    tsr_status st = tsr_buf_write(q, dst, out, bytes, err);
    free(t);
    free(u);
    return st;
}

cl_mem tsr_linear_weight_upload(tsr_queue *q, const float *w, int N, int K, tsr_error *err)
{
    cl_mem m = tsr_buf_alloc(q->ctx, tsr_linear_weight_bytes(q->wdt, N, K), err);
    if (m && tsr_linear_weight_write(q, m, w, N, K, err) != TSR_OK) {
        tsr_buf_free(m);
        m = NULL;
    }
    return m;
}

/* CLBlast with 16-bit weights: the buffer the weight is widened into, the
 * plan's when it is large enough, else the queue's own (grown once). */
static cl_mem wide_buffer(tsr_queue *q, size_t bytes, tsr_error *err)
{
    if (q->wide && bytes <= q->wide_bytes)
        return q->wide;
    if (q->wide_own && bytes <= q->wide_own_bytes)
        return q->wide_own;
    tsr_buf_free(q->wide_own);
    q->wide_own = tsr_buf_alloc(q->ctx, bytes, err);
    q->wide_own_bytes = q->wide_own ? bytes : 0;
    return q->wide_own;
}

tsr_status tsr_linear(tsr_queue *q, cl_mem x, int M, int K, cl_mem w, cl_mem b, int N, cl_mem y,
                      tsr_act act, tsr_error *err)
{
    if (q->ctx->own_gemm)
        return tsr_gemm_tn_own(q, M, N, K, x, K, w, b, y, N, act, err);
    tsr_status st = TSR_OK;
    if (q->wdt != TSR_WDT_F32) {
        cl_mem wide = wide_buffer(q, sizeof(float) * (size_t)N * K, err);
        if (!wide)
            return err ? err->code : TSR_ERR_NOMEM;
        TSR_TRY(st, tsr_k_widen(q, w, q->wdt, wide, N, K, err));
        w = wide;
    }
    TSR_TRY(st, tsr_gemm_nt(q, M, N, K, 1.0f, x, 0, K, w, 0, K, 0.0f, y, 0, N, err));
    TSR_TRY(st, tsr_k_bias_act(q, y, b, M, N, act, err));
    return st;
}

double tsr_ctx_gemm_gflops(tsr_ctx *ctx, int M, int N, int K, int reps, tsr_error *err)
{
    pthread_mutex_lock(&ctx->lock);
    tsr_queue *q = ctx->util;
    cl_mem a = tsr_buf_alloc(ctx, sizeof(float) * (size_t)M * K, err);
    cl_mem b = a ? tsr_buf_alloc(ctx, sizeof(float) * (size_t)N * K, err) : NULL;
    cl_mem c = b ? tsr_buf_alloc(ctx, sizeof(float) * (size_t)M * N, err) : NULL;
    double rate = -1;
    if (c) {
        float zero = 0.0f; /* contents do not change the speed; zeros avoid NaN paths */
        clEnqueueFillBuffer(q->q, a, &zero, sizeof zero, 0, sizeof(float) * (size_t)M * K, 0,
                            NULL, NULL);
        clEnqueueFillBuffer(q->q, b, &zero, sizeof zero, 0, sizeof(float) * (size_t)N * K, 0,
                            NULL, NULL);
        /* the GEMM the linear layers use on this device: b serves as (N, K) or packed */
#define RUN_GEMM()                                                                               \
    (ctx->own_gemm ? tsr_gemm_tn_own(q, M, N, K, a, K, b, NULL, c, N, TSR_ACT_NONE, err)       \
                   : tsr_gemm_nt(q, M, N, K, 1.0f, a, 0, K, b, 0, K, 0.0f, c, 0, N, err))
        tsr_status st = RUN_GEMM();
        TSR_TRY(st, tsr_queue_finish(q, err)); /* the first call compiles */
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int i = 0; i < reps && st == TSR_OK; i++)
            st = RUN_GEMM();
#undef RUN_GEMM
        TSR_TRY(st, tsr_queue_finish(q, err));
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        if (st == TSR_OK && s > 0)
            rate = 2.0 * M * N * K * reps / s / 1e9;
    }
    tsr_buf_free(a);
    tsr_buf_free(b);
    tsr_buf_free(c);
    pthread_mutex_unlock(&ctx->lock);
    return rate;
}

/* CLBlast tuning per device: rows match a substring of the device name. The
 * PoCL row is the result of clblast_tuner_xgemm on a 2-core AMD EPYC (Zen 5)
 * from shared/notes/clblast-on-pocl.md. TESSERA_NO_TUNING=1 disables it. */
static const struct {
    const char *match;
    const char *xgemm; /* "NAME=VALUE ..." */
    long min_indirect; /* m*n*k from which the indirect kernel is used, -1: CLBlast's default */
    int own_gemm;      /* linear layers use tessera's CPU GEMM kernel instead of CLBlast */
} blast_table[] = {
    {"pthread", "GEMMK=0 KREG=1 KWG=32 KWI=2 MDIMA=8 MDIMC=8 MWG=128 NDIMB=8 NDIMC=8 NWG=64 "
                "SA=1 SB=0 STRM=1 STRN=0 VWM=8 VWN=8", -1, 1},
};

/* CLBlast keeps its parameter overrides in one process-wide database keyed by
 * device, and changes it without regard to routines running in other
 * threads' contexts. tessera serialises every override under this lock and
 * applies a context's parameters once, when the context is created (or when
 * `tessera tune` tries a candidate), so two contexts on one device in one
 * process share the parameters applied last. */
static pthread_mutex_t blast_lock = PTHREAD_MUTEX_INITIALIZER;

static tsr_status apply_locked(tsr_ctx *ctx, const char *xgemm, long min_indirect,
                               tsr_error *err);

tsr_status tsr_clblast_apply_tuning(tsr_ctx *ctx, const char *xgemm, long min_indirect,
                                    tsr_error *err)
{
    pthread_mutex_lock(&blast_lock);
    tsr_status st = apply_locked(ctx, xgemm, min_indirect, err);
    pthread_mutex_unlock(&blast_lock);
    return st;
}

static tsr_status apply_locked(tsr_ctx *ctx, const char *xgemm, long min_indirect,
                               tsr_error *err)
{
    if (xgemm && *xgemm) {
        const char *names[32];
        size_t values[32], n = 0;
        char buf[512];
        snprintf(buf, sizeof buf, "%s", xgemm);
        char *save = NULL;
        for (char *tok = strtok_r(buf, " ", &save); tok && n < 32; tok = strtok_r(NULL, " ", &save)) {
            char *eq = strchr(tok, '=');
            if (!eq)
                return tsr_error_set(err, TSR_ERR_INVALID_ARG, "bad tuning parameter '%s'", tok);
            *eq = 0;
            names[n] = tok;
            values[n++] = (size_t)strtoul(eq + 1, NULL, 10);
        }
        CLBlastStatusCode s = CLBlastOverrideParameters(ctx->device, "Xgemm", CLBlastPrecisionSingle,
                                                        n, names, values);
        if (s != CLBlastSuccess)
            return tsr_error_set(err, TSR_ERR_CLBLAST, "CLBlast rejected the Xgemm parameters "
                                 "(status %d)", (int)s);
    }
    if (min_indirect >= 0) {
        const char *names[1] = {"XGEMM_MIN_INDIRECT_SIZE"};
        size_t values[1] = {(size_t)min_indirect};
        CLBlastStatusCode s = CLBlastOverrideParameters(ctx->device, "GemmRoutine",
                                                        CLBlastPrecisionSingle, 1, names, values);
        if (s != CLBlastSuccess)
            s = CLBlastOverrideParameters(ctx->device, "KernelSelection", CLBlastPrecisionSingle, 1,
                                          names, values);
        if (s != CLBlastSuccess)
            return tsr_error_set(err, TSR_ERR_CLBLAST,
                                 "CLBlast rejected XGEMM_MIN_INDIRECT_SIZE (status %d)", (int)s);
    }
    return TSR_OK;
}

/* Applies the context's own parameters and remembers them, so that
 * tsr_gemm_restore can put them back after `tessera tune` tried others. */
static tsr_status apply_ctx(tsr_ctx *ctx, const char *xgemm, long min_indirect, tsr_error *err)
{
    tsr_status st = tsr_clblast_apply_tuning(ctx, xgemm, min_indirect, err);
    if (st == TSR_OK) {
        snprintf(ctx->blast_xgemm, sizeof ctx->blast_xgemm, "%s", xgemm ? xgemm : "");
        ctx->blast_mi = min_indirect;
    }
    return st;
}

tsr_status tsr_gemm_restore(tsr_ctx *ctx, tsr_error *err)
{
    tsr_status st = TSR_OK;
    if (*ctx->blast_xgemm || ctx->blast_mi >= 0)
        st = tsr_clblast_apply_tuning(ctx, ctx->blast_xgemm, ctx->blast_mi, err);
    CLBlastClearCache(); /* compiled kernels carry the parameters tried last */
    return st;
}

void tsr_gemm_table(const tsr_ctx *ctx, int *own, const char **xgemm, long *min_indirect)
{
    *own = 0;
    *xgemm = "";
    *min_indirect = -1;
    for (size_t i = 0; i < sizeof blast_table / sizeof blast_table[0]; i++)
        if (strstr(ctx->info.name, blast_table[i].match)) {
            *own = blast_table[i].own_gemm;
            *xgemm = blast_table[i].xgemm;
            *min_indirect = blast_table[i].min_indirect;
            return;
        }
}

void tsr_gemm_describe(const tsr_gemm_choice *c, char *out, size_t cap)
{
    if (c->own_gemm) {
        snprintf(out, cap, "own GEMM kernel, strips %d", c->strips);
        return;
    }
    char mi[64] = "";
    if (c->min_indirect == 0)
        snprintf(mi, sizeof mi, ", direct kernel never");
    else if (c->min_indirect >= TSR_ALWAYS_DIRECT)
        snprintf(mi, sizeof mi, ", direct kernel always");
    else if (c->min_indirect > 0)
        snprintf(mi, sizeof mi, ", direct kernel below %ld m*n*k", c->min_indirect);
    snprintf(out, cap, "CLBlast, %s%s%s", *c->xgemm ? "Xgemm " : "its own parameters", c->xgemm,
             mi);
}

/* ctx->tuning = "SOURCE: what is used" */
static void describe(tsr_ctx *ctx, const char *source, int own, const char *xgemm, long mi)
{
    tsr_gemm_choice c = {own, ctx->gemm_strips, "", mi};
    snprintf(c.xgemm, sizeof c.xgemm, "%s", xgemm);
    char what[560];
    tsr_gemm_describe(&c, what, sizeof what);
    snprintf(ctx->tuning, sizeof ctx->tuning, "%.*s: %s", 130, source, what);
}

/* The tuning file's choice, or 0 when there is none or it is unusable (then
 * ctx->warning says why). */
static int from_file(tsr_ctx *ctx, tsr_gemm_choice *c, char *path, size_t cap)
{
    char why[600];
    tsr_tuning_path(ctx, path, cap);
    if (!*path)
        return 0;
    int got = tsr_tuning_read(path, &ctx->info, c, why, sizeof why);
    tsr_error e = {0};
    if (got == 1 && !c->own_gemm &&
        apply_ctx(ctx, c->xgemm, c->min_indirect, &e) != TSR_OK) {
        snprintf(why, sizeof why, "%.500s", e.msg);
        got = -1;
    }
    if (got < 0)
        snprintf(ctx->warning, sizeof ctx->warning,
                 "ignoring the tuning file %.900s: %.300s; using the built-in settings (run "
                 "'tessera tune' to tune again)", path, why);
    return got == 1;
}

tsr_status tsr_gemm_configure(tsr_ctx *ctx, const tsr_ctx_params *p, tsr_error *err)
{
    int own;
    const char *xgemm;
    long mi;
    tsr_gemm_table(ctx, &own, &xgemm, &mi);
    tsr_status st = TSR_OK;
    tsr_gemm_choice c;
    char path[1024];
    ctx->blast_xgemm[0] = 0;
    ctx->blast_mi = -1;
    if (p->no_tuning) {
        describe(ctx, "untuned", own, "", -1);
    } else if (p->xgemm) {
        st = apply_ctx(ctx, p->xgemm, p->xgemm_min_indirect, err);
        describe(ctx, "xgemm parameters", own, p->xgemm, p->xgemm_min_indirect);
    } else if (from_file(ctx, &c, path, sizeof path)) {
        own = c.own_gemm;
        ctx->gemm_strips = c.strips;
        char src[1100];
        snprintf(src, sizeof src, "tuning file %s", path);
        describe(ctx, src, own, c.xgemm, c.min_indirect);
    } else {
        st = apply_ctx(ctx, xgemm, mi, err);
        describe(ctx, "built-in table", own, xgemm, mi);
    }
    if (p->gemm && (strcmp(p->gemm, "clblast") == 0 || strcmp(p->gemm, "own") == 0)) {
        own = strcmp(p->gemm, "own") == 0;
        size_t n = strlen(ctx->tuning);
        snprintf(ctx->tuning + n, sizeof ctx->tuning - n, "; forced: %s", p->gemm);
    } else if (p->gemm && *p->gemm) {
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "GEMM \"%s\" is not \"own\" or \"clblast\"",
                             p->gemm);
    }
    ctx->own_gemm = own;
    return st;
}
