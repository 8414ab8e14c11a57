#define _GNU_SOURCE
/* A stand-in for the Hugging Face hub on 127.0.0.1, for testing `tessera pull`
 * (and, in tests/reference/check_hub_standin.py, huggingface_hub's
 * snapshot_download, to show that it behaves like the real hub).
 *
 * It listens on two loopback ports: the hub, and a "CDN" for LFS files. Like
 * huggingface.co:
 *   - GET /api/models/{repo}/revision/{rev}[?blobs=true] answers the commit
 *     "sha" and the "siblings" (with blobs=true: size, blobId and lfs
 *     {sha256, size, pointerSize}); GET /api/models/{repo}/tree/{rev} the file
 *     list as huggingface_hub reads it. {rev} is percent-decoded: a branch
 *     ("main"), "refs/pr/1", or a 40-digit commit;
 *   - HEAD and GET /{repo}/resolve/{rev}/{file}: regular files are served with
 *     ETag (weak W/"..." for JSON, quoted otherwise), X-Repo-Commit and Range
 *     support (206, 416 past the end); LFS files (.safetensors, .bin) answer
 *     302 to the CDN port with X-Linked-Etag and X-Linked-Size;
 *   - the CDN answers 400 to any request that carries an Authorization header
 *     (as S3 does to a second auth mechanism), supports Range, and under
 *     /lfs-norange/ ignores it (200 with the whole file);
 *   - errors carry X-Error-Code / X-Error-Message: an unknown repository is
 *     401 RepoNotFound without a token and 404 with one; a token other than
 *     "s3cret" is 401 "Invalid credentials in Authorization header".
 *
 * Each repository has a behaviour:
 *   test/tiny         normal (its file list also names a pickle and an unsafe
 *                     path, which must never be fetched); refs/pr/1 is commit 1
 *   test/flaky        the first CDN transfer of a .safetensors file drops halfway
 *   test/norange      its CDN ignores Range, and the first transfer drops halfway
 *   test/corrupt      the file list gives a wrong SHA-256 for .safetensors files
 *   test/private      needs "Authorization: Bearer s3cret" (else 401 RepoNotFound)
 *   test/gated        metadata is public; files answer 401 GatedRepo without a
 *                     token and 403 GatedRepo with one (terms not accepted)
 *   test/forbidden    401 without a token, 403 (no error code) with one
 *   test/pickle       lists only config.json and pytorch_model.bin
 *   test/update       GET /admin/push/test/update moves main to commit 1 (every
 *                     LFS file changes, same size); /admin/reset/REPO puts any
 *                     repository back as it started (commit 0, counters at 0)
 *   test/moving       main moves to commit 1 right after its revision is
 *                     first resolved (a push during a pull)
 *   test/busy         the first API request answers 429 with Retry-After: 1
 *   test/unavailable  the first two GETs of an LFS file answer 503
 *   test/sharded      SHARDED_DIR: two shards, their index and an extra fp16 variant
 *   test/ct2          CT2_DIR: a CTranslate2 repository (model.bin)
 *   test/fakebin      config.json and a model.bin that is a pickle
 *   test/openclip     OPENCLIP_DIR (open_clip's layout) and an
 *                     open_clip_pytorch_model.bin pickle beside it
 * Commit 1 of every repository is commit 0 with the byte 4 from the end of
 * every LFS file incremented.
 *
 * It prints the hub's port, logs each request to LOG as
 * "t=MS hub|cdn METHOD PATH range=N auth=0|1|2 -> CODE", and exits after 60 s
 * without a connection, or on GET /quit.
 * usage: hub_server LOG MODEL_DIR SHARDED_DIR CT2_DIR [OPENCLIP_DIR] */
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_FILES 32

typedef struct {
    char name[128];
    unsigned char *data;
    size_t size;
    int lfs, listed_only;
    char sha256[65], oid[41];
} file_t;

typedef struct {
    char commit[41];
    file_t f[MAX_FILES];
    int n;
} version_t;

