/* Buffers and kernel launchers. Launchers validate sizes, set arguments on
 * the queue's own kernel objects and enqueue; nothing here waits except the
 * blocking transfers, which count as host synchronisations. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "tsr_cl_internal.h"

typedef struct {
    tsr_mem_acct *mem;
    size_t bytes;
} mem_note;

/* Runs when OpenCL destroys the buffer, possibly on one of its own threads
 * and after the context is gone: it touches only the accounting block. */
static void CL_CALLBACK on_release(cl_mem m, void *user)
{
    (void)m;
    mem_note *n = user;
    atomic_fetch_sub(&n->mem->bytes, n->bytes);
    if (atomic_fetch_sub(&n->mem->refs, 1) == 1)
        free(n->mem);
    free(n);
}

/* Buffers created by this thread: a session runs on one thread at a time,
 * so the difference over a layer is that session's, whatever other threads
 * allocate meanwhile. */
static _Thread_local uint64_t buffers_created;

void tsr_buffer_created(void) { buffers_created++; }

uint64_t tsr_buffers_created(void) { return buffers_created; }

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
    tsr_buffer_created();
    if (e != CL_SUCCESS) {
        tsr_cl_fail(err, e, "clCreateBuffer");
        tsr_error_prefix(err, "allocating %zu bytes on %s", bytes, ctx->info.name);
        return NULL;
    }
    mem_note *note = malloc(sizeof *note);
    if (note) {
        note->mem = ctx->mem;
        note->bytes = bytes;
        atomic_fetch_add(&ctx->mem->refs, 1);
        if (clSetMemObjectDestructorCallback(m, on_release, note) == CL_SUCCESS) {
            size_t now = atomic_fetch_add(&ctx->mem->bytes, bytes) + bytes;
            size_t peak = atomic_load(&ctx->mem->peak);
            while (now > peak && !atomic_compare_exchange_weak(&ctx->mem->peak, &peak, now))
                ;
        } else {
            atomic_fetch_sub(&ctx->mem->refs, 1);
            free(note);
        }
    }
    return m;
}

void tsr_buf_free(cl_mem m)
{
    if (m)
        clReleaseMemObject(m);
}

tsr_status tsr_buf_write(tsr_queue *q, cl_mem m, const void *src, size_t bytes, tsr_error *err)
{
    q->n.syncs++;
    cl_int e = clEnqueueWriteBuffer(q->q, m, CL_TRUE, 0, bytes, src, 0, NULL, NULL);
    return e == CL_SUCCESS ? TSR_OK : tsr_cl_fail(err, e, "clEnqueueWriteBuffer");
}

tsr_status tsr_buf_write_async(tsr_queue *q, cl_mem m, size_t off, const void *src, size_t bytes,
                               tsr_error *err)
{
    cl_int e = clEnqueueWriteBuffer(q->q, m, CL_FALSE, off, bytes, src, 0, NULL, NULL);
    return e == CL_SUCCESS ? TSR_OK : tsr_cl_fail(err, e, "clEnqueueWriteBuffer");
}

tsr_status tsr_buf_read_at(tsr_queue *q, cl_mem m, size_t off, void *dst, size_t bytes,
                           tsr_error *err)
{
    q->n.syncs++;
    cl_int e = clEnqueueReadBuffer(q->q, m, CL_TRUE, off, bytes, dst, 0, NULL, NULL);
    return e == CL_SUCCESS ? TSR_OK : tsr_cl_fail(err, e, "clEnqueueReadBuffer");
}

tsr_status tsr_buf_read(tsr_queue *q, cl_mem m, void *dst, size_t bytes, tsr_error *err)
{
    return tsr_buf_read_at(q, m, 0, dst, bytes, err);
}

/* Argument setting: a tiny tagged list keeps the launchers short. */
typedef struct {
    size_t size;
    const void *ptr;
} karg;
#define KMEM(m) ((karg){sizeof(cl_mem), &(m)})
#define KINT(v) ((karg){sizeof(cl_int), &(cl_int){(cl_int)(v)}})
#define KFLT(v) ((karg){sizeof(cl_float), &(cl_float){(cl_float)(v)}})
#define KLONG(v) ((karg){sizeof(cl_long), &(cl_long){(cl_long)(v)}})

/* Sets the arguments of the queue's kernel kid and enqueues it over a 1-D
 * range of global work-items (rounded up to a multiple of local), or a 2-D
 * range when global2 is given. */
