/* Internal: the CLIP text tower (CLIPTextModel + text projection).
 *
 *   tsr_textenc t = {.cfg = cfg};  // tsr_textenc_init, then fusion/ fills weights
 *   tsr_textenc_forward(ctx, &t, ids, lens, B, S, 1, embeds, &err);
 */
#ifndef TSR_TEXTENC_H
#define TSR_TEXTENC_H

#include "tsr_tower.h"

typedef struct {
    int vocab, max_pos, dim, heads, ffn, layers;
    int proj_dim; /* 0: output the pooled vector */
    float eps;
    tsr_act act;
    int eos_id;   /* 2 selects the legacy argmax(ids) pooling, as transformers does */
} tsr_textenc_cfg;

typedef struct {
    tsr_textenc_cfg cfg;
    cl_mem tok;          /* (V, D) */
    cl_mem pos;          /* (max_pos, D) */
    cl_mem fin_g, fin_b; /* (D) */
    cl_mem proj;         /* (P, D) */
    tsr_stack stack;
    int cap_b, cap_s;
    cl_mem ids;    /* int (B, S) */
    cl_mem lens;   /* int (B) */
    cl_mem idx;    /* int (B) rows to pool */
    cl_mem x;      /* (B*S, D) */
    cl_mem pooled; /* (B, D) */
    cl_mem out;    /* (B, P) */
} tsr_textenc;

tsr_status tsr_textenc_init(tsr_textenc *t, tsr_error *err);
/* ids: (B, S) padded, lens: (B) true lengths (<= S <= max_pos). */
tsr_status tsr_textenc_forward(tsr_ctx *ctx, tsr_textenc *t, const int *ids, const int *lens,
                               int B, int S, int l2, float *embeds, tsr_error *err);
/* The position pooled for one sequence, as transformers' CLIPTextTransformer picks it. */
int tsr_textenc_pool_index(const tsr_textenc_cfg *c, const int *ids, int len);
void tsr_textenc_free(tsr_textenc *t);

#endif
