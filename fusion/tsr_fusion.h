/* tessera fusion: models and sessions for every family (CLIP, sentence-
 * transformers BERT, Whisper), zero-shot scoring, transcription, pull.
 *
 *   tsr_error err = {0};
 *   tsr_ctx *ctx = NULL;
 *   tsr_model *m = NULL;
 *   tsr_session *s = NULL;
 *   if (tsr_ctx_create(NULL, &ctx, &err) || tsr_model_load(ctx, model_dir, &m, &err) ||
 *       tsr_session_create(m, NULL, &s, &err))
 *       return fprintf(stderr, "%s\n", err.msg), 1;
 *   const char *labels[] = {"red circle", "blue star"}, *tmpl[] = {"a photo of a {}."};
 *   int P = tsr_model_embed_dim(m);
 *   float *cls = malloc(sizeof(float) * 2 * P), *img = malloc(sizeof(float) * P), probs[2];
 *   tsr_session_zeroshot_weights(s, labels, 2, tmpl, 1, cls, NULL, &err);
 *   tsr_session_embed_image_files(s, &image_path, 1, 1, img, &err);
 *   tsr_zeroshot_probs(m, img, 1, cls, 2, probs);
 *   printf("%s: %.3f\n", labels[probs[1] > probs[0]], probs[probs[1] > probs[0]]);
 *   free(cls), free(img);
 *   tsr_session_free(s), tsr_model_free(m), tsr_ctx_free(ctx);
 *
 * A tsr_model holds one model's configuration, tokenizer and weights on the
 * device, read-only once loaded. A tsr_session holds what one caller's
 * forward passes write: its OpenCL queue and kernel objects, and one arena
 * of activations planned for the batch sizes it runs.
 *
 * Threads, as SQLite documents them:
 *   - tsr_model_*: load and free from one thread; every other tsr_model_*
 *     function, tsr_zeroshot_probs and tsr_scores may run in any number of
 *     threads at once. A model must outlive its sessions.
 *   - tsr_session_create: any thread, any number of sessions per model.
 *     Every other tsr_session_* function: one thread at a time per session
 *     (different sessions run in parallel).
 *   - tsr_pull and the path functions: any thread.
 *
 * Errors: err may be NULL everywhere; a session also keeps its last error
 * (tsr_session_errmsg). The library never prints and never exits.
 */
#ifndef TSR_FUSION_H
#define TSR_FUSION_H

#include <stdint.h>

#include "tsr_audio.h"
#include "tsr_opencl.h"
#include "tsr_text.h"
#include "tsr_vision.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tsr_model tsr_model;
typedef struct tsr_session tsr_session;

/* A model file in memory, for tsr_model_load_memory. */
typedef struct {
    const char *name; /* "config.json", "model.safetensors", "tokenizer.json", ... */
    const void *data;
    size_t size;
} tsr_file;

/* ---- models ---- */

/* Reads a model directory: a HF CLIPModel (config.json, model.safetensors or
 * shards, tokenizer, preprocessor_config.json), a sentence-transformers BERT
 * model, or a Whisper model (faster-whisper's CTranslate2 model.bin, or the
 * HF layout). Every tensor's shape is checked against the config and the
 * weights are uploaded to the device once. Pickle files are refused. */
tsr_status tsr_model_load(tsr_ctx *ctx, const char *dir, tsr_model **out, tsr_error *err);
/* The same from files in memory, named as in a directory. The buffers are
 * read during the call only. */
tsr_status tsr_model_load_memory(tsr_ctx *ctx, const tsr_file *files, int n, tsr_model **out,
                                 tsr_error *err);
/* A full-size CLIP ("ViT-B-32", "ViT-B-16", "ViT-L-14") with random weights
 * and no tokenizer, or a BLIP captioner ("blip-base", "blip-large") with
 * random weights and a placeholder vocabulary, for benchmarks: speed does
 * not depend on the values. */
tsr_status tsr_model_create_random(tsr_ctx *ctx, const char *arch, tsr_model **out,
                                   tsr_error *err);
void tsr_model_free(tsr_model *m);

/* "clip", "bert", "whisper" or "blip". */
const char *tsr_model_family(const tsr_model *m);
/* What a model directory holds, from its config.json (no weights are read):
 * "clip", "bert", "whisper", "blip", or NULL when unreadable (err says why). */
const char *tsr_model_kind(const char *dir, tsr_error *err);
/* Device bytes of the model's weights. */
size_t tsr_model_device_bytes(const tsr_model *m);

