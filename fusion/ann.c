/* Approximate search over embeddings (tsr_ann.h): arguments, defaults,
 * files and errors. Every FAISS call is behind fusion/faiss.cpp
 * (tsr_faiss.h); built without FAISS, the calls that need it fail and say
 * so.
 *
 * File layout: FAISS's serialisation of the IndexIDMap2, then a 24-byte
 * trailer, little-endian: the length of what precedes it (u64), its CRC-32
 * (zlib's, u32), the format version (u32, 1) and the magic "TSR-ANN\n". */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "tsr_ann.h"
#include "tsr_faiss.h"

#define TRAILER_SIZE 24
#define FORMAT_VERSION 1u
#define MAX_DIM 65536
#define MIN_TRAIN 39 /* k-means points a centroid, as FAISS asks */
static const char MAGIC[8] = {'T', 'S', 'R', '-', 'A', 'N', 'N', '\n'};
static const char *const KINDS[] = {"flat", "hnsw", "ivf-pq"};

struct tsr_ann {
    tsr_faiss *f;
    tsr_faiss_spec spec; /* threads: the search threads */
    int64_t n;
    int d;
};

tsr_ann_params tsr_ann_default_params(void)
{
    tsr_ann_params p = {0};
    p.kind = "hnsw";
    p.target_recall = 0.95;
    p.hnsw_m = 32;
    p.ef_construction = 80;
    return p;
}

int tsr_ann_available(void)
{
#ifdef TSR_WITH_FAISS
    return 1;
#else
    return 0;
#endif
}

static tsr_status no_faiss(tsr_error *err)
{
    return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                         "approximate search: tessera was built without FAISS (install "
                         "libfaiss-dev and configure with -DTESSERA_WITH_FAISS=ON)");
}

/* The divisor m of d whose sub-vectors (d/m floats) are nearest 4 long,
 * the longer on a tie. */
static int default_pq_m(int d)
{
    int best = d;
    for (int m = 1; m <= d; m++) {
        if (d % m)
            continue;
        int err = abs(d / m - 4), best_err = abs(d / best - 4);
        if (err < best_err || (err == best_err && m < best))
            best = m;
    }
    return best;
}

/* p's settings checked and completed (0: the default) for n rows of d floats. */
static tsr_status resolve(const tsr_ann_params *p, int64_t n, int d, tsr_faiss_spec *s,
                          tsr_error *err)
{
    memset(s, 0, sizeof *s);
    const char *kind = p->kind ? p->kind : "hnsw";
    s->kind = -1;
    for (int i = 0; i < 3; i++)
        if (strcmp(kind, KINDS[i]) == 0)
            s->kind = i;
    if (s->kind < 0)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "unknown index kind \"%s\" (flat, hnsw or ivf-pq)", kind);
    s->target_recall = p->target_recall > 0 ? p->target_recall : 0.95;
    s->threads = p->threads;
    s->hnsw_m = p->hnsw_m ? p->hnsw_m : 32;
    s->ef_construction = p->ef_construction ? p->ef_construction : 80;
    s->ef_search = p->ef_search;
    s->nprobe = p->nprobe;
    s->k_factor = p->k_factor;
    if (!(s->target_recall <= 1) || p->threads < 0 || s->hnsw_m < 2 || s->hnsw_m > 256 ||
        s->ef_construction < 1 || s->ef_construction > (1 << 16) || p->ef_search < 0 ||
        p->ef_search > (1 << 20) || p->nprobe < 0 || p->k_factor < 0 || p->k_factor > (1 << 20))
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "index settings out of range (target_recall in (0,1], hnsw_m 2..256, "
                             "ef_construction 1..65536, ef_search, nprobe, k_factor, threads >= 0)");
    if (s->kind == TSR_FAISS_HNSW && n > INT32_MAX)
        return tsr_error_set(err, TSR_ERR_TOO_LARGE, "hnsw holds at most %d items (got %" PRId64 ")",
                             INT32_MAX, n);
    if (s->kind != TSR_FAISS_IVFPQ)
        return TSR_OK;

    int64_t most = n / MIN_TRAIN; /* lists or centroids that n points can train */
    if (most < 16)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "ivf-pq needs at least %d vectors to train its quantizers (got %" PRId64
                             "): use flat or hnsw",
                             16 * MIN_TRAIN, n);
    if (p->nlist) {
        if (p->nlist < 1 || p->nlist > most)
            return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                                 "nlist %d needs at least %" PRId64 " vectors (%d a list); got %" PRId64,
                                 p->nlist, (int64_t)p->nlist * MIN_TRAIN, MIN_TRAIN, n);
        s->nlist = p->nlist;
    } else {
        double v = floor(4 * sqrt((double)n) + 0.5);
        v = v < (double)most ? v : (double)most;
        s->nlist = (int)(v < 65536 ? v : 65536);
    }
    if (p->pq_bits) {
        if (p->pq_bits < 1 || p->pq_bits > 16 || ((int64_t)1 << p->pq_bits) > most)
            return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                                 "pq_bits %d: 1..16, and n >= %d * 2^pq_bits (got n = %" PRId64 ")",
                                 p->pq_bits, MIN_TRAIN, n);
        s->pq_bits = p->pq_bits;
    } else {
        s->pq_bits = 8;
        while (((int64_t)1 << s->pq_bits) > most)
            s->pq_bits--;
    }
    if (p->pq_m) {
        if (p->pq_m < 1 || d % p->pq_m)
            return tsr_error_set(err, TSR_ERR_INVALID_ARG, "pq_m %d does not divide d = %d",
                                 p->pq_m, d);
        s->pq_m = p->pq_m;
    } else {
        s->pq_m = default_pq_m(d);
    }
    if (p->nprobe > s->nlist)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "nprobe %d exceeds nlist %d", p->nprobe,
                             s->nlist);
    return TSR_OK;
}

