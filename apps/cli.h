/* Shared pieces of the tessera CLI: option parsing, output helpers, exit codes. */
#ifndef TSR_CLI_H
#define TSR_CLI_H

#include <cjson/cJSON.h>
#include <stdio.h>

#include "tsr_fusion.h"

/* Exit codes, documented in the README and in `tessera --help`. */
enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

typedef struct {
    const char *name;  /* long name without "--" */
    int has_arg;
    const char **value; /* set for options with an argument */
    int *flag;          /* set to 1 for flags */
} cli_opt;

/* Parses argv[1..] (argv[0] is the command); positionals collect in pos.
 * Returns EXIT_OK, EXIT_USAGE (message printed) or -1 for --help. */
int cli_parse(int argc, char **argv, const cli_opt *opts, int nopts, const char ***pos,
              int *npos);
/* --dtype of the commands that take it (cli_parse falls back to
 * $TESSERA_DTYPE for them; NULL: f32): how cli_ctx_params asks the library
 * to keep linear layers' weights. */
extern const char *cli_dtype;

void cli_error(const char *cmd, const tsr_error *err);
int cli_usage_error(const char *cmd, const char *fmt, ...);
/* The user's tessera cache directory: $TESSERA_CACHE_DIR, $XDG_CACHE_HOME/tessera
 * or ~/.cache/tessera. */
void cli_cache_dir(char *out, size_t cap);
/* Context settings from --device and the environment (TESSERA_DEVICE,
 * TESSERA_CACHE_DIR, TESSERA_NO_TUNING, TESSERA_GEMM, TESSERA_XGEMM,
 * TESSERA_XGEMM_MIN_INDIRECT): the library itself reads no environment. */
tsr_ctx_params cli_ctx_params(const char *device, int verbose);
/* Creates the OpenCL context for --device; prints the error and the warning. */
int cli_ctx(const char *cmd, const char *device, int verbose, tsr_ctx **ctx);
int cli_ctx_with(const char *cmd, const tsr_ctx_params *p, tsr_ctx **ctx);
/* Resolves --model, creates the context (unless *ctx is set), loads the
 * model and, when s is not NULL, a session; prints the error. */
int cli_load(const char *cmd, const char *model, const char *device, int verbose, tsr_ctx **ctx,
             tsr_model **m, tsr_session **s);
/* Writes a float32 (rows, cols) .npy file atomically. */
int cli_write_npy(const char *path, const float *data, int rows, int cols, tsr_error *err);
/* Reads a 2-D float32 .npy file; NULL with err on failure. */
float *cli_read_npy(const char *path, long long *rows, int *cols, tsr_error *err);
/* Parses "1,8,32" into out: up to max integers in lo..hi. Returns how many,
 * or 0 for an empty or bad list. */
int cli_parse_ints(const char *s, int *out, int max, int lo, int hi);
/* Prints o as one line of JSON on stdout and frees it. */
void cli_print_json(cJSON *o);
/* A progress bar on stderr when it is a terminal. */
void cli_progress(const char *what, int done, int total);
/* Reads a whole file as text (NUL-terminated); NULL with err on failure. */
char *cli_read_file(const char *path, size_t max, size_t *len, tsr_error *err);

int cmd_classify(int argc, char **argv);
int cmd_caption(int argc, char **argv);
/* tessera bench for a CLAP model's audio tower (cmd_bench_audio.c). */
int bench_audio(tsr_ctx *ctx, tsr_model *m, const char *name, const int *bl, int nb,
                double seconds, int json);
/* tessera bench on a captioner (cmd_bench_caption.c). */
int bench_caption(tsr_ctx *ctx, tsr_model *m, const char *name, const int *batches, int nb,
                  double seconds, int json);
