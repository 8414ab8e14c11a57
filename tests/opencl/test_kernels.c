/* Every OpenCL kernel against a plain C reference, on odd shapes: sizes that
 * are not multiples of the work-group size, size 1, and large sizes. */
#include "../common/testutil.h"
#include "tsr_cl_internal.h"
#include "tsr_tower.h"

static tsr_ctx *ctx;
static tsr_queue *q;
static tsr_error err;

static void new_queue(void)
{
    tsr_queue_free(q);
    if (tsr_queue_create(ctx, &q, &err) != TSR_OK) {
        printf("FAIL creating a queue: %s\n", err.msg);
        exit(1);
    }
}

/* The layers' scratch for R rows of c, in an arena of its own; with S > 0
 * also what attention as GEMMs needs for sequences of S positions. */
static tsr_status scratch_for_att(const tsr_enc_cfg *c, int R, int S, tsr_arena *a,
                                  tsr_enc_scratch *s)
{
    size_t need[TSR_SCRATCH_N] = {0};
    tsr_scratch_need(c, R, need);
    if (S > 0)
        tsr_scratch_need_att(q, c, R / S, S, need);
    tsr_arena_init(a, ctx);
    tsr_scratch_reserve(a, s, need);
    return tsr_arena_commit(a, &err);
}

static tsr_status scratch_for(const tsr_enc_cfg *c, int R, tsr_arena *a, tsr_enc_scratch *s)
{
    return scratch_for_att(c, R, 0, a, s);
}

static void mems_free(cl_mem *m, int n)
{
    for (int i = 0; i < n; i++)
        tsr_buf_free(m[i]);
}
static unsigned rng_state = 12345;

static float frand(void)
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return ((rng_state >> 8) / 16777216.0f) * 2.0f - 1.0f;
}

static float *rand_vec(size_t n, float scale)
{
    float *v = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        v[i] = frand() * scale;
    return v;
}

static cl_mem up(const void *h, size_t bytes)
{
    cl_mem m = tsr_buf_alloc(ctx, bytes, &err);
    if (!m || tsr_buf_write(q, m, h, bytes, &err) != TSR_OK) {
        printf("FAIL upload: %s\n", err.msg);
        exit(1);
    }
    return m;
}

static float *down(cl_mem m, size_t n)
{
    float *h = malloc(sizeof(float) * (n ? n : 1));
    if (tsr_buf_read(q, m, h, sizeof(float) * n, &err) != TSR_OK) {
        printf("FAIL download: %s\n", err.msg);
        exit(1);
    }
    return h;
}

static void compare(const char *name, const float *got, const float *ref, size_t n, double atol,
                    double rtol)
{
    double e;
    int ok = close_enough(got, ref, n, atol, rtol, &e);
    check(ok, "%s: max error %.3g (atol %.0e rtol %.0e)", name, e, atol, rtol);
    if (!ok) {
        print_head("got", got, n);
        print_head("ref", ref, n);
    }
}

/* ---- C references ---- */

static void ref_layernorm(const float *x, float *y, const float *g, const float *b, int rows,
                          int dim, float eps)
{
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * dim;
        double m = 0, v = 0;
        for (int i = 0; i < dim; i++)
            m += xr[i];
        m /= dim;
        for (int i = 0; i < dim; i++)
            v += (xr[i] - m) * (xr[i] - m);
        v /= dim;
        for (int i = 0; i < dim; i++)
            y[(size_t)r * dim + i] = (float)((xr[i] - m) / sqrt(v + eps) * g[i] + b[i]);
    }
}

static float ref_act(float x, int act)
{
    if (act == TSR_ACT_GELU)
        return (float)(0.5 * x * (1 + erf(x / sqrt(2.0))));
    if (act == TSR_ACT_QUICK_GELU)
        return (float)(x / (1 + exp(-1.702 * x)));
    if (act == TSR_ACT_GELU_TANH)
        return (float)(0.5 * x * (1 + tanh(sqrt(2 / 3.14159265358979323846) * (x + 0.044715 * x * x * x))));
    if (act == TSR_ACT_RELU)
        return x > 0 ? x : 0;
    if (act == TSR_ACT_TANH)
        return (float)tanh(x);
    return x;
}

static void ref_softmax(float *s, int B, int H, int sq, int sk, float scale, int causal,
                        const int *lens)
{
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < sq; i++) {
                float *r = s + (((size_t)b * H + h) * sq + i) * sk;
                int lim = sk;
                if (causal && i + 1 + (sk - sq) < lim)
                    lim = i + 1 + (sk - sq);
                if (lens && lens[b] < lim)
                    lim = lens[b];
                if (lim < 1)
                    lim = 1;
                double m = -INFINITY, sum = 0;
                for (int j = 0; j < lim; j++)
                    m = fmax(m, r[j] * scale);
                for (int j = 0; j < lim; j++)
                    sum += exp(r[j] * scale - m);
                for (int j = 0; j < sk; j++)
                    r[j] = j < lim ? (float)(exp(r[j] * scale - m) / sum) : 0.0f;
            }
}

/* C = alpha A B^T (+ beta C), plain loops. */
static void ref_gemm_nt(int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                        int ldb, float beta, float *C, int ldc)
{
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = 0;
            for (int k = 0; k < K; k++)
                s += (double)A[(size_t)m * lda + k] * B[(size_t)n * ldb + k];
            C[(size_t)m * ldc + n] = (float)(alpha * s + (beta ? beta * C[(size_t)m * ldc + n] : 0));
        }
}

static void ref_linear(const float *x, int M, int K, const float *w, const float *b, int N,
                       float *y, int act)
{
    ref_gemm_nt(M, N, K, 1.0f, x, K, w, K, 0.0f, y, N);
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++)
            y[(size_t)m * N + n] = ref_act(y[(size_t)m * N + n] + (b ? b[n] : 0), act);
}

/* The whole encoder layer, pre- or post-layernorm. */
static void ref_enc_layer(const tsr_enc_cfg *c, float *const *w, float *x, int B, int S,
                          const int *lens)
{
    int D = c->dim, H = c->heads, dh = D / H, F = c->ffn, R = B * S;
    float *h = malloc(sizeof(float) * R * D), *qkv = malloc(sizeof(float) * R * 3 * D);
    float *att = malloc(sizeof(float) * R * D), *f = malloc(sizeof(float) * R * F);
    float *sc = malloc(sizeof(float) * S * S);
    if (c->post_ln)
        memcpy(h, x, sizeof(float) * R * D);
    else
        ref_layernorm(x, h, w[0], w[1], R, D, c->eps);
    ref_linear(h, R, D, w[2], w[3], 3 * D, qkv, 0);
    for (int b = 0; b < B; b++)
        for (int hh = 0; hh < H; hh++) {
            for (int i = 0; i < S; i++)
                for (int j = 0; j < S; j++) {
                    double s = 0;
                    for (int k = 0; k < dh; k++)
                        s += (double)qkv[((size_t)b * S + i) * 3 * D + hh * dh + k] *
                             qkv[((size_t)b * S + j) * 3 * D + D + hh * dh + k];
                    sc[i * S + j] = (float)s;
                }
            int l1[1] = {lens ? lens[b] : S};
            ref_softmax(sc, 1, 1, S, S, 1.0f / sqrtf((float)dh), c->causal, l1);
            for (int i = 0; i < S; i++)
                for (int k = 0; k < dh; k++) {
                    double s = 0;
                    for (int j = 0; j < S; j++)
                        s += (double)sc[i * S + j] *
                             qkv[((size_t)b * S + j) * 3 * D + 2 * D + hh * dh + k];
                    att[((size_t)b * S + i) * D + hh * dh + k] = (float)s;
                }
        }
    ref_linear(att, R, D, w[4], w[5], D, h, 0);
    for (int i = 0; i < R * D; i++)
        x[i] += h[i];
    if (c->post_ln) {
        ref_layernorm(x, x, w[0], w[1], R, D, c->eps);
        memcpy(h, x, sizeof(float) * R * D);
    } else {
        ref_layernorm(x, h, w[6], w[7], R, D, c->eps);
    }
    ref_linear(h, R, D, w[8], w[9], F, f, c->act);
    ref_linear(f, R, F, w[10], w[11], D, h, 0);
    for (int i = 0; i < R * D; i++)
        x[i] += h[i];
    if (c->post_ln)
        ref_layernorm(x, x, w[6], w[7], R, D, c->eps);
    free(h);
    free(qkv);
    free(att);
    free(f);
    free(sc);
}

/* ---- windowed (Swin) blocks ---- */

static void test_im2col_rect(int images, int inner, int C, int H, int W, int ph, int pw)
{
    int gh = H / ph, gw = W / pw, plane = C * H * W;
    int s_inner = plane + 3, s_outer = inner * s_inner + 5, off = 7; /* gaps between images */
    size_t nx = (size_t)off + (size_t)(images / inner + 1) * s_outer, K = (size_t)C * ph * pw;
    size_t nc = (size_t)images * gh * gw * K;
    float *x = rand_vec(nx, 1.0f), *ref = malloc(sizeof(float) * nc);
    for (int i = 0; i < images; i++)
        for (int py = 0; py < gh; py++)
            for (int qx = 0; qx < gw; qx++)
                for (int c = 0; c < C; c++)
                    for (int ky = 0; ky < ph; ky++)
                        for (int kx = 0; kx < pw; kx++) {
                            size_t row = ((size_t)i * gh + py) * gw + qx;
                            size_t base = (size_t)off + (size_t)(i / inner) * s_outer +
                                          (size_t)(i % inner) * s_inner;
                            ref[row * K + ((size_t)c * ph + ky) * pw + kx] =
                                x[base + ((size_t)c * H + py * ph + ky) * W + qx * pw + kx];
                        }
    cl_mem dx = up(x, sizeof(float) * nx), dc = tsr_buf_alloc(ctx, sizeof(float) * nc, &err);
    tsr_status st = tsr_k_im2col_rect(q, dx, dc, off, inner, s_inner, s_outer, images, C, H, W,
                                      ph, pw, gh, gw, &err);
    float *got = down(dc, nc);
    char name[96];
    snprintf(name, sizeof name, "im2col_rect %d images (%d inner) C%d %dx%d patches %dx%d",
             images, inner, C, H, W, ph, pw);
    if (st != TSR_OK)
        check(0, "%s: %s", name, err.msg);
    else
        compare(name, got, ref, nc, 0, 0);
    mems_free((cl_mem[]){dx, dc}, 2);
    free(x), free(ref), free(got);
}

