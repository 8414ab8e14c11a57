/* `tessera pull`: fetches the files tessera needs from a Hugging Face model
 * repository with libcurl. Downloads go to FILE.part, resume with a Range
 * request, are checked against the hub's SHA-256 for LFS files and renamed
 * into place only when complete; a directory is marked complete last. */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tsr_cl_internal.h"
#include "tsr_fusion.h"
#include "tsr_hash.h"

#define MAX_META (16u << 20)
#define COMPLETE_MARK ".tessera-complete"

tsr_pull_params tsr_pull_default_params(void)
{
    tsr_pull_params p = {0};
    return p;
}

static const char *endpoint_of(const tsr_pull_params *p)
{
    return p->endpoint && *p->endpoint ? p->endpoint : "https://huggingface.co";
}

/* "org/name" with safe characters; revision without "..". */
static int valid_repo_id(const char *r)
{
    const char *slash = strchr(r, '/');
    if (!slash || slash == r || !slash[1] || strchr(slash + 1, '/') || strstr(r, ".."))
        return 0;
    for (const char *c = r; *c; c++)
        if (!(*c == '/' || *c == '-' || *c == '_' || *c == '.' || (*c >= '0' && *c <= '9') ||
              (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z')))
            return 0;
    return 1;
}

static int valid_revision(const char *r)
{
    if (!*r || strstr(r, "..") || r[0] == '/')
        return 0;
    for (const char *c = r; *c; c++)
        if (*c <= ' ' || *c == '\\' || *c == '?' || *c == '#' || *c == '%')
            return 0;
    return 1;
}

tsr_status tsr_model_cache_path(const char *repo_id, const char *revision, const char *cache_dir,
                                char *out, size_t cap, tsr_error *err)
{
    if (!valid_repo_id(repo_id))
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "'%s' is not a model repository id of the form org/name", repo_id);
    const char *rev = revision ? revision : "main";
    if (!valid_revision(rev))
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "bad revision '%s'", rev);
    if (!cache_dir || !*cache_dir)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "no cache directory given for '%s'",
                             repo_id);
    char root[2048], name[512], r[256];
    snprintf(root, sizeof root, "%s", cache_dir);
    snprintf(name, sizeof name, "%s", repo_id);
    *strchr(name, '/') = 0;
    snprintf(r, sizeof r, "%s", rev);
    for (char *c = r; *c; c++)
        if (*c == '/')
            *c = '_';
    snprintf(out, cap, "%s/models/%s--%s/%s", root, name, strchr(repo_id, '/') + 1, r);
    return TSR_OK;
}

tsr_status tsr_model_resolve(const char *name, const char *cache_dir, char *out, size_t cap,
                             tsr_error *err)
{
    struct stat sb;
    if (stat(name, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        snprintf(out, cap, "%s", name);
        return TSR_OK;
    }
    char repo[512], mark[4200];
    snprintf(repo, sizeof repo, "%s", name);
    char *at = strchr(repo, '@');
    if (at)
        *at++ = 0;
    if (!valid_repo_id(repo))
        return tsr_error_set(err, TSR_ERR_IO, "%s: model directory not found", name);
    tsr_status rc = tsr_model_cache_path(repo, at, cache_dir, out, cap, err);
    if (rc != TSR_OK)
        return rc;
    snprintf(mark, sizeof mark, "%s/%s", out, COMPLETE_MARK);
    if (stat(mark, &sb) != 0)
        return tsr_error_set(err, TSR_ERR_IO,
                             "%s: model directory not found, and '%s' has not been pulled "
                             "(run: tessera pull %s)",
                             name, name, name);
    return TSR_OK;
}

/* Which repository files tessera needs; pickles and other formats are never fetched. */
static int wanted(const char *f)
{
    static const char *exact[] = {
        "config.json",        "tokenizer.json",   "tokenizer_config.json",
        "special_tokens_map.json", "vocab.json",  "merges.txt",
        "vocab.txt",          "added_tokens.json", "preprocessor_config.json",
        "model.safetensors.index.json", "generation_config.json", "modules.json",
        "sentence_bert_config.json", "1_Pooling/config.json"};
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        if (strcmp(f, exact[i]) == 0)
            return 1;
    size_t n = strlen(f);
    return !strchr(f, '/') && n > 12 && strcmp(f + n - 12, ".safetensors") == 0;
}

static int is_pickle(const char *f)
{
    static const char *ext[] = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"};
    size_t n = strlen(f);
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
        size_t m = strlen(ext[i]);
        if (n > m && strcmp(f + n - m, ext[i]) == 0)
            return 1;
    }
    return 0;
}

