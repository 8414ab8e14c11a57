/* Internal: the ViT image tower built from the shared encoder tower:
 * patch embedding (im2col + GEMM, optional bias), an optional class token,
 * positions, then the encoder tower (CLIP: pre-layernorm, CLS pooling,
 * post-layernorm, projection; or every token out for a decoder).
 * fusion/ fills the weights from a checkpoint's table; vision/ runs it.
 *
 *   tsr_vit_plan(q, &cfg, B, &arena, &io, scratch, err);   // measuring pass
 *   ... commit the arena ...
 *   tsr_vit_forward(q, &cfg, &w, &io, &s, pixels, B, 1, embeds, err);
 */
#ifndef TSR_VIT_H
#define TSR_VIT_H

#include "tsr_tower.h"

typedef struct {
    int image_size, patch, channels;
    int cls;             /* 1: a class token precedes the patches */
    tsr_encoder_cfg enc; /* layers, layernorms, pooling (row 0), projection */
    /* open_clip's attentional pooler (CoCa), when pool_queries > 0: enc
     * returns every token; P-wide learned queries attend to them (ln_k on
     * the tokens, ln_q on the queries, multi-head attention with pool_heads
     * heads), then `post` (no layers: ln_post over every query's row, row 0
     * pooled and projected) runs on the pool_queries rows. */
    int pool_queries, pool_heads;
    float pool_eps;      /* ln_q and ln_k (open_clip builds them with PyTorch's 1e-5) */
    tsr_encoder_cfg post;
} tsr_vit_cfg;

typedef struct {
    cl_mem patch_w;    /* (D, C*p*p), linear layout */
    cl_mem patch_b;    /* (D) or NULL */
    cl_mem cls;        /* (D) */
    cl_mem pos;        /* (cls + np, D) */
    tsr_encoder_w enc;
    /* the attentional pooler (P = post.layer.dim, Q = pool_queries) */
    cl_mem pool_query;               /* (Q, P) */
    cl_mem pool_lnq_g, pool_lnq_b;   /* (P) */
    cl_mem pool_lnk_g, pool_lnk_b;   /* (D) */
    cl_mem pool_q_w, pool_q_b;       /* (P, P), (P) */
    cl_mem pool_kv_w, pool_kv_b;     /* (2P, D), (2P): keys and values stacked */
    cl_mem pool_o_w, pool_o_b;       /* (P, P), (P) */
    tsr_encoder_w post;              /* ln_post (P), proj (P, P) */
} tsr_vit_w;

typedef struct {
    cl_mem px;         /* (B, C, H, W) */
    cl_mem cols;       /* (B*np, C*p*p) */
    cl_mem patches;    /* (B*np, D) */
    tsr_encoder_io enc;
    /* the attentional pooler's */
    cl_mem pool_q;     /* (B*Q, P): the queries' projections, computed once per plan */
    cl_mem pool_ln;    /* (B*S, D) */
    cl_mem pool_kv;    /* (B*S, 2P) */
    cl_mem pool_att;   /* (B*Q, P) */
    tsr_encoder_io post; /* post.x (B*Q, P): the pooler's rows, after ln_post */
    int pool_q_ready;
} tsr_vit_io;

int tsr_vit_num_patches(const tsr_vit_cfg *c);
void tsr_vit_io_free(tsr_vit_io *io);
/* Tokens per image: patches plus the class token. */
int tsr_vit_seq_len(const tsr_vit_cfg *c);
tsr_status tsr_vit_plan(tsr_queue *q, const tsr_vit_cfg *c, int B, tsr_arena *a, tsr_vit_io *io,
                        size_t scratch[TSR_SCRATCH_N], tsr_error *err);
/* pixels: (B, C, H, W) normalised, on the host. out: (B, proj_dim or dim)
 * when the tower pools (L2-normalised if l2), else (B*S, dim); NULL keeps
 * the result on the device in io->enc.x, and then pixels must stay valid
 * until the queue's next blocking call. With the attentional pooler, out
 * gets (B, P) pooled and projected, and io->post.x holds every query's row. */
tsr_status tsr_vit_forward(tsr_queue *q, const tsr_vit_cfg *c, const tsr_vit_w *w, tsr_vit_io *io,
                           tsr_enc_scratch *s, const float *pixels, int B, int l2, float *out,
                           tsr_error *err);

#endif
