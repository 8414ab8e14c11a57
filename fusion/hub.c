/* `tessera pull`: fetches the files tessera needs from a Hugging Face model
 * repository with libcurl, the way huggingface_hub does: the revision is
 * resolved to its commit once and every file is downloaded from that commit.
 * Downloads go to FILE.part, resume with a Range request, are verified
 * (LFS files against the hub's SHA-256, others against their git blob id)
 * and renamed into place only when complete; files already present are
 * verified the same way; a directory is marked complete last, with its
 * commit. 429, 5xx and dropped connections are retried with backoff.
 *
 * Also here: finding a model by "org/name" in tessera's cache or, read-only,
 * in the Hugging Face cache (models--org--name/snapshots/<commit>). */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tsr_cl_internal.h"
#include "tsr_fusion.h"
#include "tsr_hash.h"
#include "tsr_source.h"
#include "tsr_st.h"

#define MAX_META (16u << 20)
#define MAX_ERRBODY 4096
#define COMPLETE_MARK ".tessera-complete"
#define MAX_WAIT_MS 60000

tsr_pull_params tsr_pull_default_params(void)
{
    tsr_pull_params p = {0};
    p.retries = 5;
    p.retry_base_ms = 1000;
    return p;
}

static const char *endpoint_of(const tsr_pull_params *p)
{
    return p->endpoint && *p->endpoint ? p->endpoint : "https://huggingface.co";
}

static int has_token(const tsr_pull_params *p) { return p->token && *p->token; }

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
    if (!*r || strstr(r, "..") || r[0] == '/' || strlen(r) > 200)
        return 0;
    for (const char *c = r; *c; c++)
        if (*c <= ' ' || *c == '\\' || *c == '?' || *c == '#' || *c == '%')
            return 0;
    return 1;
}