/* The row (or query) holding a NaN or an infinity, or -1. */
static int64_t non_finite_row(const float *x, int64_t n, int d)
{
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < d; j++)
            if (!isfinite(x[i * d + j]))
                return i;
    return -1;
}

tsr_status tsr_ann_build(const tsr_ann_params *p, const float *x, const int64_t *ids, int64_t n,
                         int d, tsr_ann **out, tsr_error *err)
{
    if (!out)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "tsr_ann_build: out is NULL");
    *out = NULL;
    if (!tsr_ann_available())
        return no_faiss(err);
    if (!x || n < 1 || d < 1 || d > MAX_DIM)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "tsr_ann_build: needs n >= 1 rows of 1..%d floats (got n = %" PRId64
                             ", d = %d)",
                             MAX_DIM, n, d);
    tsr_ann_params defaults = tsr_ann_default_params();
    tsr_faiss_spec spec;
    tsr_status st = resolve(p ? p : &defaults, n, d, &spec, err);
    if (st != TSR_OK)
        return st;
    int64_t bad = non_finite_row(x, n, d);
    if (bad >= 0)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "row %" PRId64 " has a NaN or an infinity",
                             bad);
    for (int64_t i = 0; ids && i < n; i++)
        if (ids[i] < 0)
            return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                                 "id %" PRId64 " of row %" PRId64 " is negative (-1 marks a missing result)",
                                 ids[i], i);
    tsr_ann *a = calloc(1, sizeof *a);
    if (!a)
        return tsr_error_set(err, TSR_ERR_NOMEM, "tsr_ann_build: out of memory");
    st = tsr_faiss_build(&spec, x, ids, n, d, &a->f, err);
    if (st != TSR_OK) {
        free(a);
        return st;
    }
    tsr_faiss_describe(a->f, &a->spec, &a->n, &a->d);
    a->spec.target_recall = spec.target_recall;
    *out = a;
    return TSR_OK;
}

