/* Internal to libtessera: the OpenCL context, buffers, kernel launchers,
 * CLBlast GEMMs and the transformer building blocks that the modality
 * modules use. Not installed.
 *
 *   cl_mem x = tsr_buf_alloc(ctx, rows * dim * sizeof(float), err);
 *   tsr_buf_write(ctx, x, host, rows * dim * sizeof(float), err);
 *   tsr_k_layernorm(ctx, x, y, g, b, rows, dim, 1e-5f, err);
 *   tsr_linear(ctx, y, rows, dim, w, bias, out_dim, out, TSR_ACT_GELU, err);
 *   tsr_buf_read(ctx, out, host_out, rows * out_dim * sizeof(float), err);
 *
 * Launchers only enqueue; tsr_buf_read blocks.
 */
#ifndef TSR_CL_INTERNAL_H
#define TSR_CL_INTERNAL_H

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#ifndef CL_PLATFORM_NOT_FOUND_KHR
#define CL_PLATFORM_NOT_FOUND_KHR -1001 /* cl_khr_icd: the ICD loader found no platform */
#endif

#include <stdatomic.h>

#include "tsr_opencl.h"

enum tsr_kernel_id {
    TSR_K_LAYERNORM,
    TSR_K_L2NORM,
    TSR_K_SOFTMAX,
    TSR_K_BIAS_ACT,
    TSR_K_ADD,
    TSR_K_EMBED_TOKENS,
    TSR_K_IM2COL,
    TSR_K_VIT_EMBED,
    TSR_K_GATHER_ROWS,
    TSR_K_GEMM_TN,
    TSR_K_ATTENTION,
    TSR_K_ATTENTION_KV,
    TSR_K_KV_APPEND,
    TSR_K_COUNT
};

typedef enum {
    TSR_ACT_NONE = 0,
    TSR_ACT_GELU = 1,       /* exact erf GELU */
    TSR_ACT_QUICK_GELU = 2, /* x * sigmoid(1.702 x), OpenAI CLIP */
    TSR_ACT_GELU_TANH = 3,
} tsr_act;

struct tsr_ctx {
    cl_platform_id platform;
    cl_device_id device;
    cl_context context;
    cl_command_queue queue;
    cl_program program;
    cl_kernel kernels[TSR_K_COUNT];
    tsr_device_info info;
    int wg;            /* work-group size of row kernels, power of two */
    int from_cache;    /* program binary came from disk */
    int verbose;
    int own_gemm;             /* 1: tessera's GEMM kernel (weights stored transposed) */
    int gemm_strips;          /* GT_STRIPS of gemm.cl: 32-column strips per work-item */
    int disk_cache;           /* keep compiled programs on disk */
    char cache_dir[900];      /* "" : the default (tsr_cache_dir) */
    char tuning[700];         /* how the GEMMs are configured, for reports */
    char warning[1400];       /* a non-fatal problem met at creation, or "" */
    atomic_size_t dev_bytes;  /* device memory held in buffers now */
    atomic_size_t dev_peak;   /* the most ever held */
};

/* Maps an OpenCL error code to its name. */
const char *tsr_cl_errstr(cl_int e);
tsr_status tsr_cl_fail(tsr_error *err, cl_int e, const char *what);

/* Buffers. Allocation failures report the size and the device. */
cl_mem tsr_buf_alloc(tsr_ctx *ctx, size_t bytes, tsr_error *err);
tsr_status tsr_buf_write(tsr_ctx *ctx, cl_mem m, const void *src, size_t bytes, tsr_error *err);
tsr_status tsr_buf_write_at(tsr_ctx *ctx, cl_mem m, size_t off, const void *src, size_t bytes,
                            tsr_error *err);
tsr_status tsr_buf_read(tsr_ctx *ctx, cl_mem m, void *dst, size_t bytes, tsr_error *err);
tsr_status tsr_buf_read_at(tsr_ctx *ctx, cl_mem m, size_t off, void *dst, size_t bytes,
                           tsr_error *err);
