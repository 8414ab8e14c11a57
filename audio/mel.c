/* Whisper's log-mel spectrogram, computed as faster-whisper's FeatureExtractor
 * (and transformers' WhisperFeatureExtractor) computes it: float32 window
 * products, a double-precision DFT rounded to complex64, float32 power and
 * filter sums. Any frame range of a signal read through a function gives the
 * same bits as the whole signal at once. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tsr_audio.h"

#define N_FFT 400
#define HOP 160
#define N_BINS (N_FFT / 2 + 1)
#define SAMPLE_RATE 16000
#define PI_D 3.14159265358979323846
#define BLOCK 256 /* frames per read of the signal */

struct tsr_logmel {
    int n_mels;
    float win[N_FFT];           /* periodic Hann, float32 */
    double twr[N_FFT], twi[N_FFT]; /* W_400^i */
    double tw[4][2 * 100 * 4];  /* per stage: (m, p) twiddles W_n^(r k), re and im */
    double dft[4][2 * 5 * 5];   /* per stage: (p, p) W_p^(r q) */
    short perm[N_FFT];          /* digit reversal: position i holds input perm[i] */
    float *w;                   /* (n_mels, N_BINS) filters */
    int *k0, *k1;               /* (n_mels) each filter's nonzero bins [k0, k1) */
};

/* Slaney-style mel filters (librosa's defaults: htk=False, norm="slaney"),
 * evaluated in double and rounded to float32 as the references store them. */
static int mel_filters(int n_mels, float *w /* (n_mels, N_BINS) */)
{
    double *freqs = malloc(sizeof(double) * (n_mels + 2));
    if (!freqs)
        return 0;
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
    return 1;
}

/* The DFT of length 400 is the mixed-radix decimation in time that
 * transformers' numpy reference runs (400 = 4 * 4 * 5 * 5): the input is read
 * in digit-reversed order, then each stage, innermost first, combines p
 * sub-transforms of length m into blocks of length p * m with twiddles
 * W_400^(r k step) and a plain p-point DFT. Every product and sum is done in
 * the same order as the recursive form this replaces, so the bits match; the
 * tables only save the index arithmetic. */
#define N_STAGES 4
static const int stage_p[N_STAGES] = {5, 5, 4, 4}; /* innermost first */

/* Fills the digit-reversal permutation and the twiddle tables. */
static void fft_plan(tsr_logmel *lm)
{
    int step = N_FFT, n = 1;
    for (int s = 0; s < N_STAGES; s++) { /* stage s builds blocks of n * p */
        int p = stage_p[s], m = n;
        n *= p;
        step /= p; /* W_400^(step) is the n-th root of unity */
        double *t = lm->tw[s];
        for (int k = 0; k < m; k++)
            for (int r = 0; r < p; r++) { /* W_n^(r k) */
                int i = (r * k * step) % N_FFT;
                t[2 * (k * p + r)] = lm->twr[i];
                t[2 * (k * p + r) + 1] = lm->twi[i];
            }
        double *d = lm->dft[s];
        for (int q = 0; q < p; q++)
            for (int r = 0; r < p; r++) { /* W_p^(r q) */
                int i = (r * q * m * step) % N_FFT;
                d[2 * (q * p + r)] = lm->twr[i];
                d[2 * (q * p + r) + 1] = lm->twi[i];
            }
    }
    /* leaf i of the recursion reads input sum(digit * stride) */
    for (int i = 0; i < N_FFT; i++) {
        int rest = i, in = 0, stride = 1, blk = N_FFT;
        for (int s = N_STAGES - 1; s >= 0; s--) { /* outermost first */
            blk /= stage_p[s];
            in += (rest / blk) * stride;
            rest %= blk;
            stride *= stage_p[s];
        }
        lm->perm[i] = (short)in;
    }
}

/* Output q of a p-point DFT of x (after the twiddles), into br, bi. */
static inline void dft_out(const double *xr, const double *xi, const int p, const int q,
                           const double *d, double *br, double *bi)
{
    double sr = 0, si = 0;
    for (int r = 0; r < p; r++) {
        double c = d[2 * (q * p + r)], sn = d[2 * (q * p + r) + 1];
        sr += xr[r] * c - xi[r] * sn;
        si += xr[r] * sn + xi[r] * c;
    }
    *br = sr;
    *bi = si;
}

/* One stage on blocks of p * m; inlined with p a constant, so the loops over
 * r and q unroll. The last stage (half, p = 4, m = 100) leaves out the
 * outputs past N_BINS, which the power spectrum does not use. */
static inline void fft_stage(double *re, double *im, const int p, const int m, const double *tw,
                             const double *d, const int half)
{
    for (int o = 0; o < N_FFT; o += p * m) {
        double *br = re + o, *bi = im + o;
        for (int k = 0; k < m; k++) {
            double xr[5], xi[5];
            for (int r = 0; r < p; r++) { /* twiddle: W_n^(r k) */
                double a = br[r * m + k], b = bi[r * m + k];
                double c = tw[2 * (k * p + r)], sn = tw[2 * (k * p + r) + 1];
                xr[r] = a * c - b * sn;
                xi[r] = a * sn + b * c;
            }
            for (int q = 0; q < (half ? 2 : p); q++) /* a p-point DFT */
                dft_out(xr, xi, p, q, d, br + q * m + k, bi + q * m + k);
            if (half && k == 0) /* bin 200 */
                dft_out(xr, xi, p, 2, d, br + 2 * m, bi + 2 * m);
        }
    }
}

