/* Internal: the one generation module every decoder uses (Whisper, BLIP):
 * greedy search, random sampling and beam search with CTranslate2's
 * semantics, or greedy and beam search with HF transformers' generate()
 * semantics (hf = 1), over a decoder that the caller runs through hooks,
 * with the shared logit processors (repetition penalty, no-repeat n-grams,
 * a minimum length) and a hook for the family's own (suppression,
 * timestamp rules).
 *
 *   tsr_gen_params p = tsr_gen_default_params(vocab, eos);
 *   p.beams = 5;
 *   p.start = last_prompt_token;  // fed at position p.pos0
 *   p.max_len = 224;
 *   tsr_gen_hooks h = {step, reorder, process, NULL, user};
 *   // the caller has run the prompt before pos0 into sequence 0 of its cache
 *   tsr_gen_result r;
 *   tsr_generate(&p, &h, &r, err);   // r.tokens[0..r.n), without eos
 *   free(r.tokens);
 *
 * Every search takes steps 0 .. max_len-1; step t feeds one token per live
 * sequence at position pos0 + t and turns the logits into log-probabilities
 * after the processors ran (disabled tokens are -inf). Scores are float32
 * sums of log-probabilities, as CTranslate2 keeps them.
 * - Greedy (beams 1, temperature 0): the best token; the score includes the
 *   end token's log-probability; the hypothesis stops at eos or max_len.
 * - Sampling (beams 1, temperature T > 0): `samples` independent sequences,
 *   each token drawn from softmax(logprob / T) with a seeded generator; the
 *   score adds the drawn token's (untempered) log-probability. The best
 *   final score wins.
 * - Beam search: step 0 expands the prompt alone; each step keeps the top
 *   2*beams (beam, token) candidates; a candidate among the first `beams`
 *   that ends in eos registers a hypothesis (eos excluded from its tokens,
 *   included in its score) and its place goes to the next candidate not
 *   ending in eos; at the last step every kept candidate registers. The
 *   search ends when round(beams * patience) hypotheses are registered
 *   (with length_penalty 0: once the best candidate has ended at some step).
 * Final scores are score / length ^ length_penalty (length without eos).
 *
 * HF semantics (transformers 4.57 _beam_search, also the 4.4x scorer):
 * - The shared processors see the prompt (prefix) and the generated tokens,
 *   as HF's see input_ids; min_len bans eos until that many are generated.
 * - Greedy: as above (processors on the logits, then the best token).
 * - Beam search: log-softmax first, then the processors (no renormalising);
 *   the top 2*beams candidates; those among the first `beams` that end in
 *   eos (or reach max_len) are offered to a set of the `beams` best
 *   finished hypotheses with score / (tokens incl. eos) ^ length_penalty;
 *   the next beams are the best candidates that did not end. The search
 *   stops at max_len, when every candidate ended, with early_stopping 1
 *   once `beams` hypotheses are finished, and otherwise when the set is
 *   full and the best running beam's score / (its length, or max_len for
 *   early_stopping 2 "never" with length_penalty > 0) ^ length_penalty is
 *   no better than the worst finished one. The best finished one wins.
 * - Sampling (temperature > 0, beams 1): the processors, then HF's warpers
 *   in its order (logits / temperature, top_k, top_p), then a token drawn
 *   from the softmax with tessera's seeded generator (not torch's: the same
 *   seed gives the same sequence on every run and device, not torch's).
 *   `samples` independent sequences are drawn, returned in order; sample k
 *   has its own generator (seeded from seed and k), so the first samples do
 *   not depend on how many are drawn.
 * - n_best > 1 with beam search: the n_best best finished hypotheses, best
 *   first (HF's num_return_sequences).
 *
 * open_clip semantics (openclip = 1 with hf = 1: CoCa.generate of open_clip
 * 3.3 with transformers 4.56's BeamSearchScorer; the prefix is the start
 * token and any prompt, and lengths count it, as decoder_prompt_len 0):
 * - Beam search (_generate_beamsearch with one beam group; its groups
 *   never differ, since it adds no diversity penalty, so num_beams 6 in 3
 *   groups searches as 2 beams): the scores are sums of the processed raw
 *   logits, not of log-probabilities; the top 2*beams candidates; one that
 *   ends in eos among the first `beams` joins the hypotheses (at most
 *   `beams`, the worst dropped) with score / (prefix + tokens + 1) ^
 *   length_penalty, the others continue; a search is done once the
 *   hypotheses are full and the worst is at least the best candidate's
 *   score / (prefix + tokens + 1) ^ length_penalty; at max_len the
 *   running beams join with score / (prefix + tokens) ^ length_penalty.
 *   The best hypothesis wins (the later one on a tie).
 * - Greedy and sampling (generation_type top_k / top_p): the processors,
 *   then top_k and top_p on the untempered logits, then a draw from
 *   softmax(logits / temperature) (temperature 0: the best token); the last
 *   step (prefix + tokens + 1 = the length limit) takes eos; a sequence
 *   also ends after a `pad` token (which it keeps).
 */
#ifndef TSR_GENERATE_H
#define TSR_GENERATE_H

#include <stdint.h>

#include "tsr_opencl.h"

