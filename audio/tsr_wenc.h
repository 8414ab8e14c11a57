/* Internal: the Whisper audio encoder (two GELU convolutions, positions,
 * pre-layernorm encoder layers, final layernorm).
 *
 *   tsr_wenc e = {.cfg = cfg};  // tsr_wenc_init, then fusion/ fills the weights
 *   tsr_wenc_forward(ctx, &e, mel, &err);  // e.x holds (n_ctx, D) on the device
 */
#ifndef TSR_WENC_H
#define TSR_WENC_H

#include "tsr_tower.h"

typedef struct {
    int n_mels, dim, heads, ffn, layers;
    int n_ctx; /* 1500 positions: 2 * n_ctx mel frames in */
    float eps;
    tsr_act act;
} tsr_wenc_cfg;

typedef struct {
    tsr_wenc_cfg cfg;
    cl_mem conv1_w, conv1_b; /* (D, n_mels*3) as a linear weight, (D) */
    cl_mem conv2_w, conv2_b; /* (D, D*3), (D) */
    cl_mem pos;              /* (n_ctx, D) */
    cl_mem ln_g, ln_b;       /* (D) */
    tsr_stack stack;
    cl_mem cols1, h1, cols2, x; /* im2col and activations */
    float *host;                /* host staging for im2col */
} tsr_wenc;

tsr_status tsr_wenc_init(tsr_wenc *e, tsr_error *err);
/* mel: (n_mels, 2*n_ctx) log-mel frames. Output in e->x. */
tsr_status tsr_wenc_forward(tsr_ctx *ctx, tsr_wenc *e, const float *mel, tsr_error *err);
void tsr_wenc_free(tsr_wenc *e);

#endif