static int is_commit(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
            return 0;
    return n == 40;
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

static int is_file(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Config and weights present: what a snapshot needs before it counts. Sets
 * missing to the first absent file. */
static int snapshot_complete(const char *dir, char *missing, size_t cap)
{
    char p[4400];
    snprintf(p, sizeof p, "%s/config.json", dir);
    if (!is_file(p)) {
        snprintf(missing, cap, "config.json");
        return 0;
    }
    static const char *single[] = {"model.safetensors", "open_clip_model.safetensors", "model.bin"};
    for (size_t i = 0; i < sizeof single / sizeof single[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, single[i]);
        if (is_file(p))
            return 1;
    }
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    if (!is_file(p)) {
        snprintf(missing, cap, "model.safetensors");
        return 0;
    }
    tsr_source src;
    tsr_source_dir(&src, dir);
    cJSON *root = tsr_src_json(&src, "model.safetensors.index.json", MAX_META, NULL);
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    int ok = cJSON_IsObject(map);
    if (!ok)
        snprintf(missing, cap, "a readable model.safetensors.index.json");
    for (const cJSON *it = ok ? map->child : NULL; it && ok; it = it->next) {
        if (!cJSON_IsString(it) || strchr(it->valuestring, '/'))
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, it->valuestring);
        if (!is_file(p)) {
            snprintf(missing, cap, "%s", it->valuestring);
            ok = 0;
        }
    }
    cJSON_Delete(root);
    return ok;
}

/* models--org--name/snapshots/<commit> of the Hugging Face cache, the commit
 * read from refs/<rev> unless rev is one. 1: found and complete; 0: not
 * there; -1: there but incomplete (why in missing). */
static int hf_snapshot(const char *hf_cache, const char *repo, const char *rev, char *out,
                       size_t cap, char *missing, size_t mcap)
{
    char base[3000], ref[4400], commit[64] = "";
    const char *slash = strchr(repo, '/');
    snprintf(base, sizeof base, "%s/models--%.*s--%s", hf_cache, (int)(slash - repo), repo,
             slash + 1);
    if (is_commit(rev)) {
        snprintf(commit, sizeof commit, "%s", rev);
    } else {
        snprintf(ref, sizeof ref, "%s/refs/%s", base, rev);
        FILE *f = fopen(ref, "rb");
        if (!f)
            return 0;
        size_t n = fread(commit, 1, sizeof commit - 1, f);
        fclose(f);
        commit[n] = 0;
        while (n && (commit[n - 1] == '\n' || commit[n - 1] == ' '))
            commit[--n] = 0;
        if (!is_commit(commit))
            return 0;
    }
    snprintf(out, cap, "%s/snapshots/%s", base, commit);
    struct stat sb;
    if (stat(out, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return 0;
    return snapshot_complete(out, missing, mcap) ? 1 : -1;
}

tsr_status tsr_model_resolve(const char *name, const char *cache_dir, const char *hf_hub_cache,
                             char *out, size_t cap, tsr_error *err)
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
    if (stat(mark, &sb) == 0)
        return TSR_OK;
    char snap[4096], missing[600] = "";
    int found = hf_hub_cache && *hf_hub_cache
                    ? hf_snapshot(hf_hub_cache, repo, at ? at : "main", snap, sizeof snap, missing,
                                  sizeof missing)
                    : 0;
    if (found == 1) {
        snprintf(out, cap, "%s", snap);
        return TSR_OK;
    }
    if (found < 0)
        return tsr_error_set(err, TSR_ERR_IO,
                             "%s: model directory not found; the Hugging Face cache has %s but "
                             "without %s (run: tessera pull %s)",
                             name, snap, missing, name);
    return tsr_error_set(err, TSR_ERR_IO,
                         "%s: model directory not found, and '%s' has not been pulled "
                         "(run: tessera pull %s)",
                         name, name, name);
}

int tsr_model_commit(const char *dir, char out[41])
{
    out[0] = 0;
    char mark[4200];
    snprintf(mark, sizeof mark, "%s/%s", dir, COMPLETE_MARK);
    if (is_file(mark)) {
        tsr_source src;
        tsr_source_dir(&src, dir);
        cJSON *o = tsr_src_json(&src, COMPLETE_MARK, 4096, NULL);
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "commit");
        int ok = cJSON_IsString(c) && is_commit(c->valuestring);
        if (ok)
            memcpy(out, c->valuestring, 41);
        cJSON_Delete(o);
        return ok;
    }
    /* a Hugging Face snapshot: .../snapshots/<commit> */
    size_t n = strlen(dir);
    while (n && dir[n - 1] == '/')
        n--;
    if (n < 50 || memcmp(dir + n - 50, "snapshots/", 10) != 0)
        return 0;
    char c[41];
    memcpy(c, dir + n - 40, 40);
    c[40] = 0;
    if (!is_commit(c))
        return 0;
    memcpy(out, c, 41);
    return 1;
}

/* ---- which files ---- */

/* The small files tessera reads, fetched whenever the repository has them. */
static int wanted_small(const char *f)
{
    static const char *exact[] = {
        "config.json",          "tokenizer.json",          "tokenizer_config.json",
        "special_tokens_map.json", "vocab.json",           "merges.txt",
        "vocab.txt",            "added_tokens.json",       "preprocessor_config.json",
        "generation_config.json", "modules.json",          "sentence_bert_config.json",
        "1_Pooling/config.json", "open_clip_config.json",  "vocabulary.json",
        "vocabulary.txt"};
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        if (strcmp(f, exact[i]) == 0)
            return 1;
    return 0;
}

static int ends_with(const char *s, const char *e)
{
    size_t n = strlen(s), m = strlen(e);
    return n >= m && strcmp(s + n - m, e) == 0;
}

static int is_pickle(const char *f)
{
    static const char *ext[] = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"};
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++)
        if (ends_with(f, ext[i]))
            return 1;
    return 0;
}

static int safe_path(const char *f)
{
    return *f && f[0] != '/' && !strstr(f, "..") && !strchr(f, '\\') && strlen(f) < 1024;
}

typedef struct {
    const char *name;
    uint64_t size;
    const char *sha256; /* LFS files */
    const char *blob;   /* git blob id, when the listing has one */
    int get;            /* selected */
} sibling;

/* ---- HTTP ---- */

typedef struct {
    char *data;
    size_t n, cap, max;
} membuf;

