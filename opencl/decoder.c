/* The transformer decoder layer: self-attention over a KV cache kept on the
 * device, cross-attention over keys and values computed once per input, MLP. */
#include <math.h>
#include <stdlib.h>

#include "tsr_cl_internal.h"

tsr_status tsr_dec_scratch_reserve(tsr_ctx *ctx, const tsr_dec_cfg *c, int rows,
                                   tsr_dec_scratch *s, tsr_error *err)
{
    if (rows <= s->rows)
        return TSR_OK;
    tsr_dec_scratch_free(s);
    size_t r = (size_t)rows, f = sizeof(float);
    size_t sizes[4] = {r * c->dim * f, r * 3 * c->dim * f, r * c->dim * f, r * c->ffn * f};
    cl_mem *const slots[4] = {&s->h, &s->qkv, &s->attn, &s->ffn};
    tsr_status rc = tsr_bufs_alloc(ctx, slots, sizes, 4, err);
    if (rc == TSR_OK)
        s->rows = rows;
    return rc;
}

void tsr_dec_scratch_free(tsr_dec_scratch *s)
{
    cl_mem *slots[4] = {&s->h, &s->qkv, &s->attn, &s->ffn};
    for (int i = 0; i < 4; i++) {
        tsr_buf_free(*slots[i]);
        *slots[i] = NULL;
    }
    s->rows = 0;
}

tsr_status tsr_dec_state_alloc(tsr_ctx *ctx, const tsr_dec_cfg *c, int B, int cap, int Bx,
                               int Se, tsr_dec_state *st, tsr_error *err)
{
    tsr_dec_state_free(st);
    if (Bx != 1 && Bx != B)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "cross-attention batch %d is not 1 or %d",
                             Bx, B);
    size_t row = 2 * (size_t)c->dim * sizeof(float);
    st->cache = tsr_buf_alloc(ctx, (size_t)B * cap * row, err);
    if (st->cache)
        st->xkv = tsr_buf_alloc(ctx, (size_t)Bx * (Se > 0 ? Se : 1) * row, err);
    if (!st->xkv) {
        tsr_dec_state_free(st);
        return err ? err->code : TSR_ERR_NOMEM;
    }
    st->B = B;
    st->cap = cap;
    st->Bx = Bx;
    st->Se = Se;
    return TSR_OK;
}

void tsr_dec_state_free(tsr_dec_state *st)
{
    tsr_buf_free(st->cache);
    tsr_buf_free(st->xkv);
    *st = (tsr_dec_state){0};
}

tsr_status tsr_dec_cross_kv(tsr_ctx *ctx, const tsr_dec_cfg *c, const tsr_dec_weights *w,
                            tsr_dec_state *st, cl_mem enc, tsr_error *err)
{
    return tsr_linear(ctx, enc, st->Bx * st->Se, c->dim, w->xkv_w, w->xkv_b, 2 * c->dim, st->xkv,
                      TSR_ACT_NONE, err);
}

/* The input of a sub-layer: LN(x) into h for pre-LN, x itself for post-LN. */
static cl_mem norm_in(tsr_ctx *ctx, const tsr_dec_cfg *c, cl_mem x, cl_mem h, cl_mem g, cl_mem b,
                      int R, tsr_status *rc, tsr_error *err)
{
    if (c->post_ln)
        return x;
    if (*rc == TSR_OK)
        *rc = tsr_k_layernorm(ctx, x, h, g, b, R, c->dim, c->eps, err);
    return h;
}

tsr_status tsr_dec_layer(tsr_ctx *ctx, const tsr_dec_cfg *c, const tsr_dec_weights *w,
                         tsr_dec_state *st, tsr_dec_scratch *s, cl_mem x, int B, int Sq,
                         int past, tsr_error *err)
{
    int D = c->dim, H = c->heads, dh = D / H, R = B * Sq;
    float scale = 1.0f / sqrtf((float)dh);
    if (B != st->B)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "batch %d does not match the state's %d",
                             B, st->B);
    tsr_status rc = tsr_dec_scratch_reserve(ctx, c, R, s, err);
    size_t n = (size_t)R * D;
    /* pre-LN reads LN(x) into h; post-LN reads x itself and normalises after the residual */
