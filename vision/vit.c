/* The CLIP ViT tower: patch embedding (im2col + GEMM), class token and
 * positions, pre-layernorm, encoder layers, CLS pooling, post-layernorm,
 * projection. Everything stays on the device until the embeddings. */
#include <stdlib.h>
#include <string.h>

#include "tsr_vit.h"

int tsr_vit_num_patches(const tsr_vit_cfg *c)
{
    int g = c->image_size / c->patch;
    return g * g;
}

tsr_status tsr_vit_init(tsr_vit *v, tsr_error *err)
{
    v->stack.cfg = (tsr_enc_cfg){v->cfg.dim, v->cfg.heads, v->cfg.ffn, v->cfg.eps, v->cfg.act, 0, 0};
    v->stack.n_layers = v->cfg.layers;
    return tsr_stack_alloc_layers(&v->stack, err);
}

static cl_mem *session_slots(tsr_vit *v, int *n)
{
    *n = 7;
    return &v->px;
}

static tsr_status reserve(tsr_ctx *ctx, tsr_vit *v, int B, tsr_error *err)
{
    if (B <= v->cap_b)
        return TSR_OK;
    int n;
    cl_mem *slots = session_slots(v, &n);
    tsr_mems_free(slots, n);
    const tsr_vit_cfg *c = &v->cfg;
    size_t np = (size_t)tsr_vit_num_patches(c), K = (size_t)c->channels * c->patch * c->patch;
    size_t P = c->proj_dim ? (size_t)c->proj_dim : (size_t)c->dim, f = sizeof(float);
    size_t sizes[7] = {(size_t)B * c->channels * c->image_size * c->image_size * f,
                       B * np * K * f,
                       B * np * c->dim * f,
                       B * (np + 1) * c->dim * f,
                       (size_t)B * sizeof(cl_int),
                       (size_t)B * c->dim * f,
                       B * P * f};
    for (int i = 0; i < n; i++) {
        slots[i] = tsr_buf_alloc(ctx, sizes[i], err);
        if (!slots[i]) {
            tsr_mems_free(slots, n);
            v->cap_b = 0;
            return err ? err->code : TSR_ERR_NOMEM;
        }
    }
    v->cap_b = B;
    cl_int *idx = malloc(sizeof(cl_int) * (size_t)B);
    if (!idx)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    for (int b = 0; b < B; b++)
        idx[b] = (cl_int)(b * (np + 1));
    tsr_status rc = tsr_buf_write(ctx, v->idx, idx, sizeof(cl_int) * (size_t)B, err);
    free(idx);
    return rc;
}

tsr_status tsr_vit_forward(tsr_ctx *ctx, tsr_vit *v, const float *pixels, int B, int l2,
                           float *embeds, tsr_error *err)
{
    const tsr_vit_cfg *c = &v->cfg;
    int np = tsr_vit_num_patches(c), S = np + 1, D = c->dim;
    int K = c->channels * c->patch * c->patch;
    int P = c->proj_dim ? c->proj_dim : D;
    tsr_status rc;
#define TRY(call)                                                                                \
    do {                                                                                         \
        if ((rc = (call)) != TSR_OK)                                                             \
            return rc;                                                                           \
    } while (0)
    TRY(reserve(ctx, v, B, err));
    TRY(tsr_buf_write(ctx, v->px, pixels,
                      sizeof(float) * (size_t)B * c->channels * c->image_size * c->image_size,
                      err));
    TRY(tsr_k_im2col(ctx, v->px, v->cols, B, c->channels, c->image_size, c->image_size, c->patch,
                     err));
    TRY(tsr_linear(ctx, v->cols, B * np, K, v->patch_w, NULL, D, v->patches, TSR_ACT_NONE, err));
    TRY(tsr_k_vit_embed(ctx, v->x, v->patches, v->cls, v->pos, B, np, D, err));
    TRY(tsr_k_layernorm(ctx, v->x, v->x, v->pre_g, v->pre_b, B * S, D, c->eps, err));
    TRY(tsr_stack_run(ctx, &v->stack, v->x, B, S, NULL, err));
    TRY(tsr_k_gather_rows(ctx, v->pooled, v->x, v->idx, B, D, err));
    TRY(tsr_k_layernorm(ctx, v->pooled, v->pooled, v->post_g, v->post_b, B, D, c->eps, err));
    cl_mem res = v->pooled;
    if (c->proj_dim) {
        TRY(tsr_linear(ctx, v->pooled, B, D, v->proj, NULL, P, v->out, TSR_ACT_NONE, err));
        res = v->out;
    }
    if (l2)
        TRY(tsr_k_l2norm(ctx, res, B, P, err));
    TRY(tsr_buf_read(ctx, res, embeds, sizeof(float) * (size_t)B * P, err));
#undef TRY
    return TSR_OK;
}

void tsr_vit_free(tsr_vit *v)
{
    int n;
    cl_mem *slots = session_slots(v, &n);
    tsr_mems_free(slots, n);
    cl_mem w[] = {v->patch_w, v->cls, v->pos, v->pre_g, v->pre_b, v->post_g, v->post_b, v->proj};
    tsr_mems_free(w, 8);
    tsr_stack_free(&v->stack);
    v->cap_b = 0;
}
