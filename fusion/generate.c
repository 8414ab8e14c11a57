/* Greedy search, sampling and beam search for every decoder, through the
 * caller's hooks, following CTranslate2's decoding (see tsr_generate.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tsr_fusion.h"
#include "tsr_generate.h"

tsr_gen_params tsr_gen_default_params(int vocab, int eos)
{
    return (tsr_gen_params){.vocab = vocab,
                            .eos = eos,
                            .max_len = 1,
                            .beams = 1,
                            .patience = 1.0f,
                            .length_penalty = 1.0f,
                            .samples = 1,
                            .repetition_penalty = 1.0f,
                            .top_p = 1.0f,
                            .n_best = 1,
                            .pad = -1};
}

void tsr_gen_result_free(tsr_gen_result *r)
{
    free(r->tokens);
    for (int i = 0; i < r->n_more; i++)
        free(r->more[i].tokens);
    memset(r, 0, sizeof *r);
}

void tsr_log_softmax(float *v, int n)
{
    /* a comparison, not fmaxf (which compilers call for its NaN rules), and
     * float exponentials summed in double: half the time of double exp on
     * a vocabulary of 51,864, every row of every decoding step */
    float mx = -INFINITY;
    for (int i = 0; i < n; i++)
        mx = v[i] > mx ? v[i] : mx;
    double s = 0;
    for (int i = 0; i < n; i++)
        s += (double)expf(v[i] - mx);
    float ls = (float)log(s) + mx;
    for (int i = 0; i < n; i++)
        v[i] -= ls;
}

/* ---- the shared logit processors ---- */

/* CTranslate2's penalize_previous_tokens: each earlier token's logit, as it
 * was before this step, is divided (positive) or multiplied (negative). */
static void repetition_penalty(float *lg, const int *seq, int len, float penalty)
{
    for (int i = 0; i < len; i++) {
        int id = seq[i];
        int seen = 0;
        for (int j = 0; j < i && !seen; j++)
            seen = seq[j] == id;
        if (!seen)
            lg[id] = lg[id] < 0 ? lg[id] * penalty : lg[id] / penalty;
    }
}

/* Bans every token that would complete an n-gram already in seq. */
static void no_repeat_ngram(float *lg, const int *seq, int len, int n)
{
    if (len < n)
        return;
    const int *cur = seq + len - n + 1; /* the last n-1 tokens */
    for (int p = 0; p + n <= len; p++)
        if (memcmp(seq + p, cur, sizeof(int) * (size_t)(n - 1)) == 0)
            lg[seq[p + n - 1]] = -INFINITY;
}

/* The shared processors and the family's on one row of logits (or, for HF
 * beam search, log-probabilities). seq[0..len) holds the prefix (n_prefix
 * tokens) and then the generated tokens; the family's hook sees only those. */
static void processors(const tsr_gen_params *p, const tsr_gen_hooks *h, int step, const int *seq,
                       int len, float *row)
{
    if (p->repetition_penalty != 1.0f)
        repetition_penalty(row, seq, len, p->repetition_penalty);
    if (p->no_repeat_ngram > 0)
        no_repeat_ngram(row, seq, len, p->no_repeat_ngram);
    if (len - p->n_prefix < p->min_len)
        row[p->eos] = -INFINITY;
    if (h->process)
        h->process(h->user, step, seq + p->n_prefix, len - p->n_prefix, row);
}

/* The processors, then log-probabilities, for one sequence's row. */
static void process_row(const tsr_gen_params *p, const tsr_gen_hooks *h, int step, const int *seq,
                        int len, float *row)
{
    processors(p, h, step, seq, len, row);
    tsr_log_softmax(row, p->vocab);
}

/* A search's token rows: each holds the prefix, then room for max_len tokens. */
static int *seq_rows(const tsr_gen_params *p, int rows)
{
    size_t SL = (size_t)p->n_prefix + p->max_len;
    int *seq = malloc(sizeof(int) * SL * rows);
    for (int r = 0; seq && r < rows; r++)
        if (p->n_prefix > 0)
            memcpy(seq + SL * r, p->prefix, sizeof(int) * (size_t)p->n_prefix);
    return seq;
}

static int argmax(const float *v, int n)
{
    int t = 0;
    for (int k = 1; k < n; k++)
        if (v[k] > v[t])
            t = k;
    return t;
}

/* xoshiro256** seeded through splitmix64: the sampling generator. */
typedef struct {
    uint64_t s[4];
} rng;

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static double rng_uniform(rng *r) /* [0, 1) */
{
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return (double)(out >> 11) * (1.0 / 9007199254740992.0);
}

/* A token drawn from softmax(logprob / T). */
static int sample(const float *lp, int V, float T, rng *r)
{
    float mx = -INFINITY;
    for (int k = 0; k < V; k++)
        mx = fmaxf(mx, lp[k]);
    double sum = 0;
    for (int k = 0; k < V; k++)
        sum += exp((double)(lp[k] - mx) / T);
    double u = rng_uniform(r) * sum, acc = 0;
    int last = -1;
    for (int k = 0; k < V; k++) {
        double e = exp((double)(lp[k] - mx) / T);
        if (e > 0)
            last = k;
        acc += e;
        if (u < acc)
            return k;
    }
    return last >= 0 ? last : argmax(lp, V);
}

