/* The Whisper audio encoder on the compute layer: both 1-D convolutions
 * (kernel 3, padding 1, strides 1 and 2) as GEMMs over im2col rows built on
 * the device, so nothing returns to the host inside the encoder. */
#include "tsr_wenc.h"

tsr_status tsr_wenc_plan(tsr_queue *q, const tsr_wenc_cfg *c, tsr_arena *a, tsr_wenc_io *io,
                         size_t scratch[TSR_SCRATCH_N], tsr_error *err)
{
    size_t T = 2 * (size_t)c->n_ctx, S = (size_t)c->n_ctx, D = (size_t)c->enc.layer.dim;
    size_t C = (size_t)c->n_mels, f = sizeof(float);
    tsr_status st = tsr_encoder_plan(q, &c->enc, 1, (int)S, a, &io->enc, scratch, err);
    tsr_arena_reserve(a, &io->mel, C * T * f);
    tsr_arena_reserve(a, &io->cols1, T * C * 3 * f);
    tsr_arena_reserve(a, &io->h1, T * D * f);
    tsr_arena_reserve(a, &io->cols2, S * D * 3 * f);
    TSR_TRY(st, tsr_linear_plan(q, (int)T, (int)D, (int)C * 3, err));
    TSR_TRY(st, tsr_linear_plan(q, (int)S, (int)D, (int)D * 3, err));
    return st;
}

tsr_status tsr_wenc_forward(tsr_queue *q, const tsr_wenc_cfg *c, const tsr_wenc_w *w,
                            tsr_wenc_io *io, tsr_enc_scratch *s, const float *mel,
                            tsr_error *err)
{
    int T = 2 * c->n_ctx, S = c->n_ctx, D = c->enc.layer.dim, C = c->n_mels;
    tsr_act act = c->enc.layer.act;
    tsr_status rc = tsr_buf_write_async(q, io->mel, 0, mel, sizeof(float) * (size_t)C * T, err);
    /* conv1 over the mel frames (channel c of frame s at c*T + s) */
    TSR_TRY(rc, tsr_k_im2col1d(q, io->mel, io->cols1, C, T, T, 1, 1, T, err));
    TSR_TRY(rc, tsr_linear(q, io->cols1, T, C * 3, w->conv1_w, w->conv1_b, D, io->h1, act, err));
    /* conv2 with stride 2 over h1 (T, D): channel c of frame s at s*D + c */
    TSR_TRY(rc, tsr_k_im2col1d(q, io->h1, io->cols2, D, T, 1, D, 2, S, err));
    TSR_TRY(rc, tsr_linear(q, io->cols2, S, D * 3, w->conv2_w, w->conv2_b, D, io->enc.x, act,
                           err));
    TSR_TRY(rc, tsr_k_add(q, io->enc.x, w->pos, (size_t)S * D, err));
    TSR_TRY(rc, tsr_encoder_run(q, &c->enc, &w->enc, &io->enc, s, 1, S, NULL, NULL, 0, NULL,
                                err));
    if (rc != TSR_OK)
        tsr_queue_finish(q, NULL);
    return rc;
}
