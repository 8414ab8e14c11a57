/* tessera fusion: load a contrastive model directory, embed images and
 * texts into one space, and score them (zero-shot classification).
 *
 *   tsr_model *m = NULL;
 *   if (tsr_model_load(ctx, "clip-dir", &m, &err) != TSR_OK) ...
 *   const char *labels[] = {"cat", "dog"};
 *   const char *tmpl[] = {"a photo of a {}."};
 *   float *cls = malloc(sizeof(float) * 2 * tsr_model_embed_dim(m));
 *   tsr_zeroshot_weights(m, labels, 2, tmpl, 1, cls, &err);
 *   float img[512], probs[2];
 *   tsr_model_embed_image_files(m, (const char *[]){"cat.jpg"}, 1, 1, img, &err);
 *   tsr_zeroshot_probs(m, img, 1, cls, 2, probs);
 *   tsr_model_free(m);
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

/* Reads config.json, model.safetensors (or shards), the tokenizer and
 * preprocessor_config.json from dir, checks every tensor's shape against the
 * config and uploads the weights to the device once. */
tsr_status tsr_model_load(tsr_ctx *ctx, const char *dir, tsr_model **out, tsr_error *err);
void tsr_model_free(tsr_model *m);
/* A full-size CLIP ("ViT-B-32", "ViT-B-16", "ViT-L-14") with random weights
 * and no tokenizer, for benchmarks: speed does not depend on the values. */
tsr_status tsr_model_create_random(tsr_ctx *ctx, const char *arch, tsr_model **out,
                                   tsr_error *err);
/* Forward FLOPs of one image, and of one text of full context length. */
void tsr_model_flops(const tsr_model *m, double *image, double *text);
/* The GEMM shapes of the linear layers of both towers at the given batch
 * sizes, for tsr_tune_gemm; returns their count (8 per batch size; -1 for an
 * unknown architecture) and fills up to max. */
int tsr_arch_gemm_shapes(const char *arch, const int *batches, int nb, tsr_gemm_shape *out,
                         int max);
int tsr_model_gemm_shapes(const tsr_model *m, const int *batches, int nb, tsr_gemm_shape *out,
                          int max);
/* The architectures tsr_model_create_random knows; returns their count. */
int tsr_arch_names(const char **names, int max);

int tsr_model_embed_dim(const tsr_model *m);
int tsr_model_max_text_len(const tsr_model *m);
int tsr_model_image_channels(const tsr_model *m);
int tsr_model_image_size(const tsr_model *m);
float tsr_model_logit_scale(const tsr_model *m); /* exp(logit_scale) */
const tsr_tokenizer *tsr_model_tokenizer(const tsr_model *m);
const tsr_preprocess_cfg *tsr_model_preprocess_cfg(const tsr_model *m);

/* pixels: (B, C, S, S) preprocessed; out: (B, dim). normalize: L2-normalise. */
tsr_status tsr_model_embed_pixels(tsr_model *m, const float *pixels, int B, int normalize,
                                  float *out, tsr_error *err);
/* Decodes, preprocesses and embeds n images, in batches. */
tsr_status tsr_model_embed_image_files(tsr_model *m, const char *const *paths, int n,
                                       int normalize, float *out, tsr_error *err);
/* ids: (B, S) padded token ids, lens: (B). */
tsr_status tsr_model_embed_ids(tsr_model *m, const int *ids, const int *lens, int B, int S,
                               int normalize, float *out, tsr_error *err);
/* Tokenizes and embeds n texts; *n_truncated counts texts cut to fit. */
tsr_status tsr_model_embed_texts(tsr_model *m, const char *const *texts, int n, int normalize,
                                 float *out, int *n_truncated, tsr_error *err);

/* The 80 ImageNet prompt templates of the CLIP paper ("a photo of a {}."). */
int tsr_templates_imagenet(const char *const **out);

/* Class weights (L, dim): each label's template embeddings, normalised,
 * averaged and normalised again, as in the CLIP paper. "{}" in a template is
 * replaced by the label. Labels must be valid UTF-8. */
tsr_status tsr_zeroshot_weights(tsr_model *m, const char *const *labels, int L,
                                const char *const *templates, int T, float *weights,
                                int *n_truncated, tsr_error *err);
/* probs (N, L) = softmax(exp(logit_scale) * img (N, dim) . weights (L, dim)^T). */
void tsr_zeroshot_probs(const tsr_model *m, const float *img, int N, const float *weights, int L,
                        float *probs);
/* logits (N, L) = exp(logit_scale) * a . b^T for normalised rows. */
void tsr_scores(float scale, const float *a, int N, const float *b, int L, int dim,
                float *logits);

/* ---- sentence-transformers text models (BERT: all-MiniLM-L6-v2, ...) ----
 *
 *   tsr_sentence_model *sm = NULL;
 *   tsr_sentence_load(ctx, "all-MiniLM-L6-v2", &sm, &err);
 *   float *e = malloc(sizeof(float) * n * tsr_sentence_dim(sm));
 *   tsr_sentence_embed(sm, texts, n, e, NULL, &err);
 */

typedef struct tsr_sentence_model tsr_sentence_model;

/* Reads config.json (model_type "bert"), model.safetensors, the WordPiece
 * tokenizer, sentence_bert_config.json (max_seq_length) and modules.json
 * (the pooling mode from its Pooling config; Normalize). */
tsr_status tsr_sentence_load(tsr_ctx *ctx, const char *dir, tsr_sentence_model **out,
                             tsr_error *err);
void tsr_sentence_free(tsr_sentence_model *m);
int tsr_sentence_dim(const tsr_sentence_model *m);
int tsr_sentence_max_len(const tsr_sentence_model *m);
const tsr_wordpiece *tsr_sentence_tokenizer(const tsr_sentence_model *m);
/* Embeds n texts into out (n, dim) as sentence-transformers' encode() does:
 * truncation to max_seq_length, pooling, normalisation when configured. */
