/* The audio module without a device: the streaming reader against the
 * whole-file loader, standard input, refused URLs, empty and corrupt files,
 * the spool (random reads, flat memory on long audio, write errors), the
 * frame-range log-mel against the previous whole-signal code bit for bit, and
 * the energy VAD (faster-whisper's state machine and time mapping case by
 * case, and synthetic signals of known layout). */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ref_logmel.h"
#include "testutil.h"
#include "tsr_audio.h"

#define CLIPS TSR_FIXTURES "/whisper/clips"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifdef UNDER_ASAN
/* ASan keeps freed memory in a quarantine (256 MB by default), which would
 * make resident memory grow with the number of packets decoded. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "quarantine_size_mb=4"; }
#endif

static const char *clip_names[] = {"00.wav", "01.mp3", "02.ogg", "03.wav", "04.mp3", "05.ogg",
                                   "06.wav", "07.mp3", "08.ogg", "09.wav", "10.mp3", "11.ogg",
                                   "12.wav", "13.mp3", "14.ogg", "15.wav", "16.mp3", "17.ogg",
                                   "18.wav", "19.mp3", "20.ogg", "21.wav", "22.flac", "23.m4a",
                                   "24.mkv"};
#define N_CLIPS (sizeof clip_names / sizeof clip_names[0])

static char tmpdir[64];

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v, p[1] = (unsigned char)(v >> 8), p[2] = (unsigned char)(v >> 16),
    p[3] = (unsigned char)(v >> 24);
}

/* A 44-byte PCM WAV header for n_bytes of s16 data. */
static void wav_header(unsigned char h[44], int rate, int channels, uint32_t n_bytes)
{
    memcpy(h, "RIFF\0\0\0\0WAVEfmt \x10\0\0\0\x01\0\0\0\0\0\0\0\0\0\0\0\0\0\x10\0data\0\0\0\0", 44);
    put_u32(h + 4, 36 + n_bytes);
    h[22] = (unsigned char)channels;
    put_u32(h + 24, (uint32_t)rate);
    put_u32(h + 28, (uint32_t)(rate * channels * 2));
    h[32] = (unsigned char)(channels * 2);
    put_u32(h + 40, n_bytes);
}

/* Every sample of path through the reader, bufsize at a time. */
static float *read_all(const char *path, size_t bufsize, size_t *n, tsr_error *err)
{
    *n = 0;
    tsr_audio_reader *r = NULL;
    if (tsr_audio_open(path, 16000, &r, err) != TSR_OK)
        return NULL;
    size_t cap = 1 << 16, len = 0;
    float *out = malloc(sizeof(float) * cap), *buf = malloc(sizeof(float) * bufsize);
    tsr_status st = TSR_OK;
    for (;;) {
        size_t got = 0;
        st = tsr_audio_read(r, buf, bufsize, &got, err);
        if (st != TSR_OK || got == 0)
            break;
        if (len + got > cap) {
            while (len + got > cap)
                cap *= 2;
            out = realloc(out, sizeof(float) * cap);
        }
        memcpy(out + len, buf, sizeof(float) * got);
        len += got;
        if (got < bufsize) { /* short only at the end: the next read gives 0 */
            size_t again = 1;
            st = tsr_audio_read(r, buf, bufsize, &again, err);
            if (st == TSR_OK && again != 0) {
                printf("FAIL %s: a short read of %zu was followed by %zu more\n", path, got,
                       again);
                st = TSR_ERR_FORMAT;
            }
            break;
        }
    }
    tsr_audio_close(r);
    free(buf);
    if (st != TSR_OK) {
        free(out);
        return NULL;
    }
    *n = len;
    return out;
}

static int same_floats(const float *a, size_t na, const float *b, size_t nb)
{
    return na == nb && (na == 0 || memcmp(a, b, sizeof(float) * na) == 0);
}

/* ---- standard input: a child writes the file into a pipe that becomes fd 0 ---- */

typedef struct {
    pid_t child;
    int saved;
} stdin_feed;

static stdin_feed feed_stdin(const char *path)
{
    stdin_feed f = {-1, -1};
    size_t n = 0;
    unsigned char *data = read_bytes(path, &n);
    int fd[2];
    if (!data || pipe(fd) != 0) {
        free(data);
        return f;
    }
    fflush(stdout);
    f.child = fork();
    if (f.child == 0) {
        close(fd[0]);
        signal(SIGPIPE, SIG_DFL);
        for (size_t off = 0; off < n;) {
            ssize_t k = write(fd[1], data + off, n - off);
            if (k <= 0)
                _exit(1);
            off += (size_t)k;
        }
        _exit(0);
    }
    free(data);
    close(fd[1]);
    f.saved = dup(0);
    dup2(fd[0], 0);
    close(fd[0]);
    return f;
}

static void end_feed(stdin_feed f)
{
    if (f.saved >= 0) {
        dup2(f.saved, 0); /* closes the pipe: a child still writing stops */
        close(f.saved);
    }
    if (f.child > 0)
        waitpid(f.child, NULL, 0);
}

/* ---- decoding ---- */

static void test_reader_vs_loader(void)
{
    const size_t sizes[] = {1, 7, 1000, 4093, 65537};
    for (size_t c = 0; c < N_CLIPS; c++) {
        char p[512];
        snprintf(p, sizeof p, CLIPS "/%s", clip_names[c]);
        float *ref = NULL;
        size_t nref = 0;
        tsr_error err = {0};
        tsr_status st = tsr_audio_load_file(p, 16000, &ref, &nref, &err);
        int ok = st == TSR_OK && nref > 16000;
        size_t bad_size = 0;
        for (size_t k = 0; ok && k < sizeof sizes / sizeof sizes[0]; k++) {
            if (sizes[k] == 1 && c % 5) /* one sample at a time: every fifth clip */
                continue;
            size_t n = 0;
            float *got = read_all(p, sizes[k], &n, &err);
            if (!got || !same_floats(got, n, ref, nref)) {
                ok = 0;
                bad_size = sizes[k];
            }
            free(got);
        }
        check(ok, "%s: the reader (buffers of 1, 7, 1000, 4093, 65537) gives the %zu samples "
                  "of tsr_audio_load_file %s%s",
              clip_names[c], nref, bad_size ? "(differs with one size)" : "", err.msg);
        free(ref);
    }
    /* the container's duration, and the same samples through "file:" */
    tsr_audio_reader *r = NULL;
    tsr_error err = {0};
    float *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    double d = -2;
    if (tsr_audio_open(CLIPS "/00.wav", 16000, &r, &err) == TSR_OK)
        d = tsr_audio_duration(r);
    tsr_audio_close(r);
    tsr_audio_load_file(CLIPS "/00.wav", 16000, &a, &na, &err);
    b = read_all("file:" CLIPS "/00.wav", 4096, &nb, &err);
    check(fabs(d - na / 16000.0) < 0.002, "00.wav: declared duration %.4f s, decoded %.4f s", d,
          na / 16000.0);
    check(b && same_floats(a, na, b, nb), "a file: URL reads the local file (%zu samples) %s",
          nb, err.msg);
    free(a), free(b);
    /* another rate */
    float *s8 = NULL;
    size_t n8 = 0;
    tsr_audio_reader *r8 = NULL;
    tsr_status st = tsr_audio_open(CLIPS "/22.flac", 8000, &r8, &err);
    if (st == TSR_OK) {
        s8 = malloc(sizeof(float) * 200000);
        st = tsr_audio_read(r8, s8, 200000, &n8, &err);
    }
    tsr_audio_close(r8);
    check(st == TSR_OK && labs((long)n8 - 45807 / 2) <= 2, "22.flac at 8 kHz: %zu samples %s",
          n8, err.msg);
    free(s8);
    tsr_status bad = tsr_audio_open(CLIPS "/00.wav", 999, &r8, &err);
    check(bad == TSR_ERR_INVALID_ARG && !r8 && strstr(err.msg, "999"), "rate 999: %s", err.msg);
    bad = tsr_audio_open(CLIPS "/00.wav", 16000, &r8, NULL);
    tsr_audio_close(r8);
    check(bad == TSR_OK, "err may be NULL");
}

