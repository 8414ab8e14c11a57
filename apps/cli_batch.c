/* Batch runs over many images (classify, embed): the inputs (files, folders
 * walked recursively with images detected by content (tsr_image_sniff), --lines lists), a
 * progress bar, and decoding ahead: a host thread decodes and preprocesses
 * the next batch (its images split over one thread per core, at most 8)
 * while the device runs this one. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define MAX_DEPTH 64

/* ---- inputs ---- */

int cli_paths_push(cli_paths *l, const char *p)
{
    if (l->n == l->cap) {
        int nc = l->cap ? l->cap * 2 : 64;
        char **nv = realloc(l->v, sizeof(char *) * (size_t)nc);
        if (!nv)
            return 0;
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n] = strdup(p);
    return l->v[l->n] ? (l->n++, 1) : 0;
}

/* The first bytes of path through a content test; 0 when it cannot be read. */
static int sniff_head(const char *path, int (*test)(const unsigned char *, size_t))
{
    unsigned char h[32] = {0};
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    size_t n = fread(h, 1, sizeof h, f);
    fclose(f);
    return test(h, n);
}

int cli_sniff_image(const char *path) { return sniff_head(path, tsr_image_sniff); }

int cli_sniff_audio(const char *path) { return sniff_head(path, tsr_audio_sniff); }

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The images under dir, in name order; folders are walked, links to
 * folders are not followed (no loops), hidden entries are skipped. */
static int walk(const char *cmd, const char *dir, int depth, int (*sniff)(const char *),
                cli_paths *out)
{
    if (depth > MAX_DEPTH) {
        fprintf(stderr, "tessera %s: %s: folders nested deeper than %d are not walked\n", cmd,
                dir, MAX_DEPTH);
        return 1;
    }
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "tessera %s: error: %s: cannot read folder (%s)\n", cmd, dir,
                strerror(errno));
        return 1;
    }
    cli_paths here = {0};
    struct dirent *e;
    int ok = 1;
    size_t dl = strlen(dir);
    while (ok && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char *p = NULL;
        if (asprintf(&p, "%s%s%s", dir, dl && dir[dl - 1] == '/' ? "" : "/", e->d_name) < 0)
            break;
        ok = cli_paths_push(&here, p);
        free(p);
    }
    closedir(d);
    if (here.n > 1)
        qsort(here.v, (size_t)here.n, sizeof(char *), cmp_str);
    int bad = !ok;
    for (int i = 0; i < here.n && ok; i++) {
        struct stat lb;
        if (lstat(here.v[i], &lb) != 0)
            continue;
        if (S_ISDIR(lb.st_mode))
            bad |= walk(cmd, here.v[i], depth + 1, sniff, out);
        else if ((S_ISREG(lb.st_mode) || S_ISLNK(lb.st_mode)) && sniff(here.v[i]))
            ok = cli_paths_push(out, here.v[i]);
    }
    cli_paths_free(&here);
    return bad || !ok;
}

int cli_collect_inputs(const char *cmd, const char *const *args, int n, const char *lines_file,
                       cli_paths *out)
{
    return cli_collect_inputs_kind(cmd, args, n, lines_file, 0, out);
}

int cli_collect_inputs_kind(const char *cmd, const char *const *args, int n,
                            const char *lines_file, int audio, cli_paths *out)
{
    memset(out, 0, sizeof *out);
    char *buf = NULL;
    const char **lines = NULL;
    int nl = 0;
    if (lines_file) {
        int rc = cli_read_lines(cmd, lines_file, &buf, &lines, &nl);
        if (rc != EXIT_OK)
            return rc;
        args = lines;
        n = nl;
    }
    int rc = EXIT_OK;
    for (int i = 0; i < n && rc == EXIT_OK; i++) {
        struct stat sb;
        if (!args[i][0])
            continue; /* empty lines of a list */
        if (stat(args[i], &sb) == 0 && S_ISDIR(sb.st_mode)) {
            int before = out->n;
            if (walk(cmd, args[i], 0, audio ? cli_sniff_audio : cli_sniff_image, out))
                out->walk_errors++;
            if (out->n == before)
                fprintf(stderr, "tessera %s: warning: %s: no %s in this folder\n", cmd, args[i],
                        audio ? "audio files (WAV, FLAC, MP3, Ogg, M4A, ...)"
                              : "images (PNG, JPEG, WebP, GIF, TIFF, BMP)");
        } else if (!cli_paths_push(out, args[i])) {
            rc = cli_usage_error(cmd, "out of memory");
        }
    }
    free(lines);
    free(buf);
    return rc;
}

