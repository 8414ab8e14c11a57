/* tessera audio: decoding what FFmpeg reads into mono float samples (whole,
 * or streamed at any length), a disk spool for long audio, Whisper's log-mel
 * front end (whole, or by frame ranges), and an energy-based voice activity
 * detector with faster-whisper's chunking and time mapping.
 *
 *   tsr_error err = {0};
 *   tsr_audio_spool *sp = NULL; // decoded once, to a temporary file; "-" is standard input
 *   tsr_logmel *lm = NULL;
 *   if (tsr_audio_spool_open(audio_path, NULL, NULL, NULL, &sp, &err) != TSR_OK ||
 *       tsr_logmel_new(80, &lm, &err) != TSR_OK)
 *       return fprintf(stderr, "%s\n", err.msg), tsr_audio_spool_free(sp), 1;
 *   size_t n = tsr_audio_spool_samples(sp), T = (n + 160) / 160, W = T < 3000 ? T : 3000;
 *   float *mel = malloc(sizeof(float) * 80 * W), gmax = -10, wmax = -10;
 *   for (size_t f0 = 0; f0 < T; f0 += W, gmax = wmax > gmax ? wmax : gmax) // pass 1: the
 *       tsr_logmel_frames(lm, tsr_audio_spool_read_cb, sp, n, 160, f0,     // file's maximum
 *                         T - f0 < W ? T - f0 : W, mel, W, &wmax, &err);
 *   tsr_logmel_frames(lm, tsr_audio_spool_read_cb, sp, n, 160, 0, W, mel, W, NULL, &err);
 *   tsr_logmel_normalize(mel, 80 * W, gmax); // pass 2: Whisper's first 30 s window
 *   printf("%.2f s of audio, %zu mel frames\n", n / 16000.0, T);
 *   free(mel), tsr_logmel_free(lm), tsr_audio_spool_free(sp);
 *
 * Memory: tsr_audio_load_file and tsr_whisper_logmel hold the whole signal
 * (capped at TSR_AUDIO_MAX_SECONDS). The reader, the spool, the frame-range
 * log-mel and the detector hold a few hundred kilobytes whatever the length
 * (the detector also keeps 6 bytes per 32 ms frame: 0.7 MB per hour, and
 * its result); the spool's temporary file takes 32,000 bytes of disk per
 * second of audio (115 MB per hour, 691 MB for 6 hours).
 *
 * Threads: a tsr_audio_reader is used by one thread at a time. A spool is
 * opened and freed by one thread; tsr_audio_spool_samples and
 * tsr_audio_spool_read may then run in any number of threads at once. A
 * tsr_logmel is made and freed by one thread; tsr_logmel_frames may run on
 * it in any number of threads at once (split a long signal into frame
 * ranges, one per thread). Every other function may run in any number of
 * threads at once; the sample functions they call must allow that too.
 *
 * Errors: every fallible call returns a tsr_status; err may be NULL. Messages
 * name the file ("standard input" for "-") and the problem.
 */
#ifndef TSR_AUDIO_H
#define TSR_AUDIO_H

#include <stddef.h>

#include "tsr_opencl.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- decoding ---- */

/* The longest audio tsr_audio_load_file holds in memory (115 million
 * samples, 460 MB of floats, at 16 kHz). The reader and the spool have no
 * limit. */
#define TSR_AUDIO_MAX_SECONDS (2 * 3600)

/* A streaming decoder: one file, or standard input, decoded and resampled
 * frame by frame. */
typedef struct tsr_audio_reader tsr_audio_reader;

/* Opens path for reading as mono samples at rate Hz (1000..384000). path is a
 * local file in any container and codec FFmpeg reads (WAV, FLAC, MP3, Ogg
 * Vorbis/Opus, M4A/AAC, the audio track of a video, ...) or "-" for standard
 * input, which FFmpeg reads as it reads a file, so it gives the file's
 * samples (its pipe protocol would keep an MP3's encoder padding): a pipe is
 * read once, in order, and formats that must seek (an MP4 whose index comes
 * last) fail there; redirected from a file, standard input may seek within
 * that file, from where it stood. Only local files
 * are read: URLs and FFmpeg protocols ("http://...", "ftp://...",
 * "concat:...", "pipe:...") are refused at once, and what a container
 * refers to (a playlist's entries) may only be a local file, so nothing
 * reaches the network. A local file whose name looks like a URL is still
 * read when it exists ("take1:final.wav"). Missing files, files without an
 * audio stream and unreadable containers are errors naming the file. */
