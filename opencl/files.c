/* Whole-file reading and atomic writing, shared by every reader in the
 * library (kernel cache, tuning files, configs, tokenizers, images). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tsr_cl_internal.h"

uint64_t tsr_fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

unsigned char *tsr_read_file(const char *path, size_t max, size_t *len, tsr_error *err)
{
    if (len)
        *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        tsr_error_set(err, TSR_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0)
        memset(&sb, 0, sizeof sb);
    if (S_ISDIR(sb.st_mode)) {
        fclose(f);
        tsr_error_set(err, TSR_ERR_IO, "%s: is a directory", path);
        return NULL;
    }
    if (S_ISREG(sb.st_mode) && (uint64_t)sb.st_size > max) {
        fclose(f);
        tsr_error_set(err, TSR_ERR_TOO_LARGE, "%s: larger than %zu bytes", path, max);
        return NULL;
    }
    /* read in pieces: the size of a pipe or a growing file is not known up front */
    size_t cap = sb.st_size > 0 && (size_t)sb.st_size <= max ? (size_t)sb.st_size + 1 : 4096;
    size_t n = 0;
    unsigned char *buf = malloc(cap);
    int failed = 0;
    while (buf && n <= max) {
        if (n == cap) {
            unsigned char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            failed = ferror(f);
            break;
        }
    }
    fclose(f);
    if (!buf) {
        tsr_error_set(err, TSR_ERR_NOMEM, "%s: out of host memory", path);
        return NULL;
    }
    if (failed) {
        free(buf);
        tsr_error_set(err, TSR_ERR_IO, "%s: read error", path);
        return NULL;
    }
    if (n > max) {
        free(buf);
        tsr_error_set(err, TSR_ERR_TOO_LARGE, "%s: larger than %zu bytes", path, max);
        return NULL;
    }
    if (n == cap) {
        unsigned char *nb = realloc(buf, cap + 1);
        if (!nb) {
            free(buf);
            tsr_error_set(err, TSR_ERR_NOMEM, "%s: out of host memory", path);
            return NULL;
        }
        buf = nb;
    }
    buf[n] = 0; /* text files can be parsed in place */
    if (len)
        *len = n;
    return buf;
}

int tsr_write_atomic(const char *path, const void *data, size_t n)
{
    char tmp[1200];
    /* unique per call (mkstemp), so threads and processes never share one */
    if (snprintf(tmp, sizeof tmp, "%s.XXXXXX", path) >= (int)sizeof tmp)
        return 0;
    int fd = mkstemp(tmp);
    if (fd < 0)
        return 0;
    fchmod(fd, 0644); /* as a plain fopen would leave it under the usual umask */
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        close(fd);
        remove(tmp);
        return 0;
    }
    int ok = fwrite(data, 1, n, f) == n;
    ok = (fflush(f) == 0) && ok;
    ok = (fsync(fileno(f)) == 0) && ok;
    ok = (fclose(f) == 0) && ok;
    if (ok)
        ok = rename(tmp, path) == 0;
    if (!ok)
        remove(tmp);
    return ok;
}

void tsr_mkdirs(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *c = tmp + 1; *c; c++) {
        if (*c == '/') {
            *c = 0;
            mkdir(tmp, 0755);
            *c = '/';
        }
    }
    mkdir(tmp, 0755);
}
