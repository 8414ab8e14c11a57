#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

const char *cli_dtype;

int cli_parse(int argc, char **argv, const cli_opt *opts, int nopts, const char ***pos,
              int *npos)
{
    *npos = 0;
    *pos = calloc((size_t)argc + 1, sizeof(char *));
    if (!*pos)
        return cli_usage_error(argv[0], "out of memory");
    int only_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || a[0] != '-' || a[1] == 0) {
            (*pos)[(*npos)++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_pos = 1;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
            return -1;
        const char *name = a + (a[1] == '-' ? 2 : 1);
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const cli_opt *o = NULL;
        for (int k = 0; k < nopts; k++)
            if (strlen(opts[k].name) == len && strncmp(opts[k].name, name, len) == 0)
                o = &opts[k];
        if (!o)
            return cli_usage_error(argv[0], "unknown option '%s' (see 'tessera %s --help')", a,
                                   argv[0]);
        if (o->has_arg) {
            if (eq)
                *o->value = eq + 1;
            else if (i + 1 < argc)
                *o->value = argv[++i];
            else
                return cli_usage_error(argv[0], "option '--%s' needs a value", o->name);
        } else {
            if (eq)
                return cli_usage_error(argv[0], "option '--%s' takes no value", o->name);
            *o->flag = 1;
        }
    }
    /* commands that take --dtype also take TESSERA_DTYPE; the others
     * (index, tune) ignore it */
    for (int k = 0; k < nopts; k++)
        if (opts[k].value == &cli_dtype && !cli_dtype)
            cli_dtype = getenv("TESSERA_DTYPE");
    return EXIT_OK;
}

void cli_error(const char *cmd, const tsr_error *err)
{
    fprintf(stderr, "tessera %s: error: %s\n", cmd, err->msg[0] ? err->msg : "unknown error");
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "tessera %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return EXIT_USAGE;
}

void cli_cache_dir(char *out, size_t cap)
{
    const char *d = getenv("TESSERA_CACHE_DIR");
    if (d && *d) {
        snprintf(out, cap, "%s", d);
        return;
    }
    const char *x = getenv("XDG_CACHE_HOME");
    if (x && *x) {
        snprintf(out, cap, "%s/tessera", x);
        return;
    }
    const char *home = getenv("HOME");
    snprintf(out, cap, "%s/.cache/tessera", home && *home ? home : "/tmp");
}

static void log_stderr(void *user, const char *msg)
{
    (void)user;
    fprintf(stderr, "tessera: %s\n", msg);
}

tsr_ctx_params cli_ctx_params(const char *device, int verbose)
{
    static char cache[4096];
    cli_cache_dir(cache, sizeof cache);
    tsr_ctx_params p = tsr_ctx_default_params();
    p.device = device ? device : getenv("TESSERA_DEVICE");
    p.cache_dir = cache;
    p.verbose = verbose;
    p.log = log_stderr;
    p.dtype = cli_dtype;
    const char *off = getenv("TESSERA_NO_TUNING");
    p.no_tuning = off && *off && strcmp(off, "0") != 0;
    const char *g = getenv("TESSERA_GEMM"); /* "own" or "clblast" */
    if (g && (strcmp(g, "own") == 0 || strcmp(g, "clblast") == 0))
        p.gemm = g;
    const char *x = getenv("TESSERA_XGEMM"), *xmi = getenv("TESSERA_XGEMM_MIN_INDIRECT");
    if (x || xmi) { /* for experiments: CLBlast Xgemm parameters "NAME=VALUE ..." */
        p.xgemm = x ? x : "";
        p.xgemm_min_indirect = xmi ? atol(xmi) : -1;
    }
    return p;
}

int cli_ctx(const char *cmd, const char *device, int verbose, tsr_ctx **ctx)
{
    tsr_ctx_params p = cli_ctx_params(device, verbose);
    return cli_ctx_with(cmd, &p, ctx);
}

