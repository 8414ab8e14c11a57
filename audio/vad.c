/* Voice activity detection: frame energies against an adaptive noise floor
 * in place of Silero VAD, then faster-whisper 1.2.1's get_speech_timestamps,
 * collect_chunks and SpeechTimestampsMap, step for step. */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsr_audio.h"

#define RATE 16000
#define WIN 512              /* samples per frame (Silero's window at 16 kHz) */
#define READ_FRAMES 64       /* frames per read of the signal */
#define HIST_LO (-120.0)     /* the noise floor's histogram: 0.5 dB bins over [-120, 20) dBFS */
#define HIST_STEP 0.5
#define HIST_BINS 280
#define SILENT_DB (-100.0f)  /* the level of a frame without samples */

tsr_vad_params tsr_vad_default_params(void)
{
    return (tsr_vad_params){
        .threshold = 0.5,
        .neg_threshold = -1,
        .min_speech_duration_ms = 0,
        .max_speech_duration_s = INFINITY,
        .min_silence_duration_ms = 2000,
        .speech_pad_ms = 400,
        .noise_window_s = 30,
        .noise_percentile = 0.1,
        .noise_floor_min_db = -60,
        .noise_floor_max_db = -40,
        .snr_db = 10,
        .slope_db = 2,
    };
}

static tsr_status check_params(const tsr_vad_params *p, int energy, tsr_error *err)
{
    /* written so that NaN fails every check */
    if (!(p->threshold >= 0 && p->threshold <= 1) || !(p->neg_threshold <= 1) ||
        !(p->min_speech_duration_ms >= 0) || !(p->max_speech_duration_s > 0) ||
        !(p->min_silence_duration_ms >= 0) || !(p->speech_pad_ms >= 0) ||
        !(p->speech_pad_ms <= 3.6e6) || !(p->min_speech_duration_ms <= 1e12) ||
        !(p->min_silence_duration_ms <= 1e12))
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "VAD: threshold %g, neg_threshold %g, min_speech_duration_ms %g, "
                             "max_speech_duration_s %g, min_silence_duration_ms %g, "
                             "speech_pad_ms %g: thresholds go in [0, 1] and durations are >= 0",
                             p->threshold, p->neg_threshold, p->min_speech_duration_ms,
                             p->max_speech_duration_s, p->min_silence_duration_ms,
                             p->speech_pad_ms);
    if (energy && (!(p->noise_window_s > 0 && p->noise_window_s <= 1e6) ||
                   !(p->noise_percentile >= 0 && p->noise_percentile <= 1) ||
                   !isfinite(p->noise_floor_min_db) || !isfinite(p->noise_floor_max_db) ||
                   !(p->noise_floor_min_db <= p->noise_floor_max_db) || !isfinite(p->snr_db) ||
                   !(p->slope_db > 0 && p->slope_db < INFINITY)))
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "VAD: noise_window_s %g, noise_percentile %g, noise_floor_min_db "
                             "%g, noise_floor_max_db %g, snr_db %g, slope_db %g: the window and "
                             "the slope are > 0, the percentile in [0, 1], min <= max",
                             p->noise_window_s, p->noise_percentile, p->noise_floor_min_db,
                             p->noise_floor_max_db, p->snr_db, p->slope_db);
    return TSR_OK;
}

static int hist_bin(float level)
{
    double b = floor((level - HIST_LO) / HIST_STEP);
    return !(b >= 0) ? 0 : b >= HIST_BINS ? HIST_BINS - 1 : (int)b; /* NaN: bin 0 */
}

