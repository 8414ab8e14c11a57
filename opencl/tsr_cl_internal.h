/* Internal to libtessera: the OpenCL context, per-caller queues with their
 * own kernel objects, buffers and arenas, kernel launchers, CLBlast GEMMs
 * and the transformer building blocks that the modality modules use. Not
 * installed.
 *
 *   tsr_queue *q = NULL;
 *   tsr_queue_create(ctx, &q, err);              // one per session (thread)
 *   tsr_arena a;
 *   tsr_arena_init(&a, ctx);
 *   tsr_arena_reserve(&a, &x, rows * dim * sizeof(float));  // measuring pass
 *   tsr_arena_reserve(&a, &y, rows * out_dim * sizeof(float));
 *   tsr_arena_commit(&a, err);                   // one allocation, x and y set
 *   tsr_buf_write_async(q, x, 0, host, rows * dim * sizeof(float), err);
 *   tsr_linear(q, x, rows, dim, w, bias, out_dim, y, TSR_ACT_GELU, err);
 *   tsr_buf_read(q, y, host_out, rows * out_dim * sizeof(float), err);  // waits
 *   tsr_arena_release(&a);
 *   tsr_queue_free(q);
 *
 * Launchers only enqueue. Only tsr_buf_read, tsr_buf_write,
 * tsr_queue_finish and tsr_k_topk (which reads its results back) wait for
 * the device, and each counts as a host synchronisation in the queue's
 * counters.
 *
 * Threads: a tsr_queue belongs to one thread at a time; kernels set their
 * arguments on the queue's own cl_kernel objects, so queues never share
 * them. The context is shared and read-only after creation.
 */
#ifndef TSR_CL_INTERNAL_H
#define TSR_CL_INTERNAL_H

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#ifndef CL_PLATFORM_NOT_FOUND_KHR
#define CL_PLATFORM_NOT_FOUND_KHR -1001 /* cl_khr_icd: the ICD loader found no platform */
#endif

#include <pthread.h>
#include <stdatomic.h>

#include "tsr_opencl.h"

/* The one TRY of the library: runs call only while rc is still TSR_OK, so a
 * sequence of steps stops at the first failure and its cleanup still runs. */
#define TSR_TRY(rc, call)                                                                        \
    do {                                                                                         \
        if ((rc) == TSR_OK)                                                                      \
            (rc) = (call);                                                                       \
    } while (0)

/* At a public entry point: err may be NULL, so point it at a local one and
 * let the code below read err->code freely. */
#define TSR_ERR_LOCAL(err)                                                                       \
    tsr_error tsr_local_err_ = {0};                                                                 \
    if (!(err))                                                                                  \
    (err) = &tsr_local_err_

enum tsr_kernel_id {
    TSR_K_LAYERNORM,
    TSR_K_L2NORM,
    TSR_K_SOFTMAX,
    TSR_K_BIAS_ACT,
    TSR_K_ADD,
    TSR_K_EMBED_TOKENS,
    TSR_K_IM2COL,
    TSR_K_IM2COL1D,
    TSR_K_VIT_EMBED,
    TSR_K_GATHER_ROWS,
    TSR_K_GEMM_TN,
    TSR_K_ATTENTION,
    TSR_K_ATTENTION_KV,
    TSR_K_KV_APPEND,
    TSR_K_TOPK_SCAN,
    TSR_K_TOPK_MERGE,
    TSR_K_IM2COL_RECT,
    TSR_K_GATHER_ROWS_PAD,
    TSR_K_GATHER_ADD_ROWS,
    TSR_K_WINDOW_ATTENTION,
    TSR_K_BATCHNORM_ACT,
    TSR_K_AFF_COMBINE,
    TSR_K_MEAN_ROWS,
    TSR_K_CLAP_MEL2IMG,
    TSR_K_GEMM_TN_F16,
    TSR_K_GEMM_TN_BF16,
    TSR_K_WIDEN_F16,
    TSR_K_WIDEN_BF16,
    TSR_K_GEMM_TN_BATCHED,
    TSR_K_PACK_PANELS,
    TSR_K_SOFTMAX_CPU,
    TSR_K_ATTENTION_KV_CPU,
    TSR_K_ATTENTION_FLASH_CPU,
    TSR_K_LAYERNORM_CPU,
    TSR_K_GEMM_TN_I8,
    TSR_K_WIDEN_I8,
    TSR_K_COUNT
};