/* CLIP and BERT: the width of an embedding (0 for Whisper). */
int tsr_model_embed_dim(const tsr_model *m);
/* CLIP and BERT: the longest text in tokens (sentence-transformers'
 * max_seq_length for BERT). */
int tsr_model_max_text_len(const tsr_model *m);
int tsr_model_image_channels(const tsr_model *m);
int tsr_model_image_size(const tsr_model *m);
float tsr_model_logit_scale(const tsr_model *m); /* exp(logit_scale) */
const tsr_tokenizer *tsr_model_tokenizer(const tsr_model *m);  /* CLIP, else NULL */
const tsr_wordpiece *tsr_model_wordpiece(const tsr_model *m);  /* BERT, else NULL */
const tsr_bytelevel *tsr_model_bytelevel(const tsr_model *m);  /* Whisper, CLAP, else NULL */
const tsr_wordpiece *tsr_model_caption_tokenizer(const tsr_model *m); /* BLIP, else NULL */
int tsr_model_caption_image_size(const tsr_model *m);                 /* BLIP, CoCa, else 0 */
int tsr_model_can_caption(const tsr_model *m);                        /* BLIP or CoCa */
/* CLIP, else NULL: the image preprocessing of preprocessor_config.json. A
 * directory without that file loads (text needs none), but its images are
 * refused, with a message naming the file, until the caller says how they
 * are preprocessed (tsr_model_set_preprocess; its crop must be the model's
 * image size); until then this returns CLIPImageProcessor's defaults. */
const tsr_preprocess_cfg *tsr_model_preprocess_cfg(const tsr_model *m);
int tsr_model_preprocess_known(const tsr_model *m);
/* Before sessions use the model (not concurrently with them). */
tsr_status tsr_model_set_preprocess(tsr_model *m, const tsr_preprocess_cfg *cfg, tsr_error *err);
/* Whisper: mel bins, vocabulary, width, encoder positions (1500) and
 * decoder positions (448); 0 for other families. */
int tsr_model_n_mels(const tsr_model *m);
int tsr_model_vocab_size(const tsr_model *m);
int tsr_model_dim(const tsr_model *m);
int tsr_model_audio_ctx(const tsr_model *m);
int tsr_model_text_ctx(const tsr_model *m);

/* CLIP benchmarks: forward FLOPs of one image and of one text of full length. */
void tsr_model_flops(const tsr_model *m, double *image, double *text);
/* The GEMM shapes of the linear layers of both CLIP towers at the given batch
 * sizes, for tsr_tune_gemm; returns their count (8 per batch size; -1 for an
 * unknown architecture or a model that is not CLIP) and fills up to max. */
int tsr_arch_gemm_shapes(const char *arch, const int *batches, int nb, tsr_gemm_shape *out,
                         int max);
int tsr_model_gemm_shapes(const tsr_model *m, const int *batches, int nb, tsr_gemm_shape *out,
                          int max);
/* The architectures tsr_model_create_random knows; returns their count. */
int tsr_arch_names(const char **names, int max);

/* ---- sessions ---- */

typedef struct {
    int image_batch; /* images per forward pass (default 16) */
    int text_batch;  /* texts per forward pass (default 64 for CLIP, 32 for BERT) */
} tsr_session_params;

tsr_session_params tsr_session_default_params(void);
tsr_status tsr_session_create(tsr_model *m, const tsr_session_params *p, tsr_session **out,
                              tsr_error *err);
/* Waits for the session's work, then frees it. */
void tsr_session_free(tsr_session *s);
/* The message of the last failed call on s ("" if none). */
const char *tsr_session_errmsg(const tsr_session *s);
tsr_status tsr_session_errcode(const tsr_session *s);
/* Device bytes of the session's activations as planned so far. */
size_t tsr_session_device_bytes(const tsr_session *s);

/* The launch counter: what the device did per encoder layer and per decoder
 * step in the session's last forward pass. A forward pass has no host
 * synchronisation and creates no buffer inside a layer or a step. */
typedef struct {
    uint64_t launches; /* tessera kernels enqueued */
    uint64_t gemms;    /* CLBlast routine calls */
    uint64_t syncs;    /* host waits */
    uint64_t buffers;  /* device buffers created */
} tsr_launch_counts;
void tsr_session_counters(const tsr_session *s, tsr_launch_counts *per_layer,
                          tsr_launch_counts *per_step);

/* CLIP images. pixels: (B, C, S, S) preprocessed; out: (B, dim).
 * normalize: L2-normalise the rows. */
tsr_status tsr_session_embed_pixels(tsr_session *s, const float *pixels, int B, int normalize,
                                    float *out, tsr_error *err);
