/* TEMPORARY shim, see shim_tmp.h. Not for commit. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "tsr_audio.h"
#include "shim_tmp.h"
struct tsr_logmel { int n_mels; size_t total; void *user; float *mel; int T; };
tsr_status tsr_logmel_new(int n_mels, tsr_logmel **out, tsr_error *err)
{ (void)err; *out = calloc(1, sizeof **out); (*out)->n_mels = n_mels; return TSR_OK; }
void tsr_logmel_free(tsr_logmel *m) { if (m) free(m->mel); free(m); }
/* the raw log10 values: recompute whole mel, undo normalisation is impossible, so compute raw here */
static tsr_status raw_all(tsr_logmel *m, tsr_sample_fn read, void *user, size_t total, size_t pad, tsr_error *err)
{
    if (m->mel && m->total == total && m->user == user) return TSR_OK;
    free(m->mel); m->mel = NULL;
    float *x = malloc(sizeof(float) * (total + 1));
    tsr_status rc = read(user, 0, total, x, err);
    float *mel = NULL; int T = 0;
    if (rc == TSR_OK) rc = tsr_whisper_logmel(x, total ? total : 0, m->n_mels, pad, &mel, &T, err);
    free(x);
    if (rc != TSR_OK) return rc;
    m->mel = mel; m->T = T; m->total = total; m->user = user;
    return TSR_OK;
}
tsr_status tsr_logmel_frames(const tsr_logmel *cm, tsr_sample_fn read, void *user, size_t total,
                             size_t pad, size_t f0, size_t nf, float *out, size_t ld,
                             float *frame_max, tsr_error *err)
{
    tsr_logmel *m = (tsr_logmel *)cm;
    tsr_status rc = raw_all(m, read, user, total, pad, err);
    if (rc != TSR_OK) return rc;
    /* shim: values are already normalised with the global max; fine since the caller normalises
     * again: (max(x, g-8)+4)/4 applied twice is wrong, so return raw by inverting: x*4-4 */
    float mx = -INFINITY;
    for (int c = 0; c < m->n_mels; c++)
        for (size_t f = 0; f < nf; f++) {
            float v = m->mel[(size_t)c * m->T + f0 + f] * 4.0f - 4.0f;
            out[(size_t)c * ld + f] = v;
            mx = fmaxf(mx, v);
        }
    if (frame_max) *frame_max = mx;
    return TSR_OK;
}
void tsr_logmel_normalize(float *x, size_t n, float g)
{ for (size_t i = 0; i < n; i++) x[i] = (fmaxf(x[i], g - 8.0f) + 4.0f) / 4.0f; }
tsr_status tsr_audio_pcm_read_cb(void *pcm, size_t first, size_t n, float *out, tsr_error *err)
{ (void)err; memcpy(out, ((tsr_audio_pcm *)pcm)->x + first, n * sizeof(float)); return TSR_OK; }
struct tsr_audio_spool { float *pcm; size_t n; };
tsr_status tsr_audio_spool_open(const char *path, const char *tmpdir, void (*progress)(void *, double, double), void *user, tsr_audio_spool **out, tsr_error *err)
{ (void)tmpdir; (void)progress; (void)user; *out = calloc(1, sizeof **out);
  tsr_status rc = tsr_audio_load_file(path, 16000, &(*out)->pcm, &(*out)->n, err);
  if (rc != TSR_OK) { free(*out); *out = NULL; } return rc; }
size_t tsr_audio_spool_samples(const tsr_audio_spool *s) { return s->n; }
tsr_status tsr_audio_spool_read_cb(void *sp, size_t first, size_t n, float *out, tsr_error *err)
{ (void)err; memcpy(out, ((tsr_audio_spool *)sp)->pcm + first, n * sizeof(float)); return TSR_OK; }
void tsr_audio_spool_free(tsr_audio_spool *s) { if (s) free(s->pcm); free(s); }
tsr_status tsr_vad_detect(tsr_sample_fn read, void *user, size_t total, const tsr_vad_params *p, tsr_vad_chunk **chunks, size_t *n, tsr_error *err)
{ (void)read; (void)user; (void)total; (void)p; *chunks = NULL; *n = 0; return tsr_error_set(err, TSR_ERR_UNSUPPORTED, "VAD: not yet"); }
size_t tsr_vad_collected_samples(const tsr_vad_chunk *chunks, size_t n) { (void)chunks; (void)n; return 0; }
tsr_status tsr_vad_collected_read(void *c, size_t first, size_t n, float *out, tsr_error *err) { (void)c; (void)first; (void)n; (void)out; return tsr_error_set(err, TSR_ERR_UNSUPPORTED, "no"); }
double tsr_vad_original_time(const tsr_vad_chunk *chunks, size_t n, double t, int is_end) { (void)chunks; (void)n; (void)is_end; return t; }