#define TSR_GEN_MAX_BEAMS 16

typedef struct {
    int vocab;                /* V */
    int eos;                  /* the token that ends a sequence */
    int start;                /* the token fed at step 0 */
    int pos0;                 /* its decoder position */
    int max_len;              /* steps at most (CTranslate2's max_length) */
    int beams;                /* > 1: beam search */
    float patience;           /* beam search ends after round(beams * patience) hypotheses */
    float length_penalty;     /* final score = score / length ^ length_penalty */
    float temperature;        /* 0: the best token; > 0: sampling (beams 1) */
    int samples;              /* sampling: independent sequences, the best kept */
    uint64_t seed;            /* the sampling generator's seed */
    float repetition_penalty; /* 1: off; else earlier tokens' logits are divided
                               * (positive) or multiplied (negative) by it */
    int no_repeat_ngram;      /* 0: off; else no n-gram of this size repeats */
    int min_len;              /* eos is banned until this many tokens are generated */
    int hf;                   /* 1: HF transformers' semantics (see above) */
    int early_stopping;       /* hf beam search: 0 false, 1 true, 2 "never" */
    const int *prefix;        /* the prompt the processors see first (hf), or NULL */
    int n_prefix;
    int top_k;                /* hf sampling: keep the k most likely tokens (0: all) */
    float top_p;              /* hf sampling: the smallest set reaching this mass (1: all) */
    int n_best;               /* hf: results wanted (beam: <= beams; sampling: samples) */
    int openclip;             /* hf batches: open_clip's CoCa generate() (see below); 2: its
                               * beam search even with one beam (a group of one) */
    int pad;                  /* openclip greedy and sampling: a sequence whose last token is
                               * this one (pad_id 0) has ended too; -1: none */
} tsr_gen_params;

typedef struct {
    /* runs tokens (one per sequence, B sequences) at decoder position pos and
     * writes the next-token logits (B, V) */
    tsr_status (*step)(void *user, const int *tokens, int B, int pos, float *logits,
                       tsr_error *err);
    /* sequence b (< B) of the decoder's cache continues from sequence src[b],
     * whose first len positions are kept */
    tsr_status (*reorder)(void *user, const int *src, int B, int len, tsr_error *err);
    /* the family's logit processor: edits the logits (V) of one sequence at
     * step `step` given its generated tokens so far (seq[0..len)); runs after
     * the repetition penalty and n-gram blocking; may be NULL. It may use
     * tsr_log_softmax on a copy to compare probabilities. */
    void (*process)(void *user, int step, const int *seq, int len, float *logits);
    /* sees each step's raw logits (B, V) before any processor; may be NULL;
     * not called with hf (the searches run through tsr_generate_batch) */
    void (*raw)(void *user, int step, const float *logits, int B);
    void *user;
} tsr_gen_hooks;

typedef struct {
    int *tokens;  /* malloc'd, without eos */
    int n;
    float score;  /* its final score: sum of log-probabilities / n ^ length_penalty */
    int finished; /* ended with eos (not cut at max_len) */
} tsr_gen_hyp;

typedef struct {
    int *tokens;  /* malloc'd, the best hypothesis without eos (hf sampling: the first) */
    int n;
    float score;  /* its final score: sum of log-probabilities / n ^ length_penalty */
    int finished; /* ended with eos (not cut at max_len) */
    tsr_gen_hyp more[TSR_GEN_MAX_BEAMS]; /* hf, n_best > 1: the next best, or samples */
    int n_more;
} tsr_gen_result;

/* Frees the tokens of r and its other hypotheses. */
void tsr_gen_result_free(tsr_gen_result *r);

tsr_gen_params tsr_gen_default_params(int vocab, int eos);
tsr_status tsr_generate(const tsr_gen_params *p, const tsr_gen_hooks *h, tsr_gen_result *out,
                        tsr_error *err);
/* N searches of the same prompt in lockstep on one decoder batch (hf only):
 * search i owns rows [i*R, i*R + R) of the decoder, R = beams (beam
 * search), samples (sampling) or 1; every step runs all N*R rows (rows
 * whose search ended are fed eos), and the caller has run the prompt
 * before pos0 into every row. out[i] is what tsr_generate would give for
 * search i alone (each sampling search seeded with p->seed). The raw hook
 * is not called. */
tsr_status tsr_generate_batch(const tsr_gen_params *p, int N, const tsr_gen_hooks *h,
                              tsr_gen_result *out, tsr_error *err);
struct tsr_caption_params_s;
/* The search a caption's settings ask for (hf semantics): the prompt
 * prompt[0..np) (its last token fed at position np - 1), total tokens in
 * all, the shared processors, and K = num_captions results or samples. The
 * family then sets what is its own (beams, early stopping, open_clip's). */
tsr_gen_params tsr_gen_from_caption(const struct tsr_caption_params_s *p, int vocab, int eos,
                                    const int *prompt, int np, int total);
/* Result k of r (0: the best; past the hypotheses there are: the best). */
tsr_gen_hyp tsr_gen_result_hyp(const tsr_gen_result *r, int k);
/* In place: v -= log(sum(exp(v))). */
void tsr_log_softmax(float *v, int n);

#endif
