/* tessera transcribe: speech to text (and subtitles) with Whisper models. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static const char *transcribe_help =
    "usage: tessera transcribe --model DIR [options] AUDIO...\n"
    "\n"
    "Transcribes speech with a Whisper model: a faster-whisper (CTranslate2) directory\n"
    "with model.bin, or a Hugging Face Whisper directory with model.safetensors.\n"
    "AUDIO is any local file FFmpeg reads (WAV, FLAC, MP3, Ogg/Opus, M4A/AAC, a video's\n"
    "audio track), or - for standard input. URLs are refused. The defaults are\n"
    "faster-whisper's transcribe(): timestamps, beam 5, temperature fallback, the\n"
    "previous text as the prompt, silent windows skipped. Audio of any length is\n"
    "streamed; each segment is printed as soon as it is final.\n"
    "\n"
    "Output:\n"
    "  --format F        txt (default: one segment per line), json, srt, vtt or tsv;\n"
    "                    several (srt,vtt) or all with --output-dir\n"
    "  --json            the same as --format json: one object per file\n"
    "  --output-dir DIR  write DIR/NAME.EXT per input instead of standard output\n"
    "                    (needed for srt, vtt and tsv with several inputs)\n"
    "Decoding:\n"
    "  --language L      spoken language (default: detected on multilingual models, en\n"
    "                    on English-only ones, where another language is an error)\n"
    "  --task T          transcribe (default) or translate (multilingual models)\n"
    "  --beam N          beam size (default 5; 1: greedy)\n"
    "  --best-of N       samples per window when sampling (default 5)\n"
    "  --patience X      beam search patience (default 1)\n"
    "  --length-penalty X          (default 1)\n"
    "  --temperature LIST          temperatures tried in turn (default 0,0.2,0.4,0.6,0.8,1)\n"
    "  --compression-ratio-threshold X  fall back above (default 2.4; none: off)\n"
    "  --log-prob-threshold X      fall back below (default -1; none: off)\n"
    "  --no-speech-threshold X     silence above (default 0.6; none: off)\n"
    "  --no-previous     do not prompt a window with the previous text\n"
    "  --prompt TEXT     initial prompt for the first window (names, spellings)\n"
    "  --no-timestamps   decode without timestamp tokens (fixed 30 s windows)\n"
    "  --max-initial-timestamp X   seconds (default 1)\n"
    "  --seed N          seed of the sampling at temperature > 0 (default 0)\n"
    "  --vad             skip non-speech first with tessera's energy-based voice activity\n"
    "                    detector (not Silero: see the README)\n"
    "Device:\n"
    "  --device D        OpenCL device index or name substring\n"
    "  --dtype T         linear layers' weights on the device: f32 (default), f16, bf16 or int8\n"
    "  --verbose         log device and kernel cache use, and launch counts, on stderr\n"
    "\n"
    "Audio is first decoded into a temporary file of 16-bit samples ($TMPDIR, 32 KB per\n"
    "second of audio). Exit codes: 0 ok, 1 runtime error (for example an unreadable\n"
    "audio file; the other files are still transcribed), 2 usage error.\n";

enum { F_TXT, F_JSON, F_SRT, F_VTT, F_TSV };
static mode_t file_mask; /* the process's umask, read once */
static const char *const format_names[] = {"txt", "json", "srt", "vtt", "tsv"};

typedef struct {
    int format;
    FILE *out;
    const char *prefix; /* "path: " before txt lines with several inputs */
    int n;              /* segments written */
} writer;

/* Every output of one input: a segment goes to each. */
typedef struct {
    writer w[5];
    int n;
} writers;

/* HH:MM:SS,mmm: the time rounded to microseconds (as Python's timedelta),
 * then truncated to milliseconds (as the srt and webvtt packages). */