tsr_status tsr_ann_search(const tsr_ann *a, const float *q, int nq, int k, float *scores,
                          int64_t *ids, tsr_error *err)
{
    if (!a || (nq > 0 && (!q || !scores || !ids)) || nq < 0 || k < 1)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "tsr_ann_search: needs an index, nq >= 0 queries, k >= 1 and the "
                             "outputs (got nq = %d, k = %d)",
                             nq, k);
    if (nq == 0)
        return TSR_OK;
    int64_t bad = non_finite_row(q, nq, a->d);
    if (bad >= 0)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "query %" PRId64 " has a NaN or an infinity", bad);
    int kk = (int64_t)k < a->n ? k : (int)a->n; /* FAISS fills no more than it holds */
    tsr_status st = tsr_faiss_search(a->f, a->spec.threads, q, nq, kk, scores, ids, err);
    if (st != TSR_OK)
        return st;
    for (int64_t i = nq - 1; kk < k && i >= 0; i--) { /* rows of kk spread to rows of k */
        memmove(scores + i * k, scores + i * kk, sizeof(float) * kk);
        memmove(ids + i * k, ids + i * kk, sizeof(int64_t) * kk);
        for (int j = kk; j < k; j++)
            ids[i * k + j] = -1;
    }
    for (int64_t i = 0; i < (int64_t)nq * k; i++)
        if (ids[i] < 0) {
            ids[i] = -1;
            scores[i] = -INFINITY;
        }
    return TSR_OK;
}

/* ---- files ---- */

struct out_file {
    FILE *f;
    uLong crc;
    uint64_t len;
    int err; /* errno of the first failed write */
};

static int sink(void *user, const void *data, size_t n)
{
    struct out_file *o = user;
    if (fwrite(data, 1, n, o->f) != n) {
        o->err = errno ? errno : EIO;
        return 0;
    }
    for (size_t at = 0; at < n;) {
        uInt piece = n - at > (1u << 30) ? (1u << 30) : (uInt)(n - at);
        o->crc = crc32(o->crc, (const Bytef *)data + at, piece);
        at += piece;
    }
    o->len += n;
    return 1;
}

static void put_le(unsigned char *b, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        b[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *b, int bytes)
{
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--)
        v = v << 8 | b[i];
    return v;
}

/* Makes the rename durable; some file systems cannot sync a directory. */
static void sync_dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir)
        return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

typedef tsr_status (*emit_fn)(const void *what, struct out_file *o, tsr_error *err);

/* Writes what emit produces (and the trailer) to a temporary file in
 * path's directory, syncs it and renames it onto path. */
static tsr_status write_file(const char *path, emit_fn emit, const void *what, int trailer,
                             tsr_error *err)
{
    tsr_error local = {0};
    if (!err)
        err = &local;
    size_t len = strlen(path);
    char *tmp = malloc(len + 8);
    if (!tmp)
        return tsr_error_set(err, TSR_ERR_NOMEM, "%s: out of memory", path);
    memcpy(tmp, path, len);
    memcpy(tmp + len, ".XXXXXX", 8);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        return tsr_error_set(err, TSR_ERR_IO, "%s: cannot create a temporary file next to it (%s)",
                             path, strerror(e));
    }
    fchmod(fd, 0644); /* as a plain fopen would leave it under the usual umask */
    struct out_file o = {fdopen(fd, "wb"), crc32(0, Z_NULL, 0), 0, 0};
    tsr_status st = TSR_OK;
    if (!o.f) {
        o.err = errno;
        close(fd);
    } else {
        st = emit(what, &o, err);
        if (st == TSR_OK && trailer) {
            unsigned char t[TRAILER_SIZE];
            put_le(t, o.len, 8);
            put_le(t + 8, o.crc, 4);
            put_le(t + 12, FORMAT_VERSION, 4);
            memcpy(t + 16, MAGIC, 8);
            if (fwrite(t, 1, sizeof t, o.f) != sizeof t && !o.err)
                o.err = errno ? errno : EIO;
        }
        if (fflush(o.f) != 0 && !o.err)
            o.err = errno;
        if (!o.err && st == TSR_OK && fsync(fileno(o.f)) != 0)
            o.err = errno;
        if (fclose(o.f) != 0 && !o.err)
            o.err = errno;
    }
    if (o.err)
        st = tsr_error_set(err, TSR_ERR_IO, "%s: write failed (%s)", path, strerror(o.err));
    else if (st != TSR_OK)
        tsr_error_prefix(err, "%s", path);
    else if (rename(tmp, path) != 0)
        st = tsr_error_set(err, TSR_ERR_IO, "%s: cannot rename into place (%s)", path,
                           strerror(errno));
    if (st == TSR_OK)
        sync_dir_of(path);
    else
        unlink(tmp);
    free(tmp);
    return st;
}

