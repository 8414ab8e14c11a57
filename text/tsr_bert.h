/* Internal: a BERT encoder (post-layernorm), as in sentence-transformers
 * models such as all-MiniLM-L6-v2.
 *
 *   tsr_bert b = {.cfg = cfg};  // tsr_bert_init, then fusion/ fills the weights
 *   tsr_bert_forward(ctx, &b, ids, lens, B, S, hidden, &err);  // (B, S, D) on the host
 */
#ifndef TSR_BERT_H
#define TSR_BERT_H

#include "tsr_tower.h"

typedef struct {
    int vocab, max_pos, dim, heads, ffn, layers;
    float eps;
    tsr_act act;
} tsr_bert_cfg;

typedef struct {
    tsr_bert_cfg cfg;
    cl_mem tok;        /* (V, D) word embeddings */
    cl_mem pos;        /* (max_pos, D) position + token type 0 embeddings */
    cl_mem ln_g, ln_b; /* (D) embedding layernorm */
    tsr_stack stack;
    int cap_b, cap_s;
    cl_mem ids;  /* int (B, S) */
    cl_mem lens; /* int (B) */
    cl_mem x;    /* (B*S, D) */
} tsr_bert;

tsr_status tsr_bert_init(tsr_bert *b, tsr_error *err);
/* ids: (B, S) padded, lens: (B) true lengths; hidden: (B, S, D) last hidden
 * states (rows past a sequence's length are undefined). */
tsr_status tsr_bert_forward(tsr_ctx *ctx, tsr_bert *b, const int *ids, const int *lens, int B,
                            int S, float *hidden, tsr_error *err);
void tsr_bert_free(tsr_bert *b);

#endif