int cli_ctx_with(const char *cmd, const tsr_ctx_params *p, tsr_ctx **ctx)
{
    int verbose = p->verbose;
    tsr_error err = {0};
    if (tsr_ctx_create(p, ctx, &err) != TSR_OK) {
        cli_error(cmd, &err);
        return err.code == TSR_ERR_INVALID_ARG ? EXIT_USAGE : EXIT_RUNTIME;
    }
    if (*tsr_ctx_warning(*ctx))
        fprintf(stderr, "tessera %s: warning: %s\n", cmd, tsr_ctx_warning(*ctx));
    if (verbose)
        fprintf(stderr, "tessera: device %s; GEMM %s\n", tsr_ctx_device_name(*ctx),
                tsr_ctx_tuning(*ctx));
    return EXIT_OK;
}

int cli_write_npy(const char *path, const float *data, int rows, int cols, tsr_error *err)
{
    char header[128];
    int n = snprintf(header, sizeof header,
                     "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }", rows, cols);
    int total = 10 + n + 1;
    int pad = (64 - total % 64) % 64;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        tsr_error_set(err, TSR_ERR_IO, "%s: cannot write", path);
        return EXIT_RUNTIME;
    }
    unsigned short hlen = (unsigned short)(n + pad + 1);
    unsigned char magic[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff),
                               (unsigned char)(hlen >> 8)};
    int ok = fwrite(magic, 1, 10, f) == 10 && fwrite(header, 1, (size_t)n, f) == (size_t)n;
    for (int i = 0; i < pad && ok; i++)
        ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF;
    size_t cnt = (size_t)rows * cols;
    ok = ok && fwrite(data, sizeof(float), cnt, f) == cnt;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        tsr_error_set(err, TSR_ERR_IO, "%s: write failed", path);
        return EXIT_RUNTIME;
    }
    return EXIT_OK;
}

float *cli_read_npy(const char *path, long long *rows, int *cols, tsr_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        tsr_error_set(err, TSR_ERR_IO, "%s: cannot open", path);
        return NULL;
    }
    unsigned char pre[10];
    char hdr[4096] = {0};
    float *x = NULL;
    long long r = -1, c = -1;
    int ok = fread(pre, 1, 10, f) == 10 && memcmp(pre, "\x93NUMPY", 6) == 0 && pre[6] == 1;
    size_t hl = ok ? (size_t)pre[8] | (size_t)pre[9] << 8 : 0;
    ok = ok && hl < sizeof hdr && fread(hdr, 1, hl, f) == hl;
    if (!ok) {
        tsr_error_set(err, TSR_ERR_FORMAT, "%s: not a .npy file (version 1)", path);
    } else if (!strstr(hdr, "'descr': '<f4'") || !strstr(hdr, "'fortran_order': False")) {
        tsr_error_set(err, TSR_ERR_FORMAT, "%s: not little-endian float32 in C order", path);
        ok = 0;
    } else {
        const char *sh = strstr(hdr, "'shape': (");
        if (!sh || sscanf(sh + 10, "%lld, %lld)", &r, &c) != 2 || r < 0 || c < 1 || c > 65536) {
            tsr_error_set(err, TSR_ERR_FORMAT, "%s: not a 2-D array", path);
            ok = 0;
        }
    }
    if (ok) {
        struct stat sb;
        size_t need = (size_t)r * (size_t)c;
        if (fstat(fileno(f), &sb) != 0 || (uint64_t)sb.st_size != 10 + hl + need * 4) {
            tsr_error_set(err, TSR_ERR_FORMAT, "%s: the file size does not match its shape (%lld, %lld)",
                          path, r, c);
            ok = 0;
        } else if (!(x = malloc(need ? need * sizeof(float) : 4)) ||
                   fread(x, sizeof(float), need, f) != need) {
            tsr_error_set(err, x ? TSR_ERR_IO : TSR_ERR_NOMEM, "%s: %s", path,
                          x ? "read error" : "out of memory");
            free(x);
            x = NULL;
        }
    }
    fclose(f);
    if (x) {
        *rows = r;
        *cols = (int)c;
    }
    return x;
}

