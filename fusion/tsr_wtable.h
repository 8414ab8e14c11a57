/* Internal: one loader for every architecture's tensor-name table, as
 * llama.cpp's LLM_TENSOR_NAMES. A table row names a checkpoint tensor, the
 * slot it fills (an object and a cl_mem field's offset in it), its shape in
 * the family's symbolic dimensions, and how it is stored.
 *
 *   static const tsr_wrow rows[] = {
 *       {"vision_model.embeddings.class_embedding", NULL, OBJ_VIT,
 *        offsetof(tsr_vit_w, cls), 0, 0, {VD}, 0},
 *       {"vision_model.encoder.layers.%d.self_attn.q_proj.weight", NULL, OBJ_VIT_LAYER,
 *        offsetof(tsr_enc_weights, qkv_w), 0, 3, {VD, VD}, TSR_W_LINEAR},
 *       ...
 *   };
 *   tsr_wtable t = {rows, n, {{&m->vit, 0, 1}, {m->vit.enc.layers, sizeof(tsr_enc_weights), L}},
 *                   "", dim_fn, cfg};
 *   tsr_wtable_load(&t, q, &m->weights, st, m->name, NULL, err);
 *
 * The loader makes one measuring pass (every slot's size from the config),
 * commits the arena once, then checks each tensor's shape against the
 * config, converts it to float32 and uploads it. Parts of a stacked slot
 * (q, k, v) must follow one another in the table, part 0 first. */
#ifndef TSR_WTABLE_H
#define TSR_WTABLE_H

#include <stdint.h>

#include "tsr_cl_internal.h"
#include "tsr_st.h"

enum {
    TSR_W_LINEAR = 1,   /* a linear layer's weight (N, K...), in the layout tsr_linear uses */
    TSR_W_OPTIONAL = 2, /* absent from the checkpoint: zeros (Whisper's bias-free k_proj) */
    TSR_W_ROW0 = 4,     /* only the first row is kept (BERT's token type 0) */
    TSR_W_T = 8,        /* a 2-D tensor stored (K, N), as open_clip's `x @ proj`: its
                           dims are the stored shape, and it is transposed to (N, K) */
    TSR_W_PLACE = 16,   /* the slot holds dim(slice_len) rows (of the tensor's rows, or of
                           the whole 1-D tensor) and this tensor goes at row
                           dim(slice_from) (0 when 0); the row at 0 reserves the slot
                           (CoCa's class embedding after the token embeddings) */
};

typedef struct {
    const char *name; /* checkpoint name; "%d" stands for the layer */
    const char *alt;  /* used when name is absent (tied embeddings), or NULL */
    int obj;          /* which object of the table */
    size_t off;       /* offsetof the cl_mem in that object */
    int part, parts;  /* stacked rows: this tensor fills part of parts (0: not stacked) */
    int dims[4];      /* symbolic dimensions, resolved by the table's dim(); 0 ends the list */
    int flags;
    int slice_from;   /* slice_len != 0 (without TSR_W_PLACE): the slot holds rows */
    int slice_len;    /* [dim(slice_from) (0 when 0), + dim(slice_len)) of the tensor's
                       * first dimension (in_proj's q) */
} tsr_wrow;

typedef struct {
    void *base;    /* the object, or its first layer */
    size_t stride; /* bytes between layers; 0 for a single object */
    int count;     /* layers, or 1 */
} tsr_wobj;

#define TSR_WTABLE_OBJS 8
typedef struct {
    const tsr_wrow *rows;
    int n_rows;
    tsr_wobj obj[TSR_WTABLE_OBJS];
    const char *prefix;                      /* prepended to every name, or "" */
    int64_t (*dim)(const void *cfg, int code); /* the value of a symbolic dimension */
    const void *cfg;
} tsr_wtable;

/* st NULL fills random weights (benchmarks; rng is the generator's state). */
tsr_status tsr_wtable_load(const tsr_wtable *t, tsr_queue *q, tsr_arena *a, const tsr_st *st,
                           const char *where, uint64_t *rng, tsr_error *err);

#endif
