/* TEMPORARY shim: the audio streaming/mel-frames/VAD and BPE encoder APIs
 * being built on other branches. Not for commit. */
#ifndef SHIM_TMP_H
#define SHIM_TMP_H
#include <stddef.h>
#include "tsr_opencl.h"
#include "tsr_text.h"
typedef tsr_status (*tsr_sample_fn)(void *user, size_t first, size_t n, float *out, tsr_error *err);
typedef struct { const float *x; size_t n; } tsr_audio_pcm;
tsr_status tsr_audio_pcm_read_cb(void *pcm, size_t first, size_t n, float *out, tsr_error *err);
typedef struct tsr_logmel tsr_logmel;
tsr_status tsr_logmel_new(int n_mels, tsr_logmel **out, tsr_error *err);
void tsr_logmel_free(tsr_logmel *m);
tsr_status tsr_logmel_frames(const tsr_logmel *m, tsr_sample_fn read, void *user, size_t total,
                             size_t pad, size_t f0, size_t nf, float *out, size_t ld,
                             float *frame_max, tsr_error *err);
void tsr_logmel_normalize(float *x, size_t n, float global_max);
typedef struct tsr_audio_spool tsr_audio_spool;
tsr_status tsr_audio_spool_open(const char *path, const char *tmpdir,
                                void (*progress)(void *, double, double), void *user,
                                tsr_audio_spool **out, tsr_error *err);
size_t tsr_audio_spool_samples(const tsr_audio_spool *s);
tsr_status tsr_audio_spool_read_cb(void *spool, size_t first, size_t n, float *out, tsr_error *err);
void tsr_audio_spool_free(tsr_audio_spool *s);
typedef struct { size_t start, end, offset; } tsr_vad_chunk;
typedef struct { int dummy; } tsr_vad_params;
tsr_status tsr_vad_detect(tsr_sample_fn read, void *user, size_t total, const tsr_vad_params *p,
                          tsr_vad_chunk **chunks, size_t *n, tsr_error *err);
size_t tsr_vad_collected_samples(const tsr_vad_chunk *chunks, size_t n);
typedef struct { const tsr_vad_chunk *chunks; size_t n; tsr_sample_fn read; void *user; } tsr_vad_collected;
tsr_status tsr_vad_collected_read(void *collected, size_t first, size_t n, float *out, tsr_error *err);
double tsr_vad_original_time(const tsr_vad_chunk *chunks, size_t n, double t, int is_end);
#endif