/* In place: re, im hold the digit-reversed input and receive the DFT's bins
 * 0..N_BINS-1. */
static void fft400(const tsr_logmel *lm, double *re, double *im)
{
    fft_stage(re, im, 5, 1, lm->tw[0], lm->dft[0], 0);
    fft_stage(re, im, 5, 5, lm->tw[1], lm->dft[1], 0);
    fft_stage(re, im, 4, 25, lm->tw[2], lm->dft[2], 0);
    fft_stage(re, im, 4, 100, lm->tw[3], lm->dft[3], 1); /* bins 0..200 of 400 */
}

tsr_status tsr_logmel_new(int n_mels, tsr_logmel **out, tsr_error *err)
{
    *out = NULL;
    if (n_mels < 1 || n_mels > 512)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "n_mels %d outside 1..512", n_mels);
    tsr_logmel *m = calloc(1, sizeof *m);
    if (m) {
        m->n_mels = n_mels;
        m->w = malloc(sizeof(float) * (size_t)n_mels * N_BINS);
        m->k0 = malloc(sizeof(int) * (size_t)n_mels * 2);
        m->k1 = m->k0 ? m->k0 + n_mels : NULL;
    }
    if (!m || !m->w || !m->k0 || !mel_filters(n_mels, m->w)) {
        tsr_logmel_free(m);
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory for %d mel filters", n_mels);
    }
    for (int i = 0; i < N_FFT; i++) {
        m->win[i] = (float)(0.5 - 0.5 * cos(2.0 * PI_D * i / N_FFT)); /* periodic Hann */
        m->twr[i] = cos(-2.0 * PI_D * i / N_FFT);
        m->twi[i] = sin(-2.0 * PI_D * i / N_FFT);
    }
    fft_plan(m);
    /* A zero weight adds +0.0f to a sum that is >= +0.0f, which leaves it as
     * it is: the filter sums skip the zero bins with the same result. */
    for (int k = 0; k < n_mels; k++) {
        const float *wm = m->w + (size_t)k * N_BINS;
        int a = 0, b = N_BINS;
        while (a < b && wm[a] == 0.0f)
            a++;
        while (b > a && wm[b - 1] == 0.0f)
            b--;
        m->k0[k] = a;
        m->k1[k] = b;
    }
    *out = m;
    return TSR_OK;
}

void tsr_logmel_free(tsr_logmel *m)
{
    if (!m)
        return;
    free(m->w);
    free(m->k0);
    free(m);
}

/* Index j of the padded signal of length L, reflected at both ends as
 * numpy.pad(mode="reflect") does (center=True), repeatedly for tiny signals. */
static long long reflect(long long j, long long L)
{
    long long last = L - 1;
    while (last > 0 && (j < 0 || j > last))
        j = j < 0 ? -j : 2 * last - j;
    return last == 0 ? 0 : j;
}

/* One frame: x(j) for the 400 window samples, given the signal's samples
 * [lo, lo + len) in buf and zeros at and past total. Returns the frame's
 * largest value, writing mel m to col[m * ld]. */
static float one_frame(const tsr_logmel *lm, long long t, long long L, size_t total,
                       const float *buf, long long lo, float *col, size_t ld)
{
    double fr[N_FFT], ore[N_FFT], oim[N_FFT];
    float pw[N_BINS];
    long long j0 = t * HOP - N_FFT / 2;
    if (j0 >= 0 && j0 + N_FFT <= (long long)total) { /* inside the signal */
        const float *x = buf + (j0 - lo);
        for (int i = 0; i < N_FFT; i++)
            fr[i] = (double)(x[i] * lm->win[i]); /* float32 product, as numpy computes it */
    } else {
        for (int i = 0; i < N_FFT; i++) {
            long long j = reflect(j0 + i, L);
            float v = (unsigned long long)j < total ? buf[j - lo] : 0.0f;
            fr[i] = (double)(v * lm->win[i]);
        }
    }
    for (int i = 0; i < N_FFT; i++) {
        ore[i] = fr[lm->perm[i]];
        oim[i] = 0.0;
    }
    fft400(lm, ore, oim);
    int finite = 1;
    for (int k = 0; k < N_BINS; k++) {
        float re = (float)ore[k], im = (float)oim[k]; /* complex64 */
        float mag = sqrtf(re * re + im * im);
        pw[k] = mag * mag;
        finite &= isfinite(pw[k]) != 0;
    }
    float fmax_v = -INFINITY;
    for (int m = 0; m < lm->n_mels; m++) {
        const float *wm = lm->w + (size_t)m * N_BINS;
        /* 0 * inf would be NaN: absurd input sums every bin, as numpy does */
        int a = finite ? lm->k0[m] : 0, b = finite ? lm->k1[m] : N_BINS;
        float s = 0.0f;
        for (int k = a; k < b; k++)
            s += wm[k] * pw[k];
        float lg = log10f(fmaxf(s, 1e-10f));
        col[(size_t)m * ld] = lg;
        if (lg > fmax_v)
            fmax_v = lg;
    }
    return fmax_v;
}

