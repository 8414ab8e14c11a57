/* Greedy and beam search for every decoder, through the caller's hooks. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tsr_generate.h"

#define MAX_BEAMS 16

void tsr_log_softmax(float *v, int n)
{
    float mx = -INFINITY;
    for (int i = 0; i < n; i++)
        mx = fmaxf(mx, v[i]);
    double s = 0;
    for (int i = 0; i < n; i++)
        s += exp((double)(v[i] - mx));
    float ls = (float)log(s) + mx;
    for (int i = 0; i < n; i++)
        v[i] -= ls;
}

/* Applies the logit processor and the log-softmax to each sequence's row. */
static void process(const tsr_gen_params *p, const tsr_gen_hooks *h, float *lg, int B, int step,
                    const int *seq, int stride, int len)
{
    for (int b = 0; b < B; b++) {
        float *row = lg + (size_t)b * p->vocab;
        if (h->process)
            h->process(h->user, step, seq + (size_t)b * stride, len, row);
        tsr_log_softmax(row, p->vocab);
    }
}

static int argmax(const float *v, int n)
{
    int t = 0;
    for (int k = 1; k < n; k++)
        if (v[k] > v[t])
            t = k;
    return t;
}

/* The best 2B (beam, token) candidates of the beams_in live beams. */
static int candidates(const float *lg, int V, const double *score, int beams_in, int B,
                      int *cb, int *ct, double *cs)
{
    int nc = 0;
    for (int b = 0; b < beams_in; b++)
        for (int k = 0; k < V; k++) {
            double s = score[b] + lg[(size_t)b * V + k];
            if (nc < 2 * B || s > cs[nc - 1]) {
                int pos = nc < 2 * B ? nc++ : nc - 1;
                while (pos > 0 && cs[pos - 1] < s) {
                    cs[pos] = cs[pos - 1];
                    cb[pos] = cb[pos - 1];
                    ct[pos] = ct[pos - 1];
                    pos--;
                }
                cs[pos] = s;
                cb[pos] = b;
                ct[pos] = k;
            }
        }
    return nc;
}

tsr_status tsr_generate(const tsr_gen_params *p, const tsr_gen_hooks *h, float *lg,
                        tsr_gen_result *out, tsr_error *err)
{
    memset(out, 0, sizeof *out);
    int V = p->vocab, B = p->beams, W = p->max_new + 1;
    if (B < 1 || B > MAX_BEAMS)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "beam size %d outside 1..%d", B,
                             MAX_BEAMS);
    if (p->max_new < 1)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "no room left to generate a token");
    int *seq = malloc(sizeof(int) * (size_t)B * W), *nseq = malloc(sizeof(int) * (size_t)B * W);
    int *best = malloc(sizeof(int) * (size_t)W);
    if (!seq || !nseq || !best) {
        free(seq), free(nseq), free(best);
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    }
    double score[MAX_BEAMS] = {0}, nscore[MAX_BEAMS], best_norm = -INFINITY, best_cum = 0;
    int len = 0, alive = B, best_n = 0, finished = 0, src[MAX_BEAMS];
    tsr_status rc = TSR_OK;
    for (int step = 0; step < p->max_new && rc == TSR_OK; step++) {
        if (step > 0) {
            int cur[MAX_BEAMS];
            for (int b = 0; b < B; b++)
                cur[b] = seq[(size_t)b * W + len - 1];
            if ((rc = h->step(h->user, cur, B, p->pos0 + len - 1, lg, err)) != TSR_OK)
                break;
        }
        process(p, h, lg, B, step, seq, W, len);
        if (B == 1) { /* greedy */
            int t = argmax(lg, V);
            out->cum_logprob += lg[t];
            if (t == p->eos) {
                finished = 1;
                break;
            }
            seq[len++] = t;
            continue;
        }
        /* beam search: the first step expands the one prompt */
        int cb[2 * MAX_BEAMS], ct[2 * MAX_BEAMS];
        double cs[2 * MAX_BEAMS];
        int nc = candidates(lg, V, score, step == 0 ? 1 : alive, B, cb, ct, cs);
        int kept = 0;
        for (int c = 0; c < nc && kept < B; c++) {
            if (ct[c] == p->eos) {
                double norm = cs[c] / pow((double)(len + 1), p->length_penalty);
                if (norm > best_norm) {
                    best_norm = norm;
                    best_cum = cs[c];
                    best_n = len;
                    memcpy(best, seq + (size_t)cb[c] * W, sizeof(int) * (size_t)len);
                }
                finished++;
                continue;
            }
            memcpy(nseq + (size_t)kept * W, seq + (size_t)cb[c] * W, sizeof(int) * (size_t)len);
            nseq[(size_t)kept * W + len] = ct[c];
            nscore[kept] = cs[c];
            src[kept] = cb[c];
            kept++;
        }
        for (int b = kept; b < B; b++) { /* pad with copies so the batch stays B */
            memcpy(nseq + (size_t)b * W, nseq, sizeof(int) * (size_t)(len + 1));
            nscore[b] = -INFINITY;
            src[b] = src[0];
        }
        int *t = seq;
        seq = nseq;
        nseq = t;
        memcpy(score, nscore, sizeof(double) * (size_t)B);
        len++;
        alive = kept;
        rc = h->reorder(h->user, src, B, err);
        if (finished >= B || kept == 0)
            break;
    }
    if (rc == TSR_OK && B > 1) {
        if (best_norm == -INFINITY) { /* no hypothesis ended: take the best live one */
            best_n = len;
            best_cum = score[0];
            memcpy(best, seq, sizeof(int) * (size_t)len);
        } else {
            finished = 1;
        }
        out->tokens = best;
        out->n = best_n;
        out->cum_logprob = best_cum;
        best = NULL;
    } else if (rc == TSR_OK) {
        out->tokens = malloc(sizeof(int) * (size_t)(len ? len : 1));
        if (!out->tokens)
            rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
        else
            memcpy(out->tokens, seq, sizeof(int) * (size_t)len);
        out->n = len;
    }
    out->finished = finished > 0;
    free(best), free(seq), free(nseq);
    return rc;
}