tsr_status tsr_audio_open(const char *path, int rate, tsr_audio_reader **out, tsr_error *err);

/* Reads up to cap samples into buf: signed 16-bit samples divided by 32768,
 * down-mixed and resampled by libswresample, exactly what faster-whisper's
 * decode_audio gives. *got < cap only at the end; *got == 0 is the end. A
 * stream with a valid header and no samples (a WAV whose data is empty)
 * simply ends; a stream whose every packet is corrupt is an error. Corrupt
 * packets among good ones are skipped, and a read error or truncation ends
 * the stream with what decoded, as PyAV does. After an error every call
 * returns it again. */
tsr_status tsr_audio_read(tsr_audio_reader *r, float *buf, size_t cap, size_t *got,
                          tsr_error *err);

/* The duration the container declares, in seconds, or -1 when it declares
 * none (standard input, often). An estimate: count the samples for the truth. */
double tsr_audio_duration(const tsr_audio_reader *r);

/* Closes the reader (NULL is fine). Standard input is left open. */
void tsr_audio_close(tsr_audio_reader *r);

/* Decodes a whole file (or "-") into memory as tsr_audio_read does: *out is
 * malloc'd, *n samples. Audio longer than TSR_AUDIO_MAX_SECONDS is an error
 * (TSR_ERR_TOO_LARGE), and so is audio of no samples: callers of this
 * function always get at least one sample. */
tsr_status tsr_audio_load_file(const char *path, int rate, float **out, size_t *n,
                               tsr_error *err);

/* 1 when the first bytes of a file (n >= 12 for most formats) look like an
 * audio or video container FFmpeg reads: WAV, FLAC, Ogg, MP3 (ID3 or a
 * frame header), AAC (ADTS), AIFF, MP4/M4A/MOV, Matroska/WebM, CAF, AU,
 * WavPack, AMR. Folders are walked for audio by content with it. */
int tsr_audio_sniff(const unsigned char *h, size_t n);

/* ---- samples through a function ---- */

/* Writes samples [first, first + n) of a signal into out. The frame-range
 * log-mel and the detector read their input this way. */
typedef tsr_status (*tsr_sample_fn)(void *user, size_t first, size_t n, float *out,
                                    tsr_error *err);

/* Samples held in memory, read with tsr_audio_pcm_read_cb (user = a tsr_audio_pcm *). */
typedef struct {
    const float *x;
    size_t n;
} tsr_audio_pcm;
tsr_status tsr_audio_pcm_read_cb(void *pcm, size_t first, size_t n, float *out, tsr_error *err);

/* ---- the spool: decode once, read anywhere ---- */

/* Audio decoded once (a file, or standard input, which can be read only
 * once) into an unlinked temporary file of 16-bit samples at 16 kHz, for
 * random access: long-form Whisper reads the audio twice (the log-mel is
 * clamped at the maximum of the whole file). 32,000 bytes of disk per second
 * of audio; host memory stays small whatever the length. */
typedef struct tsr_audio_spool tsr_audio_spool;

/* Called while the spool fills, in the thread that fills it, about every 10 s
 * of audio and once at the end: seconds decoded, and the container's
 * declared duration (-1 when unknown). */
typedef void (*tsr_audio_progress_fn)(void *user, double done_s, double total_s);

/* Decodes path ("-" for standard input) as tsr_audio_open at 16 kHz into a
 * temporary file in tmpdir (NULL: the system's, as tmpfile() chooses). The
 * file has no name once made and goes away with the spool, or with the
 * process. progress may be NULL. A write error (a full disk) is an error
 * naming the spool's directory. Audio of no samples makes an empty spool. */