typedef struct {
    const char *name;
    version_t v[2];
    int main_v;
    int count; /* behaviour counters */
} repo_t;

static const char *names[] = {"test/tiny",    "test/flaky",   "test/norange", "test/corrupt",
                              "test/private", "test/gated",   "test/forbidden", "test/pickle",
                              "test/update",  "test/moving",  "test/busy",    "test/unavailable",
                              "test/sharded", "test/ct2",     "test/fakebin", "test/openclip"};
#define N_REPOS (int)(sizeof names / sizeof names[0])
static repo_t repos[N_REPOS];
static FILE *logf;
static int cdn_port;
static int cdn_flaky_done[N_REPOS];
static struct timespec t0;

static void hex_of(const unsigned char *md, int n, char *hex)
{
    for (int i = 0; i < n; i++)
        sprintf(hex + 2 * i, "%02x", md[i]);
}

static void digest(const EVP_MD *md, const void *a, size_t an, const void *b, size_t bn, char *hex)
{
    unsigned char out[64];
    unsigned len = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    EVP_DigestInit_ex(c, md, NULL);
    EVP_DigestUpdate(c, a, an);
    if (b)
        EVP_DigestUpdate(c, b, bn);
    EVP_DigestFinal_ex(c, out, &len);
    EVP_MD_CTX_free(c);
    hex_of(out, (int)len, hex);
}

static int ends_with(const char *s, const char *e)
{
    size_t n = strlen(s), m = strlen(e);
    return n >= m && strcmp(s + n - m, e) == 0;
}

/* The hashes the hub lists: SHA-256 for LFS files; the git blob id of the
 * file (or, for LFS files, of its pointer). */
static void finish_file(file_t *f)
{
    digest(EVP_sha256(), f->data, f->size, NULL, 0, f->sha256);
    char head[64];
    if (f->lfs) {
        char ptr[256];
        int n = snprintf(ptr, sizeof ptr,
                         "version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %zu\n",
                         f->sha256, f->size);
        int h = snprintf(head, sizeof head, "blob %d", n);
        digest(EVP_sha1(), head, (size_t)h + 1, ptr, (size_t)n, f->oid);
    } else {
        int h = snprintf(head, sizeof head, "blob %zu", f->size);
        digest(EVP_sha1(), head, (size_t)h + 1, f->data, f->size, f->oid);
    }
}

static void add_mem(version_t *v, const char *name, const void *data, size_t n)
{
    if (v->n >= MAX_FILES)
        return;
    file_t *f = &v->f[v->n++];
    snprintf(f->name, sizeof f->name, "%s", name);
    f->data = malloc(n ? n : 1);
    memcpy(f->data, data, n);
    f->size = n;
    f->lfs = ends_with(name, ".safetensors") || ends_with(name, ".bin");
    finish_file(f);
}

/* Every regular file of dir; with skip_st, not its .safetensors files. */
static void add_dir(version_t *v, const char *dir, int skip_st)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char p[4096];
        struct stat sb;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (e->d_name[0] == '.' || stat(p, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        if (skip_st && ends_with(e->d_name, ".safetensors"))
            continue;
        FILE *f = fopen(p, "rb");
        unsigned char *buf = malloc((size_t)sb.st_size + 1);
        size_t n = f ? fread(buf, 1, (size_t)sb.st_size, f) : 0;
        if (f)
            fclose(f);
        add_mem(v, e->d_name, buf, n);
        free(buf);
    }
    if (d)
        closedir(d);
}