static tsr_status emit_index(const void *what, struct out_file *o, tsr_error *err)
{
    return tsr_faiss_save(what, sink, o, err);
}

struct flat_rows {
    const float *x;
    int64_t n;
    int d;
};

static tsr_status emit_flat(const void *what, struct out_file *o, tsr_error *err)
{
    const struct flat_rows *r = what;
    return tsr_faiss_save_flat(r->x, r->n, r->d, sink, o, err);
}

tsr_status tsr_ann_write(const tsr_ann *a, const char *path, tsr_error *err)
{
    if (!a || !path || !*path)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "tsr_ann_write: needs an index and a path");
    return write_file(path, emit_index, a->f, 1, err);
}

tsr_status tsr_ann_write_flat(const char *path, const float *x, int64_t n, int d, tsr_error *err)
{
    if (!path || !*path || !x || n < 1 || d < 1 || d > MAX_DIM)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "tsr_ann_write_flat: needs a path and n >= 1 rows of 1..%d floats",
                             MAX_DIM);
    if (!tsr_ann_available())
        return no_faiss(err);
    struct flat_rows r = {x, n, d};
    return write_file(path, emit_flat, &r, 0, err);
}

struct in_file {
    FILE *f;
    uint64_t left;
};

static size_t source(void *user, void *data, size_t n)
{
    struct in_file *in = user;
    if (n > in->left)
        n = (size_t)in->left;
    size_t got = fread(data, 1, n, in->f);
    in->left -= got;
    return got;
}

/* Checks the trailer and the checksum of the open file f (path) and leaves
 * it at the start; *len: the bytes FAISS wrote. */
static tsr_status check_file(FILE *f, const char *path, uint64_t *len, tsr_error *err)
{
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0)
        return tsr_error_set(err, TSR_ERR_IO, "%s: cannot stat (%s)", path, strerror(errno));
    if (S_ISDIR(sb.st_mode))
        return tsr_error_set(err, TSR_ERR_IO, "%s: is a directory", path);
    if (!S_ISREG(sb.st_mode))
        return tsr_error_set(err, TSR_ERR_IO, "%s: not a regular file", path);
    uint64_t size = (uint64_t)sb.st_size;
    if (size == 0)
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: empty file, not a tessera ANN index", path);
    unsigned char t[TRAILER_SIZE];
    if (size < TRAILER_SIZE + 4 || fseeko(f, (off_t)(size - TRAILER_SIZE), SEEK_SET) != 0 ||
        fread(t, 1, sizeof t, f) != sizeof t || memcmp(t + 16, MAGIC, 8) != 0)
        return tsr_error_set(err, TSR_ERR_FORMAT,
                             "%s: not a tessera ANN index, or truncated (no tessera trailer at its "
                             "end; tsr_ann_read opens only what tsr_ann_write wrote)",
                             path);
    uint32_t version = (uint32_t)get_le(t + 12, 4);
    if (version != FORMAT_VERSION)
        return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                             "%s: tessera ANN format version %u (this build reads %u)", path,
                             version, FORMAT_VERSION);
    *len = get_le(t, 8);
    if (*len != size - TRAILER_SIZE)
        return tsr_error_set(err, TSR_ERR_FORMAT,
                             "%s: damaged (its trailer gives %" PRIu64 " bytes of index, it holds %" PRIu64 ")",
                             path, *len, size - TRAILER_SIZE);
    size_t cap = 1 << 20;
    unsigned char *buf = malloc(cap);
    if (!buf)
        return tsr_error_set(err, TSR_ERR_NOMEM, "%s: out of memory", path);
    rewind(f);
    uLong crc = crc32(0, Z_NULL, 0);
    uint64_t left = *len;
    while (left > 0) {
        size_t want = left < cap ? (size_t)left : cap;
        if (fread(buf, 1, want, f) != want)
            break;
        crc = crc32(crc, buf, (uInt)want);
        left -= want;
    }
    free(buf);
    if (left > 0)
        return tsr_error_set(err, TSR_ERR_IO, "%s: read error", path);
    if (crc != (uLong)get_le(t + 8, 4))
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: damaged (checksum mismatch)", path);
    rewind(f);
    return TSR_OK;
}