static tsr_status launch2(tsr_queue *q, int kid, int dims, const size_t *global,
                          const size_t *local, const karg *args, int nargs, tsr_error *err)
{
    cl_kernel k = q->k[kid];
    for (int i = 0; i < nargs; i++) {
        cl_int e = clSetKernelArg(k, (cl_uint)i, args[i].size, args[i].ptr);
        if (e != CL_SUCCESS)
            return tsr_cl_fail(err, e, "clSetKernelArg");
    }
    q->n.launches++;
    cl_int e = clEnqueueNDRangeKernel(q->q, k, (cl_uint)dims, NULL, global, local, 0, NULL, NULL);
    return e == CL_SUCCESS ? TSR_OK : tsr_cl_fail(err, e, "clEnqueueNDRangeKernel");
}

static tsr_status launch(tsr_queue *q, int kid, size_t global, size_t local, const karg *args,
                         int nargs, tsr_error *err)
{
    if (global == 0)
        return TSR_OK;
    if (local) /* round up to a multiple of the work-group size */
        global = (global + local - 1) / local * local;
    return launch2(q, kid, 1, &global, local ? &local : NULL, args, nargs, err);
}

static tsr_status check_n(size_t n, tsr_error *err)
{
    if (n > (size_t)INT_MAX)
        return tsr_error_set(err, TSR_ERR_TOO_LARGE, "tensor of %zu elements is too large", n);
    return TSR_OK;
}

#define ELEMWISE_LOCAL 64

tsr_status tsr_k_layernorm(tsr_queue *q, cl_mem x, cl_mem y, cl_mem g, cl_mem b, int rows,
                           int dim, float eps, tsr_error *err)
{
    if (rows < 1)
        return TSR_OK;
    if (q->ctx->own_gemm) { /* CPU devices: a row per work-item */
        karg a[] = {KMEM(x), KMEM(y), KMEM(g), KMEM(b), KINT(dim), KFLT(eps), KINT(rows)};
        size_t n = (size_t)rows, one = 1;
        return launch2(q, TSR_K_LAYERNORM_CPU, 1, &n, &one, a, 7, err);
    }
    int wg = q->ctx->wg;
    karg a[] = {KMEM(x), KMEM(y), KMEM(g), KMEM(b), KINT(dim), KFLT(eps)};
    return launch(q, TSR_K_LAYERNORM, (size_t)rows * wg, wg, a, 6, err);
}

tsr_status tsr_k_l2norm(tsr_queue *q, cl_mem x, int rows, int dim, tsr_error *err)
{
    int wg = q->ctx->wg;
    karg a[] = {KMEM(x), KINT(dim)};
    return launch(q, TSR_K_L2NORM, (size_t)rows * wg, wg, a, 2, err);
}

tsr_status tsr_k_softmax(tsr_queue *q, cl_mem s, int batch, int heads, int sq, int sk,
                         float scale, int causal, cl_mem lens, tsr_error *err)
{
    int wg = q->ctx->wg;
    cl_mem l = lens ? lens : s; /* any valid buffer when unused */
    karg a[] = {KMEM(s),     KINT(sq),     KINT(sk), KINT(heads),
                KFLT(scale), KINT(causal), KMEM(l),  KINT(lens != NULL)};
    size_t rows = (size_t)batch * heads * sq;
    return launch(q, TSR_K_SOFTMAX, rows * wg, wg, a, 8, err);
}

tsr_status tsr_k_softmax_cpu(tsr_queue *q, cl_mem s, int batch, int heads, int sq, int sk,
                             float scale, int causal, cl_mem lens, tsr_error *err)
{
    size_t rows = (size_t)batch * heads * sq;
    if (rows == 0)
        return TSR_OK;
    if (check_n(rows, err) != TSR_OK || check_n(rows * sk, err) != TSR_OK)
        return TSR_ERR_TOO_LARGE;
    if (!(scale > 0.0f))
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "softmax: the scale must be positive");
    cl_mem l = lens ? lens : s;
    karg a[] = {KMEM(s),      KINT(sq), KINT(sk),           KINT(heads), KFLT(scale),
                KINT(causal), KMEM(l),  KINT(lens != NULL), KINT(rows)};
    size_t g = rows, one = 1;
    return launch2(q, TSR_K_SOFTMAX_CPU, 1, &g, &one, a, 9, err);
}

tsr_status tsr_k_bias_act(tsr_queue *q, cl_mem y, cl_mem bias, int rows, int cols, tsr_act act,
                          tsr_error *err)
{
    size_t n = (size_t)rows * cols;
    if (check_n(n, err) != TSR_OK)
        return TSR_ERR_TOO_LARGE;
    if (!bias && act == TSR_ACT_NONE)
        return TSR_OK;
    cl_mem bb = bias ? bias : y;
    karg a[] = {KMEM(y), KMEM(bb), KINT(cols), KINT(bias != NULL), KINT(act), KINT(n)};
    return launch(q, TSR_K_BIAS_ACT, n, ELEMWISE_LOCAL, a, 6, err);
}