/* HF's sampling warpers on one row of processed logits, in place: divide
 * by the temperature, keep the top_k largest (ties with the k-th kept), then
 * the smallest set of most likely tokens whose probability reaches top_p
 * (TopPLogitsWarper: ascending order, drop while the cumulative probability
 * is <= 1 - top_p, never the most likely token). tmp holds V ints. */
static void hf_warp(const tsr_gen_params *p, float *row, int *idx)
{
    int V = p->vocab;
    for (int k = 0; k < V; k++)
        row[k] /= p->temperature;
    if (p->top_k > 0 && p->top_k < V) {
        for (int k = 0; k < V; k++)
            idx[k] = k;
        /* the k-th largest value by partial selection */
        int K = p->top_k;
        for (int i = 0; i < K; i++) {
            int best = i;
            for (int j = i + 1; j < V; j++)
                if (row[idx[j]] > row[idx[best]])
                    best = j;
            int t = idx[i];
            idx[i] = idx[best];
            idx[best] = t;
        }
        float kth = row[idx[K - 1]];
        for (int k = 0; k < V; k++)
            if (row[k] < kth)
                row[k] = -INFINITY;
    }
    if (p->top_p < 1.0f) {
        float mx = -INFINITY;
        for (int k = 0; k < V; k++)
            mx = fmaxf(mx, row[k]);
        double sum = 0;
        for (int k = 0; k < V; k++)
            sum += exp((double)(row[k] - mx));
        for (int k = 0; k < V; k++)
            idx[k] = k;
        /* ascending by value, stable (torch.sort's order for ties is its own) */
        for (int i = 1; i < V; i++) {
            int v = idx[i], j = i;
            while (j > 0 && row[idx[j - 1]] > row[v]) {
                idx[j] = idx[j - 1];
                j--;
            }
            idx[j] = v;
        }
        float cum = 0; /* float32 cumsum of float32 probabilities, as torch */
        for (int i = 0; i < V - 1; i++) {
            cum += (float)(exp((double)(row[idx[i]] - mx)) / sum);
            if (cum <= 1.0f - p->top_p)
                row[idx[i]] = -INFINITY;
            else
                break;
        }
    }
}

static float final_score(float score, int len, float lp)
{
    return score / powf((float)len, lp);
}

/* ---- greedy search and sampling ---- */

static tsr_status greedy(const tsr_gen_params *p, const tsr_gen_hooks *h, tsr_gen_result *out,
                         tsr_error *err)
{
    int V = p->vocab, S = p->temperature > 0 ? p->samples : 1, L = p->max_len, P = p->n_prefix;
    size_t SL = (size_t)P + L;
    float *lg = malloc(sizeof(float) * (size_t)V * S);
    int *seq = seq_rows(p, S), len[TSR_GEN_MAX_BEAMS] = {0};
    int row_of[TSR_GEN_MAX_BEAMS], in[TSR_GEN_MAX_BEAMS], done[TSR_GEN_MAX_BEAMS] = {0};
    float score[TSR_GEN_MAX_BEAMS] = {0};
    if (!lg || !seq) {
        free(lg), free(seq);
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    }
    rng r;
    rng_seed(&r, p->seed);
    tsr_status rc = TSR_OK;
    int alive = S, src[TSR_GEN_MAX_BEAMS] = {0};
    if (S > 1) /* the prompt is in sequence 0: copy it to the others */
        rc = h->reorder(h->user, src, S, p->pos0, err);
    for (int i = 0; i < S; i++) {
        row_of[i] = i; /* the sample in each live row */
        in[i] = p->start;
    }
    for (int t = 0; t < L && rc == TSR_OK && alive > 0; t++) {
        rc = h->step(h->user, in, alive, p->pos0 + t, lg, err);
        if (rc == TSR_OK && h->raw)
            h->raw(h->user, t, lg, alive);
        int next = 0;
        for (int i = 0; i < alive && rc == TSR_OK; i++) {
            int sm = row_of[i];
            float *row = lg + (size_t)i * V;
            process_row(p, h, t, seq + SL * sm, P + len[sm], row);
            int tok = p->temperature > 0 ? sample(row, V, p->temperature, &r) : argmax(row, V);
            score[sm] += row[tok];
            if (tok != p->eos)
                seq[SL * sm + P + len[sm]++] = tok;
            done[sm] = tok == p->eos;
            if (tok != p->eos && t + 1 < L) { /* still alive: compact the rows */
                src[next] = i;
                in[next] = tok;
                row_of[next++] = sm;
            }
        }
        if (rc == TSR_OK && next > 0 && next < alive)
            rc = h->reorder(h->user, src, next, p->pos0 + t + 1, err);
        alive = next;
    }
    if (rc == TSR_OK) {
        int best = 0;
        float best_s = -INFINITY;
        for (int sm = 0; sm < S; sm++) {
            float f = final_score(score[sm], len[sm], p->length_penalty);
            if (sm == 0 || f > best_s) {
                best = sm;
                best_s = f;
            }
        }
        out->tokens = malloc(sizeof(int) * (size_t)(len[best] + 1));
        if (!out->tokens)
            rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
        else
            memcpy(out->tokens, seq + SL * best + P, sizeof(int) * (size_t)len[best]);
        out->n = len[best];
        out->score = best_s;
        out->finished = done[best];
    }
    free(lg), free(seq);
    return rc;
}