tsr_status tsr_session_embed_images(tsr_session *s, const tsr_image *const *images, int n,
                                    int normalize, float *out, tsr_error *err);
/* Decodes, preprocesses and embeds n image files, in batches. */
tsr_status tsr_session_embed_image_files(tsr_session *s, const char *const *paths, int n,
                                         int normalize, float *out, tsr_error *err);
/* CLIP text tower on token ids: ids (B, S) padded, lens (B). */
tsr_status tsr_session_embed_ids(tsr_session *s, const int *ids, const int *lens, int B, int S,
                                 int normalize, float *out, tsr_error *err);
/* Tokenizes and embeds n texts into out (n, dim). CLIP: the projected text
 * embeddings. BERT: pooled as the model's modules.json says and truncated at
 * its max_seq_length, exactly as SentenceTransformer.encode. normalize: 1
 * L2-normalises the rows; 0 keeps what the model gives (BERT's Normalize
 * module still applies). *n_truncated (may be NULL) counts texts cut to fit. */
tsr_status tsr_session_embed_texts(tsr_session *s, const char *const *texts, int n, int normalize,
                                   float *out, int *n_truncated, tsr_error *err);

/* ---- zero-shot classification (CLIP) ---- */

/* The 80 ImageNet prompt templates of the CLIP paper ("a photo of a {}."). */
int tsr_templates_imagenet(const char *const **out);
/* Class weights (L, dim): each label's template embeddings, normalised,
 * averaged and normalised again, as in the CLIP paper. "{}" in a template is
 * replaced by the label. Labels must be valid UTF-8. */
tsr_status tsr_session_zeroshot_weights(tsr_session *s, const char *const *labels, int L,
                                        const char *const *templates, int T, float *weights,
                                        int *n_truncated, tsr_error *err);
/* probs (N, L) = softmax(exp(logit_scale) * img (N, dim) . weights (L, dim)^T). */
void tsr_zeroshot_probs(const tsr_model *m, const float *img, int N, const float *weights, int L,
                        float *probs);
/* logits (N, L) = scale * a . b^T for normalised rows. */
void tsr_scores(float scale, const float *a, int N, const float *b, int L, int dim,
                float *logits);
/* logits (N, L) = exp(logit_scale) * img . weights^T: what tsr_zeroshot_probs
 * takes the softmax of. */
void tsr_zeroshot_logits(const tsr_model *m, const float *img, int N, const float *weights, int L,
                         float *logits);

/* ---- evaluating scores: calibration ---- */

/* In place: each row of x (N, L) becomes softmax(row / temperature). */
void tsr_softmax_rows(float *x, int N, int L, double temperature);

#define TSR_CALIB_MAX_BINS 100
#define TSR_TEMPERATURE_MIN 1e-3
#define TSR_TEMPERATURE_MAX 1e3
/* Accuracy and calibration of softmax(logits / temperature) against labels:
 * the confidence of a row is its arg max's probability, in bin b when it lies
 * in (b/bins, (b+1)/bins]; ECE = sum over bins of |accuracy - mean
 * confidence| * count / N, MCE the largest such gap, NLL the mean negative
 * log-likelihood of the labels. */
typedef struct {
    int bins, n;
    double temperature;
    int count[TSR_CALIB_MAX_BINS];
    double conf[TSR_CALIB_MAX_BINS], acc[TSR_CALIB_MAX_BINS]; /* per bin; 0 when empty */
    double ece, mce, nll, accuracy;
} tsr_calibration;
tsr_status tsr_calibration_compute(const float *logits, const int *labels, int N, int L,
                                   double temperature, int bins, tsr_calibration *out,
                                   tsr_error *err);
/* Temperature scaling: the T in [TSR_TEMPERATURE_MIN, TSR_TEMPERATURE_MAX]
 * that minimises the NLL of softmax(logits / T) (a convex problem in 1/T,
 * solved to about 1e-12 relative). */
tsr_status tsr_fit_temperature(const float *logits, const int *labels, int N, int L, double *T,
                               tsr_error *err);