static int safe_path(const char *f)
{
    return *f && f[0] != '/' && !strstr(f, "..") && !strchr(f, '\\');
}

/* ---- HTTP ---- */

typedef struct {
    char *data;
    size_t n, cap;
} membuf;

static size_t to_mem(char *p, size_t sz, size_t nm, void *u)
{
    membuf *b = u;
    size_t n = sz * nm;
    if (b->n + n + 1 > MAX_META)
        return 0;
    if (b->n + n + 1 > b->cap) {
        size_t nc = (b->n + n + 1) * 2;
        char *d = realloc(b->data, nc);
        if (!d)
            return 0;
        b->data = d;
        b->cap = nc;
    }
    memcpy(b->data + b->n, p, n);
    b->n += n;
    b->data[b->n] = 0;
    return n;
}

static CURL *new_handle(const tsr_pull_params *p, const char *url)
{
    CURL *c = curl_easy_init();
    if (!c)
        return NULL;
    const char *token = p->token;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "tessera/0.1");
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L); /* no progress for 60 s: give up */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (token && *token) { /* libcurl sends it to the original host only */
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BEARER);
        curl_easy_setopt(c, CURLOPT_XOAUTH2_BEARER, token);
    }
    return c; /* proxies come from http_proxy / https_proxy / no_proxy, as curl reads them */
}

static tsr_status http_fail(CURL *c, CURLcode cc, const char *what, const tsr_pull_params *p,
                            tsr_error *err)
{
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    const char *token = p->token;
    if (cc == CURLE_COULDNT_RESOLVE_HOST || cc == CURLE_COULDNT_CONNECT ||
        cc == CURLE_COULDNT_RESOLVE_PROXY || cc == CURLE_OPERATION_TIMEDOUT)
        return tsr_error_set(err, TSR_ERR_IO, "cannot reach %s: %s (offline? set HF_ENDPOINT "
                             "or a proxy with https_proxy)", endpoint_of(p),
                             curl_easy_strerror(cc));
    if (code == 401 || code == 403)
        return tsr_error_set(err, TSR_ERR_IO, "%s: HTTP %ld: %s", what, code,
                             token && *token ? "the token in HF_TOKEN was refused"
                                             : "authentication required; set HF_TOKEN");
    if (code == 404)
        return tsr_error_set(err, TSR_ERR_IO, "%s: HTTP 404: not found", what);
    if (code >= 400)
        return tsr_error_set(err, TSR_ERR_IO, "%s: HTTP %ld", what, code);
    return tsr_error_set(err, TSR_ERR_IO, "%s: %s", what, curl_easy_strerror(cc));
}

typedef struct {
    FILE *f;
    const tsr_pull_params *p;
    const char *name;
    uint64_t base, total;
} dl_state;

static size_t to_file(char *d, size_t sz, size_t nm, void *u)
{
    dl_state *s = u;
    return fwrite(d, sz, nm, s->f) * sz;
}

static int on_progress(void *u, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ut, curl_off_t un)
{
    dl_state *s = u;
    if (s->p->progress)
        s->p->progress(s->p->user, s->name, s->base + (uint64_t)dlnow,
                       s->total ? s->total : s->base + (uint64_t)dltotal);
    return 0;
}

static char *escape_path(CURL *c, const char *f)
{
    /* escape each segment, keep the slashes */
    size_t cap = strlen(f) * 3 + 1;
    char *out = malloc(cap), *copy = strdup(f);
    if (!out || !copy) {
        free(out);
        free(copy);
        return NULL;
    }
    out[0] = 0;
    char *save = NULL;
    for (char *seg = strtok_r(copy, "/", &save); seg; seg = strtok_r(NULL, "/", &save)) {
        char *e = curl_easy_escape(c, seg, 0);
        if (out[0])
            strcat(out, "/");
        strcat(out, e ? e : "");
        curl_free(e);
    }
    free(copy);
    return out;
}