/* ---- beam search ---- */

/* The best k (row, token) candidates of rows x V log-probabilities. */
static void top_k(const float *lp, int rows, int V, int k, int *cr, int *ct, float *cs)
{
    int n = 0;
    for (int b = 0; b < rows; b++)
        for (int t = 0; t < V; t++) {
            float s = lp[(size_t)b * V + t];
            if (n == k && !(s > cs[n - 1]))
                continue;
            int pos = n < k ? n++ : n - 1;
            while (pos > 0 && cs[pos - 1] < s) {
                cs[pos] = cs[pos - 1];
                cr[pos] = cr[pos - 1];
                ct[pos] = ct[pos - 1];
                pos--;
            }
            cs[pos] = s;
            cr[pos] = b;
            ct[pos] = t;
        }
}

typedef struct {
    int *tokens, n, eos;
    float score;
} hypothesis;

static tsr_status beam(const tsr_gen_params *p, const tsr_gen_hooks *h, tsr_gen_result *out,
                       tsr_error *err)
{
    int V = p->vocab, B = p->beams, L = p->max_len, K = 2 * B, P = p->n_prefix;
    size_t SL = (size_t)P + L;
    int max_hyp = (int)lroundf((float)B * p->patience);
    if (max_hyp < 1)
        max_hyp = 1;
    float *lg = malloc(sizeof(float) * (size_t)V * B);
    int *seq = seq_rows(p, B), *nseq = seq_rows(p, B);
    int hyp_cap = B * (L + 1) + 1, n_hyp = 0;
    hypothesis *hyp = calloc((size_t)hyp_cap, sizeof *hyp);
    if (!lg || !seq || !nseq || !hyp) {
        free(lg), free(seq), free(nseq), free(hyp);
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    }
    float score[TSR_GEN_MAX_BEAMS] = {0}, cs[2 * TSR_GEN_MAX_BEAMS];
    int in[TSR_GEN_MAX_BEAMS], cr[2 * TSR_GEN_MAX_BEAMS], ct[2 * TSR_GEN_MAX_BEAMS];
    int top_finished = 0; /* the best beam has ended once */
    int src[TSR_GEN_MAX_BEAMS];
    in[0] = p->start;
    tsr_status rc = TSR_OK;
    for (int t = 0; t < L && rc == TSR_OK; t++) {
        int rows = t == 0 ? 1 : B; /* the first step expands the prompt alone */
        if ((rc = h->step(h->user, in, rows, p->pos0 + t, lg, err)) != TSR_OK)
            break;
        if (h->raw)
            h->raw(h->user, t, lg, rows);
        for (int b = 0; b < rows; b++) {
            float *row = lg + (size_t)b * V;
            process_row(p, h, t, seq + SL * b, P + t, row);
            if (t > 0)
                for (int k = 0; k < V; k++)
                    row[k] += score[b];
        }
        top_k(lg, rows, V, K, cr, ct, cs);
        int last = t + 1 == L, secondary = B, active[TSR_GEN_MAX_BEAMS], top_done = 0;
        for (int k = 0; k < B; k++) {
            active[k] = k;
            if (ct[k] != p->eos && !last)
                continue;
            /* a finished hypothesis: the tokens so far, and this one unless eos */
            hypothesis *hy = &hyp[n_hyp];
            int eos = ct[k] == p->eos, n = eos ? t : t + 1;
            hy->tokens = malloc(sizeof(int) * (size_t)(n + 1));
            if (!hy->tokens) {
                rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
                break;
            }
            memcpy(hy->tokens, seq + SL * cr[k] + P, sizeof(int) * (size_t)t);
            if (!eos)
                hy->tokens[t] = ct[k];
            hy->n = n;
            hy->eos = eos;
            hy->score = cs[k];
            n_hyp++;
            top_done |= k == 0;
            /* its place goes to the next candidate that does not end */
            for (int j = secondary; j < K; j++)
                if (ct[j] != p->eos) {
                    active[k] = j;
                    secondary = j + 1;
                    break;
                }
        }
        /* without a length penalty the best beam finishing ends the search,
         * as CTranslate2's allow_early_exit; otherwise patience decides */
        if (rc != TSR_OK || last ||
            (p->length_penalty == 0 ? (top_finished |= top_done) && n_hyp >= 1
                                    : n_hyp >= max_hyp))
            break;
        for (int k = 0; k < B; k++) {
            int c = active[k];
            memcpy(nseq + SL * k + P, seq + SL * cr[c] + P, sizeof(int) * (size_t)t);
            nseq[SL * k + P + t] = ct[c];
            score[k] = cs[c];
            src[k] = cr[c];
            in[k] = ct[c];
        }
        int *tmp = seq;
        seq = nseq;
        nseq = tmp;
        rc = h->reorder(h->user, src, B, p->pos0 + t + 1, err);
    }
    if (rc == TSR_OK && n_hyp == 0)
        rc = tsr_error_set(err, TSR_ERR_INVALID_ARG, "beam search ended without a hypothesis");
    if (rc == TSR_OK) {
        int best = 0;
        float best_s = -INFINITY;
        for (int i = 0; i < n_hyp; i++) {
            float f = final_score(hyp[i].score, hyp[i].n, p->length_penalty);
            if (i == 0 || f > best_s) {
                best = i;
                best_s = f;
            }
        }
        out->tokens = hyp[best].tokens;
        hyp[best].tokens = NULL;
        out->n = hyp[best].n;
        out->score = best_s;
        out->finished = hyp[best].eos;
    }
    for (int i = 0; i < n_hyp; i++)
        free(hyp[i].tokens);
    free(hyp), free(lg), free(seq), free(nseq);
    return rc;
}

