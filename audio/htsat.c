/* HTSAT (transformers' ClapAudioEncoder and ClapAudioPatchEmbed) on the
 * compute layer: see tsr_htsat.h. The host writes the features and reads
 * the embeddings; everything between is enqueued without waiting. The
 * window partitions (with the cyclic shift and the padding), their reverse
 * and the patch merging are row gathers through index tables made once per
 * plan. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tsr_htsat.h"

#define SMALL_EPS 1e-5f

#ifdef TSR_HTSAT_PROFILE /* a development build: time each part (the queue is drained) */
#include <stdio.h>
#include <time.h>
static double prof_t;
static void prof(tsr_queue *q, const char *what)
{
    tsr_queue_finish(q, NULL);
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    double now = t.tv_sec + 1e-9 * t.tv_nsec;
    if (what)
        fprintf(stderr, "htsat %-24s %8.2f ms\n", what, (now - prof_t) * 1e3);
    prof_t = now;
}
#define PROF(q, w) prof(q, w)
#else
#define PROF(q, w) ((void)0)
#endif /* nn.LayerNorm's default: patch, merging and final norms */

int tsr_htsat_shift(const tsr_htsat_cfg *c, int s, int i)
{
    return (i % 2 == 1 && c->res[s] > c->window) ? c->window / 2 : 0;
}

int tsr_htsat_padded(const tsr_htsat_cfg *c, int s)
{
    int ws = c->window;
    return (c->res[s] + ws - 1) / ws * ws;
}

static int local_width(const tsr_htsat_cfg *c) { return c->spec / (3 * c->patch); }

tsr_status tsr_htsat_check(tsr_htsat_cfg *c, const char *what, tsr_error *err)
{
    if (c->stages < 1 || c->stages > TSR_HTSAT_MAX_STAGES || c->patch < 1 || c->spec < c->patch ||
        c->spec % c->patch || c->n_mels < 1 || c->ratio < 1 || c->window < 1 ||
        c->window * c->window > TSR_WIN_MAX_N || c->frames < 1 ||
        c->frames > c->ratio * c->spec || c->in_ch < 1 || c->proj_dim < 1)
        return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                             "%s: an audio tower of %d stages, spec_size %d, patch %d, window %d "
                             "(at most %d tokens), %d mel bins, %d frames is not supported",
                             what, c->stages, c->spec, c->patch, c->window, TSR_WIN_MAX_N,
                             c->n_mels, c->frames);
    if (c->spec / c->ratio != c->n_mels)
        return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                             "%s: spec_size %d is not a whole multiple of num_mel_bins %d", what,
                             c->spec, c->n_mels);
    if (c->fusion && (c->in_ch != 4 || local_width(c) < 1 || c->aff_inter < 1))
        return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                             "%s: the fusion branch needs 4 feature channels and a spec_size of "
                             "at least 3 patches", what);
    c->grid = c->spec / c->patch;
    for (int s = 0; s < c->stages; s++) {
        c->res[s] = c->grid >> s;
        if ((c->res[s] << s) != c->grid || c->res[s] < 1)
            return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                                 "%s: a grid of %d tokens does not halve %d times", what, c->grid,
                                 c->stages - 1);
        if (c->res[s] < c->window)
            return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                                 "%s: stage %d has %d x %d tokens, fewer than the window (%d); "
                                 "transformers cannot run this configuration either",
                                 what, s, c->res[s], c->res[s], c->window);
        if (c->depth[s] < 0 || c->depth[s] > 256 || c->heads[s] < 1 || c->dim[s] < 1 ||
            c->dim[s] % c->heads[s] || c->ffn[s] < 1 ||
            (s > 0 && c->dim[s] != 2 * c->dim[s - 1]))
            return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                                 "%s: stage %d: %d heads for a width of %d", what, s,
                                 c->heads[s], c->dim[s]);
    }
    return TSR_OK;
}

static size_t maxz(size_t a, size_t b) { return a > b ? a : b; }