tsr_status tsr_audio_spool_open(const char *path, const char *tmpdir,
                                tsr_audio_progress_fn progress, void *user,
                                tsr_audio_spool **out, tsr_error *err);

/* The number of samples in the spool. */
size_t tsr_audio_spool_samples(const tsr_audio_spool *s);

/* Samples [first, first + n) as floats (value / 32768, the reader's values).
 * A range past the end is an error. */
tsr_status tsr_audio_spool_read(const tsr_audio_spool *s, size_t first, size_t n, float *out,
                                tsr_error *err);

/* tsr_audio_spool_read as a tsr_sample_fn: user is the tsr_audio_spool *. */
tsr_status tsr_audio_spool_read_cb(void *spool, size_t first, size_t n, float *out,
                                   tsr_error *err);

/* Frees the spool and its temporary file (NULL is fine). */
void tsr_audio_spool_free(tsr_audio_spool *s);

/* ---- Whisper's log-mel spectrogram ---- */

/* Whisper's log-mel spectrogram of 16 kHz samples: pad zero samples appended
 * (faster-whisper uses 160; 0 after padding to 30 s gives the transformers
 * and openai-whisper features), Hann window of 400, hop 160, centred STFT with
 * reflection, power spectrum, n_mels Slaney mel filters up to 8 kHz,
 * log10(max(x, 1e-10)), clamped at (max - 8), then (x + 4) / 4.
 * *mel is (n_mels, frames) with frames = (n + pad) / 160, malloc'd. The same
 * values, bit for bit, as tsr_logmel_frames over every frame followed by
 * tsr_logmel_normalize with their maximum. */
tsr_status tsr_whisper_logmel(const float *x, size_t n, int n_mels, size_t pad, float **mel,
                              int *frames, tsr_error *err);

/* The mel filters and FFT tables, computed once. */
typedef struct tsr_logmel tsr_logmel;

/* n_mels in 1..512 (Whisper uses 80, large-v3 128). */
tsr_status tsr_logmel_new(int n_mels, tsr_logmel **out, tsr_error *err);
void tsr_logmel_free(tsr_logmel *m);

/* Frames [f0, f0 + nf) of the log-mel of a signal of total samples, read
 * through read(user, ...), followed by pad zero samples: the values
 * tsr_whisper_logmel computes for the whole signal, bit for bit, before its
 * clamp and scale, that is log10(max(mel power, 1e-10)). The whole signal
 * has (total + pad) / 160 frames and f0 + nf may not exceed that; frame t
 * reads samples around t * 160 (up to 200 either side, reflected at both
 * ends of the padded signal), so a window reads only its own stretch of the
 * signal, plus the first 201 samples for frame 0. out is (n_mels rows,
 * leading dimension ld >= nf): frame f0 + j of mel m goes to out[m * ld + j].
 * *frame_max (may be NULL) gets the largest value written (-INFINITY when
 * nf is 0); the normalisation needs the largest over all frames. */
tsr_status tsr_logmel_frames(const tsr_logmel *m, tsr_sample_fn read, void *user, size_t total,
                             size_t pad, size_t f0, size_t nf, float *out, size_t ld,
                             float *frame_max, tsr_error *err);

/* Whisper's clamp and scale of n values in place: (max(x, global_max - 8) + 4) / 4,
 * global_max being the largest frame_max over the whole signal. */
void tsr_logmel_normalize(float *x, size_t n, float global_max);

