/* GEMM tuning per device (`tessera tune`): candidates are timed on the
 * model's GEMM shapes, checked against a host reference, and the best is
 * written to a tuning file that later contexts apply (gemm.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tsr_cl_internal.h"
#include <clblast_c.h>

tsr_tune_params tsr_tune_default_params(void)
{
    tsr_tune_params p = {0};
    p.trials = 12;
    p.seed = 1;
    p.min_seconds = 0.1;
    return p;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static unsigned next_rand(unsigned *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

/* A random Xgemm configuration (GEMMK=0) within the limits CLBlast's tuner
 * uses, that this device can run; 0 if none was found. */
static int random_xgemm(unsigned *seed, size_t max_wg, const size_t wi[3], cl_ulong local,
                         char *out, size_t cap)
{
    static const int wgs[] = {16, 32, 64, 128}, kwgs[] = {16, 32}, dims[] = {8, 16, 32},
                     vws[] = {1, 2, 4, 8};
    for (int tries = 0; tries < 100000; tries++) {
        int mwg = wgs[next_rand(seed) % 4], nwg = wgs[next_rand(seed) % 4];
        int kwg = kwgs[next_rand(seed) % 2], kwi = 2;
        int mdimc = dims[next_rand(seed) % 3], ndimc = dims[next_rand(seed) % 3];
        int mdima = dims[next_rand(seed) % 3], ndimb = dims[next_rand(seed) % 3];
        int vwm = vws[next_rand(seed) % 4], vwn = vws[next_rand(seed) % 4];
        int strm = (int)(next_rand(seed) % 2), strn = (int)(next_rand(seed) % 2);
        int sa = (int)(next_rand(seed) % 2), sb = (int)(next_rand(seed) % 2);
        if (kwg % kwi || mwg % (mdimc * vwm) || nwg % (ndimc * vwn) || mwg % (mdima * vwm) ||
            nwg % (ndimb * vwn) || kwg % (mdimc * ndimc / mdima) || kwg % (mdimc * ndimc / ndimb))
            continue;
        if ((size_t)(mdimc * ndimc) > max_wg || (size_t)mdimc > wi[0] || (size_t)ndimc > wi[1])
            continue;
        if ((cl_ulong)4 * (sa * kwg * mwg + sb * kwg * nwg) > local)
            continue;
        snprintf(out, cap,
                 "GEMMK=0 KREG=1 KWG=%d KWI=%d MDIMA=%d MDIMC=%d MWG=%d NDIMB=%d NDIMC=%d NWG=%d "
                 "SA=%d SB=%d STRM=%d STRN=%d VWM=%d VWN=%d",
                 kwg, kwi, mdima, mdimc, mwg, ndimb, ndimc, nwg, sa, sb, strm, strn, vwm, vwn);
        return 1;
    }
    return 0; /* a device with very small work-groups */
}

typedef struct {
    tsr_ctx *ctx;
    const tsr_gemm_shape *shapes;
    int n;
    double min_seconds;
    cl_mem a, b, c;
    const float *ha, *hb; /* hb: the weight (N, K) of every shape */
    float *hc, *hp;       /* hp: hb packed for the own kernel */
} bench;

static tsr_status run_gemm(bench *bn, int own, const tsr_gemm_shape *s, tsr_error *err)
{
    if (own)
        return tsr_gemm_tn_own(bn->ctx->util, s->M, s->N, s->K, bn->a, s->K, bn->b, NULL, bn->c,
                               s->N, TSR_ACT_NONE, err);
    return tsr_gemm_nt(bn->ctx->util, s->M, s->N, s->K, 1.0f, bn->a, 0, s->K, bn->b, 0, s->K, 0.0f,
                       bn->c, 0, s->N, err);
}