static void test_gather_pad(int B, int Rout, int Rin, int D)
{
    size_t ns = (size_t)B * Rin * D, nd = (size_t)B * Rout * D;
    float *src = rand_vec(ns, 1.0f), *dst0 = rand_vec(nd, 1.0f);
    int *idx = malloc(sizeof(int) * Rout), *idx_all = malloc(sizeof(int) * Rout);
    for (int r = 0; r < Rout; r++) {
        idx[r] = (int)(frand() * 0.5f * (Rin + 3) + 0.5f * (Rin + 3)) % (Rin + 3) - 3;
        if (idx[r] < -1)
            idx[r] = -1;
        idx_all[r] = idx[r] < 0 ? r % Rin : idx[r];
    }
    float *ref = malloc(sizeof(float) * nd), *ref_add = malloc(sizeof(float) * nd);
    for (int b = 0; b < B; b++)
        for (int r = 0; r < Rout; r++)
            for (int d = 0; d < D; d++) {
                size_t o = ((size_t)b * Rout + r) * D + d;
                ref[o] = idx[r] >= 0 ? src[((size_t)b * Rin + idx[r]) * D + d] : 0.0f;
                ref_add[o] = dst0[o] + src[((size_t)b * Rin + idx_all[r]) * D + d];
            }
    cl_mem ds = up(src, sizeof(float) * ns), dd = tsr_buf_alloc(ctx, sizeof(float) * nd, &err);
    cl_mem di = up(idx, sizeof(int) * Rout), da = up(idx_all, sizeof(int) * Rout);
    tsr_status st = tsr_k_gather_rows_pad(q, dd, ds, di, B, Rout, Rin, D, &err);
    float *got = down(dd, nd);
    char name[96];
    snprintf(name, sizeof name, "gather_rows_pad B%d %d of %d rows, D%d", B, Rout, Rin, D);
    if (st != TSR_OK)
        check(0, "%s: %s", name, err.msg);
    else
        compare(name, got, ref, nd, 0, 0);
    free(got);
    tsr_buf_write(q, dd, dst0, sizeof(float) * nd, &err);
    st = tsr_k_gather_add_rows(q, dd, ds, da, B, Rout, Rin, D, &err);
    got = down(dd, nd);
    snprintf(name, sizeof name, "gather_add_rows B%d %d of %d rows, D%d", B, Rout, Rin, D);
    if (st != TSR_OK)
        check(0, "%s: %s", name, err.msg);
    else
        compare(name, got, ref_add, nd, 1e-6, 1e-6);
    mems_free((cl_mem[]){ds, dd, di, da}, 4);
    free(src), free(dst0), free(idx), free(idx_all), free(ref), free(ref_add), free(got);
}

/* Swin's attention inside windows, written as transformers' SwinSelfAttention
 * does it: q k^T / sqrt(dh), plus the bias table gathered by
 * relative_position_index (built from coordinate differences), plus -100
 * where the shifted windows' regions differ, softmax, times v. */
static void test_window_attention(int windows, int nW, int ws, int H, int dh, int with_region)
{
    int N = ws * ws, D = H * dh, span = 2 * ws - 1;
    size_t nq = (size_t)windows * N * 3 * D, no = (size_t)windows * N * D;
    float *qkv = rand_vec(nq, 1.0f), *table = rand_vec((size_t)span * span * H, 2.0f);
    int *region = malloc(sizeof(int) * nW * N);
    for (int i = 0; i < nW * N; i++)
        region[i] = (int)(frand() * 2 + 2) % 3;
    int *rpi = malloc(sizeof(int) * N * N);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            int dy = i / ws - j / ws + ws - 1, dx = i % ws - j % ws + ws - 1;
            rpi[i * N + j] = dy * span + dx;
        }
    float *ref = malloc(sizeof(float) * no);
    double *sc = malloc(sizeof(double) * N);
    for (int w = 0; w < windows; w++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < N; i++) {
                double mx = -1e300, sum = 0;
                for (int j = 0; j < N; j++) {
                    double s = 0;
                    for (int k = 0; k < dh; k++)
                        s += (double)qkv[((size_t)w * N + i) * 3 * D + h * dh + k] *
                             qkv[((size_t)w * N + j) * 3 * D + D + h * dh + k];
                    s = s / sqrt((double)dh) + table[(size_t)rpi[i * N + j] * H + h];
                    if (with_region && region[(w % nW) * N + i] != region[(w % nW) * N + j])
                        s -= 100.0;
                    sc[j] = s;
                    mx = s > mx ? s : mx;
                }
                for (int j = 0; j < N; j++)
                    sum += (sc[j] = exp(sc[j] - mx));
                for (int k = 0; k < dh; k++) {
                    double a = 0;
                    for (int j = 0; j < N; j++)
                        a += sc[j] * qkv[((size_t)w * N + j) * 3 * D + 2 * D + h * dh + k];
                    ref[((size_t)w * N + i) * D + h * dh + k] = (float)(a / sum);
                }
            }
    cl_mem dq = up(qkv, sizeof(float) * nq), dt = up(table, sizeof(float) * span * span * H);
    cl_mem dr = up(region, sizeof(int) * nW * N), dout = tsr_buf_alloc(ctx, sizeof(float) * no, &err);
    tsr_status st = tsr_k_window_attention(q, dq, dout, dt, with_region ? dr : NULL, windows, nW,
                                           ws, H, dh, 1.0f / sqrtf((float)dh), &err);
    float *got = down(dout, no);
    char name[112];
    snprintf(name, sizeof name, "window_attention %d windows (%d per image) %dx%d, H%d dh%d%s",
             windows, nW, ws, ws, H, dh, with_region ? ", shifted mask" : "");
    if (st != TSR_OK)
        check(0, "%s: %s", name, err.msg);
    else
        compare(name, got, ref, no, 1e-5, 1e-4);
    mems_free((cl_mem[]){dq, dt, dr, dout}, 4);
    free(qkv), free(table), free(region), free(rpi), free(ref), free(sc), free(got);
}

static void test_swin_elementwise(int B, int P, int C)
{
    size_t n = (size_t)B * P * C;
    float *x = rand_vec(n, 2.0f), *r = rand_vec(n, 2.0f), *loc = rand_vec(n, 3.0f);
    float *glob = rand_vec((size_t)B * C, 3.0f), *mean = rand_vec(C, 1.0f);
    float *var = rand_vec(C, 1.0f), *g = rand_vec(C, 1.0f), *bb = rand_vec(C, 1.0f);
    for (int c = 0; c < C; c++)
        var[c] = fabsf(var[c]) + 0.1f;
    float *ref = malloc(sizeof(float) * n), *rm = malloc(sizeof(float) * B * C);
    char name[96];
    /* batch norm with ReLU */
    for (size_t i = 0; i < n; i++) {
        int c = (int)(i % C);
        double v = (x[i] - mean[c]) / sqrt((double)var[c] + 1e-5) * g[c] + bb[c];
        ref[i] = (float)(v > 0 ? v : 0);
    }
    cl_mem dx = up(x, sizeof(float) * n), dm = up(mean, sizeof(float) * C),
           dv = up(var, sizeof(float) * C), dg = up(g, sizeof(float) * C),
           db = up(bb, sizeof(float) * C);
    tsr_status st = tsr_k_batchnorm_act(q, dx, dm, dv, dg, db, 1e-5f, B * P, C, TSR_ACT_RELU, &err);
    float *got = down(dx, n);
    snprintf(name, sizeof name, "batchnorm_act %d rows of %d, ReLU", B * P, C);
    if (st != TSR_OK)
        check(0, "%s: %s", name, err.msg);
    else
        compare(name, got, ref, n, 1e-5, 1e-5);
    free(got);
    /* attentional feature fusion */
    for (size_t i = 0; i < n; i++) {
        int c = (int)(i % C), b = (int)(i / ((size_t)P * C));
        double sg = 1 / (1 + exp(-((double)loc[i] + glob[(size_t)b * C + c])));
        ref[i] = (float)(2 * x[i] * sg + 2 * r[i] * (1 - sg));
    }
    tsr_buf_write(q, dx, x, sizeof(float) * n, &err);
    cl_mem dr = up(r, sizeof(float) * n), dl = up(loc, sizeof(float) * n),
           dgl = up(glob, sizeof(float) * B * C), dmean = tsr_buf_alloc(ctx, sizeof(float) * B * C, &err);
    st = tsr_k_aff_combine(q, dx, dr, dl, dgl, B, P, C, &err);
    got = down(dx, n);
    snprintf(name, sizeof name, "aff_combine B%d P%d C%d", B, P, C);
    if (st != TSR_OK)
        check(0, "%s: %s", name, err.msg);
    else
        compare(name, got, ref, n, 1e-5, 1e-5);
    free(got);
    /* means of rows */
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            double s = 0;
            for (int p = 0; p < P; p++)
                s += r[((size_t)b * P + p) * C + c];
            rm[b * C + c] = (float)(s / P);
        }
    st = tsr_k_mean_rows(q, dmean, dr, B, P, C, &err);
    got = down(dmean, (size_t)B * C);
    snprintf(name, sizeof name, "mean_rows B%d of %d rows, C%d", B, P, C);
    if (st != TSR_OK)
        check(0, "%s: %s", name, err.msg);
    else
        compare(name, got, rm, (size_t)B * C, 1e-5, 1e-4);
    mems_free((cl_mem[]){dx, dm, dv, dg, db, dr, dl, dgl, dmean}, 9);
    free(x), free(r), free(loc), free(glob), free(mean), free(var), free(g), free(bb);
    free(ref), free(rm), free(got);
}

/* torch's bicubic interpolate (align_corners=True, A = -0.75, taps clamped),
 * in double from torch's float source positions, after the per-bin batch norm, folded as HTSAT's reshape_mel2img. */
static double cubic_w(double x)
{
    const double A = -0.75;
    x = fabs(x);
    if (x <= 1)
        return ((A + 2) * x - (A + 3)) * x * x + 1;
    if (x < 2)
        return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
    return 0;
}

static void test_mel2img(int BC, int T, int F, int S, int r)
{
    int Tw = r * S;
    size_t nm = (size_t)BC * T * F, ni = (size_t)BC * r * F * S;
    float *mel = rand_vec(nm, 30.0f), *mean = rand_vec(F, 5.0f), *var = rand_vec(F, 1.0f);
    float *g = rand_vec(F, 1.0f), *bb = rand_vec(F, 1.0f), *ref = malloc(sizeof(float) * ni);
    for (int f = 0; f < F; f++)
        var[f] = fabsf(var[f]) * 50 + 1;
    for (int bc = 0; bc < BC; bc++)
        for (int t = 0; t < Tw; t++) /* stretched frame t */
            for (int f = 0; f < F; f++) {
                /* the source position in float, as torch computes it */
                float scale = Tw > 1 ? (float)(T - 1) / (float)(Tw - 1) : 0.0f;
                double src = T == Tw ? t : (double)(scale * (float)t), v = 0;
                int t0 = (int)floor(src);
                for (int j = -1; j <= 2; j++) {
                    int tt = t0 + j < 0 ? 0 : t0 + j > T - 1 ? T - 1 : t0 + j;
                    double x = ((double)mel[((size_t)bc * T + tt) * F + f] - mean[f]) /
                                   sqrt((double)var[f] + 1e-5) * g[f] + bb[f];
                    v += x * cubic_w(src - (t0 + j));
                }
                int k = t / S, col = t % S; /* row k*F + f, column col */
                ref[(((size_t)bc * r + k) * F + f) * S + col] = (float)v;
            }
    cl_mem dm = up(mel, sizeof(float) * nm), dmean = up(mean, sizeof(float) * F),
           dv = up(var, sizeof(float) * F), dg = up(g, sizeof(float) * F),
           db = up(bb, sizeof(float) * F), di = tsr_buf_alloc(ctx, sizeof(float) * ni, &err);
    tsr_status st = tsr_k_clap_mel2img(q, dm, di, dmean, dv, dg, db, 1e-5f, BC, T, F, Tw, S, r, &err);
    float *got = down(di, ni);
    char name[96];
    snprintf(name, sizeof name, "clap_mel2img %d x %d frames of %d bins into %d x %d", BC, T, F,
             r * F, S);
    if (st != TSR_OK)
        check(0, "%s: %s", name, err.msg);
    else
        compare(name, got, ref, ni, 1e-4, 1e-5);
    mems_free((cl_mem[]){dm, dmean, dv, dg, db, di}, 6);
    free(mel), free(mean), free(var), free(g), free(bb), free(ref), free(got);
}

