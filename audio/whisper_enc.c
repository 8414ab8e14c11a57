/* The Whisper audio encoder on the compute layer. The two 1-D convolutions
 * (kernel 3, padding 1, strides 1 and 2) run as GEMMs over im2col matrices
 * built on the host. */
#include <stdlib.h>
#include <string.h>

#include "tsr_wenc.h"

tsr_status tsr_wenc_init(tsr_wenc *e, tsr_error *err)
{
    e->stack.cfg = (tsr_enc_cfg){e->cfg.dim, e->cfg.heads, e->cfg.ffn, e->cfg.eps, e->cfg.act, 0, 0};
    e->stack.n_layers = e->cfg.layers;
    return tsr_stack_alloc_layers(&e->stack, err);
}

static tsr_status reserve(tsr_ctx *ctx, tsr_wenc *e, tsr_error *err)
{
    if (e->x)
        return TSR_OK;
    size_t T = 2 * (size_t)e->cfg.n_ctx, S = (size_t)e->cfg.n_ctx, D = (size_t)e->cfg.dim;
    size_t C = (size_t)e->cfg.n_mels, f = sizeof(float);
    size_t big = T * C * 3 > S * D * 3 ? T * C * 3 : S * D * 3;
    if (!e->host)
        e->host = malloc(f * (big > T * D ? big : T * D));
    if (!e->host)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    cl_mem *const slots[4] = {&e->cols1, &e->h1, &e->cols2, &e->x};
    size_t sizes[4] = {T * C * 3 * f, T * D * f, S * D * 3 * f, S * D * f};
    return tsr_bufs_alloc(ctx, slots, sizes, 4, err);
}

/* cols (T_out, C*3): cols[t, c*3 + k] = in(c, t*stride + k - 1), zero outside;
 * in(c, s) = x[c*cs + s*ss]. */
static void im2col1d(const float *x, int C, int T_in, size_t cs, size_t ss, int stride,
                     float *cols, int T_out)
{
    for (int t = 0; t < T_out; t++) {
        float *row = cols + (size_t)t * C * 3;
        for (int c = 0; c < C; c++)
            for (int k = 0; k < 3; k++) {
                int s = t * stride + k - 1;
                row[c * 3 + k] = s >= 0 && s < T_in ? x[c * cs + (size_t)s * ss] : 0.0f;
            }
    }
}

tsr_status tsr_wenc_forward(tsr_ctx *ctx, tsr_wenc *e, const float *mel, tsr_error *err)
{
    const tsr_wenc_cfg *c = &e->cfg;
    int T = 2 * c->n_ctx, S = c->n_ctx, D = c->dim, C = c->n_mels;
    tsr_status rc = reserve(ctx, e, err);
#define TRY(call)                                                                                \
    do {                                                                                         \
        if (rc == TSR_OK)                                                                        \
            rc = (call);                                                                         \
    } while (0)
    if (rc == TSR_OK)
        im2col1d(mel, C, T, (size_t)T, 1, 1, e->host, T);
    TRY(tsr_buf_write(ctx, e->cols1, e->host, sizeof(float) * (size_t)T * C * 3, err));
    TRY(tsr_linear(ctx, e->cols1, T, C * 3, e->conv1_w, e->conv1_b, D, e->h1, c->act, err));
    TRY(tsr_buf_read(ctx, e->h1, e->host, sizeof(float) * (size_t)T * D, err));
    if (rc == TSR_OK) { /* h1 is (T, D): channel c of frame s at s*D + c */
        float *cols = malloc(sizeof(float) * (size_t)S * D * 3);
        if (!cols)
            return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
        im2col1d(e->host, D, T, 1, (size_t)D, 2, cols, S);
        rc = tsr_buf_write(ctx, e->cols2, cols, sizeof(float) * (size_t)S * D * 3, err);
        free(cols);
    }
    TRY(tsr_linear(ctx, e->cols2, S, D * 3, e->conv2_w, e->conv2_b, D, e->x, c->act, err));
    TRY(tsr_k_add(ctx, e->x, e->pos, (size_t)S * D, err));
    TRY(tsr_stack_run(ctx, &e->stack, e->x, 1, S, NULL, err));
    TRY(tsr_k_layernorm(ctx, e->x, e->x, e->ln_g, e->ln_b, S, D, c->eps, err));
#undef TRY
    return rc;
}

void tsr_wenc_free(tsr_wenc *e)
{
    cl_mem w[] = {e->conv1_w, e->conv1_b, e->conv2_w, e->conv2_b, e->pos, e->ln_g, e->ln_b,
                  e->cols1,   e->h1,      e->cols2,   e->x};
    tsr_mems_free(w, 11);
    tsr_stack_free(&e->stack);
    free(e->host);
    e->host = NULL;
    e->cols1 = e->h1 = e->cols2 = e->x = NULL;
}