static void build(const char *model, const char *sharded, const char *ct2, const char *openclip)
{
    for (int r = 0; r < N_REPOS; r++) {
        repo_t *R = &repos[r];
        R->name = names[r];
        version_t *v = &R->v[0];
        const char *n = R->name;
        if (strcmp(n, "test/pickle") == 0) {
            add_mem(v, "config.json", "{}", 2);
            add_mem(v, "pytorch_model.bin", "\x80\x02}q\x00.", 6);
        } else if (strcmp(n, "test/sharded") == 0) {
            add_dir(v, model, 1);
            add_dir(v, sharded, 0);
        } else if (strcmp(n, "test/ct2") == 0) {
            add_dir(v, ct2, 0);
        } else if (strcmp(n, "test/openclip") == 0) {
            if (openclip)
                add_dir(v, openclip, 0);
            add_mem(v, "open_clip_pytorch_model.bin", "\x80\x02}q\x00.", 6);
        } else if (strcmp(n, "test/fakebin") == 0) {
            add_mem(v, "config.json", "{}", 2);
            /* pickle protocol 2 of {"a": 1} */
            static const unsigned char pk[] = {0x80, 0x02, '}', 'q', 0x00, '(', 'X', 0x01, 0x00,
                                               0x00, 0x00, 'a', 'q', 0x01, 'K', 0x01, 'u', '.'};
            add_mem(v, "model.bin", pk, sizeof pk);
        } else {
            add_dir(v, model, 0);
            if (strcmp(n, "test/tiny") == 0) {
                add_mem(v, "pytorch_model.bin", "not a model!", 12);
                if (v->n < MAX_FILES) {
                    file_t *f = &v->f[v->n++];
                    snprintf(f->name, sizeof f->name, "../escape.json");
                    f->data = malloc(2);
                    memcpy(f->data, "{}", 2);
                    f->size = 2;
                    f->listed_only = 1;
                    finish_file(f);
                }
            }
        }
        version_t *w = &R->v[1];
        *w = *v;
        for (int i = 0; i < w->n; i++) {
            file_t *f = &w->f[i];
            f->data = malloc(f->size ? f->size : 1);
            memcpy(f->data, v->f[i].data, f->size);
            if (f->lfs && f->size >= 4) {
                f->data[f->size - 4]++;
                finish_file(f);
            }
        }
        for (int k = 0; k < 2; k++) {
            char seed[160];
            int sn = snprintf(seed, sizeof seed, "%s:%d", n, k);
            digest(EVP_sha1(), seed, (size_t)sn, NULL, 0, R->v[k].commit);
        }
    }
}

static repo_t *find_repo(const char *name)
{
    for (int r = 0; r < N_REPOS; r++)
        if (strcmp(repos[r].name, name) == 0)
            return &repos[r];
    return NULL;
}

static version_t *find_rev(repo_t *R, const char *rev)
{
    if (strcmp(rev, "main") == 0)
        return &R->v[R->main_v];
    if (strcmp(rev, "refs/pr/1") == 0)
        return &R->v[1];
    for (int k = 0; k < 2; k++)
        if (strcmp(rev, R->v[k].commit) == 0)
            return &R->v[k];
    return NULL;
}

static file_t *find_file(version_t *v, const char *name)
{
    for (int i = 0; i < v->n; i++)
        if (!v->f[i].listed_only && strcmp(v->f[i].name, name) == 0)
            return &v->f[i];
    return NULL;
}

/* ---- HTTP ---- */