tsr_status tsr_htsat_plan(tsr_queue *q, const tsr_htsat_cfg *c, int B, tsr_arena *a,
                          tsr_htsat_io *io, tsr_error *err)
{
    memset(io, 0, sizeof *io);
    io->max_b = B;
    size_t Bz = (size_t)B, S = (size_t)c->spec, G = (size_t)c->grid, p = (size_t)c->patch;
    size_t C0 = (size_t)c->dim[0], F4 = sizeof(float);
    size_t x = 0, tmp = 0, win = 0, qkv = 0, ffn = 0, mrg = 0;
    size_t cols = Bz * G * G * p * p;
    tsr_status rc = tsr_linear_plan(q, (int)(Bz * G * G), (int)C0, (int)(p * p), err);
    for (int s = 0; s < c->stages && rc == TSR_OK; s++) {
        size_t D = (size_t)c->dim[s], R = Bz * c->res[s] * c->res[s];
        size_t P = (size_t)tsr_htsat_padded(c, s), WR = Bz * P * P;
        x = maxz(x, R * D), tmp = maxz(tmp, R * D), win = maxz(win, WR * D);
        qkv = maxz(qkv, WR * 3 * D), ffn = maxz(ffn, R * c->ffn[s]);
        TSR_TRY(rc, tsr_linear_plan(q, (int)WR, (int)(3 * D), (int)D, err));
        TSR_TRY(rc, tsr_linear_plan(q, (int)WR, (int)D, (int)D, err));
        TSR_TRY(rc, tsr_linear_plan(q, (int)R, c->ffn[s], (int)D, err));
        TSR_TRY(rc, tsr_linear_plan(q, (int)R, (int)D, c->ffn[s], err));
        if (s + 1 < c->stages) {
            size_t R2 = R / 4;
            mrg = maxz(mrg, R2 * 4 * D), x = maxz(x, R2 * 2 * D);
            TSR_TRY(rc, tsr_linear_plan(q, (int)R2, (int)(2 * D), (int)(4 * D), err));
        }
    }
    int L = c->stages - 1, P = c->proj_dim, Dl = c->dim[L];
    TSR_TRY(rc, tsr_linear_plan(q, B, P, Dl, err));
    TSR_TRY(rc, tsr_linear_plan(q, B, P, P, err));
    if (rc != TSR_OK)
        return rc;
    size_t mel = Bz * c->in_ch * c->frames * c->n_mels, img = Bz * c->in_ch * S * S;
    tsr_arena_reserve(a, &io->mel, F4 * mel);
    tsr_arena_reserve(a, &io->img, F4 * img);
    if (c->fusion) {
        size_t gl = (size_t)local_width(c), lr = Bz * 3 * G * gl, I = (size_t)c->aff_inter;
        cols = maxz(cols, lr * p * 3 * p);
        tsr_arena_reserve(a, &io->lraw, F4 * lr * C0);
        tsr_arena_reserve(a, &io->aff_l, F4 * Bz * G * G * C0);
        tsr_arena_reserve(a, &io->aff_a, F4 * Bz * G * G * C0);
        tsr_arena_reserve(a, &io->loc, F4 * Bz * G * G * C0);
        tsr_arena_reserve(a, &io->la, F4 * Bz * G * G * I);
        tsr_arena_reserve(a, &io->gm, F4 * Bz * C0);
        tsr_arena_reserve(a, &io->ga, F4 * Bz * I);
        tsr_arena_reserve(a, &io->gb, F4 * Bz * C0);
        tsr_arena_reserve(a, &io->local, sizeof(cl_int) * G * G);
        TSR_TRY(rc, tsr_linear_plan(q, (int)lr, (int)C0, (int)(3 * p * p), err));
        TSR_TRY(rc, tsr_linear_plan(q, (int)(Bz * G * G), (int)I, (int)C0, err));
        TSR_TRY(rc, tsr_linear_plan(q, (int)(Bz * G * G), (int)C0, (int)I, err));
        TSR_TRY(rc, tsr_linear_plan(q, B, (int)I, (int)C0, err));
        TSR_TRY(rc, tsr_linear_plan(q, B, (int)C0, (int)I, err));
    }
    tsr_arena_reserve(a, &io->cols, F4 * cols);
    tsr_arena_reserve(a, &io->x, F4 * x);
    tsr_arena_reserve(a, &io->tmp, F4 * tmp);
    tsr_arena_reserve(a, &io->win, F4 * win);
    tsr_arena_reserve(a, &io->qkv, F4 * qkv);
    tsr_arena_reserve(a, &io->att, F4 * win);
    tsr_arena_reserve(a, &io->ffn, F4 * ffn);
    if (mrg)
        tsr_arena_reserve(a, &io->mrg, F4 * mrg);
    tsr_arena_reserve(a, &io->pooled, F4 * Bz * Dl);
    tsr_arena_reserve(a, &io->p1, F4 * Bz * P);
    tsr_arena_reserve(a, &io->out, F4 * Bz * P);
    for (int s = 0; s < c->stages; s++) {
        size_t Pd = (size_t)tsr_htsat_padded(c, s), R = (size_t)c->res[s] * c->res[s];
        int shifted = 0;
        for (int i = 0; i < c->depth[s]; i++)
            shifted |= tsr_htsat_shift(c, s, i) > 0;
        for (int k = 0; k <= shifted; k++) {
            tsr_arena_reserve(a, &io->part[s][k], sizeof(cl_int) * Pd * Pd);
            tsr_arena_reserve(a, &io->rev[s][k], sizeof(cl_int) * R);
        }
        if (shifted)
            tsr_arena_reserve(a, &io->region[s], sizeof(cl_int) * Pd * Pd);
        if (s + 1 < c->stages)
            tsr_arena_reserve(a, &io->merge[s], sizeof(cl_int) * R);
    }
    return TSR_OK;
}

