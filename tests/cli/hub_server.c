#define _GNU_SOURCE
/* A tiny stand-in for the Hugging Face hub on 127.0.0.1, for testing
 * `tessera pull`. It serves one model directory under several repository
 * names, each with a behaviour:
 *   test/tiny     normal (its file list also names a pickle that must never be fetched)
 *   test/flaky    the first download of a .safetensors file stops halfway
 *   test/corrupt  the file list gives a wrong SHA-256 for .safetensors files
 *   test/private  needs "Authorization: Bearer s3cret"
 *   test/pickle   lists only config.json and pytorch_model.bin
 * anything else answers 404. It prints its port, logs each request to LOG,
 * and exits after 60 s without a connection, or on GET /quit.
 * usage: hub_server MODEL_DIR LOG */
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
#include <unistd.h>

static const char *model_dir;
static FILE *logf;
static int flaky_done;

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

static void reply(int fd, int code, const char *status, const char *type, const char *body)
{
    char h[512];
    int n = snprintf(h, sizeof h,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     code, status, type, strlen(body));
    send_all(fd, h, (size_t)n);
    send_all(fd, body, strlen(body));
}

static int is_st(const char *f)
{
    size_t n = strlen(f);
    return n > 12 && strcmp(f + n - 12, ".safetensors") == 0;
}

static void sha256_hex(const char *path, char hex[65])
{
    FILE *f = fopen(path, "rb");
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned char buf[65536], md[32];
    unsigned len;
    size_t n;
    EVP_DigestInit_ex(c, EVP_sha256(), NULL);
    while (f && (n = fread(buf, 1, sizeof buf, f)) > 0)
        EVP_DigestUpdate(c, buf, n);
    EVP_DigestFinal_ex(c, md, &len);
    EVP_MD_CTX_free(c);
    if (f)
        fclose(f);
    for (int i = 0; i < 32; i++)
        sprintf(hex + 2 * i, "%02x", md[i]);
}

