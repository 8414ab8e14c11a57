/* Embedding indexes: one SQLite database per index (WAL mode, one
 * transaction per batch), exact search as a GEMM on the device with the
 * top k selected there, approximate search through FAISS (tsr_ann.h). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tsr_ann.h"
#include "tsr_cl_internal.h"
#include "tsr_hash.h"
#include "tsr_model.h"

/* "TSXI" in PRAGMA application_id marks a tessera index. */
#define TSR_APP_ID 0x54535849
#define BUSY_MS 600000

/* The device copy of the embedding matrix for one filter, kept between searches. */
typedef struct {
    int valid;
    tsr_ctx *ctx;
    int64_t generation;
    int modality;
    char *where;
    int64_t n;        /* rows */
    int64_t *ids;     /* (n) item ids, ascending */
    int n_chunks;
    cl_mem *chunk;    /* linear-layer layout of rows [chunk_rows * c, ...) */
    int chunk_rows;
} dev_matrix;

struct tsr_index {
    sqlite3 *db;
    char path[4096];
    int dim, writable;
    char fingerprint[65];
    char model[1024];
    dev_matrix mat;
    tsr_queue *q;     /* the search queue, on mat.ctx */
    tsr_ann *ann;
    int64_t ann_generation;
};

static const char *const modality_names[TSR_MOD_N] = {"image", "audio", "text"};

const char *tsr_modality_name(tsr_modality m)
{
    return m >= 0 && m < TSR_MOD_N ? modality_names[m] : "unknown";
}

int tsr_content_hash(const void *data, size_t n, char hex[65])
{
    return tsr_sha256_hex(data, n, hex);
}

static tsr_status db_fail(tsr_error *err, sqlite3 *db, const char *path, const char *what)
{
    int code = db ? sqlite3_errcode(db) : SQLITE_ERROR;
    tsr_status st = code == SQLITE_CORRUPT || code == SQLITE_NOTADB ? TSR_ERR_FORMAT
                    : code == SQLITE_NOMEM                           ? TSR_ERR_NOMEM
                    : code == SQLITE_BUSY                            ? TSR_ERR_IO
                                                                     : TSR_ERR_IO;
    const char *why = db ? sqlite3_errmsg(db) : "cannot open";
    if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB)
        return tsr_error_set(err, st, "%s: the index is corrupt (%s: %s)", path, what, why);
    return tsr_error_set(err, st, "%s: %s: %s", path, what, why);
}

static int exec(sqlite3 *db, const char *sql) { return sqlite3_exec(db, sql, NULL, NULL, NULL); }

/* A new file "<path>.<tag>XXXXXX" created exclusively with mode 0666 less the
 * umask (as a plain create would give; mkstemp's 0600 would not), its name
 * in tmp. Returns the descriptor, or -1 with errno. */
static int create_temp(const char *path, const char *tag, char *tmp, size_t cap)
{
    static _Atomic unsigned counter;
    for (int tries = 0; tries < 100; tries++) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        unsigned r = (unsigned)t.tv_nsec ^ (unsigned)getpid() * 2654435761u ^
                     (counter++ * 40503u);
        snprintf(tmp, cap, "%s.%s%06x", path, tag, r & 0xffffff);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    return -1;
}

static const char schema_sql[] =
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE items("
    " id INTEGER PRIMARY KEY,"
    " path TEXT NOT NULL UNIQUE,"
    " size INTEGER NOT NULL,"
    " mtime_ns INTEGER NOT NULL,"
    " hash TEXT NOT NULL,"
    " modality TEXT NOT NULL CHECK (modality IN ('image', 'audio', 'text')),"
    " embedding BLOB NOT NULL,"
    " added REAL NOT NULL,"
    " meta TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(meta)));"
    "CREATE INDEX items_modality ON items(modality);";

static void utc_now(char out[32])
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static tsr_status set_meta(sqlite3 *db, const char *key, const char *value)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "INSERT INTO meta(key, value) VALUES(?1, ?2) "
                                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
        rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? TSR_OK : TSR_ERR_IO;
}

static int get_meta(sqlite3 *db, const char *key, char *out, size_t cap)
{
    sqlite3_stmt *st = NULL;
    int found = 0;
    out[0] = 0;
    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = ?1", -1, &st, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) {
            const unsigned char *v = sqlite3_column_text(st, 0);
            snprintf(out, cap, "%s", v ? (const char *)v : "");
            found = 1;
        }
    }
    sqlite3_finalize(st);
    return found;
}

/* Writes a new database at path (which must not exist) in one go: built
 * under a temporary name and linked into place, so a killed create leaves
 * no half-made index. */
static tsr_status create_db(const char *path, const char *fingerprint, const char *model, int dim,
                            tsr_error *err)
{
    struct stat sb;
    if (stat(path, &sb) == 0)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "%s: already exists", path);
    if (dim < 1 || dim > 65536)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "an embedding size of %d is not supported",
                             dim);
    size_t len = strlen(path);
    char *tmp = malloc(len + 16);
    if (!tmp)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    int fd = create_temp(path, "tmp", tmp, len + 16);
    if (fd < 0) {
        tsr_error_set(err, TSR_ERR_IO, "%s: cannot create (%s)", path, strerror(errno));
        free(tmp);
        return err->code;
    }
    close(fd);
    sqlite3 *db = NULL;
    tsr_status rc = TSR_OK;
    char buf[64], created[32];
    utc_now(created);
    if (sqlite3_open_v2(tmp, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        rc = db_fail(err, db, path, "creating");
    } else {
        snprintf(buf, sizeof buf, "PRAGMA application_id = %d", TSR_APP_ID);
        int ok = exec(db, buf) == SQLITE_OK;
        snprintf(buf, sizeof buf, "PRAGMA user_version = %d", TSR_INDEX_SCHEMA);
        ok = ok && exec(db, buf) == SQLITE_OK && exec(db, "BEGIN") == SQLITE_OK &&
             exec(db, schema_sql) == SQLITE_OK;
        char dims[16], schema[16];
        snprintf(dims, sizeof dims, "%d", dim);
        snprintf(schema, sizeof schema, "%d", TSR_INDEX_SCHEMA);
        ok = ok && set_meta(db, "format", "tessera-index") == TSR_OK &&
             set_meta(db, "schema", schema) == TSR_OK &&
             set_meta(db, "fingerprint", fingerprint) == TSR_OK &&
             set_meta(db, "model", model) == TSR_OK && set_meta(db, "dim", dims) == TSR_OK &&
             set_meta(db, "created", created) == TSR_OK &&
             set_meta(db, "generation", "0") == TSR_OK && exec(db, "COMMIT") == SQLITE_OK &&
             exec(db, "PRAGMA journal_mode = WAL") == SQLITE_OK;
        if (!ok)
            rc = db_fail(err, db, path, "creating");
    }
    sqlite3_close(db);
    if (rc == TSR_OK) {
        int fdt = open(tmp, O_RDONLY);
        if (fdt >= 0) {
            fsync(fdt);
            close(fdt);
        }
        if (link(tmp, path) != 0)
            rc = tsr_error_set(err, TSR_ERR_IO, "%s: cannot create (%s)", path,
                               errno == EEXIST ? "it already exists" : strerror(errno));
    }
    unlink(tmp);
    free(tmp);
    return rc;
}