void tsr_buf_free(cl_mem m);
/* Allocates slots[i] of sizes[i] bytes for i < n, all or none: on failure the
 * ones allocated are freed and set to NULL. */
tsr_status tsr_bufs_alloc(tsr_ctx *ctx, cl_mem *const *slots, const size_t *sizes, int n,
                          tsr_error *err);

/* Kernel launchers (enqueue only). Shapes in comments are row-major. */
tsr_status tsr_k_layernorm(tsr_ctx *ctx, cl_mem x, cl_mem y, cl_mem g, cl_mem b, int rows,
                           int dim, float eps, tsr_error *err);
tsr_status tsr_k_l2norm(tsr_ctx *ctx, cl_mem x, int rows, int dim, tsr_error *err);
/* s: (batch*heads*sq, sk); lens: int[batch] or NULL. */
tsr_status tsr_k_softmax(tsr_ctx *ctx, cl_mem s, int batch, int heads, int sq, int sk,
                         float scale, int causal, cl_mem lens, tsr_error *err);
tsr_status tsr_k_bias_act(tsr_ctx *ctx, cl_mem y, cl_mem bias, int rows, int cols, tsr_act act,
                          tsr_error *err);
tsr_status tsr_k_add(tsr_ctx *ctx, cl_mem y, cl_mem x, size_t n, tsr_error *err);
tsr_status tsr_k_embed_tokens(tsr_ctx *ctx, cl_mem out, cl_mem ids, cl_mem tok, cl_mem pos, int B,
                              int S, int D, tsr_error *err);
tsr_status tsr_k_im2col(tsr_ctx *ctx, cl_mem px, cl_mem cols, int B, int C, int H, int W, int p,
                        tsr_error *err);
tsr_status tsr_k_vit_embed(tsr_ctx *ctx, cl_mem out, cl_mem patches, cl_mem cls, cl_mem pos,
                           int B, int np, int D, tsr_error *err);
tsr_status tsr_k_gather_rows(tsr_ctx *ctx, cl_mem dst, cl_mem src, cl_mem idx, int rows, int D,
                             tsr_error *err);

/* C = alpha * A * B^T + beta * C with offsets and leading dimensions, row-major
 * (A: MxK, B: NxK, C: MxN). */
tsr_status tsr_gemm_nt(tsr_ctx *ctx, int M, int N, int K, float alpha, cl_mem A, size_t a_off,
                       int lda, cl_mem B, size_t b_off, int ldb, float beta, cl_mem C,
                       size_t c_off, int ldc, tsr_error *err);
/* C (M, N) = act(A (M, K) . Bt (K, N) + bias) with tessera's CPU kernel; Bt is
 * the transposed weight. bias may be NULL. */
tsr_status tsr_gemm_tn_own(tsr_ctx *ctx, int M, int N, int K, cl_mem A, int lda, cl_mem Bt,
                           int ldb, cl_mem bias, cl_mem C, int ldc, tsr_act act, tsr_error *err);
/* Fused attention over packed qkv (B*S, 3D) into out (B*S, D), for CPU
 * devices; S <= TSR_ATT_MAX_S. lens: int[B] or NULL. */
#define TSR_ATT_MAX_S 1536
tsr_status tsr_k_attention(tsr_ctx *ctx, cl_mem qkv, cl_mem out, int B, int S, int H, int dh,
                           float scale, int causal, cl_mem lens, tsr_error *err);
/* Attention of Sq queries against Sk keys/values in another buffer (see
 * attention.cl): q rows of q_row floats starting at q_off; keys at k_off and
 * values at v_off in rows of kv_row floats, kv_batch floats between batches
 * (0: every batch shares them). out rows of o_row floats. dh <= 128. */
typedef struct {
    cl_mem q;
    int q_off, q_row;
    cl_mem kv;
    int k_off, v_off, kv_row, kv_batch;
    cl_mem out;
    int o_row;
} tsr_att_io;
tsr_status tsr_k_attention_kv(tsr_ctx *ctx, const tsr_att_io *io, int B, int Sq, int Sk, int H,
                              int dh, float scale, int causal, tsr_error *err);
