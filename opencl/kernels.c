/* Buffers and kernel launchers. Launchers validate sizes, set arguments and
 * enqueue; nothing here waits except tsr_buf_read. */
#include <limits.h>
#include <stdio.h>

#include "tsr_cl_internal.h"

typedef struct {
    tsr_ctx *ctx;
    size_t bytes;
} mem_note;

static void CL_CALLBACK on_release(cl_mem m, void *user)
{
    mem_note *n = user;
    atomic_fetch_sub(&n->ctx->dev_bytes, n->bytes);
    free(n);
}

void tsr_ctx_device_memory(tsr_ctx *ctx, size_t *now, size_t *peak)
{
    *now = atomic_load(&ctx->dev_bytes);
    *peak = atomic_load(&ctx->dev_peak);
}

cl_mem tsr_buf_alloc(tsr_ctx *ctx, size_t bytes, tsr_error *err)
{
    if (bytes == 0)
        bytes = 4;
    if (ctx->info.max_alloc && bytes > ctx->info.max_alloc) {
        tsr_error_set(err, TSR_ERR_NOMEM,
                      "a buffer of %zu bytes exceeds the largest allocation of %s (%llu bytes)",
                      bytes, ctx->info.name, (unsigned long long)ctx->info.max_alloc);
        return NULL;
    }
    cl_int e;
    cl_mem m = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, bytes, NULL, &e);
    if (e != CL_SUCCESS) {
        tsr_cl_fail(err, e, "clCreateBuffer");
        tsr_error_prefix(err, "allocating %zu bytes on %s", bytes, ctx->info.name);
        return NULL;
    }
    mem_note *note = malloc(sizeof *note);
    if (note) {
        note->ctx = ctx;
        note->bytes = bytes;
        if (clSetMemObjectDestructorCallback(m, on_release, note) == CL_SUCCESS) {
            size_t now = atomic_fetch_add(&ctx->dev_bytes, bytes) + bytes;
            size_t peak = atomic_load(&ctx->dev_peak);
            while (now > peak && !atomic_compare_exchange_weak(&ctx->dev_peak, &peak, now))
                ;
        } else {
            free(note);
        }
    }
    return m;
}

tsr_status tsr_buf_write(tsr_ctx *ctx, cl_mem m, const void *src, size_t bytes, tsr_error *err)
{
    cl_int e = clEnqueueWriteBuffer(ctx->queue, m, CL_TRUE, 0, bytes, src, 0, NULL, NULL);
    return e == CL_SUCCESS ? TSR_OK : tsr_cl_fail(err, e, "clEnqueueWriteBuffer");
}

tsr_status tsr_buf_read(tsr_ctx *ctx, cl_mem m, void *dst, size_t bytes, tsr_error *err)
{
    cl_int e = clEnqueueReadBuffer(ctx->queue, m, CL_TRUE, 0, bytes, dst, 0, NULL, NULL);
    return e == CL_SUCCESS ? TSR_OK : tsr_cl_fail(err, e, "clEnqueueReadBuffer");
}

void tsr_buf_free(cl_mem m)
{
    if (m)
        clReleaseMemObject(m);
}

/* Argument setting: a tiny tagged list keeps the launchers short. */
typedef struct {
    size_t size;
    const void *ptr;
} karg;
#define KMEM(m) ((karg){sizeof(cl_mem), &(m)})
#define KINT(v) ((karg){sizeof(cl_int), &(cl_int){(cl_int)(v)}})
#define KFLT(v) ((karg){sizeof(cl_float), &(cl_float){(cl_float)(v)}})