tsr_status tsr_index_create(const char *path, const tsr_model *m, const char *model,
                            tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    if (!path || !m)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "no index path or model");
    if (!m->fam->embed_texts || (strcmp(m->fam->name, "clip") != 0 && m->fam != &tsr_family_clap))
        return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                             "%s: a %s model embeds no images or audio; an index needs a CLIP "
                             "or CLAP model (image or audio and text towers in one space)",
                             m->name, m->fam->name);
    return create_db(path, m->fingerprint, model ? model : m->name, tsr_model_embed_dim(m), err);
}

tsr_status tsr_index_open(const char *path, int writable, tsr_index **out, tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    *out = NULL;
    struct stat sb;
    if (!path || stat(path, &sb) != 0)
        return tsr_error_set(err, TSR_ERR_IO, "%s: no such index (create it with `tessera index "
                                              "create`)", path ? path : "");
    if (!S_ISREG(sb.st_mode))
        return tsr_error_set(err, TSR_ERR_IO, "%s: not a file", path);
    char magic[16] = {0};
    FILE *f = fopen(path, "rb");
    if (!f)
        return tsr_error_set(err, TSR_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
    size_t got = fread(magic, 1, sizeof magic, f);
    fclose(f);
    if (got < sizeof magic || memcmp(magic, "SQLite format 3", 16) != 0)
        return tsr_error_set(err, TSR_ERR_FORMAT,
                             "%s: not a tessera index (not an SQLite database%s)", path,
                             got == 0 ? ": the file is empty" : "");
    tsr_index *ix = calloc(1, sizeof *ix);
    if (!ix)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    snprintf(ix->path, sizeof ix->path, "%s", path);
    ix->writable = writable;
    tsr_status rc = TSR_OK;
    int flags = writable ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY;
    if (sqlite3_open_v2(path, &ix->db, flags, NULL) != SQLITE_OK) {
        rc = db_fail(err, ix->db, path, "opening");
        goto fail;
    }
    sqlite3_busy_timeout(ix->db, BUSY_MS);
    sqlite3_stmt *st = NULL;
    int app = 0, ver = 0;
    int ok = sqlite3_prepare_v2(ix->db, "PRAGMA application_id", -1, &st, NULL) == SQLITE_OK &&
             sqlite3_step(st) == SQLITE_ROW;
    int code = sqlite3_errcode(ix->db);
    if (!ok && !writable && (code == SQLITE_READONLY || code == SQLITE_CANTOPEN)) {
        /* a WAL database in a folder this user cannot write: without a -wal
         * file nothing is pending, so it can be read as an immutable file */
        char wal[4200];
        snprintf(wal, sizeof wal, "%s-wal", path);
        struct stat wb;
        if (stat(wal, &wb) != 0) {
            sqlite3_finalize(st);
            st = NULL;
            sqlite3_close(ix->db);
            ix->db = NULL;
            size_t cap = 3 * strlen(path) + 32, o = 0;
            char *uri = malloc(cap);
            if (!uri) {
                rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
                goto fail;
            }
            o += (size_t)snprintf(uri, cap, "file:");
            for (const unsigned char *c = (const unsigned char *)path; *c; c++)
                o += (size_t)(strchr("/._-~", *c) || (*c >= '0' && *c <= '9') ||
                                      ((*c | 32) >= 'a' && (*c | 32) <= 'z')
                                  ? snprintf(uri + o, cap - o, "%c", *c)
                                  : snprintf(uri + o, cap - o, "%%%02X", *c));
            snprintf(uri + o, cap - o, "?immutable=1");
            int r = sqlite3_open_v2(uri, &ix->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL);
            free(uri);
            ok = r == SQLITE_OK &&
                 sqlite3_prepare_v2(ix->db, "PRAGMA application_id", -1, &st, NULL) == SQLITE_OK &&
                 sqlite3_step(st) == SQLITE_ROW;
        }
    }
    if (!ok) {
        sqlite3_finalize(st);
        rc = code == SQLITE_READONLY || code == SQLITE_CANTOPEN
                 ? tsr_error_set(err, TSR_ERR_IO,
                                 "%s: cannot read the index: its folder is not writable and it "
                                 "has pending changes (%s-wal); open it once where it is writable",
                                 path, path)
                 : db_fail(err, ix->db, path, "reading the header");
        goto fail;
    }
    app = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (sqlite3_prepare_v2(ix->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        ver = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (app != TSR_APP_ID) {
        rc = tsr_error_set(err, TSR_ERR_FORMAT,
                           "%s: an SQLite database, but not a tessera index", path);
        goto fail;
    }
    if (ver > TSR_INDEX_SCHEMA) {
        rc = tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                           "%s: made by a newer tessera (index schema %d; this one reads up to "
                           "%d)",
                           path, ver, TSR_INDEX_SCHEMA);
        goto fail;
    }
    if (ver < 1) {
        rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s: index schema %d is not valid", path, ver);
        goto fail;
    }
    if (writable && (exec(ix->db, "PRAGMA journal_mode = WAL") != SQLITE_OK ||
                     exec(ix->db, "PRAGMA synchronous = FULL") != SQLITE_OK)) {
        rc = db_fail(err, ix->db, path, "opening");
        goto fail;
    }
    char dim[32];
    if (!get_meta(ix->db, "dim", dim, sizeof dim) ||
        !get_meta(ix->db, "fingerprint", ix->fingerprint, sizeof ix->fingerprint)) {
        if (sqlite3_errcode(ix->db) != SQLITE_OK && sqlite3_errcode(ix->db) != SQLITE_DONE &&
            sqlite3_errcode(ix->db) != SQLITE_ROW)
            rc = db_fail(err, ix->db, path, "reading the index's model");
        else
            rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s: the index has no model record", path);
        goto fail;
    }
    get_meta(ix->db, "model", ix->model, sizeof ix->model);
    ix->dim = atoi(dim);
    if (ix->dim < 1 || ix->dim > 65536) {
        rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s: embedding size '%s' is not valid", path, dim);
        goto fail;
    }
    *out = ix;
    return TSR_OK;
fail:
    sqlite3_close(ix->db);
    free(ix);
    return rc;
}

static void matrix_release(tsr_index *ix)
{
    dev_matrix *d = &ix->mat;
    for (int c = 0; c < d->n_chunks; c++)
        tsr_buf_free(d->chunk[c]);
    free(d->chunk);
    free(d->ids);
    free(d->where);
    tsr_ctx *ctx = d->ctx;
    memset(d, 0, sizeof *d);
    d->ctx = ctx;
}

void tsr_index_close(tsr_index *ix)
{
    if (!ix)
        return;
    matrix_release(ix);
    tsr_queue_free(ix->q);
    tsr_ctx_free(ix->mat.ctx);
    tsr_ann_free(ix->ann);
    sqlite3_close(ix->db);
    free(ix);
}

const char *tsr_index_path(const tsr_index *ix) { return ix->path; }
int tsr_index_dim(const tsr_index *ix) { return ix->dim; }

tsr_status tsr_index_check_model(const tsr_index *ix, const tsr_model *m, tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    if (strcmp(ix->fingerprint, m->fingerprint) != 0)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "%s was built with another model (%s, fingerprint %.16s...); %s has "
                             "fingerprint %.16s...",
                             ix->path, ix->model, ix->fingerprint, m->name, m->fingerprint);
    if (tsr_model_embed_dim(m) != ix->dim)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "%s holds %d-wide embeddings; %s makes %d-wide ones", ix->path,
                             ix->dim, m->name, tsr_model_embed_dim(m));
    return TSR_OK;
}

