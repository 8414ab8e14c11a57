/* The transformer decoder: the layer (self-attention over a KV cache kept on
 * the device, cross-attention over keys and values computed once per input,
 * MLP) and the stack that generation runs one step at a time. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tsr_tower.h"

tsr_enc_cfg tsr_dec_enc_cfg(const tsr_dec_cfg *c)
{
    return (tsr_enc_cfg){c->dim, c->heads, c->ffn, c->eps, c->act, 1, c->post_ln};
}

tsr_status tsr_dec_state_plan(const tsr_dec_cfg *c, int B, int cap, int Bx, int Se, tsr_arena *a,
                              tsr_dec_state *st, tsr_error *err)
{
    if (Bx < 1 || B % Bx != 0)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "cross-attention batch %d does not divide the batch %d", Bx, B);
    size_t row = 2 * (size_t)c->dim * sizeof(float);
    if (c->no_cross)
        Se = 0;
    *st = (tsr_dec_state){NULL, NULL, cap, B, Bx, Se};
    if (!c->no_self)
        tsr_arena_reserve(a, &st->cache, (size_t)B * cap * row);
    if (Se > 0)
        tsr_arena_reserve(a, &st->xkv, (size_t)Bx * Se * row);
    return TSR_OK;
}

tsr_status tsr_dec_cross_kv(tsr_queue *q, const tsr_dec_cfg *c, const tsr_dec_weights *w,
                            tsr_dec_state *st, cl_mem enc, int nx, tsr_error *err)
{
    if (nx < 1 || nx > st->Bx)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "%d encodings for a plan of %d", nx,
                             st->Bx);
    if (st->Se == 0)
        return TSR_OK; /* a layer without cross-attention */
    int Dx = c->xdim > 0 ? c->xdim : c->dim;
    return tsr_linear(q, enc, nx * st->Se, Dx, w->xkv_w, w->xkv_b, 2 * c->dim, st->xkv,
                      TSR_ACT_NONE, err);
}

/* The input of a sub-layer: LN(x) into h for pre-LN, x itself for post-LN. */
static cl_mem norm_in(tsr_queue *q, const tsr_dec_cfg *c, cl_mem x, cl_mem h, cl_mem g, cl_mem b,
                      int R, tsr_status *rc, tsr_error *err)
{
    if (c->post_ln)
        return x;
    TSR_TRY(*rc, tsr_k_layernorm(q, x, h, g, b, R, c->dim, c->eps, err));
    return h;
}

/* x += h; post-LN: x = LN(x). */
static void residual(tsr_queue *q, const tsr_dec_cfg *c, cl_mem x, cl_mem h, cl_mem g, cl_mem b,
                     int R, tsr_status *rc, tsr_error *err)
{
    TSR_TRY(*rc, tsr_k_add(q, x, h, (size_t)R * c->dim, err));
    if (c->post_ln)
        TSR_TRY(*rc, tsr_k_layernorm(q, x, x, g, b, R, c->dim, c->eps, err));
}