static void send_all(int fd, const void *b, size_t n)
{
    const char *p = b;
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static int last_code;

/* extra: more header lines, each ending in \r\n */
static void reply(int fd, int head_only, int code, const char *status, const char *extra,
                  const char *type, const char *body)
{
    char h[2048];
    int n = snprintf(h, sizeof h,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                     "Connection: close\r\n\r\n",
                     code, status, type, strlen(body), extra ? extra : "");
    send_all(fd, h, (size_t)n);
    if (!head_only)
        send_all(fd, body, strlen(body));
    last_code = code;
}

static void error_reply(int fd, int head_only, int code, const char *status, const char *xcode,
                        const char *xmsg)
{
    char extra[1024] = "", body[1024];
    int n = 0;
    if (xcode)
        n += snprintf(extra + n, sizeof extra - (size_t)n, "X-Error-Code: %s\r\n", xcode);
    if (xmsg)
        snprintf(extra + n, sizeof extra - (size_t)n, "X-Error-Message: %s\r\n", xmsg);
    snprintf(body, sizeof body, "{\"error\":\"%s\"}", xmsg ? xmsg : status);
    reply(fd, head_only, code, status, extra, "application/json", body);
}

/* Sends [from, size) of data (206 when from > 0 and ranges are honoured),
 * stopping after limit bytes when limit >= 0. */
static void send_body(int fd, int head_only, const unsigned char *data, size_t size, long long from,
                      int ranges, long long limit, const char *extra)
{
    char h[2048];
    int n;
    if (!ranges)
        from = 0;
    if (from > 0 && (size_t)from >= size) {
        n = snprintf(h, sizeof h,
                     "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */%zu\r\n"
                     "Content-Length: 0\r\n%sConnection: close\r\n\r\n",
                     size, extra);
        send_all(fd, h, (size_t)n);
        last_code = 416;
        return;
    }
    if (from > 0)
        n = snprintf(h, sizeof h,
                     "HTTP/1.1 206 Partial Content\r\nContent-Length: %lld\r\n"
                     "Content-Range: bytes %lld-%zu/%zu\r\nAccept-Ranges: bytes\r\n%s"
                     "Connection: close\r\n\r\n",
                     (long long)size - from, from, size - 1, size, extra);
    else
        n = snprintf(h, sizeof h,
                     "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n%s%sConnection: close\r\n\r\n",
                     size, ranges ? "Accept-Ranges: bytes\r\n" : "", extra);
    send_all(fd, h, (size_t)n);
    last_code = from > 0 ? 206 : 200;
    if (head_only)
        return;
    long long left = (long long)size - from;
    if (limit >= 0 && limit < left)
        left = limit;
    send_all(fd, data + from, (size_t)left);
}

static void url_decode(char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        if (*p == '%' && p[1] && p[2]) {
            char hx[3] = {p[1], p[2], 0};
            *o++ = (char)strtol(hx, NULL, 16);
            p += 2;
        } else {
            *o++ = *p;
        }
    }
    *o = 0;
}

static void json_files(char *body, size_t cap, size_t *n, version_t *v, int tree, int blobs,
                       int corrupt)
{
    int first = 1;
    for (int i = 0; i < v->n; i++) {
        file_t *f = &v->f[i];
        if (tree && f->listed_only)
            continue;
        char sha[65];
        memcpy(sha, f->sha256, 65);
        if (corrupt && ends_with(f->name, ".safetensors"))
            sha[0] = sha[0] == '0' ? '1' : '0';
        *n += (size_t)snprintf(body + *n, cap - *n, "%s{", first ? "" : ",");
        first = 0;
        if (tree)
            *n += (size_t)snprintf(body + *n, cap - *n,
                                   "\"type\":\"file\",\"oid\":\"%s\",\"size\":%zu,\"path\":\"%s\"",
                                   f->oid, f->size, f->name);
        else if (blobs)
            *n += (size_t)snprintf(body + *n, cap - *n,
                                   "\"rfilename\":\"%s\",\"blobId\":\"%s\",\"size\":%zu", f->name,
                                   f->oid, f->size);
        else
            *n += (size_t)snprintf(body + *n, cap - *n, "\"rfilename\":\"%s\"", f->name);
        if (f->lfs && (tree || blobs))
            *n += (size_t)snprintf(body + *n, cap - *n,
                                   ",\"lfs\":{\"%s\":\"%s\",\"size\":%zu,\"pointerSize\":134}",
                                   tree ? "oid" : "sha256", sha, f->size);
        *n += (size_t)snprintf(body + *n, cap - *n, "}");
    }
}