void cli_print_json(cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    if (s)
        puts(s);
    free(s);
    cJSON_Delete(o);
}

void cli_progress(const char *what, int done, int total)
{
    if (total < 2 || !isatty(STDERR_FILENO))
        return;
    int width = 30, fill = (int)((long long)done * width / total);
    fprintf(stderr, "\r%s [", what);
    for (int i = 0; i < width; i++)
        fputc(i < fill ? '#' : ' ', stderr);
    fprintf(stderr, "] %d/%d", done, total);
    if (done == total)
        fputc('\n', stderr);
    fflush(stderr);
}

char *cli_read_file(const char *path, size_t max, size_t *len, tsr_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        tsr_error_set(err, TSR_ERR_IO, "%s: cannot open", path);
        return NULL;
    }
    char *buf = malloc(max + 1);
    size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad || n > max) {
        free(buf);
        tsr_error_set(err, bad ? TSR_ERR_IO : TSR_ERR_TOO_LARGE,
                      bad ? "%s: read error" : "%s: file too large", path);
        return NULL;
    }
    buf[n] = 0;
    if (len)
        *len = n;
    return buf;
}

/* huggingface_hub's HF_HOME: $HF_HOME, else $XDG_CACHE_HOME/huggingface, else
 * ~/.cache/huggingface. */
static void hf_home(char *out, size_t cap)
{
    const char *h = getenv("HF_HOME"), *x = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (h && *h)
        snprintf(out, cap, "%s", h);
    else if (x && *x)
        snprintf(out, cap, "%s/huggingface", x);
    else
        snprintf(out, cap, "%s/.cache/huggingface", home && *home ? home : "/tmp");
}

void cli_hf_hub_cache(char *out, size_t cap)
{
    const char *c = getenv("HF_HUB_CACHE"), *legacy = getenv("HUGGINGFACE_HUB_CACHE");
    if (c && *c) {
        snprintf(out, cap, "%s", c);
    } else if (legacy && *legacy) {
        snprintf(out, cap, "%s", legacy);
    } else {
        char home[3000];
        hf_home(home, sizeof home);
        snprintf(out, cap, "%s/hub", home);
    }
}

/* Strips whitespace and line breaks as huggingface_hub does; empty is none. */
static int clean_token(char *t)
{
    char *o = t;
    for (char *p = t; *p; p++)
        if (*p != '\r' && *p != '\n')
            *o++ = *p;
    *o = 0;
    size_t n = strlen(t), b = 0;
    while (b < n && (t[b] == ' ' || t[b] == '\t'))
        b++;
    while (n > b && (t[n - 1] == ' ' || t[n - 1] == '\t'))
        n--;
    memmove(t, t + b, n - b);
    t[n - b] = 0;
    return t[0] != 0;
}