tsr_status tsr_dec_layer(tsr_queue *q, const tsr_dec_cfg *c, const tsr_dec_weights *w,
                         tsr_dec_state *st, tsr_enc_scratch *s, cl_mem x, int B, int Sq,
                         int past, tsr_error *err)
{
    int D = c->dim, H = c->heads, dh = D / H, R = B * Sq;
    float scale = 1.0f / sqrtf((float)dh);
    if (B < 1 || B > st->B || (st->Bx != 1 && B % (st->B / st->Bx) != 0))
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "batch %d does not fit the state's %d",
                             B, st->B);
    tsr_status rc = TSR_OK;
    cl_mem in;
    /* self-attention */
    if (!c->no_self) {
        in = norm_in(q, c, x, s->h, w->ln1_g, w->ln1_b, R, &rc, err);
        TSR_TRY(rc, tsr_linear(q, in, R, D, w->qkv_w, w->qkv_b, 3 * D, s->qkv, TSR_ACT_NONE, err));
        TSR_TRY(rc, tsr_k_kv_append(q, s->qkv, st->cache, B, Sq, D, st->cap, past, err));
        tsr_att_io self = {s->qkv, 0, 3 * D, st->cache, 0, D, 2 * D, st->cap * 2 * D, s->attn, D,
                           NULL, 1};
        TSR_TRY(rc, tsr_k_attention_kv(q, &self, B, Sq, past + Sq, H, dh, scale, 1, err));
        TSR_TRY(rc, tsr_linear(q, s->attn, R, D, w->o_w, w->o_b, D, s->h, TSR_ACT_NONE, err));
        residual(q, c, x, s->h, w->ln1_g, w->ln1_b, R, &rc, err);
    }
    /* cross-attention */
    if (st->Se > 0 && !c->no_cross) {
        in = norm_in(q, c, x, s->h, w->lnx_g, w->lnx_b, R, &rc, err);
        TSR_TRY(rc, tsr_linear(q, in, R, D, w->xq_w, w->xq_b, D, s->qkv, TSR_ACT_NONE, err));
        /* Bx encodings for B sequences: B / Bx consecutive ones share each */
        tsr_att_io cross = {s->qkv, 0, D, st->xkv, 0, D, 2 * D,
                            st->Bx == 1 ? 0 : st->Se * 2 * D, s->attn, D, NULL,
                            st->Bx == 1 ? 1 : st->B / st->Bx};
        TSR_TRY(rc, tsr_k_attention_kv(q, &cross, B, Sq, st->Se, H, dh, scale, 0, err));
        TSR_TRY(rc, tsr_linear(q, s->attn, R, D, w->xo_w, w->xo_b, D, s->h, TSR_ACT_NONE, err));
        residual(q, c, x, s->h, w->lnx_g, w->lnx_b, R, &rc, err);
    }
    /* MLP */
    in = norm_in(q, c, x, s->h, w->ln2_g, w->ln2_b, R, &rc, err);
    TSR_TRY(rc, tsr_linear(q, in, R, D, w->fc1_w, w->fc1_b, c->ffn, s->ffn, c->act, err));
    TSR_TRY(rc, tsr_linear(q, s->ffn, R, c->ffn, w->fc2_w, w->fc2_b, D, s->h, TSR_ACT_NONE, err));
    residual(q, c, x, s->h, w->ln2_g, w->ln2_b, R, &rc, err);
    return rc;
}

tsr_status tsr_dec_state_reorder(tsr_queue *q, tsr_dec_state *st, cl_mem *tmp, const int *src,
                                 int B, int len, int D, tsr_error *err)
{
    if (B < 1 || B > st->B || len < 0 || len > st->cap)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "reordering %d sequences of %d positions "
                             "in a cache of %d x %d", B, len, st->B, st->cap);
    size_t per = (size_t)st->cap * 2 * D * sizeof(float), used = (size_t)len * 2 * D * sizeof(float);
    if (!st->cache)
        return TSR_OK; /* a layer without self-attention keeps no cache */
    for (int b = 0; b < B && used > 0; b++) {
        if (src[b] < 0 || src[b] >= st->B)
            return tsr_error_set(err, TSR_ERR_INVALID_ARG, "beam index %d out of range", src[b]);
        cl_int e = clEnqueueCopyBuffer(q->q, st->cache, *tmp, per * src[b], per * b, used, 0,
                                       NULL, NULL);
        if (e != CL_SUCCESS)
            return tsr_cl_fail(err, e, "clEnqueueCopyBuffer");
    }
    cl_mem t = st->cache;
    st->cache = *tmp;
    *tmp = t;
    return TSR_OK;
}

/* ---- the stack ---- */