/* cache (B, cap, 2D) rows past..past+Sq-1 = the k and v parts of qkv (B*Sq, 3D). */
tsr_status tsr_k_kv_append(tsr_ctx *ctx, cl_mem qkv, cl_mem cache, int B, int Sq, int D, int cap,
                           int past, tsr_error *err);
/* Batched GEMM with per-batch offsets; tb selects B^T (1) or B (0). */
tsr_status tsr_gemm_batched(tsr_ctx *ctx, int tb, int M, int N, int K, float alpha, cl_mem A,
                            const size_t *a_off, int lda, cl_mem B, const size_t *b_off, int ldb,
                            cl_mem C, const size_t *c_off, int ldc, int count, tsr_error *err);

/* Applies CLBlast parameters ("NAME=VALUE ..." for Xgemm; min_indirect < 0 keeps
 * CLBlast's own switch between its direct and indirect GEMM kernels). */
tsr_status tsr_clblast_apply_tuning(tsr_ctx *ctx, const char *xgemm, long min_indirect,
                                    tsr_error *err);
/* Chooses the GEMM for this device and configures it, in this order:
 * TESSERA_NO_TUNING (or no_tuning) leaves CLBlast's own parameters;
 * TESSERA_XGEMM / TESSERA_XGEMM_MIN_INDIRECT for experiments; the tuning file
 * that `tessera tune` wrote for this device; the built-in per-device table.
 * TESSERA_GEMM=own|clblast then forces the kernel. Problems with the tuning
 * file are not fatal: they fall back to the table and leave ctx->warning. */
tsr_status tsr_gemm_configure(tsr_ctx *ctx, int no_tuning, tsr_error *err);
/* The built-in table's choice for this device: own GEMM (1) or CLBlast (0),
 * and its Xgemm parameters ("" : CLBlast's own) and min_indirect (-1: CLBlast's). */
void tsr_gemm_table(const tsr_ctx *ctx, int *own, const char **xgemm, long *min_indirect);
/* Rebuilds the kernel program with another GT_STRIPS (1, 2, 4 or 8). */
tsr_status tsr_ctx_set_gemm_strips(tsr_ctx *ctx, int strips, tsr_error *err);

/* The tuning file of this device: <cache>/tuning/<hash of name, platform, driver>.json */
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
/* Small file helpers shared by the program cache and the tuning file. */
unsigned char *tsr_read_all(const char *path, size_t max, size_t *len);
int tsr_write_atomic(const char *path, const void *data, size_t n);
uint64_t tsr_fnv1a(uint64_t h, const void *data, size_t n);

/* Uploads a torch.nn.Linear weight (N, K) in the layout tsr_linear uses on this
 * device: as is for CLBlast, transposed (K, N) for tessera's own GEMM. */
cl_mem tsr_linear_weight_upload(tsr_ctx *ctx, const float *w, int N, int K, tsr_error *err);

/* y (M, N) = act(x (M, K) * w^T + b), w from tsr_linear_weight_upload, b may be NULL. */
tsr_status tsr_linear(tsr_ctx *ctx, cl_mem x, int M, int K, cl_mem w, cl_mem b, int N, cl_mem y,
                      tsr_act act, tsr_error *err);

/* A transformer encoder layer: pre-layernorm (CLIP, ViT, Whisper) or
 * post-layernorm (BERT: x = LN1(x + attn(x)); x = LN2(x + mlp(x))). */
typedef struct {
    int dim;      /* D */
    int heads;    /* H, D % H == 0 */
    int ffn;      /* F */
    float eps;
    tsr_act act;
    int causal;
    int post_ln;
} tsr_enc_cfg;

typedef struct {
    cl_mem ln1_g, ln1_b; /* (D) */
    cl_mem qkv_w;        /* (3D, D): q, k, v stacked */
    cl_mem qkv_b;        /* (3D) */
    cl_mem o_w, o_b;     /* (D, D), (D) */
    cl_mem ln2_g, ln2_b; /* (D) */
    cl_mem fc1_w, fc1_b; /* (F, D), (F) */
    cl_mem fc2_w, fc2_b; /* (D, F), (D) */
} tsr_enc_weights;