tsr_status tsr_vad_probs(tsr_sample_fn read, void *user, size_t total, const tsr_vad_params *p,
                         float **probs, size_t *n_frames, tsr_error *err)
{
    *probs = NULL;
    *n_frames = 0;
    tsr_vad_params def = tsr_vad_default_params();
    if (!p)
        p = &def;
    tsr_status rc = check_params(p, 1, err);
    if (rc != TSR_OK)
        return rc;
    if (!read)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "VAD: no sample function");
    size_t F = total / WIN + 1; /* np.pad(audio, (0, 512 - len % 512)) */
    float *level = malloc(sizeof(float) * F), *x = malloc(sizeof(float) * WIN * READ_FRAMES);
    uint16_t *bin = malloc(sizeof(uint16_t) * F);
    if (!level || !x || !bin) {
        free(level), free(x), free(bin);
        return tsr_error_set(err, TSR_ERR_NOMEM, "VAD: out of host memory for %zu frames", F);
    }
    /* each frame's level in dBFS */
    for (size_t f0 = 0; f0 < F && rc == TSR_OK; f0 += READ_FRAMES) {
        size_t f1 = f0 + READ_FRAMES < F ? f0 + READ_FRAMES : F;
        size_t s0 = f0 * WIN, s1 = f1 * WIN < total ? f1 * WIN : total;
        if (s1 > s0)
            rc = read(user, s0, s1 - s0, x, err);
        for (size_t f = f0; f < f1 && rc == TSR_OK; f++) {
            size_t a = f * WIN, b = a + WIN < total ? a + WIN : total;
            double e = 0;
            for (size_t i = a; i < b; i++)
                e += (double)x[i - s0] * x[i - s0];
            level[f] = b > a ? (float)(10.0 * log10(e / (double)(b - a) + 1e-10)) : SILENT_DB;
            bin[f] = (uint16_t)hist_bin(level[f]);
        }
    }
    free(x);
    if (rc != TSR_OK) {
        free(level), free(bin);
        return rc;
    }
    /* the noise floor: a low quantile of the levels in a centred window, kept
     * as a histogram that slides with the frame */
    double wf = p->noise_window_s * RATE / WIN;
    size_t half = wf >= 2.0 * F ? F : (size_t)(wf / 2);
    uint32_t hist[HIST_BINS] = {0};
    size_t count = 0, in_hi = 0; /* frames [in_lo, in_hi) are in the histogram */
    for (size_t f = 0; f < F; f++) {
        size_t want_hi = f + half + 1 < F ? f + half + 1 : F;
        for (; in_hi < want_hi; in_hi++, count++)
            hist[bin[in_hi]]++;
        if (f > half) {
            hist[bin[f - half - 1]]--;
            count--;
        }
        double rank = ceil(p->noise_percentile * (double)count);
        size_t k = rank < 1 ? 1 : (size_t)rank, cum = 0;
        int b = 0;
        for (; b < HIST_BINS - 1; b++)
            if ((cum += hist[b]) >= k)
                break;
        double floor_db = HIST_LO + HIST_STEP * (b + 0.5);
        if (floor_db < p->noise_floor_min_db)
            floor_db = p->noise_floor_min_db;
        if (floor_db > p->noise_floor_max_db)
            floor_db = p->noise_floor_max_db;
        double z = (level[f] - floor_db - p->snr_db) / p->slope_db;
        level[f] = (float)(1.0 / (1.0 + exp(-z))); /* the level becomes the probability */
    }
    free(bin);
    *probs = level;
    *n_frames = F;
    return TSR_OK;
}

typedef struct {
    long long start, end;
} span;

typedef struct {
    span *v;
    size_t n, cap;
} spans;

static int push(spans *s, long long start, long long end)
{
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 16;
        span *p = realloc(s->v, sizeof *p * nc);
        if (!p)
            return 0;
        s->v = p;
        s->cap = nc;
    }
    s->v[s->n++] = (span){start, end};
    return 1;
}

static long long floor_div2(long long a) { return a >= 0 ? a / 2 : -((-a + 1) / 2); }

