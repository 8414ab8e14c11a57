/* tessera index and search, as a user runs them: a gallery of generated
 * shape images indexed with the demo model, text and image queries against a
 * brute-force search in C, incremental add/sync/remove, kill -9 in the middle
 * of a run, two writers at once, shards and merge, export, and refusals. */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <png.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tsr_fusion.h"
#include "testutil.h"

#define MODEL TSR_SOURCE_DIR "/assets/models/shapes-clip"
#define OTHER TSR_FIXTURES "/models/clip-tiny-a"
#define N_GALLERY 540

static char tmp[256];
static char out_text[1 << 20], err_text[1 << 16];

/* Runs a shell command line; stdout and stderr are kept. */
static int shell(const char *line)
{
    static char cmd[1 << 15];
    char o[300], e[300];
    snprintf(o, sizeof o, "%s/out.txt", tmp);
    snprintf(e, sizeof e, "%s/err.txt", tmp);
    snprintf(cmd, sizeof cmd, "cd %s && %s >%s 2>%s </dev/null", tmp, line, o, e);
    int st = system(cmd);
    char *a = slurp(o), *b = slurp(e);
    snprintf(out_text, sizeof out_text, "%s", a ? a : "");
    snprintf(err_text, sizeof err_text, "%s", b ? b : "");
    free(a);
    free(b);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The CLI with arguments (a shell fragment). */
static int runf(const char *fmt, ...)
{
    char args[8192], line[8400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(line, sizeof line, "%s %s", TSR_CLI, args);
    return shell(line);
}

static int shellf(const char *fmt, ...)
{
    char line[8400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    return shell(line);
}

/* ---- the gallery: single shapes as the demo model was trained on ---- */

static const char *colors[] = {"red", "green", "blue", "yellow", "purple", "orange"};
static const int rgb[][3] = {{215, 35, 35}, {35, 160, 55}, {40, 75, 215},
                             {240, 210, 30}, {135, 50, 175}, {245, 135, 20}};
static const char *shapes[] = {"circle", "square", "triangle", "star", "cross"};
static const int bgs[][3] = {{245, 245, 245}, {128, 128, 128}, {15, 15, 15}, {225, 210, 180},
                             {45, 50, 60}};

static uint64_t rng = 0x243F6A8885A308D3ULL;
static double uni(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static double gauss(void)
{
    double u = uni() + 1e-12, v = uni();
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

static int in_poly(const double *x, const double *y, int n, double px, double py)
{
    int in = 0;
    for (int i = 0, j = n - 1; i < n; j = i++)
        if ((y[i] > py) != (y[j] > py) && px < (x[j] - x[i]) * (py - y[i]) / (y[j] - y[i]) + x[i])
            in = !in;
    return in;
}

static int inside(int shape, double cx, double cy, double r, double px, double py)
{
    double dx = px - cx, dy = py - cy;
    switch (shape) {
    case 0:
        return dx * dx + dy * dy <= r * r;
    case 1:
        return fabs(dx) <= r * 0.85 && fabs(dy) <= r * 0.85;
    case 2: {
        double x[3] = {cx, cx + r * 0.95, cx - r * 0.95}, y[3] = {cy - r, cy + r * 0.75, cy + r * 0.75};
        return in_poly(x, y, 3, px, py);
    }
    case 3: {
        double x[10], y[10];
        for (int k = 0; k < 10; k++) {
            double a = -M_PI / 2 + k * M_PI / 5, rr = k % 2 ? r * 0.42 : r;
            x[k] = cx + rr * cos(a);
            y[k] = cy + rr * sin(a);
        }
        return in_poly(x, y, 10, px, py);
    }
    default: {
        double w = r * 0.34;
        return (fabs(dx) <= r && fabs(dy) <= w) || (fabs(dx) <= w && fabs(dy) <= r);
    }
    }
}

static int write_png(const char *path, const unsigned char *px, int w, int h)
{
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    im.width = (png_uint_32)w;
    im.height = (png_uint_32)h;
    im.format = PNG_FORMAT_RGB;
    return png_image_write_to_file(&im, path, 0, px, 0, NULL) != 0;
}

/* One single-shape scene of colour c and shape s, written to path. */
static int render(const char *path, int c, int s)
{
    enum { W = 64 };
    static unsigned char px[W * W * 3];
    int b = (int)(uni() * 5);
    double bg[3], fg[3];
    for (int k = 0; k < 3; k++) {
        bg[k] = bgs[b][k] + (uni() * 24 - 12);
        fg[k] = rgb[c][k] + (uni() * 50 - 25);
    }
    double grad = uni() < 0.5 ? uni() * 20 + 5 : 0;
    int vert = uni() < 0.5;
    int large = uni() < 0.5;
    double r = (large ? 0.19 + uni() * 0.05 : 0.10 + uni() * 0.04) * 1.35 * W;
    double cx = r + uni() * (W - 2 * r), cy = r + uni() * (W - 2 * r);
    double noise = 2 + uni() * 8;
    for (int y = 0; y < W; y++)
        for (int x = 0; x < W; x++) {
            int hit = 0; /* 3x3 supersampling for smooth edges */
            for (int sy = 0; sy < 3; sy++)
                for (int sx = 0; sx < 3; sx++)
                    hit += inside(s, cx, cy, r, x + (sx + 0.5) / 3, y + (sy + 0.5) / 3);
            double t = hit / 9.0, g = grad * (2.0 * (vert ? y : x) / (W - 1) - 1);
            for (int k = 0; k < 3; k++) {
                double v = (1 - t) * (bg[k] + g) + t * fg[k] + gauss() * noise;
                px[(y * W + x) * 3 + k] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5);
            }
        }
    return write_png(path, px, W, W);
}

static int make_gallery(const char *dir, int n)
{
    mkdir(dir, 0755);
    for (int i = 0; i < n; i++) {
        int label = i % 30, c = label / 5, s = label % 5;
        char sub[400], path[600];
        snprintf(sub, sizeof sub, "%s/%s", dir, colors[c]); /* folders per colour */
        mkdir(sub, 0755);
        snprintf(path, sizeof path, "%s/%04d_%s_%s.png", sub, i, colors[c], shapes[s]);
        if (!render(path, c, s))
            return 0;
    }
    return 1;
}

/* ---- SQLite checks done by hand ---- */

static long long sql_int(const char *db_path, const char *sql)
{
    sqlite3 *db = NULL;
    long long v = -1;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_busy_timeout(db, 10000);
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return v;
}

static int integrity_ok(const char *db_path)
{
    sqlite3 *db = NULL;
    int ok = 0;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            ok = strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0;
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return ok;
}

static long long json_num(const char *text, const char *key)
{
    cJSON *o = cJSON_Parse(text);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    long long r = cJSON_IsNumber(v) ? (long long)v->valuedouble : -1;
    cJSON_Delete(o);
    return r;
}

/* Fields that may be missing when the CLI misbehaves: "" and NAN, not a crash. */
static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static double jnum(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* ---- checks ---- */

static char gallery[300], ix[300];

/* precision@10 of a text query per colour+shape label */
static void check_precision(void)
{
    char lines[300];
    snprintf(lines, sizeof lines, "%s/queries.txt", tmp);
    FILE *f = fopen(lines, "w");
    for (int c = 0; c < 6; c++)
        for (int s = 0; s < 5; s++)
            fprintf(f, "a %s %s\n", colors[c], shapes[s]);
    fclose(f);
    int rc = runf("search %s --lines %s -k 10 --json", ix, lines);
    check(rc == 0, "search --lines answers 30 queries together (exit %d) %s", rc, err_text);
    double sum = 0, worst = 1;
    char worst_q[64] = "";
    int nq = 0;
    for (char *line = strtok(out_text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        const char *q = jstr(o, "query");
        const cJSON *res = cJSON_GetObjectItemCaseSensitive(o, "results");
        char want[64];
        snprintf(want, sizeof want, "_%s.png", q + 2); /* "a red circle" -> "_red circle.png" */
        char *sp = strchr(want, ' ');
        if (sp)
            *sp = '_';
        int good = 0, n = cJSON_GetArraySize(res);
        for (int j = 0; j < n; j++) {
            const char *p = jstr(cJSON_GetArrayItem(res, j), "path");
            size_t lp = strlen(p), lw = strlen(want);
            good += lp > lw && strcmp(p + lp - lw, want) == 0;
        }
        double prec = n ? good / 10.0 : 0;
        sum += prec;
        if (prec < worst) {
            worst = prec;
            snprintf(worst_q, sizeof worst_q, "%s", q);
        }
        nq++;
        cJSON_Delete(o);
    }
    double mean = nq ? sum / nq : 0;
    printf("precision@10 over %d colour+shape queries: mean %.3f, worst %.1f ('%s')\n", nq, mean,
           worst, worst_q);
    check(nq == 30 && mean >= 0.9, "text queries find their shapes: mean precision@10 %.3f >= 0.9",
          mean);
}

/* The index's results equal a brute-force search over the exported matrix in C. */
static void check_brute_force(tsr_ctx *ctx)
{
    char npy[300], jsonl[300];
    snprintf(npy, sizeof npy, "%s/all.npy", tmp);
    snprintf(jsonl, sizeof jsonl, "%s/all.jsonl", tmp);
    int rc = runf("index export %s --npy %s --jsonl %s", ix, npy, jsonl);
    check(rc == 0, "index export --npy --jsonl (exit %d) %s", rc, err_text);
    int ndim = 0;
    long dims[4] = {0};
    float *x = load_npy(npy, &ndim, dims);
    char *jl = slurp(jsonl);
    int rows = 0;
    for (char *p = jl; p && *p; p++)
        rows += *p == '\n';
    check(x && ndim == 2 && dims[0] == N_GALLERY && dims[1] == 64 && rows == N_GALLERY,
          "the .npy is (%ld, %ld) float32 and the .jsonl has %d lines", dims[0], dims[1], rows);
    char **paths = calloc(N_GALLERY, sizeof *paths);
    int r = 0;
    for (char *line = jl ? strtok(jl, "\n") : NULL; line && r < N_GALLERY; line = strtok(NULL, "\n"), r++) {
        cJSON *o = cJSON_Parse(line);
        paths[r] = strdup(jstr(o, "path"));
        cJSON_Delete(o);
    }
    /* a query embedding from the library, the top 7 by hand, then the CLI */
    tsr_model *m = NULL;
    tsr_session *s = NULL;
    tsr_error err = {0};
    const char *q = "a purple star";
    float e[64];
    if (!x || tsr_model_load(ctx, MODEL, &m, &err) || tsr_session_create(m, NULL, &s, &err) ||
        tsr_session_embed_texts(s, &q, 1, 1, e, NULL, &err)) {
        check(0, "query embedding: %s", err.msg);
    } else {
        int best[7];
        float bs[7];
        int nb = 0;
        for (int i = 0; i < N_GALLERY; i++) {
            double d = 0;
            for (int k = 0; k < 64; k++)
                d += (double)e[k] * x[(size_t)i * 64 + k];
            float v = (float)d;
            if (nb == 7 && !(v > bs[6]))
                continue;
            int j = nb < 7 ? nb++ : 6;
            while (j > 0 && v > bs[j - 1]) {
                bs[j] = bs[j - 1];
                best[j] = best[j - 1];
                j--;
            }
            bs[j] = v;
            best[j] = i;
        }
        rc = runf("search %s --text '%s' -k 7 --json", ix, q);
        cJSON *o = cJSON_Parse(out_text);
        const cJSON *res = cJSON_GetObjectItemCaseSensitive(o, "results");
        int same = cJSON_GetArraySize(res) == 7;
        double max_err = 0;
        for (int j = 0; same && j < 7; j++) {
            const cJSON *h = cJSON_GetArrayItem(res, j);
            same = strcmp(jstr(h, "path"),
                          paths[best[j]]) == 0;
            double d = fabs(jnum(h, "score") - bs[j]);
            if (d > max_err)
                max_err = d;
        }
        printf("brute force: top score %.5f, max score difference %.2g\n", bs[0], max_err);
        check(rc == 0 && same && max_err <= 1e-5,
              "search --text equals a brute-force search in C (7 paths in order, scores within "
              "1e-5: %.2g)",
              max_err);
        cJSON_Delete(o);
    }
    /* an indexed image as the query comes back first with score 1 */
    int firsts = 0;
    double worst = 0;
    for (int i = 0; i < 5; i++) {
        const char *p = paths[i * 101 % N_GALLERY];
        rc = runf("search %s --image '%s' -k 3 --json", ix, p);
        cJSON *o = cJSON_Parse(out_text);
        const cJSON *h = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "results"), 0);
        if (rc == 0 && h && strcmp(jstr(h, "path"), p) == 0) {
            firsts++;
            double d = fabs(jnum(h, "score") - 1.0);
            worst = d > worst ? d : worst;
        }
        cJSON_Delete(o);
    }
    check(firsts == 5 && worst <= 1e-5,
          "an indexed image finds itself first with score 1 (5 of 5: %d; |score - 1| %.2g)", firsts,
          worst);
    /* --where filters by path */
    rc = runf("search %s --text 'a red circle' -k 200 --where '*/blue/*' --json", ix);
    cJSON *o = cJSON_Parse(out_text);
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(o, "results");
    int all_blue = cJSON_GetArraySize(res) == 90;
    for (int j = 0; all_blue && j < cJSON_GetArraySize(res); j++)
        all_blue = strstr(jstr(cJSON_GetArrayItem(res, j), "path"),
                          "/blue/") != NULL;
    check(rc == 0 && all_blue, "--where '*/blue/*' returns the 90 blue images only (%d results)",
          cJSON_GetArraySize(res));
    cJSON_Delete(o);
    tsr_session_free(s);
    tsr_model_free(m);
    for (int i = 0; i < N_GALLERY; i++)
        free(paths[i]);
    free(paths);
    free(jl);
    free(x);
}

/* The library call: several device buffers (chunks of 7 rows) give what one gives. */
static void check_chunks(tsr_ctx *ctx)
{
    tsr_index *h = NULL;
    tsr_error err = {0};
    enum { NQ = 3, K = 25 };
    float q[NQ * 64];
    for (int i = 0; i < NQ * 64; i++)
        q[i] = (float)gauss();
    tsr_hit a[NQ * K], b[NQ * K];
    int na[NQ], nb[NQ];
    tsr_search_params p = tsr_search_default_params();
    p.k = K;
    int ok = tsr_index_open(ix, 0, &h, &err) == TSR_OK &&
             tsr_index_search(h, ctx, q, NQ, &p, a, na, NULL, &err) == TSR_OK;
    p.chunk_rows = 7;
    tsr_search_info info = {0};
    ok = ok && tsr_index_search(h, ctx, q, NQ, &p, b, nb, &info, &err) == TSR_OK;
    int same = ok;
    double max_err = 0;
    for (int i = 0; same && i < NQ; i++) {
        same = na[i] == K && nb[i] == K;
        for (int j = 0; same && j < K; j++) {
            same = a[i * K + j].id == b[i * K + j].id && strcmp(a[i * K + j].path, b[i * K + j].path) == 0;
            double d = fabs(a[i * K + j].score - b[i * K + j].score);
            max_err = d > max_err ? d : max_err;
        }
    }
    check(same && max_err <= 1e-6 && info.searched == N_GALLERY,
          "search over 78 device buffers of 7 rows equals one buffer (ids identical, scores within "
          "%.2g) %s", max_err, err.msg);
    if (ok) {
        tsr_hits_free(a, NQ * K);
        tsr_hits_free(b, NQ * K);
    }
    tsr_index_close(h);
}

static void touch_later(const char *path)
{
    struct timespec ts[2];
    clock_gettime(CLOCK_REALTIME, &ts[0]);
    ts[0].tv_sec += 5;
    ts[1] = ts[0];
    utimensat(AT_FDCWD, path, ts, 0);
}

static void check_incremental(void)
{
    char dir[300], ixi[300], p[600];
    snprintf(dir, sizeof dir, "%s/inc", tmp);
    snprintf(ixi, sizeof ixi, "%s/inc.tsx", tmp);
    int rc = shellf("cp -r %s/red %s && %s index create --model %s %s >/dev/null", gallery, dir,
                  TSR_CLI, MODEL, ixi);
    check(rc == 0, "incremental: a copy of the 90 red images and a new index");
    rc = runf("index add %s %s --json", ixi, dir);
    check(rc == 0 && json_num(out_text, "added") == 90 && json_num(out_text, "files") == 90,
          "add: 90 added (%s)", out_text);
    rc = runf("index add %s %s --json", ixi, dir);
    check(rc == 0 && json_num(out_text, "added") == 0 && json_num(out_text, "unchanged") == 90,
          "add again: 90 unchanged, nothing embedded (%s)", out_text);
    /* touch one, change one, delete one, add two (one of them not an image) */
    snprintf(p, sizeof p, "%s/0000_red_circle.png", dir);
    touch_later(p);
    snprintf(p, sizeof p, "%s/0001_red_square.png", dir);
    render(p, 2, 3); /* now a blue star */
    snprintf(p, sizeof p, "%s/0002_red_triangle.png", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/new_red_cross.png", dir);
    render(p, 0, 4);
    snprintf(p, sizeof p, "%s/readme.txt", dir);
    FILE *f = fopen(p, "w");
    fputs("not an image\n", f);
    fclose(f);
    rc = runf("index sync %s %s --json", ixi, dir);
    check(rc == 0 && json_num(out_text, "added") == 1 && json_num(out_text, "updated") == 2 &&
              json_num(out_text, "removed") == 1 && json_num(out_text, "unchanged") == 87 &&
              json_num(out_text, "skipped_other") == 1,
          "sync: 1 added, 2 embedded again, 1 removed, 87 unchanged, 1 not an image (%s)", out_text);
    rc = runf("index info %s --json", ixi);
    check(rc == 0 && json_num(out_text, "count") == 90, "info: 90 items after sync");
    rc = runf("search %s --text 'a blue star' -k 1 --json", ixi);
    check(rc == 0 && strstr(out_text, "0001_red_square.png"),
          "the changed file is found by its new content");
    snprintf(p, sizeof p, "%s/0003_red_star.png", dir);
    rc = runf("index remove %s %s --json", ixi, p);
    check(rc == 0 && json_num(out_text, "removed") == 1, "remove one file (%s)", out_text);
    rc = runf("index remove %s %s --json", ixi, dir);
    check(rc == 0 && json_num(out_text, "removed") == 89, "remove the folder: 89 (%s)", out_text);
    rc = runf("index add %s %s --json", ixi, dir);
    check(rc == 0 && json_num(out_text, "added") == 90, "add again: 90 added (%s)", out_text);
    snprintf(p, sizeof p, "%s/0004_red_cross.png", dir); /* an image no longer */
    f = fopen(p, "w");
    fputs("replaced by text\n", f);
    fclose(f);
    touch_later(p);
    rc = runf("index add %s %s --json", ixi, dir);
    check(rc == 0 && json_num(out_text, "removed") == 1 && json_num(out_text, "skipped_other") == 2,
          "a file that is no longer an image leaves the index (%s)", out_text);
    check(sql_int(ixi, "SELECT COUNT(*) - COUNT(DISTINCT path) FROM items") == 0 &&
              sql_int(ixi, "SELECT COUNT(*) FROM items") == 89,
          "no duplicates: 89 rows, 89 paths");
}

static void check_kill(void)
{
    char ixk[300];
    snprintf(ixk, sizeof ixk, "%s/kill.tsx", tmp);
    int rc = runf("index create --model %s %s", MODEL, ixk);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(TSR_CLI, TSR_CLI, "index", "add", ixk, gallery, "--batch", "2", "--threads", "1",
              (char *)NULL);
        _exit(127);
    }
    long long seen = 0;
    for (int i = 0; i < 3000 && seen < 40; i++) { /* wait for some batches, at most 60 s */
        nanosleep(&(struct timespec){0, 20000000}, NULL);
        seen = sql_int(ixk, "SELECT COUNT(*) FROM items");
    }
    kill(pid, SIGKILL);
    int st = 0;
    waitpid(pid, &st, 0);
    long long kept = sql_int(ixk, "SELECT COUNT(*) FROM items");
    check(rc == 0 && WIFSIGNALED(st) && kept > 0 && kept < N_GALLERY,
          "kill -9 in the middle of add: killed with %lld of %d items stored", kept, N_GALLERY);
    check(integrity_ok(ixk), "PRAGMA integrity_check passes after kill -9");
    check(kept % 2 == 0, "only whole batches of 2 were kept (%lld)", kept);
    rc = runf("index add %s %s --json", ixk, gallery);
    check(rc == 0 && json_num(out_text, "unchanged") == kept &&
              json_num(out_text, "added") == N_GALLERY - kept,
          "the next add resumes: %lld unchanged, the rest added (%s)", kept, out_text);
    check(sql_int(ixk, "SELECT COUNT(*) FROM items") == N_GALLERY &&
              sql_int(ixk, "SELECT COUNT(DISTINCT path) FROM items") == N_GALLERY,
          "nothing lost or duplicated: %d rows, %d paths", N_GALLERY, N_GALLERY);
}

static void check_concurrent(void)
{
    char ixc[300];
    snprintf(ixc, sizeof ixc, "%s/conc.tsx", tmp);
    int rc = runf("index create --model %s %s", MODEL, ixc);
    rc |= shellf("sh -c '%s index add %s %s/red %s/blue --batch 4 --quiet & "
               "%s index add %s %s/blue %s/green --batch 4 --quiet; r=$?; wait $!; "
               "echo $r $?'",
               TSR_CLI, ixc, gallery, gallery, TSR_CLI, ixc, gallery, gallery);
    check(rc == 0 && strncmp(out_text, "0 0", 3) == 0,
          "two add processes on one index (overlapping folders) both finish: '%.5s' %s", out_text,
          err_text);
    check(integrity_ok(ixc) && sql_int(ixc, "SELECT COUNT(*) FROM items") == 270 &&
              sql_int(ixc, "SELECT COUNT(DISTINCT path) FROM items") == 270,
          "the index holds the 270 images once each, intact");
}

static void check_shards(void)
{
    char sh[3][300], merged[300];
    int rc = 0;
    long long total = 0;
    for (int i = 0; i < 3; i++) {
        snprintf(sh[i], sizeof sh[i], "%s/shard%d.tsx", tmp, i);
        rc |= runf("index create --model %s %s", MODEL, sh[i]);
        rc |= runf("index add %s %s --shard %d/3 --json", sh[i], gallery, i);
        total += json_num(out_text, "added");
    }
    snprintf(merged, sizeof merged, "%s/merged.tsx", tmp);
    rc |= runf("index merge %s %s %s %s", merged, sh[0], sh[1], sh[2]);
    long long a = sql_int(sh[0], "SELECT COUNT(*) FROM items");
    check(rc == 0 && total == N_GALLERY && a > 100 && a < 260 &&
              sql_int(merged, "SELECT COUNT(*) FROM items") == N_GALLERY,
          "three shards (%lld in the first) hold every file once and merge into %d items", a,
          N_GALLERY);
    rc = runf("search %s --text 'a green cross' -k 5 --json", merged);
    static char first[sizeof out_text];
    snprintf(first, sizeof first, "%s", out_text);
    rc |= runf("search %s --text 'a green cross' -k 5 --json", ix);
    /* the same paths and scores, the ids aside */
    cJSON *x = cJSON_Parse(first), *y = cJSON_Parse(out_text);
    const cJSON *rx = cJSON_GetObjectItemCaseSensitive(x, "results"),
                *ry = cJSON_GetObjectItemCaseSensitive(y, "results");
    int same = cJSON_GetArraySize(rx) == 5 && cJSON_GetArraySize(ry) == 5;
    for (int j = 0; same && j < 5; j++)
        same = strcmp(jstr(cJSON_GetArrayItem(rx, j), "path"),
                      jstr(cJSON_GetArrayItem(ry, j), "path")) == 0;
    check(rc == 0 && same, "the merged index answers like the one built in one go");
    cJSON_Delete(x);
    cJSON_Delete(y);
    char other[300];
    snprintf(other, sizeof other, "%s/other.tsx", tmp);
    runf("index create --model %s %s", OTHER, other);
    rc = runf("index merge %s %s %s", merged, sh[0], other);
    check(rc == 1 && strstr(err_text, "another model") && strstr(err_text, "fingerprint"),
          "merging a shard of another model is refused: %s", err_text);
}

static void check_refusals(void)
{
    char p[600];
    int rc;
    char other[300];
    snprintf(other, sizeof other, "%s/other.tsx", tmp);
    rc = runf("index add %s %s/red --model %s", ix, gallery, OTHER);
    check(rc == 1 && strstr(err_text, "another model") && strstr(err_text, "fingerprint"),
          "adding with another model is refused, naming both fingerprints: %s", err_text);
    rc = runf("search %s --text 'a red circle' --model %s", ix, OTHER);
    check(rc == 1 && strstr(err_text, "another model"), "searching with another model is refused");
    rc = runf("index add %s/missing.tsx %s", tmp, gallery);
    check(rc == 1 && strstr(err_text, "missing.tsx") && strstr(err_text, "no such index"),
          "a missing index: %s", err_text);
    snprintf(p, sizeof p, "%s/empty.tsx", tmp);
    fclose(fopen(p, "w"));
    rc = runf("index info %s", p);
    check(rc == 1 && strstr(err_text, "empty.tsx") && strstr(err_text, "not a tessera index"),
          "an empty file: %s", err_text);
    snprintf(p, sizeof p, "%s/text.tsx", tmp);
    FILE *f = fopen(p, "w");
    fputs("this is not a database, just some text that is long enough\n", f);
    fclose(f);
    rc = runf("search %s --text x", p);
    check(rc == 1 && strstr(err_text, "text.tsx") && strstr(err_text, "not an SQLite database"),
          "a text file: %s", err_text);
    snprintf(p, sizeof p, "%s/plain.db", tmp);
    sqlite3 *db = NULL;
    sqlite3_open(p, &db);
    sqlite3_exec(db, "CREATE TABLE t(x); INSERT INTO t VALUES(1);", NULL, NULL, NULL);
    sqlite3_close(db);
    rc = runf("index info %s", p);
    check(rc == 1 && strstr(err_text, "not a tessera index"), "another SQLite database: %s",
          err_text);
    /* a newer schema */
    snprintf(p, sizeof p, "%s/newer.tsx", tmp);
    runf("index create --model %s %s", MODEL, p);
    sqlite3_open(p, &db);
    sqlite3_exec(db, "PRAGMA user_version = 7", NULL, NULL, NULL);
    sqlite3_close(db);
    rc = runf("index add %s %s/red", p, gallery);
    check(rc == 1 && strstr(err_text, "newer tessera") && strstr(err_text, "schema 7"),
          "an index from a newer schema: %s", err_text);
    /* corrupt pages and a truncated file (copies of the full index) */
    char c1[300], c2[300];
    snprintf(c1, sizeof c1, "%s/corrupt.tsx", tmp);
    snprintf(c2, sizeof c2, "%s/truncated.tsx", tmp);
    shellf("cp %s %s && cp %s %s", ix, c1, ix, c2);
    int fd = open(c1, O_WRONLY);
    char junk[8192];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (char)(i * 7 + 13);
    for (off_t off = 4096 * 2; off < 4096 * 40; off += 4096 * 3)
        pwrite(fd, junk, sizeof junk, off);
    close(fd);
    rc = runf("search %s --text 'a red circle' --exact", c1);
    int r2 = runf("index export %s --npy %s/c.npy", c1, tmp);
    check(rc == 1 && r2 == 1 && strstr(err_text, "corrupt"),
          "a corrupt index is refused with a message, no crash (exits %d, %d): %s", rc, r2,
          err_text);
    struct stat sb;
    stat(c2, &sb);
    truncate(c2, sb.st_size / 2);
    rc = runf("index export %s --npy %s/t.npy", c2, tmp);
    check(rc == 1 && strstr(err_text, "truncated.tsx"),
          "a truncated index is refused (exit %d): %s", rc, err_text);
    rc = runf("index add %s %s/no-such-folder", ix, tmp);
    check(strstr(err_text, "no-such-folder") != NULL, "a path that does not exist is named: %s",
          err_text);
    snprintf(p, sizeof p, "%s/emptydir", tmp);
    mkdir(p, 0755);
    rc = runf("index add %s %s", ix, p);
    check(rc == 1 && strstr(err_text, "emptydir") && strstr(err_text, "no files"),
          "an empty folder (exit %d): %s", rc, err_text);
    rc = runf("index create --model %s %s", MODEL, ix);
    check(rc == 1 && strstr(err_text, "already exists"), "create over an existing index: %s",
          err_text);
    rc = runf("search %s --text x -k 0", ix);
    check(rc == 2, "search -k 0 is a usage error");
    rc = runf("index add %s %s --shard 3/3", ix, gallery);
    check(rc == 2 && strstr(err_text, "--shard"), "--shard 3/3 is a usage error: %s", err_text);
    rc = runf("search %s --text \"$(printf 'caf\\351')\"", ix);
    check(rc == 2 && strstr(err_text, "UTF-8"), "invalid UTF-8 in a query: %s", err_text);
}

/* Paths at the edges: links, odd bytes, the root, the index itself, a
 * read-only user, an empty index, a second writer seen by a first reader. */
static void check_edges(tsr_ctx *ctx)
{
    char dir[300], ixe[300], p[700], q[700];
    snprintf(dir, sizeof dir, "%s/edges", tmp);
    snprintf(ixe, sizeof ixe, "%s/edges/edges.tsx", tmp); /* inside the folder it indexes */
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/outside.png", tmp);
    render(p, 2, 0);
    snprintf(q, sizeof q, "%s/link.png", dir);
    symlink(p, q);
    snprintf(p, sizeof p, "%s/bad\xff\xfe name.png", dir); /* not UTF-8, with a space */
    render(p, 0, 0);
    snprintf(p, sizeof p, "%s/new\nline.png", dir);
    render(p, 0, 0);
    int rc = runf("index create --model %s %s", MODEL, ixe);
    check(rc == 0, "an empty index (exit %d)", rc);
    rc = runf("search %s --text 'a red circle' --json", ixe);
    cJSON *o = cJSON_Parse(out_text);
    check(rc == 0 && cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(o, "results")) == 0,
          "searching an empty index gives no results, exit 0");
    cJSON_Delete(o);
    rc = runf("index add %s %s %s --json", ixe, dir, ixe);
    check(rc == 0 && json_num(out_text, "added") == 3 && json_num(out_text, "skipped_other") == 0 &&
              strstr(err_text, "the index's own file"),
          "the index inside its folder and given by name is never an input: 3 added (%s | %s)",
          out_text, err_text);
    char real[PATH_MAX];
    snprintf(p, sizeof p, "%s/outside.png", tmp);
    check(realpath(p, real) && sql_int(ixe, "SELECT COUNT(*) FROM items WHERE path NOT LIKE '%/edges/%'") == 1,
          "a symbolic link is stored as the file it points to");
    rc = runf("search %s --text 'a red circle' -k 5 --json", ixe);
    int valid = tsr_utf8_valid(out_text, strlen(out_text), NULL);
    o = cJSON_Parse(out_text);
    int hex = 0, nl = 0;
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(o, "results");
    for (int j = 0; j < cJSON_GetArraySize(res); j++) {
        const cJSON *h = cJSON_GetArrayItem(res, j);
        hex += strcmp(jstr(h, "path_bytes_hex"), "") != 0 &&
               strstr(jstr(h, "path_bytes_hex"), "fffe") != NULL;
        nl += strchr(jstr(h, "path"), '\n') != NULL;
    }
    check(rc == 0 && valid && o && hex == 1 && nl == 1,
          "--json stays valid UTF-8 with a non-UTF-8 file name (its bytes in path_bytes_hex) and "
          "keeps a newline inside the JSON string");
    cJSON_Delete(o);
    rc = runf("search %s --text 'a red circle' -k 5", ixe);
    int lines = 0;
    for (char *c = out_text; *c; c++)
        lines += *c == '\n';
    check(rc == 0 && lines == 3, "text output: one line per result (%d)", lines);
    rc = runf("index remove %s %s --json", ixe, q);
    check(rc == 0 && json_num(out_text, "removed") == 1, "remove by the link's name (%s)", out_text);
    snprintf(p, sizeof p, "%s/new\nline.png", dir);
    unlink(p);
    rc = runf("index remove %s './edges/../edges//new\nline.png' --json", ixe);
    check(rc == 0 && json_num(out_text, "removed") == 1,
          "remove a deleted file by a relative path with . and .. (%s)", out_text);
    /* a second handle writes; the first one's resident matrix follows */
    tsr_index *a = NULL, *b = NULL;
    tsr_error err = {0};
    float e[64] = {0};
    e[5] = 1;
    tsr_hit hits[2];
    int nh = 0;
    tsr_search_params sp = tsr_search_default_params();
    sp.k = 1;
    int ok = tsr_index_open(ixe, 0, &a, &err) == TSR_OK &&
             tsr_index_search(a, ctx, e, 1, &sp, hits, &nh, NULL, &err) == TSR_OK;
    if (ok)
        tsr_hits_free(hits, 1);
    tsr_index_item it = {"/made/up.png", 1, 1, "00", TSR_MOD_IMAGE, "{\"note\": \"api\"}", e};
    ok = ok && tsr_index_open(ixe, 1, &b, &err) == TSR_OK && tsr_index_put(b, &it, 1, &err) == TSR_OK;
    tsr_index_close(b);
    ok = ok && tsr_index_search(a, ctx, e, 1, &sp, hits, &nh, NULL, &err) == TSR_OK;
    check(ok && nh == 1 && strcmp(hits[0].path, "/made/up.png") == 0 && fabs(hits[0].score - 1) < 1e-6,
          "a reader's next search sees another handle's write (%s)", ok ? hits[0].path : err.msg);
    if (ok)
        tsr_hits_free(hits, 1);
    tsr_index_close(a);
    /* the root as a folder to remove */
    snprintf(p, sizeof p, "%s/root.tsx", tmp);
    shellf("cp %s %s && { cp %s-wal %s-wal 2>/dev/null || true; }", ixe, p, ixe, p);
    rc = runf("index remove %s / --json", p);
    check(rc == 0 && json_num(out_text, "removed") == 2, "remove / drops everything (%s)", out_text);
    /* a user who cannot write the index's folder can still search it */
    char ro[300];
    snprintf(ro, sizeof ro, "%s/ro", tmp);
    mkdir(ro, 0755);
    chmod(tmp, 0755);
    snprintf(p, sizeof p, "%s/ro/x.tsx", tmp);
    shellf("cp %s %s && chmod 644 %s && mkdir -p %s/home && chmod 777 %s/home", ix, p, p, tmp, tmp);
    if (geteuid() == 0 && access("/usr/bin/setpriv", X_OK) == 0) {
        rc = shellf("setpriv --reuid=65534 --regid=65534 --clear-groups env HOME=%s/home "
                    "TESSERA_CACHE_DIR=%s/home/cache %s search %s --text 'a red circle' -k 3",
                    tmp, tmp, TSR_CLI, p);
        check(rc == 0 && strstr(out_text, "red_circle"),
              "another user, without write access to the folder, searches the index (%s)",
              err_text);
    } else if (geteuid() != 0) {
        chmod(ro, 0555);
        rc = runf("search %s --text 'a red circle' -k 3", p);
        check(rc == 0 && strstr(out_text, "red_circle"),
              "searching an index in a read-only folder (%s)", err_text);
        chmod(ro, 0755);
    } else {
        printf("skipped: the read-only user check (root without setpriv)\n");
    }
}

/* FAISS: the approximate index, staleness, a missing file, export --faiss. */
static void check_ann(void)
{
    char ixa[300], p[700];
    snprintf(ixa, sizeof ixa, "%s/ann.tsx", tmp);
    shellf("cp %s %s && { cp %s-wal %s-wal 2>/dev/null || true; }", ix, ixa, ix, ixa);
    int rc = runf("index build-ann %s --ann hnsw", ixa);
    if (rc != 0 && strstr(err_text, "without FAISS")) {
        printf("skipped: approximate search (this build has no FAISS)\n");
        return;
    }
    check(rc == 0, "build-ann --ann hnsw (exit %d) %s", rc, err_text);
    rc = runf("index build-ann %s --ann ivf-pq", ixa);
    check(rc == 1 && strstr(err_text, "624"), "ivf-pq on 540 items says what it needs: %s",
          err_text);
    const char *qs[] = {"a red circle", "a blue star", "a green cross", "a yellow square",
                        "a purple triangle"};
    int same = 0, total = 0, approx = 1;
    for (int i = 0; i < 5; i++) {
        static char exact[sizeof out_text];
        runf("search %s --text '%s' -k 10 --json --exact", ixa, qs[i]);
        snprintf(exact, sizeof exact, "%s", out_text);
        rc = runf("search %s --text '%s' -k 10 --json", ixa, qs[i]);
        cJSON *a = cJSON_Parse(out_text), *e = cJSON_Parse(exact);
        approx &= rc == 0 && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "approximate"));
        const cJSON *ra = cJSON_GetObjectItemCaseSensitive(a, "results"),
                    *re = cJSON_GetObjectItemCaseSensitive(e, "results");
        for (int j = 0; j < cJSON_GetArraySize(re); j++) {
            total++;
            for (int l = 0; l < cJSON_GetArraySize(ra); l++)
                if (strcmp(jstr(cJSON_GetArrayItem(re, j), "path"),
                           jstr(cJSON_GetArrayItem(ra, l), "path")) == 0) {
                    same++;
                    break;
                }
        }
        cJSON_Delete(a);
        cJSON_Delete(e);
    }
    double recall = total ? (double)same / total : 0;
    printf("approximate search: recall@10 %.3f against --exact over 5 queries\n", recall);
    check(approx && total == 50 && recall >= 0.95,
          "search answers from the HNSW index (approximate: true), recall@10 %.3f >= 0.95", recall);
    rc = runf("index info %s --json", ixa);
    check(rc == 0 && strstr(out_text, "\"kind\":\"hnsw\"") && strstr(out_text, "\"current\":true"),
          "info shows the approximate index as current");
    snprintf(p, sizeof p, "%s/extra.png", tmp);
    render(p, 0, 0);
    runf("index add %s %s --quiet", ixa, p);
    rc = runf("search %s --text 'a red circle' -k 3", ixa);
    check(rc == 0 && strstr(err_text, "older than the items"),
          "after an add the approximate index is stale: exact search with a warning (%s)", err_text);
    runf("index build-ann %s --ann hnsw", ixa);
    snprintf(p, sizeof p, "%s.ann", ixa);
    unlink(p);
    rc = runf("search %s --text 'a red circle' -k 3 --json", ixa);
    check(rc == 0 && strstr(err_text, "cannot be used") && strstr(out_text, "\"approximate\":false"),
          "a missing .ann file: exact search with the reason (%s)", err_text);
    /* export --faiss, checked by Python's numpy and faiss when they are there */
    char npy[300], jl[300], fa[300];
    snprintf(npy, sizeof npy, "%s/ann.npy", tmp);
    snprintf(jl, sizeof jl, "%s/ann.jsonl", tmp);
    snprintf(fa, sizeof fa, "%s/ann.faiss", tmp);
    rc = runf("index export %s --npy %s --jsonl %s --faiss %s", ixa, npy, jl, fa);
    struct stat sb = {0};
    int got = stat(fa, &sb) == 0;
    check(rc == 0 && got && sb.st_size > 541 * 64 * 4,
          "export --faiss writes an IndexFlatIP of every row (%lld bytes)", (long long)sb.st_size);
    const char *py = getenv("TSR_PYTHON") ? getenv("TSR_PYTHON") : "python3";
    if (shellf("%s -c 'import numpy, faiss'", py) == 0) {
        rc = shellf("%s %s/tests/reference/check_index_export.py --tessera %s --index %s --npy %s "
                    "--jsonl %s --faiss %s",
                    py, TSR_SOURCE_DIR, TSR_CLI, ixa, npy, jl, fa);
        printf("%s", out_text);
        check(rc == 0, "numpy and faiss.read_index open the exports and agree with tessera search");
    } else {
        printf("skipped: the Python check of the exports (%s has no numpy and faiss; set "
               "TSR_PYTHON)\n", py);
    }
}

static void check_media_kinds(void)
{
    /* audio is counted and skipped; a broken image is reported and the run goes on */
    char dir[300], p[600], ixm[300];
    snprintf(dir, sizeof dir, "%s/mixed", tmp);
    snprintf(ixm, sizeof ixm, "%s/mixed.tsx", tmp);
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/speech.bin", dir); /* a WAV, named to hide it */
    FILE *f = fopen(p, "wb");
    unsigned char wav[44] = {'R', 'I', 'F', 'F', 36, 0, 0, 0, 'W', 'A', 'V', 'E'};
    fwrite(wav, 1, sizeof wav, f);
    fclose(f);
    snprintf(p, sizeof p, "%s/photo.dat", dir); /* a PNG without its extension */
    render(p, 1, 1);
    snprintf(p, sizeof p, "%s/broken.png", dir);
    f = fopen(p, "wb");
    fwrite("\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 1, 16, f);
    fclose(f);
    int rc = runf("index create --model %s %s", MODEL, ixm);
    rc |= runf("index add %s %s --json", ixm, dir);
    check(rc == 0 && json_num(out_text, "added") == 1 && json_num(out_text, "skipped_audio") == 1 &&
              json_num(out_text, "failed") == 1 && strstr(err_text, "broken.png"),
          "kinds by content: 1 image added, 1 audio skipped, 1 broken image reported: %s | %s",
          out_text, err_text);
}

int main(void)
{
    tsr_ctx *ctx = ctx_or_skip();
    snprintf(tmp, sizeof tmp, "/tmp/tessera-index-XXXXXX");
    if (!mkdtemp(tmp))
        return 1;
    snprintf(gallery, sizeof gallery, "%s/gallery", tmp);
    snprintf(ix, sizeof ix, "%s/gallery.tsx", tmp);
    check(make_gallery(gallery, N_GALLERY), "generated %d shape images (30 labels)", N_GALLERY);
    int rc = runf("index create --model %s %s", MODEL, ix);
    check(rc == 0, "index create (exit %d) %s", rc, err_text);
    rc = runf("index add %s %s --json --batch 16", ix, gallery);
    check(rc == 0 && json_num(out_text, "added") == N_GALLERY, "index add: %s %s", out_text,
          err_text);
    check_precision();
    check_brute_force(ctx);
    check_chunks(ctx);
    check_incremental();
    check_kill();
    check_concurrent();
    check_shards();
    check_refusals();
    check_media_kinds();
    check_edges(ctx);
    check_ann();
    shellf("rm -rf %s", tmp);
    tsr_ctx_free(ctx);
    return finish();
}