/* Sampled entries of C against a double-precision host reference. */
static int check(bench *bn, int own, const tsr_gemm_shape *s, char *why, size_t cap,
                 tsr_error *err)
{
    if (tsr_buf_read(bn->ctx->util, bn->c, bn->hc, sizeof(float) * (size_t)s->M * s->N, err) != TSR_OK) {
        snprintf(why, cap, "%.180s", err->msg);
        return 0;
    }
    unsigned seed = (unsigned)(s->M * 31 + s->N * 7 + s->K);
    for (int t = 0; t < 96; t++) {
        /* the four corners, then random entries */
        int i = (t == 1 || t == 3) ? s->M - 1 : 0, j = (t == 1 || t == 2) ? s->N - 1 : 0;
        if (t >= 4) {
            i = (int)(next_rand(&seed) % (unsigned)s->M);
            j = (int)(next_rand(&seed) % (unsigned)s->N);
        }
        double ref = 0, mag = 0;
        for (int k = 0; k < s->K; k++) {
            double bv = bn->hb[(size_t)j * s->K + k];
            double p = (double)bn->ha[(size_t)i * s->K + k] * bv;
            ref += p;
            mag += fabs(p);
        }
        double got = bn->hc[(size_t)i * s->N + j];
        if (!(fabs(got - ref) <= 1e-4 + 1e-5 * mag)) {
            snprintf(why, cap, "wrong result for %dx%dx%d: C[%d][%d] = %g, expected %g", s->M,
                     s->N, s->K, i, j, got, ref);
            return 0;
        }
    }
    return 1;
}

/* Weighted seconds over the shapes, or -1 with why set. */
static double score(bench *bn, int own, char *why, size_t cap)
{
    tsr_error err = {0};
    double total = 0;
    for (int i = 0; i < bn->n; i++) {
        const tsr_gemm_shape *s = &bn->shapes[i];
        float nan = NAN;
        clEnqueueFillBuffer(bn->ctx->util->q, bn->c, &nan, sizeof nan, 0,
                            sizeof(float) * (size_t)s->M * s->N, 0, NULL, NULL);
        /* the weight of this shape, packed for the own kernel */
        if (own)
            tsr_linear_weight_pack(bn->hb, s->N, s->K, bn->hp);
        if (tsr_buf_write(bn->ctx->util, bn->b, own ? bn->hp : bn->hb,
                          sizeof(float) * (size_t)s->N * s->K, &err) != TSR_OK) {
            snprintf(why, cap, "%.180s", err.msg);
            return -1;
        }
        /* the first call compiles, and its result is checked */
        if (run_gemm(bn, own, s, &err) != TSR_OK || tsr_queue_finish(bn->ctx->util, &err) != TSR_OK) {
            snprintf(why, cap, "%.180s", err.msg);
            return -1;
        }
        if (!check(bn, own, s, why, cap, &err))
            return -1;
        double t0 = now_s();
        if (run_gemm(bn, own, s, &err) != TSR_OK || tsr_queue_finish(bn->ctx->util, &err) != TSR_OK) {
            snprintf(why, cap, "%.180s", err.msg);
            return -1;
        }
        double one = now_s() - t0;
        int reps = one > 0 ? (int)ceil(bn->min_seconds / one) : 500;
        reps = reps < 1 ? 1 : reps > 500 ? 500 : reps;
        t0 = now_s();
        tsr_status st = TSR_OK;
        for (int r = 0; r < reps && st == TSR_OK; r++)
            st = run_gemm(bn, own, s, &err);
        if (st == TSR_OK)
            st = tsr_queue_finish(bn->ctx->util, &err);
        if (st != TSR_OK) {
            snprintf(why, cap, "%.180s", err.msg);
            return -1;
        }
        total += s->weight * (now_s() - t0) / reps;
    }
    return total;
}

/* Applies c to the context and times it; records it as r->cand[r->n] and tried[r->n]. */
static double try_cand(bench *bn, const tsr_gemm_choice *c, tsr_gemm_choice *tried,
                       tsr_tune_result *r, const tsr_tune_params *p, int total)
{
    if (r->n >= TSR_TUNE_MAX)
        return -1;
    int k = r->n++;
    tried[k] = *c;
    tsr_gemm_describe(c, r->cand[k].desc, sizeof r->cand[k].desc);
    r->cand[k].why[0] = 0;
    tsr_error err = {0};
    tsr_status st = TSR_OK;
    if (c->own_gemm) {
        st = tsr_ctx_set_gemm_strips(bn->ctx, c->strips, &err);
    } else if (*c->xgemm || c->min_indirect >= 0) {
        st = tsr_clblast_apply_tuning(bn->ctx, c->xgemm, c->min_indirect, &err);
        CLBlastClearCache(); /* compiled kernels carry the old parameters */
    }
    double s = -1;
    if (st != TSR_OK)
        snprintf(r->cand[k].why, sizeof r->cand[k].why, "%.180s", err.msg);
    else
        s = score(bn, c->own_gemm, r->cand[k].why, sizeof r->cand[k].why);
    r->cand[k].score = s;
    if (p->progress)
        p->progress(p->user, k + 1, total, r->cand[k].desc, s);
    return s;
}