/* ---- voice activity detection (energy based) ----
 *
 * faster-whisper's vad_filter finds speech with Silero VAD, a neural network
 * (ONNX) that tessera does not run. tessera keeps everything around the
 * network exactly as faster-whisper 1.2.1 has it (get_speech_timestamps'
 * state machine over 512-sample frames at 16 kHz with threshold and
 * neg_threshold, the split of over-long speech, min_silence_duration_ms,
 * min_speech_duration_ms, the speech_pad_ms padding and its sharing between
 * close chunks, collect_chunks' concatenation and SpeechTimestampsMap's time
 * mapping), and puts an energy detector in the network's place:
 *   level  = 10 log10(mean of x^2 over the frame + 1e-10) in dBFS (the last,
 *            partial frame over its real samples; no samples: -100);
 *   floor  = the noise_percentile quantile of the levels within noise_window_s
 *            centred on the frame (on a 0.5 dB grid), kept within
 *            [noise_floor_min_db, noise_floor_max_db];
 *   p      = 1 / (1 + exp(-(level - floor - snr_db) / slope_db)).
 * So a frame snr_db above the local noise floor has probability 0.5 (and
 * with neg_threshold 0.35, a frame 8.8 dB above it still continues speech).
 * It finds sound, not speech: music, coughs and door slams count. A steady
 * sound (hum, fan, a constant tone) that fills most of the window becomes the
 * floor and counts as silence, up to the cap: a steady sound louder than
 * noise_floor_max_db + snr_db (-30 dBFS) counts as sound, and so does a short
 * or wall-to-wall recording at that level, whose floor is not silence. The
 * cap and the floor's minimum make the error a detector of this kind can
 * make the harmless one for transcription: keeping non-speech, which Whisper
 * then finds silent, rather than dropping words. Boundaries fall on the
 * 512-sample frame grid, as Silero's do, and are then padded. Signals are 16
 * kHz samples. The probabilities are compared with the thresholds in float32,
 * as numpy 2 compares faster-whisper's. */

typedef struct {
    /* faster-whisper's VadOptions, same meaning and defaults */
    double threshold;             /* 0.5: probability at or above which a frame is speech */
    double neg_threshold;         /* < 0 (default): max(threshold - 0.15, 0.01) */
    double min_speech_duration_ms;/* 0: shorter speech is dropped */
    double max_speech_duration_s; /* INFINITY: longer speech is split */
    double min_silence_duration_ms; /* 2000: silence that ends speech */
    double speech_pad_ms;         /* 400: padding on each side of speech */
    /* tessera's energy model, in Silero's place */
    double noise_window_s;        /* 30 */
    double noise_percentile;      /* 0.1 */
    double noise_floor_min_db;    /* -60 dBFS: the floor never goes below it */
    double noise_floor_max_db;    /* -40 dBFS: nor above it */
    double snr_db;                /* 10 */
    double slope_db;              /* 2 */
} tsr_vad_params;

tsr_vad_params tsr_vad_default_params(void);

/* One speech chunk: samples [start, end) of the original signal; offset is
 * where it begins in the collected signal (the chunks concatenated). */
typedef struct {
    size_t start, end, offset;
} tsr_vad_chunk;

/* The speech probability of each 512-sample frame of a signal of total
 * samples: *n_frames = total / 512 + 1 frames (faster-whisper pads the signal
 * to a multiple of 512 that is always larger), *probs malloc'd. */
tsr_status tsr_vad_probs(tsr_sample_fn read, void *user, size_t total, const tsr_vad_params *p,
                         float **probs, size_t *n_frames, tsr_error *err);

/* get_speech_timestamps on given frame probabilities (from tsr_vad_probs, or
 * from another model): *chunks malloc'd, *n of them (0: no speech; *chunks
 * is then NULL). */
tsr_status tsr_vad_speech(const float *probs, size_t n_frames, size_t total,
                          const tsr_vad_params *p, tsr_vad_chunk **chunks, size_t *n,
                          tsr_error *err);

/* tsr_vad_probs then tsr_vad_speech. p may be NULL (the defaults). */
tsr_status tsr_vad_detect(tsr_sample_fn read, void *user, size_t total, const tsr_vad_params *p,
                          tsr_vad_chunk **chunks, size_t *n, tsr_error *err);

/* The length of the collected signal. */
size_t tsr_vad_collected_samples(const tsr_vad_chunk *chunks, size_t n);

/* The collected signal, read from the original through read(user, ...):
 * tsr_vad_collected_read is a tsr_sample_fn whose user is a tsr_vad_collected *. */
typedef struct {
    const tsr_vad_chunk *chunks;
    size_t n;
    tsr_sample_fn read;
    void *user;
} tsr_vad_collected;
tsr_status tsr_vad_collected_read(void *collected, size_t first, size_t n, float *out,
                                  tsr_error *err);

