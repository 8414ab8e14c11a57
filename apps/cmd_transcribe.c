/* tessera transcribe: speech to text with Whisper models. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static const char *transcribe_help =
    "usage: tessera transcribe --model DIR [--beam N] [--json] [--device D] AUDIO...\n"
    "\n"
    "Transcribes speech with a Whisper model: a faster-whisper (CTranslate2) directory\n"
    "with model.bin, or a Hugging Face Whisper directory with model.safetensors.\n"
    "AUDIO is any file FFmpeg reads: WAV, FLAC, MP3, Ogg/Opus, M4A/AAC, or a video's\n"
    "audio track. Audio longer than 30 s is transcribed in consecutive windows, each\n"
    "prompted with the previous window's text. Timestamps are off.\n"
    "\n"
    "  --beam N          beam search with N beams (default 1: greedy)\n"
    "  --language L      language of multilingual models (default en)\n"
    "  --no-previous     do not prompt a window with the previous window's text\n"
    "  --json            one JSON object per file: text, tokens, avg_logprob, segments\n"
    "  --device D        OpenCL device index or name substring\n"
    "  --verbose         log device and kernel cache use on stderr\n"
    "\n"
    "Prints one line of text per file (prefixed with the file name when there are\n"
    "several). Exit codes: 0 ok, 1 runtime error (for example an unreadable audio\n"
    "file; the other files are still transcribed), 2 usage error.\n";

static void progress(void *user, double done, double total)
{
    (void)user;
    if (total > 60 && isatty(2))
        cli_progress("transcribe", (int)done, (int)total);
}

static void print_json(const char *path, const tsr_transcript *t, double seconds)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "file", path);
    cJSON_AddStringToObject(o, "text", t->text);
    cJSON *toks = cJSON_AddArrayToObject(o, "tokens");
    for (int i = 0; i < t->n_tokens; i++)
        cJSON_AddItemToArray(toks, cJSON_CreateNumber(t->tokens[i]));
    cJSON_AddNumberToObject(o, "avg_logprob", t->avg_logprob);
    cJSON_AddNumberToObject(o, "duration", t->duration);
    cJSON_AddNumberToObject(o, "seconds", seconds);
    cJSON *segs = cJSON_AddArrayToObject(o, "segments");
    for (int i = 0; i < t->n_segments; i++) {
        const tsr_segment *s = &t->segments[i];
        cJSON *so = cJSON_CreateObject();
        cJSON_AddNumberToObject(so, "start", s->start);
        cJSON_AddNumberToObject(so, "end", s->end);
        cJSON_AddStringToObject(so, "text", s->text ? s->text : "");
        cJSON_AddNumberToObject(so, "avg_logprob", s->avg_logprob);
        cJSON_AddNumberToObject(so, "no_speech_prob", s->no_speech_prob);
        cJSON_AddBoolToObject(so, "skipped", s->skipped);
        cJSON_AddItemToArray(segs, so);
    }
    char *str = cJSON_PrintUnformatted(o);
    if (str)
        puts(str);
    free(str);
    cJSON_Delete(o);
}

int cmd_transcribe(int argc, char **argv)
{
    const char *model = NULL, *device = NULL, *beam_s = NULL, *language = NULL;
    int json = 0, verbose = 0, no_prev = 0;
    cli_opt opts[] = {{"model", 1, &model, NULL},       {"device", 1, &device, NULL},
                      {"beam", 1, &beam_s, NULL},       {"language", 1, &language, NULL},
                      {"json", 0, NULL, &json},         {"verbose", 0, NULL, &verbose},
                      {"no-previous", 0, NULL, &no_prev}};
    const char **in = NULL;
    int n = 0;
    int rc = cli_parse(argc, argv, opts, sizeof opts / sizeof opts[0], &in, &n);
    if (rc < 0) {
        fputs(transcribe_help, stdout);
        free(in);
        return EXIT_OK;
    }
    tsr_transcribe_params p = tsr_transcribe_default_params();
    char *end = NULL;
    if (rc == EXIT_OK && beam_s) {
        long b = strtol(beam_s, &end, 10);
        if (*beam_s == 0 || *end || b < 1 || b > 16)
            rc = cli_usage_error("transcribe", "--beam must be an integer in 1..16");
        p.beam_size = (int)b;
    }
    if (rc == EXIT_OK && !model)
        rc = cli_usage_error("transcribe", "--model DIR is required");
    else if (rc == EXIT_OK && n == 0)
        rc = cli_usage_error("transcribe", "no audio files given");
    char mdir[4096];
    if (rc == EXIT_OK)
        rc = cli_model_dir("transcribe", model, mdir, sizeof mdir);
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
    if (language)
        p.language = language;
    p.condition_on_previous_text = !no_prev;
    p.progress = progress;
    tsr_ctx *ctx = NULL;
    tsr_model *w = NULL;
    tsr_session *sess = NULL;
    rc = cli_load("transcribe", mdir, device, verbose, &ctx, &w, &sess);
    int failed = 0;
    for (int i = 0; i < n && rc == EXIT_OK; i++) {
        tsr_transcript t;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (tsr_session_transcribe_file(sess, in[i], &p, &t, &err) != TSR_OK) {
            cli_error("transcribe", &err);
            failed = 1;
            continue;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        if (json)
            print_json(in[i], &t, secs);
        else if (n > 1)
            printf("%s: %s\n", in[i], t.text);
        else
            puts(t.text);
        fflush(stdout);
        tsr_transcript_free(&t);
        if (verbose) {
            tsr_launch_counts step;
            tsr_session_counters(sess, NULL, &step);
            fprintf(stderr, "tessera transcribe: per decoder step: %llu kernels, %llu GEMM "
                    "calls, %llu host waits, %llu buffers created\n",
                    (unsigned long long)step.launches, (unsigned long long)step.gemms,
                    (unsigned long long)step.syncs, (unsigned long long)step.buffers);
        }
    }
    tsr_session_free(sess);
    tsr_model_free(w);
    tsr_ctx_free(ctx);
    free(in);
    return rc != EXIT_OK ? rc : failed ? EXIT_RUNTIME : EXIT_OK;
}