/* ---- tests ---- */

static void test_layernorm(int rows, int dim)
{
    float *x = rand_vec((size_t)rows * dim, 3.0f), *g = rand_vec(dim, 1.0f), *b = rand_vec(dim, 1.0f);
    for (int i = 0; i < rows * dim; i++)
        x[i] += 5.0f; /* a mean far from zero */
    float *ref = malloc(sizeof(float) * rows * dim);
    ref_layernorm(x, ref, g, b, rows, dim, 1e-5f);
    cl_mem dx = up(x, sizeof(float) * rows * dim), dg = up(g, sizeof(float) * dim),
           db = up(b, sizeof(float) * dim);
    tsr_k_layernorm(q, dx, dx, dg, db, rows, dim, 1e-5f, &err);
    float *got = down(dx, (size_t)rows * dim);
    char name[64];
    snprintf(name, sizeof name, "layernorm %dx%d", rows, dim);
    compare(name, got, ref, (size_t)rows * dim, 1e-4, 1e-4);
    mems_free((cl_mem[]){dx, dg, db}, 3);
    free(x), free(g), free(b), free(ref), free(got);
}

static void test_l2norm(int rows, int dim)
{
    float *x = rand_vec((size_t)rows * dim, 2.0f), *ref = malloc(sizeof(float) * rows * dim);
    for (int r = 0; r < rows; r++) {
        double s = 0;
        for (int i = 0; i < dim; i++)
            s += x[r * dim + i] * x[r * dim + i];
        for (int i = 0; i < dim; i++)
            ref[r * dim + i] = (float)(x[r * dim + i] / fmax(sqrt(s), 1e-12));
    }
    cl_mem dx = up(x, sizeof(float) * rows * dim);
    tsr_k_l2norm(q, dx, rows, dim, &err);
    float *got = down(dx, (size_t)rows * dim);
    char name[64];
    snprintf(name, sizeof name, "l2norm %dx%d", rows, dim);
    compare(name, got, ref, (size_t)rows * dim, 1e-6, 1e-5);
    tsr_buf_free(dx);
    free(x), free(ref), free(got);
}

static void test_softmax(int B, int H, int S, int causal, int use_lens)
{
    size_t n = (size_t)B * H * S * S;
    float *s = rand_vec(n, 8.0f), *ref = malloc(sizeof(float) * n);
    memcpy(ref, s, sizeof(float) * n);
    int *lens = malloc(sizeof(int) * B);
    for (int b = 0; b < B; b++)
        lens[b] = 1 + (b * 7) % S;
    ref_softmax(ref, B, H, S, S, 0.37f, causal, use_lens ? lens : NULL);
    for (int cpu = 0; cpu < 2; cpu++) { /* the work-group kernel, then the CPU one */
        cl_mem ds = up(s, sizeof(float) * n), dl = up(lens, sizeof(int) * B);
        tsr_status st = cpu ? tsr_k_softmax_cpu(q, ds, B, H, S, S, 0.37f, causal,
                                                use_lens ? dl : NULL, &err)
                            : tsr_k_softmax(q, ds, B, H, S, S, 0.37f, causal, use_lens ? dl : NULL,
                                            &err);
        float *got = down(ds, n);
        char name[96];
        snprintf(name, sizeof name, "softmax%s B%d H%d S%d causal=%d lens=%d", cpu ? " (CPU)" : "",
                 B, H, S, causal, use_lens);
        if (st != TSR_OK)
            check(0, "%s: %s", name, err.msg);
        else
            compare(name, got, ref, n, 1e-6, 1e-5);
        mems_free((cl_mem[]){ds, dl}, 2);
        free(got);
    }
    free(s), free(ref), free(lens);
}

static void test_bias_act(int rows, int cols, int act, int with_bias)
{
    size_t n = (size_t)rows * cols;
    float *y = rand_vec(n, 4.0f), *b = rand_vec(cols, 1.0f), *ref = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++)
        ref[i] = ref_act(y[i] + (with_bias ? b[i % cols] : 0), act);
    cl_mem dy = up(y, sizeof(float) * n), dbias = up(b, sizeof(float) * cols);
    tsr_k_bias_act(q, dy, with_bias ? dbias : NULL, rows, cols, act, &err);
    float *got = down(dy, n);
    char name[64];
    snprintf(name, sizeof name, "bias_act %dx%d act=%d bias=%d", rows, cols, act, with_bias);
    compare(name, got, ref, n, 1e-5, 1e-5);
    mems_free((cl_mem[]){dy, dbias}, 2);
    free(y), free(b), free(ref), free(got);
}

static void test_add(size_t n)
{
    float *y = rand_vec(n, 1.0f), *x = rand_vec(n, 1.0f), *ref = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++)
        ref[i] = y[i] + x[i];
    cl_mem dy = up(y, sizeof(float) * n), dx = up(x, sizeof(float) * n);
    tsr_k_add(q, dy, dx, n, &err);
    float *got = down(dy, n);
    char name[64];
    snprintf(name, sizeof name, "add n=%zu", n);
    compare(name, got, ref, n, 0, 0);
    mems_free((cl_mem[]){dy, dx}, 2);
    free(y), free(x), free(ref), free(got);
}

/* Token embeddings at positions pos0.., with or without a token-type row. */
static void test_embed_gather(int B, int S, int D, int V, int pos0, int with_type)
{
    int *ids = malloc(sizeof(int) * B * S), P = pos0 + S;
    for (int i = 0; i < B * S; i++)
        ids[i] = (i * 31 + 7) % V;
    float *tok = rand_vec((size_t)V * D, 1.0f), *pos = rand_vec((size_t)P * D, 1.0f);
    float *type = rand_vec((size_t)D, 1.0f);
    size_t n = (size_t)B * S * D;
    float *ref = malloc(sizeof(float) * n);
    for (int t = 0; t < B * S; t++)
        for (int d = 0; d < D; d++)
            ref[(size_t)t * D + d] = tok[(size_t)ids[t] * D + d] +
                                     pos[(size_t)(pos0 + t % S) * D + d] +
                                     (with_type ? type[d] : 0.0f);
    cl_mem di = up(ids, sizeof(int) * B * S), dt = up(tok, sizeof(float) * V * D),
           dp = up(pos, sizeof(float) * P * D), dty = up(type, sizeof(float) * D),
           dout = tsr_buf_alloc(ctx, sizeof(float) * n, &err);
    tsr_k_embed_tokens(q, dout, di, dt, dp, with_type ? dty : NULL, B, S, pos0, D, &err);
    float *got = down(dout, n);
    char name[96];
    snprintf(name, sizeof name, "embed_tokens B%d S%d D%d from position %d, type row %d", B, S, D,
             pos0, with_type);
    compare(name, got, ref, n, 0, 0);
    /* gather rows B*S-1, 0, ... */
    int *idx = malloc(sizeof(int) * B);
    float *gref = malloc(sizeof(float) * B * D);
    for (int b = 0; b < B; b++) {
        idx[b] = ((B * S - 1 - b * 3) % (B * S) + B * S) % (B * S);
        memcpy(gref + (size_t)b * D, ref + (size_t)idx[b] * D, sizeof(float) * D);
    }
    cl_mem dx = up(idx, sizeof(int) * B), dg = tsr_buf_alloc(ctx, sizeof(float) * B * D, &err);
    tsr_k_gather_rows(q, dg, dout, dx, B, D, &err);
    float *gg = down(dg, (size_t)B * D);
    snprintf(name, sizeof name, "gather_rows %d of %d, D%d", B, B * S, D);
    compare(name, gg, gref, (size_t)B * D, 0, 0);
    mems_free((cl_mem[]){di, dt, dp, dty, dout, dx, dg}, 7);
    free(ids), free(tok), free(pos), free(type), free(ref), free(got), free(idx), free(gref),
        free(gg);
}

/* Patch embedding with (CLIP) or without (SigLIP, tokens for a decoder) a class token. */
static void test_patches(int B, int C, int Hs, int p, int D, int with_cls)
{
    int g = Hs / p, np = g * g, K = C * p * p, S = np + with_cls;
    size_t npx = (size_t)B * C * Hs * Hs;
    float *px = rand_vec(npx, 1.0f), *w = rand_vec((size_t)D * K, 0.3f);
    float *cls = rand_vec(D, 1.0f), *pos = rand_vec((size_t)S * D, 1.0f);
    /* reference: a stride-p convolution written out directly */
    size_t nout = (size_t)B * S * D;
    float *ref = malloc(sizeof(float) * nout);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < S; t++)
            for (int d = 0; d < D; d++) {
                double s = 0;
                int patch = t - with_cls;
                if (patch < 0)
                    s = cls[d];
                else {
                    int py = patch / g, pxx = patch % g;
                    for (int c = 0; c < C; c++)
                        for (int ky = 0; ky < p; ky++)
                            for (int kx = 0; kx < p; kx++)
                                s += (double)w[(size_t)d * K + (c * p + ky) * p + kx] *
                                     px[(((size_t)b * C + c) * Hs + py * p + ky) * Hs + pxx * p + kx];
                }
                ref[((size_t)b * S + t) * D + d] = (float)(s + pos[(size_t)t * D + d]);
            }
    cl_mem dpx = up(px, sizeof(float) * npx), dw = tsr_linear_weight_upload(q, w, D, K, &err),
           dcls = up(cls, sizeof(float) * D), dpos = up(pos, sizeof(float) * S * D);
    cl_mem cols = tsr_buf_alloc(ctx, sizeof(float) * B * np * K, &err);
    cl_mem pt = tsr_buf_alloc(ctx, sizeof(float) * B * np * D, &err);
    cl_mem out = tsr_buf_alloc(ctx, sizeof(float) * nout, &err);
    tsr_k_im2col(q, dpx, cols, B, C, Hs, Hs, p, &err);
    tsr_linear(q, cols, B * np, K, dw, NULL, D, pt, TSR_ACT_NONE, &err);
    tsr_k_vit_embed(q, out, pt, with_cls ? dcls : NULL, dpos, B, np, D, &err);
    float *got = down(out, nout);
    char name[128];
    snprintf(name, sizeof name,
             "patch embedding (im2col+GEMM+vit_embed) B%d %dpx patch %d D%d class token %d", B,
             Hs, p, D, with_cls);
    compare(name, got, ref, nout, 1e-4, 1e-4);
    mems_free((cl_mem[]){dpx, dw, dcls, dpos, cols, pt, out}, 7);
    free(px), free(w), free(cls), free(pos), free(ref), free(got);
}