static void metadata(int fd, const char *repo)
{
    char body[16384];
    size_t n = (size_t)snprintf(body, sizeof body, "{\"id\":\"%s\",\"sha\":\"0123abcd\",\"siblings\":[", repo);
    if (strcmp(repo, "test/pickle") == 0) {
        n += (size_t)snprintf(body + n, sizeof body - n,
                              "{\"rfilename\":\"config.json\",\"size\":10},"
                              "{\"rfilename\":\"pytorch_model.bin\",\"size\":10}]}");
        reply(fd, 200, "OK", "application/json", body);
        return;
    }
    DIR *d = opendir(model_dir);
    struct dirent *e;
    int first = 1;
    while (d && (e = readdir(d))) {
        char p[4096];
        struct stat sb;
        snprintf(p, sizeof p, "%s/%s", model_dir, e->d_name);
        if (e->d_name[0] == '.' || stat(p, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        if (is_st(e->d_name)) {
            char hex[65];
            sha256_hex(p, hex);
            if (strcmp(repo, "test/corrupt") == 0)
                hex[0] = hex[0] == '0' ? '1' : '0';
            n += (size_t)snprintf(body + n, sizeof body - n,
                                  "%s{\"rfilename\":\"%s\",\"size\":%lld,\"lfs\":{\"sha256\":\"%s\","
                                  "\"size\":%lld,\"pointerSize\":134}}",
                                  first ? "" : ",", e->d_name, (long long)sb.st_size, hex,
                                  (long long)sb.st_size);
        } else {
            n += (size_t)snprintf(body + n, sizeof body - n, "%s{\"rfilename\":\"%s\",\"size\":%lld}",
                                  first ? "" : ",", e->d_name, (long long)sb.st_size);
        }
        first = 0;
    }
    if (d)
        closedir(d);
    snprintf(body + n, sizeof body - n,
             ",{\"rfilename\":\"pytorch_model.bin\",\"size\":12},"
             "{\"rfilename\":\"../escape.json\",\"size\":2}]}");
    reply(fd, 200, "OK", "application/json", body);
}

static void serve_file(int fd, const char *repo, const char *file, long long from)
{
    char p[4096];
    struct stat sb;
    snprintf(p, sizeof p, "%s/%s", model_dir, file);
    if (strchr(file, '/') || stat(p, &sb) != 0 || strcmp(repo, "test/pickle") == 0) {
        reply(fd, 404, "Not Found", "text/plain", "Entry not found");
        return;
    }
    FILE *f = fopen(p, "rb");
    long long size = sb.st_size;
    if (from < 0 || from > size)
        from = 0;
    char h[512];
    int n;
    if (from > 0)
        n = snprintf(h, sizeof h,
                     "HTTP/1.1 206 Partial Content\r\nContent-Length: %lld\r\n"
                     "Content-Range: bytes %lld-%lld/%lld\r\nConnection: close\r\n\r\n",
                     size - from, from, size - 1, size);
    else
        n = snprintf(h, sizeof h, "HTTP/1.1 200 OK\r\nContent-Length: %lld\r\nConnection: close\r\n\r\n",
                     size);
    send_all(fd, h, (size_t)n);
    long long limit = size - from;
    if (strcmp(repo, "test/flaky") == 0 && is_st(file) && !flaky_done) {
        flaky_done = 1;
        limit /= 2; /* the connection drops halfway */
    }
    fseek(f, from, SEEK_SET);
    char buf[65536];
    while (limit > 0) {
        size_t r = fread(buf, 1, limit < (long long)sizeof buf ? (size_t)limit : sizeof buf, f);
        if (!r)
            break;
        send_all(fd, buf, r);
        limit -= (long long)r;
    }
    fclose(f);
}

static int handle(int fd)
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
    int authed = strcasestr(req, "\nAuthorization: Bearer s3cret\r") != NULL;
    fprintf(logf, "%s %s range=%lld auth=%d\n", method, path, range ? from : -1, authed);
    fflush(logf);
    if (strcmp(path, "/quit") == 0) {
        reply(fd, 200, "OK", "text/plain", "bye");
        return 1;
    }
    char repo[2048] = "", rest[2048] = "";
    const char *known[] = {"test/tiny", "test/flaky", "test/corrupt", "test/private", "test/pickle"};
    if (strncmp(path, "/api/models/", 12) == 0) {
        snprintf(repo, sizeof repo, "%s", path + 12);
        char *r = strstr(repo, "/revision/");
        if (r)
            *r = 0;
    } else if (path[0] == '/') {
        char *res = strstr(path, "/resolve/");
        if (res) {
            snprintf(repo, sizeof repo, "%.*s", (int)(res - path - 1), path + 1);
            const char *after = strchr(res + 9, '/'); /* skip the revision */
            if (after)
                snprintf(rest, sizeof rest, "%s", after + 1);
        }
    }
    int ok = 0;
    for (int i = 0; i < 5; i++)
        ok |= strcmp(repo, known[i]) == 0;
    if (!ok) {
        reply(fd, 404, "Not Found", "application/json", "{\"error\":\"Repository not found\"}");
        return 0;
    }
    if (strcmp(repo, "test/private") == 0 && !authed) {
        reply(fd, 401, "Unauthorized", "application/json", "{\"error\":\"Invalid credentials\"}");
        return 0;
    }
    if (strncmp(path, "/api/models/", 12) == 0)
        metadata(fd, repo);
    else
        serve_file(fd, repo, rest, from);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: hub_server MODEL_DIR LOG\n");
        return 2;
    }
    model_dir = argv[1];
    logf = fopen(argv[2], "w");
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (!logf || bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 16) != 0) {
        perror("hub_server");
        return 1;
    }
    socklen_t len = sizeof a;
    getsockname(s, (struct sockaddr *)&a, &len);
    printf("%d\n", ntohs(a.sin_port));
    fflush(stdout);
    for (;;) {
        struct pollfd p = {s, POLLIN, 0};
        if (poll(&p, 1, 60000) <= 0)
            break; /* idle for a minute: stop by itself */
        int c = accept(s, NULL, NULL);
        if (c < 0)
            continue;
        int quit = handle(c);
        close(c);
        if (quit)
            break;
    }
    close(s);
    fclose(logf);
    return 0;
}