static tsr_status tune_locked(tsr_ctx *ctx, const tsr_gemm_shape *shapes, int n,
                              const tsr_tune_params *p, tsr_tune_result *r, tsr_error *err);

tsr_status tsr_tune_gemm(tsr_ctx *ctx, const tsr_gemm_shape *shapes, int n,
                         const tsr_tune_params *p, tsr_tune_result *r, tsr_error *err)
{
    pthread_mutex_lock(&ctx->lock);
    int strips = ctx->gemm_strips;
    tsr_status st = tune_locked(ctx, shapes, n, p, r, err);
    /* the context goes back to its own configuration */
    tsr_error e2 = {0};
    tsr_status st2 = tsr_ctx_set_gemm_strips(ctx, strips, &e2);
    TSR_TRY(st2, tsr_gemm_restore(ctx, &e2));
    pthread_mutex_unlock(&ctx->lock);
    if (st == TSR_OK && st2 != TSR_OK) {
        if (err)
            *err = e2;
        st = st2;
    }
    return st;
}

static tsr_status tune_locked(tsr_ctx *ctx, const tsr_gemm_shape *shapes, int n,
                              const tsr_tune_params *p, tsr_tune_result *r, tsr_error *err)
{
    tsr_tune_params defaults = tsr_tune_default_params();
    if (!p)
        p = &defaults;
    memset(r, 0, sizeof *r);
    r->best = r->baseline = -1;
    if (n < 1 || n > 64)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "tuning takes 1 to 64 GEMM shapes, not %d",
                             n);
    if (p->trials < 0 || p->trials > TSR_TUNE_MAX - 12)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "trials must be 0 to %d",
                             TSR_TUNE_MAX - 12);
    size_t ma = 0, mb = 0, mc = 0;
    for (int i = 0; i < n; i++) {
        const tsr_gemm_shape *s = &shapes[i];
        if (s->M < 1 || s->N < 1 || s->K < 1 || s->M > 65536 || s->N > 65536 || s->K > 65536 ||
            (size_t)s->M * s->N > ((size_t)1 << 28) || (size_t)s->M * s->K > ((size_t)1 << 28) ||
            (size_t)s->N * s->K > ((size_t)1 << 28) || !(s->weight >= 0))
            return tsr_error_set(err, TSR_ERR_INVALID_ARG, "GEMM shape %dx%dx%d is out of range",
                                 s->M, s->N, s->K);
        size_t a = (size_t)s->M * s->K, b = (size_t)s->N * s->K, c = (size_t)s->M * s->N;
        ma = a > ma ? a : ma;
        mb = b > mb ? b : mb;
        mc = c > mc ? c : mc;
    }
    tsr_gemm_choice *tried = calloc(TSR_TUNE_MAX, sizeof *tried);
    bench bn = {ctx, shapes, n, p->min_seconds > 0 ? p->min_seconds : 0.1, NULL, NULL, NULL,
                NULL, NULL, NULL};
    float *ha = malloc(sizeof(float) * ma), *hb = malloc(sizeof(float) * mb);
    bn.hc = malloc(sizeof(float) * mc);
    bn.hp = malloc(sizeof(float) * mb);
    bn.ha = ha;
    bn.hb = hb;
    tsr_status st = TSR_OK;
    if (!ha || !hb || !bn.hc || !bn.hp || !tried)
        st = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    cl_mem *slots[3] = {&bn.a, &bn.b, &bn.c};
    size_t sizes[3] = {sizeof(float) * ma, sizeof(float) * mb, sizeof(float) * mc};
    for (int i = 0; i < 3 && st == TSR_OK; i++)
        if (!(*slots[i] = tsr_buf_alloc(ctx, sizes[i], err)))
            st = TSR_ERR_NOMEM;
    if (st == TSR_OK) {
        unsigned seed = 7;
        for (size_t i = 0; i < ma; i++)
            ha[i] = (float)(next_rand(&seed) % 2001u) / 1000.0f - 1.0f;
        for (size_t i = 0; i < mb; i++)
            hb[i] = (float)(next_rand(&seed) % 2001u) / 1000.0f - 1.0f;
        st = tsr_buf_write(ctx->util, bn.a, ha, sizes[0], err); /* score writes b per shape */
    }
    if (st != TSR_OK)
        goto done;

    int table_own;
    const char *table_xgemm;
    long table_mi;
    tsr_gemm_table(ctx, &table_own, &table_xgemm, &table_mi);
    size_t max_wg = 1, wi[3] = {1, 1, 1};
    cl_ulong local = 0;
    clGetDeviceInfo(ctx->device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof max_wg, &max_wg, NULL);
    clGetDeviceInfo(ctx->device, CL_DEVICE_MAX_WORK_ITEM_SIZES, sizeof wi, wi, NULL);
    clGetDeviceInfo(ctx->device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof local, &local, NULL);
    int own_ok = !ctx->info.is_gpu; /* the own kernel runs one work-item per group */
    int total = 1 + (own_ok ? 4 : 0) + (*table_xgemm ? 1 : 0) + p->trials + 2;

    /* CLBlast with its own parameters first: later overrides cannot be undone */
    tsr_gemm_choice c = {0, TSR_GEMM_STRIPS_DEFAULT, "", -1};
    double best_blast = try_cand(&bn, &c, tried, r, p, total);
    tsr_gemm_choice blast = c;
    if (!table_own && !*table_xgemm && table_mi < 0)
        r->baseline = r->n - 1;
    static const int strips[4] = {4, 1, 2, 8};
    for (int i = 0; own_ok && i < 4; i++) {
        tsr_gemm_choice o = {1, strips[i], "", -1};
        try_cand(&bn, &o, tried, r, p, total);
        if (table_own && strips[i] == TSR_GEMM_STRIPS_DEFAULT)
            r->baseline = r->n - 1;
    }
    unsigned seed = p->seed ? p->seed : 1;
    for (int t = -1; t < p->trials; t++) {
        tsr_gemm_choice x = {0, TSR_GEMM_STRIPS_DEFAULT, "", -1};
        if (t < 0) {
            if (!*table_xgemm)
                continue;
            snprintf(x.xgemm, sizeof x.xgemm, "%s", table_xgemm);
            x.min_indirect = table_mi;
        } else if (!random_xgemm(&seed, max_wg, wi, local, x.xgemm, sizeof x.xgemm)) {
            continue;
        }
        double s = try_cand(&bn, &x, tried, r, p, total);
        if (t < 0 && !table_own)
            r->baseline = r->n - 1;
        if (s >= 0 && (best_blast < 0 || s < best_blast)) {
            best_blast = s;
            blast = x;
        }
    }
    /* the best CLBlast parameters with the direct kernel never, then always, used */
    if (best_blast >= 0) {
        const long mis[2] = {0, TSR_ALWAYS_DIRECT};
        for (int i = 0; i < 2; i++) {
            tsr_gemm_choice x = blast;
            x.min_indirect = mis[i];
            try_cand(&bn, &x, tried, r, p, total);
        }
    }
    for (int i = 0; i < r->n; i++)
        if (r->cand[i].score >= 0 && (r->best < 0 || r->cand[i].score < r->cand[r->best].score))
            r->best = i;
    if (r->best < 0) {
        st = tsr_error_set(err, TSR_ERR_OPENCL, "every GEMM configuration failed on %s; the "
                           "first: %s", ctx->info.name, r->cand[0].why);
        goto done;
    }
    r->own_gemm = tried[r->best].own_gemm;
    r->strips = tried[r->best].strips;
    snprintf(r->xgemm, sizeof r->xgemm, "%s", tried[r->best].xgemm);
    r->min_indirect = tried[r->best].min_indirect;
done:
    tsr_buf_free(bn.a);
    tsr_buf_free(bn.b);
    tsr_buf_free(bn.c);
    free(ha);
    free(hb);
    free(bn.hc);
    free(bn.hp);
    free(tried);
    return st;
}