/* SpeechTimestampsMap: the chunk that time t (seconds in the collected
 * signal) falls in, an end time (is_end) at a chunk's end staying in that
 * chunk; and t in the original signal's seconds, rounded to 0.01 as Python's
 * round(x, 2) rounds. With n == 0 the time is returned unchanged (index 0). */
size_t tsr_vad_chunk_index(const tsr_vad_chunk *chunks, size_t n, double t, int is_end);
double tsr_vad_original_time(const tsr_vad_chunk *chunks, size_t n, double t, int is_end);
/* The same within a given chunk (faster-whisper maps both ends of a word
 * with the chunk of its middle). */
double tsr_vad_original_time_in(const tsr_vad_chunk *chunks, size_t n, size_t chunk, double t);

/* ---- CLAP's front end (transformers' ClapFeatureExtractor) ---- */

typedef enum { TSR_CLAP_TRUNC_RAND, TSR_CLAP_TRUNC_FUSION } tsr_clap_trunc;
typedef enum { TSR_CLAP_PAD_REPEATPAD, TSR_CLAP_PAD_REPEAT, TSR_CLAP_PAD_ZERO } tsr_clap_pad;

/* preprocessor_config.json's settings. truncation picks the filters: "fusion"
 * uses htk mel filters without norm and four channels; "rand_trunc" slaney
 * filters with slaney norm and one channel. */
typedef struct {
    int n_mels;      /* feature_size: 64 */
    int rate;        /* sampling_rate: 48000 */
    int hop;         /* hop_length: 480 */
    int n_fft;       /* fft_window_size: 1024 */
    int max_samples; /* nb_max_samples (max_length_s * rate): 480000 */
    double fmin, fmax; /* frequency_min, frequency_max: 0 (50 in the LAION configs), 14000 */
    tsr_clap_trunc truncation;
    tsr_clap_pad padding;
} tsr_clapfe_cfg;

typedef struct tsr_clapfe tsr_clapfe;

/* transformers' defaults (fusion truncation, 0..14000 Hz). */
tsr_clapfe_cfg tsr_clapfe_default_cfg(void);
tsr_status tsr_clapfe_new(const tsr_clapfe_cfg *c, tsr_clapfe **out, tsr_error *err);
void tsr_clapfe_free(tsr_clapfe *fe);
const tsr_clapfe_cfg *tsr_clapfe_config(const tsr_clapfe *fe);
/* Frames of a window (max_samples / hop + 1: 1001) and channels (4 with the
 * fusion truncation, else 1). */
int tsr_clapfe_window_frames(const tsr_clapfe *fe);
int tsr_clapfe_channels(const tsr_clapfe *fe);
/* Frames of n samples (centred STFT): n / hop + 1. */
size_t tsr_clapfe_frames(const tsr_clapfe *fe, size_t n);
/* The log-mel (frames, n_mels) of x[0..n), frames = tsr_clapfe_frames(n). */
tsr_status tsr_clapfe_logmel(const tsr_clapfe *fe, const float *x, size_t n, float *mel,
                             size_t frames, tsr_error *err);
/* The features of a clip of 1..max_samples samples, as the reference
 * computes them without cropping: repeated and padded to max_samples
 * (padding), then the log-mel, copied into every channel. out: (channels,
 * window_frames, n_mels). */
tsr_status tsr_clapfe_window(const tsr_clapfe *fe, const float *x, size_t n, float *out,
                             tsr_error *err);
/* The fusion truncation of any clip (needs truncation fusion and 64 mels):
 * up to max_samples, as tsr_clapfe_window. Longer: channel 0 is the whole
 * log-mel shrunk to a window by bilinear interpolation, channels 1..3 three
 * windows of it, the middle start of each third of the possible starts (the
 * reference picks each at random). *longer = 1: the model fuses them. */
tsr_status tsr_clapfe_fusion(const tsr_clapfe *fe, const float *x, size_t n, float *out,
                             int *longer, tsr_error *err);

#ifdef __cplusplus
}
#endif
#endif
