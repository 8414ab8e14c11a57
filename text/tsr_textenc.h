/* Internal: the text tower built from the shared encoder tower: token and
 * position embeddings on the device (plus BERT's token type 0), then the
 * encoder tower. CLIP's text model: causal layers, the final layernorm and
 * projection of the end-of-text row. BERT: the embedding layernorm,
 * post-layernorm layers, key-length masks, every hidden state out.
 *
 *   tsr_textenc_plan(q, &cfg, B, S, &arena, &io, scratch, err);
 *   ... commit the arena ...
 *   tsr_textenc_forward(q, &cfg, &w, &io, &s, ids, lens, B, S, 1, out, err);
 */
#ifndef TSR_TEXTENC_H
#define TSR_TEXTENC_H

#include "tsr_tower.h"

typedef struct {
    int vocab, max_pos;
    int type_vocab;      /* > 0: add token type 0's embedding (BERT) */
    int eos_id;          /* pooling at the first eos_id; 2: the legacy argmax(ids) rule */
    int pool_last;       /* 1: pooling at the last row (CoCa's class token) instead */
    int pool_first;      /* 1: pooling at row 0 (RoBERTa's <s>, for its pooler) */
    int pos0;            /* position of the first token: 0, or RoBERTa's padding_idx + 1 */
    tsr_encoder_cfg enc; /* pool = 1: one row per text (CLIP), 0: hidden states (BERT) */
} tsr_textenc_cfg;

typedef struct {
    cl_mem tok;   /* (V, D) */
    cl_mem pos;   /* (max_pos, D) */
    cl_mem type0; /* (D) token type 0, or NULL */
    tsr_encoder_w enc;
} tsr_textenc_w;

typedef struct {
    cl_mem ids; /* int (B, S) */
    int *rows;  /* host (B): the pooled positions */
    tsr_encoder_io enc;
} tsr_textenc_io;

tsr_status tsr_textenc_plan(tsr_queue *q, const tsr_textenc_cfg *c, int B, int S, tsr_arena *a,
                            tsr_textenc_io *io, size_t scratch[TSR_SCRATCH_N], tsr_error *err);
void tsr_textenc_io_free(tsr_textenc_io *io);
/* ids: (B, S) padded, lens: (B) true lengths (<= S <= max_pos). out: (B,
 * proj_dim or dim) pooled (L2-normalised if l2), or (B, S, dim) hidden
 * states when the tower does not pool (rows past a text's length are
 * undefined). out NULL keeps the result on the device (io->enc.x), and then
 * ids must stay valid until the queue's next blocking call. */
tsr_status tsr_textenc_forward(tsr_queue *q, const tsr_textenc_cfg *c, const tsr_textenc_w *w,
                               tsr_textenc_io *io, tsr_enc_scratch *s, const int *ids,
                               const int *lens, int B, int S, int l2, float *out, tsr_error *err);
/* The position pooled for one sequence, as transformers' CLIPTextTransformer picks it. */
int tsr_textenc_pool_index(const tsr_textenc_cfg *c, const int *ids, int len);

#endif