tsr_status tsr_k_add(tsr_queue *q, cl_mem y, cl_mem x, size_t n, tsr_error *err)
{
    if (check_n(n, err) != TSR_OK)
        return TSR_ERR_TOO_LARGE;
    karg a[] = {KMEM(y), KMEM(x), KINT(n)};
    return launch(q, TSR_K_ADD, n, ELEMWISE_LOCAL, a, 3, err);
}

tsr_status tsr_k_embed_tokens(tsr_queue *q, cl_mem out, cl_mem ids, cl_mem tok, cl_mem pos,
                              cl_mem type, int B, int S, int pos0, int D, tsr_error *err)
{
    size_t n = (size_t)B * S * D;
    if (check_n(n, err) != TSR_OK)
        return TSR_ERR_TOO_LARGE;
    cl_mem t = type ? type : tok;
    karg a[] = {KMEM(out), KMEM(ids), KMEM(tok), KMEM(pos), KMEM(t), KINT(type != NULL),
                KINT(S),   KINT(pos0), KINT(D),  KINT(n)};
    return launch(q, TSR_K_EMBED_TOKENS, n, ELEMWISE_LOCAL, a, 10, err);
}

tsr_status tsr_k_im2col(tsr_queue *q, cl_mem px, cl_mem cols, int B, int C, int H, int W, int p,
                        tsr_error *err)
{
    int gh = H / p, gw = W / p;
    size_t n = (size_t)B * gh * gw * C * p * p;
    if (check_n(n, err) != TSR_OK)
        return TSR_ERR_TOO_LARGE;
    karg a[] = {KMEM(px), KMEM(cols), KINT(C),  KINT(H), KINT(W),
                KINT(p),  KINT(gh),   KINT(gw), KINT(n)};
    return launch(q, TSR_K_IM2COL, n, ELEMWISE_LOCAL, a, 9, err);
}

tsr_status tsr_k_im2col1d(tsr_queue *q, cl_mem x, cl_mem cols, int C, int T_in, int cs, int ss,
                          int stride, int T_out, tsr_error *err)
{
    size_t n = (size_t)T_out * C * 3;
    if (check_n(n, err) != TSR_OK)
        return TSR_ERR_TOO_LARGE;
    karg a[] = {KMEM(x),  KMEM(cols),   KINT(C),     KINT(T_in),
                KINT(cs), KINT(ss),     KINT(stride), KINT(n)};
    return launch(q, TSR_K_IM2COL1D, n, ELEMWISE_LOCAL, a, 8, err);
}

tsr_status tsr_k_vit_embed(tsr_queue *q, cl_mem out, cl_mem patches, cl_mem cls, cl_mem pos,
                           int B, int np, int D, tsr_error *err)
{
    int has_cls = cls != NULL;
    size_t n = (size_t)B * (np + has_cls) * D;
    if (check_n(n, err) != TSR_OK)
        return TSR_ERR_TOO_LARGE;
    cl_mem c = has_cls ? cls : pos;
    karg a[] = {KMEM(out), KMEM(patches), KMEM(c),  KMEM(pos),
                KINT(has_cls), KINT(np),  KINT(D),  KINT(n)};
    return launch(q, TSR_K_VIT_EMBED, n, ELEMWISE_LOCAL, a, 8, err);
}

tsr_status tsr_k_gather_rows(tsr_queue *q, cl_mem dst, cl_mem src, cl_mem idx, int rows, int D,
                             tsr_error *err)
{
    size_t n = (size_t)rows * D;
    if (check_n(n, err) != TSR_OK)
        return TSR_ERR_TOO_LARGE;
    karg a[] = {KMEM(dst), KMEM(src), KMEM(idx), KINT(D), KINT(n)};
    return launch(q, TSR_K_GATHER_ROWS, n, ELEMWISE_LOCAL, a, 5, err);
}

tsr_status tsr_gemm_tn_own(tsr_queue *q, int M, int N, int K, cl_mem A, int lda, cl_mem Bp,
                           cl_mem bias, cl_mem C, int ldc, tsr_act act, tsr_error *err)
{
    cl_mem bb = bias ? bias : C;
    karg a[] = {KMEM(A), KMEM(Bp), KMEM(C),   KMEM(bb),           KINT(M),  KINT(N),
                KINT(K), KINT(lda), KINT(ldc), KINT(bias != NULL), KINT(act)};
    /* 6 rows by the kernel's strips of 64-column panels per work-item, as in gemm.cl */
    size_t cols = (size_t)TSR_GEMM_PANEL * q->gemm_strips;
    size_t global[2] = {(size_t)(M + 5) / 6, (N + cols - 1) / cols}, local[2] = {1, 1};
    int kid = q->wdt == TSR_WDT_F16    ? TSR_K_GEMM_TN_F16
              : q->wdt == TSR_WDT_BF16 ? TSR_K_GEMM_TN_BF16
              : q->wdt == TSR_WDT_I8   ? TSR_K_GEMM_TN_I8
                                       : TSR_K_GEMM_TN;
    return launch2(q, kid, 2, global, local, a, 11, err);
}

