/* `tessera pull` against a local stand-in for the hub (hub_server on
 * 127.0.0.1): success, an interrupted transfer and its resume, a checksum
 * failure, 404, 401 with and without a token, an unreachable endpoint, a
 * pickle-only repository, and --model REPO_ID afterwards. */
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#define MODEL TSR_FIXTURES "/models/clip-tiny-a"

static char tmp[64], cache[128], logpath[128], out_path[128], err_path[128];
static char *out_text, *err_text;
static int port;

static int run(const char *env, const char *args)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "env -u HF_TOKEN HF_ENDPOINT=http://127.0.0.1:%d TESSERA_CACHE_DIR=%s %s %s %s "
             ">%s 2>%s </dev/null",
             port, cache, env ? env : "", TSR_CLI, args, out_path, err_path);
    int st = system(cmd);
    free(out_text);
    free(err_text);
    out_text = slurp(out_path);
    err_text = slurp(err_path);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

static int same_file(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb)
            same = 0;
        if (ca == EOF || cb == EOF)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return same;
}

static void path_of(char *out, size_t cap, const char *repo, const char *file)
{
    snprintf(out, cap, "%s/models/test--%s/main/%s", cache, repo, file);
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
        execl(TSR_HUB_SERVER, TSR_HUB_SERVER, MODEL, logpath, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    char buf[32] = {0};
    ssize_t r = read(pfd[0], buf, sizeof buf - 1);
    port = r > 0 ? atoi(buf) : 0;
    check(port > 0, "local hub on 127.0.0.1:%d", port);
    if (port <= 0)
        return finish();

    char p[512], q[600];
    /* success */
    int rc = run(NULL, "pull test/tiny");
    path_of(p, sizeof p, "tiny", "model.safetensors");
    path_of(q, sizeof q, "tiny", ".tessera-complete");
    check(rc == 0 && same_file(p, MODEL "/model.safetensors") && exists(q),
          "pull test/tiny: exit %d, weights identical, marked complete %s", rc, rc ? err_text : "");
    path_of(p, sizeof p, "tiny", "tokenizer.json");
    path_of(q, sizeof q, "tiny", "preprocessor_config.json");
    check(exists(p) && exists(q), "tokenizer and preprocessor files fetched");
    char *log = slurp(logpath);
    check(!strstr(log, "pytorch_model.bin") && !strstr(log, "escape"),
          "the pickle and the unsafe path in the file list were never requested");
    free(log);
    rc = run(NULL, "tokenize --model test/tiny 'a photo of a cat.'");
    check(rc == 0 && strncmp(out_text, "1512 320 1125 539 320 66 536 269 1513", 37) == 0,
          "--model test/tiny finds the pulled model");
    rc = run(NULL, "pull --json test/tiny");
    check(rc == 0 && strstr(out_text, "\"path\":"), "a second pull is a no-op and prints JSON");

    /* interrupted transfer, then resume */
    rc = run(NULL, "pull test/flaky");
    path_of(p, sizeof p, "flaky", "model.safetensors");
    snprintf(q, sizeof q, "%s.part", p);
    struct stat sb;
    long long part = stat(q, &sb) == 0 ? (long long)sb.st_size : -1;
    char mark[512];
    path_of(mark, sizeof mark, "flaky", ".tessera-complete");
    check(rc == 1 && strstr(err_text, "partial download kept") && part > 0 && !exists(p) &&
              !exists(mark),
          "interrupted download: exit %d, %lld bytes kept in .part, no final file, not complete",
          rc, part);
    rc = run(NULL, "tokenize --model test/flaky 'a'");
    check(rc == 1 && strstr(err_text, "has not been pulled"),
          "a partial pull does not look complete to --model");
    rc = run(NULL, "pull test/flaky");
    log = slurp(logpath);
    char want[128];
    snprintf(want, sizeof want, "range=%lld", part);
    check(rc == 0 && strstr(log, want) && same_file(p, MODEL "/model.safetensors") && !exists(q) &&
              exists(mark),
          "resumed with a Range request from byte %lld; the result is identical", part);
    free(log);

    /* checksum failure */
    rc = run(NULL, "pull test/corrupt");
    path_of(p, sizeof p, "corrupt", "model.safetensors");
    snprintf(q, sizeof q, "%s.part", p);
    check(rc == 1 && strstr(err_text, "SHA-256 mismatch") && !exists(p) && !exists(q),
          "checksum mismatch: exit %d, nothing left behind", rc);

    /* 404, 401, tokens */
    rc = run(NULL, "pull test/missing");
    check(rc == 1 && strstr(err_text, "404"), "missing repository: exit %d, %s", rc, err_text);
    rc = run(NULL, "pull test/private");
    check(rc == 1 && strstr(err_text, "401") && strstr(err_text, "set HF_TOKEN"),
          "private repository without a token: %s", err_text);
    rc = run("HF_TOKEN=wrong", "pull test/private");
    check(rc == 1 && strstr(err_text, "was refused"), "a wrong token: %s", err_text);
    rc = run("HF_TOKEN=s3cret", "pull test/private");
    check(rc == 0, "the right token: exit %d %s", rc, rc ? err_text : "");

    /* pickle-only repository */
    rc = run(NULL, "pull test/pickle");
    check(rc == 1 && strstr(err_text, "never downloads pickle"), "pickle-only repository: %s",
          err_text);

    /* unreachable endpoint */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "HF_ENDPOINT=http://127.0.0.1:1 TESSERA_CACHE_DIR=%s %s pull test/tiny >%s 2>%s",
             cache, TSR_CLI, out_path, err_path);
    int st = system(cmd);
    free(err_text);
    err_text = slurp(err_path);
    check(WIFEXITED(st) && WEXITSTATUS(st) == 1 && strstr(err_text, "cannot reach"),
          "unreachable endpoint: %s", err_text);
    rc = run(NULL, "pull not-a-repo");
    check(rc == 2 && strstr(err_text, "org/name"), "malformed repository id: exit %d", rc);

    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0)
        printf("could not remove %s\n", tmp);
    return finish();
}