static void handle_cdn(int fd, const char *method, const char *path, long long from, int auth)
{
    int head = strcmp(method, "HEAD") == 0;
    if (auth) {
        reply(fd, head, 400, "Bad Request", NULL, "application/xml",
              "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InvalidArgument</Code>"
              "<Message>Only one auth mechanism allowed</Message></Error>");
        return;
    }
    int norange = strncmp(path, "/lfs-norange/", 13) == 0;
    const char *p = path + (norange ? 13 : 5);
    if (!norange && strncmp(path, "/lfs/", 5) != 0) {
        reply(fd, head, 404, "Not Found", NULL, "text/plain", "no such blob");
        return;
    }
    int r = atoi(p);
    const char *sha = strchr(p, '/');
    if (r < 0 || r >= N_REPOS || !sha) {
        reply(fd, head, 404, "Not Found", NULL, "text/plain", "no such blob");
        return;
    }
    sha++;
    file_t *f = NULL;
    for (int k = 0; k < 2 && !f; k++)
        for (int i = 0; i < repos[r].v[k].n; i++)
            if (strncmp(repos[r].v[k].f[i].sha256, sha, 64) == 0)
                f = &repos[r].v[k].f[i];
    if (!f) {
        reply(fd, head, 404, "Not Found", NULL, "text/plain", "no such blob");
        return;
    }
    long long limit = -1;
    const char *n = repos[r].name;
    if (!head && (strcmp(n, "test/flaky") == 0 || strcmp(n, "test/norange") == 0) &&
        ends_with(f->name, ".safetensors") && !cdn_flaky_done[r]) {
        cdn_flaky_done[r] = 1;
        limit = (long long)f->size / 2; /* the connection drops halfway */
    }
    char extra[128];
    snprintf(extra, sizeof extra, "ETag: \"%s\"\r\n", f->sha256);
    send_body(fd, head, f->data, f->size, from, !norange, limit, extra);
}