static void test_stdin(void)
{
    int same = 0;
    for (size_t i = 0; i < N_CLIPS; i++) {
        char p[512];
        snprintf(p, sizeof p, CLIPS "/%s", clip_names[i]);
        float *ref = NULL;
        size_t nref = 0;
        tsr_error err = {0};
        tsr_audio_load_file(p, 16000, &ref, &nref, &err);
        stdin_feed f = feed_stdin(p);
        size_t n = 0;
        float *got = read_all("-", 3001, &n, &err);
        end_feed(f);
        if (got && nref && same_floats(got, n, ref, nref))
            same++;
        else
            printf("     %s through a pipe: %zu samples, %zu from the file %s\n", clip_names[i], n,
                   nref, err.msg);
        free(got), free(ref);
    }
    check(same == (int)N_CLIPS, "standard input (\"-\") as a pipe gives the file's samples for "
                                "%d of %d clips (MP3 end padding trimmed, M4A and MKV too)",
          same, (int)N_CLIPS);
    /* standard input redirected from a file, standing 1000 bytes in: seeks stay within */
    const char *red[] = {"04.mp3", "23.m4a", "24.mkv"};
    for (int i = 0; i < 3; i++) {
        char p[512], q[128];
        snprintf(p, sizeof p, CLIPS "/%s", red[i]);
        snprintf(q, sizeof q, "%s/prefixed", tmpdir);
        size_t nb = 0, nref = 0, n = 0;
        unsigned char *b = read_bytes(p, &nb), *both = malloc(nb + 1000);
        memset(both, 'x', 1000);
        memcpy(both + 1000, b, nb);
        write_bytes(q, both, nb + 1000);
        float *ref = NULL, *got = NULL;
        tsr_error err = {0};
        tsr_audio_load_file(p, 16000, &ref, &nref, &err);
        int fd = open(q, O_RDONLY), saved = dup(0);
        lseek(fd, 1000, SEEK_SET);
        dup2(fd, 0);
        close(fd);
        got = read_all("-", 4096, &n, &err);
        dup2(saved, 0);
        close(saved);
        check(got && same_floats(got, n, ref, nref),
              "%s after 1000 bytes of a file on standard input: %zu samples, %zu from the file %s",
              red[i], n, nref, err.msg);
        free(got), free(ref), free(b), free(both);
        unlink(q);
    }
    /* the whole-file loader and the spool take "-" too */
    float *ref = NULL, *got = NULL;
    size_t nref = 0, n = 0;
    tsr_error err = {0};
    tsr_audio_load_file(CLIPS "/01.mp3", 16000, &ref, &nref, &err);
    stdin_feed f = feed_stdin(CLIPS "/01.mp3");
    tsr_status st = tsr_audio_load_file("-", 16000, &got, &n, &err);
    end_feed(f);
    check(st == TSR_OK && same_floats(got, n, ref, nref), "tsr_audio_load_file(\"-\") %s",
          err.msg);
    free(got);
    f = feed_stdin(CLIPS "/01.mp3");
    tsr_audio_spool *sp = NULL;
    st = tsr_audio_spool_open("-", NULL, NULL, NULL, &sp, &err);
    end_feed(f);
    got = malloc(sizeof(float) * (nref + 1));
    if (st == TSR_OK && tsr_audio_spool_samples(sp) == nref)
        st = tsr_audio_spool_read(sp, 0, nref, got, &err);
    check(st == TSR_OK && tsr_audio_spool_samples(sp) == nref && same_floats(got, nref, ref, nref),
          "a spool of standard input: %zu samples %s", tsr_audio_spool_samples(sp), err.msg);
    tsr_audio_spool_free(sp);
    free(got), free(ref);
    /* not audio on standard input */
    f = feed_stdin(TSR_FIXTURES "/images/chelsea.jpg");
    tsr_audio_reader *r = NULL;
    st = tsr_audio_open("-", 16000, &r, &err);
    tsr_audio_close(r);
    end_feed(f);
    check(st != TSR_OK && strstr(err.msg, "standard input"), "an image on standard input: %s",
          err.msg);
}

static void test_urls(void)
{
    int srv = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (srv < 0 || bind(srv, (struct sockaddr *)&a, sizeof a) != 0 || listen(srv, 16) != 0 ||
        getsockname(srv, (struct sockaddr *)&a, &al) != 0) {
        printf("skipped: URL refusal (no loopback socket: %s)\n", strerror(errno));
        if (srv >= 0)
            close(srv);
        return;
    }
    fcntl(srv, F_SETFL, O_NONBLOCK);
    int port = ntohs(a.sin_port);
    char urls[12][512];
    int nu = 0;
    snprintf(urls[nu++], 512, "http://127.0.0.1:%d/a.wav", port);
    snprintf(urls[nu++], 512, "https://127.0.0.1:%d/a.wav", port);
    snprintf(urls[nu++], 512, "ftp://127.0.0.1:%d/a.wav", port);
    snprintf(urls[nu++], 512, "tcp://127.0.0.1:%d", port);
    snprintf(urls[nu++], 512, "rtmp://127.0.0.1:%d/live/a", port);
    snprintf(urls[nu++], 512, "hls+http://127.0.0.1:%d/a.m3u8", port);
    snprintf(urls[nu++], 512, "concat:%s|%s", CLIPS "/00.wav", CLIPS "/03.wav");
    snprintf(urls[nu++], 512, "subfile,,start,0,end,0,,:%s", CLIPS "/00.wav");
    snprintf(urls[nu++], 512, "pipe:0");
    snprintf(urls[nu++], 512, "data:audio/wav;base64,UklGRiQAAABXQVZF");
    snprintf(urls[nu++], 512, "cache:http://127.0.0.1:%d/a.wav", port);
    for (int i = 0; i < nu; i++) {
        tsr_audio_reader *r = NULL;
        tsr_error err = {0};
        double t0 = now();
        tsr_status st = tsr_audio_open(urls[i], 16000, &r, &err);
        double dt = now() - t0;
        tsr_audio_close(r);
        check(st == TSR_ERR_INVALID_ARG && !r && strstr(err.msg, urls[i]) &&
                  strstr(err.msg, "local files") && dt < 1.0,
              "refused in %.1f ms: %s", dt * 1e3, err.msg);
    }
    /* the loader and the spool refuse through the reader */
    char u[512];
    snprintf(u, sizeof u, "http://127.0.0.1:%d/b.wav", port);
    float *pcm = NULL;
    size_t n = 0;
    tsr_error err = {0};
    tsr_status st = tsr_audio_load_file(u, 16000, &pcm, &n, &err);
    check(st != TSR_OK && strstr(err.msg, u), "tsr_audio_load_file refuses it: %s", err.msg);
    tsr_audio_spool *sp = NULL;
    st = tsr_audio_spool_open(u, NULL, NULL, NULL, &sp, &err);
    check(st != TSR_OK && !sp && strstr(err.msg, u), "the spool refuses it: %s", err.msg);
    /* a local playlist may not reach the network either (protocol_whitelist) */
    char m3u[128], body[512];
    snprintf(m3u, sizeof m3u, "%s/list.m3u8", tmpdir);
    snprintf(body, sizeof body,
             "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:10.0,\n"
             "http://127.0.0.1:%d/seg0.ts\n#EXTINF:10.0,\nhttp://127.0.0.1:%d/seg1.ts\n"
             "#EXT-X-ENDLIST\n",
             port, port);
    write_bytes(m3u, body, strlen(body));
    double t0 = now();
    st = tsr_audio_load_file(m3u, 16000, &pcm, &n, &err);
    double dt = now() - t0;
    check(st != TSR_OK && strstr(err.msg, m3u) && dt < 2.0,
          "a local HLS playlist of http:// segments: %s (%.0f ms)", err.msg, dt * 1e3);
    free(pcm);
    unlink(m3u);
    /* a local name with a colon is a file */
    char cwd[4096], name[] = "take1:final.wav";
    size_t nref = 0;
    float *ref = NULL, *got = NULL;
    tsr_audio_load_file(CLIPS "/00.wav", 16000, &ref, &nref, &err);
    err = (tsr_error){0};
    if (getcwd(cwd, sizeof cwd) && chdir(tmpdir) == 0) {
        size_t nb = 0;
        unsigned char *b = read_bytes(CLIPS "/00.wav", &nb);
        write_bytes(name, b, nb);
        free(b);
        got = read_all(name, 4096, &n, &err);
        unlink(name);
        if (chdir(cwd) != 0)
            printf("cannot return to %s\n", cwd);
    }
    check(got && same_floats(got, n, ref, nref), "a local file named %s reads as a file %s", name,
          err.msg);
    free(got), free(ref);
    int c = accept(srv, NULL, NULL);
    check(c < 0 && (errno == EAGAIN || errno == EWOULDBLOCK),
          "nobody connected to the listening socket on port %d", port);
    if (c >= 0)
        close(c);
    close(srv);
}

