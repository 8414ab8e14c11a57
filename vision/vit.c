/* The ViT image tower: patch embedding (im2col + GEMM), class token and
 * positions, then the shared encoder tower. */
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
    return st;
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
                                NULL, l2, out, err));
    if (rc != TSR_OK)
        tsr_queue_finish(q, NULL); /* pixels may still be in flight */
    return rc;
}