/* Index tables of stage s with a cyclic shift sh: window w (row-major over
 * the padded grid Pd x Pd, ws x ws each), token t inside it, reads the
 * shifted, padded grid; reverse: each real token's window row. */
static void window_tables(int res, int Pd, int ws, int sh, int *part, int *rev, int *region)
{
    int nw = Pd / ws;
    for (int wr = 0; wr < nw; wr++)
        for (int wc = 0; wc < nw; wc++)
            for (int r = 0; r < ws; r++)
                for (int cc = 0; cc < ws; cc++) {
                    int row = ((wr * nw + wc) * ws + r) * ws + cc;
                    int ys = wr * ws + r, xs = wc * ws + cc;
                    int y = (ys + sh) % Pd, x = (xs + sh) % Pd;
                    part[row] = y < res && x < res ? y * res + x : -1;
                    if (region) { /* Swin's img_mask: three bands per axis */
                        int ry = ys < Pd - ws ? 0 : ys < Pd - sh ? 1 : 2;
                        int rx = xs < Pd - ws ? 0 : xs < Pd - sh ? 1 : 2;
                        region[row] = ry * 3 + rx;
                    }
                }
    for (int y = 0; y < res; y++)
        for (int x = 0; x < res; x++) {
            int ys = (y - sh + Pd) % Pd, xs = (x - sh + Pd) % Pd;
            int wr = ys / ws, wc = xs / ws;
            rev[y * res + x] = ((wr * nw + wc) * ws + ys % ws) * ws + xs % ws;
        }
}

