/* The encoder tower: optional layernorm, the layers, optional final
 * layernorm, pooling of one row per sequence, projection and L2
 * normalisation. Everything stays on the device until the result. */
#include <stdlib.h>
#include <string.h>

#include "tsr_tower.h"

tsr_status tsr_encoder_plan(tsr_queue *q, const tsr_encoder_cfg *c, int B, int S, tsr_arena *a,
                            tsr_encoder_io *io, size_t scratch[TSR_SCRATCH_N], tsr_error *err)
{
    size_t D = (size_t)c->layer.dim, P = c->proj_dim > 0 ? (size_t)c->proj_dim : D,
           f = sizeof(float), rows = (size_t)B * S;
    free(io->host);
    memset(io, 0, sizeof *io);
    io->host = malloc(sizeof(int) * 2 * (size_t)B);
    if (!io->host)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    io->max_b = B;
    io->max_s = S;
    tsr_arena_reserve(a, &io->x, rows * D * f);
    tsr_arena_reserve(a, &io->lens, (size_t)B * sizeof(cl_int));
    if (c->pool) {
        tsr_arena_reserve(a, &io->rows, (size_t)B * sizeof(cl_int));
        tsr_arena_reserve(a, &io->pooled, (size_t)B * D * f);
        if (c->proj_dim > 0)
            tsr_arena_reserve(a, &io->out, (size_t)B * P * f);
    }
    tsr_scratch_need(&c->layer, (int)rows, scratch);
    if (!c->use_lens) /* padded sequences keep the fused kernels */
        tsr_scratch_need_att(q, &c->layer, B, S, scratch);
    int d = c->layer.dim, F = c->layer.ffn;
    tsr_status st = TSR_OK;
    if (c->n_layers > 0) {
        TSR_TRY(st, tsr_linear_plan(q, (int)rows, 3 * d, d, err));
        TSR_TRY(st, tsr_linear_plan(q, (int)rows, d, d, err));
        TSR_TRY(st, tsr_linear_plan(q, (int)rows, F, d, err));
        TSR_TRY(st, tsr_linear_plan(q, (int)rows, d, F, err));
    }
    if (c->pool && c->proj_dim > 0)
        TSR_TRY(st, tsr_linear_plan(q, B, (int)P, d, err));
    return st;
}

void tsr_encoder_io_free(tsr_encoder_io *io)
{
    free(io->host);
    io->host = NULL;
}

tsr_status tsr_encoder_run(tsr_queue *q, const tsr_encoder_cfg *c, const tsr_encoder_w *w,
                           tsr_encoder_io *io, tsr_enc_scratch *s, int B, int S, const int *lens,
                           const int *rows, int l2, float *out, tsr_error *err)
{
    int D = c->layer.dim, P = c->proj_dim > 0 ? c->proj_dim : D;
    float eps = c->layer.eps;
    if (B < 1 || S < 1 || B > io->max_b || S > io->max_s)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "a batch of %d x %d tokens exceeds the planned %d x %d", B, S,
                             io->max_b, io->max_s);
    tsr_status rc = TSR_OK;
    cl_mem lens_dev = NULL;
    if (c->use_lens) {
        for (int b = 0; b < B; b++)
            io->host[B + b] = lens ? lens[b] : S;
        TSR_TRY(rc, tsr_buf_write_async(q, io->lens, 0, io->host + B, sizeof(cl_int) * B, err));
        lens_dev = io->lens;
    }
    if (c->pool) {
        for (int b = 0; b < B; b++)
            io->host[b] = b * S + (rows ? rows[b] : 0);
        TSR_TRY(rc, tsr_buf_write_async(q, io->rows, 0, io->host, sizeof(cl_int) * B, err));
    }
    if (c->pre_ln)
        TSR_TRY(rc, tsr_k_layernorm(q, io->x, io->x, w->pre_g, w->pre_b, B * S, D, eps, err));
    tsr_counters before = tsr_queue_counters(q);
    for (int i = 0; i < c->n_layers && rc == TSR_OK; i++)
        rc = tsr_enc_layer(q, &c->layer, &w->layers[i], s, io->x, B, S, lens_dev, err);
    if (rc == TSR_OK && c->n_layers > 0) {
        tsr_counters d = tsr_counters_diff(tsr_queue_counters(q), before);
        uint64_t L = (uint64_t)c->n_layers;
        q->per_layer = (tsr_counters){d.launches / L, d.gemms / L, d.syncs / L, d.buffers / L};
    }
    if (c->final_ln == TSR_LN_ALL)
        TSR_TRY(rc, tsr_k_layernorm(q, io->x, io->x, w->fin_g, w->fin_b, B * S, D, eps, err));
    if (!c->pool) {
        if (out)
            TSR_TRY(rc, tsr_buf_read(q, io->x, out, sizeof(float) * (size_t)B * S * D, err));
        else if (rc != TSR_OK) /* the staging above may still be in flight */
            tsr_queue_finish(q, NULL);
        return rc;
    }
    TSR_TRY(rc, tsr_k_gather_rows(q, io->pooled, io->x, io->rows, B, D, err));
    if (c->final_ln == TSR_LN_POOLED)
        TSR_TRY(rc, tsr_k_layernorm(q, io->pooled, io->pooled, w->fin_g, w->fin_b, B, D, eps,
                                    err));
    cl_mem res = io->pooled;
    if (c->proj_dim > 0) {
        TSR_TRY(rc, tsr_linear(q, io->pooled, B, D, w->proj, NULL, P, io->out, TSR_ACT_NONE,
                               err));
        res = io->out;
    }
    if (l2)
        TSR_TRY(rc, tsr_k_l2norm(q, res, B, P, err));
    if (out)
        TSR_TRY(rc, tsr_buf_read(q, res, out, sizeof(float) * (size_t)B * P, err));
    if (rc != TSR_OK)
        tsr_queue_finish(q, NULL);
    return rc;
}