int cli_hf_token(char *tok, size_t cap, char *origin, size_t ocap)
{
    const char *names[] = {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"};
    for (int i = 0; i < 2; i++) {
        const char *v = getenv(names[i]);
        if (v && *v) {
            snprintf(tok, cap, "%s", v);
            if (clean_token(tok)) {
                snprintf(origin, ocap, "%s", names[i]);
                return 1;
            }
        }
    }
    char path[4096];
    const char *tp = getenv("HF_TOKEN_PATH");
    if (tp && *tp) {
        snprintf(path, sizeof path, "%s", tp);
    } else {
        char home[3000];
        hf_home(home, sizeof home);
        snprintf(path, sizeof path, "%s/token", home);
    }
    tok[0] = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    size_t n = fread(tok, 1, cap - 1, f);
    fclose(f);
    tok[n] = 0;
    if (!clean_token(tok))
        return 0;
    snprintf(origin, ocap, "%s", path);
    return 1;
}

static int model_dir(const char *cmd, const char *model, int verbose, char *out, size_t cap)
{
    tsr_error err = {0};
    char cache[4096], hf[4096];
    cli_cache_dir(cache, sizeof cache);
    cli_hf_hub_cache(hf, sizeof hf);
    if (tsr_model_resolve(model, cache, hf, out, cap, &err) != TSR_OK) {
        cli_error(cmd, &err);
        return EXIT_RUNTIME;
    }
    if (verbose && strcmp(model, out) != 0) {
        char commit[41];
        if (tsr_model_commit(out, commit))
            fprintf(stderr, "tessera: %s is commit %s, in %s\n", model, commit, out);
        else
            fprintf(stderr, "tessera: %s is in %s (commit not recorded)\n", model, out);
    }
    return EXIT_OK;
}

int cli_model_dir(const char *cmd, const char *model, int verbose, char *out, size_t cap)
{
    return model_dir(cmd, model, verbose, out, cap);
}

int cli_read_lines(const char *cmd, const char *path, char **buf, const char ***lines, int *n)
{
    tsr_error err = {0};
    size_t len = 0, cap = 1 << 16, max = (size_t)1 << 28;
    *buf = NULL;
    *lines = NULL;
    *n = 0;
    if (strcmp(path, "-") == 0) {
        char *b = malloc(cap + 1);
        size_t got;
        while (b && (got = fread(b + len, 1, cap - len, stdin)) > 0) {
            len += got;
            if (len == cap && cap < max) {
                char *nb = realloc(b, cap * 2 + 1);
                if (!nb) {
                    free(b);
                    b = NULL;
                    break;
                }
                b = nb;
                cap *= 2;
            } else if (len == cap) {
                free(b);
                return cli_usage_error(cmd, "standard input is larger than %zu bytes", max);
            }
        }
        if (!b) {
            tsr_error_set(&err, TSR_ERR_NOMEM, "out of host memory");
            cli_error(cmd, &err);
            return EXIT_RUNTIME;
        }
        b[len] = 0;
        *buf = b;
    } else if (!(*buf = cli_read_file(path, max, &len, &err))) {
        cli_error(cmd, &err);
        return EXIT_RUNTIME;
    }
    size_t count = 0;
    for (size_t i = 0; i < len; i++)
        count += (*buf)[i] == '\n';
    count += len > 0 && (*buf)[len - 1] != '\n';
    if (count > 10000000 || !(*lines = malloc(sizeof(char *) * (count ? count : 1)))) {
        free(*buf);
        *buf = NULL;
        tsr_error_set(&err, TSR_ERR_NOMEM, "%s: too many lines", path);
        cli_error(cmd, &err);
        return EXIT_RUNTIME;
    }
    char *p = *buf, *end = *buf + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *e = nl ? nl : end;
        if (e > p && e[-1] == '\r')
            e[-1] = 0;
        *e = 0;
        (*lines)[(*n)++] = p;
        p = e + 1;
    }
    if (*n == 0) {
        free(*buf);
        free(*lines);
        *buf = NULL;
        *lines = NULL;
        return cli_usage_error(cmd, "%s has no lines", path);
    }
    return EXIT_OK;
}

int cli_load(const char *cmd, const char *model, const char *device, int verbose, tsr_ctx **ctx,
             tsr_model **m, tsr_session **s)
{
    char dir[4096];
    tsr_error err = {0};
    int rc = model_dir(cmd, model, verbose, dir, sizeof dir);
    if (rc == EXIT_OK && !*ctx)
        rc = cli_ctx(cmd, device, verbose, ctx);
    if (rc == EXIT_OK && (tsr_model_load(*ctx, dir, m, &err) != TSR_OK ||
                          (s && tsr_session_create(*m, NULL, s, &err) != TSR_OK))) {
        cli_error(cmd, &err);
        rc = EXIT_RUNTIME;
    }
    return rc;
}