/* Packs H matrices (one per head) for gemm_tn_batched: see pack_panels. */
static tsr_status pack_heads(tsr_queue *q, cl_mem src, cl_mem dst, int dst_off, int N, int K,
                             int n_valid, int off, int nz, int H, int s_b, int s_h, int rs, int cs,
                             tsr_error *err)
{
    karg a[] = {KMEM(src), KMEM(dst), KINT(dst_off), KINT(N),   KINT(K),
                KINT(n_valid), KINT(off), KINT(H),   KINT(s_b), KINT(s_h),
                KINT(rs),  KINT(cs),  KINT(nz * N * K)};
    return launch(q, TSR_K_PACK_PANELS, (size_t)nz * N * K, ELEMWISE_LOCAL, a, 13, err);
}

/* H products (one per head) of gemm_tn_batched: A + a_off + z * sa_h times
 * the packed Bp + b_off + z * sb into C + c_off + z * sc_h. */
static tsr_status gemm_heads(tsr_queue *q, int M, int N, int K, cl_mem A, int a_off, int lda,
                             int sa_h, cl_mem Bp, int b_off, int sb, cl_mem C, int c_off, int ldc,
                             int sc_h, int H, tsr_error *err)
{
    size_t cols = (size_t)TSR_GEMM_PANEL * q->gemm_strips;
    size_t global[3] = {(size_t)(M + 5) / 6, (N + cols - 1) / cols, (size_t)H};
    size_t local[3] = {1, 1, 1};
    karg a[] = {KMEM(A),     KINT(a_off), KINT(0),    KINT(sa_h), KMEM(Bp), KINT(b_off),
                KINT(sb),    KMEM(C),     KINT(c_off), KINT(0),   KINT(sc_h), KINT(H),
                KINT(M),     KINT(N),     KINT(K),    KINT(lda),  KINT(ldc)};
    return launch2(q, TSR_K_GEMM_TN_BATCHED, 3, global, local, a, 17, err);
}

/* gemm.cl's FA_MAX_S and attention.cl's ATT_MAX_S size private arrays by
 * this limit, and the flash kernel's padded key panels need a multiple of 64 */
_Static_assert(TSR_ATT_MAX_S == 1536 && TSR_ATT_MAX_S % TSR_GEMM_PANEL == 0,
               "TSR_ATT_MAX_S must match FA_MAX_S (gemm.cl) and ATT_MAX_S (attention.cl)");

int tsr_att_flash_ok(int S, int dh) { return dh % 16 == 0 && S <= TSR_ATT_MAX_S; }

tsr_status tsr_attention_gemm(tsr_queue *q, cl_mem qkv, cl_mem out, int B, int S, int H, int dh,
                              float scale, int causal, cl_mem scores, cl_mem kvp, tsr_error *err)
{
    int D = H * dh, row = 3 * D, hk = S * dh; /* hk: one head's packed keys (or values) */
    int Sp = (S + TSR_GEMM_PANEL - 1) / TSR_GEMM_PANEL * TSR_GEMM_PANEL;
    /* every offset, in elements, must fit the kernels' ints */
    if ((double)B * S * row > INT_MAX || (double)H * S * S > INT_MAX ||
        (double)B * Sp * D > INT_MAX)
        return tsr_error_set(err, TSR_ERR_TOO_LARGE, "attention over %d x %d positions of %d "
                             "heads is too large for the GEMM path", B, S, H);
    tsr_status rc = TSR_OK;
    if (tsr_att_flash_ok(S, dh)) { /* every sequence's keys packed, then one kernel */
        TSR_TRY(rc, pack_heads(q, qkv, kvp, 0, Sp, dh, S, D, B * H, H, S * row, dh, row, 1,
                               err));
        size_t global[3] = {(size_t)(S + 5) / 6, (size_t)H, (size_t)B}, local[3] = {1, 1, 1};
        karg a[] = {KMEM(qkv), KMEM(kvp), KMEM(out),   KINT(S),
                    KINT(H),   KINT(dh),  KFLT(scale), KINT(causal)};
        TSR_TRY(rc, launch2(q, TSR_K_ATTENTION_FLASH_CPU, 3, global, local, a, 8, err));
        return rc;
    }
    for (int b = 0; b < B && rc == TSR_OK; b++) { /* one sequence at a time */
        int base = b * S * row;
        /* keys: W (S, dh) per head, the rows of qkv; values: W (dh, S), its columns */
        TSR_TRY(rc, pack_heads(q, qkv, kvp, 0, S, dh, S, base + D, H, H, 0, dh, row, 1, err));
        TSR_TRY(rc, pack_heads(q, qkv, kvp, H * hk, dh, S, dh, base + 2 * D, H, H, 0, dh, 1, row,
                               err));
        /* scores (H, S, S) = Q K^T, softmax, then P V into the head's columns */
        TSR_TRY(rc, gemm_heads(q, S, S, dh, qkv, base, row, dh, kvp, 0, hk, scores, 0, S, S * S,
                               H, err));
        TSR_TRY(rc, tsr_k_softmax_cpu(q, scores, 1, H, S, S, scale, causal, NULL, err));
        TSR_TRY(rc, gemm_heads(q, S, dh, S, scores, 0, S, S * S, kvp, H * hk, hk, out, b * S * D,
                               D, dh, H, err));
    }
    return rc;
}