#define TRY(call)                                                                                \
    do {                                                                                         \
        if (rc == TSR_OK)                                                                        \
            rc = (call);                                                                         \
    } while (0)
#define NORM_IN(g, b) norm_in(ctx, c, x, s->h, g, b, R, &rc, err)
#define RESIDUAL(g, b)                                                                           \
    do {                                                                                         \
        TRY(tsr_k_add(ctx, x, s->h, n, err));                                                    \
        if (c->post_ln)                                                                          \
            TRY(tsr_k_layernorm(ctx, x, x, g, b, R, D, c->eps, err));                            \
    } while (0)
    /* self-attention */
    cl_mem in = NORM_IN(w->ln1_g, w->ln1_b);
    TRY(tsr_linear(ctx, in, R, D, w->qkv_w, w->qkv_b, 3 * D, s->qkv, TSR_ACT_NONE, err));
    TRY(tsr_k_kv_append(ctx, s->qkv, st->cache, B, Sq, D, st->cap, past, err));
    tsr_att_io self = {s->qkv, 0, 3 * D, st->cache, 0, D, 2 * D, st->cap * 2 * D, s->attn, D};
    TRY(tsr_k_attention_kv(ctx, &self, B, Sq, past + Sq, H, dh, scale, 1, err));
    TRY(tsr_linear(ctx, s->attn, R, D, w->o_w, w->o_b, D, s->h, TSR_ACT_NONE, err));
    RESIDUAL(w->ln1_g, w->ln1_b);
    /* cross-attention */
    if (st->Se > 0) {
        in = NORM_IN(w->lnx_g, w->lnx_b);
        TRY(tsr_linear(ctx, in, R, D, w->xq_w, w->xq_b, D, s->qkv, TSR_ACT_NONE, err));
        tsr_att_io cross = {s->qkv, 0, D, st->xkv, 0, D, 2 * D,
                            st->Bx == 1 ? 0 : st->Se * 2 * D, s->attn, D};
        TRY(tsr_k_attention_kv(ctx, &cross, B, Sq, st->Se, H, dh, scale, 0, err));
        TRY(tsr_linear(ctx, s->attn, R, D, w->xo_w, w->xo_b, D, s->h, TSR_ACT_NONE, err));
        RESIDUAL(w->lnx_g, w->lnx_b);
    }
    /* MLP */
    in = NORM_IN(w->ln2_g, w->ln2_b);
    TRY(tsr_linear(ctx, in, R, D, w->fc1_w, w->fc1_b, c->ffn, s->ffn, c->act, err));
    TRY(tsr_linear(ctx, s->ffn, R, c->ffn, w->fc2_w, w->fc2_b, D, s->h, TSR_ACT_NONE, err));
    RESIDUAL(w->ln2_g, w->ln2_b);
#undef RESIDUAL
#undef NORM_IN
#undef TRY
    return rc;
}

tsr_status tsr_dec_state_reorder(tsr_ctx *ctx, tsr_dec_state *st, cl_mem *tmp, const int *src,
                                 int D, tsr_error *err)
{
    size_t per = (size_t)st->cap * 2 * D * sizeof(float);
    for (int b = 0; b < st->B; b++) {
        if (src[b] < 0 || src[b] >= st->B)
            return tsr_error_set(err, TSR_ERR_INVALID_ARG, "beam index %d out of range", src[b]);
        cl_int e = clEnqueueCopyBuffer(ctx->queue, st->cache, *tmp, per * src[b], per * b, per, 0,
                                       NULL, NULL);
        if (e != CL_SUCCESS)
            return tsr_cl_fail(err, e, "clEnqueueCopyBuffer");
    }
    cl_mem t = st->cache;
    st->cache = *tmp;
    *tmp = t;
    return TSR_OK;
}