typedef enum {
    TSR_ACT_NONE = 0,
    TSR_ACT_GELU = 1,       /* exact erf GELU */
    TSR_ACT_QUICK_GELU = 2, /* x * sigmoid(1.702 x), OpenAI CLIP */
    TSR_ACT_GELU_TANH = 3,
    TSR_ACT_RELU = 4,
    TSR_ACT_TANH = 5,
} tsr_act;

/* How tsr_k_topk splits its rows on a device (the per-device table in ctx.c). */
typedef struct {
    int items_per_cu; /* the first pass aims at this many work-items per compute unit */
    int chunk_per_k;  /* but gives each at least chunk_per_k * k * log2(2k) scores (and 64):
                         a work-item's fixed cost, filling and sorting its k, is k log k */
    int local;        /* work-group size */
    int strided;      /* 1: chunk c of a row is scores c, c + nc, c + 2 nc, ..., so that adjacent
                         work-items read adjacent scores (GPUs); 0: contiguous chunks (CPUs) */
} tsr_topk_cfg;

/* Device memory accounting. It outlives the context while any buffer does,
 * because OpenCL may release a buffer (and call back) after the context's
 * owner has let go of it; the callback touches only this block. */
typedef struct {
    atomic_int refs;
    atomic_size_t bytes; /* held in buffers now */
    atomic_size_t peak;  /* the most ever held */
} tsr_mem_acct;

struct tsr_ctx {
    atomic_int refs;          /* the creator, plus every model and session */
    cl_platform_id platform;
    cl_device_id device;
    cl_context context;
    cl_program program;
    tsr_device_info info;
    int wg;                   /* work-group size of row kernels, power of two */
    size_t align;             /* sub-buffer offsets: CL_DEVICE_MEM_BASE_ADDR_ALIGN in bytes */
    int from_cache;           /* the program binary came from disk */
    int verbose;
    int own_gemm;             /* 1: tessera's GEMM kernel (weights stored transposed) */
    int gemm_strips;          /* GT_STRIPS of gemm.cl: 32-column strips per work-item */
    int wdt;                  /* tsr_wdt: how linear layers' weights are stored on the device */
    tsr_topk_cfg topk;        /* tsr_k_topk's split of rows into chunks */
    char blast_xgemm[512];    /* the CLBlast Xgemm override applied for this context, or "" */
    long blast_mi;            /* its XGEMM_MIN_INDIRECT_SIZE override, or -1 */
    char cache_dir[900];      /* "": nothing on disk */
    char tuning[700];         /* how the GEMMs are configured, for reports */
    char warning[1400];       /* a non-fatal problem met at creation, or "" */
    tsr_mem_acct *mem;
    void (*log)(void *user, const char *msg);
    void *log_user;
    pthread_mutex_t lock;     /* serialises `util`, the context's own queue */
    struct tsr_queue *util;   /* for tsr_ctx_gemm_gflops and tuning */
};