static int64_t generation(tsr_index *ix)
{
    char g[32];
    return get_meta(ix->db, "generation", g, sizeof g) ? atoll(g) : -1;
}

static int64_t file_bytes(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (int64_t)sb.st_size : 0;
}

static void ann_path(const tsr_index *ix, char *out, size_t cap)
{
    snprintf(out, cap, "%s.ann", ix->path);
}

tsr_status tsr_index_get_info(tsr_index *ix, tsr_index_info *o, tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    memset(o, 0, sizeof *o);
    o->schema = TSR_INDEX_SCHEMA;
    o->dim = ix->dim;
    snprintf(o->fingerprint, sizeof o->fingerprint, "%s", ix->fingerprint);
    snprintf(o->model, sizeof o->model, "%s", ix->model);
    get_meta(ix->db, "created", o->created, sizeof o->created);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(ix->db, "SELECT modality, COUNT(*) FROM items GROUP BY modality", -1,
                           &st, NULL) != SQLITE_OK)
        return db_fail(err, ix->db, ix->path, "counting items");
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *mod = (const char *)sqlite3_column_text(st, 0);
        int64_t n = sqlite3_column_int64(st, 1);
        o->count += n;
        for (int i = 0; i < TSR_MOD_N; i++)
            if (mod && strcmp(mod, modality_names[i]) == 0)
                o->by_modality[i] = n;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return db_fail(err, ix->db, ix->path, "counting items");
    char wal[4200], ap[4200], g[32];
    snprintf(wal, sizeof wal, "%s-wal", ix->path);
    o->db_bytes = file_bytes(ix->path) + file_bytes(wal);
    o->generation = generation(ix);
    if (get_meta(ix->db, "ann", o->ann, sizeof o->ann) && o->ann[0]) {
        get_meta(ix->db, "ann_generation", g, sizeof g);
        o->ann_generation = atoll(g);
        ann_path(ix, ap, sizeof ap);
        o->ann_bytes = file_bytes(ap);
    }
    return TSR_OK;
}

/* ---- writing ---- */

static tsr_status begin_write(tsr_index *ix, tsr_error *err)
{
    if (!ix->writable)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "%s: opened read-only", ix->path);
    if (exec(ix->db, "BEGIN IMMEDIATE") != SQLITE_OK)
        return db_fail(err, ix->db, ix->path, "starting a transaction");
    return TSR_OK;
}

static tsr_status commit_write(tsr_index *ix, tsr_status rc, tsr_error *err)
{
    if (rc == TSR_OK &&
        exec(ix->db, "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = "
                     "'generation'") != SQLITE_OK)
        rc = db_fail(err, ix->db, ix->path, "updating the generation");
    if (rc == TSR_OK && exec(ix->db, "COMMIT") != SQLITE_OK)
        rc = db_fail(err, ix->db, ix->path, "committing");
    if (rc != TSR_OK)
        exec(ix->db, "ROLLBACK");
    return rc;
}

static double now_unix(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

tsr_status tsr_index_put(tsr_index *ix, const tsr_index_item *items, int n, tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    for (int i = 0; i < n; i++) {
        const tsr_index_item *it = &items[i];
        if (!it->path || !it->hash || !it->embedding || it->modality < 0 ||
            it->modality >= TSR_MOD_N)
            return tsr_error_set(err, TSR_ERR_INVALID_ARG, "item %d is incomplete", i);
        for (int d = 0; d < ix->dim; d++)
            if (!isfinite(it->embedding[d]))
                return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                                     "%s: the embedding is not finite; not stored", it->path);
    }
    tsr_status rc = begin_write(ix, err);
    if (rc != TSR_OK)
        return rc;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(
            ix->db,
            "INSERT INTO items(path, size, mtime_ns, hash, modality, embedding, added, meta) "
            "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, COALESCE(?8, '{}')) ON CONFLICT(path) DO UPDATE "
            "SET size = excluded.size, mtime_ns = excluded.mtime_ns, hash = excluded.hash, "
            "modality = excluded.modality, embedding = excluded.embedding, added = "
            "excluded.added, meta = excluded.meta",
            -1, &st, NULL) != SQLITE_OK)
        rc = db_fail(err, ix->db, ix->path, "adding items");
    double added = now_unix();
    for (int i = 0; i < n && rc == TSR_OK; i++) {
        const tsr_index_item *it = &items[i];
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, it->path, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, it->size);
        sqlite3_bind_int64(st, 3, it->mtime_ns);
        sqlite3_bind_text(st, 4, it->hash, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, modality_names[it->modality], -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 6, it->embedding, (int)(sizeof(float) * (size_t)ix->dim),
                          SQLITE_STATIC);
        sqlite3_bind_double(st, 7, added);
        if (it->meta)
            sqlite3_bind_text(st, 8, it->meta, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 8);
        if (sqlite3_step(st) != SQLITE_DONE) {
            if (sqlite3_errcode(ix->db) == SQLITE_CONSTRAINT)
                rc = tsr_error_set(err, TSR_ERR_INVALID_ARG,
                                   "%s: metadata is not a valid JSON value", it->path);
            else
                rc = db_fail(err, ix->db, ix->path, "adding items");
        }
    }
    sqlite3_finalize(st);
    return commit_write(ix, rc, err);
}

/* Binds path and the range of paths under it ("dir/" <= p < "dir0"). */
static void bind_prefix(sqlite3_stmt *st, const char *path, char *lo, char *hi, size_t cap)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    if (n == 1 && path[0] == '/') { /* the root: everything under "/" */
        snprintf(lo, cap, "/");
        snprintf(hi, cap, "0");
    } else {
        snprintf(lo, cap, "%.*s/", (int)n, path);
        snprintf(hi, cap, "%.*s0", (int)n, path); /* '0' follows '/' */
    }
    sqlite3_bind_text(st, 1, path, (int)n, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, lo, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, hi, -1, SQLITE_STATIC);
}