/* ---- Whisper speech recognition ----
 *
 *   tsr_transcribe_params p = tsr_transcribe_default_params(); // faster-whisper's
 *   tsr_transcript t;
 *   if (tsr_session_transcribe_file(s, "talk.mp3", &p, &t, &err) == TSR_OK) {
 *       for (int i = 0; i < t.n_segments; i++)
 *           printf("[%.2f -> %.2f]%s\n", t.segments[i].start, t.segments[i].end,
 *                  t.segments[i].text);
 *       tsr_transcript_free(&t);
 *   }
 *
 * Long-form transcription follows faster-whisper 1.2.1's transcribe(): 30 s
 * windows of the log-mel spectrogram (clamped at the whole file's maximum),
 * decoded with timestamp tokens and CTranslate2's beam search, temperature
 * fallback when a window's text is too repetitive (compression ratio) or
 * improbable (average log-probability), windows judged silent skipped, the
 * previous text as the prompt, and the next window starting at the last
 * complete segment's end. Audio is read once into a temporary file of 16-bit
 * samples (32 KB per second of audio; standard input included) and decoded
 * window by window, so host memory does not grow with the length. */

#define TSR_MAX_TEMPERATURES 16

typedef struct {
    int id;            /* 1, 2, ... in order */
    int seek;          /* the mel frame (10 ms) where its window started */
    double start, end; /* seconds */
    char *text;        /* as decoded: usually starts with a space */
    int *tokens;       /* its text and timestamp tokens */
    int n_tokens;
    double avg_logprob;       /* of its window's decoding, per token (eos included) */
    double compression_ratio; /* of its window's text (zlib) */
    double no_speech_prob;    /* of its window */
    double temperature;       /* that decoded its window */
} tsr_segment;

typedef struct {
    int beam_size;                     /* 5; 1: greedy */
    int best_of;                       /* 5: samples per window when temperature > 0 */
    double patience;                    /* 1: beam search stops after beam_size * patience */
    double length_penalty;              /* 1: scores divided by length ^ penalty */
    double repetition_penalty;          /* 1: off */
    int no_repeat_ngram_size;          /* 0: off */
    double temperatures[TSR_MAX_TEMPERATURES]; /* 0, 0.2, ..., 1: tried in turn */
    int n_temperatures;
    double compression_ratio_threshold; /* 2.4: above, the window is decoded again; NAN: off */
    double log_prob_threshold;          /* -1: below, decoded again; NAN: off */
    double no_speech_threshold;         /* 0.6: above (and log-prob below), silent; NAN: off */
    int condition_on_previous_text;    /* 1: the previous text prompts the next window */
    double prompt_reset_on_temperature; /* 0.5: a window decoded hotter resets the prompt */
    const char *initial_prompt;        /* text prompting the first window, or NULL */
    int suppress_blank;                /* 1: no blank first token */
    int without_timestamps;            /* 0: timestamp tokens on */
    double max_initial_timestamp;       /* 1.0 s: the first timestamp is no later */
    int max_new_tokens;                /* per window; 0: up to the decoder's limit */
    const char *language;              /* NULL: detected (multilingual models) or "en" */
    const char *task;                  /* "transcribe" (NULL) or "translate" */
    uint64_t seed;                     /* for sampling at temperature > 0 */
    int vad;                           /* 1: skip non-speech first (energy-based VAD) */
    const char *tmpdir;                /* where audio is spooled; NULL: the system's */
    /* called for each segment as soon as it is final, in order */
    void (*on_segment)(void *user, const tsr_segment *seg);
    void (*progress)(void *user, double done_s, double total_s);
    void *user;
} tsr_transcribe_params;

typedef struct {
    char *text;                  /* the segments' texts joined, trimmed */
    tsr_segment *segments;
    int n_segments;
    int *tokens;                 /* every segment's tokens in order */
    int n_tokens;
    double avg_logprob;          /* mean of the segments' */
    char language[16];           /* "en", ... */
    double language_probability; /* 1 when given or English-only */
    double duration;             /* seconds of audio */
    double duration_after_vad;   /* seconds kept by the VAD (= duration without) */
} tsr_transcript;

/* faster-whisper 1.2.1's transcribe() defaults. */
tsr_transcribe_params tsr_transcribe_default_params(void);
/* Transcribes 16 kHz mono samples. p may be NULL (the defaults). */
tsr_status tsr_session_transcribe_pcm(tsr_session *s, const float *pcm, size_t n,
                                      const tsr_transcribe_params *p, tsr_transcript *out,
                                      tsr_error *err);
/* Any local file FFmpeg decodes, or "-" for standard input. */
tsr_status tsr_session_transcribe_file(tsr_session *s, const char *path,
                                       const tsr_transcribe_params *p, tsr_transcript *out,
                                       tsr_error *err);