/* ---- beam search with HF transformers' semantics ---- */

/* The set of the best finished hypotheses, best first. */
typedef struct {
    int *tokens; /* (beams, max_len) */
    int n[TSR_GEN_MAX_BEAMS], eos[TSR_GEN_MAX_BEAMS];
    float score[TSR_GEN_MAX_BEAMS];
    int count;
} hf_finished;

/* Offers a hypothesis: kept when the set has room or it beats the worst
 * (on a tie, the one already there stays ahead, as torch.topk keeps it). */
static void hf_offer(hf_finished *f, int B, int L, const int *toks, int n, int eos, float score)
{
    if (f->count == B && !(score > f->score[B - 1]))
        return;
    int pos = f->count < B ? f->count++ : B - 1;
    while (pos > 0 && f->score[pos - 1] < score) {
        f->score[pos] = f->score[pos - 1];
        f->n[pos] = f->n[pos - 1];
        f->eos[pos] = f->eos[pos - 1];
        memcpy(f->tokens + (size_t)pos * L, f->tokens + (size_t)(pos - 1) * L,
               sizeof(int) * (size_t)f->n[pos]);
        pos--;
    }
    f->score[pos] = score;
    f->n[pos] = n;
    f->eos[pos] = eos;
    memcpy(f->tokens + (size_t)pos * L, toks, sizeof(int) * (size_t)n);
}

/* What the lockstep driver (beams_lockstep) reads of every beam search's
 * state: each search's state begins with it. */
typedef struct {
    int in[TSR_GEN_MAX_BEAMS];  /* the next token of each row */
    int src[TSR_GEN_MAX_BEAMS]; /* where each row continues from */
    int done;
} beam_rows;

/* One HF beam search as a state machine, so that several (one per image)
 * can run in lockstep on one decoder batch: hfb_step consumes a step's
 * log-probabilities and says which rows continue from which. */
typedef struct {
    beam_rows r;
    const tsr_gen_params *p;
    const tsr_gen_hooks *h;
    hf_finished fin;
    int *seq, *nseq, *cand;
    float score[TSR_GEN_MAX_BEAMS];
    int improvable;             /* HF's is_early_stop_heuristic_unsatisfied */
} hfb;

static int hfb_init(void *v, const tsr_gen_params *p, const tsr_gen_hooks *h)
{
    hfb *b = v;
    memset(b, 0, sizeof *b);
    b->p = p;
    b->h = h;
    b->seq = seq_rows(p, p->beams);
    b->nseq = seq_rows(p, p->beams);
    b->cand = malloc(sizeof(int) * (size_t)p->max_len);
    b->fin.tokens = malloc(sizeof(int) * (size_t)p->beams * p->max_len);
    b->improvable = 1;
    for (int k = 0; k < p->beams; k++)
        b->r.in[k] = p->start;
    return b->seq && b->nseq && b->cand && b->fin.tokens;
}

static void hfb_free(void *v)
{
    hfb *b = v;
    free(b->seq), free(b->nseq), free(b->cand), free(b->fin.tokens);
}

/* Step t's logits of `rows` rows (1 at t == 0: HF runs every beam from the
 * start with scores 0, -1e9, ..., so the first candidates all come from
 * the prompt's row), turned into log-probabilities in place. */