tsr_status tsr_sentence_embed(tsr_sentence_model *m, const char *const *texts, int n, float *out,
                              int *n_truncated, tsr_error *err);

/* ---- Whisper speech recognition ----
 *
 *   tsr_whisper *w = NULL;
 *   tsr_whisper_load(ctx, "faster-whisper-tiny.en", &w, &err);
 *   tsr_transcript t;
 *   tsr_whisper_transcribe_file(w, "talk.mp3", NULL, &t, &err);  // NULL: defaults
 *   puts(t.text);
 *   tsr_transcript_free(&t);
 */

typedef struct tsr_whisper tsr_whisper;

typedef struct {
    int beam_size;                  /* 1: greedy */
    float length_penalty;           /* beam scores divided by length^penalty */
    int condition_on_previous_text; /* the previous window's text as the prompt */
    int max_new_tokens;             /* per window; 0: up to the decoder context */
    float no_speech_threshold;      /* skip a window whose no-speech probability exceeds */
    float log_prob_threshold;       /* ... unless its average log-prob exceeds this */
    const char *language;           /* multilingual models: "en", "de", ... */
    void (*progress)(void *user, double done_s, double total_s);
    void *user;
} tsr_transcribe_params;

typedef struct {
    double start, end; /* seconds: the 30 s window */
    char *text;
    double avg_logprob, no_speech_prob;
    int skipped;       /* judged silent: no text */
} tsr_segment;

typedef struct {
    char *text;        /* the whole transcript, trimmed */
    int *tokens;       /* the text tokens of all windows */
    int n_tokens;
    double avg_logprob; /* mean over the windows with text */
    tsr_segment *segments;
    int n_segments;
    double duration;   /* seconds of audio */
} tsr_transcript;

/* Loads a CTranslate2 Whisper directory (model.bin, config.json,
 * tokenizer.json: faster-whisper's format) or a HF
 * WhisperForConditionalGeneration directory (config.json, model.safetensors,
 * tokenizer.json, generation_config.json). */
tsr_status tsr_whisper_load(tsr_ctx *ctx, const char *dir, tsr_whisper **out, tsr_error *err);
void tsr_whisper_free(tsr_whisper *m);
/* faster-whisper's defaults, greedy: beam 1, length penalty 1, previous text
 * on, no-speech 0.6 and log-prob -1.0 thresholds. */
tsr_transcribe_params tsr_transcribe_default_params(void);
/* Transcribes 16 kHz mono samples in consecutive 30-second windows, without
 * timestamps. p may be NULL. */
tsr_status tsr_whisper_transcribe_pcm(tsr_whisper *m, const float *pcm, size_t n,
                                      const tsr_transcribe_params *p, tsr_transcript *out,
                                      tsr_error *err);
tsr_status tsr_whisper_transcribe_file(tsr_whisper *m, const char *path,
                                       const tsr_transcribe_params *p, tsr_transcript *out,
                                       tsr_error *err);
void tsr_transcript_free(tsr_transcript *t);

int tsr_whisper_n_mels(const tsr_whisper *m);
int tsr_whisper_vocab(const tsr_whisper *m);
int tsr_whisper_dim(const tsr_whisper *m);
int tsr_whisper_audio_ctx(const tsr_whisper *m); /* encoder positions (1500) */
int tsr_whisper_text_ctx(const tsr_whisper *m);  /* decoder positions (448) */
const tsr_bytelevel *tsr_whisper_tokenizer(const tsr_whisper *m);
/* Lower level: encodes one window mel (n_mels, 2*audio_ctx); out (audio_ctx,
 * dim) may be NULL. Then logits (n, vocab) of n teacher-forced tokens. */
tsr_status tsr_whisper_encode(tsr_whisper *m, const float *mel, float *out, tsr_error *err);
tsr_status tsr_whisper_logits(tsr_whisper *m, const int *tokens, int n, float *logits,
                              tsr_error *err);

/* What a model directory holds, from config.json's model_type: "clip",
 * "bert", "whisper", or NULL when unreadable (err says why). */
const char *tsr_model_kind(const char *dir, tsr_error *err);

/* ---- fetching checkpoints (tessera pull) ---- */

typedef struct {
    const char *endpoint;  /* NULL: $HF_ENDPOINT, else https://huggingface.co */
    const char *token;     /* NULL: $HF_TOKEN */
    const char *revision;  /* NULL: "main" */
    const char *cache_dir; /* NULL: see tsr_cache_dir */
    /* called as bytes arrive; total is 0 when unknown */
    void (*progress)(void *user, const char *file, uint64_t done, uint64_t total);
    void *user;
} tsr_pull_params;

tsr_pull_params tsr_pull_default_params(void);
/* Downloads config, safetensors weights (sharded too), tokenizer and
 * preprocessor files of repo_id ("org/name") into the cache; out_dir receives
 * the model directory. Never downloads pickle files. Resumes partial
 * downloads and checks LFS files against the hub's SHA-256. */
tsr_status tsr_pull(const char *repo_id, const tsr_pull_params *p, char *out_dir, size_t cap,
                    tsr_error *err);
/* Where repo_id at revision lives in the cache (whether pulled or not). */
tsr_status tsr_model_cache_path(const char *repo_id, const char *revision, const char *cache_dir,
                                char *out, size_t cap, tsr_error *err);
/* A local directory as given, or else a completely pulled "org/name[@rev]". */
tsr_status tsr_model_resolve(const char *name, const char *cache_dir, char *out, size_t cap,
                             tsr_error *err);

#ifdef __cplusplus
}
#endif
#endif