static tsr_status launch(tsr_ctx *ctx, int kid, size_t global, size_t local, const karg *args,
                         int nargs, tsr_error *err)
{
    cl_kernel k = ctx->kernels[kid];
    for (int i = 0; i < nargs; i++) {
        cl_int e = clSetKernelArg(k, (cl_uint)i, args[i].size, args[i].ptr);
        if (e != CL_SUCCESS)
            return tsr_cl_fail(err, e, "clSetKernelArg");
    }
    if (global == 0)
        return TSR_OK;
    if (local) /* round up to a multiple of the work-group size */
        global = (global + local - 1) / local * local;
    cl_int e = clEnqueueNDRangeKernel(ctx->queue, k, 1, NULL, &global, local ? &local : NULL, 0,
                                      NULL, NULL);
    return e == CL_SUCCESS ? TSR_OK : tsr_cl_fail(err, e, "clEnqueueNDRangeKernel");
}

static tsr_status check_n(size_t n, tsr_error *err)
{
    if (n > (size_t)INT_MAX)
        return tsr_error_set(err, TSR_ERR_TOO_LARGE, "tensor of %zu elements is too large", n);
    return TSR_OK;
}

#define ELEMWISE_LOCAL 64

tsr_status tsr_k_layernorm(tsr_ctx *ctx, cl_mem x, cl_mem y, cl_mem g, cl_mem b, int rows,
                           int dim, float eps, tsr_error *err)
{
    karg a[] = {KMEM(x), KMEM(y), KMEM(g), KMEM(b), KINT(dim), KFLT(eps)};
    return launch(ctx, TSR_K_LAYERNORM, (size_t)rows * ctx->wg, ctx->wg, a, 6, err);
}

tsr_status tsr_k_l2norm(tsr_ctx *ctx, cl_mem x, int rows, int dim, tsr_error *err)
{
    karg a[] = {KMEM(x), KINT(dim)};
    return launch(ctx, TSR_K_L2NORM, (size_t)rows * ctx->wg, ctx->wg, a, 2, err);
}

tsr_status tsr_k_softmax(tsr_ctx *ctx, cl_mem s, int batch, int heads, int sq, int sk,
                         float scale, int causal, cl_mem lens, tsr_error *err)
{
    cl_mem l = lens ? lens : s; /* any valid buffer when unused */
    karg a[] = {KMEM(s),       KINT(sq), KINT(sk),        KINT(heads),
                KFLT(scale),   KINT(causal), KMEM(l), KINT(lens != NULL)};
    size_t rows = (size_t)batch * heads * sq;
    return launch(ctx, TSR_K_SOFTMAX, rows * ctx->wg, ctx->wg, a, 8, err);
}

tsr_status tsr_k_bias_act(tsr_ctx *ctx, cl_mem y, cl_mem bias, int rows, int cols, tsr_act act,
                          tsr_error *err)
{
    size_t n = (size_t)rows * cols;
    if (check_n(n, err) != TSR_OK)
        return TSR_ERR_TOO_LARGE;
    if (!bias && act == TSR_ACT_NONE)
        return TSR_OK;
    cl_mem bb = bias ? bias : y;
    karg a[] = {KMEM(y), KMEM(bb), KINT(cols), KINT(bias != NULL), KINT(act), KINT(n)};
    return launch(ctx, TSR_K_BIAS_ACT, n, ELEMWISE_LOCAL, a, 6, err);
}

tsr_status tsr_k_add(tsr_ctx *ctx, cl_mem y, cl_mem x, size_t n, tsr_error *err)
{
    if (check_n(n, err) != TSR_OK)
        return TSR_ERR_TOO_LARGE;
    karg a[] = {KMEM(y), KMEM(x), KINT(n)};
    return launch(ctx, TSR_K_ADD, n, ELEMWISE_LOCAL, a, 3, err);
}

tsr_status tsr_k_embed_tokens(tsr_ctx *ctx, cl_mem out, cl_mem ids, cl_mem tok, cl_mem pos, int B,
                              int S, int D, tsr_error *err)
{
    size_t n = (size_t)B * S * D;
    if (check_n(n, err) != TSR_OK)
        return TSR_ERR_TOO_LARGE;
    karg a[] = {KMEM(out), KMEM(ids), KMEM(tok), KMEM(pos), KINT(S), KINT(D), KINT(n)};
    return launch(ctx, TSR_K_EMBED_TOKENS, n, ELEMWISE_LOCAL, a, 7, err);
}