static size_t to_mem(char *p, size_t sz, size_t nm, void *u)
{
    membuf *b = u;
    size_t n = sz * nm;
    if (b->n + n + 1 > b->max)
        return b->max == MAX_ERRBODY ? n : 0; /* an error body is only kept in part */
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

/* What the headers of the last response said (each redirect starts afresh). */
typedef struct {
    long status;
    long retry_after_s; /* -1: none */
    char xcode[64], xmsg[512];
} resp_info;

static void header_value(const char *line, size_t n, const char *name, char *out, size_t cap)
{
    size_t k = strlen(name);
    const char *v = line + k;
    size_t m = n - k;
    while (m && (*v == ' ' || *v == '\t'))
        v++, m--;
    while (m && (v[m - 1] == '\r' || v[m - 1] == '\n' || v[m - 1] == ' '))
        m--;
    if (m >= cap)
        m = cap - 1;
    memcpy(out, v, m);
    out[m] = 0;
}

static size_t on_header(char *line, size_t sz, size_t nm, void *u)
{
    resp_info *r = u;
    size_t n = sz * nm;
    if (n > 5 && strncmp(line, "HTTP/", 5) == 0) {
        const char *sp = memchr(line, ' ', n);
        r->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        r->retry_after_s = -1;
        r->xcode[0] = r->xmsg[0] = 0;
    } else if (n > 13 && strncasecmp(line, "X-Error-Code:", 13) == 0) {
        header_value(line, n, "X-Error-Code:", r->xcode, sizeof r->xcode);
    } else if (n > 16 && strncasecmp(line, "X-Error-Message:", 16) == 0) {
        header_value(line, n, "X-Error-Message:", r->xmsg, sizeof r->xmsg);
    } else if (n > 12 && strncasecmp(line, "Retry-After:", 12) == 0) {
        char v[64];
        header_value(line, n, "Retry-After:", v, sizeof v);
        char *end;
        long s = strtol(v, &end, 10);
        if (end != v && !*end && s >= 0)
            r->retry_after_s = s; /* an HTTP date is treated as no hint */
    }
    return n;
}

static CURL *new_handle(const tsr_pull_params *p, const char *url, resp_info *ri)
{
    CURL *c = curl_easy_init();
    if (!c)
        return NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "tessera/0.1");
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L); /* no progress for 60 s: give up */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, ri);
    if (has_token(p)) {
        /* libcurl sends it to the original host and port only, so not to the CDN
         * that LFS files redirect to */
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BEARER);
        curl_easy_setopt(c, CURLOPT_XOAUTH2_BEARER, p->token);
    }
    return c; /* proxies come from http_proxy / https_proxy / no_proxy, as curl reads them */
}

static void notice(const tsr_pull_params *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void notice(const tsr_pull_params *p, const char *fmt, ...)
{
    if (!p->notice)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    p->notice(p->user, msg);
}

/* The hub's own words: X-Error-Message, else the "error" of a JSON body. */
static void hub_words(const resp_info *ri, const membuf *body, char *out, size_t cap)
{
    out[0] = 0;
    if (ri->xmsg[0]) {
        snprintf(out, cap, " (the hub says: %s)", ri->xmsg);
        return;
    }
    cJSON *o = body && body->data ? cJSON_Parse(body->data) : NULL;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "error");
    if (cJSON_IsString(e) && *e->valuestring)
        snprintf(out, cap, " (the hub says: %.400s)", e->valuestring);
    cJSON_Delete(o);
}

