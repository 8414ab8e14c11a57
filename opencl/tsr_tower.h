/* Internal: the transformer building blocks shared by every tower, on the
 * compute layer. They know nothing of images, tokens or checkpoints.
 *
 *   encoder layer  pre- or post-layernorm, causal or not, key-length masks
 *   encoder tower  [LN] -> layers -> [LN] -> [pool rows] -> [LN] -> [proj] -> [L2]
 *   decoder layer  causal self-attention over a KV cache on the device,
 *                  cross-attention over keys and values computed once, MLP
 *   decoder stack  token + position embedding on the device -> [LN] ->
 *                  layers -> [LN] -> [dense, act, LN: BERT's LM head] ->
 *                  vocabulary projection (+ bias) of each sequence's last row
 *
 * A modality module embeds its input into an encoder's io.x (patches, tokens,
 * convolutions) and runs the tower. Every buffer that a forward pass writes
 * is reserved in a session's arena by a plan function first:
 *
 *   size_t scratch[TSR_SCRATCH_N] = {0};
 *   tsr_encoder_plan(q, &cfg, B, S, &arena, &io, scratch, err);
 *   tsr_scratch_reserve(&arena, &s, scratch);
 *   tsr_linear_plan_reserve(q, &arena);
 *   tsr_arena_commit(&arena, err);
 *   ... write io.x ...
 *   tsr_encoder_run(q, &cfg, &w, &io, &s, B, S, lens, rows, 1, out, err);
 */
#ifndef TSR_TOWER_H
#define TSR_TOWER_H

#include "tsr_cl_internal.h"

/* ---- encoder layer ---- */

typedef struct {
    int dim;      /* D */
    int heads;    /* H, D % H == 0, D / H <= TSR_ATT_MAX_DH */
    int ffn;      /* F */
    float eps;
    tsr_act act;
    int causal;
    int post_ln;  /* BERT: x = LN1(x + attn(x)); x = LN2(x + mlp(x)) */
} tsr_enc_cfg;

typedef struct {
    cl_mem ln1_g, ln1_b; /* (D) */
    cl_mem qkv_w;        /* (3D, D): q, k, v stacked, linear layout */
    cl_mem qkv_b;        /* (3D) */
    cl_mem o_w, o_b;     /* (D, D), (D) */
    cl_mem ln2_g, ln2_b; /* (D) */
    cl_mem fc1_w, fc1_b; /* (F, D), (F) */
    cl_mem fc2_w, fc2_b; /* (D, F), (D) */
} tsr_enc_weights;

/* The scratch of encoder and decoder layers, shared by every tower of a
 * session (they run one after another): sized by the largest. */
enum {
    TSR_SCRATCH_H,
    TSR_SCRATCH_QKV,
    TSR_SCRATCH_ATTN,
    TSR_SCRATCH_FFN,
    TSR_SCRATCH_SCORES, /* attention as GEMMs (tsr_scratch_need_att), else 0 */
    TSR_SCRATCH_KVP,
    TSR_SCRATCH_N
};
typedef struct {
    cl_mem h;      /* (R, D) */
    cl_mem qkv;    /* (R, 3D) */
    cl_mem attn;   /* (R, D) */
    cl_mem ffn;    /* (R, F) */
    cl_mem scores; /* (H, S, S) one sequence's attention probabilities, or NULL */
    cl_mem kvp;    /* (2, H, S, dh) its keys and values packed for the GEMM, or NULL */
    size_t scores_bytes, kvp_bytes;
} tsr_enc_scratch;

/* need[i] = max(need[i], bytes of scratch buffer i for R rows of layer c). */
void tsr_scratch_need(const tsr_enc_cfg *c, int rows, size_t need[TSR_SCRATCH_N]);
/* The same for the attention of B sequences of S positions: on devices
 * where tessera's own GEMM runs, sequences from TSR_ATT_GEMM_MIN_S positions
 * on run their attention as GEMMs (tsr_attention_gemm), which needs packed
 * keys (and values and scores where the flash kernel does not apply). */
void tsr_scratch_need_att(tsr_queue *q, const tsr_enc_cfg *c, int B, int S,
                          size_t need[TSR_SCRATCH_N]);
void tsr_scratch_reserve(tsr_arena *a, tsr_enc_scratch *s, const size_t need[TSR_SCRATCH_N]);
/* 1 when tsr_enc_layer runs this attention as GEMMs (tsr_attention_gemm). */
int tsr_att_uses_gemm(const tsr_queue *q, const tsr_enc_cfg *c, const tsr_enc_scratch *s, int B,
                      int S, cl_mem lens);
/* Checks a layer configuration: heads divide the width, head size within
 * what the attention kernels take. what names the tower in the message. */
tsr_status tsr_enc_cfg_check(const tsr_enc_cfg *c, const char *what, tsr_error *err);

