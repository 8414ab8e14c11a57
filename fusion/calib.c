/* Evaluation of a classifier's scores: accuracy, expected calibration error
 * over equal-width confidence bins, and temperature scaling fitted by
 * minimising the negative log-likelihood (Guo et al., "On Calibration of
 * Modern Neural Networks", 2017). */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tsr_fusion.h"

void tsr_softmax_rows(float *x, int N, int L, double temperature)
{
    double inv = 1.0 / temperature;
    for (int n = 0; n < N; n++) {
        float *p = x + (size_t)n * L, mx = p[0];
        for (int l = 1; l < L; l++)
            mx = p[l] > mx ? p[l] : mx;
        double s = 0;
        for (int l = 0; l < L; l++)
            s += exp(((double)p[l] - mx) * inv);
        for (int l = 0; l < L; l++)
            p[l] = (float)(exp(((double)p[l] - mx) * inv) / s);
    }
}

static tsr_status check_args(const float *logits, const int *labels, int N, int L, tsr_error *err)
{
    if (!logits || !labels || N < 1 || L < 1)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "no scores to evaluate (%d rows, %d classes)",
                             N, L);
    for (int n = 0; n < N; n++)
        if (labels[n] < 0 || labels[n] >= L)
            return tsr_error_set(err, TSR_ERR_INVALID_ARG, "row %d: label %d is not a class (0..%d)",
                                 n, labels[n], L - 1);
    for (size_t i = 0; i < (size_t)N * L; i++)
        if (!isfinite(logits[i]))
            return tsr_error_set(err, TSR_ERR_INVALID_ARG, "row %zu: a score is not finite",
                                 i / (size_t)L);
    return TSR_OK;
}

tsr_status tsr_calibration_compute(const float *logits, const int *labels, int N, int L,
                                   double temperature, int bins, tsr_calibration *out,
                                   tsr_error *err)
{
    tsr_status rc = check_args(logits, labels, N, L, err);
    if (rc != TSR_OK)
        return rc;
    if (bins < 1 || bins > TSR_CALIB_MAX_BINS)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "bins must be 1..%d, not %d",
                             TSR_CALIB_MAX_BINS, bins);
    if (!(temperature > 0) || !isfinite(temperature))
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "the temperature must be positive");
    memset(out, 0, sizeof *out);
    out->bins = bins;
    out->n = N;
    out->temperature = temperature;
    double sum_conf[TSR_CALIB_MAX_BINS] = {0}, nll = 0;
    int correct[TSR_CALIB_MAX_BINS] = {0}, right = 0;
    double inv = 1.0 / temperature;
    for (int n = 0; n < N; n++) {
        const float *z = logits + (size_t)n * L;
        int best = 0;
        for (int l = 1; l < L; l++)
            best = z[l] > z[best] ? l : best;
        double s = 0;
        for (int l = 0; l < L; l++)
            s += exp(((double)z[l] - z[best]) * inv);
        double conf = 1.0 / s; /* the arg max's probability */
        nll += log(s) - ((double)z[labels[n]] - z[best]) * inv;
        int ok = best == labels[n];
        right += ok;
        /* bin b holds (b/B, (b+1)/B] */
        int b = 0;
        while (b < bins - 1 && conf > (double)(b + 1) / bins)
            b++;
        out->count[b]++;
        sum_conf[b] += conf;
        correct[b] += ok;
    }
    double ece = 0, mce = 0;
    for (int b = 0; b < bins; b++) {
        if (!out->count[b])
            continue;
        out->conf[b] = sum_conf[b] / out->count[b];
        out->acc[b] = (double)correct[b] / out->count[b];
        double gap = fabs(out->acc[b] - out->conf[b]);
        ece += gap * out->count[b] / N;
        mce = gap > mce ? gap : mce;
    }
    out->ece = ece;
    out->mce = mce;
    out->nll = nll / N;
    out->accuracy = (double)right / N;
    return TSR_OK;
}

/* NLL(beta) with logits scaled by beta = 1/T, and its first two derivatives:
 * NLL' = mean(E_p[z] - z_y), NLL'' = mean(Var_p[z]) >= 0, so NLL is convex
 * in beta. */
static void nll_derivs(const float *logits, const int *labels, int N, int L, double beta,
                       double *d1, double *d2)
{
    double g = 0, h = 0;
    for (int n = 0; n < N; n++) {
        const float *z = logits + (size_t)n * L;
        float mx = z[0];
        for (int l = 1; l < L; l++)
            mx = z[l] > mx ? z[l] : mx;
        double s = 0, m1 = 0, m2 = 0;
        for (int l = 0; l < L; l++) {
            double e = exp(beta * ((double)z[l] - mx));
            s += e;
            m1 += e * z[l];
            m2 += e * (double)z[l] * z[l];
        }
        m1 /= s;
        m2 /= s;
        g += m1 - z[labels[n]];
        h += m2 - m1 * m1 > 0 ? m2 - m1 * m1 : 0;
    }
    *d1 = g / N;
    *d2 = h / N;
}

tsr_status tsr_fit_temperature(const float *logits, const int *labels, int N, int L, double *T,
                               tsr_error *err)
{
    tsr_status rc = check_args(logits, labels, N, L, err);
    if (rc != TSR_OK)
        return rc;
    if (L < 2)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "one class: no temperature to fit");
    const double beta_max = 1.0 / TSR_TEMPERATURE_MIN, beta_min = 1.0 / TSR_TEMPERATURE_MAX;
    double g, h;
    nll_derivs(logits, labels, N, L, beta_min, &g, &h);
    if (g >= 0)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "the scores do not favour the true classes (the likelihood is "
                             "highest at a temperature above %g): no temperature helps",
                             TSR_TEMPERATURE_MAX);
    /* bracket the root of the increasing NLL' in beta, then safeguarded Newton */
    double lo = beta_min, hi = 1.0;
    for (;;) {
        nll_derivs(logits, labels, N, L, hi, &g, &h);
        if (g > 0)
            break;
        lo = hi;
        if (hi >= beta_max) {
            *T = TSR_TEMPERATURE_MIN; /* separable: the likelihood keeps rising */
            return TSR_OK;
        }
        hi = hi * 2 < beta_max ? hi * 2 : beta_max;
    }
    double beta = (lo + hi) / 2;
    for (int it = 0; it < 200 && hi - lo > 1e-13 * hi; it++) {
        nll_derivs(logits, labels, N, L, beta, &g, &h);
        if (g > 0)
            hi = beta;
        else
            lo = beta;
        if (g == 0)
            break;
        double next = h > 0 ? beta - g / h : -1;
        if (next > lo && next < hi && fabs(next - beta) < 1e-13 * beta) {
            beta = next;
            break;
        }
        beta = next > lo && next < hi ? next : (lo + hi) / 2;
    }
    *T = 1.0 / beta;
    return TSR_OK;
}