/* An HTTP error as a user can act on it. what: the repository, or a file in it. */
static tsr_status http_error(const resp_info *ri, const membuf *body, const char *repo,
                             const char *what, const char *rev, const tsr_pull_params *p,
                             tsr_error *err)
{
    char words[600];
    hub_words(ri, body, words, sizeof words);
    long code = ri->status;
    const char *origin = p->token_origin && *p->token_origin ? p->token_origin : "the token";
    if (strcmp(ri->xcode, "GatedRepo") == 0) {
        if (has_token(p))
            return tsr_error_set(err, TSR_ERR_IO,
                                 "%s: HTTP %ld: %s is a gated repository and the account of the "
                                 "token (%s) has not been granted access: accept its terms at "
                                 "%s/%s, then run the same command again%s",
                                 what, code, repo, origin, endpoint_of(p), repo, words);
        return tsr_error_set(err, TSR_ERR_IO,
                             "%s: HTTP %ld: %s is a gated repository: accept its terms at %s/%s "
                             "and log in (hf auth login, or set HF_TOKEN)%s",
                             what, code, repo, endpoint_of(p), repo, words);
    }
    if (strcmp(ri->xcode, "RevisionNotFound") == 0)
        return tsr_error_set(err, TSR_ERR_IO, "%s: HTTP %ld: revision '%s' not found in %s%s",
                             what, code, rev, repo, words);
    if (strcmp(ri->xcode, "EntryNotFound") == 0)
        return tsr_error_set(err, TSR_ERR_IO, "%s: HTTP %ld: no such file in %s at %s%s", what,
                             code, repo, rev, words);
    int bad_token = code == 401 && strcmp(ri->xmsg, "Invalid credentials in Authorization header") == 0;
    if (bad_token || (code == 401 && has_token(p) && !ri->xcode[0]))
        return tsr_error_set(err, TSR_ERR_IO,
                             "%s: HTTP 401: the hub refused the token from %s (invalid or "
                             "expired): make a new one at %s/settings/tokens, or remove it to "
                             "read public repositories%s",
                             what, origin, endpoint_of(p), words);
    if (strcmp(ri->xcode, "RepoNotFound") == 0 || code == 401 || (code == 404 && what == repo)) {
        if (has_token(p))
            return tsr_error_set(err, TSR_ERR_IO,
                                 "%s: HTTP %ld: repository not found: check the name, or it is "
                                 "private and the account of the token (%s) cannot read it%s",
                                 what, code, origin, words);
        return tsr_error_set(err, TSR_ERR_IO,
                             "%s: HTTP %ld: repository not found: check the name; if it is "
                             "private, log in (hf auth login, or set HF_TOKEN)%s",
                             what, code, words);
    }
    if (code == 403)
        return tsr_error_set(err, TSR_ERR_IO,
                             "%s: HTTP 403: forbidden: the token (%s) may not read %s (a "
                             "fine-grained token needs read access to it)%s",
                             what, has_token(p) ? origin : "none", repo, words);
    if (code == 404)
        return tsr_error_set(err, TSR_ERR_IO, "%s: HTTP 404: not found%s", what, words);
    if (code == 429)
        return tsr_error_set(err, TSR_ERR_IO,
                             "%s: HTTP 429: the hub is rate-limiting this machine and still was "
                             "after %d retries; wait and run the same command again (finished "
                             "and partial files are kept)%s",
                             what, p->retries, words);
    if (code >= 500)
        return tsr_error_set(err, TSR_ERR_IO,
                             "%s: HTTP %ld: the hub is failing and still was after %d retries; "
                             "try again later (finished and partial files are kept)%s",
                             what, code, p->retries, words);
    return tsr_error_set(err, TSR_ERR_IO, "%s: HTTP %ld%s", what, code, words);
}

static int unreachable(CURLcode cc)
{
    return cc == CURLE_COULDNT_RESOLVE_HOST || cc == CURLE_COULDNT_CONNECT ||
           cc == CURLE_COULDNT_RESOLVE_PROXY || cc == CURLE_SSL_CONNECT_ERROR ||
           cc == CURLE_PEER_FAILED_VERIFICATION;
}

static int transient(CURLcode cc)
{
    return cc == CURLE_PARTIAL_FILE || cc == CURLE_RECV_ERROR || cc == CURLE_SEND_ERROR ||
           cc == CURLE_GOT_NOTHING || cc == CURLE_OPERATION_TIMEDOUT || cc == CURLE_HTTP2 ||
           cc == CURLE_HTTP2_STREAM;
}

static tsr_status unreachable_error(CURLcode cc, const tsr_pull_params *p, tsr_error *err)
{
    return tsr_error_set(err, TSR_ERR_IO,
                         "cannot reach %s: %s (offline? set HF_ENDPOINT or a proxy with "
                         "https_proxy)",
                         endpoint_of(p), curl_easy_strerror(cc));
}

static void sleep_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {
    }
}

/* The wait before retry number k (0-based), or -1 when no retry is left. */
static long retry_wait(const tsr_pull_params *p, int k, const resp_info *ri)
{
    if (k >= p->retries)
        return -1;
    if (ri->status == 429 || ri->status == 503) {
        if (ri->retry_after_s >= 0)
            return ri->retry_after_s * 1000 > MAX_WAIT_MS ? MAX_WAIT_MS : ri->retry_after_s * 1000;
    }
    long w = p->retry_base_ms > 0 ? p->retry_base_ms : 0;
    for (int i = 0; i < k && w < MAX_WAIT_MS; i++)
        w *= 2;
    return w > MAX_WAIT_MS ? MAX_WAIT_MS : w;
}

static int retryable_status(long s) { return s == 429 || s >= 500; }

/* After a failed try k of what: when a retry is left for this failure,
 * says so, waits, and returns 1. */
static int backoff(const tsr_pull_params *p, int k, CURLcode cc, const resp_info *ri,
                   const char *what)
{
    long wait = (transient(cc) || (cc == CURLE_OK && retryable_status(ri->status)))
                    ? retry_wait(p, k, ri)
                    : -1;
    if (wait < 0)
        return 0;
    char reason[128];
    if (cc != CURLE_OK)
        snprintf(reason, sizeof reason, "%s", curl_easy_strerror(cc));
    else
        snprintf(reason, sizeof reason, "HTTP %ld%s", ri->status,
                 ri->status == 429 ? ", rate-limited" : "");
    notice(p, "%s: %s; retrying in %.1f s (%d of %d)", what, reason, wait / 1000.0, k + 1,
           p->retries);
    sleep_ms(wait);
    return 1;
}