tsr_status tsr_k_widen(tsr_queue *q, cl_mem src, int wdt, cl_mem dst, int N, int K,
                       tsr_error *err)
{
    size_t n = (size_t)N * K;
    if (check_n(n, err) != TSR_OK)
        return TSR_ERR_TOO_LARGE;
    if (wdt == TSR_WDT_I8) {
        karg a[] = {KMEM(src), KMEM(dst), KINT(n), KINT(K)};
        return launch(q, TSR_K_WIDEN_I8, n, ELEMWISE_LOCAL, a, 4, err);
    }
    if (wdt != TSR_WDT_F16 && wdt != TSR_WDT_BF16)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "widen: not a 16-bit or int8 type");
    karg a[] = {KMEM(src), KMEM(dst), KINT(n)};
    return launch(q, wdt == TSR_WDT_F16 ? TSR_K_WIDEN_F16 : TSR_K_WIDEN_BF16, n, ELEMWISE_LOCAL,
                  a, 3, err);
}

tsr_status tsr_k_attention(tsr_queue *q, cl_mem qkv, cl_mem out, int B, int S, int H, int dh,
                           float scale, int causal, cl_mem lens, tsr_error *err)
{
    size_t n = (size_t)B * H * ((S + 3) / 4); /* four query rows per work-item */
    if (check_n(n, err) != TSR_OK)
        return TSR_ERR_TOO_LARGE;
    if (S > TSR_ATT_MAX_S)
        return tsr_error_set(err, TSR_ERR_UNSUPPORTED, "sequence of %d tokens exceeds %d", S,
                             TSR_ATT_MAX_S);
    cl_mem l = lens ? lens : qkv;
    karg a[] = {KMEM(qkv),   KMEM(out),    KINT(S), KINT(H),            KINT(dh),
                KFLT(scale), KINT(causal), KMEM(l), KINT(lens != NULL), KINT(n)};
    return launch(q, TSR_K_ATTENTION, n, 16, a, 10, err);
}

tsr_status tsr_k_attention_kv(tsr_queue *q, const tsr_att_io *io, int B, int Sq, int Sk, int H,
                              int dh, float scale, int causal, tsr_error *err)
{
    size_t n = (size_t)B * H * Sq;
    if (check_n(n, err) != TSR_OK)
        return TSR_ERR_TOO_LARGE;
    if (dh > TSR_ATT_MAX_DH)
        return tsr_error_set(err, TSR_ERR_UNSUPPORTED, "attention head size %d exceeds %d", dh,
                             TSR_ATT_MAX_DH);
    cl_mem l = io->lens ? io->lens : io->q;
    int group = io->kv_group > 1 ? io->kv_group : 1;
    karg a[] = {KMEM(io->q),     KINT(io->q_off), KINT(io->q_row),  KMEM(io->kv),
                KINT(io->k_off), KINT(io->v_off), KINT(io->kv_row), KINT(io->kv_batch),
                KINT(group),     KMEM(io->out),   KINT(io->o_row),  KINT(Sq),
                KINT(Sk),        KINT(H),         KINT(dh),         KFLT(scale),
                KINT(causal),    KMEM(l),         KINT(io->lens != NULL), KINT(n)};
    /* CPU devices: scores in private memory, where they fit */
    int kid = q->ctx->own_gemm && Sk <= TSR_ATT_MAX_S ? TSR_K_ATTENTION_KV_CPU : TSR_K_ATTENTION_KV;
    return launch(q, kid, n, 16, a, 20, err);
}

tsr_status tsr_k_kv_append(tsr_queue *q, cl_mem qkv, cl_mem cache, int B, int Sq, int D, int cap,
                           int past, tsr_error *err)
{
    size_t n = (size_t)B * Sq * 2 * D;
    if (check_n(n, err) != TSR_OK)
        return TSR_ERR_TOO_LARGE;
    if (past + Sq > cap)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "KV cache of %d positions is full", cap);
    karg a[] = {KMEM(qkv), KMEM(cache), KINT(Sq), KINT(D), KINT(cap), KINT(past), KINT(n)};
    return launch(q, TSR_K_KV_APPEND, n, ELEMWISE_LOCAL, a, 7, err);
}