tsr_status tsr_decoder_plan(tsr_queue *q, const tsr_decoder_cfg *c, int B, int max_sq, int Bx,
                            int Se, tsr_arena *a, tsr_decoder_io *io,
                            size_t scratch[TSR_SCRATCH_N], tsr_error *err)
{
    tsr_decoder_io_free(io);
    memset(io, 0, sizeof *io);
    size_t D = (size_t)c->layer.dim, V = (size_t)c->vocab, f = sizeof(float);
    size_t R = (size_t)B * max_sq;
    io->st = calloc((size_t)c->n_layers + 1, sizeof *io->st);
    io->host = malloc(sizeof(int) * (R + (size_t)B));
    if (!io->st || !io->host) {
        tsr_decoder_io_free(io);
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    }
    io->max_b = B;
    io->max_sq = max_sq;
    io->Bx = Bx;
    io->Se = Se;
    tsr_status st = TSR_OK;
    int xln = 0;
    for (int i = 0; i < c->n_layers && st == TSR_OK; i++) {
        const tsr_dec_cfg *lc = c->layers ? &c->layers[i] : &c->layer;
        if (lc->dim != c->layer.dim)
            return tsr_error_set(err, TSR_ERR_INVALID_ARG, "decoder layer %d is %d wide, not %d",
                                 i, lc->dim, c->layer.dim);
        st = tsr_dec_state_plan(lc, B, c->n_ctx, Bx, Se, a, &io->st[i], err);
        xln |= lc->xln && !lc->no_cross;
        tsr_enc_cfg ec = tsr_dec_enc_cfg(lc);
        tsr_scratch_need(&ec, (int)R, scratch);
        int d = lc->dim, F = lc->ffn;
        TSR_TRY(st, tsr_linear_plan(q, (int)R, 3 * d, d, err));
        TSR_TRY(st, tsr_linear_plan(q, (int)R, d, d, err));
        TSR_TRY(st, tsr_linear_plan(q, (int)R, F, d, err));
        TSR_TRY(st, tsr_linear_plan(q, (int)R, d, F, err));
        if (Se > 0 && !lc->no_cross)
            TSR_TRY(st, tsr_linear_plan(q, Bx * Se, 2 * d, lc->xdim > 0 ? lc->xdim : d, err));
    }
    int Dx = c->layer.xdim > 0 ? c->layer.xdim : c->layer.dim;
    if (xln && Se > 0)
        tsr_arena_reserve(a, &io->xin, (size_t)Bx * Se * Dx * f);
    tsr_arena_reserve(a, &io->ids, R * sizeof(cl_int));
    tsr_arena_reserve(a, &io->x, R * D * f);
    tsr_arena_reserve(a, &io->rows, (size_t)B * sizeof(cl_int));
    tsr_arena_reserve(a, &io->last, (size_t)B * D * f);
    if (c->head != TSR_ACT_NONE)
        tsr_arena_reserve(a, &io->head, (size_t)B * D * f);
    tsr_arena_reserve(a, &io->logits, (size_t)B * V * f);
    if (B > 1)
        tsr_arena_reserve(a, &io->reorder_tmp, (size_t)B * c->n_ctx * 2 * D * f);
    int d = c->layer.dim;
    TSR_TRY(st, tsr_linear_plan(q, B, c->vocab, d, err));
    if (c->head != TSR_ACT_NONE)
        TSR_TRY(st, tsr_linear_plan(q, B, d, d, err));
    return st;
}

void tsr_decoder_io_free(tsr_decoder_io *io)
{
    free(io->st);
    free(io->host);
    io->st = NULL;
    io->host = NULL;
}

tsr_status tsr_decoder_cross(tsr_queue *q, const tsr_decoder_cfg *c, const tsr_decoder_w *w,
                             tsr_decoder_io *io, cl_mem enc, tsr_error *err)
{
    return tsr_decoder_cross_n(q, c, w, io, enc, io->Bx, err);
}

tsr_status tsr_decoder_cross_n(tsr_queue *q, const tsr_decoder_cfg *c, const tsr_decoder_w *w,
                               tsr_decoder_io *io, cl_mem enc, int nx, tsr_error *err)
{
    tsr_status rc = TSR_OK;
    for (int i = 0; i < c->n_layers && rc == TSR_OK; i++) {
        const tsr_dec_cfg *lc = c->layers ? &c->layers[i] : &c->layer;
        cl_mem in = enc;
        if (lc->xln && io->st[i].Se > 0) {
            int Dx = lc->xdim > 0 ? lc->xdim : lc->dim;
            rc = tsr_k_layernorm(q, enc, io->xin, w->layers[i].lnkv_g, w->layers[i].lnkv_b,
                                 nx * io->Se, Dx, lc->eps, err);
            in = io->xin;
        }
        TSR_TRY(rc, tsr_dec_cross_kv(q, lc, &w->layers[i], &io->st[i], in, nx, err));
    }
    return rc;
}