void tsr_transcript_free(tsr_transcript *t);
/* 1 for multilingual checkpoints (language tokens, detection, translation). */
int tsr_model_whisper_multilingual(const tsr_model *m);
/* Language detection on one window mel (n_mels, 2*audio_ctx), as
 * CTranslate2 and transformers compute it: the softmax over the language
 * tokens' logits after <|startoftranscript|>. Fills up to cap codes ("en",
 * owned by the model) and probabilities, most probable first; *n is the
 * number of languages. Multilingual models only. */
tsr_status tsr_session_whisper_detect_language(tsr_session *s, const float *mel,
                                               const char **codes, float *probs, int cap,
                                               int *n, tsr_error *err);
/* Lower level: encodes one window mel (n_mels, 2*audio_ctx); out (audio_ctx,
 * dim) may be NULL. Then logits (n, vocab) of n teacher-forced tokens. */
tsr_status tsr_session_whisper_encode(tsr_session *s, const float *mel, float *out,
                                      tsr_error *err);
tsr_status tsr_session_whisper_logits(tsr_session *s, const int *tokens, int n, float *logits,
                                      tsr_error *err);

/* ---- audio in the joint space (CLAP) ----
 * A clip becomes one embedding, normalised, in the space of the model's
 * text embeddings (tsr_session_embed_texts), compared with
 * tsr_model_logit_scale (exp(logit_scale_a)), as ClapModel's
 * logits_per_audio. transformers' ClapFeatureExtractor crops clips longer
 * than max_length_s (10 s) at random; tessera chooses deterministically:
 *   MEAN    consecutive 10 s windows (at 0, 10, 20 s, ...; the last one ends
 *           at the clip's end), the mean of their embeddings, normalised
 *   FIRST   the first 10 s
 *   FUSION  (fused checkpoints) the reference's fusion: the whole clip
 *           shrunk, plus three 10 s crops, each the middle of its third of
 *           the possible starts
 * For clips of 10 s or less every mode is the reference's own output (the
 * clip repeated and padded to 10 s; a fused checkpoint fuses four copies,
 * as the reference does for a clip alone in its batch). */
typedef enum { TSR_AUDIO_WINDOW_MEAN, TSR_AUDIO_WINDOW_FIRST, TSR_AUDIO_WINDOW_FUSION } tsr_audio_window;

/* The sampling rate a CLAP model's audio is decoded at (48000); 0 for a
 * model that embeds no audio. */
int tsr_model_audio_rate(const tsr_model *m);
/* 1 for a fused checkpoint (enable_fusion). */
int tsr_model_audio_fused(const tsr_model *m);
/* The feature extractor's output per window: channels (4 with the fusion
 * truncation, else 1), frames (1001), mel bins (64); 0 for other models. */
int tsr_model_audio_feature_shape(const tsr_model *m, int *channels, int *frames, int *mels);
/* One embedding (embed_dim floats) of mono samples at the model's rate. */
tsr_status tsr_session_embed_audio_pcm(tsr_session *s, const float *pcm, size_t n,
                                       tsr_audio_window mode, float *out, tsr_error *err);
/* Any local file FFmpeg decodes (resampled to the model's rate), or "-". */
tsr_status tsr_session_embed_audio_file(tsr_session *s, const char *path, tsr_audio_window mode,
                                        float *out, tsr_error *err);
/* Lower level: the features of the windows a mode cuts (*feats malloc'd,
 * (n_windows, channels, frames, mels)), and the embeddings of B windows'
 * features (out (B, embed_dim), each normalised). */
tsr_status tsr_session_audio_features(tsr_session *s, const float *pcm, size_t n,
                                      tsr_audio_window mode, float **feats, int *n_windows,
                                      tsr_error *err);
tsr_status tsr_session_embed_audio_features(tsr_session *s, const float *feats, int B, float *out,
                                            tsr_error *err);
/* The features without a session: any number of threads at once on one
 * model (the index's decoding threads use it). */
tsr_status tsr_model_audio_features(const tsr_model *m, const float *pcm, size_t n,
                                    tsr_audio_window mode, float **feats, int *n_windows,
                                    tsr_error *err);
/* One clip's embedding from its windows' features: their embeddings'
 * mean, normalised (one window: its embedding). */
tsr_status tsr_session_embed_audio_windows(tsr_session *s, const float *feats, int n_windows,
                                           float *out, tsr_error *err);

/* ---- captioning (BLIP, CoCa) ----
 * CoCa (open_clip layout): captions match open_clip 3.3's
 * model.generate(image) (beam search, or generation_type "top_k"/"top_p"
 * for greedy and sampling) decoded with open_clip.decode up to
 * <end_of_text>, <start_of_text> removed, stripped.
 * HF BlipForConditionalGeneration checkpoints. Captions match
 * model.generate(**processor(images=img, text=prompt)) followed by
 * processor.decode(ids, skip_special_tokens=True): BlipImageProcessor's
 * resize, the ViT, the BERT text decoder and generate()'s greedy and beam
 * search (transformers 4.57 semantics; see fusion/tsr_generate.h). */