/* ---- top k (topk.cl) ----
 * The first pass splits each row into nc chunks and leaves each chunk's k
 * best, sorted, in scratch; every later pass merges up to TOPK_FANIN of a
 * row's sorted runs into one, until one run per row is left. The pass that
 * leaves one writes the results. Scratch, in 8-byte units: the results (Q*k
 * indices, then Q*k scores), then two candidate areas of Q*nc1*k and Q*nc2*k,
 * which the passes write in turn (pass 3 into the first, and so on). */

#define TOPK_FANIN 64         /* sorted runs that one merge work-item reads */
#define TOPK_MAX_N (1 << 30)  /* keeps chunk arithmetic in the kernels within int */

/* Chunks per row of the first pass: items_per_cu work-items per compute unit
 * over all rows, but chunks of at least chunk_per_k * k * log2(2k) scores
 * and 64, so that scanning outweighs filling and sorting a work-item's k. */
static int topk_chunks(const tsr_ctx *ctx, int Q, int N, int k)
{
    long long log2k = 1;
    while ((1LL << log2k) < 2LL * k)
        log2k++;
    long long min_chunk = (long long)ctx->topk.chunk_per_k * k * log2k;
    min_chunk = min_chunk > 64 ? min_chunk : 64;
    long long by_size = (N + min_chunk - 1) / min_chunk;
    long long cu = ctx->info.compute_units > 0 ? ctx->info.compute_units : 1;
    long long items = (long long)ctx->topk.items_per_cu * cu;
    long long want = (items + Q - 1) / Q;
    long long nc = by_size < want ? by_size : want;
    return nc < 1 ? 1 : (int)nc;
}

/* The runs per row after merging nc runs m at a time. */
static int topk_merged(int nc, int *m)
{
    *m = nc < TOPK_FANIN ? nc : TOPK_FANIN;
    return (nc + *m - 1) / *m;
}

/* Scratch for exactly Q rows. */
static size_t topk_need(const tsr_ctx *ctx, int Q, int N, int k)
{
    int m, nc1 = topk_chunks(ctx, Q, N, k);
    int nc2 = nc1 > 1 ? topk_merged(nc1, &m) : 0;
    return sizeof(cl_ulong) * (size_t)Q * k * (1 + (size_t)nc1 + nc2);
}

static tsr_status topk_check(int Q, int N, int k, tsr_error *err)
{
    if (Q < 1 || N < 1 || N >= TOPK_MAX_N)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "top k of %d rows of %d scores: needs 1 row or more, of 1 to %d "
                             "scores",
                             Q, N, TOPK_MAX_N - 1);
    if (k < 1 || k > N)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "top %d of %d scores: k must be 1 to %d",
                             k, N, N);
    if (k > TSR_TOPK_MAX)
        return tsr_error_set(err, TSR_ERR_UNSUPPORTED, "top %d exceeds tessera's maximum k of %d",
                             k, TSR_TOPK_MAX);
    if ((size_t)Q * k > (size_t)INT_MAX / 2 || Q > INT_MAX / 2)
        return tsr_error_set(err, TSR_ERR_TOO_LARGE, "top %d of %d rows is too large", k, Q);
    return TSR_OK;
}

size_t tsr_topk_scratch_bytes(const tsr_ctx *ctx, int Q, int N, int k)
{
    if (topk_check(Q, N, k, NULL) != TSR_OK)
        return 0;
    /* Fewer rows may split into more chunks each: take the most that any
     * number of rows up to Q needs. Past items_per_cu * compute units rows,
     * every row is one chunk and the need grows with the rows. */
    long long cu = ctx->info.compute_units > 0 ? ctx->info.compute_units : 1;
    long long items = (long long)ctx->topk.items_per_cu * cu;
    size_t most = topk_need(ctx, Q, N, k);
    for (int r = 1; r < Q && r <= items; r++) {
        size_t need = topk_need(ctx, r, N, k);
        most = need > most ? need : most;
    }
    return most;
}

tsr_status tsr_topk_plan(tsr_arena *a, cl_mem *scratch, int Q, int N, int k, tsr_error *err)
{
    tsr_status st = topk_check(Q, N, k, err);
    if (st == TSR_OK)
        tsr_arena_reserve(a, scratch, tsr_topk_scratch_bytes(a->ctx, Q, N, k));
    return st;
}