tsr_status tsr_index_remove(tsr_index *ix, const char *const *paths, int n, int64_t *removed,
                            tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    if (removed)
        *removed = 0;
    tsr_status rc = begin_write(ix, err);
    if (rc != TSR_OK)
        return rc;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(ix->db,
                           "DELETE FROM items WHERE path = ?1 OR (path >= ?2 AND path < ?3)", -1,
                           &st, NULL) != SQLITE_OK)
        rc = db_fail(err, ix->db, ix->path, "removing items");
    for (int i = 0; i < n && rc == TSR_OK; i++) {
        size_t cap = strlen(paths[i]) + 2;
        char *lo = malloc(cap), *hi = malloc(cap);
        if (!lo || !hi) {
            rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
        } else {
            sqlite3_reset(st);
            bind_prefix(st, paths[i], lo, hi, cap);
            if (sqlite3_step(st) != SQLITE_DONE)
                rc = db_fail(err, ix->db, ix->path, "removing items");
            else if (removed)
                *removed += sqlite3_changes(ix->db);
        }
        free(lo);
        free(hi);
    }
    sqlite3_finalize(st);
    return commit_write(ix, rc, err);
}

tsr_status tsr_index_lookup(tsr_index *ix, const char *path, int *found, int64_t *size,
                            int64_t *mtime_ns, char *hash, tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    *found = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(ix->db, "SELECT size, mtime_ns, hash FROM items WHERE path = ?1", -1,
                           &st, NULL) != SQLITE_OK)
        return db_fail(err, ix->db, ix->path, "looking up an item");
    sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *found = 1;
        if (size)
            *size = sqlite3_column_int64(st, 0);
        if (mtime_ns)
            *mtime_ns = sqlite3_column_int64(st, 1);
        if (hash) {
            const unsigned char *h = sqlite3_column_text(st, 2);
            snprintf(hash, 65, "%s", h ? (const char *)h : "");
        }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_fail(err, ix->db, ix->path, "looking up an item");
    return TSR_OK;
}

tsr_status tsr_index_embedding(tsr_index *ix, const char *path, float *out, int *found,
                               tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    *found = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(ix->db, "SELECT embedding FROM items WHERE path = ?1", -1, &st,
                           NULL) != SQLITE_OK)
        return db_fail(err, ix->db, ix->path, "reading an embedding");
    sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    tsr_status s = TSR_OK;
    if (rc == SQLITE_ROW) {
        if (sqlite3_column_bytes(st, 0) != (int)(sizeof(float) * (size_t)ix->dim))
            s = tsr_error_set(err, TSR_ERR_FORMAT, "%s: the embedding of %s has %d bytes, not %zu",
                              ix->path, path, sqlite3_column_bytes(st, 0),
                              sizeof(float) * (size_t)ix->dim);
        else {
            memcpy(out, sqlite3_column_blob(st, 0), sizeof(float) * (size_t)ix->dim);
            *found = 1;
        }
    } else if (rc != SQLITE_DONE) {
        s = db_fail(err, ix->db, ix->path, "reading an embedding");
    }
    sqlite3_finalize(st);
    return s;
}

tsr_status tsr_index_foreach(tsr_index *ix, const char *prefix, tsr_index_visit_fn fn, void *user,
                             tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    sqlite3_stmt *st = NULL;
    const char *sql = prefix ? "SELECT path, size, mtime_ns, hash FROM items WHERE path = ?1 OR "
                               "(path >= ?2 AND path < ?3) ORDER BY path"
                             : "SELECT path, size, mtime_ns, hash FROM items ORDER BY path";
    if (sqlite3_prepare_v2(ix->db, sql, -1, &st, NULL) != SQLITE_OK)
        return db_fail(err, ix->db, ix->path, "listing items");
    size_t cap = prefix ? strlen(prefix) + 2 : 1;
    char *lo = malloc(cap), *hi = malloc(cap);
    if (!lo || !hi) {
        free(lo), free(hi);
        sqlite3_finalize(st);
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    }
    if (prefix)
        bind_prefix(st, prefix, lo, hi, cap);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *h = (const char *)sqlite3_column_text(st, 3);
        if (fn(user, (const char *)sqlite3_column_text(st, 0), sqlite3_column_int64(st, 1),
               sqlite3_column_int64(st, 2), h ? h : "")) {
            rc = SQLITE_DONE;
            break;
        }
    }
    tsr_status s = rc == SQLITE_DONE ? TSR_OK : db_fail(err, ix->db, ix->path, "listing items");
    sqlite3_finalize(st);
    free(lo);
    free(hi);
    return s;
}

/* ---- reading the matrix ---- */

/* Rows of the items that pass the filter, in id order: ids (n) and x (n, dim). */
static tsr_status read_rows(tsr_index *ix, int modality, const char *where, int64_t **ids_out,
                            float **x_out, int64_t *n_out, tsr_error *err)
{
    *ids_out = NULL;
    *x_out = NULL;
    *n_out = 0;
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT id, embedding FROM items WHERE (?1 IS NULL OR modality = ?1) "
                              "AND (?2 IS NULL OR path GLOB ?2) ORDER BY id");
    sqlite3_stmt *cnt = NULL, *st = NULL;
    tsr_status rc = TSR_OK;
    int own_txn = sqlite3_get_autocommit(ix->db); /* one snapshot for both statements */
    if (own_txn && exec(ix->db, "BEGIN") != SQLITE_OK)
        return db_fail(err, ix->db, ix->path, "reading embeddings");
    int64_t n = 0;
    if (sqlite3_prepare_v2(ix->db,
                           "SELECT COUNT(*) FROM items WHERE (?1 IS NULL OR modality = ?1) AND "
                           "(?2 IS NULL OR path GLOB ?2)",
                           -1, &cnt, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(ix->db, sql, -1, &st, NULL) != SQLITE_OK) {
        rc = db_fail(err, ix->db, ix->path, "reading embeddings");
        goto done;
    }
    for (int k = 0; k < 2; k++) {
        sqlite3_stmt *s = k ? st : cnt;
        if (modality >= 0 && modality < TSR_MOD_N)
            sqlite3_bind_text(s, 1, modality_names[modality], -1, SQLITE_STATIC);
        if (where)
            sqlite3_bind_text(s, 2, where, -1, SQLITE_STATIC);
    }
    if (sqlite3_step(cnt) != SQLITE_ROW) {
        rc = db_fail(err, ix->db, ix->path, "reading embeddings");
        goto done;
    }
    n = sqlite3_column_int64(cnt, 0);
    int64_t *ids = malloc(sizeof *ids * (size_t)(n ? n : 1));
    float *x = malloc(sizeof *x * (size_t)(n ? n : 1) * (size_t)ix->dim);
    if (!ids || !x) {
        free(ids), free(x);
        rc = tsr_error_set(err, TSR_ERR_NOMEM, "%s: out of host memory for %lld embeddings",
                           ix->path, (long long)n);
        goto done;
    }
    int64_t i = 0;
    int r;
    size_t row = sizeof(float) * (size_t)ix->dim;
    while (rc == TSR_OK && i < n && (r = sqlite3_step(st)) == SQLITE_ROW) {
        if ((size_t)sqlite3_column_bytes(st, 1) != row) {
            rc = tsr_error_set(err, TSR_ERR_FORMAT,
                               "%s: item %lld has a %d-byte embedding, not %zu", ix->path,
                               (long long)sqlite3_column_int64(st, 0),
                               sqlite3_column_bytes(st, 1), row);
            break;
        }
        ids[i] = sqlite3_column_int64(st, 0);
        memcpy(x + (size_t)i * ix->dim, sqlite3_column_blob(st, 1), row);
        i++;
    }
    if (rc == TSR_OK && i != n)
        rc = db_fail(err, ix->db, ix->path, "reading embeddings");
    if (rc != TSR_OK) {
        free(ids), free(x);
    } else {
        *ids_out = ids;
        *x_out = x;
        *n_out = n;
    }
done:
    sqlite3_finalize(cnt);
    sqlite3_finalize(st);
    if (own_txn)
        exec(ix->db, "COMMIT");
    return rc;
}

