/* TEMPORARY shim: the audio streaming/mel-frames/VAD and BPE encoder APIs
 * being built on other branches. Not for commit. */
#ifndef SHIM_TMP_H
#define SHIM_TMP_H
#include <stddef.h>
#include "tsr_opencl.h"
#include "tsr_text.h"
typedef tsr_status (*tsr_sample_fn)(void *user, size_t first, size_t n, float *out, tsr_error *err);
typedef struct tsr_logmel tsr_logmel;
tsr_status tsr_logmel_new(int n_mels, tsr_logmel **out, tsr_error *err);
void tsr_logmel_free(tsr_logmel *m);
tsr_status tsr_logmel_frames(tsr_logmel *m, tsr_sample_fn read, void *user, size_t total,
                             size_t pad, size_t f0, int nf, float *out, int ld, float *frame_max,
                             tsr_error *err);
void tsr_logmel_normalize(float *x, size_t n, float global_max);
typedef struct tsr_audio_spool tsr_audio_spool;
tsr_status tsr_audio_spool_open(const char *path, const char *tmpdir,
                                void (*progress)(void *, double), void *user,
                                tsr_audio_spool **out, tsr_error *err);
size_t tsr_audio_spool_samples(const tsr_audio_spool *s);
tsr_status tsr_audio_spool_read(tsr_audio_spool *s, size_t first, size_t n, float *out,
                                tsr_error *err);
void tsr_audio_spool_free(tsr_audio_spool *s);
typedef struct { int dummy; } tsr_vad_params;
typedef struct { size_t start, end; } tsr_speech_chunk;
tsr_vad_params tsr_vad_default_params(void);
tsr_status tsr_vad_detect(tsr_sample_fn read, void *user, size_t total, const tsr_vad_params *p,
                          tsr_speech_chunk **chunks, int *n, tsr_error *err);
typedef struct { tsr_sample_fn read; void *user; const tsr_speech_chunk *chunks; int n; } tsr_vad_reader;
tsr_status tsr_vad_read(void *user, size_t first, size_t n, float *out, tsr_error *err);
size_t tsr_vad_total(const tsr_speech_chunk *chunks, int n);
double tsr_vad_original_time(const tsr_speech_chunk *chunks, int n, double t, int is_end);
tsr_status tsr_bytelevel_encode(const tsr_bytelevel *b, const char *text, int *ids, int cap,
                                int *n, tsr_error *err);
#endif