/* The error once no retry is left: the transfer's, or the hub's answer. */
static tsr_status give_up(CURLcode cc, int k, const resp_info *ri, const membuf *body,
                          const char *repo, const char *what, const char *rev,
                          const tsr_pull_params *p, tsr_error *err)
{
    if (cc != CURLE_OK)
        return tsr_error_set(err, TSR_ERR_IO, "%s: %s (after %d retries)", what,
                             curl_easy_strerror(cc), k);
    return http_error(ri, body, repo, what, rev, p, err);
}

/* GET url into memory, with retries. */
static tsr_status get_json(const char *url, const char *repo, const char *rev,
                           const tsr_pull_params *p, cJSON **out, tsr_error *err)
{
    *out = NULL;
    for (int k = 0;; k++) {
        resp_info ri = {0, -1, "", ""};
        membuf b = {NULL, 0, 0, MAX_META};
        CURL *c = new_handle(p, url, &ri);
        if (!c)
            return tsr_error_set(err, TSR_ERR_NOMEM, "cannot start libcurl");
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, to_mem);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
        CURLcode cc = curl_easy_perform(c);
        curl_easy_cleanup(c);
        if (cc == CURLE_OK && ri.status == 200) {
            *out = cJSON_Parse(b.data ? b.data : "");
            free(b.data);
            if (!*out)
                return tsr_error_set(err, TSR_ERR_FORMAT, "%s: the hub's answer is not JSON", url);
            return TSR_OK;
        }
        if (unreachable(cc)) {
            free(b.data);
            return unreachable_error(cc, p, err);
        }
        if (backoff(p, k, cc, &ri, repo)) {
            free(b.data);
            continue;
        }
        tsr_status rc = give_up(cc, k, &ri, &b, repo, repo, rev, p, err);
        free(b.data);
        return rc;
    }
}

typedef struct {
    FILE *f;
    const tsr_pull_params *p;
    const char *name;
    uint64_t base, total;
    resp_info *ri;
    membuf errbody;
} dl_state;

static size_t to_file(char *d, size_t sz, size_t nm, void *u)
{
    dl_state *s = u;
    if (s->ri->status != 200 && s->ri->status != 206)
        return to_mem(d, sz, nm, &s->errbody); /* an error page is not the file */
    return fwrite(d, sz, nm, s->f) * sz;
}

static int on_progress(void *u, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ut, curl_off_t un)
{
    (void)ut;
    (void)un;
    dl_state *s = u;
    if (s->p->progress && (s->ri->status == 200 || s->ri->status == 206))
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

/* Whether path holds the listed file: the LFS SHA-256, else the git blob id,
 * else the size. why receives the reason when not. */
static int verify(const char *path, const sibling *s, char *why, size_t cap)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        snprintf(why, cap, "missing");
        return 0;
    }
    if (s->size && (uint64_t)sb.st_size != s->size) {
        snprintf(why, cap, "%lld bytes where the hub lists %llu", (long long)sb.st_size,
                 (unsigned long long)s->size);
        return 0;
    }
    if (s->sha256) {
        char hex[65] = {0};
        if (!tsr_sha256_file(path, hex) || strcmp(hex, s->sha256) != 0) {
            snprintf(why, cap, "SHA-256 %s where the hub lists %s", hex[0] ? hex : "unreadable",
                     s->sha256);
            return 0;
        }
    } else if (s->blob) {
        char hex[41] = {0};
        if (!tsr_git_blob_sha1_file(path, hex) || strcmp(hex, s->blob) != 0) {
            snprintf(why, cap, "git blob id %s where the hub lists %s",
                     hex[0] ? hex : "unreadable", s->blob);
            return 0;
        }
    }
    return 1;
}

/* A CTranslate2 model.bin is read as one before it is kept. */
static tsr_status check_ct2(const char *path, const char *file, tsr_error *err)
{
    tsr_st *st = NULL;
    tsr_error e = {0};
    if (tsr_st_open_ct2(path, &st, &e) == TSR_OK) {
        tsr_st_close(st);
        return TSR_OK;
    }
    remove(path);
    return tsr_error_set(err, TSR_ERR_FORMAT,
                         "%s is not a CTranslate2 model (%s); it was deleted without being "
                         "unpickled: tessera never loads pickle checkpoints",
                         file, e.msg);
}