typedef struct tsr_caption_params_s {
    int max_length;           /* HF max_length: [DEC], prompt and caption tokens; 0: the
                               * model's, where transformers' default 20 means 20 new
                               * tokens (at most the position table) */
    int max_new_tokens;       /* > 0: caption tokens at most (overrides max_length) */
    int min_length;           /* HF min_length, counted the same way (0) */
    int beams;                /* num_beams; 1: greedy search */
    int beam_groups;          /* CoCa: open_clip's num_beam_groups (3; beams a multiple of
                               * it); its groups never differ, so beams / groups are searched */
    float length_penalty;     /* beam scores / length ^ length_penalty (1) */
    int early_stopping;       /* beam search: 0 false, 1 true, 2 "never" (0) */
    float repetition_penalty; /* 1: off */
    int no_repeat_ngram;      /* no_repeat_ngram_size; 0: off */
    const char *prompt;       /* the text a caption starts with ("a picture of"), or NULL */
    int do_sample;            /* 1: sample (beams 1) instead of searching */
    float temperature;        /* sampling: logits / temperature (1) */
    int top_k;                /* sampling: the k most likely tokens (50; 0: all) */
    float top_p;              /* sampling: the most likely tokens reaching this mass (1) */
    uint64_t seed;            /* sampling: tessera's generator (the same seed, the same
                               * captions on every run and device; not torch's draws) */
    int num_captions;         /* captions per image (1); beam search: the best, at most
                               * beams; sampling: independent draws */
} tsr_caption_params;

typedef struct {
    char *text;   /* malloc'd: the caption, prompt included, special tokens skipped */
    int *ids;     /* malloc'd: what generate() returns ([DEC], prompt, caption, [SEP]) */
    int n_ids;
    int n_prompt; /* the first n_prompt ids are [DEC] and the prompt */
    float score;  /* the search's final score (beam search: length-normalised) */
    int finished; /* 1: ended with the end token; 0: cut at max_length */
} tsr_caption;

/* The model's defaults: its text_config's generation settings (max_length,
 * min_length, num_beams, ...) or transformers' defaults; NULL or another
 * family: transformers' defaults. */
tsr_caption_params tsr_caption_default_params(const tsr_model *m);
/* Captions n images (p NULL: the model's defaults) into out[0..n*K), K =
 * p->num_captions: image i's captions at out[i*K .. i*K+K), best first.
 * Up to the session's image_batch images (and 64 decoder rows: images x
 * beams) go through the tower and the decoder together; the captions are
 * the same in batches of any size. On an error nothing is kept and err
 * names the image. */
tsr_status tsr_session_caption_images(tsr_session *s, const tsr_image *const *images, int n,
                                      const tsr_caption_params *p, tsr_caption *out,
                                      tsr_error *err);
/* The same from preprocessed pixels (n, 3, image_size, image_size). */
tsr_status tsr_session_caption_pixels(tsr_session *s, const float *pixels, int n,
                                      const tsr_caption_params *p, tsr_caption *out,
                                      tsr_error *err);
void tsr_caption_free(tsr_caption *c);
/* Lower level: encodes one image's pixels (3, image_size, image_size);
 * embeds (tokens, vision width) may be NULL. Then the logits (n, vocab) of
 * n teacher-forced ids at positions 0..n-1 (ids[0] is [DEC]). */
tsr_status tsr_session_caption_encode(tsr_session *s, const float *pixels, float *embeds,
                                      tsr_error *err);
tsr_status tsr_session_caption_logits(tsr_session *s, const int *ids, int n, float *logits,
                                      tsr_error *err);

/* ---- fetching checkpoints (tessera pull) ---- */

typedef struct {
    const char *endpoint;     /* NULL: https://huggingface.co */
    const char *token;        /* an access token, or NULL */
    const char *token_origin; /* where the token came from, for messages ("HF_TOKEN", a path) */
    const char *revision;     /* NULL: "main"; a branch, tag, "refs/pr/N" or a commit */
    const char *cache_dir;    /* required: models go to cache_dir/models/ */
    int retries;       /* per request, after 429, 5xx or a dropped connection (default 5) */
    int retry_base_ms; /* the first wait; it doubles, and Retry-After wins (default 1000) */
    /* called as bytes arrive; total is 0 when unknown */
    void (*progress)(void *user, const char *file, uint64_t done, uint64_t total);
    /* called with one line of news: a retry and its wait, a stale file replaced */
    void (*notice)(void *user, const char *msg);
    void *user;
} tsr_pull_params;

