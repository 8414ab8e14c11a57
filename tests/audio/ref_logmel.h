/* The log-mel of tessera before the frame-range rewrite (audio/mel.c at
 * e1a1526), kept verbatim as the reference the new code must match bit for
 * bit. Only the names changed, and raw (skip the clamp and scale) and
 * max_out (the maximum) were added. */
#ifndef TSR_REF_LOGMEL_H
#define TSR_REF_LOGMEL_H

#include <math.h>
#include <stdlib.h>

#include "tsr_opencl.h"

#define N_FFT 400
#define HOP 160
#define N_BINS (N_FFT / 2 + 1)
#define SAMPLE_RATE 16000
#define PI_D 3.14159265358979323846

/* Slaney-style mel filters (librosa's defaults: htk=False, norm="slaney"),
 * evaluated in double and rounded to float32 as the references store them. */
static void ref_mel_filters(int n_mels, float *w /* (n_mels, N_BINS) */)
{
    double *freqs = malloc(sizeof(double) * (n_mels + 2));
    const double f_sp = 200.0 / 3, min_log_hz = 1000.0, min_log_mel = min_log_hz / f_sp;
    const double logstep = log(6.4) / 27.0, max_mel = 45.245640471924965;
    for (int i = 0; i < n_mels + 2; i++) {
        double mel = max_mel * i / (n_mels + 1);
        freqs[i] = mel >= min_log_mel ? min_log_hz * exp(logstep * (mel - min_log_mel)) : f_sp * mel;
    }
    for (int m = 0; m < n_mels; m++) {
        double enorm = 2.0 / (freqs[m + 2] - freqs[m]);
        for (int k = 0; k < N_BINS; k++) {
            double f = (double)k * SAMPLE_RATE / N_FFT;
            double lower = (f - freqs[m]) / (freqs[m + 1] - freqs[m]);
            double upper = (freqs[m + 2] - f) / (freqs[m + 2] - freqs[m + 1]);
            double v = fmax(0.0, fmin(lower, upper));
            w[(size_t)m * N_BINS + k] = (float)(v * enorm);
        }
    }
    free(freqs);
}

/* Mixed-radix complex DFT of length n = product of factors, recursive
 * decimation in time; stride s over the input. */
static void ref_fft_rec(const double *re, const double *im, size_t s, int n, double *ore, double *oim,
                    const double *twr, const double *twi, int tw_step)
{
    if (n == 1) {
        ore[0] = re[0];
        oim[0] = im[0];
        return;
    }
    int p = n % 4 == 0 ? 4 : n % 2 == 0 ? 2 : n % 5 == 0 ? 5 : n % 3 == 0 ? 3 : n;
    int m = n / p;
    for (int r = 0; r < p; r++) /* sub-transforms of the decimated sequences */
        ref_fft_rec(re + r * s, im + r * s, s * p, m, ore + r * m, oim + r * m, twr, twi, tw_step * p);
    double tr[8], ti[8];
    for (int k = 0; k < m; k++) {
        double xr[8], xi[8];
        for (int r = 0; r < p; r++) { /* twiddle: W_n^(r k) */
            int t = (r * k * tw_step) % N_FFT;
            double a = ore[r * m + k], b = oim[r * m + k];
            xr[r] = a * twr[t] - b * twi[t];
            xi[r] = a * twi[t] + b * twr[t];
        }
        for (int q = 0; q < p; q++) { /* a p-point DFT */
            double sr = 0, si = 0;
            for (int r = 0; r < p; r++) {
                int t = (r * q * m * tw_step) % N_FFT;
                sr += xr[r] * twr[t] - xi[r] * twi[t];
                si += xr[r] * twi[t] + xi[r] * twr[t];
            }
            tr[q] = sr;
            ti[q] = si;
        }
        for (int q = 0; q < p; q++) {
            ore[q * m + k] = tr[q];
            oim[q * m + k] = ti[q];
        }
    }
}

static tsr_status ref_whisper_logmel(const float *x, size_t n, int n_mels, size_t pad, float **mel,
                              int *frames, tsr_error *err, int raw, float *max_out)
{
    *mel = NULL;
    *frames = 0;
    if (n_mels < 1 || n_mels > 512)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "n_mels %d outside 1..512", n_mels);
    size_t L = n + pad;
    if (n == 0 || L / HOP < 1)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "audio of %zu samples is shorter than one 10 ms frame", n);
    if (L / HOP > (size_t)1 << 28)
        return tsr_error_set(err, TSR_ERR_TOO_LARGE, "audio of %zu samples is too long", n);
    int T = (int)(L / HOP); /* the last STFT frame is dropped, as Whisper does */
    float *w = malloc(sizeof(float) * (size_t)n_mels * N_BINS);
    float *out = malloc(sizeof(float) * (size_t)n_mels * T);
    double *twr = malloc(sizeof(double) * N_FFT * 2), *twi = twr + N_FFT;
    float win[N_FFT];
    if (!w || !out || !twr) {
        free(w), free(out), free(twr);
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory for %d frames", T);
    }
    ref_mel_filters(n_mels, w);
    for (int i = 0; i < N_FFT; i++) {
        win[i] = (float)(0.5 - 0.5 * cos(2.0 * PI_D * i / N_FFT)); /* periodic Hann */
        twr[i] = cos(-2.0 * PI_D * i / N_FFT);
        twi[i] = sin(-2.0 * PI_D * i / N_FFT);
    }
    double fr[N_FFT], fi[N_FFT], ore[N_FFT], oim[N_FFT];
    float pw[N_BINS];
    double gmax = -INFINITY;
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < N_FFT; i++) {
            /* index into the padded signal, reflected at both ends (center=True) */
            long long j = (long long)t * HOP + i - N_FFT / 2;
            long long last = (long long)L - 1;
            while (last > 0 && (j < 0 || j > last))
                j = j < 0 ? -j : 2 * last - j;
            if (last == 0)
                j = 0;
            float v = (size_t)j < n ? x[j] : 0.0f;
            fr[i] = (double)(v * win[i]); /* float32 product, as numpy computes it */
            fi[i] = 0.0;
        }
        ref_fft_rec(fr, fi, 1, N_FFT, ore, oim, twr, twi, 1);
        for (int k = 0; k < N_BINS; k++) {
            float re = (float)ore[k], im = (float)oim[k]; /* complex64 */
            float mag = sqrtf(re * re + im * im);
            pw[k] = mag * mag;
        }
        for (int m = 0; m < n_mels; m++) {
            const float *wm = w + (size_t)m * N_BINS;
            float s = 0.0f;
            for (int k = 0; k < N_BINS; k++)
                s += wm[k] * pw[k];
            float lg = log10f(fmaxf(s, 1e-10f));
            out[(size_t)m * T + t] = lg;
            if (lg > gmax)
                gmax = lg;
        }
    }
    float floor_v = (float)gmax - 8.0f;
    *max_out = (float)gmax;
    for (size_t i = 0; i < (size_t)n_mels * T && !raw; i++)
        out[i] = (fmaxf(out[i], floor_v) + 4.0f) / 4.0f;
    free(w);
    free(twr);
    *mel = out;
    *frames = T;
    return TSR_OK;
}

#endif