/* The 1-D convolution input rows of Whisper's encoder (kernel 3, padding 1). */
static void test_im2col1d(int C, int T_in, int stride, int channels_last)
{
    int T_out = stride == 1 ? T_in : (T_in + 1) / 2;
    /* in(c, s) = x[c*cs + s*ss]: channels first (mel frames) or last (h1) */
    int cs = channels_last ? 1 : T_in, ss = channels_last ? C : 1;
    size_t nx = (size_t)C * T_in, nc = (size_t)T_out * C * 3;
    float *x = rand_vec(nx, 1.0f), *ref = malloc(sizeof(float) * nc);
    for (int t = 0; t < T_out; t++)
        for (int c = 0; c < C; c++)
            for (int k = 0; k < 3; k++) {
                int src = t * stride + k - 1;
                ref[((size_t)t * C + c) * 3 + k] =
                    src >= 0 && src < T_in ? x[(size_t)c * cs + (size_t)src * ss] : 0.0f;
            }
    cl_mem dx = up(x, sizeof(float) * nx), dc = tsr_buf_alloc(ctx, sizeof(float) * nc, &err);
    tsr_status st = tsr_k_im2col1d(q, dx, dc, C, T_in, cs, ss, stride, T_out, &err);
    float *got = down(dc, nc);
    char name[96];
    snprintf(name, sizeof name, "im2col_1d C%d T%d stride %d channels %s", C, T_in, stride,
             channels_last ? "last" : "first");
    if (st != TSR_OK)
        check(0, "%s: %s", name, err.msg);
    else
        compare(name, got, ref, nc, 0, 0);
    mems_free((cl_mem[]){dx, dc}, 2);
    free(x), free(ref), free(got);
}

static void test_gemm(int M, int N, int K)
{
    float *a = rand_vec((size_t)M * K, 1.0f), *b = rand_vec((size_t)N * K, 1.0f);
    float *ref = malloc(sizeof(float) * M * N);
    ref_gemm_nt(M, N, K, 1.0f, a, K, b, K, 0.0f, ref, N);
    cl_mem da = up(a, sizeof(float) * M * K), db = up(b, sizeof(float) * N * K),
           dc = tsr_buf_alloc(ctx, sizeof(float) * M * N, &err);
    tsr_status st = tsr_gemm_nt(q, M, N, K, 1.0f, da, 0, K, db, 0, K, 0.0f, dc, 0, N, &err);
    float *got = down(dc, (size_t)M * N);
    char name[64];
    snprintf(name, sizeof name, "gemm_nt %dx%dx%d", M, N, K);
    if (st != TSR_OK)
        check(0, "%s: %s", name, err.msg);
    else
        compare(name, got, ref, (size_t)M * N, 1e-4, 1e-4);
    mems_free((cl_mem[]){da, db, dc}, 3);
    free(a), free(b), free(ref), free(got);
}

/* One tsr_linear on q as ctx is set up (GEMM path, q->wdt): x (M, K) times
 * w (N, K) uploaded by tsr_linear_weight_upload, plus b (or NULL), against
 * ref (M, N) within the float32 tolerance. */
static void run_linear(const char *name, const float *x, const float *w, const float *b,
                       const float *ref, int M, int N, int K, int act)
{
    cl_mem dx = up(x, sizeof(float) * M * K), db = b ? up(b, sizeof(float) * N) : NULL;
    cl_mem dw = tsr_linear_weight_upload(q, w, N, K, &err);
    cl_mem dy = tsr_buf_alloc(ctx, sizeof(float) * M * N, &err);
    tsr_status st = tsr_linear(q, dx, M, K, dw, db, N, dy, act, &err);
    float *got = down(dy, (size_t)M * N);
    if (st != TSR_OK)
        check(0, "%s: %s", name, err.msg);
    else
        compare(name, got, ref, (size_t)M * N, 1e-4, 1e-4);
    mems_free((cl_mem[]){dx, db, dw, dy}, 4);
    free(got);
}

/* tsr_linear on both GEMM paths (tessera's CPU kernel and CLBlast), with bias
 * and activation, against the C reference. */
static void test_linear(int M, int N, int K, int act, int with_bias)
{
    float *x = rand_vec((size_t)M * K, 1.0f), *w = rand_vec((size_t)N * K, 1.0f / sqrtf((float)K));
    float *b = rand_vec(N, 0.5f), *ref = malloc(sizeof(float) * M * N);
    ref_linear(x, M, K, w, with_bias ? b : NULL, N, ref, act);
    int saved = ctx->own_gemm;
    for (int own = 0; own < 2; own++) {
        ctx->own_gemm = own;
        char name[96];
        snprintf(name, sizeof name, "linear (%s) %dx%dx%d act=%d bias=%d", own ? "tessera GEMM" : "CLBlast",
                 M, N, K, act, with_bias);
        run_linear(name, x, w, with_bias ? b : NULL, ref, M, N, K, act);
    }
    ctx->own_gemm = saved;
    free(x), free(w), free(b), free(ref);
}

/* The host's float32 to half and bfloat16 conversions on values whose
 * encodings are worked out by hand (rounding to nearest even, subnormals,
 * overflow), and every half widened by the device's vload_half (PoCL's or
 * the driver's, not tessera's code) against tsr_f16_to_f32 and back. */
static void test_half_convert(void)
{
    static const struct {
        float f;
        uint16_t h, bf;
    } cases[] = {
        {0.0f, 0x0000, 0x0000},          {-0.0f, 0x8000, 0x8000},
        {1.0f, 0x3c00, 0x3f80},          {-2.0f, 0xc000, 0xc000},
        {65504.0f, 0x7bff, 0x4780},      {65519.0f, 0x7bff, 0x4780}, /* half: just below the tie */
        {65520.0f, 0x7c00, 0x4780},      /* ties to even: infinity */
        {0x1p-14f, 0x0400, 0x3880},      /* smallest normal half */
        {0x1p-24f, 0x0001, 0x3380},      /* smallest subnormal */
        {0x1p-25f, 0x0000, 0x3300},      /* half of it: ties to even, zero */
        {0x1.8p-25f, 0x0001, 0x3340},    /* three quarters: rounds up */
        {0x1.8p-24f, 0x0002, 0x33c0},    /* 1.5 subnormal steps: ties to even, 2 */
        {1.0f + 0x1p-11f, 0x3c00, 0x3f80}, /* tie: down to even */
        {1.0f + 0x3p-11f, 0x3c02, 0x3f80}, /* tie: up to even */
        {1.0f + 0x1p-8f, 0x3c04, 0x3f80},  /* bfloat16 tie: down */
        {1.0f + 0x3p-8f, 0x3c0c, 0x3f82},  /* bfloat16 tie: up */
        {3.14159274f, 0x4248, 0x4049},   {-1e-3f, 0x9419, 0xba83},
        {1e5f, 0x7c00, 0x47c3},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t h = tsr_f32_to_f16(cases[i].f), bf = tsr_f32_to_bf16(cases[i].f);
        if (h != cases[i].h || bf != cases[i].bf) {
            printf("  %a: half 0x%04x (want 0x%04x), bfloat16 0x%04x (want 0x%04x)\n",
                   (double)cases[i].f, h, cases[i].h, bf, cases[i].bf);
            bad++;
        }
    }
    check(!bad, "float32 to half and bfloat16 on %zu hand-checked values (%d wrong)",
          sizeof cases / sizeof cases[0], bad);
    uint16_t *all = malloc(sizeof(uint16_t) * 65536);
    for (int i = 0; i < 65536; i++)
        all[i] = (uint16_t)i;
    cl_mem src = up(all, sizeof(uint16_t) * 65536);
    cl_mem dst = tsr_buf_alloc(ctx, sizeof(float) * 65536, &err);
    tsr_status st = tsr_k_widen(q, src, TSR_WDT_F16, dst, 65536, 1, &err);
    float *dev = st == TSR_OK ? down(dst, 65536) : NULL;
    int diff = 0, trip = 0;
    for (int i = 0; dev && i < 65536; i++) {
        float h = tsr_f16_to_f32((uint16_t)i);
        int nan = ((i >> 10) & 0x1f) == 0x1f && (i & 0x3ff);
        if (nan ? !isnan(dev[i]) || !isnan(h) : memcmp(&h, &dev[i], 4) != 0)
            diff++;
        if (!nan && tsr_f32_to_f16(h) != (uint16_t)i)
            trip++;
    }
    check(dev && !diff && !trip, "all 65536 halves: the device's vload_half and tsr_f16_to_f32 "
          "differ on %d, the round trip through float32 changes %d", diff, trip);
    mems_free((cl_mem[]){src, dst}, 2);
    free(all);
    free(dev);
}

/* tsr_linear with weights stored as half, bfloat16 or int8 on both GEMM
 * paths, against the C reference on the weights rounded to that type (int8:
 * quantized per row by the documented rule): the kernels widen them exactly,
 * so the float32 tolerance holds. */
static void test_linear16(int M, int N, int K, int act, int with_bias)
{
    float *x = rand_vec((size_t)M * K, 1.0f), *w = rand_vec((size_t)N * K, 1.0f / sqrtf((float)K));
    float *b = rand_vec(N, 0.5f), *wr = malloc(sizeof(float) * N * K);
    float *ref = malloc(sizeof(float) * M * N);
    int saved = ctx->own_gemm;
    for (int wdt = TSR_WDT_F16; wdt <= TSR_WDT_I8; wdt++) {
        for (size_t i = 0; i < (size_t)N * K && wdt != TSR_WDT_I8; i++) {
            if (wdt == TSR_WDT_F16) {
                wr[i] = tsr_f16_to_f32(tsr_f32_to_f16(w[i]));
            } else {
                uint32_t u = (uint32_t)tsr_f32_to_bf16(w[i]) << 16;
                memcpy(&wr[i], &u, 4);
            }
        }
        for (int n = 0; n < N && wdt == TSR_WDT_I8; n++) { /* the documented per-row rule */
            float mx = 0.0f;
            for (int k = 0; k < K; k++)
                mx = fmaxf(mx, fabsf(w[(size_t)n * K + k]));
            for (int k = 0; k < K; k++) {
                float v = mx > 0 ? (float)rint((double)w[(size_t)n * K + k] * (127.0 / mx)) : 0.0f;
                wr[(size_t)n * K + k] = v * (mx / 127.0f);
            }
        }
        ref_linear(x, M, K, wr, with_bias ? b : NULL, N, ref, act);
        for (int own = 0; own < 2; own++) {
            ctx->own_gemm = own;
            q->wdt = wdt;
            char name[112];
            snprintf(name, sizeof name, "linear, %s weights (%s) %dx%dx%d act=%d bias=%d",
                     tsr_wdt_name(wdt), own ? "tessera GEMM" : "CLBlast", M, N, K, act, with_bias);
            run_linear(name, x, w, with_bias ? b : NULL, ref, M, N, K, act);
            q->wdt = TSR_WDT_F32;
        }
    }
    ctx->own_gemm = saved;
    free(x), free(w), free(b), free(wr), free(ref);
}

/* tessera's GEMM kernel with each strip count `tessera tune` may choose
 * (the program is rebuilt with another GT_STRIPS), on widths that leave
 * partial strips and a narrow last strip. */
static void test_gemm_strips(void)
{
    static const int strips[3] = {2, 4, 8};
    for (int i = 0; i < 3; i++) {
        tsr_status st = tsr_ctx_set_gemm_strips(ctx, strips[i], &err);
        check(st == TSR_OK && ctx->gemm_strips == strips[i], "GEMM program rebuilt with %d strips%s%s",
              strips[i], st == TSR_OK ? "" : ": ", st == TSR_OK ? "" : err.msg);
        if (st != TSR_OK)
            continue;
        new_queue(); /* kernels from the rebuilt program */
        const int shapes[3][3] = {{7, 33, 9}, {13, 300, 40}, {61, 517, 96}};
        for (int k = 0; k < 3; k++) {
            int M = shapes[k][0], N = shapes[k][1], K = shapes[k][2];
            float *x = rand_vec((size_t)M * K, 1.0f), *w = rand_vec((size_t)N * K, 0.2f);
            float *b = rand_vec(N, 0.5f), *ref = malloc(sizeof(float) * M * N);
            ref_linear(x, M, K, w, b, N, ref, TSR_ACT_GELU);
            int saved = ctx->own_gemm;
            ctx->own_gemm = 1;
            char name[96];
            snprintf(name, sizeof name, "tessera GEMM, %d strips, %dx%dx%d", strips[i], M, N, K);
            run_linear(name, x, w, b, ref, M, N, K, TSR_ACT_GELU);
            ctx->own_gemm = saved;
            free(x), free(w), free(b), free(ref);
        }
    }
    check(tsr_ctx_set_gemm_strips(ctx, 3, &err) == TSR_ERR_INVALID_ARG, "3 strips are refused");
    check(tsr_ctx_set_gemm_strips(ctx, TSR_GEMM_STRIPS_DEFAULT, &err) == TSR_OK,
          "back to the default strips");
    new_queue();
}

