/* The BERT encoder: word + position embeddings, layernorm, post-layernorm
 * layers with a key-length mask. */
#include <stdlib.h>

#include "tsr_bert.h"
#include "tsr_textutil.h"

tsr_status tsr_bert_init(tsr_bert *b, tsr_error *err)
{
    b->stack.cfg = (tsr_enc_cfg){b->cfg.dim, b->cfg.heads, b->cfg.ffn, b->cfg.eps, b->cfg.act, 0, 1};
    b->stack.n_layers = b->cfg.layers;
    return tsr_stack_alloc_layers(&b->stack, err);
}

static tsr_status reserve(tsr_ctx *ctx, tsr_bert *b, int B, int S, tsr_error *err)
{
    if (B <= b->cap_b && S <= b->cap_s)
        return TSR_OK;
    tsr_mems_free(&b->ids, 3);
    int nb = B > b->cap_b ? B : b->cap_b, ns = S > b->cap_s ? S : b->cap_s;
    size_t sizes[3] = {sizeof(cl_int) * nb * ns, sizeof(cl_int) * nb,
                       sizeof(float) * nb * ns * (size_t)b->cfg.dim};
    tsr_status rc = tsr_bufs_alloc(ctx, (cl_mem *const[]){&b->ids, &b->lens, &b->x}, sizes, 3, err);
    if (rc != TSR_OK) {
        b->cap_b = b->cap_s = 0;
        return rc;
    }
    b->cap_b = nb;
    b->cap_s = ns;
    return TSR_OK;
}

tsr_status tsr_bert_forward(tsr_ctx *ctx, tsr_bert *b, const int *ids, const int *lens, int B,
                            int S, float *hidden, tsr_error *err)
{
    const tsr_bert_cfg *c = &b->cfg;
    tsr_status rc = tsr_text_check_batch(ids, lens, B, S, c->max_pos, c->vocab, err);
    if (rc != TSR_OK)
        return rc;
    rc = reserve(ctx, b, B, S, err);
#define TRY(call)                                                                                \
    do {                                                                                         \
        if (rc == TSR_OK)                                                                        \
            rc = (call);                                                                         \
    } while (0)
    TRY(tsr_buf_write(ctx, b->ids, ids, sizeof(cl_int) * (size_t)B * S, err));
    TRY(tsr_buf_write(ctx, b->lens, lens, sizeof(cl_int) * (size_t)B, err));
    TRY(tsr_k_embed_tokens(ctx, b->x, b->ids, b->tok, b->pos, B, S, c->dim, err));
    TRY(tsr_k_layernorm(ctx, b->x, b->x, b->ln_g, b->ln_b, B * S, c->dim, c->eps, err));
    TRY(tsr_stack_run(ctx, &b->stack, b->x, B, S, b->lens, err));
    TRY(tsr_buf_read(ctx, b->x, hidden, sizeof(float) * (size_t)B * S * c->dim, err));
#undef TRY
    return rc;
}

void tsr_bert_free(tsr_bert *b)
{
    tsr_mems_free(&b->ids, 3);
    cl_mem w[] = {b->tok, b->pos, b->ln_g, b->ln_b};
    tsr_mems_free(w, 4);
    tsr_stack_free(&b->stack);
    b->cap_b = b->cap_s = 0;
}