static void test_empty_and_corrupt(void)
{
    unsigned char h[44];
    char p[256];
    /* a valid header and no samples: the end, not an error */
    const int rates[][2] = {{16000, 1}, {44100, 2}, {8000, 1}};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/empty%d.wav", tmpdir, i);
        wav_header(h, rates[i][0], rates[i][1], 0);
        write_bytes(p, h, 44);
        tsr_error err = {0};
        tsr_audio_reader *r = NULL;
        float buf[64];
        size_t got = 99;
        tsr_status st = tsr_audio_open(p, 16000, &r, &err);
        if (st == TSR_OK)
            st = tsr_audio_read(r, buf, 64, &got, &err);
        size_t again = 99;
        tsr_status st2 = st == TSR_OK ? tsr_audio_read(r, buf, 64, &again, &err) : st;
        tsr_audio_close(r);
        check(st == TSR_OK && st2 == TSR_OK && got == 0 && again == 0,
              "a WAV (%d Hz, %d channels) with an empty data chunk: %zu samples, no error %s",
              rates[i][0], rates[i][1], got, err.msg);
        tsr_audio_spool *sp = NULL;
        st = tsr_audio_spool_open(p, tmpdir, NULL, NULL, &sp, &err);
        float one;
        tsr_status rd = sp ? tsr_audio_spool_read(sp, 0, 1, &one, NULL) : TSR_OK;
        check(st == TSR_OK && tsr_audio_spool_samples(sp) == 0 && rd == TSR_ERR_INVALID_ARG &&
                  (sp ? tsr_audio_spool_read(sp, 0, 0, &one, NULL) : 1) == TSR_OK,
              "  its spool holds 0 samples %s", err.msg);
        tsr_audio_spool_free(sp);
        float *pcm = NULL;
        size_t n = 0;
        st = tsr_audio_load_file(p, 16000, &pcm, &n, &err);
        check(st == TSR_ERR_FORMAT && !pcm && strstr(err.msg, "no decodable audio") &&
                  strstr(err.msg, p),
              "  tsr_audio_load_file, which promises samples, says: %s", err.msg);
        unlink(p);
    }
    /* corrupt, truncated, missing, not audio: errors that name the file */
    size_t nmp3 = 0, nwav = 0;
    unsigned char *mp3 = read_bytes(CLIPS "/01.mp3", &nmp3);
    unsigned char *wav = read_bytes(CLIPS "/00.wav", &nwav);
    char garbage[] = "this is not audio at all, just some text\n";
    struct {
        const char *name;
        const void *data;
        size_t n;
        const char *want;
    } cases[] = {
        {"zero.wav", "", 0, "not a readable audio"},
        {"garbage.mp3", garbage, sizeof garbage - 1, "not a readable audio"},
        {"header20.wav", wav, 20, "not a readable audio"},
        {"header43.wav", wav, 43, ""},
        {"missing.flac", NULL, 0, "cannot open"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", tmpdir, cases[i].name);
        if (cases[i].data)
            write_bytes(p, cases[i].data, cases[i].n);
        tsr_error err = {0};
        size_t n = 0;
        float *got = read_all(p, 4096, &n, &err);
        check(!got && strstr(err.msg, p) && strstr(err.msg, cases[i].want), "%s: %s",
              cases[i].name, err.msg);
        free(got);
        unlink(p);
    }
    /* a WAV of MPEG audio whose every packet is garbage: a valid header, nothing decodes */
    snprintf(p, sizeof p, "%s/garbage-mp3.wav", tmpdir);
    unsigned char *bad = malloc(44 + 8000);
    wav_header(bad, 16000, 1, 8000);
    bad[20] = 0x55; /* WAVE_FORMAT_MPEGLAYER3 */
    unsigned s = 7;
    for (size_t i = 44; i < 44 + 8000; i++) {
        s = s * 1103515245u + 12345u;
        bad[i] = (unsigned char)(s >> 16);
    }
    write_bytes(p, bad, 44 + 8000);
    tsr_error err = {0};
    size_t n = 0;
    float *got = read_all(p, 4096, &n, &err);
    check(!got && strstr(err.msg, p) && strstr(err.msg, "the stream is corrupt"),
          "garbage-mp3.wav (every packet corrupt): %s", err.msg);
    free(got);
    unlink(p);
    /* truncated mid-stream: what decoded is kept, as PyAV keeps it */
    err = (tsr_error){0};
    snprintf(p, sizeof p, "%s/half.mp3", tmpdir);
    write_bytes(p, mp3, nmp3 / 2);
    got = read_all(p, 4096, &n, &err);
    check(got && n > 16000 && n < 74876, "half.mp3: decodes its first half (%zu samples) %s", n,
          err.msg);
    free(got);
    unlink(p);
    got = read_all(TSR_FIXTURES "/images/chelsea.jpg", 4096, &n, &err);
    check(!got && strstr(err.msg, "no audio stream") && strstr(err.msg, "chelsea.jpg"),
          "an image: %s", err.msg);
    free(mp3), free(wav), free(bad);
}

/* ---- the spool ---- */

static void test_spool_reads(void)
{
    unsigned s = 12345;
    for (size_t c = 0; c < N_CLIPS; c += 4) {
        char p[512];
        snprintf(p, sizeof p, CLIPS "/%s", clip_names[c]);
        float *ref = NULL;
        size_t nref = 0;
        tsr_error err = {0};
        tsr_audio_load_file(p, 16000, &ref, &nref, &err);
        tsr_audio_spool *sp = NULL;
        tsr_status st = tsr_audio_spool_open(p, tmpdir, NULL, NULL, &sp, &err);
        int ok = st == TSR_OK && tsr_audio_spool_samples(sp) == nref && nref > 0, reads = 0;
        float *buf = malloc(sizeof(float) * (nref + 1));
        for (int k = 0; ok && k < 200; k++, reads++) {
            s = s * 1103515245u + 12345u;
            size_t first = (s >> 8) % nref;
            s = s * 1103515245u + 12345u;
            size_t len = (s >> 8) % (nref - first + 1);
            if (k == 0)
                first = 0, len = nref;
            ok = tsr_audio_spool_read(sp, first, len, buf, &err) == TSR_OK &&
                 (len == 0 || memcmp(buf, ref + first, sizeof(float) * len) == 0);
        }
        /* the sample function form, and ranges past the end */
        ok = ok && tsr_audio_spool_read_cb(sp, nref - 3, 3, buf, &err) == TSR_OK &&
             memcmp(buf, ref + nref - 3, sizeof(float) * 3) == 0;
        tsr_error e2 = {0};
        int past = sp && tsr_audio_spool_read(sp, nref - 2, 3, buf, &e2) == TSR_ERR_INVALID_ARG &&
                   tsr_audio_spool_read(sp, nref + 1, 0, buf, NULL) == TSR_ERR_INVALID_ARG &&
                   tsr_audio_spool_read(sp, (size_t)-1, 2, buf, NULL) == TSR_ERR_INVALID_ARG;
        check(ok && past, "%s: a spool of %zu samples, %d random reads equal the decoded "
                          "samples; past the end: %s %s",
              clip_names[c], tsr_audio_spool_samples(sp), reads, e2.msg, err.msg);
        tsr_audio_spool_free(sp);
        free(buf), free(ref);
    }
    /* the temporary file has no name while the spool lives */
    tsr_error err = {0};
    tsr_audio_spool *sp = NULL;
    tsr_audio_spool_open(CLIPS "/00.wav", tmpdir, NULL, NULL, &sp, &err);
    int entries = 0;
    DIR *d = opendir(tmpdir);
    for (struct dirent *e; d && (e = readdir(d));)
        entries += e->d_name[0] != '.';
    if (d)
        closedir(d);
    check(sp && entries == 0, "the spool's file in %s has no name (%d entries there)", tmpdir,
          entries);
    tsr_audio_spool_free(sp);
    sp = NULL;
    tsr_status st = tsr_audio_spool_open(CLIPS "/00.wav", "/nonexistent-tsr-dir", NULL, NULL, &sp,
                                         &err);
    check(st == TSR_ERR_IO && !sp && strstr(err.msg, "/nonexistent-tsr-dir"),
          "a missing spool directory: %s", err.msg);
    st = tsr_audio_spool_open(CLIPS "/missing.wav", NULL, NULL, NULL, &sp, NULL);
    check(st == TSR_ERR_IO && !sp, "a missing file with err = NULL: status %d", (int)st);
    /* a full disk, as a file size limit: the child reports what it got */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        struct rlimit rl = {65536, 65536};
        signal(SIGXFSZ, SIG_IGN);
        setrlimit(RLIMIT_FSIZE, &rl);
        tsr_error e = {0};
        tsr_audio_spool *q = NULL;
        tsr_status rc = tsr_audio_spool_open(CLIPS "/00.wav", tmpdir, NULL, NULL, &q, &e);
        printf("     the child's spool of 110 KB under a 64 KB file limit: %s\n", e.msg);
        fflush(stdout);
        _exit(rc == TSR_ERR_IO && !q && strstr(e.msg, "cannot write the audio spool") &&
                      strstr(e.msg, tmpdir)
                  ? 0
                  : 1);
    }
    int status = -1;
    waitpid(pid, &status, 0);
    check(WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "a write error (file too large) is an error naming the spool's directory");
}