static void hfb_step(void *v, int t, float *lg, int rows)
{
    hfb *b = v;
    const tsr_gen_params *p = b->p;
    int V = p->vocab, B = p->beams, L = p->max_len, K = 2 * B, P = p->n_prefix;
    size_t SL = (size_t)P + L;
    float lp = p->length_penalty, cs[2 * TSR_GEN_MAX_BEAMS];
    int cr[2 * TSR_GEN_MAX_BEAMS], ct[2 * TSR_GEN_MAX_BEAMS];
    for (int r = 0; r < rows; r++) {
        float *row = lg + (size_t)r * V;
        tsr_log_softmax(row, V);
        processors(p, b->h, t, b->seq + SL * r, P + t, row);
        for (int k = 0; k < V; k++)
            row[k] += b->score[r];
    }
    top_k(lg, rows, V, K, cr, ct, cs);
    int last = t + 1 == L;
    hf_finished *fin = &b->fin;
    /* the first `beams` candidates that end are offered to the set */
    if (b->improvable && !(p->early_stopping == 1 && fin->count == B))
        for (int k = 0; k < B; k++) {
            int eos = ct[k] == p->eos;
            if (!eos && !last)
                continue;
            memcpy(b->cand, b->seq + SL * cr[k] + P, sizeof(int) * (size_t)t);
            b->cand[t] = ct[k];
            hf_offer(fin, B, L, b->cand, eos ? t : t + 1, eos, cs[k] / powf((float)(t + 1), lp));
        }
    /* the next beams: the best candidates that did not end */
    int active[TSR_GEN_MAX_BEAMS], na = 0;
    for (int k = 0; k < K && na < B && !last; k++)
        if (ct[k] != p->eos)
            active[na++] = k;
    if (last || na < B) { /* every candidate ended */
        b->r.done = 1;
        return;
    }
    if (fin->count == B) {
        int hyp_len = p->early_stopping == 2 && lp > 0 ? L : t + 1;
        float best = cs[active[0]] / powf((float)hyp_len, lp);
        b->improvable = b->improvable && best > fin->score[B - 1];
    }
    if (!b->improvable || (p->early_stopping == 1 && fin->count == B)) {
        b->r.done = 1;
        return;
    }
    for (int k = 0; k < B; k++) {
        int c = active[k];
        memcpy(b->nseq + SL * k + P, b->seq + SL * cr[c] + P, sizeof(int) * (size_t)t);
        b->nseq[SL * k + P + t] = ct[c];
        b->score[k] = cs[c];
        b->r.src[k] = cr[c];
        b->r.in[k] = ct[c];
    }
    int *tmp = b->seq;
    b->seq = b->nseq;
    b->nseq = tmp;
}

/* The best finished hypotheses into out (n_best of them). */
static tsr_status hfb_result(void *v, tsr_gen_result *out, tsr_error *err)
{
    const hfb *b = v;
    const hf_finished *fin = &b->fin;
    int L = b->p->max_len;
    if (fin->count == 0)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "beam search ended without a hypothesis");
    for (int i = 0; i < b->p->n_best && i < fin->count; i++) {
        int **tok = i == 0 ? &out->tokens : &out->more[i - 1].tokens;
        if (!(*tok = malloc(sizeof(int) * (size_t)(fin->n[i] + 1))))
            return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
        memcpy(*tok, fin->tokens + (size_t)i * L, sizeof(int) * (size_t)fin->n[i]);
        if (i == 0) {
            out->n = fin->n[0];
            out->score = fin->score[0];
            out->finished = fin->eos[0];
        } else {
            out->more[i - 1] = (tsr_gen_hyp){*tok, fin->n[i], fin->score[i], fin->eos[i]};
            out->n_more = i;
        }
    }
    return TSR_OK;
}

/* ---- several searches in lockstep (HF semantics) ---- */

/* N greedy searches or samplings: problem i owns rows [i*S, i*S + S), each
 * with its own generator seeded with p->seed (so each draws as it would
 * alone: its live rows in order). Finished rows are fed eos and ignored. */
static tsr_status greedy_batch(const tsr_gen_params *p, int N, const tsr_gen_hooks *h,
                               tsr_gen_result *out, tsr_error *err)
{
    int V = p->vocab, S = p->temperature > 0 ? p->samples : 1, L = p->max_len, P = p->n_prefix;
    int R = N * S;
    size_t SL = (size_t)P + L;
    float *lg = malloc(sizeof(float) * (size_t)V * R), *score = calloc((size_t)R, sizeof(float));
    int *seq = seq_rows(p, R), *len = calloc((size_t)R, sizeof(int)),
        *done = calloc((size_t)R, sizeof(int)), *in = malloc(sizeof(int) * (size_t)R),
        *idx = malloc(sizeof(int) * (size_t)V), *stopped = calloc((size_t)R, sizeof(int));
    rng *gen = malloc(sizeof(rng) * (size_t)R);
    tsr_status rc = TSR_OK;
    if (!lg || !score || !seq || !len || !done || !in || !idx || !gen || !stopped)
        rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    for (int r = 0; r < R && rc == TSR_OK; r++) /* sample k of every search alike */
        rng_seed(&gen[r], p->seed + 0x9E3779B97F4A7C15ull * (uint64_t)(r % S));
    for (int r = 0; r < R && rc == TSR_OK; r++)
        in[r] = p->start;
    int alive = R;
    for (int t = 0; t < L && rc == TSR_OK && alive > 0; t++) {
        if ((rc = h->step(h->user, in, R, p->pos0 + t, lg, err)) != TSR_OK)
            break;
        for (int r = 0; r < R; r++) {
            if (done[r]) { /* ended: keep feeding eos */
                in[r] = p->eos;
                continue;
            }
            float *row = lg + (size_t)r * V;
            int tok;
            if (p->temperature > 0 && p->openclip) { /* the warpers, then the temperature */
                tsr_gen_params q = *p;
                q.temperature = 1.0f;
                processors(p, h, t, seq + SL * r, P + len[r], row);
                hf_warp(&q, row, idx);
                tok = sample(row, V, p->temperature, &gen[r]);
                tsr_log_softmax(row, V);
            } else if (p->temperature > 0) {
                processors(p, h, t, seq + SL * r, P + len[r], row);
                hf_warp(p, row, idx);
                tok = sample(row, V, 1.0f, &gen[r]);
                tsr_log_softmax(row, V);
            } else {
                process_row(p, h, t, seq + SL * r, P + len[r], row);
                tok = argmax(row, V);
            }
            if (p->openclip && t + 1 == L)
                tok = p->eos; /* open_clip ends every sequence at the length limit */
            score[r] += row[tok];
            if (tok != p->eos)
                seq[SL * r + P + len[r]++] = tok;
            done[r] = tok == p->eos;
            if (p->openclip && tok == p->pad && !done[r]) {
                done[r] = 1;
                stopped[r] = 1;
            }
            if (done[r] || t + 1 == L)
                alive--;
            in[r] = tok;
        }
    }
    for (int i = 0; i < N && rc == TSR_OK; i++)
        for (int k = 0; k < S && rc == TSR_OK; k++) {
            int r = i * S + k, n = len[r];
            int *tok = malloc(sizeof(int) * (size_t)(n + 1));
            if (!tok) {
                rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
                break;
            }
            memcpy(tok, seq + SL * r + P, sizeof(int) * (size_t)n);
            float f = final_score(score[r], n, p->length_penalty);
            if (k == 0) {
                out[i].tokens = tok;
                out[i].n = n;
                out[i].score = f;
                out[i].finished = done[r] && !stopped[r];
            } else {
                out[i].more[k - 1] = (tsr_gen_hyp){tok, n, f, done[r] && !stopped[r]};
                out[i].n_more = k;
            }
        }
    free(lg), free(score), free(seq), free(len), free(done), free(in), free(idx), free(gen);
    free(stopped);
    return rc;
}