tsr_status tsr_htsat_upload_tables(tsr_queue *q, const tsr_htsat_cfg *c, tsr_htsat_io *io,
                                   tsr_error *err)
{
    size_t cap = 0;
    for (int s = 0; s < c->stages; s++) {
        size_t Pd = (size_t)tsr_htsat_padded(c, s);
        cap = maxz(cap, 3 * Pd * Pd);
    }
    cap = maxz(cap, (size_t)c->grid * c->grid);
    int *t = malloc(sizeof(int) * cap);
    if (!t)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    tsr_status rc = TSR_OK;
    for (int s = 0; s < c->stages && rc == TSR_OK; s++) {
        int res = c->res[s], Pd = tsr_htsat_padded(c, s), ws = c->window;
        size_t PP = (size_t)Pd * Pd, R = (size_t)res * res;
        for (int k = 0; k < 2 && rc == TSR_OK; k++) {
            if (!io->part[s][k])
                continue;
            int sh = k ? ws / 2 : 0;
            int *part = t, *rev = t + PP, *reg = k ? t + PP + R : NULL;
            window_tables(res, Pd, ws, sh, part, rev, reg);
            TSR_TRY(rc, tsr_buf_write(q, io->part[s][k], part, sizeof(int) * PP, err));
            TSR_TRY(rc, tsr_buf_write(q, io->rev[s][k], rev, sizeof(int) * R, err));
            if (k)
                TSR_TRY(rc, tsr_buf_write(q, io->region[s], reg, sizeof(int) * PP, err));
        }
        if (rc == TSR_OK && io->merge[s]) { /* rows (y2, x2, j): x0 (0,0), x1 (1,0), x2 (0,1), x3 (1,1) */
            int r2 = res / 2;
            for (int y2 = 0; y2 < r2; y2++)
                for (int x2 = 0; x2 < r2; x2++)
                    for (int j = 0; j < 4; j++) {
                        int y = 2 * y2 + (j & 1), x = 2 * x2 + (j >> 1);
                        t[(y2 * r2 + x2) * 4 + j] = y < res && x < res ? y * res + x : -1;
                    }
            TSR_TRY(rc, tsr_buf_write(q, io->merge[s], t, sizeof(int) * R, err));
        }
    }
    if (rc == TSR_OK && io->local) { /* token (h, w') of the local crops' convolution:
                                      * crop w' / gl, column w' % gl; zeros past 3 gl */
        int G = c->grid, gl = local_width(c);
        for (int h = 0; h < G; h++)
            for (int w = 0; w < G; w++) {
                int crop = w / gl;
                t[h * G + w] = crop < 3 ? (crop * G + h) * gl + w % gl : -1;
            }
        rc = tsr_buf_write(q, io->local, t, sizeof(int) * (size_t)G * G, err);
    }
    free(t);
    return rc;
}

/* The attentional feature fusion of the global tokens io->x with the local
 * crops' tokens (both (B, G*G, C0)). */
static tsr_status fuse(tsr_queue *q, const tsr_htsat_cfg *c, const tsr_htsat_w *w,
                       tsr_htsat_io *io, int B, tsr_error *err)
{
    int S = c->spec, G = c->grid, p = c->patch, gl = local_width(c), C0 = c->dim[0];
    int I = c->aff_inter, GG = G * G, lr = B * 3 * G * gl;
    tsr_status rc = tsr_k_im2col_rect(q, io->img, io->cols, S * S, 3, S * S, 4 * S * S, B * 3, 1,
                                      S, S, p, 3 * p, G, gl, err);
    TSR_TRY(rc, tsr_linear(q, io->cols, lr, 3 * p * p, w->mel_w, w->mel_b, C0, io->lraw,
                           TSR_ACT_NONE, err));
    TSR_TRY(rc, tsr_k_gather_rows_pad(q, io->aff_l, io->lraw, io->local, B, GG, 3 * G * gl, C0,
                                      err));
    TSR_TRY(rc, tsr_k_gather_rows_pad(q, io->aff_a, io->lraw, io->local, B, GG, 3 * G * gl, C0,
                                      err));
    TSR_TRY(rc, tsr_k_add(q, io->aff_a, io->x, (size_t)B * GG * C0, err));
    /* local attention: 1x1 conv, BN, ReLU, 1x1 conv, BN over every token */
    TSR_TRY(rc, tsr_linear(q, io->aff_a, B * GG, C0, w->la1_w, w->la1_b, I, io->la, TSR_ACT_NONE,
                           err));
    TSR_TRY(rc, tsr_k_batchnorm_act(q, io->la, w->la1_bn.mean, w->la1_bn.var, w->la1_bn.g,
                                    w->la1_bn.b, 1e-5f, B * GG, I, TSR_ACT_RELU, err));
    TSR_TRY(rc, tsr_linear(q, io->la, B * GG, I, w->la2_w, w->la2_b, C0, io->loc, TSR_ACT_NONE,
                           err));
    TSR_TRY(rc, tsr_k_batchnorm_act(q, io->loc, w->la2_bn.mean, w->la2_bn.var, w->la2_bn.g,
                                    w->la2_bn.b, 1e-5f, B * GG, C0, TSR_ACT_NONE, err));
    /* global attention: the same on the mean token */
    TSR_TRY(rc, tsr_k_mean_rows(q, io->gm, io->aff_a, B, GG, C0, err));
    TSR_TRY(rc, tsr_linear(q, io->gm, B, C0, w->ga1_w, w->ga1_b, I, io->ga, TSR_ACT_NONE, err));
    TSR_TRY(rc, tsr_k_batchnorm_act(q, io->ga, w->ga1_bn.mean, w->ga1_bn.var, w->ga1_bn.g,
                                    w->ga1_bn.b, 1e-5f, B, I, TSR_ACT_RELU, err));
    TSR_TRY(rc, tsr_linear(q, io->ga, B, I, w->ga2_w, w->ga2_b, C0, io->gb, TSR_ACT_NONE, err));
    TSR_TRY(rc, tsr_k_batchnorm_act(q, io->gb, w->ga2_bn.mean, w->ga2_bn.var, w->ga2_bn.g,
                                    w->ga2_bn.b, 1e-5f, B, C0, TSR_ACT_NONE, err));
    TSR_TRY(rc, tsr_k_aff_combine(q, io->x, io->aff_l, io->loc, io->gb, B, GG, C0, err));
    return rc;
}

