/* tessera audio: decoding any container and codec FFmpeg reads into mono
 * float samples at a chosen rate, and Whisper's log-mel front end.
 *
 *   tsr_error err = {0};
 *   float *pcm = NULL, *mel = NULL;
 *   size_t n = 0;
 *   int frames = 0;
 *   if (tsr_audio_load_file(audio_path, 16000, &pcm, &n, &err) != TSR_OK)
 *       return fprintf(stderr, "%s\n", err.msg), 1;
 *   tsr_whisper_logmel(pcm, n, 80, 160, &mel, &frames, &err);  // (80, frames)
 *   printf("%.2f s of audio, %d mel frames\n", n / 16000.0, frames);
 *   free(pcm), free(mel);
 *
 * Threads: every function may run in any number of threads at once.
 */
#ifndef TSR_AUDIO_H
#define TSR_AUDIO_H

#include <stddef.h>

#include "tsr_opencl.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The longest audio tessera decodes into memory (about 110 MB of samples at 16 kHz). */
#define TSR_AUDIO_MAX_SECONDS (2 * 3600)

/* Decodes the first audio stream of path (WAV, FLAC, MP3, Ogg Vorbis/Opus,
 * M4A/AAC, the audio track of a video, ...), down-mixes it to mono and
 * resamples it to rate Hz as signed 16-bit samples, returned as floats in
 * [-1, 1) (value / 32768), which is what faster-whisper's decode_audio gives.
 * *out is malloc'd. Corrupt, truncated or empty files, files without an
 * audio stream and audio longer than TSR_AUDIO_MAX_SECONDS are errors that
 * name the file. */
tsr_status tsr_audio_load_file(const char *path, int rate, float **out, size_t *n,
                               tsr_error *err);

/* Whisper's log-mel spectrogram of 16 kHz samples: pad zero samples appended
 * (faster-whisper uses 160; 0 after padding to 30 s gives the transformers
 * and openai-whisper features), Hann window of 400, hop 160, centred STFT with
 * reflection, power spectrum, n_mels Slaney mel filters up to 8 kHz,
 * log10(max(x, 1e-10)), clamped at (max - 8), then (x + 4) / 4.
 * *mel is (n_mels, frames) with frames = (n + pad) / 160, malloc'd. */
tsr_status tsr_whisper_logmel(const float *x, size_t n, int n_mels, size_t pad, float **mel,
                              int *frames, tsr_error *err);

#ifdef __cplusplus
}
#endif
#endif