/* ---- beam search with open_clip's CoCa semantics ---- */

/* One search: transformers 4.56's BeamSearchScorer with one group over
 * raw-logit scores (see tsr_generate.h). */
typedef struct {
    beam_rows r;
    const tsr_gen_params *p;
    const tsr_gen_hooks *h;
    int *seq, *nseq;            /* (beams, prefix + max_len) */
    float score[TSR_GEN_MAX_BEAMS];
    /* BeamHypotheses, in the order its list keeps them */
    int hn, hlen[TSR_GEN_MAX_BEAMS], heos[TSR_GEN_MAX_BEAMS];
    double hs[TSR_GEN_MAX_BEAMS], worst;
    int *htok;                  /* (beams, max_len) */
} ocb;

static int ocb_init(void *v, const tsr_gen_params *p, const tsr_gen_hooks *h)
{
    ocb *b = v;
    memset(b, 0, sizeof *b);
    b->p = p;
    b->h = h;
    b->seq = seq_rows(p, p->beams);
    b->nseq = seq_rows(p, p->beams);
    b->htok = malloc(sizeof(int) * (size_t)p->beams * p->max_len);
    b->worst = 1e9;
    for (int k = 0; k < p->beams; k++)
        b->r.in[k] = p->start;
    return b->seq && b->nseq && b->htok;
}

static void ocb_free(void *v)
{
    ocb *b = v;
    free(b->seq), free(b->nseq), free(b->htok);
}

/* BeamHypotheses.add: score is already length-normalised. */
static void ocb_add(ocb *b, const int *toks, int n, int eos, double score)
{
    int G = b->p->beams, L = b->p->max_len;
    if (!(b->hn < G || score > b->worst))
        return;
    int at = b->hn++;
    if (b->hn > G) { /* drop the worst (the earliest of equals); worst: the next one up */
        int lo = 0;
        for (int i = 1; i < b->hn - 1; i++)
            if (b->hs[i] < b->hs[lo])
                lo = i;
        double hs[TSR_GEN_MAX_BEAMS + 1];
        for (int i = 0; i < b->hn - 1; i++)
            hs[i] = b->hs[i];
        hs[b->hn - 1] = score;
        if (score < hs[lo]) /* the new one is the worst itself */
            lo = b->hn - 1;
        double next = INFINITY;
        for (int i = 0; i < b->hn; i++)
            if (i != lo && hs[i] < next)
                next = hs[i];
        b->worst = next;
        if (lo == b->hn - 1) {
            b->hn--;
            return;
        }
        for (int i = lo; i < b->hn - 2; i++) {
            b->hs[i] = b->hs[i + 1];
            b->hlen[i] = b->hlen[i + 1];
            b->heos[i] = b->heos[i + 1];
            memcpy(b->htok + (size_t)i * L, b->htok + (size_t)(i + 1) * L,
                   sizeof(int) * (size_t)b->hlen[i]);
        }
        b->hn--;
        at = b->hn - 1;
    } else if (score < b->worst) {
        b->worst = score;
    }
    b->hs[at] = score;
    b->hlen[at] = n;
    b->heos[at] = eos;
    memcpy(b->htok + (size_t)at * L, toks, sizeof(int) * (size_t)n);
}