static void test_encoder_layer(int B, int S, int D, int H, int F, int act, int causal, int lens_on,
                               int post_ln)
{
    tsr_enc_cfg c = {D, H, F, 1e-5f, act, causal, post_ln};
    size_t sizes[12] = {D, D, 3 * D * D, 3 * D, D * D, D, D, D, F * D, F, D * F, D};
    float *hw[12];
    cl_mem dw[12];
    for (int i = 0; i < 12; i++) {
        int is_ln = i == 0 || i == 6;
        hw[i] = rand_vec(sizes[i], i == 2 || i == 4 || i == 8 || i == 10 ? 1.0f / sqrtf(sizes[i] / D > 0 ? (float)D : 1.0f) : 0.5f);
        if (is_ln)
            for (size_t k = 0; k < sizes[i]; k++)
                hw[i][k] += 1.0f;
        int lin_rows[12] = {0, 0, 3 * D, 0, D, 0, 0, 0, F, 0, D, 0};
        dw[i] = lin_rows[i] ? tsr_linear_weight_upload(q, hw[i], lin_rows[i],
                                                       (int)(sizes[i] / lin_rows[i]), &err)
                            : up(hw[i], sizeof(float) * sizes[i]);
    }
    tsr_enc_weights w = {dw[0], dw[1], dw[2], dw[3], dw[4], dw[5], dw[6], dw[7], dw[8], dw[9], dw[10], dw[11]};
    size_t n = (size_t)B * S * D;
    float *x = rand_vec(n, 1.0f), *ref = malloc(sizeof(float) * n);
    memcpy(ref, x, sizeof(float) * n);
    int *lens = malloc(sizeof(int) * B);
    for (int b = 0; b < B; b++)
        lens[b] = S - (b % S);
    ref_enc_layer(&c, hw, ref, B, S, lens_on ? lens : NULL);
    cl_mem dx = up(x, sizeof(float) * n), dl = up(lens, sizeof(int) * B);
    tsr_enc_scratch s = {0};
    tsr_arena sa;
    /* with the scratch for attention as GEMMs (used where the length allows),
     * then without it: the fused kernel on the same layer */
    tsr_status st = scratch_for_att(&c, B * S, S, &sa, &s);
    float *got = NULL;
    for (int att = 1; att >= 0; att--) {
        if (!att) {
            if (!tsr_att_uses_gemm(q, &c, &s, B, S, lens_on ? dl : NULL))
                break;
            tsr_arena_release(&sa);
            memset(&s, 0, sizeof s);
            st = scratch_for(&c, B * S, &sa, &s);
            tsr_buf_write(q, dx, x, sizeof(float) * n, &err);
        }
        const char *how = !ctx->own_gemm ? "CLBlast"
                          : !tsr_att_uses_gemm(q, &c, &s, B, S, lens_on ? dl : NULL)
                              ? "CPU kernels"
                          : tsr_att_flash_ok(S, D / H) ? "CPU kernels, flash attention"
                                                       : "CPU kernels, attention as GEMMs";
        if (st == TSR_OK)
            st = tsr_enc_layer(q, &c, &w, &s, dx, B, S, lens_on ? dl : NULL, &err);
        free(got);
        got = down(dx, n);
        char name[176];
        snprintf(name, sizeof name,
                 "encoder layer (%s) B%d S%d D%d H%d F%d act=%d causal=%d lens=%d post_ln=%d",
                 how, B, S, D, H, F, act, causal, lens_on, post_ln);
        if (st != TSR_OK)
            check(0, "%s: %s", name, err.msg);
        else
            compare(name, got, ref, n, 1e-4, 1e-4);
    }
    free(got);
    got = NULL;
    if (ctx->own_gemm) { /* the same layer through CLBlast's GEMMs and batched attention */
        tsr_enc_weights w2 = w;
        ctx->own_gemm = 0;
        cl_mem t[4];
        int idx[4] = {2, 4, 8, 10}, rows[4] = {3 * D, D, F, D};
        for (int k = 0; k < 4; k++)
            t[k] = tsr_linear_weight_upload(q, hw[idx[k]], rows[k], (int)(sizes[idx[k]] / rows[k]), &err);
        w2.qkv_w = t[0], w2.o_w = t[1], w2.fc1_w = t[2], w2.fc2_w = t[3];
        tsr_buf_write(q, dx, x, sizeof(float) * n, &err);
        st = tsr_enc_layer(q, &c, &w2, &s, dx, B, S, lens_on ? dl : NULL, &err);
        got = down(dx, n);
        char name[160];
        snprintf(name, sizeof name,
                 "encoder layer (CLBlast) B%d S%d D%d H%d F%d act=%d causal=%d lens=%d post_ln=%d",
                 B, S, D, H, F, act, causal, lens_on, post_ln);
        if (st != TSR_OK)
            check(0, "%s: %s", name, err.msg);
        else
            compare(name, got, ref, n, 1e-4, 1e-4);
        mems_free(t, 4);
        ctx->own_gemm = 1;
    }
    tsr_arena_release(&sa);
    mems_free(dw, 12);
    mems_free((cl_mem[]){dx, dl}, 2);
    for (int i = 0; i < 12; i++)
        free(hw[i]);
    free(x), free(ref), free(got), free(lens);
}

/* Reference attention: out[b, i, h] over keys j < lim (causal: j <= i + Sk - Sq). */
static void ref_attention_kv_group(const float *q, int q_off, int q_row, const float *kv,
                                   int k_off, int v_off, int kv_row, int kv_batch, int group,
                                   float *out, int o_row, int B, int Sq, int Sk, int H, int dh,
                                   float scale, int causal, const int *lens)
{
    double *p = malloc(sizeof(double) * (Sk > 0 ? Sk : 1));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < Sq; i++) {
                const float *qr = q + ((size_t)b * Sq + i) * q_row + q_off + h * dh;
                int lim = causal ? (i + 1 + Sk - Sq < Sk ? i + 1 + Sk - Sq : Sk) : Sk;
                if (lens && lens[b] < lim)
                    lim = lens[b] > 1 ? lens[b] : 1;
                double m = -1e300, sum = 0;
                for (int j = 0; j < lim; j++) {
                    const float *k =
                        kv + (size_t)(b / group) * kv_batch + (size_t)j * kv_row + k_off + h * dh;
                    double s = 0;
                    for (int d = 0; d < dh; d++)
                        s += (double)qr[d] * k[d];
                    p[j] = s * scale;
                    if (p[j] > m)
                        m = p[j];
                }
                for (int j = 0; j < lim; j++)
                    sum += (p[j] = exp(p[j] - m));
                float *o = out + ((size_t)b * Sq + i) * o_row + h * dh;
                for (int d = 0; d < dh; d++) {
                    double acc = 0;
                    for (int j = 0; j < lim; j++)
                        acc += p[j] * kv[(size_t)(b / group) * kv_batch + (size_t)j * kv_row +
                                         v_off + h * dh + d];
                    o[d] = (float)(acc / sum);
                }
            }
    free(p);
}

static void ref_attention_kv_lens(const float *q, int q_off, int q_row, const float *kv,
                                  int k_off, int v_off, int kv_row, int kv_batch, float *out,
                                  int o_row, int B, int Sq, int Sk, int H, int dh, float scale,
                                  int causal, const int *lens)
{
    ref_attention_kv_group(q, q_off, q_row, kv, k_off, v_off, kv_row, kv_batch, 1, out, o_row, B,
                           Sq, Sk, H, dh, scale, causal, lens);
}

static void ref_attention_kv(const float *q, int q_off, int q_row, const float *kv, int k_off,
                             int v_off, int kv_row, int kv_batch, float *out, int o_row, int B,
                             int Sq, int Sk, int H, int dh, float scale, int causal)
{
    ref_attention_kv_lens(q, q_off, q_row, kv, k_off, v_off, kv_row, kv_batch, out, o_row, B, Sq,
                          Sk, H, dh, scale, causal, NULL);
}

/* group > 1: sequences b use keys and values b / group (an image's beams). */
static void test_attention_kv_g(int B, int Sq, int Sk, int H, int dh, int causal, int shared,
                                int lens_on, int group)
{
    int D = H * dh, q_row = 3 * D, kv_row = 2 * D + 3, kv_batch = shared ? 0 : Sk * kv_row;
    size_t nq = (size_t)B * Sq * q_row,
           nkv = (size_t)(shared ? 1 : (B + group - 1) / group) * Sk * kv_row + 8;
    float *qh = rand_vec(nq, 1.0f), *kv = rand_vec(nkv, 1.0f);
    float *ref = calloc((size_t)B * Sq * D, sizeof(float));
    int *lens = malloc(sizeof(int) * B);
    for (int b = 0; b < B; b++)
        lens[b] = Sk - (b * 7) % Sk;
    ref_attention_kv_group(qh, 5 % D, q_row, kv, 1, D + 2, kv_row, kv_batch, group, ref, D, B,
                           Sq, Sk, H, dh, 0.125f, causal, lens_on ? lens : NULL);
    cl_mem dq = up(qh, sizeof(float) * nq), dkv = up(kv, sizeof(float) * nkv);
    cl_mem dl = up(lens, sizeof(int) * B);
    cl_mem dout = tsr_buf_alloc(ctx, sizeof(float) * B * Sq * D, &err);
    tsr_att_io io = {dq, 5 % D, q_row, dkv, 1, D + 2, kv_row, kv_batch, dout, D,
                     lens_on ? dl : NULL, group};
    tsr_status st = tsr_k_attention_kv(q, &io, B, Sq, Sk, H, dh, 0.125f, causal, &err);
    float *got = down(dout, (size_t)B * Sq * D);
    char name[128];
    snprintf(name, sizeof name,
             "attention_kv%s B%d Sq%d Sk%d H%d dh%d causal=%d shared=%d lens=%d group=%d",
             ctx->own_gemm && Sk <= TSR_ATT_MAX_S ? " (CPU, two passes)" : " (online softmax)", B,
             Sq, Sk, H, dh, causal, shared, lens_on, group);
    if (st != TSR_OK)
        check(0, "%s: %s", name, err.msg);
    else
        compare(name, got, ref, (size_t)B * Sq * D, 1e-5, 1e-4);
    mems_free((cl_mem[]){dq, dkv, dl, dout}, 4);
    free(qh), free(kv), free(ref), free(got), free(lens);
}

static void test_attention_kv(int B, int Sq, int Sk, int H, int dh, int causal, int shared,
                              int lens_on)
{
    test_attention_kv_g(B, Sq, Sk, H, dh, causal, shared, lens_on, 1);
}

/* The decoder layer run token by token (and in chunks) through its KV cache
 * against a C reference over the whole causal sequence. */