static void timestamp(double t, char sep, char *buf, size_t cap)
{
    long long us = (long long)rint((t < 0 ? 0 : t) * 1e6), ms = us / 1000;
    snprintf(buf, cap, "%02lld:%02lld:%02lld%c%03lld", ms / 3600000, ms / 60000 % 60,
             ms / 1000 % 60, sep, ms % 1000);
}

/* The segment's text without surrounding white space. */
static void trimmed(const char *s, const char **a, int *len)
{
    const char *e = s + strlen(s);
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
        s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
        e--;
    *a = s;
    *len = (int)(e - s);
}

static void write_header(writer *w)
{
    if (w->format == F_VTT)
        fputs("WEBVTT\n", w->out); /* each cue follows a blank line, as webvtt-py writes */
    else if (w->format == F_TSV)
        fputs("start\tend\ttext\n", w->out);
}

static void write_segment(writer *w, const tsr_segment *s)
{
    const char *t;
    int len;
    trimmed(s->text, &t, &len);
    char a[32], b[32];
    w->n++;
    switch (w->format) {
    case F_TXT:
        fprintf(w->out, "%s%.*s\n", w->prefix ? w->prefix : "", len, t);
        break;
    case F_SRT:
        timestamp(s->start, ',', a, sizeof a);
        timestamp(s->end, ',', b, sizeof b);
        fprintf(w->out, "%d\n%s --> %s\n%.*s\n\n", w->n, a, b, len, t);
        break;
    case F_VTT:
        timestamp(s->start, '.', a, sizeof a);
        timestamp(s->end, '.', b, sizeof b);
        fprintf(w->out, "\n%s --> %s\n%.*s\n", a, b, len, t);
        break;
    case F_TSV: /* openai-whisper's: integer milliseconds, tabs in the text as spaces */
        fprintf(w->out, "%.0f\t%.0f\t", rint(1000 * s->start), rint(1000 * s->end));
        for (int i = 0; i < len; i++)
            fputc(t[i] == '\t' || t[i] == '\n' ? ' ' : t[i], w->out);
        fputc('\n', w->out);
        break;
    default:
        return; /* json: written at the end */
    }
    fflush(w->out);
}

static void on_segment(void *user, const tsr_segment *s)
{
    writers *ws = user;
    for (int i = 0; i < ws->n; i++)
        write_segment(&ws->w[i], s);
}

static void progress(void *user, double done, double total)
{
    (void)user;
    if (total > 60 && isatty(2))
        cli_progress("transcribe", (int)done, (int)total);
}

static cJSON *transcript_json(const char *path, const tsr_transcript *t, double seconds)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "file", path);
    cJSON_AddStringToObject(o, "text", t->text);
    cJSON_AddStringToObject(o, "language", t->language);
    cJSON_AddNumberToObject(o, "language_probability", t->language_probability);
    cJSON_AddNumberToObject(o, "duration", t->duration);
    cJSON_AddNumberToObject(o, "duration_after_vad", t->duration_after_vad);
    cJSON_AddNumberToObject(o, "avg_logprob", t->avg_logprob);
    cJSON_AddNumberToObject(o, "seconds", seconds);
    cJSON *toks = cJSON_AddArrayToObject(o, "tokens");
    for (int i = 0; i < t->n_tokens; i++)
        cJSON_AddItemToArray(toks, cJSON_CreateNumber(t->tokens[i]));
    cJSON *segs = cJSON_AddArrayToObject(o, "segments");
    for (int i = 0; i < t->n_segments; i++) {
        const tsr_segment *s = &t->segments[i];
        cJSON *so = cJSON_CreateObject();
        cJSON_AddNumberToObject(so, "id", s->id);
        cJSON_AddNumberToObject(so, "seek", s->seek);
        cJSON_AddNumberToObject(so, "start", s->start);
        cJSON_AddNumberToObject(so, "end", s->end);
        cJSON_AddStringToObject(so, "text", s->text);
        cJSON *st = cJSON_AddArrayToObject(so, "tokens");
        for (int k = 0; k < s->n_tokens; k++)
            cJSON_AddItemToArray(st, cJSON_CreateNumber(s->tokens[k]));
        cJSON_AddNumberToObject(so, "temperature", s->temperature);
        cJSON_AddNumberToObject(so, "avg_logprob", s->avg_logprob);
        cJSON_AddNumberToObject(so, "compression_ratio", s->compression_ratio);
        cJSON_AddNumberToObject(so, "no_speech_prob", s->no_speech_prob);
        cJSON_AddItemToArray(segs, so);
    }
    return o;
}