int cli_parse_ints(const char *s, int *out, int max, int lo, int hi)
{
    int n = 0;
    for (const char *p = s; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < lo || v > hi || n >= max || (*end && *end != ','))
            return 0;
        out[n++] = (int)v;
        p = *end ? end + 1 : end;
    }
    return n;
}

static int parse3(const char *s, float v[3])
{
    char *end;
    for (int i = 0; i < 3; i++) {
        double x = strtod(s, &end);
        if (end == s || !(x == x) || x > 1e6 || x < -1e6 || (i < 2 && *end != ',') || (i == 2 && *end))
            return 0;
        v[i] = (float)x;
        s = end + 1;
    }
    return 1;
}

int cli_image_preprocess(const char *cmd, tsr_model *m, const char *dir, const char *size,
                         const char *mean, const char *std)
{
    if (!tsr_model_preprocess_cfg(m))
        return EXIT_OK; /* not a CLIP model: its own preprocessing */
    int known = tsr_model_preprocess_known(m);
    if (!size && !mean && !std) {
        if (known)
            return EXIT_OK;
        fprintf(stderr,
                "tessera %s: error: %s/preprocessor_config.json: missing, so the image size, mean "
                "and std are unknown: copy it from the checkpoint, or give --image-size N --mean "
                "R,G,B --std R,G,B (CLIP's: 224, 0.48145466,0.4578275,0.40821073 and "
                "0.26862954,0.26130258,0.27577711)\n",
                cmd, dir);
        return EXIT_RUNTIME;
    }
    if (!known && !(size && mean && std))
        return cli_usage_error(cmd, "%s has no preprocessor_config.json: give all of --image-size, "
                               "--mean and --std", dir);
    tsr_preprocess_cfg cfg = *tsr_model_preprocess_cfg(m);
    if (size) {
        char *end;
        long v = strtol(size, &end, 10);
        if (end == size || *end || v < 1 || v > 8192)
            return cli_usage_error(cmd, "--image-size takes a size in pixels, not '%s'", size);
        tsr_preprocess_cfg d = tsr_preprocess_cfg_default((int)v);
        memcpy(d.mean, cfg.mean, sizeof d.mean);
        memcpy(d.std, cfg.std, sizeof d.std);
        cfg = d;
    }
    if (mean && !parse3(mean, cfg.mean))
        return cli_usage_error(cmd, "--mean takes three numbers R,G,B, not '%s'", mean);
    if (std && !parse3(std, cfg.std))
        return cli_usage_error(cmd, "--std takes three numbers R,G,B, not '%s'", std);
    tsr_error err = {0};
    if (tsr_model_set_preprocess(m, &cfg, &err) != TSR_OK)
        return cli_usage_error(cmd, "%s", err.msg);
    return EXIT_OK;
}

void cli_warn_clipped(const char *cmd, const char *path, size_t clipped, size_t pixels)
{
    if (!clipped)
        return;
    fprintf(stderr,
            "tessera %s: warning: %s: a 16-bit greyscale image; %zu of its %zu pixels are above "
            "255 and turn white, as Pillow (and so the reference) decodes them; convert it to "
            "8 bits first to see its content (for example: convert IN -depth 8 OUT.png)\n",
            cmd, path, clipped, pixels);
}

int cli_audio_window(const char *cmd, const char *s, tsr_audio_window *out)
{
    if (strcmp(s, "mean") == 0)
        *out = TSR_AUDIO_WINDOW_MEAN;
    else if (strcmp(s, "first") == 0)
        *out = TSR_AUDIO_WINDOW_FIRST;
    else if (strcmp(s, "fusion") == 0)
        *out = TSR_AUDIO_WINDOW_FUSION;
    else
        return cli_usage_error(cmd, "--audio-window must be mean, first or fusion (not '%s')", s);
    return EXIT_OK;
}