tsr_status tsr_ann_read(const char *path, tsr_ann **out, tsr_error *err)
{
    if (!out || !path)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "tsr_ann_read: needs a path and out");
    *out = NULL;
    if (!tsr_ann_available())
        return no_faiss(err);
    tsr_error local = {0};
    if (!err)
        err = &local;
    FILE *f = fopen(path, "rb");
    if (!f)
        return tsr_error_set(err, TSR_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
    uint64_t len = 0;
    tsr_status st = check_file(f, path, &len, err);
    tsr_ann *a = NULL;
    if (st == TSR_OK && !(a = calloc(1, sizeof *a)))
        st = tsr_error_set(err, TSR_ERR_NOMEM, "%s: out of memory", path);
    struct in_file in = {f, len};
    if (st == TSR_OK && (st = tsr_faiss_load(source, &in, &a->f, err)) != TSR_OK)
        tsr_error_prefix(err, "%s", path);
    if (st == TSR_OK && in.left != 0)
        st = tsr_error_set(err, TSR_ERR_FORMAT, "%s: damaged (%" PRIu64 " bytes after the index)",
                           path, in.left);
    fclose(f);
    if (st != TSR_OK) {
        tsr_ann_free(a);
        return st;
    }
    tsr_faiss_describe(a->f, &a->spec, &a->n, &a->d);
    *out = a;
    return TSR_OK;
}

/* ---- accessors ---- */

int64_t tsr_ann_count(const tsr_ann *a)
{
    return a ? a->n : 0;
}

int tsr_ann_dim(const tsr_ann *a)
{
    return a ? a->d : 0;
}

const char *tsr_ann_kind(const tsr_ann *a)
{
    return a ? KINDS[a->spec.kind] : NULL;
}

tsr_ann_params tsr_ann_settings(const tsr_ann *a)
{
    tsr_ann_params p = {0};
    if (!a)
        return p;
    const tsr_faiss_spec *s = &a->spec;
    p.kind = KINDS[s->kind];
    p.target_recall = s->target_recall;
    p.threads = s->threads;
    p.hnsw_m = s->hnsw_m;
    p.ef_construction = s->ef_construction;
    p.ef_search = s->ef_search;
    p.nlist = s->nlist;
    p.pq_m = s->pq_m;
    p.pq_bits = s->pq_bits;
    p.nprobe = s->nprobe;
    p.k_factor = s->k_factor;
    return p;
}

void tsr_ann_set_threads(tsr_ann *a, int threads)
{
    if (a)
        a->spec.threads = threads > 0 ? threads : 0;
}

void tsr_ann_free(tsr_ann *a)
{
    if (!a)
        return;
    if (a->f)
        tsr_faiss_free(a->f);
    free(a);
}

#ifndef TSR_WITH_FAISS
/* Built without FAISS, fusion/faiss.cpp is left out and these stand in for
 * it; the calls above stop at tsr_ann_available() before they reach them. */
tsr_status tsr_faiss_build(const tsr_faiss_spec *s, const float *x, const int64_t *ids, int64_t n,
                           int d, tsr_faiss **out, tsr_error *err)
{
    return no_faiss(err);
}

tsr_status tsr_faiss_search(const tsr_faiss *f, int threads, const float *q, int64_t nq, int k,
                            float *scores, int64_t *ids, tsr_error *err)
{
    return no_faiss(err);
}

tsr_status tsr_faiss_save(const tsr_faiss *f, tsr_faiss_sink s, void *user, tsr_error *err)
{
    return no_faiss(err);
}

tsr_status tsr_faiss_load(tsr_faiss_source src, void *user, tsr_faiss **out, tsr_error *err)
{
    return no_faiss(err);
}

tsr_status tsr_faiss_save_flat(const float *x, int64_t n, int d, tsr_faiss_sink s, void *user,
                               tsr_error *err)
{
    return no_faiss(err);
}

void tsr_faiss_describe(const tsr_faiss *f, tsr_faiss_spec *s, int64_t *n, int *d)
{
    memset(s, 0, sizeof *s);
    *n = 0;
    *d = 0;
}

void tsr_faiss_free(tsr_faiss *f)
{
}
#endif