static long status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t kl = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, key, kl) == 0)
            v = strtol(line + kl, NULL, 10);
    if (f)
        fclose(f);
    return v;
}

/* Resets VmHWM to the current resident size (Linux >= 4.0). */
static int reset_peak(void)
{
    int fd = open("/proc/self/clear_refs", O_WRONLY);
    int ok = fd >= 0 && write(fd, "5", 1) == 1;
    if (fd >= 0)
        close(fd);
    return ok;
}

static int16_t long_sample(size_t i) { return (int16_t)((uint32_t)(i * 2654435761u) >> 16); }

/* A WAV of the given minutes at 16 kHz, written a block at a time. */
static void write_long_wav(const char *path, int minutes)
{
    size_t n = (size_t)minutes * 60 * 16000;
    unsigned char h[44];
    wav_header(h, 16000, 1, (uint32_t)(n * 2));
    FILE *f = fopen(path, "wb");
    if (!f)
        return;
    fwrite(h, 1, 44, f);
    int16_t block[8192];
    for (size_t i = 0; i < n; i += 8192) {
        size_t k = n - i < 8192 ? n - i : 8192;
        for (size_t j = 0; j < k; j++)
            block[j] = long_sample(i + j);
        fwrite(block, 2, k, f);
    }
    fclose(f);
}

typedef struct {
    int calls;
    double last_done, last_total;
} progress_log;

static void on_progress(void *user, double done, double total)
{
    progress_log *l = user;
    l->calls++;
    l->last_done = done;
    l->last_total = total;
}

static void test_spool_memory(void)
{
    const int minutes[2] = {10, 40};
    long growth[2] = {0, 0};
    int resettable = reset_peak(), ok_reads = 1;
    double secs[2] = {0, 0};
    progress_log pl[2] = {{0}, {0}};
    tsr_audio_spool *warm = NULL; /* FFmpeg's one-time set-up is not the spool's */
    tsr_audio_spool_open(CLIPS "/01.mp3", tmpdir, NULL, NULL, &warm, NULL);
    tsr_audio_spool_free(warm);
    for (int k = 0; k < 2; k++) {
        char p[128];
        snprintf(p, sizeof p, "%s/long%d.wav", tmpdir, minutes[k]);
        write_long_wav(p, minutes[k]);
        reset_peak();
        long base = status_kb(resettable ? "VmRSS:" : "VmHWM:");
        tsr_error err = {0};
        tsr_audio_spool *sp = NULL;
        double t0 = now();
        tsr_status st = tsr_audio_spool_open(p, tmpdir, on_progress, &pl[k], &sp, &err);
        secs[k] = now() - t0;
        growth[k] = status_kb("VmHWM:") - base;
        size_t n = (size_t)minutes[k] * 60 * 16000;
        ok_reads &= st == TSR_OK && tsr_audio_spool_samples(sp) == n;
        float buf[1000];
        unsigned s = 99;
        for (int r = 0; ok_reads && r < 100; r++) {
            s = s * 1103515245u + 12345u;
            size_t first = (size_t)s % (n - 1000);
            ok_reads = tsr_audio_spool_read(sp, first, 1000, buf, &err) == TSR_OK;
            for (int j = 0; ok_reads && j < 1000; j++)
                ok_reads = buf[j] == (float)long_sample(first + (size_t)j) / 32768.0f;
        }
        if (!ok_reads)
            printf("     %d minutes: %s\n", minutes[k], err.msg);
        tsr_audio_spool_free(sp);
        unlink(p);
    }
    check(ok_reads, "spools of 10 and 40 minutes (16 kHz WAV written here) hold every sample; "
                    "random reads equal what was written");
    printf("     spool: 10 min in %.2f s, 40 min in %.2f s (%.1f s per hour of audio)\n", secs[0],
           secs[1], secs[1] * 1.5);
    check(growth[1] < 16 * 1024 && growth[1] <= growth[0] + 2048,
          "spool memory is flat: the peak grew by %ld KB for 10 min and %ld KB for 40 min (a "
          "copy in memory would be %ld KB)%s",
          growth[0], growth[1], 40L * 60 * 16000 * 2 / 1024,
          resettable ? "" : " (VmHWM could not be reset: order-based)");
    check(pl[1].calls >= 230 && pl[1].calls <= 250 && fabs(pl[1].last_done - 2400) < 1e-9 &&
              fabs(pl[1].last_total - 2400) < 0.01,
          "progress: %d calls for 40 minutes, last %.1f of %.1f s", pl[1].calls, pl[1].last_done,
          pl[1].last_total);
}

/* ---- log-mel by frames ---- */

typedef struct {
    const float *x;
    size_t n;
    size_t lo, hi, calls, samples; /* what was read */
    int fail_at;                   /* fail on this call (0: never) */
} counting_src;

static tsr_status counting_read(void *user, size_t first, size_t n, float *out, tsr_error *err)
{
    counting_src *s = user;
    s->calls++;
    if (s->fail_at && (int)s->calls == s->fail_at)
        return tsr_error_set(err, TSR_ERR_IO, "test source: read %zu failed", s->calls);
    if (first > s->n || n > s->n - first)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "test source: [%zu, %zu) of %zu", first,
                             first + n, s->n);
    if (first < s->lo)
        s->lo = first;
    if (first + n > s->hi)
        s->hi = first + n;
    s->samples += n;
    memcpy(out, s->x + first, sizeof(float) * n);
    return TSR_OK;
}

static float *noise(size_t n, unsigned seed, float amp)
{
    float *x = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        /* 16-bit values like decoded audio, with some loud stretches */
        int v = (int)((seed >> 8) & 0xffff) - 32768;
        x[i] = (float)v / 32768.0f * amp * (1.0f + 3.0f * (float)((i / 777) % 3 == 0));
        if (x[i] >= 1.0f)
            x[i] = 32767 / 32768.0f;
        if (x[i] < -1.0f)
            x[i] = -1.0f;
    }
    return x;
}