/* ---- export, merge, approximate index ---- */

/* A temporary file beside path, renamed over it by finish_file. */
static FILE *start_file(const char *path, char *tmp, size_t cap, tsr_error *err)
{
    int fd = create_temp(path, "part", tmp, cap);
    if (fd < 0) {
        tsr_error_set(err, TSR_ERR_IO, "%s: cannot write (%s)", path, strerror(errno));
        return NULL;
    }
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        close(fd);
        unlink(tmp);
        tsr_error_set(err, TSR_ERR_IO, "%s: cannot write (%s)", path, strerror(errno));
    }
    return f;
}

/* Flushes and closes a temporary file; on failure removes it. */
static tsr_status finish_file(FILE *f, const char *tmp, const char *path, int ok, tsr_error *err)
{
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int e = errno;
    ok = (fclose(f) == 0) && ok;
    if (ok)
        return TSR_OK;
    unlink(tmp);
    return tsr_error_set(err, TSR_ERR_IO, "%s: write failed (%s)", path, strerror(e ? e : errno));
}

/* A path for JSON: valid UTF-8 as it is; otherwise with U+FFFD for each
 * invalid sequence, and *raw_hex receives the original bytes in hex (NULL
 * when the path was valid). */
static char *json_text(const char *s, char **raw_hex)
{
    size_t n = strlen(s);
    *raw_hex = NULL;
    if (tsr_utf8_valid(s, n, NULL))
        return strdup(s);
    char *hex = malloc(2 * n + 1);
    for (size_t i = 0; hex && i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", (unsigned char)s[i]);
    *raw_hex = hex;
    return tsr_utf8_lossy(s, n);
}

static int write_npy_header(FILE *f, int64_t n, int d)
{
    char dict[128];
    int len = snprintf(dict, sizeof dict,
                       "{'descr': '<f4', 'fortran_order': False, 'shape': (%lld, %d), }",
                       (long long)n, d);
    int total = 10 + len + 1;
    int pad = (64 - total % 64) % 64;
    unsigned short hl = (unsigned short)(len + 1 + pad);
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hl & 0xff),
                             (unsigned char)(hl >> 8)};
    if (fwrite(pre, 1, 10, f) != 10 || fwrite(dict, 1, (size_t)len, f) != (size_t)len)
        return 0;
    for (int i = 0; i < pad; i++)
        if (fputc(' ', f) == EOF)
            return 0;
    return fputc('\n', f) != EOF;
}

tsr_status tsr_index_export(tsr_index *ix, const char *npy, const char *jsonl, const char *faiss,
                            int64_t *rows, tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    if (rows)
        *rows = 0;
    if (exec(ix->db, "BEGIN") != SQLITE_OK) /* one snapshot for every file */
        return db_fail(err, ix->db, ix->path, "exporting");
    int64_t *ids = NULL, n = 0;
    float *x = NULL;
    tsr_status rc = read_rows(ix, -1, NULL, &ids, &x, &n, err);
    /* every file is written under a temporary name first, then all are renamed */
    char tmp[3][4200] = {"", "", ""};
    const char *dest[3] = {npy, jsonl, faiss};
    if (rc == TSR_OK && npy) {
        FILE *f = start_file(npy, tmp[0], sizeof tmp[0], err);
        if (!f)
            rc = err->code;
        else {
            int ok = write_npy_header(f, n, ix->dim) &&
                     fwrite(x, sizeof(float) * (size_t)ix->dim, (size_t)n, f) == (size_t)n;
            rc = finish_file(f, tmp[0], npy, ok, err);
        }
        if (rc != TSR_OK)
            tmp[0][0] = 0;
    }
    if (rc == TSR_OK && jsonl) {
        FILE *f = start_file(jsonl, tmp[1], sizeof tmp[1], err);
        sqlite3_stmt *st = NULL;
        if (!f)
            rc = err->code;
        else if (sqlite3_prepare_v2(ix->db,
                                    "SELECT id, path, modality, size, mtime_ns, hash, added, meta "
                                    "FROM items ORDER BY id",
                                    -1, &st, NULL) != SQLITE_OK) {
            rc = db_fail(err, ix->db, ix->path, "exporting");
            fclose(f);
            unlink(tmp[1]);
        } else {
            int ok = 1, r = SQLITE_DONE;
            int64_t i = 0;
            while (ok && (r = sqlite3_step(st)) == SQLITE_ROW) {
                cJSON *o = cJSON_CreateObject();
                const char *path = (const char *)sqlite3_column_text(st, 1);
                const char *mod = (const char *)sqlite3_column_text(st, 2);
                char *raw = NULL, *text = json_text(path ? path : "", &raw);
                cJSON_AddNumberToObject(o, "id", (double)sqlite3_column_int64(st, 0));
                cJSON_AddStringToObject(o, "path", text ? text : "");
                if (raw)
                    cJSON_AddStringToObject(o, "path_bytes_hex", raw);
                if (mod && strcmp(mod, "image") == 0)
                    cJSON_AddStringToObject(o, "image_path", text ? text : "");
                free(text);
                free(raw);
                cJSON_AddStringToObject(o, "modality", mod ? mod : "");
                cJSON_AddNumberToObject(o, "size", (double)sqlite3_column_int64(st, 3));
                char ns[32]; /* a string: a double cannot hold nanoseconds since 1970 */
                snprintf(ns, sizeof ns, "%lld", (long long)sqlite3_column_int64(st, 4));
                cJSON_AddStringToObject(o, "mtime_ns", ns);
                cJSON_AddNumberToObject(o, "mtime", (double)sqlite3_column_int64(st, 4) / 1e9);
                const char *h = (const char *)sqlite3_column_text(st, 5);
                cJSON_AddStringToObject(o, "hash", h ? h : "");
                cJSON_AddNumberToObject(o, "added", sqlite3_column_double(st, 6));
                const char *m = (const char *)sqlite3_column_text(st, 7);
                cJSON *meta = cJSON_Parse(m ? m : "{}");
                cJSON_AddItemToObject(o, "meta", meta ? meta : cJSON_CreateObject());
                char *line = cJSON_PrintUnformatted(o);
                ok = line && fputs(line, f) != EOF && fputc('\n', f) != EOF;
                free(line);
                cJSON_Delete(o);
                i++;
            }
            ok = ok && r == SQLITE_DONE && i == n;
            sqlite3_finalize(st);
            rc = finish_file(f, tmp[1], jsonl, ok, err);
        }
        if (rc != TSR_OK)
            tmp[1][0] = 0;
    }
    if (rc == TSR_OK && faiss) {
        int fd = create_temp(faiss, "part", tmp[2], sizeof tmp[2]);
        if (fd < 0) {
            rc = tsr_error_set(err, TSR_ERR_IO, "%s: cannot write (%s)", faiss, strerror(errno));
            tmp[2][0] = 0;
        } else {
            close(fd);
            rc = tsr_ann_write_flat(tmp[2], x, n, ix->dim, err);
        }
    }
    exec(ix->db, "COMMIT");
    for (int i = 0; i < 3; i++) {
        if (!tmp[i][0])
            continue;
        if (rc == TSR_OK && rename(tmp[i], dest[i]) != 0)
            rc = tsr_error_set(err, TSR_ERR_IO, "%s: cannot write (%s)", dest[i], strerror(errno));
        if (rc != TSR_OK)
            unlink(tmp[i]);
    }
    free(ids);
    free(x);
    if (rc == TSR_OK && rows)
        *rows = n;
    return rc;
}