tsr_status tsr_k_topk(tsr_queue *q, cl_mem scores, int Q, int N, int k, cl_mem scratch, int *idx,
                      float *val, tsr_error *err)
{
    tsr_status st = topk_check(Q, N, k, err);
    if (st != TSR_OK)
        return st;
    if (!scores || !scratch || !idx || !val)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "top k: a buffer or an output is NULL");
    const tsr_ctx *ctx = q->ctx;
    size_t have = 0, given = 0, need = topk_need(ctx, Q, N, k);
    clGetMemObjectInfo(scores, CL_MEM_SIZE, sizeof given, &given, NULL);
    clGetMemObjectInfo(scratch, CL_MEM_SIZE, sizeof have, &have, NULL);
    if (given < (size_t)Q * N * sizeof(float))
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "top k: a scores buffer of %zu bytes is smaller than %d x %d floats",
                             given, Q, N);
    if (have < need)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "top %d of %d x %d scores needs %zu bytes of scratch, got %zu "
                             "(tsr_topk_plan reserves it)",
                             k, Q, N, need, have);
    const tsr_topk_cfg *cf = &ctx->topk;
    int nc = topk_chunks(ctx, Q, N, k), chunk = (N + nc - 1) / nc;
    size_t nres = (size_t)Q * k;
    size_t area[2] = {nres, nres + (size_t)Q * nc * k}; /* the candidate areas, in ulongs */
    if (check_n((size_t)Q * nc, err) != TSR_OK)
        return TSR_ERR_TOO_LARGE;
    karg a[] = {KMEM(scores), KINT(N),       KINT(k),        KINT(chunk),   KINT(nc),
                KINT(cf->strided), KINT(Q * nc), KMEM(scratch), KLONG(area[0]), KINT(nc == 1),
                KMEM(scratch), KLONG(nres)};
    st = launch(q, TSR_K_TOPK_SCAN, (size_t)Q * nc, cf->local, a, 12, err);
    for (int src = 0, runs = nc; st == TSR_OK && runs > 1; src = !src) {
        int m, next = topk_merged(runs, &m);
        karg b[] = {KMEM(scratch), KLONG(area[src]), KINT(runs),    KINT(m),
                    KINT(k),       KINT(next),       KINT(Q * next), KMEM(scratch),
                    KLONG(area[!src]), KINT(next == 1), KMEM(scores), KINT(N),
                    KMEM(scratch), KLONG(nres)};
        st = launch(q, TSR_K_TOPK_MERGE, (size_t)Q * next, cf->local, b, 14, err);
        runs = next;
    }
    if (st != TSR_OK)
        return st;
    /* two reads, one wait: the queue is in order, so the blocking read of the
     * scores finishes after the indices' read */
    cl_int e = clEnqueueReadBuffer(q->q, scratch, CL_FALSE, 0, nres * sizeof(int), idx, 0, NULL,
                                   NULL);
    if (e != CL_SUCCESS)
        return tsr_cl_fail(err, e, "clEnqueueReadBuffer");
    st = tsr_buf_read_at(q, scratch, nres * sizeof(int), val, nres * sizeof(float), err);
    if (st != TSR_OK)
        clFinish(q->q); /* the indices' read must not outlive the call */
    return st;
}

/* ---- windowed (Swin) blocks ---- */

tsr_status tsr_k_im2col_rect(tsr_queue *q, cl_mem px, cl_mem cols, int off, int inner,
                             int s_inner, int s_outer, int images, int C, int H, int W, int ph,
                             int pw, int gh, int gw, tsr_error *err)
{
    size_t n = (size_t)images * gh * gw * C * ph * pw;
    if (inner < 1 || check_n(n, err) != TSR_OK)
        return inner < 1 ? tsr_error_set(err, TSR_ERR_INVALID_ARG, "im2col_rect: inner %d", inner)
                         : TSR_ERR_TOO_LARGE;
    karg a[] = {KMEM(px), KMEM(cols), KINT(off), KINT(inner), KINT(s_inner), KINT(s_outer),
                KINT(C),  KINT(H),    KINT(W),   KINT(ph),    KINT(pw),      KINT(gh),
                KINT(gw), KINT(n)};
    return launch(q, TSR_K_IM2COL_RECT, n, ELEMWISE_LOCAL, a, 14, err);
}

static tsr_status gather_batched(tsr_queue *q, int kid, cl_mem dst, cl_mem src, cl_mem idx, int B,
                                 int Rout, int Rin, int D, tsr_error *err)
{
    size_t n = (size_t)B * Rout * D;
    if (check_n(n, err) != TSR_OK || check_n((size_t)B * Rin * D, err) != TSR_OK)
        return TSR_ERR_TOO_LARGE;
    karg a[] = {KMEM(dst), KMEM(src), KMEM(idx), KINT(Rout), KINT(Rin), KINT(D), KINT(n)};
    return launch(q, kid, n, ELEMWISE_LOCAL, a, 7, err);
}