static void ocb_step(void *v, int t, float *lg, int rows)
{
    ocb *b = v;
    const tsr_gen_params *p = b->p;
    int V = p->vocab, G = p->beams, L = p->max_len, K = 2 * G, P = p->n_prefix;
    size_t SL = (size_t)P + L;
    float cs[2 * TSR_GEN_MAX_BEAMS];
    int cr[2 * TSR_GEN_MAX_BEAMS], ct[2 * TSR_GEN_MAX_BEAMS];
    for (int r = 0; r < rows; r++) {
        float *row = lg + (size_t)r * V;
        processors(p, b->h, t, b->seq + SL * r, P + t, row);
        for (int k = 0; k < V; k++)
            row[k] += b->score[r];
    }
    top_k(lg, rows, V, K, cr, ct, cs);
    double len = pow((double)(P + t + 1), (double)p->length_penalty);
    int na = 0, cand[TSR_GEN_MAX_BEAMS];
    for (int k = 0; k < K && na < G; k++) {
        if (ct[k] == p->eos) {
            if (k < G)
                ocb_add(b, b->seq + SL * cr[k] + P, t, 1, (double)cs[k] / len);
            continue;
        }
        cand[na++] = k;
    }
    b->r.done = b->hn == G && b->worst >= (double)cs[0] / len;
    for (int k = 0; k < na; k++) {
        int c = cand[k];
        memcpy(b->nseq + SL * k + P, b->seq + SL * cr[c] + P, sizeof(int) * (size_t)t);
        b->nseq[SL * k + P + t] = ct[c];
        b->score[k] = cs[c];
        b->r.src[k] = cr[c];
        b->r.in[k] = ct[c];
    }
    int *tmp = b->seq;
    b->seq = b->nseq;
    b->nseq = tmp;
    if (!b->r.done && t + 1 == L) { /* finalize: the running beams join */
        double fl = pow((double)(P + L), (double)p->length_penalty);
        for (int k = 0; k < G; k++)
            ocb_add(b, b->seq + SL * k + P, L, 0, (double)b->score[k] / fl);
        b->r.done = 1;
    }
}

/* The best hypotheses (the later of equals first, as sorted() then pop()). */
static tsr_status ocb_result(void *v, tsr_gen_result *out, tsr_error *err)
{
    ocb *b = v;
    int L = b->p->max_len, used[TSR_GEN_MAX_BEAMS] = {0};
    if (b->hn == 0)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "beam search ended without a hypothesis");
    for (int i = 0; i < b->p->n_best && i < b->hn; i++) {
        int best = -1;
        for (int k = 0; k < b->hn; k++)
            if (!used[k] && (best < 0 || b->hs[k] >= b->hs[best]))
                best = k;
        used[best] = 1;
        int *tok = malloc(sizeof(int) * (size_t)(b->hlen[best] + 1));
        if (!tok)
            return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
        memcpy(tok, b->htok + (size_t)best * L, sizeof(int) * (size_t)b->hlen[best]);
        if (i == 0) {
            out->tokens = tok;
            out->n = b->hlen[best];
            out->score = (float)b->hs[best];
            out->finished = b->heos[best];
        } else {
            out->more[i - 1] = (tsr_gen_hyp){tok, b->hlen[best], (float)b->hs[best],
                                             b->heos[best]};
            out->n_more = i;
        }
    }
    return TSR_OK;
}

/* ---- several beam searches in lockstep ---- */

/* One kind of beam search state for the lockstep driver. */
typedef struct {
    size_t size; /* of the state, which begins with beam_rows */
    int (*init)(void *st, const tsr_gen_params *p, const tsr_gen_hooks *h);
    void (*step)(void *st, int t, float *lg, int rows);
    tsr_status (*result)(void *st, tsr_gen_result *out, tsr_error *err);
    void (*free)(void *st);
} beam_kind;

static const beam_kind hf_beams = {sizeof(hfb), hfb_init, hfb_step, hfb_result, hfb_free};
static const beam_kind oc_beams = {sizeof(ocb), ocb_init, ocb_step, ocb_result, ocb_free};

/* N beam searches of one kind: problem i owns rows [i*beams, (i+1)*beams).
 * Every step runs all rows; at the first only each problem's first row
 * counts, and the rows of finished problems are fed eos and keep their
 * cache. */
static tsr_status beams_lockstep(const beam_kind *kind, const tsr_gen_params *p, int N,
                                 const tsr_gen_hooks *h, tsr_gen_result *out, tsr_error *err)
{
    int V = p->vocab, B = p->beams, R = N * B;
    char *st = calloc((size_t)N, kind->size);
    float *lg = malloc(sizeof(float) * (size_t)V * R);
    int *in = malloc(sizeof(int) * (size_t)R), *src = malloc(sizeof(int) * (size_t)R);
    tsr_status rc = st && lg && in && src ? TSR_OK
                                          : tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
#define ROWS(i) ((beam_rows *)(st + (size_t)(i) * kind->size))
    int n_init = 0;
    for (; n_init < N && rc == TSR_OK; n_init++)
        if (!kind->init(ROWS(n_init), p, h))
            rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    for (int t = 0; t < p->max_len && rc == TSR_OK; t++) {
        for (int i = 0; i < N; i++)
            for (int k = 0; k < B; k++)
                in[i * B + k] = ROWS(i)->done ? p->eos : ROWS(i)->in[k];
        if ((rc = h->step(h->user, in, R, p->pos0 + t, lg, err)) != TSR_OK)
            break;
        int live = 0;
        for (int i = 0; i < N; i++) {
            if (!ROWS(i)->done)
                kind->step(ROWS(i), t, lg + (size_t)i * B * V, t == 0 ? 1 : B);
            live += !ROWS(i)->done;
            for (int k = 0; k < B; k++)
                src[i * B + k] = i * B + (ROWS(i)->done ? k : ROWS(i)->src[k]);
        }
        if (!live)
            break;
        rc = h->reorder(h->user, src, R, p->pos0 + t + 1, err);
    }
    for (int i = 0; i < N && rc == TSR_OK; i++)
        rc = kind->result(ROWS(i), &out[i], err);
    for (int i = 0; st && i < n_init; i++)
        kind->free(ROWS(i));
#undef ROWS
    free(st), free(lg), free(in), free(src);
    return rc;
}

