/* Internal: the one generation module every decoder uses (Whisper now, the
 * captioners next): greedy and beam search over a decoder that the caller
 * runs through hooks, with a logit-processor hook.
 *
 *   tsr_gen_params p = {vocab, eot, beams, max_new, 1.0f, np};
 *   tsr_gen_hooks h = {step, reorder, suppress, user};
 *   // the caller has run the prompt: logits (beams, V) of the next token
 *   tsr_gen_result r;
 *   tsr_generate(&p, &h, logits, &r, err);   // r.tokens[0..r.n), without eos
 *   free(r.tokens);
 *
 * Beam search keeps the best `beams` continuations of the live hypotheses
 * among the top 2 * beams candidates; a candidate ending in eos finishes a
 * hypothesis, scored by its log-probability divided by (length + 1) ^
 * length_penalty. The search stops when `beams` hypotheses have finished or
 * none is alive; without a finished one the best live hypothesis is taken.
 */
#ifndef TSR_GENERATE_H
#define TSR_GENERATE_H

#include "tsr_opencl.h"

typedef struct {
    int vocab;            /* V */
    int eos;              /* the token that ends a sequence */
    int beams;            /* 1: greedy */
    int max_new;          /* tokens to generate at most (eos not counted) */
    float length_penalty; /* beam scores divided by (length + 1) ^ length_penalty */
    int pos0;             /* decoder position of the first generated token */
} tsr_gen_params;

typedef struct {
    /* runs tokens (one per sequence, B = beams) at decoder position pos and
     * writes the next-token logits (B, V) */
    tsr_status (*step)(void *user, const int *tokens, int B, int pos, float *logits,
                       tsr_error *err);
    /* beam search: sequence b continues from src[b] */
    tsr_status (*reorder)(void *user, const int *src, int B, tsr_error *err);
    /* logit processor: edits the raw logits (V) of one sequence at generation
     * step `step` (0: the first token), given its tokens so far; may be NULL */
    void (*process)(void *user, int step, const int *seq, int len, float *logits);
    void *user;
} tsr_gen_hooks;

typedef struct {
    int *tokens;        /* malloc'd, without eos */
    int n;
    double cum_logprob; /* the sum of the chosen tokens' log-probabilities, eos included */
    int finished;       /* ended with eos */
} tsr_gen_result;

/* logits: (beams, V), the caller's scratch for every step. */
tsr_status tsr_generate(const tsr_gen_params *p, const tsr_gen_hooks *h, float *logits,
                        tsr_gen_result *out, tsr_error *err);
/* In place: v -= log(sum(exp(v))). */
void tsr_log_softmax(float *v, int n);

#endif