tsr_status tsr_index_merge(const char *out, const char *const *shards, int n, int64_t *items,
                           tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    if (items)
        *items = 0;
    if (n < 1)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "no shards to merge");
    tsr_index *first = NULL, *dst = NULL;
    tsr_status rc = tsr_index_open(shards[0], 0, &first, err);
    if (rc != TSR_OK)
        return rc;
    struct stat sb;
    if (stat(out, &sb) != 0)
        rc = create_db(out, first->fingerprint, first->model, first->dim, err);
    if (rc == TSR_OK)
        rc = tsr_index_open(out, 1, &dst, err);
    if (rc == TSR_OK && (strcmp(dst->fingerprint, first->fingerprint) || dst->dim != first->dim))
        rc = tsr_error_set(err, TSR_ERR_INVALID_ARG,
                           "%s was built with another model (fingerprint %.16s...) than %s "
                           "(fingerprint %.16s...)",
                           out, dst->fingerprint, shards[0], first->fingerprint);
    tsr_index_close(first);
    for (int i = 0; i < n && rc == TSR_OK; i++) {
        tsr_index *sh = NULL;
        rc = tsr_index_open(shards[i], 0, &sh, err);
        if (rc != TSR_OK)
            break;
        if (strcmp(sh->fingerprint, dst->fingerprint) != 0 || sh->dim != dst->dim)
            rc = tsr_error_set(err, TSR_ERR_INVALID_ARG,
                               "%s was built with another model (%s, fingerprint %.16s...) than "
                               "%s (fingerprint %.16s...)",
                               shards[i], sh->model, sh->fingerprint, out, dst->fingerprint);
        tsr_index_close(sh);
        if (rc != TSR_OK)
            break;
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(dst->db, "ATTACH DATABASE ?1 AS shard", -1, &st, NULL) !=
            SQLITE_OK) {
            rc = db_fail(err, dst->db, out, "merging");
            break;
        }
        sqlite3_bind_text(st, 1, shards[i], -1, SQLITE_STATIC);
        int ok = sqlite3_step(st) == SQLITE_DONE;
        sqlite3_finalize(st);
        if (!ok) {
            rc = db_fail(err, dst->db, shards[i], "attaching");
            break;
        }
        rc = begin_write(dst, err);
        if (rc == TSR_OK &&
            exec(dst->db,
                 "INSERT INTO main.items(path, size, mtime_ns, hash, modality, embedding, added, "
                 "meta) SELECT path, size, mtime_ns, hash, modality, embedding, added, meta FROM "
                 "shard.items WHERE length(embedding) = (SELECT 4 * CAST(value AS INTEGER) FROM "
                 "main.meta WHERE key = 'dim') ORDER BY id ON CONFLICT(path) DO UPDATE SET size "
                 "= excluded.size, mtime_ns = excluded.mtime_ns, hash = excluded.hash, modality "
                 "= excluded.modality, embedding = excluded.embedding, added = excluded.added, "
                 "meta = excluded.meta WHERE excluded.added >= items.added") != SQLITE_OK)
            rc = db_fail(err, dst->db, shards[i], "merging");
        if (rc == TSR_OK && items)
            *items += sqlite3_changes(dst->db);
        if (rc == TSR_OK || dst->writable)
            rc = commit_write(dst, rc, err);
        exec(dst->db, "DETACH DATABASE shard");
    }
    tsr_index_close(dst);
    return rc;
}

tsr_status tsr_index_build_ann(tsr_index *ix, const char *kind, tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    if (!ix->writable)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "%s: opened read-only", ix->path);
    int64_t *ids = NULL, n = 0, gen = generation(ix);
    float *x = NULL;
    tsr_status rc = read_rows(ix, -1, NULL, &ids, &x, &n, err);
    if (rc == TSR_OK && n == 0)
        rc = tsr_error_set(err, TSR_ERR_INVALID_ARG, "%s: the index is empty", ix->path);
    tsr_ann *a = NULL;
    char ap[4200];
    ann_path(ix, ap, sizeof ap);
    tsr_ann_params params = tsr_ann_default_params();
    params.kind = kind;
    if (rc == TSR_OK)
        rc = tsr_ann_build(&params, x, ids, n, ix->dim, &a, err);
    if (rc == TSR_OK)
        rc = tsr_ann_write(a, ap, err);
    tsr_ann_free(a);
    free(ids);
    free(x);
    if (rc != TSR_OK)
        return rc;
    char g[32];
    snprintf(g, sizeof g, "%lld", (long long)gen);
    /* recorded without bumping the generation: the items did not change */
    if (exec(ix->db, "BEGIN IMMEDIATE") != SQLITE_OK || set_meta(ix->db, "ann", kind) != TSR_OK ||
        set_meta(ix->db, "ann_generation", g) != TSR_OK || exec(ix->db, "COMMIT") != SQLITE_OK) {
        rc = db_fail(err, ix->db, ix->path, "recording the approximate index");
        exec(ix->db, "ROLLBACK");
    }
    return rc;
}

/* ---- search ---- */

tsr_search_params tsr_search_default_params(void)
{
    return (tsr_search_params){10, NULL, -1, 0, 0};
}

void tsr_hits_free(tsr_hit *hits, int n)
{
    for (int i = 0; hits && i < n; i++) {
        free(hits[i].path);
        hits[i].path = NULL;
    }
}

static double mono_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Rows per device buffer: within the device's largest allocation, and at
 * most 2^18 so that a block of scores stays small. */
static int chunk_rows_for(const tsr_ctx *ctx, int dim)
{
    uint64_t max_alloc = tsr_ctx_device_info(ctx)->max_alloc;
    uint64_t rows = max_alloc ? max_alloc / (sizeof(float) * (uint64_t)dim) : (1u << 18);
    if (rows > (1u << 18))
        rows = 1u << 18;
    return rows < 1 ? 1 : (int)rows;
}