tsr_status tsr_k_im2col(tsr_ctx *ctx, cl_mem px, cl_mem cols, int B, int C, int H, int W, int p,
                        tsr_error *err)
{
    int gh = H / p, gw = W / p;
    size_t n = (size_t)B * gh * gw * C * p * p;
    if (check_n(n, err) != TSR_OK)
        return TSR_ERR_TOO_LARGE;
    karg a[] = {KMEM(px), KMEM(cols), KINT(C), KINT(H), KINT(W),
                KINT(p),  KINT(gh),   KINT(gw), KINT(n)};
    return launch(ctx, TSR_K_IM2COL, n, ELEMWISE_LOCAL, a, 9, err);
}

tsr_status tsr_k_vit_embed(tsr_ctx *ctx, cl_mem out, cl_mem patches, cl_mem cls, cl_mem pos,
                           int B, int np, int D, tsr_error *err)
{
    size_t n = (size_t)B * (np + 1) * D;
    if (check_n(n, err) != TSR_OK)
        return TSR_ERR_TOO_LARGE;
    karg a[] = {KMEM(out), KMEM(patches), KMEM(cls), KMEM(pos), KINT(np), KINT(D), KINT(n)};
    return launch(ctx, TSR_K_VIT_EMBED, n, ELEMWISE_LOCAL, a, 7, err);
}

tsr_status tsr_k_gather_rows(tsr_ctx *ctx, cl_mem dst, cl_mem src, cl_mem idx, int rows, int D,
                             tsr_error *err)
{
    size_t n = (size_t)rows * D;
    if (check_n(n, err) != TSR_OK)
        return TSR_ERR_TOO_LARGE;
    karg a[] = {KMEM(dst), KMEM(src), KMEM(idx), KINT(D), KINT(n)};
    return launch(ctx, TSR_K_GATHER_ROWS, n, ELEMWISE_LOCAL, a, 5, err);
}

tsr_status tsr_buf_write_at(tsr_ctx *ctx, cl_mem m, size_t off, const void *src, size_t bytes,
                            tsr_error *err)
{
    cl_int e = clEnqueueWriteBuffer(ctx->queue, m, CL_TRUE, off, bytes, src, 0, NULL, NULL);
    return e == CL_SUCCESS ? TSR_OK : tsr_cl_fail(err, e, "clEnqueueWriteBuffer");
}

tsr_status tsr_gemm_tn_own(tsr_ctx *ctx, int M, int N, int K, cl_mem A, int lda, cl_mem Bt,
                           int ldb, cl_mem bias, cl_mem C, int ldc, tsr_act act, tsr_error *err)
{
    cl_mem bb = bias ? bias : C;
    karg a[] = {KMEM(A), KMEM(Bt), KMEM(C), KMEM(bb), KINT(M), KINT(N), KINT(K),
                KINT(lda), KINT(ldb), KINT(ldc), KINT(bias != NULL), KINT(act)};
    cl_kernel k = ctx->kernels[TSR_K_GEMM_TN];
    for (int i = 0; i < 12; i++) {
        cl_int e = clSetKernelArg(k, (cl_uint)i, a[i].size, a[i].ptr);
        if (e != CL_SUCCESS)
            return tsr_cl_fail(err, e, "clSetKernelArg");
    }
    /* 6 rows by gemm_strips strips of 32 columns per work-item, as in gemm.cl */
    size_t cols = 32 * (size_t)ctx->gemm_strips;
    size_t global[2] = {(size_t)(M + 5) / 6, (N + cols - 1) / cols}, local[2] = {1, 1};
    cl_int e = clEnqueueNDRangeKernel(ctx->queue, k, 2, NULL, global, local, 0, NULL, NULL);
    return e == CL_SUCCESS ? TSR_OK : tsr_cl_fail(err, e, "clEnqueueNDRangeKernel(gemm_tn)");
}