static tsr_status download(const char *repo, const char *commit, const sibling *sib,
                           const char *dir, const tsr_pull_params *p, tsr_error *err)
{
    const char *file = sib->name;
    char dst[4096], part[4200], why[300];
    snprintf(dst, sizeof dst, "%s/%s", dir, file);
    snprintf(part, sizeof part, "%s.part", dst);
    struct stat sb;
    if (stat(dst, &sb) == 0) {
        if (verify(dst, sib, why, sizeof why)) {
            if (p->progress)
                p->progress(p->user, file, (uint64_t)sb.st_size, (uint64_t)sb.st_size);
            return TSR_OK; /* complete and current from an earlier pull */
        }
        notice(p, "%s: the copy here is not the file at commit %.12s (%s); downloading it again",
               file, commit, why);
        remove(dst);
    }
    char *slash = strrchr(dst, '/');
    *slash = 0;
    tsr_mkdirs(dst);
    *slash = '/';
    int restarted = 0, part_checked = 0;
    for (int k = 0;;) {
        uint64_t have = stat(part, &sb) == 0 ? (uint64_t)sb.st_size : 0;
        if (sib->size && have > sib->size) {
            remove(part);
            have = 0;
        }
        if (sib->size && have == sib->size) {
            /* complete already (interrupted while hashing or renaming): verify it */
            if (part_checked)
                break;
            if (verify(part, sib, why, sizeof why)) {
                part_checked = 2; /* verified here */
                break;
            }
            notice(p, "%s: the complete %s.part here does not verify (%s); downloading it again",
                   file, file, why);
            remove(part);
            part_checked = 1;
            continue;
        }
        resp_info ri = {0, -1, "", ""};
        CURL *c = new_handle(p, "", &ri);
        char *esc = c ? escape_path(c, file) : NULL;
        size_t ul = strlen(endpoint_of(p)) + strlen(repo) + strlen(commit) +
                    (esc ? strlen(esc) : 0) + 32;
        char *url = malloc(ul);
        if (!c || !esc || !url) {
            curl_easy_cleanup(c);
            free(esc);
            free(url);
            return tsr_error_set(err, TSR_ERR_NOMEM, "out of memory");
        }
        snprintf(url, ul, "%s/%s/resolve/%s/%s", endpoint_of(p), repo, commit, esc);
        free(esc);
        curl_easy_setopt(c, CURLOPT_URL, url);
        free(url);
        dl_state s = {fopen(part, have ? "ab" : "wb"), p, file, have, sib->size, &ri,
                      {NULL, 0, 0, MAX_ERRBODY}};
        if (!s.f) {
            curl_easy_cleanup(c);
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
        curl_easy_cleanup(c);
        int close_bad = fclose(s.f) != 0;
        if (cc == CURLE_OK && (ri.status == 200 || ri.status == 206)) {
            free(s.errbody.data);
            if (close_bad)
                return tsr_error_set(err, TSR_ERR_IO, "%s: write failed (disk full?)", part);
            break;
        }
        if ((cc == CURLE_RANGE_ERROR || ri.status == 416) && have && !restarted) {
            /* the server cannot resume this one: start it over, once */
            free(s.errbody.data);
            notice(p, "%s: the server cannot resume; downloading it from the start", file);
            remove(part);
            restarted = 1;
            continue;
        }
        if (unreachable(cc)) {
            free(s.errbody.data);
            return unreachable_error(cc, p, err);
        }
        if (backoff(p, k, cc, &ri, file)) {
            free(s.errbody.data);
            k++;
            continue;
        }
        char what[4400];
        struct stat ps;
        if (stat(part, &ps) == 0 && ps.st_size > 0)
            snprintf(what, sizeof what,
                     "%s (partial download kept in %s; run the same command again to resume)",
                     file, part);
        else
            snprintf(what, sizeof what, "%s", file);
        tsr_status rc = give_up(cc, k, &ri, &s.errbody, repo, what, commit, p, err);
        free(s.errbody.data);
        return rc;
    }
    if (part_checked != 2 && !verify(part, sib, why, sizeof why)) {
        remove(part);
        return tsr_error_set(err, TSR_ERR_FORMAT,
                             "%s: %s%s; the download was deleted, run the same command to fetch "
                             "it again",
                             file, sib->sha256 ? "SHA-256 mismatch: " : "", why);
    }
    if (strcmp(file, "model.bin") == 0 && check_ct2(part, file, err) != TSR_OK)
        return err ? err->code : TSR_ERR_FORMAT;
    if (rename(part, dst) != 0)
        return tsr_error_set(err, TSR_ERR_IO, "%s: cannot rename into place (%s)", dst,
                             strerror(errno));
    return TSR_OK;
}

/* curl_global_init is not thread-safe: once per process. */
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static int curl_ready;

static void curl_init_once(void) { curl_ready = curl_global_init(CURL_GLOBAL_DEFAULT) == 0; }

static sibling *find_sib(sibling *s, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(s[i].name, name) == 0)
            return &s[i];
    return NULL;
}

