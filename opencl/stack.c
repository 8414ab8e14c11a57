#include <stdlib.h>

#include "tsr_tower.h"

tsr_status tsr_stack_alloc_layers(tsr_stack *st, tsr_error *err)
{
    st->layers = calloc((size_t)st->n_layers, sizeof *st->layers);
    return st->layers ? TSR_OK : tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
}

tsr_status tsr_stack_reserve(tsr_ctx *ctx, tsr_stack *st, int B, int S, tsr_error *err)
{
    if (B <= st->cap_b && S <= st->cap_s)
        return TSR_OK;
    tsr_enc_scratch_free(&st->scratch);
    st->cap_b = B > st->cap_b ? B : st->cap_b;
    st->cap_s = S > st->cap_s ? S : st->cap_s;
    tsr_status rc = tsr_enc_scratch_alloc(ctx, &st->cfg, st->cap_b, st->cap_s, &st->scratch, err);
    if (rc != TSR_OK)
        st->cap_b = st->cap_s = 0;
    return rc;
}

tsr_status tsr_stack_run(tsr_ctx *ctx, tsr_stack *st, cl_mem x, int B, int S, cl_mem lens,
                         tsr_error *err)
{
    tsr_status rc = tsr_stack_reserve(ctx, st, B, S, err);
    for (int i = 0; i < st->n_layers && rc == TSR_OK; i++)
        rc = tsr_enc_layer(ctx, &st->cfg, &st->layers[i], &st->scratch, x, B, S, lens, err);
    return rc;
}

void tsr_mems_free(cl_mem *m, int n)
{
    for (int i = 0; i < n; i++) {
        tsr_buf_free(m[i]);
        m[i] = NULL;
    }
}

void tsr_stack_free(tsr_stack *st)
{
    if (st->layers)
        for (int i = 0; i < st->n_layers; i++)
            tsr_mems_free((cl_mem *)&st->layers[i], sizeof(tsr_enc_weights) / sizeof(cl_mem));
    free(st->layers);
    st->layers = NULL;
    tsr_enc_scratch_free(&st->scratch);
    st->cap_b = st->cap_s = 0;
}