tsr_status tsr_decoder_step(tsr_queue *q, const tsr_decoder_cfg *c, const tsr_decoder_w *w,
                            tsr_decoder_io *io, tsr_enc_scratch *s, const int *tokens, int B,
                            int Sq, int past, float *logits, tsr_error *err)
{
    int D = c->layer.dim, V = c->vocab, R = B * Sq;
    if (B < 1 || B > io->max_b || Sq < 1 || Sq > io->max_sq)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "a decoder step of %d x %d tokens does not fit the plan (%d x %d)", B,
                             Sq, io->max_b, io->max_sq);
    if (past < 0 || past + Sq > c->n_ctx)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "more than %d decoder positions",
                             c->n_ctx);
    for (int r = 0; r < R; r++) {
        if (tokens[r] < 0 || tokens[r] >= V)
            return tsr_error_set(err, TSR_ERR_INVALID_ARG, "token id %d outside 0..%d", tokens[r],
                                 V - 1);
        io->host[r] = tokens[r];
    }
    for (int b = 0; b < B; b++)
        io->host[R + b] = b * Sq + Sq - 1;
    tsr_counters before = tsr_queue_counters(q);
    tsr_status rc = tsr_buf_write_async(q, io->ids, 0, io->host, sizeof(cl_int) * R, err);
    TSR_TRY(rc, tsr_k_embed_tokens(q, io->x, io->ids, w->tok, w->pos, NULL, B, Sq, past, D, err));
    if (c->emb_ln)
        TSR_TRY(rc, tsr_k_layernorm(q, io->x, io->x, w->emb_g, w->emb_b, R, D, c->layer.eps, err));
    for (int i = 0; i < c->n_layers && rc == TSR_OK; i++)
        rc = tsr_dec_layer(q, c->layers ? &c->layers[i] : &c->layer, &w->layers[i], &io->st[i],
                           s, io->x, B, Sq, past, err);
    if (logits) {
        TSR_TRY(rc, tsr_buf_write_async(q, io->rows, 0, io->host + R, sizeof(cl_int) * B, err));
        TSR_TRY(rc, tsr_k_gather_rows(q, io->last, io->x, io->rows, B, D, err));
        if (c->final_ln)
            TSR_TRY(rc, tsr_k_layernorm(q, io->last, io->last, w->fin_g, w->fin_b, B, D,
                                        c->final_eps > 0 ? c->final_eps : c->layer.eps, err));
        cl_mem last = io->last;
        if (c->head != TSR_ACT_NONE) {
            TSR_TRY(rc, tsr_linear(q, io->last, B, D, w->head_w, w->head_b, D, io->head, c->head,
                                   err));
            TSR_TRY(rc, tsr_k_layernorm(q, io->head, io->head, w->head_g, w->head_bt, B, D,
                                        c->layer.eps, err));
            last = io->head;
        }
        TSR_TRY(rc, tsr_linear(q, last, B, D, w->proj, w->proj_b, V, io->logits, TSR_ACT_NONE,
                               err));
        TSR_TRY(rc, tsr_buf_read(q, io->logits, logits, sizeof(float) * (size_t)B * V, err));
    }
    if (rc != TSR_OK || !logits)
        tsr_queue_finish(q, NULL); /* the staged ids must not be overwritten while in flight */
    if (rc == TSR_OK)
        q->per_step = tsr_counters_diff(tsr_queue_counters(q), before);
    return rc;
}

tsr_status tsr_decoder_reorder(tsr_queue *q, const tsr_decoder_cfg *c, tsr_decoder_io *io,
                               const int *src, int B, int len, tsr_error *err)
{
    tsr_status rc = TSR_OK;
    for (int i = 0; i < c->n_layers && rc == TSR_OK; i++)
        rc = tsr_dec_state_reorder(q, &io->st[i], &io->reorder_tmp, src, B, len, c->layer.dim,
                                   err);
    return rc;
}
