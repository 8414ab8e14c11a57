/* The CLIP text tower: token + position embeddings, causal encoder layers,
 * final layernorm at the pooled position, projection. */
#include <stdlib.h>

#include "tsr_textenc.h"
#include "tsr_textutil.h"

tsr_status tsr_textenc_init(tsr_textenc *t, tsr_error *err)
{
    t->stack.cfg = (tsr_enc_cfg){t->cfg.dim, t->cfg.heads, t->cfg.ffn, t->cfg.eps, t->cfg.act, 1, 0};
    t->stack.n_layers = t->cfg.layers;
    return tsr_stack_alloc_layers(&t->stack, err);
}

int tsr_textenc_pool_index(const tsr_textenc_cfg *c, const int *ids, int len)
{
    int best = 0;
    if (c->eos_id == 2) { /* legacy configs: the highest id is the end token */
        for (int i = 1; i < len; i++)
            if (ids[i] > ids[best])
                best = i;
        return best;
    }
    for (int i = 0; i < len; i++)
        if (ids[i] == c->eos_id)
            return i;
    return 0;
}

static tsr_status reserve(tsr_ctx *ctx, tsr_textenc *t, int B, int S, tsr_error *err)
{
    if (B <= t->cap_b && S <= t->cap_s)
        return TSR_OK;
    tsr_mems_free(&t->ids, 6);
    int nb = B > t->cap_b ? B : t->cap_b, ns = S > t->cap_s ? S : t->cap_s;
    size_t D = (size_t)t->cfg.dim, P = t->cfg.proj_dim ? (size_t)t->cfg.proj_dim : D;
    size_t sizes[6] = {sizeof(cl_int) * nb * ns, sizeof(cl_int) * nb, sizeof(cl_int) * nb,
                       sizeof(float) * nb * ns * D, sizeof(float) * nb * D, sizeof(float) * nb * P};
    cl_mem *const slots[6] = {&t->ids, &t->lens, &t->idx, &t->x, &t->pooled, &t->out};
    tsr_status rc = tsr_bufs_alloc(ctx, slots, sizes, 6, err);
    if (rc != TSR_OK) {
        t->cap_b = t->cap_s = 0;
        return rc;
    }
    t->cap_b = nb;
    t->cap_s = ns;
    return TSR_OK;
}

tsr_status tsr_textenc_forward(tsr_ctx *ctx, tsr_textenc *t, const int *ids, const int *lens,
                               int B, int S, int l2, float *embeds, tsr_error *err)
{
    const tsr_textenc_cfg *c = &t->cfg;
    int D = c->dim, P = c->proj_dim ? c->proj_dim : D;
    tsr_status rc = tsr_text_check_batch(ids, lens, B, S, c->max_pos, c->vocab, err);
    if (rc != TSR_OK)
        return rc;
    rc = reserve(ctx, t, B, S, err);
    if (rc != TSR_OK)
        return rc;
    cl_int *idx = malloc(sizeof(cl_int) * (size_t)B * 2);
    if (!idx)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    for (int b = 0; b < B; b++) {
        idx[b] = b * S + tsr_textenc_pool_index(c, ids + (size_t)b * S, lens[b]);
        idx[B + b] = lens[b];
    }
    rc = tsr_buf_write(ctx, t->idx, idx, sizeof(cl_int) * B, err);
    if (rc == TSR_OK)
        rc = tsr_buf_write(ctx, t->lens, idx + B, sizeof(cl_int) * B, err);
    free(idx);
#define TRY(call)                                                                                \
    do {                                                                                         \
        if (rc == TSR_OK)                                                                        \
            rc = (call);                                                                         \
    } while (0)
    TRY(tsr_buf_write(ctx, t->ids, ids, sizeof(cl_int) * (size_t)B * S, err));
    TRY(tsr_k_embed_tokens(ctx, t->x, t->ids, t->tok, t->pos, B, S, D, err));
    TRY(tsr_stack_run(ctx, &t->stack, t->x, B, S, t->lens, err));
    TRY(tsr_k_gather_rows(ctx, t->pooled, t->x, t->idx, B, D, err));
    TRY(tsr_k_layernorm(ctx, t->pooled, t->pooled, t->fin_g, t->fin_b, B, D, c->eps, err));
    cl_mem res = t->pooled;
    if (c->proj_dim) {
        TRY(tsr_linear(ctx, t->pooled, B, D, t->proj, NULL, P, t->out, TSR_ACT_NONE, err));
        res = t->out;
    }
    if (l2)
        TRY(tsr_k_l2norm(ctx, res, B, P, err));
    TRY(tsr_buf_read(ctx, res, embeds, sizeof(float) * (size_t)B * P, err));
#undef TRY
    return rc;
}

void tsr_textenc_free(tsr_textenc *t)
{
    tsr_mems_free(&t->ids, 6);
    cl_mem w[] = {t->tok, t->pos, t->fin_g, t->fin_b, t->proj};
    tsr_mems_free(w, 5);
    tsr_stack_free(&t->stack);
    t->cap_b = t->cap_s = 0;
}