int cmd_embed(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_devices(int argc, char **argv);
int cmd_pull(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_transcribe(int argc, char **argv);
int cmd_tune(int argc, char **argv);
int cmd_index(int argc, char **argv);
int cmd_search(int argc, char **argv);
int cmd_eval(int argc, char **argv);

/* Writes reliability diagrams of n calibrations side by side (cli_plot.c). */
int cli_reliability_png(const char *path, const tsr_calibration *cal, const char *const *titles,
                        int n, tsr_error *err);

/* Reads FILE ("-": stdin) as UTF-8 lines into *lines (pointers into *buf);
 * empty lines count. Prints the error. */
int cli_read_lines(const char *cmd, const char *path, char **buf, const char ***lines, int *n);

/* The Hugging Face cache as huggingface_hub finds it (HF_HUB_CACHE, HF_HOME, ...). */
void cli_hf_hub_cache(char *out, size_t cap);
/* The token as huggingface_hub finds it: HF_TOKEN, then the file at HF_TOKEN_PATH
 * or $HF_HOME/token; 1 when found, with where in origin. */
int cli_hf_token(char *tok, size_t cap, char *origin, size_t ocap);
/* Resolves --model (a directory, a pulled org/name[@rev], or one in the Hugging
 * Face cache); prints the error, and with verbose which commit it is. */
int cli_model_dir(const char *cmd, const char *model, int verbose, char *out, size_t cap);

/* --image-size, --mean, --std (NULL when not given) applied to a CLIP model;
 * without them a model missing preprocessor_config.json is an error that
 * says so. Prints the error. */
int cli_image_preprocess(const char *cmd, tsr_model *m, const char *dir, const char *size,
                         const char *mean, const char *std);

/* The warning for a 16-bit greyscale PNG that decoding clipped as Pillow
 * does (clipped of pixels above 255); nothing when clipped is 0. */
void cli_warn_clipped(const char *cmd, const char *path, size_t clipped, size_t pixels);

/* ---- batch runs over many images (cli_batch.c) ---- */

typedef struct {
    char **v;
    int n, cap;
    int walk_errors; /* folders that could not be read */
} cli_paths;

/* The inputs of a batch run: each argument (or, with lines_file, each
 * non-empty line of it) that is a folder is walked recursively and its PNG
 * and JPEG files (detected by content, in name order) are taken; any other
 * argument is taken as given, so that a bad file is reported by name. */
int cli_collect_inputs(const char *cmd, const char *const *args, int n, const char *lines_file,
                       cli_paths *out);
void cli_paths_free(cli_paths *l);
/* Appends a copy of p; 0 when out of memory. */
int cli_paths_push(cli_paths *l, const char *p);
/* 1 when the file starts like an image tessera decodes. */
int cli_sniff_image(const char *path);
/* 1 when path starts like an audio (or video) file (tsr_audio_sniff). */
int cli_sniff_audio(const char *path);
/* --audio-window's value; a usage error otherwise. */
int cli_audio_window(const char *cmd, const char *s, tsr_audio_window *out);
/* cli_collect_inputs, walking folders for audio files (audio = 1) instead. */
int cli_collect_inputs_kind(const char *cmd, const char *const *args, int n,
                            const char *lines_file, int audio, cli_paths *out);

/* A progress bar on stderr when it is a terminal (and not quiet): done and
 * total, items per second, ETA, failures so far. */
typedef struct {
    const char *what;
    int total, done, errors, on;
    double t0, last;
} cli_bar;
void cli_bar_start(cli_bar *b, const char *what, int total, int quiet);
void cli_bar_update(cli_bar *b, int done, int errors);
void cli_bar_clear(cli_bar *b);
void cli_bar_end(cli_bar *b);

/* Decoding ahead: batches of decoded, preprocessed images; with threaded, a
 * host thread prepares the next batch (on one thread per core, at most 8)
 * while the caller runs this one; without, the caller's thread decodes one
 * image at a time. */
#define CLI_MAX_BATCH 32
typedef struct {
    float *px;                      /* n_ok images, (per_image) floats each */
    int first, count, n_ok;         /* inputs [first, first + count) */
    int slot[CLI_MAX_BATCH];        /* row in px of input first+i, or -1 */
    tsr_error err[CLI_MAX_BATCH];   /* why input first+i failed */
    size_t clipped16[CLI_MAX_BATCH], pixels[CLI_MAX_BATCH]; /* for cli_warn_clipped */
} cli_batch;
typedef struct cli_prefetch cli_prefetch;
cli_prefetch *cli_prefetch_start(const char *const *paths, int n, int batch,
                                 const tsr_preprocess_cfg *cfg, size_t per_image, int threaded);
/* The same with a corruption applied to every image (tsr_image_corrupt's
 * seed is seed plus a multiple of the input's index, so each image has its
 * own noise and a rerun has the same); corrupt must outlive the prefetch. */
typedef struct {
    tsr_corruption kind;
    int severity;
    unsigned long long seed;
} cli_corruption;
cli_prefetch *cli_prefetch_start_corrupted(const char *const *paths, int n, int batch,
                                           const tsr_preprocess_cfg *cfg, size_t per_image,
                                           int threaded, const cli_corruption *corrupt);
/* The next batch (valid until the next call), or NULL after the last. */
const cli_batch *cli_prefetch_next(cli_prefetch *p);
void cli_prefetch_stop(cli_prefetch *p);

#endif