/* x (B*S, D) is updated in place. lens: int[B] key lengths on the device, or NULL. */
tsr_status tsr_enc_layer(tsr_queue *q, const tsr_enc_cfg *c, const tsr_enc_weights *w,
                         tsr_enc_scratch *s, cl_mem x, int B, int S, cl_mem lens,
                         tsr_error *err);

/* ---- encoder tower ---- */

typedef enum { TSR_LN_NONE, TSR_LN_ALL, TSR_LN_POOLED } tsr_ln_at;

typedef struct {
    tsr_enc_cfg layer;
    int n_layers;
    int pre_ln;          /* 1: layernorm over all tokens before the layers */
    tsr_ln_at final_ln;  /* after the layers: over all tokens, or the pooled rows only */
    int pool;            /* 1: one row per sequence comes out (which row: per call) */
    int proj_dim;        /* > 0: a bias-free projection of the pooled rows */
    int use_lens;        /* 1: key lengths mask attention (padded batches) */
} tsr_encoder_cfg;

typedef struct {
    cl_mem pre_g, pre_b;     /* (D) */
    tsr_enc_weights *layers; /* n_layers */
    cl_mem fin_g, fin_b;     /* (D) */
    cl_mem proj;             /* (P, D), linear layout */
} tsr_encoder_w;

typedef struct {
    cl_mem x;      /* (B*S, D): the embedded tokens in, the hidden states out */
    cl_mem lens;   /* int (B) */
    cl_mem rows;   /* int (B): the pooled row of each sequence */
    cl_mem pooled; /* (B, D) */
    cl_mem out;    /* (B, P) */
    int *host;     /* staging for rows and lens (2B ints); written asynchronously */
    int max_b, max_s;
} tsr_encoder_io;

/* Reserves io for B sequences of S tokens, adds the layers' scratch to
 * scratch and the linear layers to the queue's GEMM plan. */
tsr_status tsr_encoder_plan(tsr_queue *q, const tsr_encoder_cfg *c, int B, int S, tsr_arena *a,
                            tsr_encoder_io *io, size_t scratch[TSR_SCRATCH_N], tsr_error *err);
void tsr_encoder_io_free(tsr_encoder_io *io);
/* Runs the tower on io->x (B*S, D). lens: (B) token counts (NULL: all S);
 * rows: (B) the row pooled from each sequence (NULL: row 0, the class token).
 * With pooling, out receives (B, proj_dim or D), L2-normalised when l2;
 * without, the hidden states (B*S, D); out NULL leaves them in io->x. */
tsr_status tsr_encoder_run(tsr_queue *q, const tsr_encoder_cfg *c, const tsr_encoder_w *w,
                           tsr_encoder_io *io, tsr_enc_scratch *s, int B, int S, const int *lens,
                           const int *rows, int l2, float *out, tsr_error *err);

/* ---- decoder layer ---- */

typedef struct {
    int dim, heads, ffn;
    float eps;
    tsr_act act;
    int post_ln;
    int xdim;     /* the width of what cross-attention attends to (Dx); 0: dim */
    int no_self;  /* 1: no self-attention (open_clip's cross-attention blocks) */
    int no_cross; /* 1: no cross-attention (a text layer, a self-attention block) */
    int xln;      /* 1: the encoder output is layer-normed (lnkv_g, lnkv_b) before the
                   * cross-attention keys and values (open_clip's ln_1_kv) */
} tsr_dec_cfg;

typedef struct {
    cl_mem ln1_g, ln1_b, qkv_w, qkv_b, o_w, o_b;              /* self-attention, qkv (3D, D) */
    cl_mem lnx_g, lnx_b, xq_w, xq_b, xkv_w, xkv_b, xo_w, xo_b; /* cross, xkv (2D, Dx) */
    cl_mem ln2_g, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b;           /* MLP */
    cl_mem lnkv_g, lnkv_b;                                     /* (Dx): with xln */
} tsr_dec_weights;

typedef struct {
    cl_mem cache; /* (B, cap, 2D) self-attention keys and values */
    cl_mem xkv;   /* (Bx, Se, 2D) cross-attention keys and values */
    int cap, B, Bx, Se;
} tsr_dec_state;

/* The layer view of an encoder configuration (the scratch is shared). */
tsr_enc_cfg tsr_dec_enc_cfg(const tsr_dec_cfg *c);
/* Reserves the state of B sequences of up to cap tokens, cross-attending to
 * Bx encoder outputs of Se rows (0: none); Bx divides B, and B / Bx
 * consecutive sequences share each output (1: all of them; the beams of
 * one image). */
tsr_status tsr_dec_state_plan(const tsr_dec_cfg *c, int B, int cap, int Bx, int Se, tsr_arena *a,
                              tsr_dec_state *st, tsr_error *err);
/* Cross-attention keys and values from the first nx (<= Bx) encoder outputs
 * of enc (Bx*Se, Dx) (with xln, enc is the layer-normed output). */