/* "none" or a finite number. */
static int parse_threshold(const char *s, double *out)
{
    if (strcmp(s, "none") == 0) {
        *out = NAN;
        return 1;
    }
    char *end;
    double v = strtod(s, &end);
    if (*s == 0 || *end || !isfinite(v))
        return 0;
    *out = v;
    return 1;
}

static int parse_float(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (*s == 0 || *end || !(v >= lo && v <= hi))
        return 0;
    *out = v;
    return 1;
}

static int parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == 0 || *end || v < lo || v > hi)
        return 0;
    *out = v;
    return 1;
}

/* The options that set decoding parameters; 0 and a usage error when bad. */
typedef struct {
    const char *beam, *best_of, *patience, *lp, *temps, *crt, *lpt, *nst, *mit, *seed;
} num_opts;

static int apply_numbers(const num_opts *o, tsr_transcribe_params *p)
{
    long v;
    if (o->beam) {
        if (!parse_int(o->beam, 1, 16, &v))
            return cli_usage_error("transcribe", "--beam must be an integer in 1..16"), 0;
        p->beam_size = (int)v;
    }
    if (o->best_of) {
        if (!parse_int(o->best_of, 1, 16, &v))
            return cli_usage_error("transcribe", "--best-of must be an integer in 1..16"), 0;
        p->best_of = (int)v;
    }
    if (o->patience && !parse_float(o->patience, 0.01, 100, &p->patience))
        return cli_usage_error("transcribe", "--patience must be a number in 0.01..100"), 0;
    if (o->lp && !parse_float(o->lp, -10, 10, &p->length_penalty))
        return cli_usage_error("transcribe", "--length-penalty must be a number in -10..10"), 0;
    if (o->temps) {
        int n = 0;
        for (const char *s = o->temps; *s && n <= TSR_MAX_TEMPERATURES;) {
            char item[32];
            size_t k = strcspn(s, ",");
            snprintf(item, sizeof item, "%.*s", (int)(k < 31 ? k : 31), s);
            if (n == TSR_MAX_TEMPERATURES || k >= 31 ||
                !parse_float(item, 0, 100, &p->temperatures[n]))
                return cli_usage_error("transcribe", "--temperature takes up to %d numbers in "
                                       "0..100, separated by commas",
                                       TSR_MAX_TEMPERATURES),
                       0;
            n++;
            s += k + (s[k] == ',');
        }
        if (n == 0)
            return cli_usage_error("transcribe", "--temperature needs at least one value"), 0;
        p->n_temperatures = n;
    }
    if (o->crt && !parse_threshold(o->crt, &p->compression_ratio_threshold))
        return cli_usage_error("transcribe", "--compression-ratio-threshold: a number or none"), 0;
    if (o->lpt && !parse_threshold(o->lpt, &p->log_prob_threshold))
        return cli_usage_error("transcribe", "--log-prob-threshold: a number or none"), 0;
    if (o->nst && !parse_threshold(o->nst, &p->no_speech_threshold))
        return cli_usage_error("transcribe", "--no-speech-threshold: a number or none"), 0;
    if (o->mit && !parse_float(o->mit, 0, 30, &p->max_initial_timestamp))
        return cli_usage_error("transcribe", "--max-initial-timestamp must be in 0..30"), 0;
    if (o->seed) {
        char *end;
        unsigned long long sd = strtoull(o->seed, &end, 10);
        if (*o->seed == 0 || *end || *o->seed == '-')
            return cli_usage_error("transcribe", "--seed must be a non-negative integer"), 0;
        p->seed = sd;
    }
    return 1;
}