/* Marks the shards that the downloaded index names. */
static tsr_status select_shards(const char *dir, sibling *s, int n, tsr_error *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    tsr_source src;
    tsr_source_dir(&src, dir);
    cJSON *root = tsr_src_json(&src, "model.safetensors.index.json", MAX_META, err);
    if (!root)
        return err ? err->code : TSR_ERR_FORMAT;
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    tsr_status rc = cJSON_IsObject(map) ? TSR_OK
                                        : tsr_error_set(err, TSR_ERR_FORMAT,
                                                        "%s: no \"weight_map\" object", path);
    int shards = 0;
    for (const cJSON *it = rc == TSR_OK ? map->child : NULL; it && rc == TSR_OK; it = it->next) {
        sibling *sh = cJSON_IsString(it) ? find_sib(s, n, it->valuestring) : NULL;
        if (!sh)
            rc = tsr_error_set(err, TSR_ERR_FORMAT,
                               "%s names the shard '%s' for '%s', which the repository does not "
                               "have",
                               path, cJSON_IsString(it) ? it->valuestring : "?", it->string);
        else if (!sh->get)
            sh->get = 1, shards++;
    }
    cJSON_Delete(root);
    if (rc == TSR_OK && !shards)
        rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s names no shards", path);
    return rc;
}

/* Removes weight files of an earlier commit that this one does not use, so
 * that the loader cannot pick them up. */
static void remove_stale(const char *dir, sibling *s, int n, const tsr_pull_params *p)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        const char *f = e->d_name;
        int weights = ends_with(f, ".safetensors") || strcmp(f, "model.bin") == 0 ||
                      strcmp(f, "model.safetensors.index.json") == 0;
        if (!weights)
            continue;
        sibling *sb = find_sib(s, n, f);
        if (sb && sb->get)
            continue;
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", dir, f);
        if (remove(path) == 0)
            notice(p, "%s: removed, the pulled commit does not use it", f);
    }
    if (d)
        closedir(d);
}

static tsr_status write_mark(const char *dir, const char *repo, const char *rev,
                             const char *commit, tsr_error *err)
{
    char mark[4200], tmp[4300];
    snprintf(mark, sizeof mark, "%s/%s", dir, COMPLETE_MARK);
    snprintf(tmp, sizeof tmp, "%s.tmp", mark);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "repo", repo);
    cJSON_AddStringToObject(o, "revision", rev);
    if (commit)
        cJSON_AddStringToObject(o, "commit", commit);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    FILE *m = s ? fopen(tmp, "wb") : NULL;
    int ok = m && fprintf(m, "%s\n", s) > 0;
    if (m)
        ok = (fflush(m) == 0 && fsync(fileno(m)) == 0 && fclose(m) == 0) && ok;
    free(s);
    if (!ok || rename(tmp, mark) != 0) {
        remove(tmp);
        return tsr_error_set(err, TSR_ERR_IO, "%s: cannot write", mark);
    }
    return TSR_OK;
}

