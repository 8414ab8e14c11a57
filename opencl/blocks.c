/* Transformer building blocks shared by every tower. */
#include <math.h>
#include <stdlib.h>

#include "tsr_cl_internal.h"

tsr_status tsr_enc_scratch_alloc(tsr_ctx *ctx, const tsr_enc_cfg *c, int B, int S,
                                 tsr_enc_scratch *s, tsr_error *err)
{
    size_t rows = (size_t)B * S, f = sizeof(float);
    size_t sizes[5] = {rows * c->dim * f, rows * 3 * c->dim * f,
                       (size_t)B * c->heads * S * S * f, rows * c->dim * f, rows * c->ffn * f};
    cl_mem *const slots[5] = {&s->h, &s->qkv, &s->scores, &s->attn, &s->ffn};
    return tsr_bufs_alloc(ctx, slots, sizes, 5, err);
}

void tsr_enc_scratch_free(tsr_enc_scratch *s)
{
    cl_mem *slots[5] = {&s->h, &s->qkv, &s->scores, &s->attn, &s->ffn};
    for (int i = 0; i < 5; i++) {
        tsr_buf_free(*slots[i]);
        *slots[i] = NULL;
    }
}

/* Multi-head attention over packed qkv (B*S, 3D) into out (B*S, D), with the
 * score matrices of all (batch, head) pairs computed by batched GEMMs. */
static tsr_status attention(tsr_ctx *ctx, const tsr_enc_cfg *c, tsr_enc_scratch *s, int B, int S,
                            cl_mem lens, tsr_error *err)
{
    int D = c->dim, H = c->heads, dh = D / H, count = B * H;
    if (ctx->own_gemm && S <= TSR_ATT_MAX_S) /* CPU devices: one fused kernel */
        return tsr_k_attention(ctx, s->qkv, s->attn, B, S, H, dh, 1.0f / sqrtf((float)dh),
                               c->causal, lens, err);
    if (ctx->own_gemm && !lens && dh <= 128) { /* longer sequences (Whisper's 1500 frames) */
        tsr_att_io io = {s->qkv, 0, 3 * D, s->qkv, D, 2 * D, 3 * D, S * 3 * D, s->attn, D};
        return tsr_k_attention_kv(ctx, &io, B, S, S, H, dh, 1.0f / sqrtf((float)dh), c->causal,
                                  err);
    }
    size_t *off = malloc(sizeof(size_t) * 3 * (size_t)count);
    if (!off)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    size_t *qo = off, *ko = off + count, *so = off + 2 * count;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            int i = b * H + h;
            qo[i] = (size_t)b * S * 3 * D + (size_t)h * dh;
            ko[i] = qo[i] + D;
            so[i] = (size_t)i * S * S;
        }
    float scale = 1.0f / sqrtf((float)dh);
    tsr_status st = tsr_gemm_batched(ctx, 1, S, S, dh, scale, s->qkv, qo, 3 * D, s->qkv, ko,
                                     3 * D, s->scores, so, S, count, err);
    if (st == TSR_OK)
        st = tsr_k_softmax(ctx, s->scores, B, H, S, S, 1.0f, c->causal, lens, err);
    if (st == TSR_OK) {
        /* out[b, :, h, :] = P[b, h] (S x S) @ V[b, :, h, :] (S x dh) */
        size_t *vo = ko, *oo = qo;
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++) {
                int i = b * H + h;
                vo[i] = (size_t)b * S * 3 * D + 2 * (size_t)D + (size_t)h * dh;
                oo[i] = (size_t)b * S * D + (size_t)h * dh;
            }
        st = tsr_gemm_batched(ctx, 0, S, dh, S, 1.0f, s->scores, so, S, s->qkv, vo, 3 * D,
                              s->attn, oo, D, count, err);
    }
    free(off);
    return st;
}

tsr_status tsr_enc_layer(tsr_ctx *ctx, const tsr_enc_cfg *c, const tsr_enc_weights *w,
                         tsr_enc_scratch *s, cl_mem x, int B, int S, cl_mem lens,
                         tsr_error *err)
{
    int D = c->dim, rows = B * S;
    tsr_status st;
#define TRY(call)                                                                                \
    do {                                                                                         \
        if ((st = (call)) != TSR_OK)                                                             \
            return st;                                                                           \
    } while (0)
    if (c->post_ln) {
        TRY(tsr_linear(ctx, x, rows, D, w->qkv_w, w->qkv_b, 3 * D, s->qkv, TSR_ACT_NONE, err));
        TRY(attention(ctx, c, s, B, S, lens, err));
        TRY(tsr_linear(ctx, s->attn, rows, D, w->o_w, w->o_b, D, s->h, TSR_ACT_NONE, err));
        TRY(tsr_k_add(ctx, s->h, x, (size_t)rows * D, err));
        TRY(tsr_k_layernorm(ctx, s->h, x, w->ln1_g, w->ln1_b, rows, D, c->eps, err));
        TRY(tsr_linear(ctx, x, rows, D, w->fc1_w, w->fc1_b, c->ffn, s->ffn, c->act, err));
        TRY(tsr_linear(ctx, s->ffn, rows, c->ffn, w->fc2_w, w->fc2_b, D, s->h, TSR_ACT_NONE, err));
        TRY(tsr_k_add(ctx, s->h, x, (size_t)rows * D, err));
        TRY(tsr_k_layernorm(ctx, s->h, x, w->ln2_g, w->ln2_b, rows, D, c->eps, err));
        return TSR_OK;
    }
    TRY(tsr_k_layernorm(ctx, x, s->h, w->ln1_g, w->ln1_b, rows, D, c->eps, err));
    TRY(tsr_linear(ctx, s->h, rows, D, w->qkv_w, w->qkv_b, 3 * D, s->qkv, TSR_ACT_NONE, err));
    TRY(attention(ctx, c, s, B, S, lens, err));
    TRY(tsr_linear(ctx, s->attn, rows, D, w->o_w, w->o_b, D, s->h, TSR_ACT_NONE, err));
    TRY(tsr_k_add(ctx, x, s->h, (size_t)rows * D, err));
    TRY(tsr_k_layernorm(ctx, x, s->h, w->ln2_g, w->ln2_b, rows, D, c->eps, err));
    TRY(tsr_linear(ctx, s->h, rows, D, w->fc1_w, w->fc1_b, c->ffn, s->ffn, c->act, err));
    TRY(tsr_linear(ctx, s->ffn, rows, c->ffn, w->fc2_w, w->fc2_b, D, s->h, TSR_ACT_NONE, err));
    TRY(tsr_k_add(ctx, x, s->h, (size_t)rows * D, err));
#undef TRY
    return TSR_OK;
}