static void test_logmel_whole(void)
{
    /* tiny signals: every length 1..500 with pad 160 and pad 0 */
    int bad = 0, both_err = 0, tried = 0;
    for (size_t n = 1; n <= 500; n++) {
        float *x = noise(n, (unsigned)n, 0.3f);
        for (int padk = 0; padk < 2; padk++) {
            size_t pad = padk ? 160 : 0;
            float *a = NULL, *b = NULL, mx;
            int ta = 0, tb = 0;
            tsr_status sa = tsr_whisper_logmel(x, n, 80, pad, &a, &ta, NULL);
            tsr_status sb = ref_whisper_logmel(x, n, 80, pad, &b, &tb, NULL, 0, &mx);
            tried++;
            if (sa != sb || ta != tb || (sa == TSR_OK && memcmp(a, b, sizeof(float) * 80 * ta)))
                bad++;
            both_err += sa != TSR_OK && sb != TSR_OK;
            free(a), free(b);
        }
        free(x);
    }
    check(bad == 0, "tsr_whisper_logmel = the previous code, bit for bit, on every length 1..500 "
                    "with pad 0 and 160 (%d runs, %d mismatches; %d refused by both as shorter "
                    "than a frame)",
          tried, bad, both_err);
    /* odd lengths, more mels, the 30 s window of the transformers features */
    const size_t lens[] = {16000 * 3 + 37, 160 * 1000 + 159, 480000, 401, 12345};
    const int mels[] = {80, 128, 80, 1, 512};
    const size_t pads[] = {160, 160, 0, 161, 999};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        float *x = noise(lens[i], 77 + (unsigned)i, i == 2 ? 0.01f : 0.2f);
        float *a = NULL, *b = NULL, mx;
        int ta = 0, tb = 0;
        tsr_error err = {0};
        tsr_status sa = tsr_whisper_logmel(x, lens[i], mels[i], pads[i], &a, &ta, &err);
        tsr_status sb = ref_whisper_logmel(x, lens[i], mels[i], pads[i], &b, &tb, &err, 0, &mx);
        check(sa == TSR_OK && sb == TSR_OK && ta == tb &&
                  memcmp(a, b, sizeof(float) * (size_t)mels[i] * ta) == 0,
              "%zu samples, %d mels, pad %zu: %d frames, bit for bit %s", lens[i], mels[i],
              pads[i], ta, err.msg);
        free(a), free(b), free(x);
    }
    /* absurd samples (a sample function may give anything): power overflows to
     * inf, where a skipped zero weight would have made 0 * inf = NaN */
    float *w = noise(4000, 9, 0.2f);
    w[1000] = 1e20f, w[1001] = -3e19f, w[2500] = NAN, w[3000] = INFINITY;
    float *a = NULL, *b = NULL, mx;
    int ta = 0, tb = 0;
    tsr_status sa = tsr_whisper_logmel(w, 4000, 80, 160, &a, &ta, NULL);
    tsr_status sb = ref_whisper_logmel(w, 4000, 80, 160, &b, &tb, NULL, 0, &mx);
    check(sa == TSR_OK && sb == TSR_OK && ta == tb && memcmp(a, b, sizeof(float) * 80 * ta) == 0,
          "samples of 1e20, NaN and infinity: the same bits as the previous code");
    free(a), free(b), free(w);
    /* the decoded clips, as faster-whisper feeds them */
    int same = 0;
    for (size_t c = 0; c < N_CLIPS; c++) {
        char p[512];
        snprintf(p, sizeof p, CLIPS "/%s", clip_names[c]);
        float *x = NULL, *a = NULL, *b = NULL, mx;
        size_t n = 0;
        int ta = 0, tb = 0;
        if (tsr_audio_load_file(p, 16000, &x, &n, NULL) != TSR_OK)
            continue;
        if (tsr_whisper_logmel(x, n, 80, 160, &a, &ta, NULL) == TSR_OK &&
            ref_whisper_logmel(x, n, 80, 160, &b, &tb, NULL, 0, &mx) == TSR_OK && ta == tb &&
            memcmp(a, b, sizeof(float) * 80 * ta) == 0)
            same++;
        free(x), free(a), free(b);
    }
#ifndef TSR_TEST_FFMPEG
    printf("skipped: the log-mel of the decoded clips (built without FFmpeg)\n");
#else
    check(same == (int)N_CLIPS, "the log-mel of %d of %d decoded clips, bit for bit", same,
          (int)N_CLIPS);
#endif
}

static void test_logmel_frames(void)
{
    tsr_logmel *lm = NULL;
    tsr_error err = {0};
    tsr_status st = tsr_logmel_new(80, &lm, &err);
    check(st == TSR_OK && lm, "tsr_logmel_new(80) %s", err.msg);
    const size_t lens[] = {16000 * 9 + 123, 1, 159, 160, 199, 200, 201, 399, 400, 401, 1000, 48000};
    const size_t pads[] = {160, 160, 1, 0, 160, 0, 160, 1, 0, 160, 7, 480000 - 48000};
    unsigned s = 4242;
    int windows = 0, bad = 0, bad_max = 0, bad_span = 0;
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        size_t n = lens[li], pad = pads[li], T = (n + pad) / 160;
        float *x = noise(n, 500 + (unsigned)li, 0.25f), *ref = NULL, gref = 0;
        int tr = 0;
        if (ref_whisper_logmel(x, n, 80, pad, &ref, &tr, NULL, 1, &gref) != TSR_OK ||
            (size_t)tr != T) {
            check(0, "the reference refused %zu samples + %zu", n, pad);
            free(x);
            continue;
        }
        /* windows: whole, first, last, single frames, across 256-frame blocks, random */
        size_t wins[40][2];
        int nw = 0;
        wins[nw][0] = 0, wins[nw++][1] = T;
        wins[nw][0] = 0, wins[nw++][1] = 1;
        wins[nw][0] = T - 1, wins[nw++][1] = 1;
        if (T > 3) {
            wins[nw][0] = 1, wins[nw++][1] = T - 2;
            wins[nw][0] = T - 3, wins[nw++][1] = 3;
        }
        if (T > 600) {
            wins[nw][0] = 250, wins[nw++][1] = 300;
            wins[nw][0] = 255, wins[nw++][1] = 258;
            wins[nw][0] = T - 513, wins[nw++][1] = 513;
        }
        while (nw < 30) {
            s = s * 1103515245u + 12345u;
            size_t f0 = (s >> 8) % T;
            s = s * 1103515245u + 12345u;
            size_t nf = 1 + (s >> 8) % (T - f0);
            wins[nw][0] = f0, wins[nw++][1] = nf;
        }
        for (int w = 0; w < nw; w++) {
            size_t f0 = wins[w][0], nf = wins[w][1], ld = nf + (size_t)(w % 3);
            float *out = malloc(sizeof(float) * 80 * ld), fmx = 0, want = -INFINITY;
            counting_src src = {x, n, (size_t)-1, 0, 0, 0, 0};
            st = tsr_logmel_frames(lm, counting_read, &src, n, pad, f0, nf, out, ld, &fmx, &err);
            int same = st == TSR_OK;
            for (int m = 0; same && m < 80; m++) {
                same = memcmp(out + (size_t)m * ld, ref + (size_t)m * T + f0,
                              sizeof(float) * nf) == 0;
                for (size_t j = 0; j < nf; j++)
                    want = fmaxf(want, ref[(size_t)m * T + f0 + j]);
            }
            bad += !same;
            bad_max += st == TSR_OK && fmx != want;
            /* a window reads its own stretch: [f0*160 - 200, (f0+nf-1)*160 + 200] and, for
             * frame 0, sample 200 */
            long long lo = (long long)f0 * 160 - 200, hi = (long long)(f0 + nf - 1) * 160 + 201;
            if (src.calls && n > 401 && ((long long)src.lo < (lo < 0 ? 0 : lo) - 40 ||
                                         (long long)src.hi > hi + 1))
                bad_span++;
            windows++;
            free(out);
        }
        /* whole = frames + normalize */
        float *whole = NULL, *byframes = malloc(sizeof(float) * 80 * T), gmax = 0;
        int tw = 0;
        tsr_audio_pcm pcm = {x, n};
        tsr_whisper_logmel(x, n, 80, pad, &whole, &tw, NULL);
        st = tsr_logmel_frames(lm, tsr_audio_pcm_read_cb, &pcm, n, pad, 0, T, byframes, T, &gmax,
                               NULL);
        tsr_logmel_normalize(byframes, 80 * T, gmax);
        if (!whole || st != TSR_OK || memcmp(whole, byframes, sizeof(float) * 80 * T) != 0)
            bad++;
        free(whole), free(byframes), free(ref), free(x);
    }
    check(bad == 0 && bad_max == 0,
          "tsr_logmel_frames = the whole-signal values before the clamp, bit for bit, on %d "
          "windows over %zu signals (odd lengths, 1..401 samples, windows at both ends and "
          "across blocks, ld > nf): %d differ, %d wrong maxima",
          windows, sizeof lens / sizeof lens[0], bad, bad_max);
    check(bad_span == 0, "each window reads only its own stretch of the signal (%d read more)",
          bad_span);
    /* errors: ranges, the leading dimension, a failing source */
    float out[80 * 4], fmx = 0;
    float *x = noise(16000, 3, 0.1f);
    counting_src src = {x, 16000, (size_t)-1, 0, 0, 0, 0};
    tsr_status e1 = tsr_logmel_frames(lm, counting_read, &src, 16000, 160, 100, 2, out, 2, &fmx,
                                      &err);
    tsr_status e2 = tsr_logmel_frames(lm, counting_read, &src, 16000, 160, 0, 4, out, 3, NULL,
                                      NULL);
    tsr_status e3 = tsr_logmel_frames(lm, counting_read, &src, 16000, 160, 5, 0, NULL, 0, &fmx,
                                      NULL);
    check(e1 == TSR_ERR_INVALID_ARG && strstr(err.msg, "101") && e2 == TSR_ERR_INVALID_ARG &&
              e3 == TSR_OK && isinf(fmx) && fmx < 0,
          "frames past the end: %s; ld < nf refused; no frames: -inf", err.msg);
    float *big = malloc(sizeof(float) * 80 * 101);
    src.fail_at = 1;
    st = tsr_logmel_frames(lm, counting_read, &src, 16000, 160, 0, 101, big, 101, &fmx, &err);
    check(st == TSR_ERR_IO && strstr(err.msg, "test source"), "a failing source: %s", err.msg);
    free(big), free(x);
    tsr_logmel *m0 = NULL;
    st = tsr_logmel_new(0, &m0, &err);
    check(st == TSR_ERR_INVALID_ARG && !m0, "tsr_logmel_new(0): %s", err.msg);
    /* an empty signal with padding: all zeros, log10(1e-10) */
    tsr_audio_pcm none = {NULL, 0};
    err = (tsr_error){0};
    st = tsr_logmel_frames(lm, tsr_audio_pcm_read_cb, &none, 0, 160, 0, 1, out, 1, &fmx, &err);
    check(st == TSR_OK && out[0] == -10.0f && out[79] == -10.0f && fmx == -10.0f,
          "0 samples + 160 of padding: one frame of -10 %s", err.msg);
    tsr_logmel_free(lm);
}