tsr_status tsr_vad_speech(const float *probs, size_t n_frames, size_t total,
                          const tsr_vad_params *p, tsr_vad_chunk **chunks, size_t *n,
                          tsr_error *err)
{
    *chunks = NULL;
    *n = 0;
    tsr_vad_params def = tsr_vad_default_params();
    if (!p)
        p = &def;
    tsr_status rc = check_params(p, 0, err);
    if (rc != TSR_OK)
        return rc;
    if (n_frames && !probs)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "VAD: no probabilities");
    if (total > ((size_t)1 << 52))
        return tsr_error_set(err, TSR_ERR_TOO_LARGE, "VAD: a signal of %zu samples", total);
    /* get_speech_timestamps, with Python's int and float arithmetic; numpy 2
     * compares the float32 probabilities with the thresholds in float32 */
    const double min_speech = (double)RATE * p->min_speech_duration_ms / 1000;
    const double pad = (double)RATE * p->speech_pad_ms / 1000;
    const double max_speech = (double)RATE * p->max_speech_duration_s - WIN - 2 * pad;
    const double min_silence = (double)RATE * p->min_silence_duration_ms / 1000;
    const double min_silence_at_max = (double)RATE * 98 / 1000;
    const float thr = (float)p->threshold;
    const float neg = (float)(p->neg_threshold >= 0 ? p->neg_threshold
                                                    : fmax(p->threshold - 0.15, 0.01));
    spans sp = {0};
    int triggered = 0, have_cur = 0, ok = 1;
    long long cur_start = 0, temp_end = 0, prev_end = 0, next_start = 0;
    for (size_t i = 0; i < n_frames && ok; i++) {
        float prob = probs[i];
        long long at = (long long)(WIN * i);
        if (prob >= thr && temp_end) {
            temp_end = 0;
            if (next_start < prev_end)
                next_start = at;
        }
        if (prob >= thr && !triggered) {
            triggered = 1;
            have_cur = 1;
            cur_start = at;
            continue;
        }
        if (triggered && (double)(at - cur_start) > max_speech) {
            if (prev_end) {
                ok = push(&sp, cur_start, prev_end);
                have_cur = 0;
                if (next_start < prev_end) { /* silence reached before, no speech since */
                    triggered = 0;
                } else {
                    have_cur = 1;
                    cur_start = next_start;
                }
                prev_end = next_start = temp_end = 0;
            } else {
                ok = push(&sp, cur_start, at);
                have_cur = 0;
                prev_end = next_start = temp_end = 0;
                triggered = 0;
                continue;
            }
        }
        if (prob < neg && triggered) {
            if (!temp_end)
                temp_end = at;
            if ((double)(at - temp_end) > min_silence_at_max) /* not a very short silence */
                prev_end = temp_end;
            if ((double)(at - temp_end) < min_silence)
                continue;
            if ((double)(temp_end - cur_start) > min_speech)
                ok = push(&sp, cur_start, temp_end);
            have_cur = 0;
            prev_end = next_start = temp_end = 0;
            triggered = 0;
            continue;
        }
    }
    if (ok && have_cur && (double)((long long)total - cur_start) > min_speech)
        ok = push(&sp, cur_start, (long long)total);
    if (!ok) {
        free(sp.v);
        return tsr_error_set(err, TSR_ERR_NOMEM, "VAD: out of host memory");
    }
    /* the padding, shared between chunks closer than twice the padding */
    long long len = (long long)total;
    for (size_t i = 0; i < sp.n; i++) {
        span *s = &sp.v[i];
        if (i == 0) {
            double v = (double)s->start - pad;
            s->start = (long long)(v > 0 ? v : 0);
        }
        if (i + 1 < sp.n) {
            long long silence = sp.v[i + 1].start - s->end;
            if ((double)silence < 2 * pad) {
                s->end += floor_div2(silence);
                long long v = sp.v[i + 1].start - floor_div2(silence);
                sp.v[i + 1].start = v > 0 ? v : 0;
            } else {
                double e = (double)s->end + pad, v = (double)sp.v[i + 1].start - pad;
                s->end = (long long)((double)len < e ? (double)len : e);
                sp.v[i + 1].start = (long long)(v > 0 ? v : 0);
            }
        } else {
            double e = (double)s->end + pad;
            s->end = (long long)((double)len < e ? (double)len : e);
        }
    }
    tsr_vad_chunk *c = sp.n ? malloc(sizeof *c * sp.n) : NULL;
    if (sp.n && !c) {
        free(sp.v);
        return tsr_error_set(err, TSR_ERR_NOMEM, "VAD: out of host memory");
    }
    size_t offset = 0;
    for (size_t i = 0; i < sp.n; i++) {
        c[i].start = (size_t)sp.v[i].start;
        c[i].end = (size_t)sp.v[i].end;
        c[i].offset = offset;
        offset += c[i].end - c[i].start;
    }
    free(sp.v);
    *chunks = c;
    *n = sp.n;
    return TSR_OK;
}

