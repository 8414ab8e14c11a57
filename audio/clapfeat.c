/* CLAP's log-mel front end, computed as transformers' ClapFeatureExtractor
 * computes it: a centred, reflect-padded STFT of a periodic Hann window in
 * double precision with each bin rounded to complex64, power in double, the
 * mel filters (htk without norm for the "fusion" truncation, slaney with
 * slaney norm otherwise) in double, the floor 1e-10 and 10 log10, rounded to
 * float32. Short clips are repeated and padded ("repeatpad"), long ones are
 * cut into windows by the caller or, with the fusion truncation, shrunk and
 * cropped into four channels with a deterministic choice of crops. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tsr_audio.h"

#define PI_D 3.14159265358979323846

struct tsr_clapfe {
    tsr_clapfe_cfg c;
    int bins;         /* n_fft / 2 + 1 */
    int log2n;        /* n_fft = 2^log2n, or 0: a plain DFT */
    double *win;      /* (n_fft) */
    double *cosv, *sinv; /* (n_fft) twiddles */
    double *filt;     /* (n_mels, bins) */
    int *k0, *k1;     /* each filter's nonzero bins [k0, k1) */
};

static double hz_to_mel(double f, int htk)
{
    if (htk)
        return 2595.0 * log10(1.0 + f / 700.0);
    double mel = 3.0 * f / 200.0;
    if (f >= 1000.0)
        mel = 15.0 + log(f / 1000.0) * (27.0 / log(6.4));
    return mel;
}

static double mel_to_hz(double m, int htk)
{
    if (htk)
        return 700.0 * (pow(10.0, m / 2595.0) - 1.0);
    double f = 200.0 * m / 3.0;
    if (m >= 15.0)
        f = 1000.0 * exp(log(6.4) / 27.0 * (m - 15.0));
    return f;
}

/* numpy.linspace(a, b, n)[i] */
static double linspace(double a, double b, int n, int i)
{
    if (n == 1)
        return a;
    if (i == n - 1)
        return b;
    return i * ((b - a) / (n - 1)) + a;
}

/* transformers' mel_filter_bank: triangles between mel-spaced edges over
 * the FFT bins linspace(0, rate // 2, bins). */
static void make_filters(tsr_clapfe *fe)
{
    const tsr_clapfe_cfg *c = &fe->c;
    int M = c->n_mels, K = fe->bins, htk = c->truncation == TSR_CLAP_TRUNC_FUSION;
    double lo = hz_to_mel(c->fmin, htk), hi = hz_to_mel(c->fmax, htk);
    double edge[4096 + 2];
    for (int i = 0; i < M + 2; i++)
        edge[i] = mel_to_hz(linspace(lo, hi, M + 2, i), htk);
    for (int m = 0; m < M; m++) {
        double enorm = htk ? 1.0 : 2.0 / (edge[m + 2] - edge[m]);
        fe->k0[m] = K, fe->k1[m] = 0;
        for (int k = 0; k < K; k++) {
            double f = linspace(0.0, (double)(c->rate / 2), K, k);
            double down = -(edge[m] - f) / (edge[m + 1] - edge[m]);
            double up = (edge[m + 2] - f) / (edge[m + 2] - edge[m + 1]);
            double v = fmax(0.0, fmin(down, up)) * enorm;
            fe->filt[(size_t)m * K + k] = v;
            if (v != 0.0) {
                if (k < fe->k0[m])
                    fe->k0[m] = k;
                fe->k1[m] = k + 1;
            }
        }
        if (fe->k1[m] == 0)
            fe->k0[m] = 0;
    }
}

tsr_clapfe_cfg tsr_clapfe_default_cfg(void)
{
    return (tsr_clapfe_cfg){64, 48000, 480, 1024, 480000, 0.0, 14000.0,
                            TSR_CLAP_TRUNC_FUSION, TSR_CLAP_PAD_REPEATPAD};
}

tsr_status tsr_clapfe_new(const tsr_clapfe_cfg *c, tsr_clapfe **out, tsr_error *err)
{
    *out = NULL;
    if (c->n_mels < 1 || c->n_mels > 4096 || c->n_fft < 16 || c->n_fft > 65536 || c->hop < 1 ||
        c->hop > 1 << 20 || c->rate < 1000 || c->rate > 384000 || c->max_samples < c->n_fft ||
        c->max_samples > 1 << 28 || !(c->fmin >= 0) || !(c->fmax > c->fmin) ||
        c->fmax > c->rate)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "CLAP feature extractor: unusable settings (%d mels, FFT %d, hop %d, "
                             "%d Hz, %d samples, %g..%g Hz)",
                             c->n_mels, c->n_fft, c->hop, c->rate, c->max_samples, c->fmin,
                             c->fmax);
    tsr_clapfe *fe = calloc(1, sizeof *fe);
    if (!fe)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of memory");
    fe->c = *c;
    fe->bins = c->n_fft / 2 + 1;
    for (int l = 4; l <= 16; l++)
        if (c->n_fft == 1 << l)
            fe->log2n = l;
    size_t N = (size_t)c->n_fft;
    fe->win = malloc(sizeof(double) * N);
    fe->cosv = malloc(sizeof(double) * N);
    fe->sinv = malloc(sizeof(double) * N);
    fe->filt = malloc(sizeof(double) * (size_t)c->n_mels * fe->bins);
    fe->k0 = malloc(sizeof(int) * c->n_mels);
    fe->k1 = malloc(sizeof(int) * c->n_mels);
    if (!fe->win || !fe->cosv || !fe->sinv || !fe->filt || !fe->k0 || !fe->k1) {
        tsr_clapfe_free(fe);
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < N; i++) {
        fe->win[i] = 0.5 - 0.5 * cos(2.0 * PI_D * (double)i / (double)N);
        fe->cosv[i] = cos(2.0 * PI_D * (double)i / (double)N);
        fe->sinv[i] = -sin(2.0 * PI_D * (double)i / (double)N);
    }
    make_filters(fe);
    *out = fe;
    return TSR_OK;
}