static void test_logmel_speed(void)
{
    size_t n = 16000 * 120; /* 2 minutes */
    float *x = noise(n, 11, 0.1f), *a = NULL, *b = NULL, mx;
    int ta = 0, tb = 0;
    double t0 = now();
    tsr_status sa = tsr_whisper_logmel(x, n, 80, 160, &a, &ta, NULL);
    double t1 = now();
    tsr_status sb = ref_whisper_logmel(x, n, 80, 160, &b, &tb, NULL, 0, &mx);
    double t2 = now();
    check(sa == TSR_OK && sb == TSR_OK && ta == tb && memcmp(a, b, sizeof(float) * 80 * ta) == 0,
          "2 minutes of audio: the same bits as the previous code");
    printf("     log-mel (80 mels): %.1f s per hour of audio on this machine, one thread (the "
           "previous code: %.1f s per hour)\n",
           (t1 - t0) * 30, (t2 - t1) * 30);
    free(x), free(a), free(b);
}

/* ---- voice activity detection ---- */

/* faster-whisper's own state machine and time mapping on random probabilities */
static void test_vad_parity(void)
{
    cJSON *j = load_json(TSR_AUDIO_DIR "/vad_cases.json");
    cJSON *cases = cJSON_GetObjectItem(j, "cases"), *alpha = cJSON_GetObjectItem(j, "alphabet");
    const char *letters = cJSON_GetStringValue(cJSON_GetObjectItem(j, "letters"));
    if (!cases || !alpha || !letters) {
        check(0, "cannot read %s", TSR_AUDIO_DIR "/vad_cases.json");
        cJSON_Delete(j);
        return;
    }
    int nc = 0, bad = 0, n_chunks = 0, n_times = 0, bad_times = 0;
    cJSON *c;
    cJSON_ArrayForEach(c, cases)
    {
        size_t total = (size_t)cJSON_GetObjectItem(c, "total")->valuedouble;
        const char *code = cJSON_GetStringValue(cJSON_GetObjectItem(c, "probs"));
        size_t F = strlen(code);
        float *probs = malloc(sizeof(float) * (F + 1));
        for (size_t i = 0; i < F; i++)
            probs[i] = (float)cJSON_GetArrayItem(alpha, (int)(strchr(letters, code[i]) - letters))
                           ->valuedouble;
        tsr_vad_params p = tsr_vad_default_params();
        cJSON *o = cJSON_GetObjectItem(c, "options"), *v;
        if ((v = cJSON_GetObjectItem(o, "threshold")))
            p.threshold = v->valuedouble;
        if ((v = cJSON_GetObjectItem(o, "neg_threshold")))
            p.neg_threshold = v->valuedouble;
        if ((v = cJSON_GetObjectItem(o, "min_speech_duration_ms")))
            p.min_speech_duration_ms = v->valuedouble;
        if ((v = cJSON_GetObjectItem(o, "max_speech_duration_s")))
            p.max_speech_duration_s = v->valuedouble;
        if ((v = cJSON_GetObjectItem(o, "min_silence_duration_ms")))
            p.min_silence_duration_ms = v->valuedouble;
        if ((v = cJSON_GetObjectItem(o, "speech_pad_ms")))
            p.speech_pad_ms = v->valuedouble;
        tsr_vad_chunk *ch = NULL;
        size_t n = 0;
        tsr_error err = {0};
        tsr_status st = tsr_vad_speech(probs, F, total, &p, &ch, &n, &err);
        cJSON *want = cJSON_GetObjectItem(c, "speech");
        int ok = st == TSR_OK && (size_t)cJSON_GetArraySize(want) == n && F == total / 512 + 1;
        size_t off = 0;
        for (size_t i = 0; ok && i < n; i++) {
            cJSON *w = cJSON_GetArrayItem(want, (int)i);
            ok = ch[i].start == (size_t)cJSON_GetArrayItem(w, 0)->valuedouble &&
                 ch[i].end == (size_t)cJSON_GetArrayItem(w, 1)->valuedouble &&
                 ch[i].offset == off;
            off += ch[i].end - ch[i].start;
        }
        if (!ok && bad++ == 0)
            printf("     case %d (%zu samples): %zu chunks, faster-whisper %d; first [%zu, %zu) "
                   "%s\n",
                   nc, total, n, cJSON_GetArraySize(want), n ? ch[0].start : 0,
                   n ? ch[0].end : 0, err.msg);
        cJSON *t;
        cJSON_ArrayForEach(t, cJSON_GetObjectItem(c, "times"))
        {
            double tm = cJSON_GetArrayItem(t, 0)->valuedouble;
            int is_end = cJSON_IsTrue(cJSON_GetArrayItem(t, 1));
            size_t want_idx = (size_t)cJSON_GetArrayItem(t, 2)->valuedouble;
            double want_t = cJSON_GetArrayItem(t, 3)->valuedouble;
            size_t idx = tsr_vad_chunk_index(ch, n, tm, is_end);
            double got = tsr_vad_original_time(ch, n, tm, is_end);
            n_times++;
            if (idx != want_idx || got != want_t) {
                if (bad_times++ == 0)
                    printf("     case %d: t %.17g is_end %d: chunk %zu -> %.17g, faster-whisper "
                           "%zu -> %.17g\n",
                           nc, tm, is_end, idx, got, want_idx, want_t);
            }
        }
        n_chunks += (int)n;
        nc++;
        free(ch), free(probs);
    }
    check(bad == 0 && nc >= 100,
          "get_speech_timestamps: %d cases (%d chunks) equal faster-whisper %s's, %d differ",
          nc, n_chunks, cJSON_GetStringValue(cJSON_GetObjectItem(j, "faster_whisper")), bad);
    check(bad_times == 0 && n_times > 300,
          "SpeechTimestampsMap: %d chunk indices and original times equal faster-whisper's, %d "
          "differ",
          n_times, bad_times);
    cJSON_Delete(j);
}