static tsr_status download(const char *repo, const char *rev, const char *file, uint64_t size,
                           const char *sha, const char *dir, const tsr_pull_params *p,
                           tsr_error *err)
{
    char dst[4096], part[4200];
    snprintf(dst, sizeof dst, "%s/%s", dir, file);
    snprintf(part, sizeof part, "%s.part", dst);
    struct stat sb;
    if (stat(dst, &sb) == 0 && (!size || (uint64_t)sb.st_size == size)) {
        if (p->progress)
            p->progress(p->user, file, (uint64_t)sb.st_size, (uint64_t)sb.st_size);
        return TSR_OK; /* complete from an earlier pull */
    }
    char *slash = strrchr(dst, '/');
    *slash = 0;
    tsr_mkdirs(dst);
    *slash = '/';
    for (int attempt = 0; attempt < 2; attempt++) {
        uint64_t have = stat(part, &sb) == 0 ? (uint64_t)sb.st_size : 0;
        if (size && have > size)
            have = 0;
        CURL *c = new_handle(p, "");
        char *esc = c ? escape_path(c, file) : NULL;
        size_t ul = strlen(endpoint_of(p)) + strlen(repo) + strlen(rev) + (esc ? strlen(esc) : 0) + 32;
        char *url = malloc(ul);
        if (!c || !esc || !url) {
            curl_easy_cleanup(c);
            free(esc);
            free(url);
            return tsr_error_set(err, TSR_ERR_NOMEM, "out of memory");
        }
        snprintf(url, ul, "%s/%s/resolve/%s/%s", endpoint_of(p), repo, rev, esc);
        free(esc);
        curl_easy_setopt(c, CURLOPT_URL, url);
        dl_state s = {fopen(part, have ? "ab" : "wb"), p, file, have, size};
        if (!s.f) {
            curl_easy_cleanup(c);
            free(url);
            return tsr_error_set(err, TSR_ERR_IO, "%s: cannot write (%s)", part, strerror(errno));
        }
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, to_file);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, &s);
        if (have)
            curl_easy_setopt(c, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)have);
        CURLcode cc = curl_easy_perform(c);
        int close_bad = fclose(s.f) != 0;
        if (cc == CURLE_RANGE_ERROR && have) { /* no range support: start over */
            curl_easy_cleanup(c);
            free(url);
            remove(part);
            continue;
        }
        tsr_status rc = TSR_OK;
        if (cc != CURLE_OK) {
            char what[4400];
            snprintf(what, sizeof what, "%s (partial download kept in %s; run the same command "
                                        "again to resume)", file, part);
            rc = http_fail(c, cc, what, p, err);
        } else if (close_bad) {
            rc = tsr_error_set(err, TSR_ERR_IO, "%s: write failed (disk full?)", part);
        }
        curl_easy_cleanup(c);
        free(url);
        if (rc != TSR_OK)
            return rc;
        break;
    }
    if (stat(part, &sb) != 0 || (size && (uint64_t)sb.st_size != size)) {
        remove(part);
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: downloaded %lld bytes, the hub lists %llu",
                             file, stat(part, &sb) == 0 ? (long long)sb.st_size : -1LL,
                             (unsigned long long)size);
    }
    if (sha) {
        char hex[65] = {0};
        if (!tsr_sha256_file(part, hex) || strcmp(hex, sha) != 0) {
            remove(part);
            return tsr_error_set(err, TSR_ERR_FORMAT,
                                 "%s: SHA-256 mismatch (got %s, the hub lists %s); the download "
                                 "was deleted",
                                 file, hex, sha);
        }
    }
    if (rename(part, dst) != 0)
        return tsr_error_set(err, TSR_ERR_IO, "%s: cannot rename into place (%s)", dst,
                             strerror(errno));
    return TSR_OK;
}