/* A context reference for a model or session; released with tsr_ctx_free. */
tsr_ctx *tsr_ctx_retain(tsr_ctx *ctx);
/* A verbose message through the context's log callback. */
void tsr_ctx_logf(const tsr_ctx *ctx, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* What a queue has done: the launch counter. */
typedef struct {
    uint64_t launches; /* tessera kernels enqueued */
    uint64_t gemms;    /* CLBlast routine calls (each enqueues one or more kernels) */
    uint64_t syncs;    /* host waits: clFinish, blocking reads and writes */
    uint64_t buffers;  /* device buffers (and sub-buffers) created by this thread */
} tsr_counters;

/* b - a, field by field. */
tsr_counters tsr_counters_diff(tsr_counters b, tsr_counters a);

typedef struct tsr_queue {
    tsr_ctx *ctx;
    cl_command_queue q;
    cl_kernel k[TSR_K_COUNT];     /* this queue's own kernel objects */
    tsr_counters n;               /* since creation (buffers: read from the context) */
    cl_mem gemm_tmp;              /* CLBlast's temporary matrices, sized by a plan */
    size_t gemm_tmp_bytes;        /* its size */
    size_t gemm_tmp_need;         /* what the planned GEMMs need (tsr_linear_plan) */
    /* per encoder layer and per decoder step, from the last forward */
    tsr_counters per_layer, per_step;
    int holds_ctx;                /* the queue keeps its context alive */
    int gemm_strips;              /* GT_STRIPS its gemm_tn kernel was compiled with */
    int wdt;                      /* tsr_wdt of the linear weights it is given (the context's,
                                     or TSR_WDT_F32 for queues that multiply float32 data) */
    /* CLBlast with 16-bit weights: a weight widened to float32 before its GEMM */
    cl_mem wide;                  /* (N, K) floats, in the session's arena, sized by a plan */
    size_t wide_bytes, wide_need;
    cl_mem wide_own;              /* the same, allocated when no plan covered a layer */
    size_t wide_own_bytes;
} tsr_queue;

/* A queue that holds a reference to its context (sessions use these). */
tsr_status tsr_queue_create(tsr_ctx *ctx, tsr_queue **out, tsr_error *err);
/* The context's own queue, which must not keep the context alive. */
tsr_status tsr_queue_create_weak(tsr_ctx *ctx, tsr_queue **out, tsr_error *err);
/* Waits for the queue's work, then releases it and its kernels. */
void tsr_queue_free(tsr_queue *q);
tsr_counters tsr_queue_counters(const tsr_queue *q);
tsr_status tsr_queue_finish(tsr_queue *q, tsr_error *err);

/* Maps an OpenCL error code to its name. */
const char *tsr_cl_errstr(cl_int e);
tsr_status tsr_cl_fail(tsr_error *err, cl_int e, const char *what);

/* Buffers. Allocation failures report the size and the device. Every
 * buffer and sub-buffer created counts for the launch counter of the
 * creating thread. */
void tsr_buffer_created(void);
uint64_t tsr_buffers_created(void);
cl_mem tsr_buf_alloc(tsr_ctx *ctx, size_t bytes, tsr_error *err);
void tsr_buf_free(cl_mem m);
/* Blocking transfers (host synchronisations). */
tsr_status tsr_buf_write(tsr_queue *q, cl_mem m, const void *src, size_t bytes, tsr_error *err);
tsr_status tsr_buf_read(tsr_queue *q, cl_mem m, void *dst, size_t bytes, tsr_error *err);
tsr_status tsr_buf_read_at(tsr_queue *q, cl_mem m, size_t off, void *dst, size_t bytes,
                           tsr_error *err);
/* Enqueues a write without waiting: src must stay valid until the queue's
 * next blocking call (or tsr_queue_finish). */
tsr_status tsr_buf_write_async(tsr_queue *q, cl_mem m, size_t off, const void *src, size_t bytes,
                               tsr_error *err);

/* ---- arenas: measure, then allocate once ----
 * Every reserve records a slot and a size; commit makes one buffer per
 * chunk (as few as the device's largest allocation allows), carves aligned
 * sub-buffers out of it and writes them into the slots. Release frees them
 * all and clears the slots. Slots must not move between reserve and commit. */
typedef struct {
    cl_mem *slot;
    size_t bytes, off;
    int chunk;
} tsr_arena_item;

#define TSR_ARENA_CHUNKS 64
typedef struct {
    tsr_ctx *ctx;
    tsr_arena_item *items;
    int n, cap;
    cl_mem chunks[TSR_ARENA_CHUNKS];
    size_t chunk_bytes[TSR_ARENA_CHUNKS];
    int nchunks;
    int made;                /* items whose sub-buffer exists */
    size_t total;            /* bytes committed, alignment included */
    int bad;                 /* a reserve failed (out of host memory) */
} tsr_arena;

void tsr_arena_init(tsr_arena *a, tsr_ctx *ctx);
/* Records that *slot needs bytes (0 is allowed: the slot gets a small buffer). */
void tsr_arena_reserve(tsr_arena *a, cl_mem *slot, size_t bytes);
tsr_status tsr_arena_commit(tsr_arena *a, tsr_error *err);
void tsr_arena_release(tsr_arena *a);

/* ---- kernel launchers (enqueue only; shapes in comments are row-major) ---- */
tsr_status tsr_k_layernorm(tsr_queue *q, cl_mem x, cl_mem y, cl_mem g, cl_mem b, int rows,
                           int dim, float eps, tsr_error *err);
tsr_status tsr_k_l2norm(tsr_queue *q, cl_mem x, int rows, int dim, tsr_error *err);
/* s: (batch*heads*sq, sk); lens: int[batch] or NULL. */
tsr_status tsr_k_softmax(tsr_queue *q, cl_mem s, int batch, int heads, int sq, int sk,
                         float scale, int causal, cl_mem lens, tsr_error *err);
/* The same for CPU devices: one work-item per row, 16-wide; scale > 0. */
tsr_status tsr_k_softmax_cpu(tsr_queue *q, cl_mem s, int batch, int heads, int sq, int sk,
                             float scale, int causal, cl_mem lens, tsr_error *err);
tsr_status tsr_k_bias_act(tsr_queue *q, cl_mem y, cl_mem bias, int rows, int cols, tsr_act act,
                          tsr_error *err);
tsr_status tsr_k_add(tsr_queue *q, cl_mem y, cl_mem x, size_t n, tsr_error *err);
/* out (B*S, D) = tok[ids[b, s]] + pos[pos0 + s] (+ type[0] when type is not
 * NULL: BERT's token type 0). */
tsr_status tsr_k_embed_tokens(tsr_queue *q, cl_mem out, cl_mem ids, cl_mem tok, cl_mem pos,
                              cl_mem type, int B, int S, int pos0, int D, tsr_error *err);
/* Non-overlapping p x p patches of px (B, C, H, W) as rows (B*gh*gw, C*p*p). */
tsr_status tsr_k_im2col(tsr_queue *q, cl_mem px, cl_mem cols, int B, int C, int H, int W, int p,
                        tsr_error *err);
/* A kernel-3, padding-1 convolution's input as rows: cols (T_out, C*3) with
 * cols[t, c*3 + k] = in(c, t*stride + k - 1), zero outside 0..T_in-1, where
 * in(c, s) = x[c*cs + s*ss]. */
tsr_status tsr_k_im2col1d(tsr_queue *q, cl_mem x, cl_mem cols, int C, int T_in, int cs, int ss,
                          int stride, int T_out, tsr_error *err);
/* out (B, np [+1], D): [cls,] patches (B*np, D), plus positions; cls may be NULL. */
tsr_status tsr_k_vit_embed(tsr_queue *q, cl_mem out, cl_mem patches, cl_mem cls, cl_mem pos,
                           int B, int np, int D, tsr_error *err);
tsr_status tsr_k_gather_rows(tsr_queue *q, cl_mem dst, cl_mem src, cl_mem idx, int rows, int D,
                             tsr_error *err);

/* ---- windowed (Swin) blocks (swin.cl) ---- */
/* Non-overlapping ph x pw patches of `images` images as rows (images*gh*gw,
 * C*ph*pw): image i starts at float off + (i / inner) * s_outer +
 * (i % inner) * s_inner and holds C planes of H x W. */
tsr_status tsr_k_im2col_rect(tsr_queue *q, cl_mem px, cl_mem cols, int off, int inner,
                             int s_inner, int s_outer, int images, int C, int H, int W, int ph,
                             int pw, int gh, int gw, tsr_error *err);
/* dst (B, Rout, D) row r = src (B, Rin, D) row idx[r] of the same batch, or
 * zeros where idx[r] < 0; _add: dst += that row (idx[r] >= 0). */
tsr_status tsr_k_gather_rows_pad(tsr_queue *q, cl_mem dst, cl_mem src, cl_mem idx, int B,
                                 int Rout, int Rin, int D, tsr_error *err);
tsr_status tsr_k_gather_add_rows(tsr_queue *q, cl_mem dst, cl_mem src, cl_mem idx, int B,
                                 int Rout, int Rin, int D, tsr_error *err);
/* Attention inside each of `windows` windows of ws*ws tokens: qkv (windows,
 * N, 3D), out (windows, N, D), the relative position bias table
 * ((2ws-1)^2, H), region (nW, N) int or NULL (no shifted-window mask). */
#define TSR_WIN_MAX_N 256
tsr_status tsr_k_window_attention(tsr_queue *q, cl_mem qkv, cl_mem out, cl_mem table,
                                  cl_mem region, int windows, int nW, int ws, int H, int dh,
                                  float scale, tsr_error *err);
/* y (rows, C) = act((y - mean) / sqrt(var + eps) * g + b), in place. */
tsr_status tsr_k_batchnorm_act(tsr_queue *q, cl_mem y, cl_mem mean, cl_mem var, cl_mem g,
                               cl_mem b, float eps, int rows, int C, tsr_act act, tsr_error *err);
/* x = 2 x s + 2 r (1 - s), s = sigmoid(loc + glob[b]); x, r, loc (B, P, C), glob (B, C). */
tsr_status tsr_k_aff_combine(tsr_queue *q, cl_mem x, cl_mem r, cl_mem loc, cl_mem glob, int B,
                             int P, int C, tsr_error *err);
/* out (B, C) = mean over R rows of x (B, R, C). */
tsr_status tsr_k_mean_rows(tsr_queue *q, cl_mem out, cl_mem x, int B, int R, int C,
                           tsr_error *err);
/* HTSAT's image of BC spectrograms mel (BC, T, F): batch-normalised per bin,
 * bicubic (align_corners) along time to Tw = r*S frames, folded into (BC,
 * r*F, S). */
tsr_status tsr_k_clap_mel2img(tsr_queue *q, cl_mem mel, cl_mem img, cl_mem mean, cl_mem var,
                              cl_mem g, cl_mem b, float eps, int BC, int T, int F, int Tw, int S,
                              int r, tsr_error *err);

/* Top k of each row of scores (Q, N) on the device, best first; equal scores
 * (-0.0 == +0.0) go to the lower index, NaN ranks below -INFINITY. Writes idx
 * (Q, k) and val (Q, k) on the host, after one host synchronisation (the
 * call waits); val holds the scores bit for bit. 1 <= k <= min(N,
 * TSR_TOPK_MAX), N < 2^30. scratch comes from tsr_topk_plan (or holds
 * tsr_topk_scratch_bytes); the call checks its size and the scores'. For a
 * search: tsr_linear (queries, embeddings) into scores, then this.
 * Launches: one pass over the scores that splits each row into chunks,
 * then one per merge of up to 64 chunks' results (1 or 2 launches in all on
 * a 2-core CPU, 4 for a million scores on a large GPU). Every k up to the maximum works on every device (candidates live
 * in scratch, not in private memory), but a work-item's k cost k log k, so
 * large k gets fewer, longer chunks (tsr_topk_cfg in the context). */
#define TSR_TOPK_MAX 1024
tsr_status tsr_k_topk(tsr_queue *q, cl_mem scores, int Q, int N, int k, cl_mem scratch, int *idx,
                      float *val, tsr_error *err);
/* Device bytes of scratch tsr_k_topk needs on ctx's device for Q or fewer
 * rows of this N and k; 0 for invalid shapes. */
size_t tsr_topk_scratch_bytes(const tsr_ctx *ctx, int Q, int N, int k);
/* Measuring pass: checks the shape and reserves that scratch in the arena. */
tsr_status tsr_topk_plan(tsr_arena *a, cl_mem *scratch, int Q, int N, int k, tsr_error *err);

/* C = alpha * A * B^T + beta * C with offsets and leading dimensions, row-major
 * (A: MxK, B: NxK, C: MxN), through CLBlast with the queue's planned
 * temporary buffer when there is one. */
tsr_status tsr_gemm_nt(tsr_queue *q, int M, int N, int K, float alpha, cl_mem A, size_t a_off,
                       int lda, cl_mem B, size_t b_off, int ldb, float beta, cl_mem C,
                       size_t c_off, int ldc, tsr_error *err);
/* C (M, N) = act(A (M, K) . W^T + bias) with tessera's CPU kernel; Bp is the
 * (N, K) weight W packed by tsr_linear_weight_pack, in q->wdt elements. bias
 * may be NULL. */
tsr_status tsr_gemm_tn_own(tsr_queue *q, int M, int N, int K, cl_mem A, int lda, cl_mem Bp,
                           cl_mem bias, cl_mem C, int ldc, tsr_act act, tsr_error *err);
/* Attention of B sequences of packed qkv (B*S, 3D) into out (B*S, D) on CPU
 * devices, for long sequences without padding (TSR_ATT_GEMM_MIN_S on), where
 * the fused row kernel's horizontal dot products are slow:
 * - where tsr_att_flash_ok: the keys of every (sequence, head) packed into
 *   kvp (B * H panels of the multiple of 64 from S keys, dh floats each),
 *   then attention_flash_cpu (gemm_tn's register tile for the scores, the
 *   softmax in private memory, the values read in place): two launches for
 *   the whole batch, scores unused;
 * - else one sequence at a time as GEMMs: keys and values packed into kvp
 *   (2 * S * D floats), the scores Q K^T of all heads into scores (H * S * S
 *   floats) by gemm_tn_batched, softmax_rows_cpu, then P V into the heads'
 *   columns: five launches per sequence. */
tsr_status tsr_attention_gemm(tsr_queue *q, cl_mem qkv, cl_mem out, int B, int S, int H, int dh,
                              float scale, int causal, cl_mem scores, cl_mem kvp,
                              tsr_error *err);
/* 1 when attention_flash_cpu takes S positions of heads of dh. */
int tsr_att_flash_ok(int S, int dh);
/* From this length on, encoder attention without padding runs as GEMMs. */
#define TSR_ATT_GEMM_MIN_S 128
/* dst (N * K floats) = src, an (N, K) weight stored as wdt (TSR_WDT_F16,
 * _BF16 or _I8, unpacked). */
tsr_status tsr_k_widen(tsr_queue *q, cl_mem src, int wdt, cl_mem dst, int N, int K,
                       tsr_error *err);
/* Fused attention over packed qkv (B*S, 3D) into out (B*S, D), for CPU
 * devices; S <= TSR_ATT_MAX_S. lens: int[B] or NULL. */
#define TSR_ATT_MAX_S 1536
tsr_status tsr_k_attention(tsr_queue *q, cl_mem qkv, cl_mem out, int B, int S, int H, int dh,
                           float scale, int causal, cl_mem lens, tsr_error *err);
/* Attention of Sq queries against Sk keys/values in another buffer (see
 * attention.cl): q rows of q_row floats starting at q_off; keys at k_off and
 * values at v_off in rows of kv_row floats, kv_batch floats between batches
 * (0: every batch shares them). out rows of o_row floats. lens: int[B] key
 * lengths, or NULL. dh <= TSR_ATT_MAX_DH. */
#define TSR_ATT_MAX_DH 128
typedef struct {
    cl_mem q;
    int q_off, q_row;
    cl_mem kv;
    int k_off, v_off, kv_row, kv_batch;
    cl_mem out;
    int o_row;
    cl_mem lens;
    int kv_group;  /* sequences b read keys and values b / kv_group (0 or 1: b) */
} tsr_att_io;
tsr_status tsr_k_attention_kv(tsr_queue *q, const tsr_att_io *io, int B, int Sq, int Sk, int H,
                              int dh, float scale, int causal, tsr_error *err);
/* cache (B, cap, 2D) rows past..past+Sq-1 = the k and v parts of qkv (B*Sq, 3D). */
tsr_status tsr_k_kv_append(tsr_queue *q, cl_mem qkv, cl_mem cache, int B, int Sq, int D, int cap,
                           int past, tsr_error *err);

/* ---- GEMM configuration (gemm.c, tune.c) ---- */

/* Applies CLBlast parameters ("NAME=VALUE ..." for Xgemm; min_indirect < 0 keeps
 * CLBlast's own switch between its direct and indirect GEMM kernels).
 * CLBlast keeps one set of parameters per device for the whole process, so
 * the calls are serialised under one lock (see gemm.c). */
tsr_status tsr_clblast_apply_tuning(tsr_ctx *ctx, const char *xgemm, long min_indirect,
                                    tsr_error *err);
/* Chooses the GEMM for this device and configures it, in this order:
 * no_tuning leaves CLBlast's own parameters; p->xgemm for experiments; the
 * tuning file that `tessera tune` wrote for this device; the built-in
 * per-device table. p->gemm then forces the kernel. Problems with the tuning
 * file are not fatal: they fall back to the table and leave ctx->warning. */
tsr_status tsr_gemm_configure(tsr_ctx *ctx, const tsr_ctx_params *p, tsr_error *err);
/* The built-in table's choice for this device: own GEMM (1) or CLBlast (0),
 * and its Xgemm parameters ("" : CLBlast's own) and min_indirect (-1: CLBlast's). */
void tsr_gemm_table(const tsr_ctx *ctx, int *own, const char **xgemm, long *min_indirect);
/* Rebuilds the kernel program with another GT_STRIPS (1, 2, 4 or 8); on
 * failure the old program stays. Not thread-safe. Queues made before keep
 * their kernels and the strip count those were compiled with. */
tsr_status tsr_ctx_set_gemm_strips(tsr_ctx *ctx, int strips, tsr_error *err);
/* Applies the context's CLBlast overrides again (after tuning tried others)
 * and drops CLBlast's compiled kernels. Where the context applied none,
 * CLBlast keeps the parameters tried last: its defaults cannot be restored. */
tsr_status tsr_gemm_restore(tsr_ctx *ctx, tsr_error *err);

/* The tuning file of this device: <cache>/tuning/<hash of name, platform, driver>.json;
 * "" without a cache directory. */
void tsr_tuning_path(const tsr_ctx *ctx, char *out, size_t cap);
typedef struct {
    int own_gemm;      /* 1: tessera's kernel, 0: CLBlast */
    int strips;        /* own kernel's GT_STRIPS */
    char xgemm[400];   /* CLBlast Xgemm "NAME=VALUE ...", "" for CLBlast's own */
    long min_indirect; /* -1: CLBlast's own direct/indirect switch */
} tsr_gemm_choice;
#define TSR_ALWAYS_DIRECT (1L << 40) /* a min_indirect above every m*n*k */
/* "own GEMM kernel, strips 4", "CLBlast, Xgemm ..., direct kernel never", ... */
void tsr_gemm_describe(const tsr_gemm_choice *c, char *out, size_t cap);
/* 1: read into *c; 0: no file; -1: unusable, why says so. */
int tsr_tuning_read(const char *path, const tsr_device_info *info, tsr_gemm_choice *c, char *why,
                    size_t cap);

/* ---- files (files.c): the one whole-file reader of the library ---- */

/* Reads all of path (at most max bytes) into a malloc'd, NUL-terminated
 * buffer; *len gets its size (may be NULL). Errors name the file: missing,
 * unreadable, a directory, or larger than max (TSR_ERR_TOO_LARGE). */
unsigned char *tsr_read_file(const char *path, size_t max, size_t *len, tsr_error *err);
/* Writes data to path through a uniquely named temporary file and a rename,
 * so readers see the old file or the new one. Returns 1 on success. */
int tsr_write_atomic(const char *path, const void *data, size_t n);
/* Creates a directory and its missing parents (mode 0755); errors are ignored. */
void tsr_mkdirs(const char *path);
uint64_t tsr_fnv1a(uint64_t h, const void *data, size_t n);

/* ---- linear layers ---- */

/* How linear layers' weights are stored on the device (tsr_ctx_params.dtype):
 * float32, IEEE half or bfloat16. 16-bit weights are read with float32
 * arithmetic: tessera's own GEMM converts them as it loads them (vload_half,
 * or a shift for bfloat16); on the CLBlast path each weight is widened into a
 * float32 scratch buffer just before its GEMM. int8 weights are quantized at
 * load per output row (scale = the row's largest magnitude / 127, values
 * rounded to nearest), stored as the N * K integers, padding to the next 64
 * bytes, then the N float scales; the GEMM multiplies int8 by float and
 * scales each sum. */
typedef enum { TSR_WDT_F32 = 0, TSR_WDT_F16 = 1, TSR_WDT_BF16 = 2, TSR_WDT_I8 = 3 } tsr_wdt;
/* Bytes of one element (int8: without the scales). */
size_t tsr_wdt_size(int wdt);
/* "f32", "f16", "bf16" or "int8". */
const char *tsr_wdt_name(int wdt);
/* float32 to IEEE half and to bfloat16, rounding to nearest even; values
 * beyond half's range become infinities (the loader refuses them first). */
uint16_t tsr_f32_to_f16(float f);
uint16_t tsr_f32_to_bf16(float f);
float tsr_f16_to_f32(uint16_t h);
/* Bytes of a linear layer's (N, K) weight stored as wdt (int8: with its
 * scales). */
size_t tsr_linear_weight_bytes(int wdt, int N, int K);

/* The column panels of tessera's own GEMM kernel (gemm.cl's GT_N). */
#define TSR_GEMM_PANEL 64
/* Panels per work-item of tessera's own GEMM when nothing was tuned. */
#define TSR_GEMM_STRIPS_DEFAULT 1

/* Packs a torch.nn.Linear weight w (N, K) for tessera's own GEMM into dst
 * (N * K floats): panels of TSR_GEMM_PANEL columns, panel p (columns from n0 =
 * p * TSR_GEMM_PANEL, width wd = min(TSR_GEMM_PANEL, N - n0)) at dst + n0 * K,
 * its element (k, j) at k * wd + j. */
void tsr_linear_weight_pack(const float *w, int N, int K, float *dst);
/* The same for 16-bit and 8-bit elements. */
void tsr_linear_weight_pack16(const uint16_t *w, int N, int K, uint16_t *dst);
void tsr_linear_weight_pack8(const int8_t *w, int N, int K, int8_t *dst);
/* int8 per row of (N, K): scales[n] = max |w[n][:]| / 127 (0 for a zero
 * row), q = w * (127 / max) in double, rounded to nearest (ties to even),
 * within [-127, 127]. */
void tsr_quantize_rows_i8(const float *w, int N, int K, int8_t *q, float *scales);

/* Uploads a torch.nn.Linear weight (N, K) in the layout tsr_linear uses on this
 * device: as is for CLBlast, packed (tsr_linear_weight_pack) for tessera's own
 * GEMM, in q->wdt elements (converted from the float32 values w).
 * dst holds tsr_linear_weight_bytes(q->wdt, N, K). */
tsr_status tsr_linear_weight_write(tsr_queue *q, cl_mem dst, const float *w, int N, int K,
                                   tsr_error *err);
cl_mem tsr_linear_weight_upload(tsr_queue *q, const float *w, int N, int K, tsr_error *err);

/* y (M, N) = act(x (M, K) * w^T + b), w from tsr_linear_weight_upload, b may be NULL. */
tsr_status tsr_linear(tsr_queue *q, cl_mem x, int M, int K, cl_mem w, cl_mem b, int N, cl_mem y,
                      tsr_act act, tsr_error *err);
/* Measuring pass: records that linear layers of up to M rows with this N and
 * K will run on q, so that the queue's temporary buffers (CLBlast's, and the
 * widened weight of 16-bit weights) cover them. */
tsr_status tsr_linear_plan(tsr_queue *q, int M, int N, int K, tsr_error *err);
/* Reserves the temporary buffer that the plan needs in the arena. */
void tsr_linear_plan_reserve(tsr_queue *q, tsr_arena *a);

#endif