tsr_pull_params tsr_pull_default_params(void);
/* Resolves the revision to its commit once and downloads that commit's files
 * (/resolve/{commit}/...), so a push during a pull cannot mix two commits:
 * config, tokenizer and preprocessor files, and the weights the loader
 * reads: model.safetensors, else the shards named by
 * model.safetensors.index.json, else open_clip_model.safetensors, else a
 * CTranslate2 model.bin (checked as one after download, never unpickled).
 * Never downloads pickle files. Every file already present or resumed is
 * verified (LFS: SHA-256; others: git blob id, or size) before it counts as
 * done. Retries with backoff. out_dir receives the model directory, which
 * records the commit (tsr_model_commit). */
tsr_status tsr_pull(const char *repo_id, const tsr_pull_params *p, char *out_dir, size_t cap,
                    tsr_error *err);
/* Where repo_id at revision lives under cache_dir (whether pulled or not). */
tsr_status tsr_model_cache_path(const char *repo_id, const char *revision, const char *cache_dir,
                                char *out, size_t cap, tsr_error *err);
/* A local directory as given; else a completely pulled "org/name[@rev]" in
 * cache_dir; else, when hf_hub_cache is not NULL, that model's snapshot in
 * the Hugging Face cache (models--org--name/snapshots/<commit>, the commit
 * from refs/<rev> or given), used read-only and only when its config and
 * weights are all there. */
tsr_status tsr_model_resolve(const char *name, const char *cache_dir, const char *hf_hub_cache,
                             char *out, size_t cap, tsr_error *err);
/* The commit a pulled directory or a Hugging Face snapshot holds: 1 and 40
 * hex digits in out, or 0 when it is not known (a local directory). */
int tsr_model_commit(const char *dir, char out[41]);

/* ---- embedding indexes ----
 *
 * One index is one SQLite database in WAL mode: the model's fingerprint,
 * name and embedding size, and one row per item (path, size, mtime, content
 * hash, modality, float32 embedding, time added, JSON metadata). Every
 * tsr_index_put or _remove is one transaction, so a killed process leaves
 * every completed call in the index. Several processes may write one index:
 * SQLite serialises them (a writer waits up to busy_ms for another).
 *
 * Threads: one tsr_index handle belongs to one thread at a time; open one
 * handle per thread. */

#define TSR_INDEX_SCHEMA 1
typedef struct tsr_index tsr_index;

/* 64 hex digits of SHA-256 over the family, the configuration,
 * preprocessing and tokenizer files, and the tensor table with samples of
 * every tensor's data. Any thread. */
const char *tsr_model_fingerprint(const tsr_model *m);
/* SHA-256 of a buffer or of a file's contents, as 64 hex digits (1 on success). */
int tsr_content_hash(const void *data, size_t n, char hex[65]);

typedef enum { TSR_MOD_IMAGE, TSR_MOD_AUDIO, TSR_MOD_TEXT, TSR_MOD_N } tsr_modality;
const char *tsr_modality_name(tsr_modality m); /* "image", "audio", "text" */

/* Creates a new index for m at path (an existing file is an error); model
 * names the model in `info` (NULL: the model's directory). */
tsr_status tsr_index_create(const char *path, const tsr_model *m, const char *model,
                            tsr_error *err);
/* Opens an index; writable 0 opens it read-only. A file that is not a
 * tessera index, is corrupt, or has a newer schema is refused by name. */
tsr_status tsr_index_open(const char *path, int writable, tsr_index **out, tsr_error *err);
void tsr_index_close(tsr_index *ix);
/* TSR_ERR_INVALID_ARG naming both fingerprints unless m made this index. */
tsr_status tsr_index_check_model(const tsr_index *ix, const tsr_model *m, tsr_error *err);

typedef struct {
    int schema, dim;
    char fingerprint[65];
    char model[1024];
    char created[32];         /* UTC, ISO 8601 */
    int64_t count;
    int64_t by_modality[TSR_MOD_N];
    int64_t db_bytes;         /* the database with its WAL file */
    int64_t generation;       /* bumped by every change */
    char ann[16];             /* "" or the approximate index's kind */
    int64_t ann_generation;   /* the generation it was built at */
    int64_t ann_bytes;
} tsr_index_info;
tsr_status tsr_index_get_info(tsr_index *ix, tsr_index_info *out, tsr_error *err);
const char *tsr_index_path(const tsr_index *ix);
int tsr_index_dim(const tsr_index *ix);

