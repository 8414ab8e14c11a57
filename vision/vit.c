/* The ViT image tower: patch embedding (im2col + GEMM), class token and
 * positions, then the shared encoder tower. */
#include <math.h>

#include "tsr_vit.h"

int tsr_vit_num_patches(const tsr_vit_cfg *c)
{
    int g = c->image_size / c->patch;
    return g * g;
}

int tsr_vit_seq_len(const tsr_vit_cfg *c) { return tsr_vit_num_patches(c) + (c->cls ? 1 : 0); }

tsr_status tsr_vit_plan(tsr_queue *q, const tsr_vit_cfg *c, int B, tsr_arena *a, tsr_vit_io *io,
                        size_t scratch[TSR_SCRATCH_N], tsr_error *err)
{
    size_t np = (size_t)tsr_vit_num_patches(c), K = (size_t)c->channels * c->patch * c->patch;
    size_t D = (size_t)c->enc.layer.dim, f = sizeof(float);
    tsr_status st = tsr_encoder_plan(q, &c->enc, B, tsr_vit_seq_len(c), a, &io->enc, scratch, err);
    tsr_arena_reserve(a, &io->px, (size_t)B * c->channels * c->image_size * c->image_size * f);
    tsr_arena_reserve(a, &io->cols, B * np * K * f);
    tsr_arena_reserve(a, &io->patches, B * np * D * f);
    TSR_TRY(st, tsr_linear_plan(q, B * (int)np, (int)D, (int)K, err));
    io->pool_q_ready = 0;
    if (c->pool_queries > 0) {
        size_t Q = (size_t)c->pool_queries, P = (size_t)c->post.layer.dim;
        size_t S = (size_t)tsr_vit_seq_len(c);
        TSR_TRY(st, tsr_encoder_plan(q, &c->post, B, (int)Q, a, &io->post, scratch, err));
        tsr_arena_reserve(a, &io->pool_q, B * Q * P * f);
        tsr_arena_reserve(a, &io->pool_ln, B * S * D * f);
        tsr_arena_reserve(a, &io->pool_kv, B * S * 2 * P * f);
        tsr_arena_reserve(a, &io->pool_att, B * Q * P * f);
        TSR_TRY(st, tsr_linear_plan(q, (int)Q, (int)P, (int)P, err));
        TSR_TRY(st, tsr_linear_plan(q, B * (int)S, 2 * (int)P, (int)D, err));
        TSR_TRY(st, tsr_linear_plan(q, B * (int)Q, (int)P, (int)P, err));
    }
    return st;
}

void tsr_vit_io_free(tsr_vit_io *io)
{
    tsr_encoder_io_free(&io->enc);
    tsr_encoder_io_free(&io->post);
}

/* open_clip's AttentionalPooler on io->enc.x, then ln_post and the
 * projection of row 0 (see tsr_vit_cfg). */
static tsr_status attn_pool(tsr_queue *q, const tsr_vit_cfg *c, const tsr_vit_w *w,
                            tsr_vit_io *io, tsr_enc_scratch *s, int B, int l2, float *out,
                            tsr_error *err)
{
    int Q = c->pool_queries, P = c->post.layer.dim, D = c->enc.layer.dim, S = tsr_vit_seq_len(c);
    int H = c->pool_heads, dh = P / H;
    float eps = c->pool_eps > 0 ? c->pool_eps : 1e-5f;
    tsr_status rc = TSR_OK;
    if (!io->pool_q_ready) { /* the queries do not depend on the image: once per plan */
        size_t blk = sizeof(float) * (size_t)Q * P;
        TSR_TRY(rc, tsr_k_layernorm(q, w->pool_query, io->pool_att, w->pool_lnq_g, w->pool_lnq_b,
                                    Q, P, eps, err));
        TSR_TRY(rc, tsr_linear(q, io->pool_att, Q, P, w->pool_q_w, w->pool_q_b, P, io->pool_q,
                               TSR_ACT_NONE, err));
        for (int b = 1; b < io->enc.max_b && rc == TSR_OK; b++) {
            cl_int e = clEnqueueCopyBuffer(q->q, io->pool_q, io->pool_q, 0, blk * b, blk, 0, NULL,
                                           NULL);
            if (e != CL_SUCCESS)
                rc = tsr_cl_fail(err, e, "clEnqueueCopyBuffer");
        }
        io->pool_q_ready = rc == TSR_OK;
    }
    TSR_TRY(rc, tsr_k_layernorm(q, io->enc.x, io->pool_ln, w->pool_lnk_g, w->pool_lnk_b, B * S, D,
                                eps, err));
    TSR_TRY(rc, tsr_linear(q, io->pool_ln, B * S, D, w->pool_kv_w, w->pool_kv_b, 2 * P,
                           io->pool_kv, TSR_ACT_NONE, err));
    tsr_att_io att = {io->pool_q, 0, P, io->pool_kv, 0, P, 2 * P, S * 2 * P, io->pool_att, P,
                      NULL, 1};
    TSR_TRY(rc, tsr_k_attention_kv(q, &att, B, Q, S, H, dh, 1.0f / sqrtf((float)dh), 0, err));
    TSR_TRY(rc, tsr_linear(q, io->pool_att, B * Q, P, w->pool_o_w, w->pool_o_b, P, io->post.x,
                           TSR_ACT_NONE, err));
    TSR_TRY(rc, tsr_encoder_run(q, &c->post, &w->post, &io->post, s, B, Q, NULL, NULL, l2, out,
                                err));
    return rc;
}

tsr_status tsr_vit_forward(tsr_queue *q, const tsr_vit_cfg *c, const tsr_vit_w *w, tsr_vit_io *io,
                           tsr_enc_scratch *s, const float *pixels, int B, int l2, float *out,
                           tsr_error *err)
{
    int np = tsr_vit_num_patches(c), D = c->enc.layer.dim;
    int K = c->channels * c->patch * c->patch;
    if (B < 1 || B > io->enc.max_b)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "%d images exceed the planned batch of %d",
                             B, io->enc.max_b);
    size_t px = sizeof(float) * (size_t)B * c->channels * c->image_size * c->image_size;
    tsr_status rc = tsr_buf_write_async(q, io->px, 0, pixels, px, err);
    TSR_TRY(rc, tsr_k_im2col(q, io->px, io->cols, B, c->channels, c->image_size, c->image_size,
                             c->patch, err));
    TSR_TRY(rc, tsr_linear(q, io->cols, B * np, K, w->patch_w, w->patch_b, D, io->patches,
                           TSR_ACT_NONE, err));
    TSR_TRY(rc, tsr_k_vit_embed(q, io->enc.x, io->patches, c->cls ? w->cls : NULL, w->pos, B, np,
                                D, err));
    TSR_TRY(rc, tsr_encoder_run(q, &c->enc, &w->enc, &io->enc, s, B, tsr_vit_seq_len(c), NULL,
                                NULL, l2, c->pool_queries > 0 ? NULL : out, err));
    if (c->pool_queries > 0)
        TSR_TRY(rc, attn_pool(q, c, w, io, s, B, l2, out, err));
    if (rc != TSR_OK)
        tsr_queue_finish(q, NULL); /* pixels may still be in flight */
    return rc;
}