static int handle_hub(int fd, const char *method, char *path, long long from, int auth)
{
    int head = strcmp(method, "HEAD") == 0;
    if (strcmp(path, "/quit") == 0) {
        reply(fd, head, 200, "OK", NULL, "text/plain", "bye");
        return 1;
    }
    if (strncmp(path, "/admin/reset/", 13) == 0) {
        repo_t *R = find_repo(path + 13);
        if (R) {
            R->main_v = R->count = 0;
            cdn_flaky_done[R - repos] = 0;
        }
        reply(fd, head, R ? 200 : 404, R ? "OK" : "Not Found", NULL, "text/plain", "");
        return 0;
    }
    if (strncmp(path, "/admin/push/", 12) == 0) {
        repo_t *R = find_repo(path + 12);
        if (R)
            R->main_v = 1;
        reply(fd, head, R ? 200 : 404, R ? "OK" : "Not Found", NULL, "text/plain", "");
        return 0;
    }
    char *q = strchr(path, '?');
    char query[512] = "";
    if (q) {
        snprintf(query, sizeof query, "%s", q + 1);
        *q = 0;
    }
    char repo[2048] = "", rev[2048] = "", file[2048] = "";
    int api = 0, tree = 0;
    if (strncmp(path, "/api/models/", 12) == 0) {
        const char *rest = path + 12;
        const char *sep = strstr(rest, "/revision/");
        const char *tsep = strstr(rest, "/tree/");
        if (sep) {
            api = 1;
            snprintf(repo, sizeof repo, "%.*s", (int)(sep - rest), rest);
            snprintf(rev, sizeof rev, "%s", sep + 10);
        } else if (tsep) {
            api = tree = 1;
            snprintf(repo, sizeof repo, "%.*s", (int)(tsep - rest), rest);
            snprintf(rev, sizeof rev, "%s", tsep + 6);
        } else {
            api = 1;
            snprintf(repo, sizeof repo, "%s", rest);
            snprintf(rev, sizeof rev, "main");
        }
    } else {
        const char *res = strstr(path, "/resolve/");
        if (!res) {
            error_reply(fd, head, 404, "Not Found", NULL, "Not Found");
            return 0;
        }
        snprintf(repo, sizeof repo, "%.*s", (int)(res - path - 1), path + 1);
        const char *after = strchr(res + 9, '/');
        if (!after) {
            error_reply(fd, head, 404, "Not Found", "EntryNotFound", "Entry not found");
            return 0;
        }
        snprintf(rev, sizeof rev, "%.*s", (int)(after - res - 9), res + 9);
        snprintf(file, sizeof file, "%s", after + 1);
        url_decode(file);
    }
    url_decode(rev);
    repo_t *R = find_repo(repo);
    int r = R ? (int)(R - repos) : -1;
    if (auth == 2) {
        error_reply(fd, head, 401, "Unauthorized", NULL,
                    "Invalid credentials in Authorization header");
        return 0;
    }
    int hidden = !R || ((strcmp(repo, "test/private") == 0 || strcmp(repo, "test/forbidden") == 0) &&
                        !auth);
    if (hidden) {
        if (auth)
            error_reply(fd, head, 404, "Not Found", "RepoNotFound", "Repository not found");
        else
            error_reply(fd, head, 401, "Unauthorized", "RepoNotFound", "Repository not found");
        return 0;
    }
    if (strcmp(repo, "test/forbidden") == 0) {
        error_reply(fd, head, 403, "Forbidden", NULL,
                    "This fine-grained token does not have the permission to read this repository");
        return 0;
    }
    if (strcmp(repo, "test/busy") == 0 && api && R->count++ == 0) {
        reply(fd, head, 429, "Too Many Requests", "Retry-After: 1\r\n", "text/plain",
              "Too Many Requests");
        return 0;
    }
    version_t *v = find_rev(R, rev);
    if (!v) {
        char m[700];
        snprintf(m, sizeof m, "Invalid rev id: %.600s", rev);
        error_reply(fd, head, 404, "Not Found", "RevisionNotFound", m);
        return 0;
    }
    if (api) {
        static char body[65536];
        size_t n = 0;
        if (tree) {
            n += (size_t)snprintf(body, sizeof body, "[");
            json_files(body, sizeof body, &n, v, 1, 0, 0);
            snprintf(body + n, sizeof body - n, "]");
        } else {
            n += (size_t)snprintf(body, sizeof body,
                                  "{\"_id\":\"%d\",\"id\":\"%s\",\"modelId\":\"%s\",\"private\":%s,"
                                  "\"gated\":%s,\"sha\":\"%s\",\"siblings\":[",
                                  r, repo, repo, strcmp(repo, "test/private") ? "false" : "true",
                                  strcmp(repo, "test/gated") ? "false" : "\"manual\"", v->commit);
            json_files(body, sizeof body, &n, v, 0, strstr(query, "blobs=true") != NULL,
                       strcmp(repo, "test/corrupt") == 0);
            snprintf(body + n, sizeof body - n, "]}");
        }
        reply(fd, head, 200, "OK", NULL, "application/json", body);
        if (strcmp(repo, "test/moving") == 0 && !tree && strcmp(rev, "main") == 0)
            R->main_v = 1; /* someone pushes while this pull runs */
        return 0;
    }
    if (strcmp(repo, "test/gated") == 0) {
        char m[512];
        if (!auth)
            error_reply(fd, head, 401, "Unauthorized", "GatedRepo",
                        "Access to model test/gated is restricted. You must have access to it and "
                        "be authenticated to access it. Please log in.");
        else {
            snprintf(m, sizeof m,
                     "Access to model test/gated is restricted and you are not in the authorized "
                     "list. Visit https://huggingface.co/test/gated to ask for access.");
            error_reply(fd, head, 403, "Forbidden", "GatedRepo", m);
        }
        return 0;
    }
    file_t *f = find_file(v, file);
    if (!f) {
        error_reply(fd, head, 404, "Not Found", "EntryNotFound",
                    "Entry not found");
        return 0;
    }
    if (strcmp(repo, "test/unavailable") == 0 && f->lfs && !head && R->count < 2) {
        R->count++;
        reply(fd, head, 503, "Service Unavailable", NULL, "text/plain", "Service Unavailable");
        return 0;
    }
    char extra[1024];
    if (f->lfs) {
        snprintf(extra, sizeof extra,
                 "Location: http://127.0.0.1:%d/%s/%d/%s?X-Amz-Signature=abc\r\n"
                 "X-Repo-Commit: %s\r\nX-Linked-Etag: \"%s\"\r\nX-Linked-Size: %zu\r\n"
                 "ETag: W/\"%s\"\r\n",
                 cdn_port, strcmp(repo, "test/norange") == 0 ? "lfs-norange" : "lfs", r,
                 f->sha256, v->commit, f->sha256, f->size, f->oid);
        reply(fd, head, 302, "Found", extra, "text/plain", "Found. Redirecting");
        return 0;
    }
    snprintf(extra, sizeof extra, "X-Repo-Commit: %s\r\nETag: %s\"%s\"\r\n", v->commit,
             ends_with(f->name, ".json") ? "W/" : "", f->oid);
    send_body(fd, head, f->data, f->size, from, 1, -1, extra);
    return 0;
}