tsr_status tsr_k_attention(tsr_ctx *ctx, cl_mem qkv, cl_mem out, int B, int S, int H, int dh,
                           float scale, int causal, cl_mem lens, tsr_error *err)
{
    size_t n = (size_t)B * H * S;
    if (check_n(n, err) != TSR_OK)
        return TSR_ERR_TOO_LARGE;
    if (S > TSR_ATT_MAX_S)
        return tsr_error_set(err, TSR_ERR_UNSUPPORTED, "sequence of %d tokens exceeds %d", S,
                             TSR_ATT_MAX_S);
    cl_mem l = lens ? lens : qkv;
    karg a[] = {KMEM(qkv),   KMEM(out),    KINT(S), KINT(H),           KINT(dh),
                KFLT(scale), KINT(causal), KMEM(l), KINT(lens != NULL), KINT(n)};
    return launch(ctx, TSR_K_ATTENTION, n, 16, a, 10, err);
}

tsr_status tsr_k_attention_kv(tsr_ctx *ctx, const tsr_att_io *io, int B, int Sq, int Sk, int H,
                              int dh, float scale, int causal, tsr_error *err)
{
    size_t n = (size_t)B * H * Sq;
    if (check_n(n, err) != TSR_OK)
        return TSR_ERR_TOO_LARGE;
    if (dh > 128)
        return tsr_error_set(err, TSR_ERR_UNSUPPORTED, "attention head size %d exceeds 128", dh);
    karg a[] = {KMEM(io->q),      KINT(io->q_off),  KINT(io->q_row),   KMEM(io->kv),
                KINT(io->k_off),  KINT(io->v_off),  KINT(io->kv_row),  KINT(io->kv_batch),
                KMEM(io->out),    KINT(io->o_row),  KINT(Sq),          KINT(Sk),
                KINT(H),          KINT(dh),         KFLT(scale),       KINT(causal),
                KINT(n)};
    return launch(ctx, TSR_K_ATTENTION_KV, n, 16, a, 17, err);
}

tsr_status tsr_k_kv_append(tsr_ctx *ctx, cl_mem qkv, cl_mem cache, int B, int Sq, int D, int cap,
                           int past, tsr_error *err)
{
    size_t n = (size_t)B * Sq * 2 * D;
    if (check_n(n, err) != TSR_OK)
        return TSR_ERR_TOO_LARGE;
    if (past + Sq > cap)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "KV cache of %d positions is full", cap);
    karg a[] = {KMEM(qkv), KMEM(cache), KINT(Sq), KINT(D), KINT(cap), KINT(past), KINT(n)};
    return launch(ctx, TSR_K_KV_APPEND, n, ELEMWISE_LOCAL, a, 7, err);
}

tsr_status tsr_buf_read_at(tsr_ctx *ctx, cl_mem m, size_t off, void *dst, size_t bytes,
                           tsr_error *err)
{
    cl_int e = clEnqueueReadBuffer(ctx->queue, m, CL_TRUE, off, bytes, dst, 0, NULL, NULL);
    return e == CL_SUCCESS ? TSR_OK : tsr_cl_fail(err, e, "clEnqueueReadBuffer");
}

tsr_status tsr_bufs_alloc(tsr_ctx *ctx, cl_mem *const *slots, const size_t *sizes, int n,
                          tsr_error *err)
{
    for (int i = 0; i < n; i++) {
        *slots[i] = tsr_buf_alloc(ctx, sizes[i], err);
        if (!*slots[i]) {
            for (int j = 0; j < i; j++) {
                tsr_buf_free(*slots[j]);
                *slots[j] = NULL;
            }
            return err ? err->code : TSR_ERR_NOMEM;
        }
    }
    return TSR_OK;
}