tsr_status tsr_vad_detect(tsr_sample_fn read, void *user, size_t total, const tsr_vad_params *p,
                          tsr_vad_chunk **chunks, size_t *n, tsr_error *err)
{
    *chunks = NULL;
    *n = 0;
    float *probs = NULL;
    size_t F = 0;
    tsr_status rc = tsr_vad_probs(read, user, total, p, &probs, &F, err);
    if (rc == TSR_OK)
        rc = tsr_vad_speech(probs, F, total, p, chunks, n, err);
    free(probs);
    return rc;
}

size_t tsr_vad_collected_samples(const tsr_vad_chunk *chunks, size_t n)
{
    return n ? chunks[n - 1].offset + (chunks[n - 1].end - chunks[n - 1].start) : 0;
}

tsr_status tsr_vad_collected_read(void *collected, size_t first, size_t n, float *out,
                                  tsr_error *err)
{
    const tsr_vad_collected *v = collected;
    size_t len = tsr_vad_collected_samples(v->chunks, v->n);
    if (first > len || n > len - first)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "VAD: samples [%zu, %zu) of %zu collected", first, first + n, len);
    /* the last chunk that begins at or before first */
    size_t lo = 0, hi = v->n;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (v->chunks[mid].offset <= first)
            lo = mid;
        else
            hi = mid;
    }
    for (size_t i = lo; n && i < v->n; i++) {
        const tsr_vad_chunk *c = &v->chunks[i];
        size_t clen = c->end - c->start;
        if (first >= c->offset + clen)
            continue; /* an empty chunk */
        size_t k = c->offset + clen - first < n ? c->offset + clen - first : n;
        tsr_status rc = v->read(v->user, c->start + (first - c->offset), k, out, err);
        if (rc != TSR_OK)
            return rc;
        out += k;
        first += k;
        n -= k;
    }
    return TSR_OK;
}

/* Python's round(x, 2): correctly rounded through the decimal digits. */
static double round2(double x)
{
    if (!(fabs(x) < 0x1p50)) /* every double this large is a multiple of 0.25 */
        return x;
    char s[64];
    snprintf(s, sizeof s, "%.2f", x);
    return strtod(s, NULL);
}

size_t tsr_vad_chunk_index(const tsr_vad_chunk *chunks, size_t n, double t, int is_end)
{
    if (n == 0)
        return 0;
    double sd = t * RATE;
    /* int(time * sampling_rate), truncated toward zero */
    long long sample = !(sd > -9e18) ? LLONG_MIN : !(sd < 9e18) ? LLONG_MAX : (long long)sd;
    /* chunk_end_sample[i] is where chunk i ends in the collected signal */
#define END_AT(i) ((long long)(chunks[i].offset + (chunks[i].end - chunks[i].start)))
    size_t lo = 0, hi = n; /* the first i with END_AT(i) > sample: bisect_right */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (END_AT(mid) <= sample)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (is_end) { /* list.index: the first chunk ending exactly there */
        size_t a = 0, b = n;
        while (a < b) {
            size_t mid = a + (b - a) / 2;
            if (END_AT(mid) < sample)
                a = mid + 1;
            else
                b = mid;
        }
        if (a < n && END_AT(a) == sample)
            return a;
    }
#undef END_AT
    return lo < n - 1 ? lo : n - 1;
}

double tsr_vad_original_time_in(const tsr_vad_chunk *chunks, size_t n, size_t chunk, double t)
{
    if (n == 0)
        return t;
    if (chunk >= n)
        chunk = n - 1;
    /* total_silence_before: samples of the original before the chunk that were dropped */
    double silence = (double)(chunks[chunk].start - chunks[chunk].offset) / RATE;
    return round2(silence + t);
}

double tsr_vad_original_time(const tsr_vad_chunk *chunks, size_t n, double t, int is_end)
{
    return tsr_vad_original_time_in(chunks, n, tsr_vad_chunk_index(chunks, n, t, is_end), t);
}