/* Loads the filtered matrix onto ctx's device unless it is there already. */
static tsr_status matrix_load(tsr_index *ix, tsr_ctx *ctx, int modality, const char *where,
                              int chunk_rows, int64_t gen, tsr_error *err)
{
    dev_matrix *d = &ix->mat;
    int rows_per = chunk_rows > 0 ? chunk_rows : chunk_rows_for(ctx, ix->dim);
    if (d->valid && d->ctx == ctx && d->generation == gen && d->modality == modality &&
        d->chunk_rows == rows_per &&
        ((!where && !d->where) || (where && d->where && strcmp(where, d->where) == 0)))
        return TSR_OK;
    matrix_release(ix);
    if (d->ctx != ctx) {
        tsr_queue_free(ix->q);
        ix->q = NULL;
        tsr_ctx_free(d->ctx);
        d->ctx = tsr_ctx_retain(ctx);
    }
    tsr_status rc = TSR_OK;
    if (!ix->q) {
        TSR_TRY(rc, tsr_queue_create(ctx, &ix->q, err));
        if (rc == TSR_OK)
            ix->q->wdt = TSR_WDT_F32; /* the stored embeddings stay exact */
    }
    float *x = NULL;
    TSR_TRY(rc, read_rows(ix, modality, where, &d->ids, &x, &d->n, err));
    d->chunk_rows = rows_per;
    d->n_chunks = (int)((d->n + d->chunk_rows - 1) / d->chunk_rows);
    d->chunk = calloc((size_t)(d->n_chunks ? d->n_chunks : 1), sizeof(cl_mem));
    if (!d->chunk)
        rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    for (int c = 0; c < d->n_chunks && rc == TSR_OK; c++) {
        int64_t r0 = (int64_t)c * d->chunk_rows;
        int rows = (int)(d->n - r0 < d->chunk_rows ? d->n - r0 : d->chunk_rows);
        d->chunk[c] = tsr_linear_weight_upload(ix->q, x + (size_t)r0 * ix->dim, rows, ix->dim, err);
        if (!d->chunk[c])
            rc = err->code;
    }
    if (rc == TSR_OK)
        rc = tsr_queue_finish(ix->q, err);
    free(x);
    if (rc != TSR_OK) {
        matrix_release(ix);
        return rc;
    }
    d->generation = gen;
    d->modality = modality;
    d->where = where ? strdup(where) : NULL;
    d->valid = !where || d->where;
    return TSR_OK;
}

/* Keeps (score, id) pairs best first: higher score, then lower id. */
static int better(float s, int64_t id, float t, int64_t jd)
{
    if (isnan(t))
        return !isnan(s) || id < jd;
    if (isnan(s))
        return 0;
    return s > t || (s == t && id < jd);
}

typedef struct {
    float s;
    int64_t id;
} scored;

static int scored_cmp(const void *a, const void *b)
{
    const scored *x = a, *y = b;
    return better(x->s, x->id, y->s, y->id) ? -1 : better(y->s, y->id, x->s, x->id) ? 1 : 0;
}

static tsr_status host_topk(tsr_queue *q, cl_mem scores, int Q, int N, int k, int *idx,
                            float *val, tsr_error *err)
{
    float *s = malloc(sizeof *s * (size_t)Q * N);
    scored *all = malloc(sizeof *all * (size_t)N);
    if (!s || !all) {
        free(s), free(all);
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    }
    tsr_status rc = tsr_buf_read(q, scores, s, sizeof *s * (size_t)Q * N, err);
    for (int r = 0; r < Q && rc == TSR_OK; r++) {
        for (int i = 0; i < N; i++)
            all[i] = (scored){s[(size_t)r * N + i], i};
        qsort(all, (size_t)N, sizeof *all, scored_cmp);
        for (int j = 0; j < k; j++) {
            idx[(size_t)r * k + j] = (int)all[j].id;
            val[(size_t)r * k + j] = all[j].s;
        }
    }
    free(all);
    free(s);
    return rc;
}

/* Merges the sorted list (cv, ci, cn) into the sorted top list (vs, is, *n) of
 * at most k entries; tmp holds k entries. */
static void merge_top(float *vs, int64_t *is, int *n, int k, const float *cv, const int *ci,
                      const int64_t *ids, int cn, scored *tmp)
{
    int a = 0, b = 0, o = 0;
    while (o < k && (a < *n || b < cn)) {
        int take_b = a >= *n || (b < cn && better(cv[b], ids[ci[b]], vs[a], is[a]));
        tmp[o++] = take_b ? (scored){cv[b], ids[ci[b]]} : (scored){vs[a], is[a]};
        take_b ? b++ : a++;
    }
    for (int j = 0; j < o; j++) {
        vs[j] = tmp[j].s;
        is[j] = tmp[j].id;
    }
    *n = o;
}

/* Exact search on the device: per chunk, scores (qb, rows) = Q . chunk^T,
 * then the top k of each row; candidates of all chunks merged on the host. */
static tsr_status search_exact(tsr_index *ix, const float *queries, int nq, int k, float *vs,
                               int64_t *is, int *counts, tsr_error *err)
{
    dev_matrix *d = &ix->mat;
    int D = ix->dim;
    for (int q = 0; q < nq; q++)
        counts[q] = 0;
    if (d->n == 0)
        return TSR_OK;
    int rows_max = (int)(d->n < d->chunk_rows ? d->n : d->chunk_rows);
    int kk = k < rows_max ? k : rows_max;
    /* queries per block: scores of one block within 256 MB */
    int64_t qb = (int64_t)(256u << 20) / ((int64_t)sizeof(float) * d->chunk_rows);
    if (qb < 1)
        qb = 1;
    if (qb > (64 << 20) / ((int64_t)kk * 8 + 1))
        qb = (64 << 20) / ((int64_t)kk * 8 + 1);
    if (qb < 1)
        qb = 1;
    if (qb > nq)
        qb = nq;
    tsr_status rc = TSR_OK;
    cl_mem qbuf = tsr_buf_alloc(d->ctx, sizeof(float) * (size_t)qb * D, err);
    cl_mem sbuf = qbuf ? tsr_buf_alloc(d->ctx, sizeof(float) * (size_t)qb * rows_max, err) : NULL;
    int on_device = kk <= TSR_TOPK_MAX;
    size_t tk_bytes = on_device ? tsr_topk_scratch_bytes(d->ctx, (int)qb, rows_max, kk) : 4;
    cl_mem tbuf = sbuf ? tsr_buf_alloc(d->ctx, tk_bytes ? tk_bytes : 4, err) : NULL;
    int *ti = malloc(sizeof *ti * (size_t)qb * kk);
    float *tv = malloc(sizeof *tv * (size_t)qb * kk);
    scored *tmp = malloc(sizeof *tmp * (size_t)k);
    if (!tbuf)
        rc = err->code;
    else if (!ti || !tv || !tmp)
        rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    for (int64_t q0 = 0; q0 < nq && rc == TSR_OK; q0 += qb) {
        int m = (int)(nq - q0 < qb ? nq - q0 : qb);
        rc = tsr_buf_write(ix->q, qbuf, queries + (size_t)q0 * D, sizeof(float) * (size_t)m * D,
                           err);
        for (int c = 0; c < d->n_chunks && rc == TSR_OK; c++) {
            int64_t r0 = (int64_t)c * d->chunk_rows;
            int rows = (int)(d->n - r0 < d->chunk_rows ? d->n - r0 : d->chunk_rows);
            int kc = kk < rows ? kk : rows;
            rc = tsr_linear(ix->q, qbuf, m, D, d->chunk[c], NULL, rows, sbuf, TSR_ACT_NONE, err);
            if (rc == TSR_OK)
                rc = on_device ? tsr_k_topk(ix->q, sbuf, m, rows, kc, tbuf, ti, tv, err)
                               : host_topk(ix->q, sbuf, m, rows, kc, ti, tv, err);
            for (int q = 0; q < m && rc == TSR_OK; q++)
                merge_top(vs + (size_t)(q0 + q) * k, is + (size_t)(q0 + q) * k, &counts[q0 + q],
                          k, tv + (size_t)q * kc, ti + (size_t)q * kc, d->ids + r0, kc, tmp);
        }
    }
    tsr_queue_finish(ix->q, NULL);
    tsr_buf_free(qbuf);
    tsr_buf_free(sbuf);
    tsr_buf_free(tbuf);
    free(ti);
    free(tv);
    free(tmp);
    return rc;
}