tsr_status tsr_k_gather_rows_pad(tsr_queue *q, cl_mem dst, cl_mem src, cl_mem idx, int B,
                                 int Rout, int Rin, int D, tsr_error *err)
{
    return gather_batched(q, TSR_K_GATHER_ROWS_PAD, dst, src, idx, B, Rout, Rin, D, err);
}

tsr_status tsr_k_gather_add_rows(tsr_queue *q, cl_mem dst, cl_mem src, cl_mem idx, int B,
                                 int Rout, int Rin, int D, tsr_error *err)
{
    return gather_batched(q, TSR_K_GATHER_ADD_ROWS, dst, src, idx, B, Rout, Rin, D, err);
}

tsr_status tsr_k_window_attention(tsr_queue *q, cl_mem qkv, cl_mem out, cl_mem table,
                                  cl_mem region, int windows, int nW, int ws, int H, int dh,
                                  float scale, tsr_error *err)
{
    if (ws < 1 || ws * ws > TSR_WIN_MAX_N || nW < 1 || H < 1 || dh < 1)
        return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                             "window attention: windows of %d x %d tokens (at most %d tokens)", ws,
                             ws, TSR_WIN_MAX_N);
    size_t n = (size_t)windows * H * ((ws * ws + 3) / 4); /* four queries per work-item */
    if (check_n((size_t)windows * ws * ws * 3 * H * dh, err) != TSR_OK)
        return TSR_ERR_TOO_LARGE;
    cl_mem reg = region ? region : table;
    karg a[] = {KMEM(qkv), KMEM(out), KMEM(table), KMEM(reg), KINT(region != NULL), KINT(nW),
                KINT(ws),  KINT(H),   KINT(dh),    KFLT(scale), KINT(n)};
    return launch(q, TSR_K_WINDOW_ATTENTION, n, 16, a, 11, err);
}

tsr_status tsr_k_batchnorm_act(tsr_queue *q, cl_mem y, cl_mem mean, cl_mem var, cl_mem g,
                               cl_mem b, float eps, int rows, int C, tsr_act act, tsr_error *err)
{
    size_t n = (size_t)rows * C;
    if (check_n(n, err) != TSR_OK)
        return TSR_ERR_TOO_LARGE;
    karg a[] = {KMEM(y), KMEM(mean), KMEM(var), KMEM(g), KMEM(b),
                KFLT(eps), KINT(C),  KINT(act), KINT(n)};
    return launch(q, TSR_K_BATCHNORM_ACT, n, ELEMWISE_LOCAL, a, 9, err);
}

tsr_status tsr_k_aff_combine(tsr_queue *q, cl_mem x, cl_mem r, cl_mem loc, cl_mem glob, int B,
                             int P, int C, tsr_error *err)
{
    size_t n = (size_t)B * P * C;
    if (check_n(n, err) != TSR_OK)
        return TSR_ERR_TOO_LARGE;
    karg a[] = {KMEM(x), KMEM(r), KMEM(loc), KMEM(glob), KINT(P), KINT(C), KINT(n)};
    return launch(q, TSR_K_AFF_COMBINE, n, ELEMWISE_LOCAL, a, 7, err);
}

tsr_status tsr_k_mean_rows(tsr_queue *q, cl_mem out, cl_mem x, int B, int R, int C,
                           tsr_error *err)
{
    size_t n = (size_t)B * C;
    if (R < 1 || check_n((size_t)B * R * C, err) != TSR_OK)
        return R < 1 ? tsr_error_set(err, TSR_ERR_INVALID_ARG, "mean of %d rows", R)
                     : TSR_ERR_TOO_LARGE;
    karg a[] = {KMEM(out), KMEM(x), KINT(R), KINT(C), KINT(n)};
    return launch(q, TSR_K_MEAN_ROWS, n, ELEMWISE_LOCAL, a, 5, err);
}

tsr_status tsr_k_clap_mel2img(tsr_queue *q, cl_mem mel, cl_mem img, cl_mem mean, cl_mem var,
                              cl_mem g, cl_mem b, float eps, int BC, int T, int F, int Tw, int S,
                              int r, tsr_error *err)
{
    if (T < 1 || T > Tw || Tw != r * S || F < 1)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "spectrogram of %d frames into an image of %d x %d frames", T, r, S);
    size_t n = (size_t)BC * r * F * S;
    if (check_n(n, err) != TSR_OK || check_n((size_t)BC * T * F, err) != TSR_OK)
        return TSR_ERR_TOO_LARGE;
    karg a[] = {KMEM(mel), KMEM(img), KMEM(mean), KMEM(var), KMEM(g), KMEM(b), KFLT(eps),
                KINT(T),   KINT(F),   KINT(Tw),   KINT(S),   KINT(r), KINT(n)};
    return launch(q, TSR_K_CLAP_MEL2IMG, n, ELEMWISE_LOCAL, a, 13, err);
}