tsr_status tsr_logmel_frames(const tsr_logmel *m, tsr_sample_fn read, void *user, size_t total,
                             size_t pad, size_t f0, size_t nf, float *out, size_t ld,
                             float *frame_max, tsr_error *err)
{
    if (frame_max)
        *frame_max = -INFINITY;
    if (!m || !read)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "log-mel: no filters or no sample function");
    if (total > ((size_t)1 << 52) || pad > ((size_t)1 << 52))
        return tsr_error_set(err, TSR_ERR_TOO_LARGE, "log-mel: a signal of %zu + %zu samples",
                             total, pad);
    long long L = (long long)(total + pad);
    size_t T = (size_t)L / HOP;
    if (f0 > T || nf > T - f0)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "log-mel: frames [%zu, %zu) of a signal of %zu frames", f0, f0 + nf,
                             T);
    if (nf == 0)
        return TSR_OK;
    if (!out || ld < nf)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "log-mel: leading dimension %zu for %zu frames", ld, nf);
    size_t bcap = (size_t)(BLOCK - 1) * HOP + N_FFT + 1;
    float *buf = malloc(sizeof(float) * bcap);
    if (!buf)
        return tsr_error_set(err, TSR_ERR_NOMEM, "log-mel: out of host memory");
    tsr_status rc = TSR_OK;
    float gmax = -INFINITY;
    for (size_t t0 = f0; t0 < f0 + nf && rc == TSR_OK; t0 += BLOCK) {
        size_t t1 = t0 + BLOCK < f0 + nf ? t0 + BLOCK : f0 + nf;
        /* the samples these frames read: their direct span and its reflections */
        long long jlo = (long long)t0 * HOP - N_FFT / 2;
        long long jhi = (long long)(t1 - 1) * HOP + N_FFT / 2 - 1;
        long long lo = jlo < 0 ? 0 : jlo, hi = jhi > L - 1 ? L - 1 : jhi;
        for (long long j = jlo; j < 0; j++) {
            long long r = reflect(j, L);
            lo = r < lo ? r : lo, hi = r > hi ? r : hi;
        }
        for (long long j = L; j <= jhi; j++) {
            long long r = reflect(j, L);
            lo = r < lo ? r : lo, hi = r > hi ? r : hi;
        }
        long long end = hi + 1 < (long long)total ? hi + 1 : (long long)total;
        if (end - lo > (long long)bcap) { /* cannot happen: the span is at most bcap */
            rc = tsr_error_set(err, TSR_ERR_INVALID_ARG, "log-mel: internal span error");
            break;
        }
        if (end > lo)
            rc = read(user, (size_t)lo, (size_t)(end - lo), buf, err);
        for (size_t t = t0; t < t1 && rc == TSR_OK; t++) {
            float v = one_frame(m, (long long)t, L, total, buf, lo, out + (t - f0), ld);
            if (v > gmax)
                gmax = v;
        }
    }
    free(buf);
    if (rc == TSR_OK && frame_max)
        *frame_max = gmax;
    return rc;
}

void tsr_logmel_normalize(float *x, size_t n, float global_max)
{
    float floor_v = global_max - 8.0f;
    for (size_t i = 0; i < n; i++)
        x[i] = (fmaxf(x[i], floor_v) + 4.0f) / 4.0f;
}

tsr_status tsr_audio_pcm_read_cb(void *pcm, size_t first, size_t n, float *out, tsr_error *err)
{
    const tsr_audio_pcm *p = pcm;
    if (first > p->n || n > p->n - first)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "samples [%zu, %zu) of %zu", first,
                             first + n, p->n);
    memcpy(out, p->x + first, sizeof(float) * n);
    return TSR_OK;
}

tsr_status tsr_whisper_logmel(const float *x, size_t n, int n_mels, size_t pad, float **mel,
                              int *frames, tsr_error *err)
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
    float *out = malloc(sizeof(float) * (size_t)n_mels * T), gmax = -INFINITY;
    if (!out)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory for %d frames", T);
    tsr_logmel *lm = NULL;
    tsr_audio_pcm pcm = {x, n};
    tsr_status rc = tsr_logmel_new(n_mels, &lm, err);
    if (rc == TSR_OK)
        rc = tsr_logmel_frames(lm, tsr_audio_pcm_read_cb, &pcm, n, pad, 0, (size_t)T, out,
                               (size_t)T, &gmax, err);
    tsr_logmel_free(lm);
    if (rc != TSR_OK) {
        free(out);
        return rc;
    }
    tsr_logmel_normalize(out, (size_t)n_mels * T, gmax);
    *mel = out;
    *frames = T;
    return TSR_OK;
}