/* curl_global_init is not thread-safe: once per process. */
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static int curl_ready;

static void curl_init_once(void) { curl_ready = curl_global_init(CURL_GLOBAL_DEFAULT) == 0; }

tsr_status tsr_pull(const char *repo_id, const tsr_pull_params *p, char *out_dir, size_t cap,
                    tsr_error *err)
{
    tsr_pull_params defaults = tsr_pull_default_params();
    if (!p)
        p = &defaults;
    const char *rev = p->revision ? p->revision : "main";
    tsr_status rc = tsr_model_cache_path(repo_id, rev, p->cache_dir, out_dir, cap, err);
    if (rc != TSR_OK)
        return rc;
    pthread_once(&curl_once, curl_init_once);
    if (!curl_ready)
        return tsr_error_set(err, TSR_ERR_IO, "cannot initialise libcurl");
    char url[4096];
    snprintf(url, sizeof url, "%s/api/models/%s/revision/%s?blobs=true", endpoint_of(p), repo_id,
             rev);
    CURL *c = new_handle(p, url);
    membuf meta = {0};
    if (!c)
        return tsr_error_set(err, TSR_ERR_NOMEM, "cannot start libcurl");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, to_mem);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &meta);
    CURLcode cc = curl_easy_perform(c);
    if (cc != CURLE_OK) {
        char what[600];
        snprintf(what, sizeof what, "%s (revision %s)", repo_id, rev);
        rc = http_fail(c, cc, what, p, err);
        curl_easy_cleanup(c);
        free(meta.data);
        return rc;
    }
    curl_easy_cleanup(c);
    cJSON *root = cJSON_Parse(meta.data ? meta.data : "");
    free(meta.data);
    const cJSON *sib = cJSON_GetObjectItemCaseSensitive(root, "siblings");
    if (!cJSON_IsArray(sib)) {
        cJSON_Delete(root);
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: the hub's answer has no file list", url);
    }
    int n_st = 0, n_pickle = 0;
    for (const cJSON *s = sib->child; s; s = s->next) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(s, "rfilename");
        if (!cJSON_IsString(f) || !safe_path(f->valuestring))
            continue;
        n_pickle += is_pickle(f->valuestring);
        size_t l = strlen(f->valuestring);
        n_st += l > 12 && strcmp(f->valuestring + l - 12, ".safetensors") == 0;
    }
    if (!n_st) {
        cJSON_Delete(root);
        return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                             "%s has no .safetensors weights%s; tessera never downloads pickle "
                             "files, since loading them can run arbitrary code",
                             repo_id, n_pickle ? " (only pickle checkpoints)" : "");
    }
    tsr_mkdirs(out_dir);
    char mark[4200];
    snprintf(mark, sizeof mark, "%s/%s", out_dir, COMPLETE_MARK);
    remove(mark);
    rc = TSR_OK;
    for (const cJSON *s = sib->child; s && rc == TSR_OK; s = s->next) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(s, "rfilename");
        if (!cJSON_IsString(f) || !safe_path(f->valuestring) || !wanted(f->valuestring))
            continue;
        const cJSON *lfs = cJSON_GetObjectItemCaseSensitive(s, "lfs");
        const cJSON *sha = cJSON_GetObjectItemCaseSensitive(lfs, "sha256");
        const cJSON *size = cJSON_GetObjectItemCaseSensitive(lfs ? lfs : s, "size");
        uint64_t sz = cJSON_IsNumber(size) && size->valuedouble >= 0 ? (uint64_t)size->valuedouble : 0;
        rc = download(repo_id, rev, f->valuestring, sz,
                      cJSON_IsString(sha) ? sha->valuestring : NULL, out_dir, p, err);
    }
    cJSON_Delete(root);
    if (rc == TSR_OK) {
        FILE *m = fopen(mark, "wb");
        int ok = m && fprintf(m, "%s@%s\n", repo_id, rev) > 0;
        if (m)
            ok = (fclose(m) == 0) && ok;
        if (!ok)
            return tsr_error_set(err, TSR_ERR_IO, "%s: cannot write", mark);
    }
    return rc;
}