typedef struct {
    const char *path;
    int64_t size, mtime_ns;
    const char *hash;         /* tsr_content_hash */
    tsr_modality modality;
    const char *meta;         /* a JSON object, or NULL for {} */
    const float *embedding;   /* dim floats */
} tsr_index_item;

/* Adds or replaces (by path) n items in one transaction. */
tsr_status tsr_index_put(tsr_index *ix, const tsr_index_item *items, int n, tsr_error *err);
/* What the index holds for path: *found 0 when nothing. hash: 65 chars, may be NULL. */
tsr_status tsr_index_lookup(tsr_index *ix, const char *path, int *found, int64_t *size,
                            int64_t *mtime_ns, char *hash, tsr_error *err);
/* Removes the items whose path is one of paths, or lies under one of them
 * (a folder), in one transaction; *removed counts them. */
tsr_status tsr_index_remove(tsr_index *ix, const char *const *paths, int n, int64_t *removed,
                            tsr_error *err);
/* Calls fn for every item under prefix (NULL: all), in path order; a
 * non-zero return from fn stops the walk. */
typedef int (*tsr_index_visit_fn)(void *user, const char *path, int64_t size, int64_t mtime_ns,
                                  const char *hash);
tsr_status tsr_index_foreach(tsr_index *ix, const char *prefix, tsr_index_visit_fn fn, void *user,
                             tsr_error *err);

/* Writes the embeddings as a numpy .npy (float32, rows in id order) and/or
 * one JSON object per row (path, modality, size, mtime, hash, added, meta;
 * images also as "image_path", as clip-retrieval reads it) and/or a FAISS
 * IndexFlatIP of the same rows. Each file is written atomically. NULL skips. */
tsr_status tsr_index_export(tsr_index *ix, const char *npy, const char *jsonl, const char *faiss,
                            int64_t *rows, tsr_error *err);
/* Copies every item of the shards into out (created like the first shard if
 * it does not exist); every fingerprint must agree. A path in several
 * shards keeps the most recently added row. */
tsr_status tsr_index_merge(const char *out, const char *const *shards, int n, int64_t *items,
                           tsr_error *err);
/* Builds an approximate index ("hnsw" or "ivf-pq") of every item and stores
 * it beside the database (path + ".ann"); search uses it while the index is
 * unchanged. */
tsr_status tsr_index_build_ann(tsr_index *ix, const char *kind, tsr_error *err);

typedef struct {
    int k;                    /* results per query (default 10) */
    const char *where;        /* a GLOB on the path, or NULL */
    int modality;             /* TSR_MOD_IMAGE, ..., or -1: every item */
    int exact;                /* 1: brute force even where an approximate index is current */
    int chunk_rows;           /* rows per device buffer; 0: as many as the device allows */
} tsr_search_params;
tsr_search_params tsr_search_default_params(void);

typedef struct {
    int64_t id;
    float score;              /* inner product with the (normalised) query */
    char *path;               /* owned by the result */
} tsr_hit;

typedef struct {
    int used_ann;             /* 1: answered by the approximate index */
    int ann_stale;            /* 1: an approximate index exists but the items changed since */
    int64_t searched;         /* the items the queries were compared with */
    double load_s, search_s;  /* loading the matrix (0 when resident), the search itself */
    char ann_problem[1024];   /* why an approximate index could not be used ("" if none) */
} tsr_search_info;

/* The top k items for each of nq queries (nq x dim floats, normalised like
 * the stored embeddings), best first, ties by id. Exact search multiplies the
 * queries by the embedding matrix on ctx's device with tessera's GEMM and
 * selects the top k there; the matrix stays resident in the handle for the
 * next call while the index is unchanged. hits: nq * k entries; n_hits[q]
 * receives how many query q got (fewer than k when fewer items match). */
tsr_status tsr_index_search(tsr_index *ix, tsr_ctx *ctx, const float *queries, int nq,
                            const tsr_search_params *p, tsr_hit *hits, int *n_hits,
                            tsr_search_info *info, tsr_error *err);
void tsr_hits_free(tsr_hit *hits, int n);
/* The stored embedding of path into out (dim floats); *found 0 when absent. */
tsr_status tsr_index_embedding(tsr_index *ix, const char *path, float *out, int *found,
                               tsr_error *err);

#ifdef __cplusplus
}
#endif
#endif