/* DIR/STEM.EXT for an input path ("-": stdin). */
static void output_path(const char *dir, const char *in, const char *ext, char *out, size_t cap)
{
    const char *base = strcmp(in, "-") == 0 ? "stdin" : strrchr(in, '/') ? strrchr(in, '/') + 1
                                                                       : in;
    const char *dot = strrchr(base, '.');
    int len = dot && dot != base ? (int)(dot - base) : (int)strlen(base);
    snprintf(out, cap, "%s/%.*s.%s", dir, len, base, ext);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* One input: transcribed to stdout, or to temporary files renamed into
 * place when complete (a partial file never takes the name). */
static int transcribe_one(tsr_session *sess, const char *path, tsr_transcribe_params p,
                          int formats, const char *out_dir, int several, int verbose)
{
    writers ws = {.n = 0};
    char prefix[4200], dst[5][4600], tmp[5][4700];
    int rc = EXIT_OK;
    for (int f = 0; f < 5; f++) {
        if (!(formats & (1 << f)))
            continue;
        writer *w = &ws.w[ws.n];
        *w = (writer){f, stdout, NULL, 0};
        if (several && !out_dir && f == F_TXT) {
            snprintf(prefix, sizeof prefix, "%s: ", path);
            w->prefix = prefix;
        }
        if (out_dir) {
            output_path(out_dir, path, format_names[f], dst[ws.n], sizeof dst[0]);
            snprintf(tmp[ws.n], sizeof tmp[0], "%s.partXXXXXX", dst[ws.n]);
            int fd = mkstemp(tmp[ws.n]);
            if (fd >= 0) /* mkstemp makes 0600: give the file the usual mode */
                (void)fchmod(fd, 0666 & ~file_mask);
            w->out = fd >= 0 ? fdopen(fd, "w") : NULL;
            if (!w->out) {
                fprintf(stderr, "tessera transcribe: %s: cannot write: %s\n", tmp[ws.n],
                        strerror(errno));
                if (fd >= 0)
                    close(fd), unlink(tmp[ws.n]);
                rc = EXIT_RUNTIME;
                break;
            }
        }
        write_header(w);
        ws.n++;
    }
    p.on_segment = on_segment;
    p.user = &ws;
    tsr_transcript t;
    tsr_error err = {0};
    double t0 = now_s();
    if (rc == EXIT_OK && tsr_session_transcribe_file(sess, path, &p, &t, &err) != TSR_OK) {
        cli_error("transcribe", &err);
        rc = EXIT_RUNTIME;
    } else if (rc == EXIT_OK) {
        for (int i = 0; i < ws.n; i++)
            if (ws.w[i].format == F_JSON) {
                cJSON *o = transcript_json(path, &t, now_s() - t0);
                char *s = cJSON_PrintUnformatted(o);
                if (s)
                    fprintf(ws.w[i].out, "%s\n", s);
                free(s);
                cJSON_Delete(o);
            }
        tsr_transcript_free(&t);
    }
    if (isatty(2) && p.progress)
        fputs("\r\033[K", stderr);
    for (int i = 0; i < ws.n; i++) {
        if (!out_dir) {
            if ((fflush(stdout) != 0 || ferror(stdout)) && rc == EXIT_OK) {
                fprintf(stderr, "tessera transcribe: cannot write to standard output: %s\n",
                        strerror(errno));
                rc = EXIT_RUNTIME;
            }
            continue;
        }
        FILE *f = ws.w[i].out;
        /* a write that failed on the way (ferror) leaves the file incomplete */
        int bad = fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0;
        bad |= fclose(f) != 0;
        if (rc == EXIT_OK && !bad && rename(tmp[i], dst[i]) == 0) {
            if (verbose)
                fprintf(stderr, "tessera transcribe: wrote %s\n", dst[i]);
            continue;
        }
        if (rc == EXIT_OK)
            fprintf(stderr, "tessera transcribe: %s: cannot write: %s\n", dst[i],
                    strerror(errno));
        unlink(tmp[i]);
        rc = EXIT_RUNTIME;
    }
    if (verbose) {
        tsr_launch_counts step;
        tsr_session_counters(sess, NULL, &step);
        fprintf(stderr, "tessera transcribe: per decoder step: %llu kernels, %llu GEMM "
                "calls, %llu host waits, %llu buffers created\n",
                (unsigned long long)step.launches, (unsigned long long)step.gemms,
                (unsigned long long)step.syncs, (unsigned long long)step.buffers);
    }
    return rc;
}

/* "srt", "srt,vtt" or "all" into a set of formats; 0 when bad. */
static int parse_formats(const char *s)
{
    if (strcmp(s, "all") == 0)
        return 31;
    int set = 0;
    while (*s) {
        size_t k = strcspn(s, ",");
        int found = -1;
        for (int i = 0; i < 5; i++)
            if (strlen(format_names[i]) == k && strncmp(s, format_names[i], k) == 0)
                found = i;
        if (found < 0)
            return 0;
        set |= 1 << found;
        s += k + (s[k] == ',');
    }
    return set;
}

int cmd_transcribe(int argc, char **argv)
{
    const char *model = NULL, *device = NULL, *language = NULL, *task = NULL, *format_s = NULL;
    const char *out_dir = NULL, *prompt = NULL;
    num_opts no = {0};
    int json = 0, verbose = 0, no_prev = 0, no_ts = 0, vad = 0;
    cli_opt opts[] = {{"model", 1, &model, NULL},
                      {"device", 1, &device, NULL}, {"dtype", 1, &cli_dtype, NULL},
                      {"format", 1, &format_s, NULL},
                      {"output-dir", 1, &out_dir, NULL},
                      {"language", 1, &language, NULL},
                      {"task", 1, &task, NULL},
                      {"beam", 1, &no.beam, NULL},
                      {"best-of", 1, &no.best_of, NULL},
                      {"patience", 1, &no.patience, NULL},
                      {"length-penalty", 1, &no.lp, NULL},
                      {"temperature", 1, &no.temps, NULL},
                      {"compression-ratio-threshold", 1, &no.crt, NULL},
                      {"log-prob-threshold", 1, &no.lpt, NULL},
                      {"no-speech-threshold", 1, &no.nst, NULL},
                      {"max-initial-timestamp", 1, &no.mit, NULL},
                      {"seed", 1, &no.seed, NULL},
                      {"prompt", 1, &prompt, NULL},
                      {"json", 0, NULL, &json},
                      {"verbose", 0, NULL, &verbose},
                      {"no-previous", 0, NULL, &no_prev},
                      {"no-timestamps", 0, NULL, &no_ts},
                      {"vad", 0, NULL, &vad}};
    const char **in = NULL;
    int n = 0;
    int rc = cli_parse(argc, argv, opts, sizeof opts / sizeof opts[0], &in, &n);
    if (rc < 0) {
        fputs(transcribe_help, stdout);
        free(in);
        return EXIT_OK;
    }
    tsr_transcribe_params p = tsr_transcribe_default_params();
    int formats = 1 << (json ? F_JSON : F_TXT);
    if (rc == EXIT_OK && format_s) {
        formats = parse_formats(format_s);
        if (!formats || (json && formats != 1 << F_JSON))
            rc = cli_usage_error("transcribe", "--format takes txt, json, srt, vtt, tsv, a list "
                                 "of them (srt,vtt) or all%s", json ? " (json with --json)" : "");
    }
    int n_formats = 0;
    for (int f = 0; f < 5; f++)
        n_formats += (formats >> f) & 1;
    if (rc == EXIT_OK && n_formats > 1 && !out_dir)
        rc = cli_usage_error("transcribe", "several formats: give --output-dir DIR");
    if (rc == EXIT_OK && !apply_numbers(&no, &p))
        rc = EXIT_USAGE;
    if (rc == EXIT_OK && task && strcmp(task, "transcribe") != 0 && strcmp(task, "translate") != 0)
        rc = cli_usage_error("transcribe", "--task must be transcribe or translate");
    if (rc == EXIT_OK && !model)
        rc = cli_usage_error("transcribe", "--model DIR is required");
    else if (rc == EXIT_OK && n == 0)
        rc = cli_usage_error("transcribe", "no audio files given");
    int stdin_uses = 0;
    for (int i = 0; i < n; i++)
        stdin_uses += strcmp(in[i], "-") == 0;
    if (rc == EXIT_OK && stdin_uses > 1)
        rc = cli_usage_error("transcribe", "standard input (-) can be read only once");
    if (rc == EXIT_OK && n > 1 && !out_dir && !(formats & ((1 << F_TXT) | (1 << F_JSON))))
        rc = cli_usage_error("transcribe", "several inputs in %s: give --output-dir DIR",
                             format_s ? format_s : "this format");
    struct stat sb;
    if (rc == EXIT_OK && out_dir && (stat(out_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)))
        rc = cli_usage_error("transcribe", "--output-dir %s is not a directory", out_dir);
    /* two inputs must not write the same output file (a.wav and a.mp3) */
    for (int i = 0; rc == EXIT_OK && out_dir && i < n; i++)
        for (int j = 0; j < i && rc == EXIT_OK; j++) {
            char a[4600], b[4600];
            output_path(out_dir, in[i], "x", a, sizeof a);
            output_path(out_dir, in[j], "x", b, sizeof b);
            if (strcmp(a, b) == 0)
                rc = cli_usage_error("transcribe", "%s and %s would both be written as %.*s.*: "
                                     "rename one, or use separate --output-dir runs", in[j],
                                     in[i], (int)strlen(a) - 2, a);
        }
    file_mask = umask(0);
    umask(file_mask);
    char mdir[4096];
    if (rc == EXIT_OK)
        rc = cli_model_dir("transcribe", model, verbose, mdir, sizeof mdir);
    tsr_error err = {0};
    const char *kind = rc == EXIT_OK ? tsr_model_kind(mdir, &err) : NULL;
    if (rc == EXIT_OK && !kind) {
        cli_error("transcribe", &err);
        rc = EXIT_RUNTIME;
    } else if (rc == EXIT_OK && strcmp(kind, "whisper") != 0) {
        rc = cli_usage_error("transcribe", "%s is a %s model, not a Whisper model", mdir, kind);
    }
    if (rc != EXIT_OK) {
        free(in);
        return rc;
    }
    if (language && strcmp(language, "auto") != 0)
        p.language = language;
    p.task = task;
    p.initial_prompt = prompt;
    p.condition_on_previous_text = !no_prev;
    p.without_timestamps = no_ts;
    p.vad = vad;
    p.progress = progress;
    tsr_ctx *ctx = NULL;
    tsr_model *w = NULL;
    tsr_session *sess = NULL;
    rc = cli_load("transcribe", mdir, device, verbose, &ctx, &w, &sess);
    if (rc == EXIT_OK && p.language && strcmp(p.language, "en") != 0 &&
        !tsr_model_whisper_multilingual(w)) {
        fprintf(stderr, "tessera transcribe: %s is an English-only model: it cannot transcribe "
                "language '%s' (use a multilingual model, or --language en)\n", mdir,
                p.language);
        rc = EXIT_USAGE;
    }
    int failed = 0;
    for (int i = 0; i < n && rc == EXIT_OK; i++)
        failed |= transcribe_one(sess, in[i], p, formats, out_dir, n > 1, verbose) != EXIT_OK;
    tsr_session_free(sess);
    tsr_model_free(w);
    tsr_ctx_free(ctx);
    free(in);
    return rc != EXIT_OK ? rc : failed ? EXIT_RUNTIME : EXIT_OK;
}
