/* `tessera pull` against a local stand-in for the hub (hub_server: a hub and
 * a CDN port on 127.0.0.1 that behave as huggingface.co does for
 * huggingface_hub; tests/reference/check_hub_standin.py runs huggingface_hub
 * itself against it). One check per case of issue 15: files come from one
 * resolved commit, which is recorded; a same-size update is noticed; a push
 * during a pull does not mix commits; a complete .part is verified, not
 * re-requested; a corrupted regular file is replaced; retries after a
 * dropped connection, 429 (Retry-After) and 503; a CDN without Range; the
 * token is not sent to the CDN; gated, mistyped, private and forbidden
 * repositories and bad tokens each get their own message; the token file;
 * a model already in the Hugging Face cache; a sharded repository with an
 * extra variant; CTranslate2 repositories and a model.bin that is a pickle;
 * refs/pr/N; unreachable endpoints and usage errors. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#define MODEL TSR_FIXTURES "/models/clip-tiny-a"

static char tmp[64], cache[256], logpath[128], out_path[128], err_path[128];
static char *out_text, *err_text;
static int port;

static int run(const char *env, const char *args)
{
    char cmd[4096], home[200] = "";
    int no_hf_home = env && strcmp(env, "-u HF_HOME") == 0;
    if (no_hf_home)
        env = NULL;
    else
        snprintf(home, sizeof home, "HF_HOME=%s/hf", tmp);
    snprintf(cmd, sizeof cmd,
             "env -u HF_TOKEN -u HUGGING_FACE_HUB_TOKEN -u HF_TOKEN_PATH -u HF_HUB_CACHE "
             "-u HUGGINGFACE_HUB_CACHE -u XDG_CACHE_HOME -u HF_HOME HOME=%s/home %s "
             "HF_ENDPOINT=http://127.0.0.1:%d TESSERA_CACHE_DIR=%s %s %s %s >%s 2>%s </dev/null",
             tmp, home, port, cache, env ? env : "", TSR_CLI, args, out_path, err_path);
    int st = system(cmd);
    free(out_text);
    free(err_text);
    out_text = slurp(out_path);
    err_text = slurp(err_path);
    if (!out_text)
        out_text = strdup("");
    if (!err_text)
        err_text = strdup("");
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* delta: 0 for the fixture file itself, 1 for commit 1 of the stand-in (the
 * byte 4 from the end incremented). */
static int same_as(const char *p, const char *ref, int delta)
{
    size_t a, b;
    unsigned char *x = read_bytes(p, &a), *y = read_bytes(ref, &b);
    int same = x && y && a == b && b >= 4;
    if (same && delta)
        y[b - 4]++;
    same = same && memcmp(x, y, a) == 0;
    free(x);
    free(y);
    return same;
}

static void path_of(char *out, size_t cap, const char *repo, const char *file)
{
    snprintf(out, cap, "%s/models/test--%s/main/%s", cache, repo, file);
}

/* The server's log from offset on (requests since a point). */
static long log_mark(void)
{
    struct stat sb;
    return stat(logpath, &sb) == 0 ? (long)sb.st_size : 0;
}

static char *log_since(long mark)
{
    size_t n;
    unsigned char *b = read_bytes(logpath, &n);
    if (!b)
        return strdup("");
    b[n] = 0;
    char *s = strdup((char *)b + (mark < (long)n ? mark : (long)n));
    free(b);
    return s;
}

/* GET /admin/... on the stand-in. */
static void admin(const char *path)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(s, (struct sockaddr *)&a, sizeof a) == 0) {
        char req[512];
        int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
        if (send(s, req, (size_t)n, 0) == n) {
            char buf[512];
            while (recv(s, buf, sizeof buf, 0) > 0) {
            }
        }
    }
    close(s);
}

/* The "commit" of a --json answer; "" when absent. */
static void json_commit(char out[41])
{
    out[0] = 0;
    cJSON *o = cJSON_Parse(out_text);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "commit");
    if (cJSON_IsString(c) && strlen(c->valuestring) == 40)
        memcpy(out, c->valuestring, 41);
    cJSON_Delete(o);
}