static tsr_status check_params(const tsr_gen_params *p, tsr_error *err)
{
    if (p->beams < 1 || p->beams > TSR_GEN_MAX_BEAMS)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "beam size %d outside 1..%d", p->beams,
                             TSR_GEN_MAX_BEAMS);
    if (p->temperature > 0 && (p->samples < 1 || p->samples > TSR_GEN_MAX_BEAMS))
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "%d samples outside 1..%d", p->samples,
                             TSR_GEN_MAX_BEAMS);
    if (!(p->temperature >= 0) || (p->temperature > 0 && p->beams > 1))
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "temperature %g: sampling needs a temperature >= 0 and beam 1",
                             (double)p->temperature);
    if (!(p->patience > 0) || !(p->repetition_penalty > 0) || p->no_repeat_ngram < 0)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "patience and repetition penalty must be > 0");
    if (p->max_len < 1)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "no room left to generate a token");
    if (p->vocab < 2 * p->beams || p->eos < 0 || p->eos >= p->vocab || p->start < 0 ||
        p->start >= p->vocab)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "bad vocabulary, start or end token");
    if (p->top_k < 0 || !(p->top_p > 0 && p->top_p <= 1))
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "top_k must be >= 0 and top_p in (0, 1]");
    if (p->n_best < 1 || (p->hf && p->beams > 1 && p->n_best > p->beams))
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "%d results asked of %d beams", p->n_best,
                             p->beams);
    if (p->n_prefix < 0 || (p->n_prefix > 0 && !p->prefix) || p->min_len < 0 ||
        p->early_stopping < 0 || p->early_stopping > 2)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "bad prefix, minimum length or early stop");
    return TSR_OK;
}

tsr_status tsr_generate(const tsr_gen_params *p, const tsr_gen_hooks *h, tsr_gen_result *out,
                        tsr_error *err)
{
    memset(out, 0, sizeof *out);
    tsr_status rc = check_params(p, err);
    if (rc != TSR_OK)
        return rc;
    if (p->hf) /* one search of the lockstep machinery */
        return tsr_generate_batch(p, 1, h, out, err);
    rc = p->beams > 1 ? beam(p, h, out, err) : greedy(p, h, out, err);
    if (rc != TSR_OK)
        tsr_gen_result_free(out);
    return rc;
}

tsr_status tsr_generate_batch(const tsr_gen_params *p, int N, const tsr_gen_hooks *h,
                              tsr_gen_result *out, tsr_error *err)
{
    for (int i = 0; i < N; i++)
        memset(&out[i], 0, sizeof out[i]);
    tsr_status rc = check_params(p, err);
    if (rc == TSR_OK && (!p->hf || N < 1))
        rc = tsr_error_set(err, TSR_ERR_INVALID_ARG,
                           "batched generation takes transformers' semantics and N >= 1");
    if (rc != TSR_OK)
        return rc;
    int oc = (p->beams > 1 && p->openclip) || p->openclip == 2;
    rc = oc             ? beams_lockstep(&oc_beams, p, N, h, out, err)
         : p->beams > 1 ? beams_lockstep(&hf_beams, p, N, h, out, err)
                        : greedy_batch(p, N, h, out, err);
    if (rc != TSR_OK)
        for (int i = 0; i < N; i++)
            tsr_gen_result_free(&out[i]);
    return rc;
}

tsr_gen_params tsr_gen_from_caption(const tsr_caption_params *p, int vocab, int eos,
                                    const int *prompt, int np, int total)
{
    tsr_gen_params gp = tsr_gen_default_params(vocab, eos);
    gp.hf = 1;
    gp.start = prompt[np - 1];
    gp.pos0 = np - 1;
    gp.max_len = total - np;
    gp.beams = p->beams;
    gp.length_penalty = p->length_penalty;
    gp.repetition_penalty = p->repetition_penalty;
    gp.no_repeat_ngram = p->no_repeat_ngram;
    gp.min_len = p->min_length > np ? p->min_length - np : 0;
    gp.prefix = prompt;
    gp.n_prefix = np;
    gp.n_best = p->num_captions;
    if (p->do_sample) {
        gp.temperature = p->temperature;
        gp.top_k = p->top_k;
        gp.top_p = p->top_p;
        gp.seed = p->seed;
        gp.samples = p->num_captions;
    }
    return gp;
}

tsr_gen_hyp tsr_gen_result_hyp(const tsr_gen_result *r, int k)
{
    if (k > 0 && k - 1 < r->n_more)
        return r->more[k - 1];
    return (tsr_gen_hyp){r->tokens, r->n, r->score, r->finished};
}