typedef struct {
    double start, end; /* seconds */
    int kind;          /* 0 tone, 1 noise, 2 syllables, 3 hum */
} burst;

/* total seconds of white noise at noise_db dBFS (RMS; <= -200: digital
 * silence) with bursts at about -20 dBFS */
static float *synth(double seconds, double noise_db, const burst *b, int nb, size_t *n)
{
    *n = (size_t)(seconds * 16000 + 0.5);
    float *x = malloc(sizeof(float) * (*n ? *n : 1));
    unsigned s = 2024;
    double na = noise_db <= -200 ? 0 : pow(10, noise_db / 20) * sqrt(3.0);
    for (size_t i = 0; i < *n; i++) {
        s = s * 1103515245u + 12345u;
        double u = ((double)((s >> 8) & 0xffff) / 32768.0 - 1.0);
        double v = na * u, t = (double)i / 16000;
        for (int k = 0; k < nb; k++) {
            if (t < b[k].start || t >= b[k].end)
                continue;
            if (b[k].kind == 0)
                v += 0.14 * sin(2 * PI_D * 440 * t);
            else if (b[k].kind == 1)
                v += 0.17 * u;
            else if (b[k].kind == 3) /* a 50 Hz hum at -45 dBFS */
                v += 0.0079 * sin(2 * PI_D * 50 * t);
            else if (fmod(t - b[k].start, 0.28) < 0.2) /* 200 ms syllables, 80 ms gaps */
                v += 0.14 * sin(2 * PI_D * 300 * t) * (0.6 + 0.4 * sin(2 * PI_D * 5 * t));
        }
        x[i] = (float)v;
    }
    return x;
}

/* Chunks as expected in seconds, within one frame (32 ms) each. */
static int chunks_match(const tsr_vad_chunk *c, size_t n, const double (*want)[2], size_t nw,
                        double *worst)
{
    *worst = 0;
    if (n != nw)
        return 0;
    for (size_t i = 0; i < n; i++) {
        *worst = fmax(*worst, fabs(c[i].start / 16000.0 - want[i][0]));
        *worst = fmax(*worst, fabs(c[i].end / 16000.0 - want[i][1]));
    }
    return *worst <= 512 / 16000.0 + 1e-9;
}

static void print_chunks(const tsr_vad_chunk *c, size_t n)
{
    printf("     chunks:");
    for (size_t i = 0; i < n; i++)
        printf(" [%.3f, %.3f)", c[i].start / 16000.0, c[i].end / 16000.0);
    printf("%s\n", n ? "" : " none");
}

typedef struct {
    const char *what;
    double seconds, noise_db;
    burst b[8];
    int nb;
    double want[6][2];
    int nw;
    tsr_vad_params p;
} layout;

static void test_vad_layouts(void)
{
    layout cases[12];
    int nc = 0;
    tsr_vad_params d = tsr_vad_default_params();
    /* bursts 1 s apart merge (min_silence 2 s), 3 s apart split; padding 0.4 s */
    cases[nc] = (layout){"tone bursts over noise at -55 dBFS",
                         16, -55, {{1, 3, 0}, {3.5, 5, 0}, {8, 9, 0}, {12.5, 13, 0}},
                         4, {{0.6, 5.4}, {7.6, 9.4}, {12.1, 13.4}}, 3, d};
    nc++;
    cases[nc] = cases[0];
    cases[nc].what = "the same, min_speech_duration_ms 800 (drops the 0.5 s burst)";
    cases[nc].p.min_speech_duration_ms = 800;
    cases[nc].nw = 2;
    nc++;
    cases[nc] = cases[0];
    cases[nc].what = "noise bursts over noise at -70 dBFS, 15 s: speech closer to the end than "
                     "min_silence_duration_ms runs to the end";
    cases[nc].seconds = 15;
    cases[nc].noise_db = -70;
    for (int k = 0; k < 4; k++)
        cases[nc].b[k].kind = 1;
    cases[nc].want[2][1] = 15;
    nc++;
    cases[nc] = (layout){"speech at both ends (and digital silence between)",
                         10, -300, {{0, 2, 0}, {7, 10, 1}}, 2, {{0, 2.4}, {6.6, 10}}, 2, d};
    nc++;
    cases[nc] = (layout){"syllables from start to end", 19.88, -50, {{0, 19.88, 2}}, 1,
                         {{0, 19.88}}, 1, d};
    nc++;
    cases[nc] = (layout){"noise only, -45 dBFS", 12, -45, {{0, 0, 0}}, 0, {{0, 0}}, 0, d};
    nc++;
    cases[nc] = (layout){"noise only, -35 dBFS (5 dB above the floor's cap)", 12, -35,
                         {{0, 0, 0}}, 0, {{0, 0}}, 0, d};
    nc++;
    cases[nc] = (layout){"digital silence", 5, -300, {{0, 0, 0}}, 0, {{0, 0}}, 0, d};
    nc++;
    cases[nc] = (layout){"a steady -45 dBFS hum under two bursts: the hum is the floor",
                         20, -300, {{0, 20, 3}, {5, 7, 0}, {12, 13, 1}}, 3,
                         {{4.6, 7.4}, {11.6, 13.4}}, 2, d};
    nc++;
    cases[nc] = (layout){"a loud steady tone all along: above the floor's cap, all sound",
                         20, -300, {{0, 20, 0}}, 1, {{0, 20}}, 1, d};
    nc++;
    cases[nc] = (layout){
        "min_silence_duration_ms 300: a 0.5 s gap splits, the padding shared at its middle",
        5, -55, {{1, 2, 0}, {2.5, 3.5, 0}}, 2, {{0.6, 2.25}, {2.25, 3.9}}, 2, d};
    cases[nc].p.min_silence_duration_ms = 300;
    int shared = nc++;
    for (int i = 0; i < nc; i++) {
        size_t n = 0;
        float *x = synth(cases[i].seconds, cases[i].noise_db, cases[i].b, cases[i].nb, &n);
        tsr_audio_pcm pcm = {x, n};
        tsr_vad_chunk *c = NULL;
        size_t nch = 0;
        tsr_error err = {0};
        tsr_status st = tsr_vad_detect(tsr_audio_pcm_read_cb, &pcm, n, &cases[i].p, &c, &nch, &err);
        double worst = 0;
        int ok = st == TSR_OK && chunks_match(c, nch, cases[i].want, (size_t)cases[i].nw, &worst);
        if (ok && i == shared) /* the shared padding: the chunks touch */
            ok = c[0].end == c[1].start;
        check(ok, "VAD, %s: %zu chunks as laid out, within %.0f ms (one frame is 32 ms) %s",
              cases[i].what, nch, worst * 1e3, err.msg);
        print_chunks(c, nch);
        free(c), free(x);
    }
    /* over-long speech is split: chunks of at most max_speech_duration_s */
    burst longb = {1, 7, 1};
    size_t n = 0;
    float *x = synth(10, -55, &longb, 1, &n);
    tsr_audio_pcm pcm = {x, n};
    tsr_vad_params p = d;
    p.max_speech_duration_s = 2;
    tsr_vad_chunk *c = NULL;
    size_t nch = 0;
    tsr_status st = tsr_vad_detect(tsr_audio_pcm_read_cb, &pcm, n, &p, &c, &nch, NULL);
    int ok = st == TSR_OK && nch >= 3;
    for (size_t i = 0; ok && i < nch; i++)
        ok = c[i].end - c[i].start <= 2 * 16000 && (i == 0 || c[i].start >= c[i - 1].end);
    /* the last split may fall one frame into the silence, as faster-whisper's does */
    check(ok && fabs(c[0].start / 16000.0 - 0.6) < 0.033 &&
              fabs(c[nch - 1].end / 16000.0 - 7.4) < 0.065,
          "max_speech_duration_s 2 on 6 s of sound: %zu chunks of at most 2 s from 0.6 to 7.4 s",
          nch);
    print_chunks(c, nch);
    free(c), free(x);
    /* tiny and empty signals */
    float loud[100];
    for (int i = 0; i < 100; i++)
        loud[i] = (i % 2 ? 0.5f : -0.5f);
    tsr_audio_pcm tiny = {loud, 100}, none = {NULL, 0};
    float *probs = NULL;
    size_t F = 0;
    st = tsr_vad_probs(tsr_audio_pcm_read_cb, &tiny, 100, NULL, &probs, &F, NULL);
    check(st == TSR_OK && F == 1 && probs[0] > 0.99f, "100 loud samples: 1 frame, p %.3f",
          probs ? probs[0] : -1);
    free(probs);
    st = tsr_vad_detect(tsr_audio_pcm_read_cb, &tiny, 100, NULL, &c, &nch, NULL);
    check(st == TSR_OK && nch == 1 && c[0].start == 0 && c[0].end == 100,
          "  and one chunk [0, 100)");
    free(c);
    st = tsr_vad_detect(tsr_audio_pcm_read_cb, &none, 0, NULL, &c, &nch, NULL);
    check(st == TSR_OK && nch == 0 && !c && tsr_vad_collected_samples(c, nch) == 0,
          "0 samples: no chunks");
    /* absurd samples do not upset the detector */
    float odd[2048];
    for (int i = 0; i < 2048; i++)
        odd[i] = i % 3 == 0 ? NAN : i % 3 == 1 ? 1e30f : -INFINITY;
    tsr_audio_pcm oddp = {odd, 2048};
    st = tsr_vad_detect(tsr_audio_pcm_read_cb, &oddp, 2048, NULL, &c, &nch, NULL);
    check(st == TSR_OK, "NaN, 1e30 and -inf samples: %zu chunks, no error", nch);
    free(c);
    c = NULL;
    /* bad parameters */
    tsr_error err = {0};
    p = d;
    p.threshold = NAN;
    st = tsr_vad_detect(tsr_audio_pcm_read_cb, &tiny, 100, &p, &c, &nch, &err);
    tsr_status st2;
    p = d;
    p.slope_db = 0;
    st2 = tsr_vad_detect(tsr_audio_pcm_read_cb, &tiny, 100, &p, &c, &nch, NULL);
    check(st == TSR_ERR_INVALID_ARG && st2 == TSR_ERR_INVALID_ARG && !c,
          "a NaN threshold and a zero slope are refused: %s", err.msg);
}