/* Every /resolve/ request of repo in log names commit. */
static int all_resolves_at(const char *log, const char *repo, const char *commit, int *n)
{
    char pre[128];
    snprintf(pre, sizeof pre, " /%s/resolve/", repo);
    *n = 0;
    for (const char *p = log; (p = strstr(p, pre)); p++) {
        (*n)++;
        if (strncmp(p + strlen(pre), commit, 40) != 0 || p[strlen(pre) + 40] != '/')
            return 0;
    }
    return *n > 0;
}

/* Rebuilds the Hugging Face cache that huggingface_hub's snapshot_download
 * wrote for test/tiny (tests/fixtures/hub/hf_cache_layout.json, made by
 * tests/reference/check_hub_standin.py) under hub/models--test--tiny. */
static int build_hf_cache(const char *hub, char commit[41])
{
    size_t n;
    unsigned char *t = read_bytes(TSR_HUB_FIXTURES "/hf_cache_layout.json", &n);
    if (!t)
        return 0;
    t[n] = 0;
    cJSON *o = cJSON_Parse((char *)t);
    free(t);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "commit");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "entries");
    int ok = cJSON_IsString(c) && cJSON_IsArray(e);
    if (ok)
        snprintf(commit, 41, "%s", c->valuestring);
    char base[512], cmd[2200];
    snprintf(base, sizeof base, "%s/models--test--tiny", hub);
    snprintf(cmd, sizeof cmd, "mkdir -p %s/blobs %s/refs %s/snapshots/%s", base, base, base,
             ok ? commit : "x");
    ok = ok && system(cmd) == 0;
    for (const cJSON *it = ok ? e->child : NULL; it && ok; it = it->next) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(it, "path");
        const cJSON *link = cJSON_GetObjectItemCaseSensitive(it, "link");
        const cJSON *src = cJSON_GetObjectItemCaseSensitive(it, "content_of");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(it, "text");
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", base, p->valuestring);
        if (cJSON_IsString(link)) {
            ok = symlink(link->valuestring, path) == 0;
        } else if (cJSON_IsString(src)) {
            char from[600];
            snprintf(from, sizeof from, "%s/%s", MODEL, src->valuestring);
            unsigned char *d = read_bytes(from, &n);
            ok = d != NULL;
            if (d)
                write_bytes(path, d, n);
            free(d);
        } else if (cJSON_IsString(text)) {
            write_bytes(path, text->valuestring, strlen(text->valuestring));
        }
    }
    cJSON_Delete(o);
    return ok;
}