tsr_status tsr_pull(const char *repo_id, const tsr_pull_params *params, char *out_dir, size_t cap,
                    tsr_error *err)
{
    tsr_pull_params p = params ? *params : tsr_pull_default_params();
    if (p.retries < 0)
        p.retries = 0;
    if (p.retries > 20)
        p.retries = 20;
    const char *rev = p.revision ? p.revision : "main";
    tsr_status rc = tsr_model_cache_path(repo_id, rev, p.cache_dir, out_dir, cap, err);
    if (rc != TSR_OK)
        return rc;
    pthread_once(&curl_once, curl_init_once);
    if (!curl_ready)
        return tsr_error_set(err, TSR_ERR_IO, "cannot initialise libcurl");
    CURL *esc_h = curl_easy_init();
    char *rev_esc = esc_h ? curl_easy_escape(esc_h, rev, 0) : NULL; /* refs/pr/1: refs%2Fpr%2F1 */
    curl_easy_cleanup(esc_h);
    if (!rev_esc)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of memory");
    char url[4096];
    snprintf(url, sizeof url, "%s/api/models/%s/revision/%s?blobs=true", endpoint_of(&p), repo_id,
             rev_esc);
    curl_free(rev_esc);
    cJSON *root = NULL;
    rc = get_json(url, repo_id, rev, &p, &root, err);
    if (rc != TSR_OK)
        return rc;
    const cJSON *sib = cJSON_GetObjectItemCaseSensitive(root, "siblings");
    const cJSON *sha = cJSON_GetObjectItemCaseSensitive(root, "sha");
    if (!cJSON_IsArray(sib)) {
        cJSON_Delete(root);
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: the hub's answer has no file list", url);
    }
    /* The commit: every file comes from it. A mirror that gives none is used
     * by revision name, and the local copy records no commit. */
    const char *commit = cJSON_IsString(sha) && is_commit(sha->valuestring) ? sha->valuestring
                                                                           : NULL;
    if (!commit)
        notice(&p, "%s: the hub named no commit for '%s'; files are fetched by that name", repo_id,
               rev);
    int n = cJSON_GetArraySize(sib), m = 0, n_pickle = 0;
    sibling *s = calloc((size_t)(n ? n : 1), sizeof *s);
    if (!s) {
        cJSON_Delete(root);
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of memory");
    }
    for (const cJSON *e = sib->child; e; e = e->next) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(e, "rfilename");
        if (!cJSON_IsString(f) || !safe_path(f->valuestring))
            continue;
        n_pickle += is_pickle(f->valuestring) && strcmp(f->valuestring, "model.bin") != 0;
        const cJSON *lfs = cJSON_GetObjectItemCaseSensitive(e, "lfs");
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(lfs, "sha256");
        const cJSON *blob = cJSON_GetObjectItemCaseSensitive(e, "blobId");
        const cJSON *size = cJSON_GetObjectItemCaseSensitive(lfs ? lfs : e, "size");
        sibling *x = &s[m++];
        x->name = f->valuestring;
        x->size = cJSON_IsNumber(size) && size->valuedouble >= 0 ? (uint64_t)size->valuedouble : 0;
        x->sha256 = cJSON_IsString(h) && strlen(h->valuestring) == 64 ? h->valuestring : NULL;
        x->blob = !lfs && cJSON_IsString(blob) && is_commit(blob->valuestring) ? blob->valuestring
                                                                               : NULL;
        x->get = wanted_small(x->name);
    }
    /* The weights, as the loader looks for them. */
    sibling *w = find_sib(s, m, "model.safetensors"), *index = NULL;
    if (!w) {
        index = find_sib(s, m, "model.safetensors.index.json");
        if (!index)
            w = find_sib(s, m, "open_clip_model.safetensors");
        if (!index && !w)
            w = find_sib(s, m, "model.bin");
    }
    if (!w && !index) {
        int n_st = 0;
        for (int i = 0; i < m; i++)
            n_st += ends_with(s[i].name, ".safetensors");
        free(s);
        cJSON_Delete(root);
        if (n_st)
            return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                                 "%s has .safetensors files but neither model.safetensors nor "
                                 "model.safetensors.index.json, so tessera cannot tell which are "
                                 "the model's weights",
                                 repo_id);
        return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                             "%s has no .safetensors weights%s; tessera never downloads pickle "
                             "files, since loading them can run arbitrary code",
                             repo_id, n_pickle ? " (only pickle checkpoints)" : "");
    }
    if (w)
        w->get = 1;
    if (index)
        index->get = 1;
    tsr_mkdirs(out_dir);
    char mark[4200];
    snprintf(mark, sizeof mark, "%s/%s", out_dir, COMPLETE_MARK);
    remove(mark);
    const char *at = commit ? commit : rev;
    rc = TSR_OK;
    if (index) { /* first the index, then the shards it names */
        rc = download(repo_id, at, index, out_dir, &p, err);
        if (rc == TSR_OK)
            rc = select_shards(out_dir, s, m, err);
    }
    for (int i = 0; i < m && rc == TSR_OK; i++)
        if (s[i].get && &s[i] != index)
            rc = download(repo_id, at, &s[i], out_dir, &p, err);
    if (rc == TSR_OK) {
        remove_stale(out_dir, s, m, &p);
        rc = write_mark(out_dir, repo_id, rev, commit, err);
    }
    free(s);
    cJSON_Delete(root);
    return rc;
}