typedef struct {
    cl_mem h;      /* (B*S, D) */
    cl_mem qkv;    /* (B*S, 3D) */
    cl_mem scores; /* (B*H*S, S) */
    cl_mem attn;   /* (B*S, D) */
    cl_mem ffn;    /* (B*S, F) */
} tsr_enc_scratch;

tsr_status tsr_enc_scratch_alloc(tsr_ctx *ctx, const tsr_enc_cfg *c, int B, int S,
                                 tsr_enc_scratch *s, tsr_error *err);
void tsr_enc_scratch_free(tsr_enc_scratch *s);
/* x (B*S, D) is updated in place. lens: int[B] key lengths on the device, or NULL. */
tsr_status tsr_enc_layer(tsr_ctx *ctx, const tsr_enc_cfg *c, const tsr_enc_weights *w,
                         tsr_enc_scratch *s, cl_mem x, int B, int S, cl_mem lens,
                         tsr_error *err);

/* A transformer decoder layer (Whisper, captioning decoders): causal
 * self-attention with a KV cache on the device, cross-attention over keys and
 * values computed once per input, and an MLP. Pre-layernorm (x += f(LN(x)))
 * or post-layernorm (x = LN(x + f(x))). */
typedef struct {
    int dim, heads, ffn;
    float eps;
    tsr_act act;
    int post_ln;
} tsr_dec_cfg;

typedef struct {
    cl_mem ln1_g, ln1_b, qkv_w, qkv_b, o_w, o_b;              /* self-attention, qkv (3D, D) */
    cl_mem lnx_g, lnx_b, xq_w, xq_b, xkv_w, xkv_b, xo_w, xo_b; /* cross, xkv (2D, D) */
    cl_mem ln2_g, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b;           /* MLP */
} tsr_dec_weights;

typedef struct {
    cl_mem cache; /* (B, cap, 2D) self-attention keys and values */
    cl_mem xkv;   /* (Bx, Se, 2D) cross-attention keys and values */
    int cap, B, Bx, Se;
} tsr_dec_state;

typedef struct {
    cl_mem h, qkv, attn, ffn; /* (R, D), (R, 3D), (R, D), (R, F) for R = B*Sq rows */
    int rows;
} tsr_dec_scratch;

tsr_status tsr_dec_scratch_reserve(tsr_ctx *ctx, const tsr_dec_cfg *c, int rows,
                                   tsr_dec_scratch *s, tsr_error *err);
void tsr_dec_scratch_free(tsr_dec_scratch *s);
/* Sizes the state for B sequences of up to cap tokens, cross-attending to Bx
 * (1: shared by all B, or B) encoder outputs of Se rows (0: no cross-attention). */
tsr_status tsr_dec_state_alloc(tsr_ctx *ctx, const tsr_dec_cfg *c, int B, int cap, int Bx,
                               int Se, tsr_dec_state *st, tsr_error *err);
void tsr_dec_state_free(tsr_dec_state *st);
/* Cross-attention keys and values from the encoder output enc (Bx*Se, D). */
tsr_status tsr_dec_cross_kv(tsr_ctx *ctx, const tsr_dec_cfg *c, const tsr_dec_weights *w,
                            tsr_dec_state *st, cl_mem enc, tsr_error *err);
/* Runs Sq new tokens x (B*Sq, D) at positions past..past+Sq-1, in place. */
tsr_status tsr_dec_layer(tsr_ctx *ctx, const tsr_dec_cfg *c, const tsr_dec_weights *w,
                         tsr_dec_state *st, tsr_dec_scratch *s, cl_mem x, int B, int Sq,
                         int past, tsr_error *err);
/* Keeps sequence src[b] as sequence b of the cache (beam search); tmp is a
 * buffer of the cache's size, swapped in. */
tsr_status tsr_dec_state_reorder(tsr_ctx *ctx, tsr_dec_state *st, cl_mem *tmp, const int *src,
                                 int D, tsr_error *err);

#endif
