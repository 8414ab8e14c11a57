/* Internal: the Whisper audio encoder built from the shared encoder tower:
 * two GELU convolutions (kernel 3; strides 1 and 2) run as GEMMs over
 * im2col rows made on the device, positions, the layers and the final
 * layernorm over every frame. The output stays on the device for the
 * decoder's cross-attention.
 *
 *   tsr_wenc_plan(q, &cfg, &arena, &io, scratch, err);
 *   ... commit the arena ...
 *   tsr_wenc_forward(q, &cfg, &w, &io, &s, mel, err);  // io.enc.x: (n_ctx, D)
 */
#ifndef TSR_WENC_H
#define TSR_WENC_H

#include "tsr_tower.h"

typedef struct {
    int n_mels;
    int n_ctx;           /* 1500 positions: 2 * n_ctx mel frames in */
    tsr_encoder_cfg enc; /* pre-layernorm layers, final layernorm over all frames */
} tsr_wenc_cfg;

typedef struct {
    cl_mem conv1_w, conv1_b; /* (D, n_mels*3) as a linear weight, (D) */
    cl_mem conv2_w, conv2_b; /* (D, D*3), (D) */
    cl_mem pos;              /* (n_ctx, D) */
    tsr_encoder_w enc;
} tsr_wenc_w;

typedef struct {
    cl_mem mel;   /* (n_mels, 2*n_ctx) */
    cl_mem cols1; /* (2*n_ctx, n_mels*3) */
    cl_mem h1;    /* (2*n_ctx, D) */
    cl_mem cols2; /* (n_ctx, D*3) */
    tsr_encoder_io enc;
} tsr_wenc_io;

tsr_status tsr_wenc_plan(tsr_queue *q, const tsr_wenc_cfg *c, tsr_arena *a, tsr_wenc_io *io,
                         size_t scratch[TSR_SCRATCH_N], tsr_error *err);
/* mel: (n_mels, 2*n_ctx) log-mel frames on the host, which must stay valid
 * until the queue's next blocking call. Output in io->enc.x. */
tsr_status tsr_wenc_forward(tsr_queue *q, const tsr_wenc_cfg *c, const tsr_wenc_w *w,
                            tsr_wenc_io *io, tsr_enc_scratch *s, const float *mel,
                            tsr_error *err);

#endif