static tsr_status swin_block(tsr_queue *q, const tsr_htsat_cfg *c, const tsr_swin_block_w *b,
                             tsr_htsat_io *io, int B, int s, int i, tsr_error *err)
{
    int D = c->dim[s], H = c->heads[s], res = c->res[s], Pd = tsr_htsat_padded(c, s);
    int ws = c->window, R = B * res * res, WR = B * Pd * Pd, k = tsr_htsat_shift(c, s, i) > 0;
    int nW = (Pd / ws) * (Pd / ws), dh = D / H;
    PROF(q, NULL);
    tsr_status rc = tsr_k_layernorm(q, io->x, io->tmp, b->ln1_g, b->ln1_b, R, D, c->eps, err);
    TSR_TRY(rc, tsr_k_gather_rows_pad(q, io->win, io->tmp, io->part[s][k], B, Pd * Pd, res * res,
                                      D, err));
    PROF(q, "ln+partition");
    TSR_TRY(rc, tsr_linear(q, io->win, WR, D, b->qkv_w, b->qkv_b, 3 * D, io->qkv, TSR_ACT_NONE,
                           err));
    PROF(q, "qkv");
    TSR_TRY(rc, tsr_k_window_attention(q, io->qkv, io->att, b->table, k ? io->region[s] : NULL,
                                       B * nW, nW, ws, H, dh, 1.0f / sqrtf((float)dh), err));
    PROF(q, "window attention");
    TSR_TRY(rc, tsr_linear(q, io->att, WR, D, b->o_w, b->o_b, D, io->win, TSR_ACT_NONE, err));
    TSR_TRY(rc, tsr_k_gather_add_rows(q, io->x, io->win, io->rev[s][k], B, res * res, Pd * Pd, D,
                                      err));
    PROF(q, "o+reverse");
    TSR_TRY(rc, tsr_k_layernorm(q, io->x, io->tmp, b->ln2_g, b->ln2_b, R, D, c->eps, err));
    TSR_TRY(rc, tsr_linear(q, io->tmp, R, D, b->fc1_w, b->fc1_b, c->ffn[s], io->ffn, c->act,
                           err));
    PROF(q, "ln+fc1");
    TSR_TRY(rc, tsr_linear(q, io->ffn, R, c->ffn[s], b->fc2_w, b->fc2_b, D, io->tmp,
                           TSR_ACT_NONE, err));
    TSR_TRY(rc, tsr_k_add(q, io->x, io->tmp, (size_t)R * D, err));
    PROF(q, "fc2+add");
    return rc;
}