tsr_status tsr_dec_cross_kv(tsr_queue *q, const tsr_dec_cfg *c, const tsr_dec_weights *w,
                            tsr_dec_state *st, cl_mem enc, int nx, tsr_error *err);
/* Runs Sq new tokens x (B*Sq, D) at positions past..past+Sq-1, in place, for
 * the first B sequences of the state (B <= its batch; with Bx > 1, whole
 * groups of sequences that share an encoding). */
tsr_status tsr_dec_layer(tsr_queue *q, const tsr_dec_cfg *c, const tsr_dec_weights *w,
                         tsr_dec_state *st, tsr_enc_scratch *s, cl_mem x, int B, int Sq,
                         int past, tsr_error *err);
/* Sequence b (< B) of the cache continues from sequence src[b] (beam search,
 * or copies of one prompt); only the first len positions are copied. tmp is
 * a buffer of the cache's size, swapped in. */
tsr_status tsr_dec_state_reorder(tsr_queue *q, tsr_dec_state *st, cl_mem *tmp, const int *src,
                                 int B, int len, int D, tsr_error *err);

/* ---- decoder stack (generation) ---- */

typedef struct {
    tsr_dec_cfg layer;
    int n_layers;
    int vocab;    /* V */
    int n_ctx;    /* positions */
    int final_ln; /* 1: layernorm before the vocabulary projection */
    int emb_ln;   /* 1: layernorm of the embeddings (BERT) */
    tsr_act head; /* != NONE: BERT's prediction-head transform, with this act */
    const tsr_dec_cfg *layers; /* n_layers configurations of their own (one width), or
                                * NULL: every layer is `layer` */
    float final_eps;           /* the final layernorm's eps; 0: layer.eps */
} tsr_decoder_cfg;

typedef struct {
    cl_mem tok;              /* (V, D) token embeddings */
    cl_mem pos;              /* (n_ctx, D) */
    tsr_dec_weights *layers; /* n_layers */
    cl_mem fin_g, fin_b;     /* (D) */
    cl_mem emb_g, emb_b;     /* (D) embedding layernorm */
    cl_mem head_w, head_b;   /* (D, D), (D): the head transform's dense layer */
    cl_mem head_g, head_bt;  /* (D): its layernorm */
    cl_mem proj;             /* (V, D), linear layout */
    cl_mem proj_b;           /* (V) or NULL */
} tsr_decoder_w;

typedef struct {
    tsr_dec_state *st;  /* n_layers */
    cl_mem ids;         /* int (B*max_sq) */
    cl_mem x;           /* (B*max_sq, D) */
    cl_mem rows;        /* int (B): each sequence's last row */
    cl_mem last;        /* (B, D) */
    cl_mem head;        /* (B, D): the head transform's output */
    cl_mem logits;      /* (B, V) */
    cl_mem reorder_tmp; /* one layer's cache, for beam reordering (B > 1) */
    cl_mem xin;         /* (Bx*Se, Dx): the layer-normed encodings, when a layer has xln */
    int *host;          /* staging for ids and rows */
    int max_b, max_sq, Bx, Se;
} tsr_decoder_io;

/* Reserves the decoder's io and state for B sequences fed up to max_sq
 * tokens per step, cross-attending to Bx encodings of Se rows. */
tsr_status tsr_decoder_plan(tsr_queue *q, const tsr_decoder_cfg *c, int B, int max_sq, int Bx,
                            int Se, tsr_arena *a, tsr_decoder_io *io,
                            size_t scratch[TSR_SCRATCH_N], tsr_error *err);
void tsr_decoder_io_free(tsr_decoder_io *io);
/* Every layer's cross-attention keys and values from enc (Bx*Se, Dx); _n:
 * from the first nx encodings only (a batch smaller than planned). */
tsr_status tsr_decoder_cross(tsr_queue *q, const tsr_decoder_cfg *c, const tsr_decoder_w *w,
                             tsr_decoder_io *io, cl_mem enc, tsr_error *err);
tsr_status tsr_decoder_cross_n(tsr_queue *q, const tsr_decoder_cfg *c, const tsr_decoder_w *w,
                               tsr_decoder_io *io, cl_mem enc, int nx, tsr_error *err);
/* Runs tokens (B, Sq) at positions past..past+Sq-1 of the first B sequences
 * (B <= the planned batch); logits (B, V) of each sequence's last token when
 * not NULL (one blocking read: the step's only host synchronisation). */
tsr_status tsr_decoder_step(tsr_queue *q, const tsr_decoder_cfg *c, const tsr_decoder_w *w,
                            tsr_decoder_io *io, tsr_enc_scratch *s, const int *tokens, int B,
                            int Sq, int past, float *logits, tsr_error *err);
/* Beam search: sequence b (< B) continues from src[b], whose first len
 * positions are kept. */
tsr_status tsr_decoder_reorder(tsr_queue *q, const tsr_decoder_cfg *c, tsr_decoder_io *io,
                               const int *src, int B, int len, tsr_error *err);

#endif