static tsr_status fill_paths(tsr_index *ix, tsr_hit *hits, int n, tsr_error *err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(ix->db, "SELECT path FROM items WHERE id = ?1", -1, &st, NULL) !=
        SQLITE_OK)
        return db_fail(err, ix->db, ix->path, "reading paths");
    tsr_status rc = TSR_OK;
    for (int i = 0; i < n && rc == TSR_OK; i++) {
        if (hits[i].id < 0)
            continue;
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, hits[i].id);
        int r = sqlite3_step(st);
        const char *p = r == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
        hits[i].path = strdup(p ? p : "");
        if (!hits[i].path)
            rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    }
    sqlite3_finalize(st);
    return rc;
}

tsr_status tsr_index_search(tsr_index *ix, tsr_ctx *ctx, const float *queries, int nq,
                            const tsr_search_params *p, tsr_hit *hits, int *n_hits,
                            tsr_search_info *info, tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    tsr_search_params def = tsr_search_default_params();
    if (!p)
        p = &def;
    tsr_search_info inf = {0};
    if (p->k < 1 || p->k > 100000)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "k must be 1 to 100000, not %d", p->k);
    if (nq < 1)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "no queries");
    if ((int64_t)nq * p->k > 50000000)
        return tsr_error_set(err, TSR_ERR_TOO_LARGE,
                             "%d queries x k %d is more than 50 million results; ask in parts", nq,
                             p->k);
    if (p->modality < -1 || p->modality >= TSR_MOD_N)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "modality %d is not valid", p->modality);
    int k = p->k;
    for (int i = 0; i < nq * k; i++)
        hits[i] = (tsr_hit){-1, 0, NULL};
    double t0 = mono_now();
    int64_t gen = generation(ix);
    if (gen < 0)
        return db_fail(err, ix->db, ix->path, "reading the index");
    float *vs = malloc(sizeof *vs * (size_t)nq * k);
    int64_t *is = malloc(sizeof *is * (size_t)nq * k);
    if (!vs || !is) {
        free(vs), free(is);
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    }
    tsr_status rc = TSR_OK;
    /* the approximate index answers unfiltered searches while it is current */
    char kind[16] = "", g[32] = "";
    int have_ann = get_meta(ix->db, "ann", kind, sizeof kind) && kind[0];
    if (have_ann) {
        get_meta(ix->db, "ann_generation", g, sizeof g);
        inf.ann_stale = atoll(g) != gen;
    }
    int use_ann = have_ann && !inf.ann_stale && !p->exact && !p->where;
    if (use_ann && p->modality >= 0) { /* a modality filter that every item passes */
        tsr_index_info ii;
        use_ann = tsr_index_get_info(ix, &ii, NULL) == TSR_OK &&
                  ii.by_modality[p->modality] == ii.count;
    }
    if (use_ann) {
        if (!ix->ann || ix->ann_generation != gen) {
            tsr_ann_free(ix->ann);
            ix->ann = NULL;
            char ap[4200];
            ann_path(ix, ap, sizeof ap);
            rc = tsr_ann_read(ap, &ix->ann, err);
            ix->ann_generation = gen;
            tsr_index_info ii; /* checked once per file read: the generation fixes the count */
            if (rc == TSR_OK && tsr_index_get_info(ix, &ii, NULL) == TSR_OK &&
                tsr_ann_count(ix->ann) != ii.count)
                rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s.ann holds %lld items, the index %lld",
                                   ix->path, (long long)tsr_ann_count(ix->ann),
                                   (long long)ii.count);
        }
        if (rc != TSR_OK) { /* searched exactly instead; the caller hears why */
            snprintf(inf.ann_problem, sizeof inf.ann_problem, "%s", err->msg);
            tsr_ann_free(ix->ann);
            ix->ann = NULL;
            rc = TSR_OK;
            err->code = TSR_OK;
            err->msg[0] = 0;
            use_ann = 0;
        }
    }
    if (use_ann) {
        double t1 = mono_now();
        inf.load_s = t1 - t0;
        rc = tsr_ann_search(ix->ann, queries, nq, k, vs, is, err);
        for (int q = 0; q < nq && rc == TSR_OK; q++) {
            n_hits[q] = 0;
            for (int j = 0; j < k && is[(size_t)q * k + j] >= 0; j++)
                n_hits[q]++;
        }
        inf.used_ann = 1;
        inf.searched = tsr_ann_count(ix->ann);
        inf.search_s = mono_now() - t1;
    } else {
        if (!ctx) {
            rc = tsr_error_set(err, TSR_ERR_INVALID_ARG, "exact search needs a device context");
        } else {
            rc = matrix_load(ix, ctx, p->modality, p->where, p->chunk_rows, gen, err);
            double t1 = mono_now();
            inf.load_s = t1 - t0;
            if (rc == TSR_OK)
                rc = search_exact(ix, queries, nq, k, vs, is, n_hits, err);
            inf.searched = ix->mat.n;
            inf.search_s = mono_now() - t1;
        }
    }
    for (int q = 0; q < nq && rc == TSR_OK; q++)
        for (int j = 0; j < n_hits[q]; j++)
            hits[(size_t)q * k + j] = (tsr_hit){is[(size_t)q * k + j], vs[(size_t)q * k + j], NULL};
    free(vs);
    free(is);
    if (rc == TSR_OK)
        rc = fill_paths(ix, hits, nq * k, err);
    if (rc != TSR_OK)
        tsr_hits_free(hits, nq * k);
    if (info)
        *info = inf;
    return rc;
}
