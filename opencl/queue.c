/* Queues (one per session, each with its own kernel objects and launch
 * counters) and arenas (measure, then allocate once). */
#include <stdlib.h>
#include <string.h>

#include "tsr_cl_internal.h"

static const char *kernel_names[TSR_K_COUNT] = {
    [TSR_K_LAYERNORM] = "layernorm",       [TSR_K_L2NORM] = "l2norm",
    [TSR_K_SOFTMAX] = "softmax_rows",      [TSR_K_BIAS_ACT] = "bias_act",
    [TSR_K_ADD] = "add_inplace",           [TSR_K_EMBED_TOKENS] = "embed_tokens",
    [TSR_K_IM2COL] = "im2col_patches",     [TSR_K_IM2COL1D] = "im2col_1d",
    [TSR_K_VIT_EMBED] = "vit_embed",       [TSR_K_GATHER_ROWS] = "gather_rows",
    [TSR_K_GEMM_TN] = "gemm_tn",           [TSR_K_ATTENTION] = "attention_rows",
    [TSR_K_ATTENTION_KV] = "attention_kv", [TSR_K_KV_APPEND] = "kv_append",
    [TSR_K_TOPK_SCAN] = "topk_scan",       [TSR_K_TOPK_MERGE] = "topk_merge",
    [TSR_K_IM2COL_RECT] = "im2col_rect",   [TSR_K_GATHER_ROWS_PAD] = "gather_rows_pad",
    [TSR_K_GATHER_ADD_ROWS] = "gather_add_rows", [TSR_K_WINDOW_ATTENTION] = "window_attention",
    [TSR_K_BATCHNORM_ACT] = "batchnorm_act", [TSR_K_AFF_COMBINE] = "aff_combine",
    [TSR_K_MEAN_ROWS] = "mean_rows",       [TSR_K_CLAP_MEL2IMG] = "clap_mel2img",
    [TSR_K_GEMM_TN_F16] = "gemm_tn_f16",   [TSR_K_GEMM_TN_BF16] = "gemm_tn_bf16",
    [TSR_K_WIDEN_F16] = "widen_f16",       [TSR_K_WIDEN_BF16] = "widen_bf16",
    [TSR_K_GEMM_TN_BATCHED] = "gemm_tn_batched", [TSR_K_PACK_PANELS] = "pack_panels",
    [TSR_K_SOFTMAX_CPU] = "softmax_rows_cpu", [TSR_K_ATTENTION_KV_CPU] = "attention_kv_cpu",
    [TSR_K_ATTENTION_FLASH_CPU] = "attention_flash_cpu", [TSR_K_LAYERNORM_CPU] = "layernorm_cpu",
    [TSR_K_GEMM_TN_I8] = "gemm_tn_i8",     [TSR_K_WIDEN_I8] = "widen_i8",
};

static tsr_status queue_create(tsr_ctx *ctx, int hold, tsr_queue **out, tsr_error *err)
{
    *out = NULL;
    tsr_queue *q = calloc(1, sizeof *q);
    if (!q)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    q->ctx = ctx;
    q->gemm_strips = ctx->gemm_strips;
    q->wdt = hold ? ctx->wdt : TSR_WDT_F32; /* the context's own queue: GEMM rates, tuning */
    cl_int e;
    q->q = clCreateCommandQueue(ctx->context, ctx->device, 0, &e);
    tsr_status st = e == CL_SUCCESS ? TSR_OK : tsr_cl_fail(err, e, "clCreateCommandQueue");
    for (int k = 0; k < TSR_K_COUNT && st == TSR_OK; k++) {
        q->k[k] = clCreateKernel(ctx->program, kernel_names[k], &e);
        if (e != CL_SUCCESS)
            st = tsr_cl_fail(err, e, kernel_names[k]);
    }
    if (st != TSR_OK) {
        tsr_queue_free(q);
        return st;
    }
    if (hold) {
        q->holds_ctx = 1;
        tsr_ctx_retain(ctx);
    }
    *out = q;
    return TSR_OK;
}

tsr_status tsr_queue_create(tsr_ctx *ctx, tsr_queue **out, tsr_error *err)
{
    return queue_create(ctx, 1, out, err);
}

tsr_status tsr_queue_create_weak(tsr_ctx *ctx, tsr_queue **out, tsr_error *err)
{
    return queue_create(ctx, 0, out, err);
}

void tsr_queue_free(tsr_queue *q)
{
    if (!q)
        return;
    if (q->q)
        clFinish(q->q);
    for (int k = 0; k < TSR_K_COUNT; k++)
        if (q->k[k])
            clReleaseKernel(q->k[k]);
    tsr_buf_free(q->wide_own);
    if (q->q)
        clReleaseCommandQueue(q->q);
    tsr_ctx *ctx = q->holds_ctx ? q->ctx : NULL;
    free(q);
    tsr_ctx_free(ctx);
}