void tsr_clapfe_free(tsr_clapfe *fe)
{
    if (!fe)
        return;
    free(fe->win), free(fe->cosv), free(fe->sinv), free(fe->filt), free(fe->k0), free(fe->k1);
    free(fe);
}

const tsr_clapfe_cfg *tsr_clapfe_config(const tsr_clapfe *fe) { return &fe->c; }

int tsr_clapfe_window_frames(const tsr_clapfe *fe) { return fe->c.max_samples / fe->c.hop + 1; }

int tsr_clapfe_channels(const tsr_clapfe *fe)
{
    return fe->c.truncation == TSR_CLAP_TRUNC_FUSION ? 4 : 1;
}

/* In-place radix-2 FFT of re/im (length 2^log2n). */
static void fft(const tsr_clapfe *fe, double *re, double *im)
{
    int N = fe->c.n_fft;
    for (int i = 1, j = 0; i < N; i++) {
        int bit = N >> 1;
        for (; j & bit; bit >>= 1)
            j ^= bit;
        j ^= bit;
        if (i < j) {
            double t = re[i];
            re[i] = re[j], re[j] = t;
            t = im[i], im[i] = im[j], im[j] = t;
        }
    }
    for (int len = 2; len <= N; len <<= 1) {
        int step = N / len, half = len / 2;
        for (int i = 0; i < N; i += len)
            for (int k = 0; k < half; k++) {
                double wr = fe->cosv[k * step], wi = fe->sinv[k * step];
                double xr = re[i + k + half], xi = im[i + k + half];
                double tr = xr * wr - xi * wi, ti = xr * wi + xi * wr;
                re[i + k + half] = re[i + k] - tr, im[i + k + half] = im[i + k] - ti;
                re[i + k] += tr, im[i + k] += ti;
            }
    }
}

/* Sample j of the reflect-padded signal x[0..n) (numpy's "reflect"). */
static double reflect_at(const float *x, long long n, long long j)
{
    if (n == 1)
        return x[0];
    long long period = 2 * (n - 1);
    j %= period;
    if (j < 0)
        j += period;
    if (j >= n)
        j = period - j;
    return x[j];
}

tsr_status tsr_clapfe_logmel(const tsr_clapfe *fe, const float *x, size_t n, float *mel,
                             size_t frames, tsr_error *err)
{
    const tsr_clapfe_cfg *c = &fe->c;
    int N = c->n_fft, K = fe->bins, M = c->n_mels;
    if (n < 1 || frames != tsr_clapfe_frames(fe, n))
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "CLAP log-mel: %zu frames for %zu samples",
                             frames, n);
    double *re = malloc(sizeof(double) * (2 * (size_t)N + K)), *im = re + N, *pw = im + N;
    if (!re)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of memory");
    long long half = N / 2;
    for (size_t t = 0; t < frames; t++) {
        long long s0 = (long long)t * c->hop - half;
        for (int i = 0; i < N; i++) {
            long long j = s0 + i;
            double v = j >= 0 && j < (long long)n ? x[j] : reflect_at(x, (long long)n, j);
            re[i] = v * fe->win[i];
            im[i] = 0.0;
        }
        if (fe->log2n)
            fft(fe, re, im);
        else { /* a plain DFT for lengths that are not powers of two */
            double *tr = malloc(sizeof(double) * 2 * (size_t)K);
            if (!tr) {
                free(re);
                return tsr_error_set(err, TSR_ERR_NOMEM, "out of memory");
            }
            for (int k = 0; k < K; k++) {
                double sr = 0, si = 0;
                for (int i = 0; i < N; i++) {
                    int idx = (int)(((long long)i * k) % N);
                    sr += re[i] * fe->cosv[idx], si += re[i] * fe->sinv[idx];
                }
                tr[2 * k] = sr, tr[2 * k + 1] = si;
            }
            for (int k = 0; k < K; k++)
                re[k] = tr[2 * k], im[k] = tr[2 * k + 1];
            free(tr);
        }
        for (int k = 0; k < K; k++) { /* complex64, then |.|^2 in double */
            double a = (float)re[k], b = (float)im[k];
            double mag = sqrt(a * a + b * b);
            pw[k] = mag * mag;
        }
        for (int m = 0; m < M; m++) {
            const double *w = fe->filt + (size_t)m * K;
            double s = 0.0;
            for (int k = 0; k < K; k++)
                s += w[k] * pw[k];
            if (!(s > 1e-10))
                s = 1e-10;
            mel[t * M + m] = (float)(10.0 * log10(s));
        }
    }
    free(re);
    return TSR_OK;
}

