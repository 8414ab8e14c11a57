/* Internal: the CLIP ViT image tower (CLIPVisionModel + visual projection).
 * fusion/ fills the weights from a checkpoint; vision/ runs it.
 *
 *   tsr_vit vit = {.cfg = cfg};  // then tsr_vit_init and fill weights
 *   tsr_vit_forward(ctx, &vit, pixels, B, embeds, &err);  // embeds: (B, proj)
 */
#ifndef TSR_VIT_H
#define TSR_VIT_H

#include "tsr_tower.h"

typedef struct {
    int image_size, patch, channels;
    int dim, heads, ffn, layers;
    int proj_dim; /* 0: no projection, output the pooled (dim) vector */
    float eps;
    tsr_act act;
} tsr_vit_cfg;

typedef struct {
    tsr_vit_cfg cfg;
    cl_mem patch_w;              /* (D, C*p*p) */
    cl_mem cls;                  /* (D) */
    cl_mem pos;                  /* (1+np, D) */
    cl_mem pre_g, pre_b;         /* (D) */
    cl_mem post_g, post_b;       /* (D) */
    cl_mem proj;                 /* (P, D) */
    tsr_stack stack;
    /* session buffers, grown with the batch */
    int cap_b;
    cl_mem px;      /* (B, C, H, W) */
    cl_mem cols;    /* (B*np, C*p*p) */
    cl_mem patches; /* (B*np, D) */
    cl_mem x;       /* (B*(1+np), D) */
    cl_mem idx;     /* int (B) */
    cl_mem pooled;  /* (B, D) */
    cl_mem out;     /* (B, P) */
} tsr_vit;

int tsr_vit_num_patches(const tsr_vit_cfg *c);
tsr_status tsr_vit_init(tsr_vit *v, tsr_error *err);
/* pixels: (B, C, H, W) normalised; embeds: (B, proj_dim or dim), L2-normalised if l2 != 0. */
tsr_status tsr_vit_forward(tsr_ctx *ctx, tsr_vit *v, const float *pixels, int B, int l2,
                           float *embeds, tsr_error *err);
void tsr_vit_free(tsr_vit *v);

#endif