tsr_counters tsr_queue_counters(const tsr_queue *q)
{
    tsr_counters c = q->n;
    c.buffers = tsr_buffers_created();
    return c;
}

tsr_counters tsr_counters_diff(tsr_counters b, tsr_counters a)
{
    return (tsr_counters){b.launches - a.launches, b.gemms - a.gemms, b.syncs - a.syncs,
                          b.buffers - a.buffers};
}

tsr_status tsr_queue_finish(tsr_queue *q, tsr_error *err)
{
    q->n.syncs++;
    cl_int e = clFinish(q->q);
    return e == CL_SUCCESS ? TSR_OK : tsr_cl_fail(err, e, "clFinish");
}

/* ---- arenas ---- */

void tsr_arena_init(tsr_arena *a, tsr_ctx *ctx)
{
    memset(a, 0, sizeof *a);
    a->ctx = ctx;
}

void tsr_arena_reserve(tsr_arena *a, cl_mem *slot, size_t bytes)
{
    if (a->bad)
        return;
    if (a->n == a->cap) {
        int nc = a->cap ? 2 * a->cap : 64;
        tsr_arena_item *ni = realloc(a->items, sizeof *ni * (size_t)nc);
        if (!ni) {
            a->bad = 1;
            return;
        }
        a->items = ni;
        a->cap = nc;
    }
    a->items[a->n++] = (tsr_arena_item){slot, bytes ? bytes : sizeof(float), 0, 0};
}

tsr_status tsr_arena_commit(tsr_arena *a, tsr_error *err)
{
    tsr_ctx *ctx = a->ctx;
    if (a->bad)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    if (a->nchunks)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "arena committed twice");
    size_t al = ctx->align, limit = ctx->info.max_alloc ? ctx->info.max_alloc : (size_t)-1;
    /* lay the items out in order, opening a new chunk when one is full */
    size_t used = 0;
    int chunk = 0;
    for (int i = 0; i < a->n; i++) {
        tsr_arena_item *it = &a->items[i];
        if (it->bytes > limit || it->bytes > ((size_t)1 << 62))
            return tsr_error_set(err, TSR_ERR_NOMEM,
                                 "a buffer of %zu bytes exceeds the largest allocation of %s "
                                 "(%zu bytes)", it->bytes, ctx->info.name, limit);
        size_t off = (used + al - 1) / al * al;
        if (used > 0 && off + it->bytes > limit) {
            a->chunk_bytes[chunk++] = used;
            if (chunk >= TSR_ARENA_CHUNKS)
                return tsr_error_set(err, TSR_ERR_NOMEM, "%s: more than %d chunks of %zu bytes",
                                     ctx->info.name, TSR_ARENA_CHUNKS, limit);
            off = 0;
        }
        it->off = off;
        it->chunk = chunk;
        used = off + it->bytes;
    }
    if (a->n == 0)
        return TSR_OK;
    a->chunk_bytes[chunk] = used;
    a->nchunks = chunk + 1;
    a->total = 0;
    tsr_status st = TSR_OK;
    for (int c = 0; c < a->nchunks && st == TSR_OK; c++) {
        a->chunks[c] = tsr_buf_alloc(ctx, a->chunk_bytes[c], err);
        if (!a->chunks[c])
            st = err ? err->code : TSR_ERR_NOMEM;
        else
            a->total += a->chunk_bytes[c];
    }
    for (int i = 0; i < a->n && st == TSR_OK; i++) {
        tsr_arena_item *it = &a->items[i];
        cl_buffer_region r = {it->off, it->bytes};
        cl_int e;
        *it->slot = clCreateSubBuffer(a->chunks[it->chunk], CL_MEM_READ_WRITE,
                                      CL_BUFFER_CREATE_TYPE_REGION, &r, &e);
        tsr_buffer_created();
        if (e != CL_SUCCESS) {
            *it->slot = NULL;
            st = tsr_cl_fail(err, e, "clCreateSubBuffer");
        } else {
            a->made = i + 1;
        }
    }
    if (st != TSR_OK)
        tsr_arena_release(a);
    return st;
}

void tsr_arena_release(tsr_arena *a)
{
    for (int i = 0; i < a->made; i++) {
        clReleaseMemObject(*a->items[i].slot);
        *a->items[i].slot = NULL;
    }
    for (int c = 0; c < a->nchunks; c++)
        tsr_buf_free(a->chunks[c]);
    free(a->items);
    tsr_ctx *ctx = a->ctx;
    memset(a, 0, sizeof *a);
    a->ctx = ctx;
}