int main(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/tessera-pull-XXXXXX");
    if (!mkdtemp(tmp))
        return 1;
    snprintf(cache, sizeof cache, "%s/cache", tmp);
    snprintf(logpath, sizeof logpath, "%s/server.log", tmp);
    snprintf(out_path, sizeof out_path, "%s/stdout", tmp);
    snprintf(err_path, sizeof err_path, "%s/stderr", tmp);

    int pfd[2];
    if (pipe(pfd) != 0)
        return 1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 1);
        close(pfd[0]);
        execl(TSR_HUB_SERVER, TSR_HUB_SERVER, logpath, MODEL, TSR_HUB_FIXTURES "/sharded",
              TSR_HUB_FIXTURES "/ct2", TSR_FIXTURES "/models/openclip-tiny-a", (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    char buf[32] = {0};
    ssize_t r = read(pfd[0], buf, sizeof buf - 1);
    port = r > 0 ? atoi(buf) : 0;
    check(port > 0, "local hub on 127.0.0.1:%d", port);
    if (port <= 0)
        return finish();

    char p[512], q[600], mark[512], commit[41], c2[41];
    long m0;
    char *log;
    int n;

    /* ---- one commit, recorded ---- */
    m0 = log_mark();
    int rc = run(NULL, "pull --json test/tiny");
    json_commit(commit);
    path_of(p, sizeof p, "tiny", "model.safetensors");
    path_of(mark, sizeof mark, "tiny", ".tessera-complete");
    check(rc == 0 && same_as(p, MODEL "/model.safetensors", 0) && exists(mark) && commit[0],
          "pull test/tiny: exit %d, weights identical, marked complete, commit %s %s", rc, commit,
          rc ? err_text : "");
    log = log_since(m0);
    check(all_resolves_at(log, "test/tiny", commit, &n) && n == 6,
          "all %d files were fetched from /resolve/%.12s..., the commit the revision API named",
          n, commit);
    check(!strstr(log, "pytorch_model.bin") && !strstr(log, "escape"),
          "the pickle and the unsafe path in the file list were never requested");
    check(strstr(log, "/api/models/test/tiny/revision/main?blobs=true") != NULL,
          "the revision was resolved with blobs=true");
    free(log);
    char *mk = slurp(mark);
    check(mk && strstr(mk, commit), "the local copy records the commit: %s", mk ? mk : "(none)");
    free(mk);
    path_of(p, sizeof p, "tiny", "tokenizer.json");
    path_of(q, sizeof q, "tiny", "preprocessor_config.json");
    check(exists(p) && exists(q), "tokenizer and preprocessor files fetched");
    rc = run(NULL, "tokenize --model test/tiny 'a photo of a cat.'");
    check(rc == 0 && strncmp(out_text, "1512 320 1125 539 320 66 536 269 1513", 37) == 0,
          "--model test/tiny finds the pulled model");
    rc = run(NULL, "embed --verbose --text --model test/tiny 'a'");
    if (rc == 0 || !strstr(err_text, "no OpenCL"))
        check(rc == 0 && strstr(err_text, "test/tiny is commit") && strstr(err_text, commit),
              "embed --verbose says which commit it loads: %s", err_text);
    m0 = log_mark();
    rc = run(NULL, "pull --json test/tiny");
    log = log_since(m0);
    json_commit(c2);
    check(rc == 0 && strcmp(c2, commit) == 0 && !strstr(log, "/resolve/"),
          "a second pull verifies the files here and downloads nothing");
    free(log);

    /* ---- verification of files already here ---- */
    path_of(p, sizeof p, "tiny", "tokenizer_config.json");
    size_t len;
    unsigned char *d = read_bytes(p, &len);
    if (d && len > 10) {
        d[len / 2] = d[len / 2] == 'a' ? 'b' : 'a'; /* same size, different content */
        write_bytes(p, d, len);
    }
    free(d);
    m0 = log_mark();
    rc = run("", "pull --verbose test/tiny");
    log = log_since(m0);
    check(rc == 0 && same_as(p, MODEL "/tokenizer_config.json", 0) &&
              count_str(log, "/resolve/") == 1 && strstr(err_text, "git blob id"),
          "a regular file changed here (same size) fails its git blob id and is fetched again: %s",
          err_text);
    free(log);
    /* a complete .part (interrupted while hashing or renaming) */
    path_of(p, sizeof p, "tiny", "model.safetensors");
    snprintf(q, sizeof q, "%s.part", p);
    rename(p, q);
    remove(mark);
    m0 = log_mark();
    rc = run(NULL, "pull test/tiny");
    log = log_since(m0);
    check(rc == 0 && same_as(p, MODEL "/model.safetensors", 0) && !exists(q) &&
              !strstr(log, "model.safetensors") && !strstr(log, "416"),
          "a complete .part is verified and renamed, with no request for it (exit %d) %s", rc,
          rc ? err_text : "");
    free(log);
    /* a .part of the right size with the wrong bytes */
    d = read_bytes(p, &len);
    if (d) {
        memset(d + len / 2, 0x55, len - len / 2);
        write_bytes(q, d, len);
    }
    free(d);
    remove(p);
    rc = run(NULL, "pull test/tiny");
    check(rc == 0 && same_as(p, MODEL "/model.safetensors", 0) && !exists(q),
          "a complete .part with wrong bytes fails verification and is downloaded again: exit %d",
          rc);

    /* ---- a same-size update on the hub ---- */
    rc = run(NULL, "pull --json test/update");
    json_commit(commit);
    path_of(p, sizeof p, "update", "model.safetensors");
    int first = rc == 0 && same_as(p, MODEL "/model.safetensors", 0);
    admin("/admin/push/test/update");
    char stray[600];
    path_of(stray, sizeof stray, "update", "model-00001-of-00002.safetensors");
    write_bytes(stray, "x", 1);
    rc = run(NULL, "pull --json --verbose test/update");
    json_commit(c2);
    check(first && rc == 0 && same_as(p, MODEL "/model.safetensors", 1) &&
              strcmp(commit, c2) != 0 && strstr(err_text, "not the file at commit"),
          "after a push of same-size weights a re-pull replaces them (commit %.12s -> %.12s): %s",
          commit, c2, err_text);
    check(!exists(stray), "weight files the pulled commit does not use are removed");

    /* ---- a push during the pull ---- */
    m0 = log_mark();
    rc = run(NULL, "pull --json test/moving");
    json_commit(commit);
    log = log_since(m0);
    path_of(p, sizeof p, "moving", "model.safetensors");
    check(rc == 0 && same_as(p, MODEL "/model.safetensors", 0) &&
              all_resolves_at(log, "test/moving", commit, &n),
          "main moved during the pull: all %d files still come from commit %.12s, none from the "
          "new one",
          n, commit);
    free(log);
    rc = run(NULL, "pull --json test/moving");
    json_commit(c2);
    check(rc == 0 && strcmp(c2, commit) != 0 && same_as(p, MODEL "/model.safetensors", 1),
          "the next pull gets the new commit %.12s", c2);

    /* ---- refs/pr/1 ---- */
    m0 = log_mark();
    rc = run(NULL, "pull --json --revision refs/pr/1 test/tiny");
    log = log_since(m0);
    snprintf(p, sizeof p, "%s/models/test--tiny/refs_pr_1/model.safetensors", cache);
    check(rc == 0 && strstr(log, "/revision/refs%2Fpr%2F1?") && same_as(p, MODEL "/model.safetensors", 1),
          "--revision refs/pr/1 is percent-encoded and gives that commit's files %s",
          rc ? err_text : "");
    free(log);
    rc = run(NULL, "tokenize --model test/tiny@refs/pr/1 'a'");
    check(rc == 0, "--model test/tiny@refs/pr/1 finds it");
    rc = run(NULL, "pull --revision nope test/tiny");
    check(rc == 1 && strstr(err_text, "revision 'nope' not found"), "unknown revision: %s",
          err_text);

    /* ---- dropped connections, retries ---- */
    m0 = log_mark();
    rc = run(NULL, "pull test/flaky");
    log = log_since(m0);
    path_of(p, sizeof p, "flaky", "model.safetensors");
    check(rc == 0 && strstr(log, "range=240634") && same_as(p, MODEL "/model.safetensors", 0),
          "a dropped connection is resumed in the same run with a Range request (exit %d)", rc);
    free(log);
    admin("/admin/reset/test/flaky");
    snprintf(cache, sizeof cache, "%s/cache2", tmp);
    rc = run(NULL, "pull --retries 0 test/flaky");
    path_of(p, sizeof p, "flaky", "model.safetensors");
    snprintf(q, sizeof q, "%s.part", p);
    struct stat sb;
    long long part = stat(q, &sb) == 0 ? (long long)sb.st_size : -1;
    path_of(mark, sizeof mark, "flaky", ".tessera-complete");
    check(rc == 1 && strstr(err_text, "partial download kept") && part > 0 && !exists(p) &&
              !exists(mark),
          "--retries 0: exit %d, %lld bytes kept in .part, no final file, not complete", rc, part);
    rc = run(NULL, "tokenize --model test/flaky 'a'");
    check(rc == 1 && strstr(err_text, "has not been pulled"),
          "a partial pull does not look complete to --model");
    m0 = log_mark();
    rc = run(NULL, "pull test/flaky");
    log = log_since(m0);
    char want[128];
    snprintf(want, sizeof want, "range=%lld", part);
    check(rc == 0 && strstr(log, want) && same_as(p, MODEL "/model.safetensors", 0) &&
              !exists(q) && exists(mark),
          "the next run resumes from byte %lld; the result is identical", part);
    free(log);
    snprintf(cache, sizeof cache, "%s/cache", tmp);

    m0 = log_mark();
    rc = run(NULL, "pull --verbose test/norange");
    log = log_since(m0);
    path_of(p, sizeof p, "norange", "model.safetensors");
    check(rc == 0 && same_as(p, MODEL "/model.safetensors", 0) &&
              count_str(log, "cdn GET /lfs-norange/") == 3 && strstr(err_text, "cannot resume"),
          "a CDN without Range support: the file is fetched again from the start (exit %d)", rc);
    free(log);

    m0 = log_mark();
    rc = run(NULL, "pull --verbose test/busy");
    log = log_since(m0);
    long t1 = -1, t2 = -1;
    const char *a1 = strstr(log, "/api/models/test/busy/");
    const char *a2 = a1 ? strstr(a1 + 1, "/api/models/test/busy/") : NULL;
    if (a1 && a2) { /* "t=MS hub GET ..." */
        const char *l1 = a1, *l2 = a2;
        while (l1 > log && l1[-1] != '\n')
            l1--;
        while (l2 > log && l2[-1] != '\n')
            l2--;
        t1 = atol(l1 + 2);
        t2 = atol(l2 + 2);
    }
    check(rc == 0 && strstr(log, "-> 429") && t2 - t1 >= 900 && strstr(err_text, "429"),
          "429 with Retry-After: 1, then success: retried after %ld ms (exit %d)", t2 - t1, rc);
    free(log);
    m0 = log_mark();
    rc = run(NULL, "pull test/unavailable");
    log = log_since(m0);
    check(rc == 0 && count_str(log, "-> 503") == 2, "503 twice, then success: exit %d", rc);
    free(log);
    admin("/admin/reset/test/unavailable");
    snprintf(cache, sizeof cache, "%s/cache3", tmp);
    rc = run(NULL, "pull --retries 1 test/unavailable");
    check(rc == 1 && strstr(err_text, "HTTP 503") && strstr(err_text, "after 1 retries"),
          "503 twice with --retries 1: %s", err_text);
    snprintf(cache, sizeof cache, "%s/cache", tmp);

    /* ---- checksum failure ---- */
    rc = run(NULL, "pull test/corrupt");
    path_of(p, sizeof p, "corrupt", "model.safetensors");
    snprintf(q, sizeof q, "%s.part", p);
    check(rc == 1 && strstr(err_text, "SHA-256 mismatch") && !exists(p) && !exists(q),
          "checksum mismatch: exit %d, nothing left behind", rc);

    /* ---- access: private, gated, forbidden, mistyped, tokens ---- */
    rc = run(NULL, "pull test/missing");
    check(rc == 1 && strstr(err_text, "HTTP 401") && strstr(err_text, "repository not found") &&
              strstr(err_text, "check the name"),
          "a mistyped repository (401 without a token) is 'not found', not a token problem: %s",
          err_text);
    rc = run("HF_TOKEN=s3cret", "pull test/missing");
    check(rc == 1 && strstr(err_text, "HTTP 404") && strstr(err_text, "repository not found"),
          "the same with a token (404): %s", err_text);
    rc = run(NULL, "pull test/private");
    check(rc == 1 && strstr(err_text, "log in") && strstr(err_text, "HF_TOKEN"),
          "a private repository without a token: %s", err_text);
    rc = run("HF_TOKEN=wrong", "pull test/private");
    check(rc == 1 && strstr(err_text, "refused the token from HF_TOKEN") &&
              strstr(err_text, "Invalid credentials"),
          "a wrong token, with the hub's own message: %s", err_text);
    m0 = log_mark();
    rc = run("HF_TOKEN=s3cret", "pull test/private");
    log = log_since(m0);
    check(rc == 0 && strstr(log, "cdn GET") && !strstr(log, "auth=1 -> 400"),
          "the right token works, and is not sent to the CDN (exit %d) %s", rc,
          rc ? err_text : "");
    free(log);
    rc = run(NULL, "pull test/gated");
    check(rc == 1 && strstr(err_text, "gated") && strstr(err_text, "accept its terms") &&
              strstr(err_text, "/test/gated") && strstr(err_text, "log in"),
          "gated without a token: %s", err_text);
    rc = run("HF_TOKEN=s3cret", "pull test/gated");
    check(rc == 1 && strstr(err_text, "HTTP 403") && strstr(err_text, "not been granted") &&
              strstr(err_text, "accept its terms"),
          "gated, terms not accepted: %s", err_text);
    rc = run("HF_TOKEN=s3cret", "pull test/forbidden");
    check(rc == 1 && strstr(err_text, "HTTP 403: forbidden") &&
              strstr(err_text, "fine-grained token does not have"),
          "a token without permission for the repository: %s", err_text);

    /* ---- the token file ---- */
    snprintf(p, sizeof p, "mkdir -p %s/hf %s/home/.cache/huggingface", tmp, tmp);
    if (system(p) != 0)
        printf("mkdir failed\n");
    snprintf(p, sizeof p, "%s/hf/token", tmp);
    write_bytes(p, "  s3cret\n", 9);
    rc = run(NULL, "pull test/private");
    check(rc == 0, "the token from $HF_HOME/token (written by hf auth login): exit %d %s", rc,
          rc ? err_text : "");
    rc = run("HF_TOKEN=wrong", "pull test/private");
    check(rc == 1 && strstr(err_text, "from HF_TOKEN"), "HF_TOKEN comes before the token file");
    remove(p);
    snprintf(p, sizeof p, "%s/elsewhere-token", tmp);
    write_bytes(p, "wrong\n", 6);
    snprintf(q, sizeof q, "HF_TOKEN_PATH=%s", p);
    rc = run(q, "pull test/private");
    check(rc == 1 && strstr(err_text, "elsewhere-token"),
          "HF_TOKEN_PATH is read, and a message names the file: %s", err_text);
    snprintf(p, sizeof p, "%s/home/.cache/huggingface/token", tmp);
    write_bytes(p, "s3cret", 6);
    rc = run("-u HF_HOME", "pull test/private");
    check(rc == 0, "without HF_HOME: ~/.cache/huggingface/token (exit %d)", rc);
    remove(p);

    /* ---- pickle-only, CTranslate2, a model.bin that is a pickle ---- */
    rc = run(NULL, "pull test/pickle");
    check(rc == 1 && strstr(err_text, "never downloads pickle"), "pickle-only repository: %s",
          err_text);
    rc = run(NULL, "pull test/ct2");
    path_of(p, sizeof p, "ct2", "model.bin");
    path_of(q, sizeof q, "ct2", "vocabulary.json");
    char cfg[600];
    path_of(cfg, sizeof cfg, "ct2", "preprocessor_config.json");
    check(rc == 0 && same_as(p, TSR_HUB_FIXTURES "/ct2/model.bin", 0) && exists(q) && exists(cfg),
          "a CTranslate2 repository: model.bin (checked as one), vocabulary.json, "
          "preprocessor_config.json: exit %d %s",
          rc, rc ? err_text : "");
    /* open_clip's layout: its safetensors, config and tokenizer; never the pickle */
    long oc_mark = log_mark();
    rc = run(NULL, "pull test/openclip");
    path_of(p, sizeof p, "openclip", "open_clip_model.safetensors");
    path_of(q, sizeof q, "openclip", "open_clip_config.json");
    char vocab[600], pk[600];
    path_of(vocab, sizeof vocab, "openclip", "vocab.json");
    path_of(pk, sizeof pk, "openclip", "open_clip_pytorch_model.bin");
    char *oc_log = log_since(oc_mark);
    check(rc == 0 &&
              same_as(p, TSR_FIXTURES "/models/openclip-tiny-a/open_clip_model.safetensors", 0) &&
              exists(q) && exists(vocab) && !exists(pk) && oc_log &&
              !strstr(oc_log, "open_clip_pytorch_model.bin"),
          "an open_clip repository: open_clip_model.safetensors, open_clip_config.json, "
          "vocab.json, and no request for its pickle: exit %d %s",
          rc, rc ? err_text : "");
    free(oc_log);
    if (rc == 0) {
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "embed --model %s/models/test--openclip/main --text cat", cache);
        rc = run(NULL, cmd);
        check(rc == 0, "the pulled open_clip model embeds a text: exit %d %s", rc,
              rc ? err_text : "");
    }
    rc = run(NULL, "pull test/fakebin");
    path_of(p, sizeof p, "fakebin", "model.bin");
    snprintf(q, sizeof q, "%s.part", p);
    path_of(mark, sizeof mark, "fakebin", ".tessera-complete");
    check(rc == 1 && strstr(err_text, "not a CTranslate2 model") && !exists(p) && !exists(q) &&
              !exists(mark),
          "a model.bin that is a pickle is deleted unpickled, and the pull fails: %s", err_text);

    /* ---- shards from the index, not the extra variant ---- */
    m0 = log_mark();
    rc = run(NULL, "pull test/sharded");
    log = log_since(m0);
    path_of(p, sizeof p, "sharded", "model-00001-of-00002.safetensors");
    path_of(q, sizeof q, "sharded", "model-00002-of-00002.safetensors");
    check(rc == 0 && same_as(p, TSR_HUB_FIXTURES "/sharded/model-00001-of-00002.safetensors", 0) &&
              same_as(q, TSR_HUB_FIXTURES "/sharded/model-00002-of-00002.safetensors", 0) &&
              !strstr(log, "fp16"),
          "sharded: the index's two shards, and not the fp16 variant or its index (exit %d)", rc);
    free(log);
    char *e_ref = NULL;
    rc = run(NULL, "embed --text --model " MODEL " 'a photo of a cat'");
    if (rc == 0) {
        e_ref = strdup(out_text);
        rc = run(NULL, "embed --text --model test/sharded 'a photo of a cat'");
        check(rc == 0 && strcmp(out_text, e_ref) == 0,
              "the pulled shards load and embed exactly as the single file does");
    } else {
        printf("skipped: embedding through the shards (no OpenCL device: %s)\n", err_text);
    }
    free(e_ref);

    /* ---- the Hugging Face cache ---- */
    char hub[128], hfc[400];
    snprintf(hub, sizeof hub, "%s/hfcache", tmp);
    int built = build_hf_cache(hub, commit);
    check(built, "rebuilt the Hugging Face cache huggingface_hub wrote (commit %.12s)", commit);
    snprintf(cache, sizeof cache, "%s/empty-cache", tmp);
    snprintf(hfc, sizeof hfc, "HF_HUB_CACHE=%s HF_ENDPOINT=http://127.0.0.1:1", hub);
    rc = run(hfc, "tokenize --model test/tiny 'a photo of a cat.'");
    check(rc == 0 && strncmp(out_text, "1512 320 1125 539 320 66 536 269 1513", 37) == 0,
          "--model test/tiny is found in the Hugging Face cache, offline, with nothing pulled "
          "(exit %d) %s",
          rc, rc ? err_text : "");
    snprintf(want, sizeof want, "is commit %s", commit);
    rc = run(hfc, "embed --verbose --text --model test/tiny 'a'");
    if (rc == 0 || !strstr(err_text, "no OpenCL"))
        check(rc == 0 && strstr(err_text, want) && strstr(err_text, "snapshots"),
              "--verbose names the snapshot's commit: %s", err_text);
    char withc[128];
    snprintf(withc, sizeof withc, "tokenize --model test/tiny@%s 'a'", commit);
    rc = run(hfc, withc);
    check(rc == 0, "test/tiny@COMMIT finds the snapshot by commit");
    snprintf(p, sizeof p, "mkdir -p %s/hf && rm -rf %s/hf/hub && mv %s %s/hf/hub", tmp, tmp, hub,
             tmp);
    if (system(p) != 0)
        printf("mv failed\n");
    rc = run("HF_ENDPOINT=http://127.0.0.1:1", "tokenize --model test/tiny 'a'");
    check(rc == 0, "the default cache $HF_HOME/hub is looked in as well (exit %d) %s", rc,
          rc ? err_text : "");
    snprintf(p, sizeof p, "%s/hf/hub/models--test--tiny/snapshots/%s/model.safetensors", tmp,
             commit);
    remove(p);
    rc = run("HF_ENDPOINT=http://127.0.0.1:1", "tokenize --model test/tiny 'a'");
    check(rc == 1 && strstr(err_text, "Hugging Face cache") && strstr(err_text, "model.safetensors"),
          "an incomplete snapshot is not used, and the message says what is missing: %s",
          err_text);
    snprintf(cache, sizeof cache, "%s/cache", tmp);

    /* ---- unreachable, usage ---- */
    rc = run("HF_ENDPOINT=http://127.0.0.1:1", "pull test/tiny");
    check(rc == 1 && strstr(err_text, "cannot reach"), "unreachable endpoint: %s", err_text);
    rc = run(NULL, "pull not-a-repo");
    check(rc == 2 && strstr(err_text, "org/name"), "malformed repository id: exit %d", rc);
    rc = run(NULL, "pull --retries x test/tiny");
    check(rc == 2 && strstr(err_text, "--retries"), "bad --retries: exit %d", rc);

    free(out_text);
    free(err_text);
    admin("/quit");
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0)
        printf("could not remove %s\n", tmp);
    return finish();
}