void cli_paths_free(cli_paths *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* ---- progress ---- */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void cli_bar_start(cli_bar *b, const char *what, int total, int quiet)
{
    memset(b, 0, sizeof *b);
    b->what = what;
    b->total = total;
    b->on = !quiet && total > 1 && isatty(STDERR_FILENO);
    b->t0 = b->last = now_s();
}

void cli_bar_update(cli_bar *b, int done, int errors)
{
    b->done = done;
    b->errors = errors;
    if (!b->on)
        return;
    double t = now_s();
    if (done < b->total && t - b->last < 0.1)
        return; /* at most ten redraws a second */
    b->last = t;
    double el = t - b->t0, rate = el > 0 ? done / el : 0;
    int width = 24, fill = b->total ? (int)((long long)done * width / b->total) : 0;
    fprintf(stderr, "\r%s [", b->what);
    for (int i = 0; i < width; i++)
        fputc(i < fill ? '#' : '.', stderr);
    fprintf(stderr, "] %d/%d  %.1f/s", done, b->total, rate);
    if (rate > 0 && done < b->total) {
        int eta = (int)((b->total - done) / rate + 0.5);
        fprintf(stderr, "  ETA %d:%02d", eta / 60, eta % 60);
    } else {
        fprintf(stderr, "  %.1f s  ", el);
    }
    if (errors)
        fprintf(stderr, "  %d failed", errors);
    fputs("\033[K", stderr);
    fflush(stderr);
}

/* Before a message on stderr: clears the bar's line (it is redrawn next). */
void cli_bar_clear(cli_bar *b)
{
    if (b->on) {
        fputs("\r\033[K", stderr);
        b->last = 0;
    }
}

void cli_bar_end(cli_bar *b)
{
    if (b->on) {
        b->last = 0;
        cli_bar_update(b, b->done, b->errors);
        fputc('\n', stderr);
    }
    b->on = 0;
}

/* ---- decoding ahead ---- */

struct cli_prefetch {
    const char *const *paths;
    int n, batch;
    const tsr_preprocess_cfg *cfg;
    size_t per;
    int workers; /* decoding threads per batch */
    const cli_corruption *corrupt; /* or NULL */
    cli_batch buf[2];
    int ready[2]; /* 1: filled and not yet handed out */
    int next_fill, next_take, handed; /* handed: index of the batch the caller holds, or -1 */
    int stop, started;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

/* One image of a batch into its own place px[i]. */
static void decode_one(cli_prefetch *p, cli_batch *b, int i)
{
    tsr_image *img = NULL;
    b->err[i].code = TSR_OK;
    b->err[i].msg[0] = 0;
    b->slot[i] = -1;
    b->clipped16[i] = b->pixels[i] = 0;
    if (tsr_image_load_file(p->paths[b->first + i], &img, &b->err[i]) == TSR_OK) {
        b->clipped16[i] = img->clipped16;
        b->pixels[i] = (size_t)img->width * img->height;
        float *px = b->px + p->per * (size_t)i;
        const cli_corruption *cc = p->corrupt;
        tsr_status rc = cc ? tsr_image_preprocess_corrupted(img, p->cfg, cc->kind, cc->severity,
                                                            cc->seed + (unsigned long long)(b->first + i) *
                                                                           0x9e3779b97f4a7c15ull,
                                                            px, &b->err[i])
                           : tsr_image_preprocess(img, p->cfg, px, &b->err[i]);
        if (rc == TSR_OK)
            b->slot[i] = i;
        else
            tsr_error_prefix(&b->err[i], "%s", p->paths[b->first + i]);
    }
    tsr_image_free(img);
}

typedef struct {
    cli_prefetch *p;
    cli_batch *b;
    int from, step;
} decode_job;

static void *decode_part(void *arg)
{
    decode_job *j = arg;
    for (int i = j->from; i < j->b->count; i += j->step)
        decode_one(j->p, j->b, i);
    return NULL;
}

/* Decodes inputs [first, first + count) on up to p->workers threads, then
 * packs the good ones to the front of px in input order. */
static void fill(cli_prefetch *p, cli_batch *b, int first)
{
    b->first = first;
    b->count = p->n - first < p->batch ? p->n - first : p->batch;
    int w = p->workers < b->count ? p->workers : b->count;
    pthread_t th[CLI_MAX_BATCH];
    decode_job jobs[CLI_MAX_BATCH];
    int started = 0;
    for (int t = 1; t < w; t++) {
        jobs[t] = (decode_job){p, b, t, w};
        if (pthread_create(&th[started], NULL, decode_part, &jobs[t]) != 0)
            break;
        started++;
    }
    if (started == w - 1) {
        jobs[0] = (decode_job){p, b, 0, w};
        decode_part(&jobs[0]);
    } else { /* fewer threads than asked: the rest here, after them */
        for (int t = 0; t < started; t++)
            pthread_join(th[t], NULL);
        for (int i = 0; i < b->count; i++)
            if (i % w == 0 || i % w > started)
                decode_one(p, b, i);
        started = 0;
    }
    for (int t = 0; t < started; t++)
        pthread_join(th[t], NULL);
    b->n_ok = 0;
    for (int i = 0; i < b->count; i++) {
        if (b->slot[i] < 0)
            continue;
        if (b->n_ok != i)
            memmove(b->px + p->per * (size_t)b->n_ok, b->px + p->per * (size_t)i,
                    sizeof(float) * p->per);
        b->slot[i] = b->n_ok++;
    }
}

static void *producer(void *arg)
{
    cli_prefetch *p = arg;
    for (int first = 0, k = 0; first < p->n; first += p->batch, k ^= 1) {
        pthread_mutex_lock(&p->mu);
        while (!p->stop && (p->ready[k] || p->handed == k))
            pthread_cond_wait(&p->cv, &p->mu);
        int stop = p->stop;
        pthread_mutex_unlock(&p->mu);
        if (stop)
            break;
        fill(p, &p->buf[k], first);
        pthread_mutex_lock(&p->mu);
        p->ready[k] = 1;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    return NULL;
}

cli_prefetch *cli_prefetch_start(const char *const *paths, int n, int batch,
                                 const tsr_preprocess_cfg *cfg, size_t per_image, int threaded)
{
    return cli_prefetch_start_corrupted(paths, n, batch, cfg, per_image, threaded, NULL);
}

cli_prefetch *cli_prefetch_start_corrupted(const char *const *paths, int n, int batch,
                                           const tsr_preprocess_cfg *cfg, size_t per_image,
                                           int threaded, const cli_corruption *corrupt)
{
    if (batch > CLI_MAX_BATCH)
        batch = CLI_MAX_BATCH;
    cli_prefetch *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->paths = paths;
    p->n = n;
    p->batch = batch;
    p->cfg = cfg;
    p->per = per_image;
    p->corrupt = corrupt;
    p->handed = -1;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    p->workers = threaded ? (int)(cpus < 1 ? 1 : cpus > 8 ? 8 : cpus) : 1;
    int ok = 1;
    for (int k = 0; k < 2 && ok; k++)
        ok = (p->buf[k].px = malloc(sizeof(float) * per_image * (size_t)batch)) != NULL;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (ok && threaded && n > batch)
        p->started = pthread_create(&p->thread, NULL, producer, p) == 0;
    if (!ok) {
        cli_prefetch_stop(p);
        return NULL;
    }
    return p;
}

const cli_batch *cli_prefetch_next(cli_prefetch *p)
{
    int first = p->next_take * p->batch;
    if (first >= p->n)
        return NULL;
    int k = p->next_take & 1;
    pthread_mutex_lock(&p->mu);
    p->handed = -1; /* the caller is done with the previous batch */
    pthread_cond_broadcast(&p->cv);
    if (p->started) {
        while (!p->ready[k])
            pthread_cond_wait(&p->cv, &p->mu);
        p->ready[k] = 0;
    }
    p->handed = k;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    if (!p->started)
        fill(p, &p->buf[k], first); /* no thread: decode here */
    p->next_take++;
    return &p->buf[k];
}

void cli_prefetch_stop(cli_prefetch *p)
{
    if (!p)
        return;
    if (p->started) {
        pthread_mutex_lock(&p->mu);
        p->stop = 1;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->thread, NULL);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->buf[0].px);
    free(p->buf[1].px);
    free(p);
}
