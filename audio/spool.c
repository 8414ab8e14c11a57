/* The spool: audio decoded once into an unlinked temporary file of 16-bit
 * samples, read back anywhere with pread (so by any number of threads). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "tsr_audio.h"
#include "tsr_audio_internal.h"

#define SPOOL_RATE 16000
#define CHUNK 32768 /* samples per write and per read */

struct tsr_audio_spool {
    FILE *file; /* from tmpfile(), or NULL */
    int fd;
    size_t n; /* samples */
};


/* An unlinked file in dir (NULL: tmpfile()'s choice) into s. */
static tsr_status make_temp(tsr_audio_spool *s, const char *dir, const char *path, tsr_error *err)
{
    if (!dir) {
        s->file = tmpfile();
        if (!s->file)
            return tsr_error_set(err, TSR_ERR_IO,
                                 "%s: cannot make a temporary file for the audio spool (%s)",
                                 shown(path), strerror(errno));
        s->fd = fileno(s->file);
        return TSR_OK;
    }
    size_t len = strlen(dir);
    char *name = malloc(len + 32);
    if (!name)
        return tsr_error_set(err, TSR_ERR_NOMEM, "%s: out of host memory", shown(path));
    snprintf(name, len + 32, "%s%stessera-spool-XXXXXX", dir,
             len && dir[len - 1] == '/' ? "" : "/");
    s->fd = mkstemp(name);
    tsr_status rc = TSR_OK;
    if (s->fd < 0)
        rc = tsr_error_set(err, TSR_ERR_IO,
                           "%s: cannot make a temporary file for the audio spool in %s (%s)",
                           shown(path), dir, strerror(errno));
    else
        unlink(name); /* nameless: it goes when closed, even if the process dies */
    free(name);
    return rc;
}

static tsr_status write_all(int fd, const int16_t *s, size_t n, off_t at, const char *path,
                            const char *dir, tsr_error *err)
{
    const char *p = (const char *)s;
    size_t left = n * sizeof *s;
    while (left) {
        ssize_t k = pwrite(fd, p, left, at);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return tsr_error_set(err, TSR_ERR_IO,
                                 "%s: cannot write the audio spool in %s (%s); it needs 32,000 "
                                 "bytes per second of audio",
                                 shown(path), dir ? dir : "the temporary directory",
                                 k < 0 ? strerror(errno) : "nothing written");
        p += k;
        at += k;
        left -= (size_t)k;
    }
    return TSR_OK;
}

tsr_status tsr_audio_spool_open(const char *path, const char *tmpdir,
                                tsr_audio_progress_fn progress, void *user,
                                tsr_audio_spool **out, tsr_error *err)
{
    *out = NULL;
    tsr_audio_reader *r = NULL;
    tsr_status rc = tsr_audio_open(path, SPOOL_RATE, &r, err);
    if (rc != TSR_OK)
        return rc;
    tsr_audio_spool *s = calloc(1, sizeof *s);
    int16_t *buf = malloc(sizeof *buf * CHUNK);
    if (!s || !buf) {
        free(s), free(buf);
        tsr_audio_close(r);
        return tsr_error_set(err, TSR_ERR_NOMEM, "%s: out of host memory", shown(path));
    }
    s->fd = -1;
    rc = make_temp(s, tmpdir, path, err);
    double total_s = tsr_audio_duration(r), next_report = 0;
    while (rc == TSR_OK) {
        size_t got = 0;
        rc = tsr_audio_read_s16(r, buf, CHUNK, &got, err);
        if (rc != TSR_OK || got == 0)
            break;
        if (s->n > ((size_t)1 << 60)) {
            rc = tsr_error_set(err, TSR_ERR_TOO_LARGE, "%s: too long for the spool", shown(path));
            break;
        }
        rc = write_all(s->fd, buf, got, (off_t)(s->n * sizeof *buf), path, tmpdir, err);
        s->n += got;
        if (rc == TSR_OK && progress && (double)s->n / SPOOL_RATE >= next_report) {
            progress(user, (double)s->n / SPOOL_RATE, total_s);
            next_report = (double)s->n / SPOOL_RATE + 10; /* every 10 s of audio */
        }
    }
    if (rc == TSR_OK && progress)
        progress(user, (double)s->n / SPOOL_RATE, total_s);
    tsr_audio_close(r);
    free(buf);
    if (rc != TSR_OK) {
        tsr_audio_spool_free(s);
        return rc;
    }
    *out = s;
    return TSR_OK;
}

size_t tsr_audio_spool_samples(const tsr_audio_spool *s) { return s ? s->n : 0; }

tsr_status tsr_audio_spool_read(const tsr_audio_spool *s, size_t first, size_t n, float *out,
                                tsr_error *err)
{
    if (!s)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "no audio spool");
    if (first > s->n || n > s->n - first)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "audio spool: samples [%zu, %zu) asked of %zu", first, first + n,
                             s->n);
    int16_t buf[4096];
    while (n) {
        size_t want = n < 4096 ? n : 4096, have = 0;
        while (have < want * sizeof *buf) {
            ssize_t k = pread(s->fd, (char *)buf + have, want * sizeof *buf - have,
                              (off_t)(first * sizeof *buf + have));
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0)
                return tsr_error_set(err, TSR_ERR_IO,
                                     "audio spool: cannot read samples at %zu (%s)", first,
                                     k < 0 ? strerror(errno) : "the file is shorter");
            have += (size_t)k;
        }
        for (size_t i = 0; i < want; i++)
            out[i] = (float)buf[i] / 32768.0f;
        out += want;
        first += want;
        n -= want;
    }
    return TSR_OK;
}

tsr_status tsr_audio_spool_read_cb(void *spool, size_t first, size_t n, float *out,
                                   tsr_error *err)
{
    return tsr_audio_spool_read(spool, first, n, out, err);
}

void tsr_audio_spool_free(tsr_audio_spool *s)
{
    if (!s)
        return;
    if (s->file)
        fclose(s->file);
    else if (s->fd >= 0)
        close(s->fd);
    free(s);
}
