/* Internal: a pre-layernorm encoder stack with its weights and its session
 * scratch, shared by the vision and text towers.
 *
 *   tsr_stack st = {.cfg = enc_cfg, .n_layers = L};
 *   tsr_stack_alloc_layers(&st, &err);   // then fill st.layers[i] buffers
 *   tsr_stack_run(ctx, &st, x, B, S, lens, &err);
 *   tsr_stack_free(&st);
 */
#ifndef TSR_TOWER_H
#define TSR_TOWER_H

#include "tsr_cl_internal.h"

typedef struct {
    tsr_enc_cfg cfg;
    int n_layers;
    tsr_enc_weights *layers; /* n_layers */
    tsr_enc_scratch scratch; /* sized for cap_rows tokens with cap_seq keys */
    int cap_b, cap_s;
} tsr_stack;

tsr_status tsr_stack_alloc_layers(tsr_stack *st, tsr_error *err);
/* Grows the scratch to hold B sequences of S tokens. */
tsr_status tsr_stack_reserve(tsr_ctx *ctx, tsr_stack *st, int B, int S, tsr_error *err);
/* Runs all layers on x (B*S, D) in place. */
tsr_status tsr_stack_run(tsr_ctx *ctx, tsr_stack *st, cl_mem x, int B, int S, cl_mem lens,
                         tsr_error *err);
void tsr_stack_free(tsr_stack *st);

/* Frees every non-NULL cl_mem in an array of n. */
void tsr_mems_free(cl_mem *m, int n);

#endif