enum { DW_LN1G, DW_LN1B, DW_QKV, DW_QKVB, DW_O, DW_OB, DW_LNXG, DW_LNXB, DW_XQ, DW_XQB, DW_XKV,
       DW_XKVB, DW_XO, DW_XOB, DW_LN2G, DW_LN2B, DW_FC1, DW_FC1B, DW_FC2, DW_FC2B, DW_N };

static void ref_decoder(const tsr_dec_cfg *c, float *const *w, float *x, int B, int T,
                        const float *enc, int Bx, int Se)
{
    int D = c->dim, F = c->ffn, H = c->heads, dh = D / H, R = B * T;
    int Dx = c->xdim > 0 ? c->xdim : D;
    float scale = 1.0f / sqrtf((float)dh);
    float *h = malloc(sizeof(float) * R * D), *qkv = malloc(sizeof(float) * R * 3 * D);
    float *att = malloc(sizeof(float) * R * D), *f = malloc(sizeof(float) * R * F);
    float *xkv = malloc(sizeof(float) * (Bx * Se + 1) * 2 * D);
    const float *in;
    for (int sub = 0; sub < 3; sub++) {
        int g = sub == 0 ? DW_LN1G : sub == 1 ? DW_LNXG : DW_LN2G;
        if ((sub == 1 && (Se == 0 || c->no_cross)) || (sub == 0 && c->no_self))
            continue;
        if (c->post_ln) {
            in = x;
        } else {
            ref_layernorm(x, h, w[g], w[g + 1], R, D, c->eps);
            in = h;
        }
        float *out = malloc(sizeof(float) * R * D);
        if (sub == 0) {
            ref_linear(in, R, D, w[DW_QKV], w[DW_QKVB], 3 * D, qkv, 0);
            for (int b = 0; b < B; b++) /* keys/values of sequence b: rows of qkv */
                ref_attention_kv(qkv + (size_t)b * T * 3 * D, 0, 3 * D, qkv + (size_t)b * T * 3 * D,
                                 D, 2 * D, 3 * D, 0, att + (size_t)b * T * D, D, 1, T, T, H, dh,
                                 scale, 1);
            ref_linear(att, R, D, w[DW_O], w[DW_OB], D, out, 0);
        } else if (sub == 1) {
            ref_linear(in, R, D, w[DW_XQ], w[DW_XQB], D, qkv, 0);
            ref_linear(enc, Bx * Se, Dx, w[DW_XKV], w[DW_XKVB], 2 * D, xkv, 0);
            ref_attention_kv(qkv, 0, D, xkv, 0, D, 2 * D, Bx == 1 ? 0 : Se * 2 * D, att, D, B, T,
                             Se, H, dh, scale, 0);
            ref_linear(att, R, D, w[DW_XO], w[DW_XOB], D, out, 0);
        } else {
            ref_linear(in, R, D, w[DW_FC1], w[DW_FC1B], F, f, c->act);
            ref_linear(f, R, F, w[DW_FC2], w[DW_FC2B], D, out, 0);
        }
        for (int i = 0; i < R * D; i++)
            x[i] += out[i];
        if (c->post_ln)
            ref_layernorm(x, x, w[g], w[g + 1], R, D, c->eps);
        free(out);
    }
    free(h), free(qkv), free(att), free(f), free(xkv);
}

/* kind 1: no self-attention (open_clip's cross-attention block); 2: no
 * cross-attention though the state has encodings (a text layer of CoCa) */
static void test_decoder_layer(int B, int T, int chunk, int D, int H, int F, int Bx, int Se,
                               int post_ln, int Dx, int kind)
{
    tsr_dec_cfg c = {D, H, F, 1e-5f, TSR_ACT_GELU, post_ln, Dx, kind == 1, kind == 2};
    if (!Dx)
        Dx = D; /* cross-attention over inputs as wide as the decoder */
    int rows[DW_N] = {0}, cols[DW_N] = {0};
    size_t sizes[DW_N];
    rows[DW_QKV] = 3 * D, rows[DW_O] = D, rows[DW_XQ] = D, rows[DW_XKV] = 2 * D, rows[DW_XO] = D;
    rows[DW_FC1] = F, rows[DW_FC2] = D;
    for (int i = 0; i < DW_N; i++) {
        cols[i] = i == DW_FC2 ? F : i == DW_XKV ? Dx : D;
        int vec = i == DW_QKVB ? 3 * D : i == DW_XKVB ? 2 * D : i == DW_FC1B ? F : D;
        sizes[i] = rows[i] ? (size_t)rows[i] * cols[i] : (size_t)vec;
    }
    float *hw[DW_N];
    cl_mem dw[DW_N];
    for (int i = 0; i < DW_N; i++) {
        int ln = i == DW_LN1G || i == DW_LNXG || i == DW_LN2G;
        hw[i] = rand_vec(sizes[i], rows[i] ? 1.0f / sqrtf((float)cols[i]) : 0.3f);
        if (ln)
            for (size_t k = 0; k < sizes[i]; k++)
                hw[i][k] += 1.0f;
        dw[i] = rows[i] ? tsr_linear_weight_upload(q, hw[i], rows[i], cols[i], &err)
                        : up(hw[i], sizeof(float) * sizes[i]);
    }
    tsr_dec_weights w = {0};
    memcpy(&w, dw, sizeof dw); /* the layer's fields in order; no lnkv */
    size_t n = (size_t)B * T * D;
    float *x = rand_vec(n, 1.0f), *enc = rand_vec((size_t)Bx * Se * Dx + 1, 1.0f);
    float *ref = malloc(sizeof(float) * n);
    memcpy(ref, x, sizeof(float) * n);
    ref_decoder(&c, hw, ref, B, T, enc, Bx, Se);
    tsr_dec_state st = {0};
    tsr_enc_scratch s = {0};
    cl_mem denc = up(enc, sizeof(float) * ((size_t)Bx * Se * Dx + 1));
    tsr_enc_cfg ec = tsr_dec_enc_cfg(&c);
    tsr_arena sa, da;
    tsr_status rc = scratch_for(&ec, B * chunk, &sa, &s);
    tsr_arena_init(&da, ctx);
    TSR_TRY(rc, tsr_dec_state_plan(&c, B, T + 2, Bx, Se, &da, &st, &err));
    TSR_TRY(rc, tsr_arena_commit(&da, &err));
    if (rc == TSR_OK && Se > 0)
        rc = tsr_dec_cross_kv(q, &c, &w, &st, denc, st.Bx, &err);
    float *got = malloc(sizeof(float) * n), *step = malloc(sizeof(float) * n);
    cl_mem dx = tsr_buf_alloc(ctx, sizeof(float) * B * chunk * D, &err);
    for (int t = 0; t < T && rc == TSR_OK; t += chunk) {
        int nq = T - t < chunk ? T - t : chunk;
        for (int b = 0; b < B; b++)
            memcpy(step + (size_t)b * nq * D, x + ((size_t)b * T + t) * D, sizeof(float) * nq * D);
        rc = tsr_buf_write(q, dx, step, sizeof(float) * B * nq * D, &err);
        if (rc == TSR_OK)
            rc = tsr_dec_layer(q, &c, &w, &st, &s, dx, B, nq, t, &err);
        if (rc == TSR_OK)
            rc = tsr_buf_read(q, dx, step, sizeof(float) * B * nq * D, &err);
        for (int b = 0; b < B; b++)
            memcpy(got + ((size_t)b * T + t) * D, step + (size_t)b * nq * D, sizeof(float) * nq * D);
    }
    char name[160];
    snprintf(name, sizeof name,
             "decoder layer (%s) B%d T%d chunk%d D%d H%d F%d Bx%d Se%d post_ln=%d Dx%d%s",
             ctx->own_gemm ? "CPU kernels" : "CLBlast", B, T, chunk, D, H, F, Bx, Se, post_ln, Dx,
             kind == 1 ? " no self-attention" : kind == 2 ? " no cross-attention" : "");
    if (rc != TSR_OK)
        check(0, "%s: %s", name, err.msg);
    else
        compare(name, got, ref, n, 1e-4, 1e-4);
    /* beam reordering: sequence order reversed, then one more token agrees */
    if (rc == TSR_OK && B > 1 && T + 1 <= st.cap) {
        int *src = malloc(sizeof(int) * B);
        for (int b = 0; b < B; b++)
            src[b] = B - 1 - b;
        cl_mem tmp = tsr_buf_alloc(ctx, (size_t)B * st.cap * 2 * D * sizeof(float), &err);
        rc = tsr_dec_state_reorder(q, &st, &tmp, src, B, T, D, &err); /* only T positions */
        /* the reference: the reversed batch with one more token each */
        float *x2 = rand_vec((size_t)B * D, 1.0f);
        float *full = malloc(sizeof(float) * B * (T + 1) * D);
        for (int b = 0; b < B; b++) {
            memcpy(full + (size_t)b * (T + 1) * D, x + (size_t)src[b] * T * D, sizeof(float) * T * D);
            memcpy(full + ((size_t)b * (T + 1) + T) * D, x2 + (size_t)b * D, sizeof(float) * D);
        }
        float *enc2 = enc;
        float *encr = NULL;
        if (Bx > 1) { /* cross inputs follow their sequences */
            encr = malloc(sizeof(float) * Bx * Se * Dx);
            for (int b = 0; b < B; b++)
                memcpy(encr + (size_t)b * Se * Dx, enc + (size_t)src[b] * Se * Dx, sizeof(float) * Se * Dx);
            enc2 = encr;
            /* the device's cross keys and values are per sequence too: reorder them */
            float *hx = malloc(sizeof(float) * Bx * Se * Dx);
            memcpy(hx, encr, sizeof(float) * Bx * Se * Dx);
            tsr_buf_write(q, denc, hx, sizeof(float) * Bx * Se * Dx, &err);
            rc = tsr_dec_cross_kv(q, &c, &w, &st, denc, st.Bx, &err);
            free(hx);
        }
        ref_decoder(&c, hw, full, B, T + 1, enc2, Bx, Se);
        if (rc == TSR_OK)
            rc = tsr_buf_write(q, dx, x2, sizeof(float) * B * D, &err);
        if (rc == TSR_OK)
            rc = tsr_dec_layer(q, &c, &w, &st, &s, dx, B, 1, T, &err);
        float *g2 = down(dx, (size_t)B * D), *r2 = malloc(sizeof(float) * B * D);
        for (int b = 0; b < B; b++)
            memcpy(r2 + (size_t)b * D, full + ((size_t)b * (T + 1) + T) * D, sizeof(float) * D);
        snprintf(name, sizeof name, "decoder KV cache reordered for beams, B%d T%d", B, T);
        if (rc != TSR_OK)
            check(0, "%s: %s", name, err.msg);
        else
            compare(name, g2, r2, (size_t)B * D, 1e-4, 1e-4);
        tsr_buf_free(tmp);
        free(src), free(x2), free(full), free(encr), free(g2), free(r2);
    }
    tsr_arena_release(&da);
    tsr_arena_release(&sa);
    mems_free(dw, DW_N);
    mems_free((cl_mem[]){denc, dx}, 2);
    for (int i = 0; i < DW_N; i++)
        free(hw[i]);
    free(x), free(enc), free(ref), free(got), free(step);
}

/* ---- top k ---- */

typedef struct {
    float v;
    int i;
} scored;