tsr_status tsr_htsat_forward(tsr_queue *q, const tsr_htsat_cfg *c, const tsr_htsat_w *w,
                             tsr_htsat_io *io, const float *feats, int B, float *out,
                             tsr_error *err)
{
    if (B < 1 || B > io->max_b)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "a batch of %d clips exceeds the planned %d",
                             B, io->max_b);
    int S = c->spec, G = c->grid, p = c->patch, C0 = c->dim[0], Cin = c->in_ch;
    size_t mel = (size_t)B * Cin * c->frames * c->n_mels;
    tsr_status rc = tsr_buf_write_async(q, io->mel, 0, feats, sizeof(float) * mel, err);
    TSR_TRY(rc, tsr_k_clap_mel2img(q, io->mel, io->img, w->mel_bn.mean, w->mel_bn.var,
                                   w->mel_bn.g, w->mel_bn.b, 1e-5f, B * Cin, c->frames, c->n_mels,
                                   c->ratio * S, S, c->ratio, err));
    /* the global patches: channel 0 of each clip */
    TSR_TRY(rc, tsr_k_im2col_rect(q, io->img, io->cols, 0, 1, 0, Cin * S * S, B, 1, S, S, p, p, G,
                                  G, err));
    TSR_TRY(rc, tsr_linear(q, io->cols, B * G * G, p * p, w->patch_w, w->patch_b, C0, io->x,
                           TSR_ACT_NONE, err));
    if (c->fusion && rc == TSR_OK)
        rc = fuse(q, c, w, io, B, err);
    if (c->patch_ln)
        TSR_TRY(rc, tsr_k_layernorm(q, io->x, io->x, w->pln_g, w->pln_b, B * G * G, C0,
                                    SMALL_EPS, err));
    for (int s = 0; s < c->stages && rc == TSR_OK; s++) {
        for (int i = 0; i < c->depth[s] && rc == TSR_OK; i++)
            rc = swin_block(q, c, &w->blocks[s][i], io, B, s, i, err);
        if (s + 1 < c->stages && rc == TSR_OK) {
            int res = c->res[s], D = c->dim[s], R2 = B * (res / 2) * (res / 2);
            rc = tsr_k_gather_rows_pad(q, io->mrg, io->x, io->merge[s], B, res * res, res * res,
                                       D, err);
            TSR_TRY(rc, tsr_k_layernorm(q, io->mrg, io->mrg, w->merge_g[s], w->merge_b[s], R2,
                                        4 * D, SMALL_EPS, err));
            TSR_TRY(rc, tsr_linear(q, io->mrg, R2, 4 * D, w->merge_w[s], NULL, 2 * D, io->x,
                                   TSR_ACT_NONE, err));
        }
    }
    int L = c->stages - 1, Dl = c->dim[L], RL = c->res[L] * c->res[L], P = c->proj_dim;
    TSR_TRY(rc, tsr_k_layernorm(q, io->x, io->x, w->fin_g, w->fin_b, B * RL, Dl, SMALL_EPS, err));
    TSR_TRY(rc, tsr_k_mean_rows(q, io->pooled, io->x, B, RL, Dl, err));
    TSR_TRY(rc, tsr_linear(q, io->pooled, B, Dl, w->p1_w, w->p1_b, P, io->p1, c->proj_act, err));
    TSR_TRY(rc, tsr_linear(q, io->p1, B, P, w->p2_w, w->p2_b, P, io->out, TSR_ACT_NONE, err));
    TSR_TRY(rc, tsr_k_l2norm(q, io->out, B, P, err));
    if (out)
        TSR_TRY(rc, tsr_buf_read(q, io->out, out, sizeof(float) * (size_t)B * P, err));
    if (rc != TSR_OK)
        tsr_queue_finish(q, NULL);
    return rc;
}