size_t tsr_clapfe_frames(const tsr_clapfe *fe, size_t n) { return n / (size_t)fe->c.hop + 1; }

tsr_status tsr_clapfe_window(const tsr_clapfe *fe, const float *x, size_t n, float *out,
                             tsr_error *err)
{
    const tsr_clapfe_cfg *c = &fe->c;
    size_t L = (size_t)c->max_samples;
    if (n < 1 || n > L)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "CLAP window: %zu samples (1..%zu)", n, L);
    float *w = malloc(sizeof(float) * L);
    if (!w)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of memory");
    size_t used = n;
    memcpy(w, x, sizeof(float) * n);
    if (n < L && c->padding != TSR_CLAP_PAD_ZERO) {
        size_t reps = L / n; /* int(max_length / len) */
        if (c->padding == TSR_CLAP_PAD_REPEAT)
            reps += 1;
        for (size_t r = 1; r < reps && used < L; r++) {
            size_t k = L - used < n ? L - used : n;
            memcpy(w + used, x, sizeof(float) * k);
            used += k;
        }
    }
    memset(w + used, 0, sizeof(float) * (L - used));
    size_t F = tsr_clapfe_frames(fe, L);
    tsr_status rc = tsr_clapfe_logmel(fe, w, L, out, F, err);
    free(w);
    size_t per = F * (size_t)c->n_mels;
    for (int ch = 1; rc == TSR_OK && ch < tsr_clapfe_channels(fe); ch++)
        memcpy(out + ch * per, out, sizeof(float) * per);
    return rc;
}

/* torch's bilinear interpolate (align_corners=False) of mel (T, M) to (F, M)
 * along time; the mel axis keeps its size, so its weights are 1 and 0. */
static void shrink(const float *mel, size_t T, int M, float *out, size_t F)
{
    float scale = (float)T / (float)F;
    for (size_t y = 0; y < F; y++) {
        float src = scale * ((float)y + 0.5f) - 0.5f;
        if (src < 0)
            src = 0;
        size_t h1 = (size_t)src;
        size_t hp = h1 < T - 1 ? 1 : 0;
        float l1 = src - (float)h1, l0 = 1.0f - l1;
        for (int m = 0; m < M; m++)
            out[y * M + m] = l0 * mel[h1 * M + m] + l1 * mel[(h1 + hp) * M + m];
    }
}

tsr_status tsr_clapfe_fusion(const tsr_clapfe *fe, const float *x, size_t n, float *out,
                             int *longer, tsr_error *err)
{
    const tsr_clapfe_cfg *c = &fe->c;
    *longer = 1;
    if (c->truncation != TSR_CLAP_TRUNC_FUSION)
        return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                             "the fusion window needs a feature extractor whose truncation is "
                             "\"fusion\"");
    if (c->n_mels != 64) /* the reference shrinks the whole mel to 64 bins */
        return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                             "the fusion window needs 64 mel bins (this extractor has %d)",
                             c->n_mels);
    if (n <= (size_t)c->max_samples)
        return tsr_clapfe_window(fe, x, n, out, err);
    size_t T = tsr_clapfe_frames(fe, n), F = (size_t)tsr_clapfe_window_frames(fe);
    int M = c->n_mels;
    if (T > ((size_t)1 << 40) / (size_t)M)
        return tsr_error_set(err, TSR_ERR_TOO_LARGE, "CLAP fusion: %zu frames", T);
    float *mel = malloc(sizeof(float) * T * M);
    if (!mel)
        return tsr_error_set(err, TSR_ERR_NOMEM,
                             "out of memory for the log-mel of %zu samples", n);
    tsr_status rc = tsr_clapfe_logmel(fe, x, n, mel, T, err);
    if (rc != TSR_OK) {
        free(mel);
        return rc;
    }
    size_t per = F * (size_t)M;
    if (T == F) { /* just over max_length: the whole mel, four times */
        for (int ch = 0; ch < 4; ch++)
            memcpy(out + ch * per, mel, sizeof(float) * per);
        free(mel);
        return TSR_OK;
    }
    /* numpy.array_split(range(T - F + 1), 3), the middle of each part */
    size_t cnt = T - F + 1, base = cnt / 3, extra = cnt % 3, start = 0;
    for (int part = 0; part < 3; part++) {
        size_t len = base + ((size_t)part < extra ? 1 : 0);
        size_t idx = len ? start + len / 2 : 0;
        memcpy(out + (size_t)(part + 1) * per, mel + idx * M, sizeof(float) * per);
        start += len;
    }
    shrink(mel, T, M, out, F);
    free(mel);
    return TSR_OK;
}