/* Best first: NaN after everything, equal scores (-0.0 == +0.0) by lower index. */
static int scored_cmp(const void *pa, const void *pb)
{
    const scored *a = pa, *b = pb;
    int na = isnan(a->v), nb = isnan(b->v);
    if (na != nb)
        return na - nb;
    if (!na && a->v != b->v)
        return a->v > b->v ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

/* Sorts each row whole and keeps the first k. */
static void ref_topk(const float *s, int Q, int N, int k, int *idx, float *val)
{
    scored *t = malloc(sizeof *t * N);
    for (int r = 0; r < Q; r++) {
        for (int j = 0; j < N; j++)
            t[j] = (scored){s[(size_t)r * N + j], j};
        qsort(t, (size_t)N, sizeof *t, scored_cmp);
        for (int j = 0; j < k; j++) {
            idx[(size_t)r * k + j] = t[j].i;
            val[(size_t)r * k + j] = t[j].v;
        }
    }
    free(t);
}

enum { TOPK_RANDOM, TOPK_TIES, TOPK_RISING, TOPK_FLAT };
static const char *topk_modes[] = {"random", "16 levels, NaN, -0, +-inf", "rising", "flat rows"};

static float bits_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Scores with many ties and every special value: NaNs with payloads and
 * signs, -INFINITY, +INFINITY, -0.0 next to +0.0. Rising scores make every
 * one a new best (the most heap work); flat rows are all equal, all NaN or
 * all -INFINITY. */
static float *topk_scores(int Q, int N, int mode)
{
    size_t n = (size_t)Q * N;
    float *s = rand_vec(n, 1.0f);
    for (size_t t = 0; t < n; t++) {
        int r = (int)(t / N), j = (int)(t % N);
        if (mode == TOPK_TIES) {
            s[t] = floorf(s[t] * 8.0f) / 8.0f;
            if (j % 97 == 3)
                s[t] = bits_float(j % 2 ? 0x7fc01234u : 0xffc00000u);
            else if (j % 89 == 5)
                s[t] = -INFINITY;
            else if (j % 101 == 7)
                s[t] = INFINITY;
            else if (j % 13 == 1)
                s[t] = -0.0f;
            else if (j % 13 == 2)
                s[t] = 0.0f;
        } else if (mode == TOPK_RISING) {
            s[t] = (float)j - (float)N * 0.5f;
        } else if (mode == TOPK_FLAT) {
            s[t] = r % 3 == 0 ? 0.25f : r % 3 == 1 ? NAN : -INFINITY;
        }
    }
    return s;
}

/* tsr_k_topk against sorting, on the device's own split of the rows and on
 * two others: the GPU row of the table (strided chunks) and many contiguous
 * chunks (merges over several passes). Indices exactly, values bit for bit. */
static void test_topk(int Q, int N, int k, int mode)
{
    size_t n = (size_t)Q * N, nk = (size_t)Q * k;
    float *s = topk_scores(Q, N, mode), *rval = malloc(sizeof(float) * nk);
    float *val = malloc(sizeof(float) * nk);
    int *ridx = malloc(sizeof(int) * nk), *idx = malloc(sizeof(int) * nk);
    ref_topk(s, Q, N, k, ridx, rval);
    cl_mem ds = up(s, sizeof(float) * n);
    tsr_topk_cfg own = ctx->topk;
    const tsr_topk_cfg splits[3] = {own, {256, 4, 64, 1}, {512, 0, 1, 0}};
    const char *names[3] = {"own split", "GPU split", "many chunks"};
    for (int v = 0; v < 3; v++) {
        ctx->topk = splits[v];
        tsr_arena a;
        cl_mem scratch = NULL;
        tsr_arena_init(&a, ctx);
        tsr_status st = tsr_topk_plan(&a, &scratch, Q, N, k, &err);
        TSR_TRY(st, tsr_arena_commit(&a, &err));
        memset(idx, 0xff, sizeof(int) * nk);
        memset(val, 0, sizeof(float) * nk);
        tsr_counters c0 = tsr_queue_counters(q);
        TSR_TRY(st, tsr_k_topk(q, ds, Q, N, k, scratch, idx, val, &err));
        tsr_counters d = tsr_counters_diff(tsr_queue_counters(q), c0);
        size_t bad_idx = 0, bad_val = 0;
        for (size_t i = 0; i < nk; i++) {
            bad_idx += idx[i] != ridx[i];
            bad_val += memcmp(&val[i], &rval[i], sizeof(float)) != 0;
        }
        check(st == TSR_OK && !bad_idx && !bad_val && d.syncs == 1,
              "topk Q%d N%d k%d %s, %s: %zu index and %zu value mismatches, %llu launches, "
              "%llu host syncs, %zu bytes of scratch %s",
              Q, N, k, topk_modes[mode], names[v], bad_idx, bad_val,
              (unsigned long long)d.launches, (unsigned long long)d.syncs, a.total,
              st ? err.msg : "");
        if (bad_idx || bad_val) {
            printf("     got:");
            for (size_t i = 0; i < nk && i < 6; i++)
                printf(" %d:%g", idx[i], val[i]);
            printf("\n     ref:");
            for (size_t i = 0; i < nk && i < 6; i++)
                printf(" %d:%g", ridx[i], rval[i]);
            printf("\n");
        }
        tsr_arena_release(&a);
    }
    ctx->topk = own;
    tsr_buf_free(ds);
    free(s), free(rval), free(val), free(ridx), free(idx);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* How long a search's selection takes on this device (read-back included),
 * printed only; rows 0 and Q-1 are checked. */
static void time_topk(int Q, int N, int k)
{
    size_t n = (size_t)Q * N, nk = (size_t)Q * k;
    float *s = rand_vec(n, 1.0f), *val = malloc(sizeof(float) * nk);
    float *rval = malloc(sizeof(float) * k);
    int *idx = malloc(sizeof(int) * nk), *ridx = malloc(sizeof(int) * k);
    cl_mem ds = up(s, sizeof(float) * n), scratch = NULL;
    tsr_arena a;
    tsr_arena_init(&a, ctx);
    tsr_status st = tsr_topk_plan(&a, &scratch, Q, N, k, &err);
    TSR_TRY(st, tsr_arena_commit(&a, &err));
    TSR_TRY(st, tsr_k_topk(q, ds, Q, N, k, scratch, idx, val, &err)); /* warm-up */
    double best = 1e30;
    tsr_counters c0 = tsr_queue_counters(q);
    for (int rep = 0; rep < 5 && st == TSR_OK; rep++) {
        double t0 = now_ms();
        st = tsr_k_topk(q, ds, Q, N, k, scratch, idx, val, &err);
        double t = now_ms() - t0;
        best = t < best ? t : best;
    }
    tsr_counters d = tsr_counters_diff(tsr_queue_counters(q), c0);
    int bad = 0;
    for (int r = 0; r < Q && st == TSR_OK; r += Q > 1 ? Q - 1 : 1) {
        ref_topk(s + (size_t)r * N, 1, N, k, ridx, rval);
        for (int j = 0; j < k; j++)
            bad += idx[(size_t)r * k + j] != ridx[j] || val[(size_t)r * k + j] != rval[j];
    }
    printf("time: topk Q%d N%d k%d: %.2f ms (best of 5, %llu launches per call) %s\n", Q, N, k,
           best, (unsigned long long)d.launches / 5, st ? err.msg : "");
    check(st == TSR_OK && !bad, "topk Q%d N%d k%d timed: rows checked, %d mismatches", Q, N, k,
          bad);
    tsr_arena_release(&a);
    tsr_buf_free(ds);
    free(s), free(val), free(rval), free(idx), free(ridx);
}

/* Bad shapes and buffers are errors that launch nothing. */
static void test_topk_bad_args(void)
{
    float s[8] = {3, 1, 4, 1, 5, 9, 2, 6};
    cl_mem ds = up(s, sizeof s), scratch = NULL, small = NULL;
    tsr_arena a;
    tsr_arena_init(&a, ctx);
    tsr_status st = tsr_topk_plan(&a, &scratch, 1, 8, 4, &err);
    TSR_TRY(st, tsr_topk_plan(&a, &small, 1, 8, 1, &err));
    TSR_TRY(st, tsr_arena_commit(&a, &err));
    int idx[8];
    float val[8];
    struct {
        int Q, N, k;
        cl_mem scratch;
        int *idx;
        const char *what;
    } bad[] = {
        {1, 8, 9, scratch, idx, "k > N"},
        {1, 8, 0, scratch, idx, "k = 0"},
        {1, 8, -1, scratch, idx, "k < 0"},
        {1, 2000, TSR_TOPK_MAX + 1, scratch, idx, "k > TSR_TOPK_MAX"},
        {0, 8, 1, scratch, idx, "Q = 0"},
        {1, 0, 1, scratch, idx, "N = 0"},
        {1, -3, 1, scratch, idx, "N < 0"},
        {2, 8, 4, scratch, idx, "scores buffer too small"},
        {1, 8, 4, small, idx, "scratch too small"},
        {1, 8, 4, scratch, NULL, "NULL output"},
    };
    int n = (int)(sizeof bad / sizeof bad[0]), ok = st == TSR_OK;
    tsr_counters c0 = tsr_queue_counters(q);
    for (int i = 0; i < n && ok; i++) {
        err = (tsr_error){0};
        tsr_status r = tsr_k_topk(q, ds, bad[i].Q, bad[i].N, bad[i].k, bad[i].scratch,
                                  bad[i].idx, val, &err);
        printf("     %s: %s\n", bad[i].what, err.msg);
        ok = r != TSR_OK && err.msg[0];
    }
    tsr_counters d = tsr_counters_diff(tsr_queue_counters(q), c0);
    ok = ok && tsr_topk_scratch_bytes(ctx, 1, 8, 9) == 0 && tsr_topk_scratch_bytes(ctx, 1, 8, 0) == 0;
    cl_mem none = NULL;
    ok = ok && tsr_topk_plan(&a, &none, 1, 8, 9, &err) != TSR_OK && a.n == 2;
    check(ok && d.launches == 0 && d.syncs == 0,
          "topk: %d bad arguments are errors that launch nothing (%llu launches)", n,
          (unsigned long long)d.launches);
    /* the 8 scores themselves, with err = NULL */
    st = tsr_k_topk(q, ds, 1, 8, 4, scratch, idx, val, NULL);
    check(st == TSR_OK && idx[0] == 5 && idx[1] == 7 && idx[2] == 4 && idx[3] == 2 && val[0] == 9,
          "topk of 8 scores: %d %d %d %d", idx[0], idx[1], idx[2], idx[3]);
    tsr_arena_release(&a);
    tsr_buf_free(ds);
}

/* An arena: every reserved slot gets its own aligned, non-overlapping
 * sub-buffer; a slot holds what is written to it; release clears the slots and
 * the device memory returns to where it was. */
static void test_arena(void)
{
    size_t before, peak;
    tsr_ctx_device_memory(ctx, &before, &peak);
    cl_mem slots[5] = {0};
    size_t sizes[5] = {1, 4099, 0, 64, 100000};
    tsr_arena a;
    tsr_arena_init(&a, ctx);
    for (int i = 0; i < 5; i++)
        tsr_arena_reserve(&a, &slots[i], sizes[i]);
    tsr_status st = tsr_arena_commit(&a, &err);
    check(st == TSR_OK, "arena of 5 slots committed: %zu bytes in %d chunk(s) %s", a.total,
          a.nchunks, st ? err.msg : "");
    int ok = st == TSR_OK;
    float *data[5];
    for (int i = 0; i < 5; i++)
        data[i] = rand_vec(sizes[i] / sizeof(float), 1.0f);
    for (int i = 0; i < 5 && ok; i++)
        if (sizes[i] >= sizeof(float))
            ok = tsr_buf_write(q, slots[i], data[i], sizes[i] / sizeof(float) * sizeof(float),
                               &err) == TSR_OK;
    for (int i = 0; i < 5 && ok; i++) { /* no slot overwrote another */
        size_t n = sizes[i] / sizeof(float);
        float *got = down(slots[i], n);
        ok = memcmp(got, data[i], n * sizeof(float)) == 0 && a.items[i].off % ctx->align == 0 &&
             (i == 0 || a.items[i].chunk != a.items[i - 1].chunk ||
              a.items[i].off >= a.items[i - 1].off + a.items[i - 1].bytes);
        free(got);
    }
    for (int i = 0; i < 5; i++)
        free(data[i]);
    check(ok, "arena slots are aligned to %zu bytes and do not overlap", ctx->align);
    tsr_arena_release(&a);
    int cleared = 1;
    for (int i = 0; i < 5; i++)
        cleared = cleared && slots[i] == NULL;
    tsr_queue_finish(q, NULL);
    size_t after = device_memory_settled(ctx, before);
    check(cleared && after == before, "arena released: slots cleared, device memory %zu -> %zu",
          before, after);
}

int main(void)
{
    ctx = ctx_or_skip();
    new_queue();
    test_arena();
    int dims[] = {1, 5, 63, 64, 65, 130, 769};
    for (int i = 0; i < 7; i++)
        test_layernorm(i % 2 ? 3 : 1, dims[i]);
    test_layernorm(1000, 77);
    test_layernorm(2, 3001);
    test_l2norm(1, 1);
    test_l2norm(7, 65);
    test_l2norm(3, 2049);
    test_softmax(1, 1, 1, 0, 0);
    test_softmax(2, 3, 17, 1, 0);
    test_softmax(3, 5, 50, 0, 1);
    test_softmax(4, 2, 77, 1, 1);
    test_softmax(1, 1, 300, 0, 0);
    for (int act = 0; act < 6; act++)
        test_bias_act(7, 13, act, act != 3);
    test_bias_act(1, 1, 2, 1);
    test_bias_act(513, 1031, 1, 1);
    test_add(1);
    test_add(1000003);
    test_embed_gather(1, 1, 1, 1, 0, 0);
    test_embed_gather(3, 11, 37, 101, 0, 1);
    test_embed_gather(9, 77, 64, 1000, 0, 0);
    test_embed_gather(5, 1, 48, 300, 17, 0); /* one decoding step at position 17 */
    test_patches(1, 3, 7, 7, 5, 1);
    test_patches(2, 3, 30, 7, 12, 1);
    test_patches(3, 3, 32, 8, 48, 1);
    test_patches(2, 3, 21, 7, 13, 0);
    test_im2col1d(1, 1, 1, 0);
    test_im2col1d(80, 3000, 1, 0); /* Whisper's conv1 input */
    test_im2col1d(37, 61, 2, 1);   /* conv2: stride 2 over (T, D) rows */
    test_im2col1d(5, 8, 2, 1);
    test_gemm(1, 1, 1);
    test_gemm(3, 5, 7);
    test_gemm(50, 97, 33);
    test_gemm(129, 257, 65);
    test_gemm(400, 768, 768);
    test_linear(1, 1, 1, TSR_ACT_NONE, 0);
    test_linear(5, 31, 7, TSR_ACT_GELU, 1);      /* smaller than one tile */
    test_linear(6, 32, 16, TSR_ACT_QUICK_GELU, 1); /* exactly one tile */
    test_linear(13, 70, 33, TSR_ACT_GELU_TANH, 1); /* full tiles plus edges */
    test_linear(50, 768, 768, TSR_ACT_NONE, 1);
    test_linear(301, 1031, 129, TSR_ACT_QUICK_GELU, 0);
    test_linear(2, 64, 3, TSR_ACT_NONE, 1);          /* exactly one 64-column panel */
    test_linear(7, 144, 50, TSR_ACT_GELU, 1);        /* a narrow panel of one 16-wide vector */
    test_linear(19, 203, 31, TSR_ACT_RELU, 1);       /* narrow panel: 11 columns, scalar only */
    test_half_convert();
    test_linear16(1, 1, 1, TSR_ACT_NONE, 0);
    test_linear16(13, 70, 33, TSR_ACT_GELU, 1);    /* full tiles plus edges */
    test_linear16(7, 144, 50, TSR_ACT_NONE, 1);    /* a narrow panel of one 16-wide vector */
    test_linear16(19, 203, 31, TSR_ACT_RELU, 0);   /* narrow panel: scalar rest */
    test_linear16(50, 768, 257, TSR_ACT_QUICK_GELU, 1);
    test_gemm_strips();
    test_encoder_layer(1, 1, 4, 1, 8, TSR_ACT_QUICK_GELU, 0, 0, 0);
    test_encoder_layer(2, 17, 60, 5, 100, TSR_ACT_GELU, 0, 0, 0);
    test_encoder_layer(3, 9, 32, 4, 64, TSR_ACT_QUICK_GELU, 1, 1, 0);
    test_encoder_layer(2, 50, 64, 8, 256, TSR_ACT_GELU_TANH, 1, 0, 0);
    test_encoder_layer(2, 77, 128, 2, 64, TSR_ACT_QUICK_GELU, 1, 1, 0); /* dh 64: vector path */
    test_encoder_layer(1, 197, 96, 3, 32, TSR_ACT_GELU, 0, 0, 0);     /* dh 32, ViT-B/16 length */
    test_encoder_layer(3, 13, 48, 12, 72, TSR_ACT_GELU, 0, 1, 1);     /* BERT: post-layernorm */
    test_encoder_layer(1, 1, 8, 2, 16, TSR_ACT_GELU, 0, 0, 1);
    test_encoder_layer(1, 1100, 32, 2, 40, TSR_ACT_GELU, 0, 0, 0); /* longer than 1024 */
    test_encoder_layer(1, 1500, 64, 1, 32, TSR_ACT_GELU, 0, 0, 0); /* Whisper's length */
    test_encoder_layer(2, 300, 40, 2, 50, TSR_ACT_QUICK_GELU, 1, 0, 0); /* causal, two sequences */
    test_encoder_layer(2, 250, 64, 2, 50, TSR_ACT_GELU, 1, 0, 0); /* the same, flash */
    test_encoder_layer(3, 129, 96, 2, 40, TSR_ACT_GELU, 0, 0, 1); /* dh 48: a 16-wide rest */
    test_encoder_layer(3, 131, 60, 3, 70, TSR_ACT_GELU, 0, 0, 1); /* dh 20: a narrow V panel */
    test_encoder_layer(2, 140, 48, 2, 64, TSR_ACT_GELU, 0, 1, 0); /* padded: the fused kernel */
    test_attention_kv(1, 1, 1, 1, 1, 0, 0, 0);
    test_attention_kv(2, 3, 7, 3, 20, 1, 0, 0);   /* dh not a multiple of 16 */
    test_attention_kv(3, 1, 33, 6, 64, 1, 1, 0);  /* one decoding step, shared keys */
    test_attention_kv(1, 5, 5, 2, 128, 1, 0, 0);
    test_attention_kv(2, 4, 1500, 6, 64, 0, 1, 0); /* Whisper cross-attention length */
    test_attention_kv(4, 13, 13, 3, 40, 0, 0, 1);  /* BERT: padded keys masked */
    test_attention_kv(3, 9, 9, 2, 17, 1, 0, 1);    /* causal and masked */
    test_attention_kv(2, 3, 1600, 2, 40, 1, 0, 1); /* past the CPU kernel's private scores */
    test_attention_kv_g(6, 1, 29, 3, 24, 0, 0, 0, 3);  /* two images' three beams, a step */
    test_attention_kv_g(8, 2, 577, 2, 64, 0, 0, 0, 4); /* BLIP's 577 image tokens */
    for (int own = 0; own < 2; own++) {
        int saved = ctx->own_gemm;
        ctx->own_gemm = own;
        test_decoder_layer(1, 1, 1, 8, 2, 16, 1, 1, 0, 0, 0);
        test_decoder_layer(2, 9, 1, 48, 3, 80, 1, 13, 0, 0, 0);  /* token by token, shared audio */
        test_decoder_layer(3, 7, 3, 40, 5, 24, 3, 6, 0, 0, 0);   /* chunks, per-sequence inputs */
        test_decoder_layer(2, 6, 6, 32, 4, 64, 2, 5, 1, 0, 0);   /* post-layernorm, whole prompt */
        test_decoder_layer(2, 5, 2, 32, 2, 64, 1, 0, 0, 0, 0);   /* no cross-attention */
        test_decoder_layer(2, 4, 2, 24, 3, 40, 2, 7, 1, 37, 0);  /* image tokens 37 wide (BLIP-large) */
        test_decoder_layer(2, 6, 2, 40, 5, 24, 2, 6, 0, 0, 1);   /* CoCa's cross-attention block */
        test_decoder_layer(3, 5, 1, 30, 3, 90, 1, 7, 0, 0, 2);   /* CoCa's text layer */
        ctx->own_gemm = saved;
    }
    test_im2col_rect(1, 1, 1, 4, 4, 4, 4);
    test_im2col_rect(3, 1, 1, 64, 64, 4, 4);   /* HTSAT's global patches, every 4th plane */
    test_im2col_rect(6, 3, 1, 64, 64, 4, 12);  /* the local crops: 4 x 12, 5 columns left over */
    test_im2col_rect(2, 1, 3, 21, 35, 7, 5);
    test_gather_pad(1, 1, 1, 1);
    test_gather_pad(3, 100, 81, 7);
    test_gather_pad(2, 256, 144, 13);
    test_window_attention(1, 1, 1, 1, 1, 0);
    test_window_attention(8, 4, 8, 2, 3, 1);   /* 64 tokens, odd head size, shifted */
    test_window_attention(6, 3, 7, 3, 8, 0);
    test_window_attention(2, 1, 16, 1, 5, 1);  /* the largest window, 256 tokens */
    test_swin_elementwise(1, 1, 1);
    test_swin_elementwise(3, 37, 13);
    test_mel2img(1, 1, 1, 1, 1);
    test_mel2img(2, 101, 16, 64, 2);  /* stretched 101 -> 128 frames */
    test_mel2img(3, 57, 9, 19, 3);
    test_mel2img(1, 40, 8, 20, 2);    /* T == r*S: no interpolation */
    test_topk_bad_args();
    test_topk(1, 1, 1, TOPK_RANDOM);
    test_topk(1, 7, 7, TOPK_TIES);   /* everything: NaNs last, -INFINITY before them */
    test_topk(3, 1000, 10, TOPK_RANDOM);
    test_topk(3, 1000, 10, TOPK_TIES);
    test_topk(6, 300, 50, TOPK_FLAT); /* all equal, all NaN, all -INFINITY */
    test_topk(2, 100003, 100, TOPK_TIES);
    test_topk(1, 1000000, 10, TOPK_RANDOM);
    test_topk(5, 4099, TSR_TOPK_MAX, TOPK_TIES);
    test_topk(2, 20000, 1000, TOPK_RISING);
    time_topk(1, 1000000, 10);
    time_topk(16, 1000000, 10);
    tsr_queue_free(q);
    tsr_ctx_free(ctx);
    return finish();
}