static int handle(int fd, int cdn)
{
    char req[8192];
    size_t n = 0;
    while (n < sizeof req - 1) {
        ssize_t r = recv(fd, req + n, sizeof req - 1 - n, 0);
        if (r <= 0)
            break;
        n += (size_t)r;
        req[n] = 0;
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    req[n] = 0;
    char method[16] = "", path[2048] = "";
    sscanf(req, "%15s %2047s", method, path);
    long long from = 0;
    char *range = strcasestr(req, "\nRange: bytes=");
    if (range)
        from = atoll(range + 14);
    int auth = 0;
    char *a = strcasestr(req, "\nAuthorization:");
    if (a)
        auth = strncasecmp(a, "\nAuthorization: Bearer s3cret\r", 30) == 0 ? 1 : 2;
    char logged[2048];
    snprintf(logged, sizeof logged, "%s", path);
    last_code = 0;
    int quit = cdn ? (handle_cdn(fd, method, path, from, auth), 0)
                   : handle_hub(fd, method, path, from, auth);
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    long long ms = (t.tv_sec - t0.tv_sec) * 1000LL + (t.tv_nsec - t0.tv_nsec) / 1000000;
    fprintf(logf, "t=%lld %s %s %s range=%lld auth=%d -> %d\n", ms, cdn ? "cdn" : "hub", method,
            logged, range ? from : -1, auth, last_code);
    fflush(logf);
    return quit;
}

static int listen_on(int *port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 16) != 0)
        return -1;
    socklen_t len = sizeof a;
    getsockname(s, (struct sockaddr *)&a, &len);
    *port = ntohs(a.sin_port);
    return s;
}

int main(int argc, char **argv)
{
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: hub_server LOG MODEL_DIR SHARDED_DIR CT2_DIR [OPENCLIP_DIR]\n");
        return 2;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    logf = fopen(argv[1], "w");
    build(argv[2], argv[3], argv[4], argc == 6 ? argv[5] : NULL);
    int hub_port = 0;
    int hs = listen_on(&hub_port), cs = listen_on(&cdn_port);
    if (!logf || hs < 0 || cs < 0) {
        perror("hub_server");
        return 1;
    }
    printf("%d\n", hub_port);
    fflush(stdout);
    for (;;) {
        struct pollfd p[2] = {{hs, POLLIN, 0}, {cs, POLLIN, 0}};
        if (poll(p, 2, 60000) <= 0)
            break; /* idle for a minute: stop by itself */
        int quit = 0;
        for (int i = 0; i < 2; i++) {
            if (!(p[i].revents & POLLIN))
                continue;
            int c = accept(p[i].fd, NULL, NULL);
            if (c < 0)
                continue;
            quit |= handle(c, i == 1);
            close(c);
        }
        if (quit)
            break;
    }
    close(hs);
    close(cs);
    fclose(logf);
    return 0;
}