/* the collected signal, and times mapped back */
static void test_vad_collected(void)
{
    burst b[4] = {{1, 3, 0}, {3.5, 5, 0}, {8, 9, 1}, {12.5, 13, 0}};
    size_t n = 0;
    float *x = synth(15, -55, b, 4, &n);
    tsr_audio_pcm pcm = {x, n};
    tsr_vad_chunk *c = NULL;
    size_t nch = 0;
    tsr_vad_detect(tsr_audio_pcm_read_cb, &pcm, n, NULL, &c, &nch, NULL);
    size_t len = tsr_vad_collected_samples(c, nch);
    float *want = malloc(sizeof(float) * (len + 1)), *got = malloc(sizeof(float) * (len + 1));
    size_t at = 0;
    for (size_t i = 0; i < nch; i++) {
        memcpy(want + at, x + c[i].start, sizeof(float) * (c[i].end - c[i].start));
        at += c[i].end - c[i].start;
    }
    tsr_vad_collected col = {c, nch, tsr_audio_pcm_read_cb, &pcm};
    int ok = nch == 3 && at == len;
    for (size_t first = 0; ok && first < len; first += 777) {
        size_t k = len - first < 777 ? len - first : 777;
        ok = tsr_vad_collected_read(&col, first, k, got + first, NULL) == TSR_OK;
    }
    ok = ok && memcmp(got, want, sizeof(float) * len) == 0;
    tsr_error err = {0};
    tsr_status past = tsr_vad_collected_read(&col, len - 1, 2, got, &err);
    check(ok && past == TSR_ERR_INVALID_ARG,
          "the collected signal (%zu samples of %zu) read 777 at a time equals the chunks "
          "concatenated; past its end: %s",
          len, n, err.msg);
    /* its log-mel through the chunks = the log-mel of the concatenation */
    tsr_logmel *lm = NULL;
    tsr_logmel_new(80, &lm, NULL);
    size_t T = (len + 160) / 160;
    float *a = malloc(sizeof(float) * 80 * T), *m2 = NULL, gmax = 0;
    int T2 = 0;
    tsr_status st = tsr_logmel_frames(lm, tsr_vad_collected_read, &col, len, 160, 0, T, a, T,
                                      &gmax, NULL);
    tsr_logmel_normalize(a, 80 * T, gmax);
    tsr_whisper_logmel(want, len, 80, 160, &m2, &T2, NULL);
    check(st == TSR_OK && (size_t)T2 == T && memcmp(a, m2, sizeof(float) * 80 * T) == 0,
          "the log-mel read through the chunks equals the log-mel of their concatenation");
    free(a), free(m2);
    tsr_logmel_free(lm);
    /* times: inside a chunk they come back within the rounding to 0.01 s */
    unsigned s = 5;
    double worst = 0;
    int bad_end = 0;
    for (int k = 0; k < 300 && nch; k++) {
        s = s * 1103515245u + 12345u;
        size_t i = (s >> 8) % nch;
        s = s * 1103515245u + 12345u;
        size_t o = c[i].start + 1 + (s >> 8) % (c[i].end - c[i].start - 2);
        double t = (double)(c[i].offset + o - c[i].start) / 16000;
        worst = fmax(worst, fabs(tsr_vad_original_time(c, nch, t, 0) - o / 16000.0));
    }
    for (size_t i = 0; i < nch; i++) { /* a chunk's end: with is_end in it, else the next */
        double t = (double)(c[i].offset + c[i].end - c[i].start) / 16000;
        double e = tsr_vad_original_time(c, nch, t, 1), f = tsr_vad_original_time(c, nch, t, 0);
        size_t next = i + 1 < nch ? i + 1 : i;
        bad_end += fabs(e - c[i].end / 16000.0) > 0.0051 ||
                   fabs(f - (i + 1 < nch ? c[next].start : c[i].end) / 16000.0) > 0.0051 ||
                   tsr_vad_chunk_index(c, nch, t, 1) != i;
    }
    check(nch && worst <= 0.0051 && bad_end == 0,
          "times map back to the original: within %.4f s inside chunks; chunk ends stay in "
          "their chunk with is_end (%d wrong)",
          worst, bad_end);
    check(tsr_vad_original_time(NULL, 0, 1.234, 0) == 1.234 &&
              tsr_vad_chunk_index(NULL, 0, 5, 1) == 0,
          "no chunks: times unchanged");
    free(c), free(x), free(want), free(got);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tsr-audio-test-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        printf("FAIL cannot make a temporary directory\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    double t0 = now();
#ifdef TSR_TEST_FFMPEG
    const int ffmpeg = 1;
#else
    const int ffmpeg = 0;
#endif
    if (ffmpeg) {
        test_spool_memory(); /* first, while the process is small */
        test_reader_vs_loader();
        test_stdin();
        test_urls();
        test_empty_and_corrupt();
        test_spool_reads();
    } else {
        printf("skipped: decoding, standard input, URLs and the spool (built without FFmpeg)\n");
    }
    test_logmel_whole();
    test_logmel_frames();
    test_logmel_speed();
    test_vad_parity();
    test_vad_layouts();
    test_vad_collected();
    rmdir(tmpdir);
    printf("     %.1f s\n", now() - t0);
    return finish();
}
