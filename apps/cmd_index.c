#define _XOPEN_SOURCE 700 /* realpath */
/* tessera index (create, add, sync, remove, info, export, build-ann, merge)
 * and tessera search: the walking of folders, the decoding threads, the
 * progress bar and the output. The index itself lives in fusion/. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "tsr_audio.h"

#define MAX_FILE_BYTES (512u << 20)

static const char *index_help =
    "usage: tessera index SUBCOMMAND [OPTIONS]\n"
    "\n"
    "Persistent embedding indexes (one SQLite file each) for `tessera search`.\n"
    "\n"
    "  create --model DIR|org/name INDEX   a new, empty index for that model\n"
    "  add INDEX PATH...          embed files and folders (walked recursively); files\n"
    "                             already indexed with the same size and mtime are skipped,\n"
    "                             so running it again after a crash resumes\n"
    "  sync INDEX DIR             add new files, embed changed ones again, drop deleted ones\n"
    "  remove INDEX PATH...       drop files, or everything under folders\n"
    "  info INDEX                 count, model, modalities, size on disk\n"
    "  export INDEX [--npy F.npy] [--jsonl F.jsonl] [--faiss F.faiss]\n"
    "                             embeddings in row order with one JSON line per row (the\n"
    "                             layout autofaiss and clip-retrieval read), or a FAISS\n"
    "                             IndexFlatIP of the same rows\n"
    "  build-ann INDEX --ann hnsw|ivf-pq\n"
    "                             an approximate index beside the database (INDEX.ann);\n"
    "                             search uses it until the index changes\n"
    "  merge OUT SHARD...         combine shards built with --shard (same model required)\n"
    "  import INDEX --npy F.npy [--jsonl F.jsonl]\n"
    "                             embeddings made elsewhere, in export's layout (they must\n"
    "                             come from the index's model: nothing can check that)\n"
    "\n"
    "options of add and sync:\n"
    "  --model M        the model (default: the one the index was created with)\n"
    "  --batch N        images per batch and per transaction (default 32)\n"
    "  --threads N      decoding threads (default: the number of CPUs, at most 8)\n"
    "  --shard I/N      only the files of shard I of N (0 <= I < N), chosen by a hash of\n"
    "                   each file's path under the folder given\n"
    "  --device D       OpenCL device index or name substring\n"
    "  --quiet          no progress bar and no summary\n"
    "  --json           the summary as one JSON object\n"
    "\n"
    "Files are recognised by their content. With an image-text (CLIP) model, PNG,\n"
    "JPEG, WebP, GIF, TIFF and BMP images are embedded; with an audio-text (CLAP)\n"
    "model, audio files (WAV, MP3, Ogg, FLAC, M4A, Matroska), each one embedding\n"
    "(the mean of its 10 s windows). Other files are counted and skipped. A file that\n"
    "cannot be read or decoded is reported with the reason and the run goes on.\n"
    "Every batch is one transaction: a killed run keeps every finished batch.\n"
    "Exit codes: 0 ok (also when some files failed: see the summary), 1 runtime\n"
    "error, 2 usage error.\n";

static const char *search_help =
    "usage: tessera search INDEX (--text STR | --image FILE | --audio FILE | --lines FILE)\n"
    "                    [OPTIONS]\n"
    "\n"
    "The items of an index closest to a text, an image or a sound, best first.\n"
    "\n"
    "  --text STR       a text query\n"
    "  --image FILE     an image query (image-text models)\n"
    "  --audio FILE     an audio query (audio-text models: CLAP)\n"
    "  --lines FILE     one text query per line ('-': standard input), answered together\n"
    "  --vectors F.npy  query vectors (rows of the index's width), answered together\n"
    "  -k N             results per query (default 10)\n"
    "  --where GLOB     only paths matching GLOB (SQLite GLOB: * ? [abc], case-sensitive)\n"
    "  --modality M     only image, audio or text items\n"
    "  --exact          brute force even where an approximate index is current\n"
    "  --model M        the model (default: the one the index was created with)\n"
    "  --device D       OpenCL device index or name substring\n"
    "  --json           one JSON object per query: {query, results: [{path, score, id}]}\n"
    "\n"
    "Exact search multiplies the queries by the embedding matrix on the OpenCL device\n"
    "and selects the top k there. Scores are cosine similarities.\n"
    "Exit codes: 0 ok, 1 runtime error, 2 usage error.\n";

/* cli_parse, printing help for --help: -1 then (pos freed), else its result. */
static int parse_or_help(int argc, char **argv, const cli_opt *opts, int nopts, const char ***pos,
                         int *npos, const char *help)
{
    int rc = cli_parse(argc, argv, opts, nopts, pos, npos);
    if (rc < 0) {
        fputs(help, stdout);
        free(*pos);
        *pos = NULL;
    }
    return rc;
}

/* ---- files ---- */

typedef enum { KIND_IMAGE, KIND_AUDIO, KIND_OTHER } file_kind;

/* What a file holds, from its first bytes: the images tessera decodes (PNG,
 * JPEG, WebP, GIF, TIFF, BMP), audio, or anything else. */
static file_kind sniff(const unsigned char *b, size_t n)
{
    if (tsr_image_sniff(b, n))
        return KIND_IMAGE;
    if (n >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WAVE", 4) == 0)
        return KIND_AUDIO;
    if (n >= 4 && (memcmp(b, "OggS", 4) == 0 || memcmp(b, "fLaC", 4) == 0 ||
                   memcmp(b, "\x1a\x45\xdf\xa3", 4) == 0))
        return KIND_AUDIO;
    if (n >= 3 && memcmp(b, "ID3", 3) == 0)
        return KIND_AUDIO;
    if (n >= 2 && b[0] == 0xFF && (b[1] & 0xE0) == 0xE0 && (b[1] & 0x06) != 0)
        return KIND_AUDIO; /* an MPEG audio frame (layer bits set) */
    if (n >= 12 && memcmp(b + 4, "ftyp", 4) == 0 &&
        (memcmp(b + 8, "M4A ", 4) == 0 || memcmp(b + 8, "M4B ", 4) == 0))
        return KIND_AUDIO;
    return KIND_OTHER;
}

/* Files never read as input: the index, its WAL files and its approximate
 * index, by device and inode (links and other names included). */
typedef struct {
    dev_t dev[4];
    ino_t ino[4];
    int n;
} own_files;

static void own_files_init(own_files *o, const char *index)
{
    const char *ext[] = {"", "-wal", "-shm", ".ann"};
    o->n = 0;
    for (int i = 0; i < 4; i++) {
        char p[PATH_MAX + 8];
        struct stat sb;
        snprintf(p, sizeof p, "%s%s", index, ext[i]);
        if (stat(p, &sb) == 0) {
            o->dev[o->n] = sb.st_dev;
            o->ino[o->n++] = sb.st_ino;
        }
    }
}

static int is_own(const own_files *o, const struct stat *sb)
{
    for (int i = 0; o && i < o->n; i++)
        if (o->dev[i] == sb->st_dev && o->ino[i] == sb->st_ino)
            return 1;
    return 0;
}

typedef struct {
    char *path;   /* absolute */
    const char *root_rel; /* the part under the folder given (for --shard) */
    char *rel_owned;      /* root_rel when it is not inside path */
} walk_item;

typedef struct {
    walk_item *v;
    size_t n, cap;
    int errors;
} walk_list;

static int push(walk_list *l, const char *abs, size_t rel_off)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        walk_item *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return 0;
        l->v = v;
        l->cap = cap;
    }
    char *p = strdup(abs);
    if (!p)
        return 0;
    l->v[l->n].path = p;
    l->v[l->n].root_rel = p + (rel_off <= strlen(p) ? rel_off : 0);
    l->v[l->n].rel_owned = NULL;
    l->n++;
    return 1;
}

static int skip_name(const char *name)
{
    return strcmp(name, ".") == 0 || strcmp(name, "..") == 0;
}

/* Regular files under dir (recursively; a symbolic link to a file is stored
 * as the file it points to, links to folders are not followed, so no loop).
 * Entries that cannot be examined count as errors. */
static void walk(walk_list *l, const char *dir, size_t rel_off, const own_files *own,
                 const char *cmd)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "tessera %s: %s: cannot read folder (%s)\n", cmd, dir, strerror(errno));
        l->errors++;
        return;
    }
    struct dirent *e;
    size_t dl = strlen(dir);
    while ((e = readdir(d)) != NULL) {
        if (skip_name(e->d_name))
            continue;
        size_t cap = dl + strlen(e->d_name) + 2;
        char *p = malloc(cap);
        if (!p)
            break;
        snprintf(p, cap, "%s%s%s", dir, dir[dl - 1] == '/' ? "" : "/", e->d_name);
        struct stat sb, lb;
        if (lstat(p, &lb) != 0) {
            fprintf(stderr, "tessera %s: %s: %s\n", cmd, p, strerror(errno));
            l->errors++;
        } else if (S_ISDIR(lb.st_mode)) {
            walk(l, p, rel_off, own, cmd);
        } else if (S_ISLNK(lb.st_mode)) {
            char real[PATH_MAX];
            if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode) && !is_own(own, &sb) &&
                realpath(p, real)) {
                /* the shard key stays the link's place under the folder given */
                char *rel = strdup(p + (rel_off <= strlen(p) ? rel_off : 0));
                if (rel && push(l, real, 0)) {
                    l->v[l->n - 1].root_rel = l->v[l->n - 1].rel_owned = rel;
                } else {
                    free(rel);
                }
            }
        } else if (S_ISREG(lb.st_mode) && !is_own(own, &lb)) {
            push(l, p, rel_off);
        }
        free(p);
    }
    closedir(d);
}

static int cmp_items(const void *a, const void *b)
{
    return strcmp(((const walk_item *)a)->path, ((const walk_item *)b)->path);
}

/* Absolute, canonical paths of the files given and the files under the
 * folders given, sorted, without the index's own files. Missing paths are
 * reported. */
static int collect(const char *cmd, const char *const *paths, int n, const own_files *own,
                   walk_list *l)
{
    for (int i = 0; i < n; i++) {
        char real[PATH_MAX];
        struct stat sb;
        if (!realpath(paths[i], real) || stat(real, &sb) != 0) {
            fprintf(stderr, "tessera %s: %s: %s\n", cmd, paths[i], strerror(errno));
            l->errors++;
            continue;
        }
        if (S_ISDIR(sb.st_mode)) {
            size_t before = l->n;
            size_t off = strlen(real) + (strcmp(real, "/") != 0);
            walk(l, real, off, own, cmd);
            if (l->n == before)
                fprintf(stderr, "tessera %s: %s: no files in this folder\n", cmd, paths[i]);
        } else if (S_ISREG(sb.st_mode)) {
            if (is_own(own, &sb)) {
                fprintf(stderr, "tessera %s: %s: the index's own file, not an input\n", cmd,
                        paths[i]);
                continue;
            }
            const char *slash = strrchr(real, '/');
            push(l, real, slash ? (size_t)(slash - real + 1) : 0);
        } else {
            fprintf(stderr, "tessera %s: %s: not a file or folder\n", cmd, paths[i]);
            l->errors++;
        }
    }
    qsort(l->v, l->n, sizeof *l->v, cmp_items);
    size_t w = 0; /* a file given twice counts once */
    for (size_t i = 0; i < l->n; i++) {
        if (w && strcmp(l->v[w - 1].path, l->v[i].path) == 0) {
            free(l->v[i].path);
            free(l->v[i].rel_owned);
            continue;
        }
        l->v[w++] = l->v[i];
    }
    l->n = w;
    return EXIT_OK;
}

static void walk_free(walk_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].path);
        free(l->v[i].rel_owned);
    }
    free(l->v);
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

static int64_t mtime_ns(const struct stat *sb)
{
    return (int64_t)sb->st_mtim.tv_sec * 1000000000LL + sb->st_mtim.tv_nsec;
}

/* ---- the decoding pipeline ---- */

typedef enum {
    SLOT_EMPTY,
    SLOT_IMAGE,
    SLOT_AUDIO,
    SLOT_SKIP_AUDIO,
    SLOT_SKIP_OTHER,
    SLOT_FAILED
} slot_state;

typedef struct {
    int ready;
    slot_state state;
    float *pixels;       /* (3, S, S), or an audio model's window features */
    int windows;         /* audio: windows of features in pixels */
    int64_t size, mtime;
    char hash[65];
    char why[1100];
    size_t clipped16, npix; /* cli_warn_clipped */
} slot;

typedef struct {
    const own_files *own;
    const walk_item *files; /* the files to embed */
    int n;
    slot *slots;            /* one per file */
    const tsr_preprocess_cfg *pp;
    int pixels_per_image;
    const tsr_model *audio; /* an audio-text model: audio files are embedded, not images */
    tsr_audio_window window_mode;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int next;               /* the next file a worker takes */
    int consumed;           /* the files the embedding loop has taken */
    int window;             /* workers stay within consumed + window */
    int stop;
} pipeline;

static void decode_one(pipeline *p, int i, slot *s)
{
    const char *path = p->files[i].path;
    struct stat sb;
    tsr_error err = {0};
    /* non-blocking, so that a file replaced by a FIFO cannot stall the run */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || is_own(p->own, &sb)) {
        snprintf(s->why, sizeof s->why, "%s: %s", path,
                 fd < 0 ? strerror(errno) : "no longer a regular file");
        s->state = SLOT_FAILED;
        if (fd >= 0)
            close(fd);
        return;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    s->size = sb.st_size;
    s->mtime = mtime_ns(&sb);
    unsigned char head[32];
    ssize_t got_head = pread(fd, head, sizeof head, 0);
    file_kind k = sniff(head, got_head > 0 ? (size_t)got_head : 0);
    if (p->audio ? k != KIND_AUDIO : k != KIND_IMAGE) { /* nothing more to read */
        s->state = k == KIND_AUDIO ? SLOT_SKIP_AUDIO : SLOT_SKIP_OTHER;
        close(fd);
        return;
    }
    if ((uint64_t)sb.st_size > MAX_FILE_BYTES) {
        snprintf(s->why, sizeof s->why, "%s: larger than %u MB", path, MAX_FILE_BYTES >> 20);
        s->state = SLOT_FAILED;
        close(fd);
        return;
    }
    unsigned char *data = malloc((size_t)sb.st_size + 1);
    size_t got = 0;
    while (data && got < (size_t)sb.st_size) {
        ssize_t r = pread(fd, data + got, (size_t)sb.st_size - got, (off_t)got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    int e = errno;
    close(fd);
    if (!data || got != (size_t)sb.st_size) {
        snprintf(s->why, sizeof s->why, "%s: %s", path,
                 !data ? "out of memory" : got < (size_t)sb.st_size && e ? strerror(e)
                                                                         : "changed while being read");
        s->state = SLOT_FAILED;
        free(data);
        return;
    }
    tsr_content_hash(data, got, s->hash);
    if (p->audio) { /* decoded from the file by FFmpeg, then the model's features */
        free(data);
        float *pcm = NULL;
        size_t ns = 0;
        if (tsr_audio_load_file(path, tsr_model_audio_rate(p->audio), &pcm, &ns, &err) != TSR_OK ||
            tsr_model_audio_features(p->audio, pcm, ns, p->window_mode, &s->pixels, &s->windows,
                                     &err) != TSR_OK) {
            snprintf(s->why, sizeof s->why, "%s%s%s", strstr(err.msg, path) ? "" : path,
                     strstr(err.msg, path) ? "" : ": ", err.msg);
            s->state = SLOT_FAILED;
        } else {
            s->state = SLOT_AUDIO;
        }
        free(pcm);
        return;
    }
    tsr_image *img = NULL;
    s->pixels = malloc(sizeof(float) * (size_t)p->pixels_per_image);
    if (!s->pixels) {
        snprintf(s->why, sizeof s->why, "%s: out of memory", path);
        s->state = SLOT_FAILED;
    } else if (tsr_image_load_memory(data, got, path, &img, &err) != TSR_OK ||
               tsr_image_preprocess(img, p->pp, s->pixels, &err) != TSR_OK) {
        snprintf(s->why, sizeof s->why, "%s", err.msg);
        s->state = SLOT_FAILED;
        free(s->pixels);
        s->pixels = NULL;
    } else {
        s->state = SLOT_IMAGE;
        s->clipped16 = img->clipped16;
        s->npix = (size_t)img->width * img->height;
    }
    tsr_image_free(img);
    free(data);
}

static void *worker(void *arg)
{
    pipeline *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        while (!p->stop && p->next < p->n && p->next >= p->consumed + p->window)
            pthread_cond_wait(&p->cond, &p->lock);
        if (p->stop || p->next >= p->n) {
            pthread_mutex_unlock(&p->lock);
            return NULL;
        }
        int i = p->next++;
        pthread_mutex_unlock(&p->lock);
        slot s = {0};
        decode_one(p, i, &s);
        pthread_mutex_lock(&p->lock);
        p->slots[i] = s;
        p->slots[i].ready = 1;
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
    }
}

/* Waits for file i and takes its slot. */
static slot take(pipeline *p, int i)
{
    pthread_mutex_lock(&p->lock);
    while (!p->slots[i].ready)
        pthread_cond_wait(&p->cond, &p->lock);
    slot s = p->slots[i];
    p->slots[i].pixels = NULL;
    p->consumed = i + 1;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    return s;
}

/* ---- add and sync ---- */

typedef struct {
    int64_t files, added, updated, unchanged, failed, audio, other, removed, out_of_shard;
    double seconds;
    int audio_model; /* the model embeds audio: "other" files are the ones that are not */
} add_stats;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void progress(const add_stats *st, int64_t done, int64_t total, double t0, int show)
{
    if (!show)
        return;
    double el = now_s() - t0, rate = el > 0 ? (double)done / el : 0;
    double eta = rate > 0 ? (double)(total - done) / rate : 0;
    int width = 24, fill = total ? (int)(done * width / total) : width;
    fprintf(stderr, "\r[");
    for (int i = 0; i < width; i++)
        fputc(i < fill ? '#' : '.', stderr);
    fprintf(stderr, "] %lld/%lld files  %.1f/s  ETA %02d:%02d  errors %lld ", (long long)done,
            (long long)total, rate, (int)eta / 60, (int)eta % 60, (long long)st->failed);
    if (done == total)
        fputc('\n', stderr);
    fflush(stderr);
}

static void print_summary(const char *cmd, const add_stats *st, int json, int quiet,
                          const char *index)
{
    if (quiet)
        return;
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "index", index);
        cJSON_AddNumberToObject(o, "files", (double)st->files);
        cJSON_AddNumberToObject(o, "added", (double)st->added);
        cJSON_AddNumberToObject(o, "updated", (double)st->updated);
        cJSON_AddNumberToObject(o, "unchanged", (double)st->unchanged);
        cJSON_AddNumberToObject(o, "removed", (double)st->removed);
        cJSON_AddNumberToObject(o, "failed", (double)st->failed);
        cJSON_AddNumberToObject(o, "skipped_audio", (double)st->audio);
        cJSON_AddNumberToObject(o, "skipped_other", (double)st->other);
        cJSON_AddNumberToObject(o, "other_shards", (double)st->out_of_shard);
        cJSON_AddNumberToObject(o, "seconds", st->seconds);
        cli_print_json(o);
        return;
    }
    printf("%s: %lld files: %lld added, %lld updated, %lld unchanged", cmd, (long long)st->files,
           (long long)st->added, (long long)st->updated, (long long)st->unchanged);
    if (st->removed)
        printf(", %lld removed", (long long)st->removed);
    printf(", %lld failed", (long long)st->failed);
    if (st->audio)
        printf(", %lld audio skipped (no audio model yet)", (long long)st->audio);
    if (st->other)
        printf(", %lld not %s skipped", (long long)st->other, st->audio_model ? "audio" : "images");
    if (st->out_of_shard)
        printf(", %lld in other shards", (long long)st->out_of_shard);
    printf(" in %.1f s\n", st->seconds);
}

typedef struct {
    const char *model, *device, *batch, *threads, *shard;
    int quiet, json;
} add_opts;

/* Opens the index for writing, loads its model (or --model) and checks the fingerprint. */
static int open_with_model(const char *cmd, const char *path, int writable, const char *model,
                           const char *device, tsr_index **ix, tsr_ctx **ctx, tsr_model **m,
                           tsr_session *(*s), int batch)
{
    tsr_error err = {0};
    if (tsr_index_open(path, writable, ix, &err) != TSR_OK) {
        cli_error(cmd, &err);
        return EXIT_RUNTIME;
    }
    tsr_index_info info;
    if (!model) {
        if (tsr_index_get_info(*ix, &info, &err) != TSR_OK) {
            cli_error(cmd, &err);
            return EXIT_RUNTIME;
        }
        model = info.model;
    }
    char dir[4096];
    int rc = cli_model_dir(cmd, model, 0, dir, sizeof dir);
    if (rc == EXIT_OK)
        rc = cli_ctx(cmd, device, 0, ctx);
    if (rc == EXIT_OK && tsr_model_load(*ctx, dir, m, &err) != TSR_OK) {
        cli_error(cmd, &err);
        rc = EXIT_RUNTIME;
    }
    if (rc == EXIT_OK && tsr_index_check_model(*ix, *m, &err) != TSR_OK) {
        cli_error(cmd, &err);
        rc = EXIT_RUNTIME;
    }
    tsr_session_params sp = tsr_session_default_params();
    sp.image_batch = batch;
    if (rc == EXIT_OK && s && tsr_session_create(*m, &sp, s, &err) != TSR_OK) {
        cli_error(cmd, &err);
        rc = EXIT_RUNTIME;
    }
    return rc;
}

static int parse_shard(const char *cmd, const char *s, int *i, int *n)
{
    char *end;
    long a = strtol(s, &end, 10);
    if (end == s || *end != '/')
        return cli_usage_error(cmd, "--shard takes I/N, not '%s'", s);
    const char *b = end + 1;
    long c = strtol(b, &end, 10);
    if (end == b || *end || c < 1 || c > 1000000 || a < 0 || a >= c)
        return cli_usage_error(cmd, "--shard I/N needs 0 <= I < N, not '%s'", s);
    *i = (int)a;
    *n = (int)c;
    return EXIT_OK;
}

/* Embeds the listed files that are new or changed; fills st. */
static int run_add(const char *cmd, tsr_index *ix, tsr_model *m, tsr_session *sess,
                   walk_list *files, const own_files *own, int batch, int threads, int shard_i,
                   int shard_n, add_stats *st, int show)
{
    tsr_error err = {0};
    int dim = tsr_model_embed_dim(m);
    const tsr_preprocess_cfg *pp = tsr_model_preprocess_cfg(m);
    int S = tsr_model_image_size(m), C = tsr_model_image_channels(m);
    /* which files need embedding */
    walk_item *todo = malloc(sizeof *todo * (files->n ? files->n : 1));
    int *is_new = malloc(sizeof *is_new * (files->n ? files->n : 1));
    int n = 0, rc = EXIT_OK;
    if (!todo || !is_new) {
        free(todo), free(is_new);
        fprintf(stderr, "tessera %s: out of memory\n", cmd);
        return EXIT_RUNTIME;
    }
    for (size_t i = 0; i < files->n && rc == EXIT_OK; i++) {
        const walk_item *w = &files->v[i];
        if (shard_n > 1 && (int)(fnv1a(w->root_rel) % (uint64_t)shard_n) != shard_i) {
            st->out_of_shard++;
            continue;
        }
        st->files++;
        struct stat sb;
        int found = 0;
        int64_t size = 0, mt = 0;
        if (tsr_index_lookup(ix, w->path, &found, &size, &mt, NULL, &err) != TSR_OK) {
            cli_error(cmd, &err);
            rc = EXIT_RUNTIME;
            break;
        }
        if (found && stat(w->path, &sb) == 0 && sb.st_size == size && mtime_ns(&sb) == mt) {
            st->unchanged++;
            continue;
        }
        is_new[n] = !found;
        todo[n++] = *w;
    }
    const tsr_model *audio = tsr_model_audio_rate(m) > 0 ? m : NULL;
    st->audio_model = audio != NULL;
    pipeline p = {.own = own, .files = todo, .n = n, .pp = pp, .pixels_per_image = C * S * S,
                  .window = batch * 3 + threads, .audio = audio,
                  .window_mode = TSR_AUDIO_WINDOW_MEAN};
    p.slots = calloc((size_t)(n ? n : 1), sizeof *p.slots);
    float *pix = malloc(sizeof(float) * ((size_t)batch * C * S * S + 1));
    float *emb = malloc(sizeof(float) * (size_t)batch * dim);
    tsr_index_item *items = calloc((size_t)batch, sizeof *items);
    slot *held = calloc((size_t)batch, sizeof *held);
    int *held_new = calloc((size_t)batch, sizeof *held_new);
    if (rc == EXIT_OK && (!p.slots || !pix || !emb || !items || !held || !held_new)) {
        fprintf(stderr, "tessera %s: out of memory\n", cmd);
        rc = EXIT_RUNTIME;
    }
    pthread_t tid[8];
    int nt = 0;
    double t0 = now_s();
    int64_t total = (int64_t)st->files, done = st->unchanged;
    if (rc == EXIT_OK && n > 0) {
        pthread_mutex_init(&p.lock, NULL);
        pthread_cond_init(&p.cond, NULL);
        for (; nt < threads && nt < 8; nt++)
            if (pthread_create(&tid[nt], NULL, worker, &p) != 0)
                break;
        if (nt == 0) {
            fprintf(stderr, "tessera %s: cannot start decoding threads\n", cmd);
            rc = EXIT_RUNTIME;
        }
        progress(st, done, total, t0, show);
        int i = 0;
        while (rc == EXIT_OK && i < n) {
            int b = 0, first = i;
            /* gather up to batch decoded images */
            while (i < n && b < batch) {
                slot s = take(&p, i);
                if (s.state == SLOT_IMAGE) {
                    if (s.clipped16 && show)
                        fputc('\n', stderr);
                    cli_warn_clipped(cmd, todo[i].path, s.clipped16, s.npix);
                    memcpy(pix + (size_t)b * C * S * S, s.pixels, sizeof(float) * C * S * S);
                    free(s.pixels);
                    s.pixels = NULL;
                    held[b] = s;
                    held_new[b] = is_new[i];
                    items[b] = (tsr_index_item){todo[i].path, s.size, s.mtime, NULL,
                                                TSR_MOD_IMAGE, NULL, NULL};
                    b++;
                } else if (s.state == SLOT_AUDIO) { /* each clip at once: its windows */
                    tsr_status es = tsr_session_embed_audio_windows(sess, s.pixels, s.windows,
                                                                    emb + (size_t)b * dim, &err);
                    free(s.pixels);
                    if (es != TSR_OK) {
                        if (show)
                            fputc('\n', stderr);
                        cli_error(cmd, &err);
                        rc = EXIT_RUNTIME;
                        break;
                    }
                    held[b] = s;
                    held[b].pixels = NULL;
                    held_new[b] = is_new[i];
                    items[b] = (tsr_index_item){todo[i].path, s.size, s.mtime, NULL,
                                                TSR_MOD_AUDIO, NULL, NULL};
                    b++;
                } else if (s.state == SLOT_FAILED) {
                    if (show)
                        fputc('\n', stderr);
                    fprintf(stderr, "tessera %s: %s\n", cmd, s.why);
                    st->failed++;
                } else if (s.state == SLOT_SKIP_AUDIO) {
                    st->audio++;
                } else {
                    st->other++;
                }
                if ((s.state == SLOT_SKIP_AUDIO || s.state == SLOT_SKIP_OTHER) && !is_new[i]) {
                    /* indexed as an image once, not one any more */
                    int64_t gone = 0;
                    const char *pp = todo[i].path;
                    if (tsr_index_remove(ix, &pp, 1, &gone, &err) != TSR_OK) {
                        cli_error(cmd, &err);
                        rc = EXIT_RUNTIME;
                    }
                    st->removed += gone;
                }
                i++;
                if (rc != EXIT_OK)
                    break;
            }
            if (b > 0 && rc == EXIT_OK) {
                for (int j = 0; j < b; j++) {
                    items[j].hash = held[j].hash;
                    items[j].embedding = emb + (size_t)j * dim;
                }
                if ((!audio && tsr_session_embed_pixels(sess, pix, b, 1, emb, &err) != TSR_OK) ||
                    tsr_index_put(ix, items, b, &err) != TSR_OK) {
                    if (show)
                        fputc('\n', stderr);
                    cli_error(cmd, &err);
                    rc = EXIT_RUNTIME;
                    break;
                }
                for (int j = 0; j < b; j++)
                    held_new[j] ? st->added++ : st->updated++;
            }
            done += i - first;
            progress(st, done, total, t0, show);
        }
        pthread_mutex_lock(&p.lock);
        p.stop = 1;
        pthread_cond_broadcast(&p.cond);
        pthread_mutex_unlock(&p.lock);
        for (int t = 0; t < nt; t++)
            pthread_join(tid[t], NULL);
        for (int j = 0; j < n; j++)
            free(p.slots[j].pixels);
        pthread_mutex_destroy(&p.lock);
        pthread_cond_destroy(&p.cond);
    } else if (rc == EXIT_OK) {
        progress(st, done, total, t0, show && total > 0);
    }
    free(p.slots);
    free(pix);
    free(emb);
    free(items);
    free(held);
    free(held_new);
    free(todo);
    free(is_new);
    return rc;
}

typedef struct {
    const char **paths;
    int n, cap, errors;
} gone_list;

static int visit_gone(void *user, const char *path, int64_t size, int64_t mt, const char *hash)
{
    gone_list *g = user;
    struct stat sb;
    if (stat(path, &sb) == 0 ? S_ISREG(sb.st_mode) : (errno != ENOENT && errno != ENOTDIR)) {
        if (!(stat(path, &sb) == 0))
            g->errors++; /* cannot tell: kept */
        return 0;
    }
    if (g->n == g->cap) {
        int cap = g->cap ? g->cap * 2 : 64;
        const char **v = realloc(g->paths, sizeof *v * (size_t)cap);
        if (!v)
            return 1;
        g->paths = v;
        g->cap = cap;
    }
    g->paths[g->n] = strdup(path);
    if (g->paths[g->n])
        g->n++;
    return 0;
}

static int cmd_index_add(int argc, char **argv, int sync)
{
    const char *cmd = sync ? "index sync" : "index add";
    add_opts o = {0};
    cli_opt opts[] = {{"model", 1, &o.model, NULL},     {"device", 1, &o.device, NULL},
                      {"batch", 1, &o.batch, NULL},     {"threads", 1, &o.threads, NULL},
                      {"shard", 1, &o.shard, NULL},     {"quiet", 0, NULL, &o.quiet},
                      {"json", 0, NULL, &o.json}};
    const char **pos = NULL;
    int npos = 0;
    int rc = parse_or_help(argc, argv, opts, sizeof opts / sizeof opts[0], &pos, &npos, index_help);
    if (rc < 0)
        return EXIT_OK;
    int batch = 32, threads = 0, shard_i = 0, shard_n = 1;
    if (rc == EXIT_OK && npos < 2)
        rc = cli_usage_error(cmd, sync ? "usage: tessera index sync INDEX DIR"
                                       : "usage: tessera index add INDEX PATH...");
    if (rc == EXIT_OK && sync && npos != 2)
        rc = cli_usage_error(cmd, "sync takes one folder");
    if (rc == EXIT_OK && o.batch && !cli_parse_ints(o.batch, &batch, 1, 1, 1024))
        rc = cli_usage_error(cmd, "--batch must be 1 to 1024, not '%s'", o.batch);
    if (rc == EXIT_OK && o.threads && !cli_parse_ints(o.threads, &threads, 1, 1, 8))
        rc = cli_usage_error(cmd, "--threads must be 1 to 8, not '%s'", o.threads);
    if (rc == EXIT_OK && o.shard)
        rc = parse_shard(cmd, o.shard, &shard_i, &shard_n);
    struct stat sb;
    if (rc == EXIT_OK && sync && (stat(pos[1], &sb) != 0 || !S_ISDIR(sb.st_mode))) {
        fprintf(stderr, "tessera %s: %s: not a folder\n", cmd, pos[1]);
        rc = EXIT_RUNTIME;
    }
    if (rc != EXIT_OK) {
        free(pos);
        return rc;
    }
    if (threads == 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        threads = c < 1 ? 1 : c > 8 ? 8 : (int)c;
    }
    tsr_index *ix = NULL;
    tsr_ctx *ctx = NULL;
    tsr_model *m = NULL;
    tsr_session *s = NULL;
    rc = open_with_model(cmd, pos[0], 1, o.model, o.device, &ix, &ctx, &m, &s, batch);
    own_files own;
    own_files_init(&own, pos[0]);
    walk_list files = {0};
    add_stats st = {0};
    double t0 = now_s();
    int show = !o.quiet && !o.json && isatty(STDERR_FILENO) && isatty(STDOUT_FILENO);
    if (rc == EXIT_OK)
        rc = collect(cmd, pos + 1, npos - 1, &own, &files);
    if (rc == EXIT_OK && files.errors && !sync)
        st.failed += files.errors;
    if (rc == EXIT_OK && files.n == 0 && !sync) {
        fprintf(stderr, "tessera %s: no files to add\n", cmd);
        rc = EXIT_RUNTIME;
    }
    if (rc == EXIT_OK && sync && files.errors) {
        fprintf(stderr, "tessera %s: the folder could not be read completely; nothing removed\n",
                cmd);
        rc = EXIT_RUNTIME;
    }
    if (rc == EXIT_OK)
        rc = run_add(cmd, ix, m, s, &files, &own, batch, threads, shard_i, shard_n, &st, show);
    if (rc == EXIT_OK && sync) {
        char real[PATH_MAX];
        gone_list g = {0};
        tsr_error err = {0};
        if (!realpath(pos[1], real) ||
            tsr_index_foreach(ix, real, visit_gone, &g, &err) != TSR_OK ||
            (g.n && tsr_index_remove(ix, g.paths, g.n, &st.removed, &err) != TSR_OK)) {
            if (!err.msg[0])
                snprintf(err.msg, sizeof err.msg, "%s: %s", pos[1], strerror(errno));
            cli_error(cmd, &err);
            rc = EXIT_RUNTIME;
        }
        for (int i = 0; i < g.n; i++)
            free((char *)g.paths[i]);
        free(g.paths);
    }
    st.seconds = now_s() - t0;
    if (rc == EXIT_OK)
        print_summary(sync ? "sync" : "add", &st, o.json, o.quiet, pos[0]);
    walk_free(&files);
    tsr_session_free(s);
    tsr_model_free(m);
    tsr_index_close(ix);
    tsr_ctx_free(ctx);
    free(pos);
    return rc;
}

/* ---- the other subcommands ---- */

static int cmd_index_create(int argc, char **argv)
{
    const char *model = NULL, *device = NULL;
    cli_opt opts[] = {{"model", 1, &model, NULL}, {"device", 1, &device, NULL}};
    const char **pos = NULL;
    int npos = 0;
    int rc = parse_or_help(argc, argv, opts, 2, &pos, &npos, index_help);
    if (rc < 0)
        return EXIT_OK;
    if (rc == EXIT_OK && (!model || npos != 1))
        rc = cli_usage_error("index create", "usage: tessera index create --model M INDEX");
    tsr_ctx *ctx = NULL;
    tsr_model *m = NULL;
    char dir[4096], stored[4096];
    if (rc == EXIT_OK)
        rc = cli_load("index create", model, device, 0, &ctx, &m, NULL);
    if (rc == EXIT_OK) {
        /* a local folder is kept as an absolute path, a pulled model by its name */
        struct stat sb;
        if (stat(model, &sb) == 0 && realpath(model, dir))
            snprintf(stored, sizeof stored, "%s", dir);
        else
            snprintf(stored, sizeof stored, "%s", model);
        tsr_error err = {0};
        if (tsr_index_create(pos[0], m, stored, &err) != TSR_OK) {
            cli_error("index create", &err);
            rc = EXIT_RUNTIME;
        } else {
            printf("created %s for %s (%d-wide embeddings, fingerprint %.16s)\n", pos[0], stored,
                   tsr_model_embed_dim(m), tsr_model_fingerprint(m));
        }
    }
    tsr_model_free(m);
    tsr_ctx_free(ctx);
    free(pos);
    return rc;
}

static int cmd_index_remove(int argc, char **argv)
{
    int json = 0;
    cli_opt opts[] = {{"json", 0, NULL, &json}};
    const char **pos = NULL;
    int npos = 0;
    int rc = parse_or_help(argc, argv, opts, 1, &pos, &npos, index_help);
    if (rc < 0)
        return EXIT_OK;
    if (rc == EXIT_OK && npos < 2)
        rc = cli_usage_error("index remove", "usage: tessera index remove INDEX PATH...");
    tsr_index *ix = NULL;
    tsr_error err = {0};
    if (rc == EXIT_OK && tsr_index_open(pos[0], 1, &ix, &err) != TSR_OK) {
        cli_error("index remove", &err);
        rc = EXIT_RUNTIME;
    }
    /* paths as stored: canonical; a deleted file's path is made absolute and
     * normalised lexically (".", ".." and repeated slashes) */
    char **abs = calloc((size_t)npos, sizeof *abs);
    if (rc == EXIT_OK && !abs) {
        fprintf(stderr, "tessera index remove: out of memory\n");
        rc = EXIT_RUNTIME;
    }
    for (int i = 1; rc == EXIT_OK && i < npos; i++) {
        char real[PATH_MAX], cwd[PATH_MAX];
        if (realpath(pos[i], real)) {
            abs[i - 1] = strdup(real);
        } else if (pos[i][0] == '/' || getcwd(cwd, sizeof cwd)) {
            size_t cap = strlen(pos[i]) + (pos[i][0] == '/' ? 0 : strlen(cwd)) + 3;
            char *joined = malloc(cap), *out = malloc(cap);
            if (joined && out) {
                snprintf(joined, cap, "%s/%s", pos[i][0] == '/' ? "" : cwd, pos[i]);
                size_t o = 0;
                for (char *seg = strtok(joined, "/"); seg; seg = strtok(NULL, "/")) {
                    if (strcmp(seg, ".") == 0)
                        continue;
                    if (strcmp(seg, "..") == 0) {
                        while (o > 0 && out[o - 1] != '/')
                            o--;
                        if (o > 0)
                            o--;
                        continue;
                    }
                    out[o++] = '/';
                    memcpy(out + o, seg, strlen(seg));
                    o += strlen(seg);
                }
                if (o == 0)
                    out[o++] = '/';
                out[o] = 0;
                abs[i - 1] = out;
                out = NULL;
            }
            free(joined);
            free(out);
        }
        if (!abs[i - 1]) {
            fprintf(stderr, "tessera index remove: %s: cannot resolve the path\n", pos[i]);
            rc = EXIT_RUNTIME;
        }
    }
    int64_t removed = 0;
    if (rc == EXIT_OK &&
        tsr_index_remove(ix, (const char *const *)abs, npos - 1, &removed, &err) != TSR_OK) {
        cli_error("index remove", &err);
        rc = EXIT_RUNTIME;
    }
    if (rc == EXIT_OK) {
        if (removed == 0)
            fprintf(stderr, "tessera index remove: nothing in %s matches %s\n", pos[0],
                    npos == 2 ? pos[1] : "those paths");
        if (json)
            printf("{\"removed\":%lld}\n", (long long)removed);
        else
            printf("removed %lld items\n", (long long)removed);
    }
    for (int i = 0; abs && i < npos; i++)
        free(abs[i]);
    free(abs);
    tsr_index_close(ix);
    free(pos);
    return rc;
}

static int cmd_index_info(int argc, char **argv)
{
    int json = 0;
    cli_opt opts[] = {{"json", 0, NULL, &json}};
    const char **pos = NULL;
    int npos = 0;
    int rc = parse_or_help(argc, argv, opts, 1, &pos, &npos, index_help);
    if (rc < 0)
        return EXIT_OK;
    if (rc == EXIT_OK && npos != 1)
        rc = cli_usage_error("index info", "usage: tessera index info INDEX [--json]");
    tsr_index *ix = NULL;
    tsr_error err = {0};
    tsr_index_info in;
    if (rc == EXIT_OK && (tsr_index_open(pos[0], 0, &ix, &err) != TSR_OK ||
                          tsr_index_get_info(ix, &in, &err) != TSR_OK)) {
        cli_error("index info", &err);
        rc = EXIT_RUNTIME;
    }
    if (rc == EXIT_OK && json) {
        cJSON *o = cJSON_CreateObject(), *mods = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "index", pos[0]);
        cJSON_AddNumberToObject(o, "schema", in.schema);
        cJSON_AddStringToObject(o, "model", in.model);
        cJSON_AddStringToObject(o, "fingerprint", in.fingerprint);
        cJSON_AddNumberToObject(o, "dim", in.dim);
        cJSON_AddStringToObject(o, "created", in.created);
        cJSON_AddNumberToObject(o, "count", (double)in.count);
        for (int i = 0; i < TSR_MOD_N; i++)
            cJSON_AddNumberToObject(mods, tsr_modality_name((tsr_modality)i),
                                    (double)in.by_modality[i]);
        cJSON_AddItemToObject(o, "modalities", mods);
        cJSON_AddNumberToObject(o, "bytes", (double)(in.db_bytes + in.ann_bytes));
        if (in.ann[0]) {
            cJSON *a = cJSON_CreateObject();
            cJSON_AddStringToObject(a, "kind", in.ann);
            cJSON_AddBoolToObject(a, "current", in.ann_generation == in.generation);
            cJSON_AddNumberToObject(a, "bytes", (double)in.ann_bytes);
            cJSON_AddItemToObject(o, "ann", a);
        }
        cli_print_json(o);
    } else if (rc == EXIT_OK) {
        printf("index:       %s\nmodel:       %s\nfingerprint: %s\nembeddings:  %d-wide float32\n"
               "created:     %s\nitems:       %lld (%lld images, %lld audio, %lld texts)\n"
               "on disk:     %.1f MB\n",
               pos[0], in.model, in.fingerprint, in.dim, in.created, (long long)in.count,
               (long long)in.by_modality[TSR_MOD_IMAGE], (long long)in.by_modality[TSR_MOD_AUDIO],
               (long long)in.by_modality[TSR_MOD_TEXT], (double)(in.db_bytes + in.ann_bytes) / 1e6);
        if (in.ann[0])
            printf("approximate: %s (%s)\n", in.ann,
                   in.ann_generation == in.generation ? "current"
                                                      : "stale: rebuild with build-ann");
    }
    tsr_index_close(ix);
    free(pos);
    return rc;
}

static int cmd_index_export(int argc, char **argv)
{
    const char *npy = NULL, *jsonl = NULL, *faiss = NULL;
    cli_opt opts[] = {{"npy", 1, &npy, NULL}, {"jsonl", 1, &jsonl, NULL}, {"faiss", 1, &faiss, NULL}};
    const char **pos = NULL;
    int npos = 0;
    int rc = parse_or_help(argc, argv, opts, 3, &pos, &npos, index_help);
    if (rc < 0)
        return EXIT_OK;
    if (rc == EXIT_OK && (npos != 1 || (!npy && !jsonl && !faiss)))
        rc = cli_usage_error("index export",
                             "usage: tessera index export INDEX [--npy F] [--jsonl F] [--faiss F]");
    tsr_index *ix = NULL;
    tsr_error err = {0};
    int64_t rows = 0;
    if (rc == EXIT_OK && (tsr_index_open(pos[0], 0, &ix, &err) != TSR_OK ||
                          tsr_index_export(ix, npy, jsonl, faiss, &rows, &err) != TSR_OK)) {
        cli_error("index export", &err);
        rc = EXIT_RUNTIME;
    }
    if (rc == EXIT_OK)
        printf("exported %lld rows\n", (long long)rows);
    tsr_index_close(ix);
    free(pos);
    return rc;
}

static int cmd_index_build_ann(int argc, char **argv)
{
    const char *ann = NULL;
    cli_opt opts[] = {{"ann", 1, &ann, NULL}};
    const char **pos = NULL;
    int npos = 0;
    int rc = parse_or_help(argc, argv, opts, 1, &pos, &npos, index_help);
    if (rc < 0)
        return EXIT_OK;
    if (rc == EXIT_OK && npos != 1)
        rc = cli_usage_error("index build-ann",
                             "usage: tessera index build-ann INDEX --ann hnsw|ivf-pq");
    if (rc == EXIT_OK && (!ann || (strcmp(ann, "hnsw") && strcmp(ann, "ivf-pq"))))
        rc = cli_usage_error("index build-ann", "--ann must be hnsw or ivf-pq");
    tsr_index *ix = NULL;
    tsr_error err = {0};
    double t0 = now_s();
    if (rc == EXIT_OK && (tsr_index_open(pos[0], 1, &ix, &err) != TSR_OK ||
                          tsr_index_build_ann(ix, ann, &err) != TSR_OK)) {
        cli_error("index build-ann", &err);
        rc = EXIT_RUNTIME;
    }
    if (rc == EXIT_OK)
        printf("built %s over %s in %.1f s\n", ann, pos[0], now_s() - t0);
    tsr_index_close(ix);
    free(pos);
    return rc;
}

static int cmd_index_merge(int argc, char **argv)
{
    const char **pos = NULL;
    int npos = 0;
    int rc = parse_or_help(argc, argv, NULL, 0, &pos, &npos, index_help);
    if (rc < 0)
        return EXIT_OK;
    if (rc == EXIT_OK && npos < 2)
        rc = cli_usage_error("index merge", "usage: tessera index merge OUT SHARD...");
    tsr_error err = {0};
    int64_t items = 0;
    if (rc == EXIT_OK && tsr_index_merge(pos[0], pos + 1, npos - 1, &items, &err) != TSR_OK) {
        cli_error("index merge", &err);
        rc = EXIT_RUNTIME;
    }
    if (rc == EXIT_OK)
        printf("merged %d shards into %s: %lld items written\n", npos - 1, pos[0],
               (long long)items);
    free(pos);
    return rc;
}

/* Embeddings made elsewhere (by this index's model: nothing can check it),
 * in the layout export writes. */
static int cmd_index_import(int argc, char **argv)
{
    const char *npy = NULL, *jsonl = NULL;
    int quiet = 0;
    cli_opt opts[] = {{"npy", 1, &npy, NULL}, {"jsonl", 1, &jsonl, NULL}, {"quiet", 0, NULL, &quiet}};
    const char **pos = NULL;
    int npos = 0;
    int rc = parse_or_help(argc, argv, opts, 3, &pos, &npos, index_help);
    if (rc < 0)
        return EXIT_OK;
    if (rc == EXIT_OK && (npos != 1 || !npy))
        rc = cli_usage_error("index import", "usage: tessera index import INDEX --npy F.npy "
                                             "[--jsonl F.jsonl]");
    tsr_index *ix = NULL;
    tsr_error err = {0};
    long long rows = 0;
    int cols = 0;
    float *x = NULL;
    char *jl = NULL;
    if (rc == EXIT_OK && tsr_index_open(pos[0], 1, &ix, &err) != TSR_OK) {
        cli_error("index import", &err);
        rc = EXIT_RUNTIME;
    }
    if (rc == EXIT_OK && !(x = cli_read_npy(npy, &rows, &cols, &err))) {
        cli_error("index import", &err);
        rc = EXIT_RUNTIME;
    }
    if (rc == EXIT_OK && cols != tsr_index_dim(ix)) {
        fprintf(stderr, "tessera index import: %s: %d-wide rows; the index holds %d-wide ones\n",
                npy, cols, tsr_index_dim(ix));
        rc = EXIT_RUNTIME;
    }
    struct stat jsb;
    if (rc == EXIT_OK && jsonl &&
        (stat(jsonl, &jsb) != 0 || !(jl = cli_read_file(jsonl, (size_t)jsb.st_size, NULL, &err)))) {
        if (!err.msg[0])
            snprintf(err.msg, sizeof err.msg, "%s: cannot open", jsonl);
        cli_error("index import", &err);
        rc = EXIT_RUNTIME;
    }
    enum { CHUNK = 8192 };
    tsr_index_item *items = calloc(CHUNK, sizeof *items);
    char **owned = calloc(CHUNK * 3, sizeof *owned);
    char *line = jl, *next = NULL;
    long long done = 0;
    double t0 = now_s();
    add_stats st = {0};
    int show = !quiet && isatty(STDERR_FILENO);
    if (rc == EXIT_OK && (!items || !owned)) {
        fprintf(stderr, "tessera index import: out of memory\n");
        rc = EXIT_RUNTIME;
    }
    while (rc == EXIT_OK && done < rows) {
        int n = (int)(rows - done < CHUNK ? rows - done : CHUNK);
        for (int i = 0; i < n && rc == EXIT_OK; i++) {
            tsr_index_item *it = &items[i];
            char name[64];
            *it = (tsr_index_item){NULL, 0, 0, "", TSR_MOD_IMAGE, NULL,
                                   x + (size_t)(done + i) * cols};
            if (jl) {
                if (!line || !*line) {
                    fprintf(stderr, "tessera index import: %s: %lld lines for %lld rows\n", jsonl,
                            done + i, rows);
                    rc = EXIT_RUNTIME;
                    break;
                }
                next = strchr(line, '\n');
                if (next)
                    *next++ = 0;
                cJSON *o = cJSON_Parse(line);
                const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "path");
                if (!cJSON_IsString(p))
                    p = cJSON_GetObjectItemCaseSensitive(o, "image_path");
                if (!cJSON_IsString(p)) {
                    fprintf(stderr, "tessera index import: %s: line %lld has no \"path\"\n", jsonl,
                            done + i + 1);
                    cJSON_Delete(o);
                    rc = EXIT_RUNTIME;
                    break;
                }
                owned[3 * i] = strdup(p->valuestring);
                it->path = owned[3 * i];
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "size");
                it->size = cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 9e18
                               ? (int64_t)v->valuedouble : 0;
                v = cJSON_GetObjectItemCaseSensitive(o, "mtime_ns");
                if (cJSON_IsString(v)) {
                    it->mtime_ns = strtoll(v->valuestring, NULL, 10);
                } else {
                    v = cJSON_GetObjectItemCaseSensitive(o, "mtime");
                    it->mtime_ns = cJSON_IsNumber(v) && fabs(v->valuedouble) < 9e9
                                       ? (int64_t)(v->valuedouble * 1e9) : 0;
                }
                v = cJSON_GetObjectItemCaseSensitive(o, "hash");
                if (cJSON_IsString(v))
                    it->hash = owned[3 * i + 1] = strdup(v->valuestring);
                v = cJSON_GetObjectItemCaseSensitive(o, "modality");
                for (int mI = 0; cJSON_IsString(v) && mI < TSR_MOD_N; mI++)
                    if (strcmp(v->valuestring, tsr_modality_name((tsr_modality)mI)) == 0)
                        it->modality = (tsr_modality)mI;
                v = cJSON_GetObjectItemCaseSensitive(o, "meta");
                if (cJSON_IsObject(v))
                    it->meta = owned[3 * i + 2] = cJSON_PrintUnformatted(v);
                cJSON_Delete(o);
                line = next;
            } else {
                snprintf(name, sizeof name, "#%lld", done + i);
                size_t cap = strlen(npy) + sizeof name;
                owned[3 * i] = malloc(cap);
                if (owned[3 * i])
                    snprintf(owned[3 * i], cap, "%s%s", npy, name);
                it->path = owned[3 * i];
            }
            if (!it->path) {
                fprintf(stderr, "tessera index import: out of memory\n");
                rc = EXIT_RUNTIME;
            }
        }
        if (rc == EXIT_OK && tsr_index_put(ix, items, n, &err) != TSR_OK) {
            cli_error("index import", &err);
            rc = EXIT_RUNTIME;
        }
        for (int i = 0; i < CHUNK * 3; i++) {
            free(owned[i]);
            owned[i] = NULL;
        }
        if (rc == EXIT_OK) {
            done += n;
            st.added = done;
            progress(&st, done, rows, t0, show);
        }
    }
    if (rc == EXIT_OK && !quiet)
        printf("imported %lld rows into %s in %.1f s\n", rows, pos[0], now_s() - t0);
    free(items);
    free(owned);
    free(jl);
    free(x);
    tsr_index_close(ix);
    free(pos);
    return rc;
}

int cmd_index(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(index_help, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "create") == 0)
        return cmd_index_create(argc - 1, argv + 1);
    if (strcmp(sub, "add") == 0)
        return cmd_index_add(argc - 1, argv + 1, 0);
    if (strcmp(sub, "sync") == 0)
        return cmd_index_add(argc - 1, argv + 1, 1);
    if (strcmp(sub, "remove") == 0)
        return cmd_index_remove(argc - 1, argv + 1);
    if (strcmp(sub, "info") == 0)
        return cmd_index_info(argc - 1, argv + 1);
    if (strcmp(sub, "export") == 0)
        return cmd_index_export(argc - 1, argv + 1);
    if (strcmp(sub, "build-ann") == 0)
        return cmd_index_build_ann(argc - 1, argv + 1);
    if (strcmp(sub, "merge") == 0)
        return cmd_index_merge(argc - 1, argv + 1);
    if (strcmp(sub, "import") == 0)
        return cmd_index_import(argc - 1, argv + 1);
    return cli_usage_error("index", "unknown subcommand '%s' (see 'tessera index --help')", sub);
}

/* ---- search ---- */

/* "path" as valid UTF-8 (U+FFFD for bad bytes) plus "path_bytes_hex" with
 * the original bytes when they are not UTF-8, as export writes it. */
static void add_path(cJSON *o, const char *path)
{
    size_t n = strlen(path);
    if (tsr_utf8_valid(path, n, NULL)) {
        cJSON_AddStringToObject(o, "path", path);
        return;
    }
    char *text = tsr_utf8_lossy(path, n), *hex = malloc(2 * n + 1);
    for (size_t i = 0; hex && i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", (unsigned char)path[i]);
    cJSON_AddStringToObject(o, "path", text ? text : "");
    if (hex)
        cJSON_AddStringToObject(o, "path_bytes_hex", hex);
    free(text);
    free(hex);
}

int cmd_search(int argc, char **argv)
{
    const char *text = NULL, *image = NULL, *lines = NULL, *k_s = NULL, *where = NULL,
               *modality = NULL, *model = NULL, *device = NULL, *vectors = NULL, *audio = NULL;
    int json = 0, exact = 0;
    cli_opt opts[] = {{"text", 1, &text, NULL},       {"image", 1, &image, NULL},
                      {"lines", 1, &lines, NULL},     {"k", 1, &k_s, NULL},
                      {"where", 1, &where, NULL},     {"modality", 1, &modality, NULL},
                      {"model", 1, &model, NULL},     {"device", 1, &device, NULL},
                      {"json", 0, NULL, &json},       {"exact", 0, NULL, &exact},
                      {"vectors", 1, &vectors, NULL},  {"audio", 1, &audio, NULL}};
    const char **pos = NULL;
    int npos = 0;
    int rc = parse_or_help(argc, argv, opts, sizeof opts / sizeof opts[0], &pos, &npos, search_help);
    if (rc < 0)
        return EXIT_OK;
    tsr_search_params sp = tsr_search_default_params();
    sp.exact = exact;
    sp.where = where;
    if (rc == EXIT_OK && npos != 1)
        rc = cli_usage_error("search", "usage: tessera search INDEX (--text STR | --image FILE | "
                                       "--lines FILE) [-k N] [--json]");
    if (rc == EXIT_OK && (!!text + !!image + !!lines + !!vectors + !!audio) != 1)
        rc = cli_usage_error("search",
                             "give exactly one of --text, --image, --audio, --lines and --vectors");
    if (rc == EXIT_OK && k_s && !cli_parse_ints(k_s, &sp.k, 1, 1, 100000))
        rc = cli_usage_error("search", "-k must be 1 to 100000, not '%s'", k_s);
    if (rc == EXIT_OK && modality) {
        sp.modality = -2;
        for (int i = 0; i < TSR_MOD_N; i++)
            if (strcmp(modality, tsr_modality_name((tsr_modality)i)) == 0)
                sp.modality = i;
        if (sp.modality == -2)
            rc = cli_usage_error("search", "--modality must be image, audio or text");
    }
    if (rc == EXIT_OK && text && !tsr_utf8_valid(text, strlen(text), NULL))
        rc = cli_usage_error("search", "--text is not valid UTF-8");
    char *lines_buf = NULL;
    const char **queries = NULL;
    int nq = 0;
    if (rc == EXIT_OK && lines) {
        rc = cli_read_lines("search", lines, &lines_buf, &queries, &nq);
        for (int i = 0; rc == EXIT_OK && i < nq; i++)
            if (!tsr_utf8_valid(queries[i], strlen(queries[i]), NULL))
                rc = cli_usage_error("search", "%s: line %d is not valid UTF-8", lines, i + 1);
        if (rc == EXIT_OK && nq == 0)
            rc = cli_usage_error("search", "%s: no queries", lines);
    } else if (rc == EXIT_OK && !vectors) {
        queries = malloc(sizeof *queries);
        if (queries)
            queries[0] = text ? text : image ? image : audio;
        nq = 1;
    }
    float *vec = NULL;
    int vec_dim = 0;
    if (rc == EXIT_OK && vectors) {
        tsr_error e = {0};
        long long r = 0;
        if (!(vec = cli_read_npy(vectors, &r, &vec_dim, &e))) {
            cli_error("search", &e);
            rc = EXIT_RUNTIME;
        } else if (r < 1 || r > 1000000) {
            rc = cli_usage_error("search", "%s: 1 to 1000000 query rows, not %lld", vectors, r);
        } else {
            nq = (int)r;
        }
    }
    if (rc != EXIT_OK) {
        free(pos);
        free(lines_buf);
        free(queries);
        free(vec);
        return rc;
    }
    tsr_index *ix = NULL;
    tsr_ctx *ctx = NULL;
    tsr_model *m = NULL;
    tsr_session *s = NULL;
    tsr_error err = {0};
    if (vectors) { /* no model needed */
        if (tsr_index_open(pos[0], 0, &ix, &err) != TSR_OK) {
            cli_error("search", &err);
            rc = EXIT_RUNTIME;
        } else if (vec_dim != tsr_index_dim(ix)) {
            fprintf(stderr, "tessera search: %s: %d-wide rows; the index holds %d-wide ones\n",
                    vectors, vec_dim, tsr_index_dim(ix));
            rc = EXIT_RUNTIME;
        } else {
            rc = cli_ctx("search", device, 0, &ctx);
        }
    } else {
        rc = open_with_model("search", pos[0], 0, model, device, &ix, &ctx, &m, &s, 1);
    }
    int dim = rc == EXIT_OK ? tsr_index_dim(ix) : 1;
    float *q = malloc(sizeof(float) * (size_t)nq * dim);
    tsr_hit *hits = calloc((size_t)nq * sp.k, sizeof *hits);
    int *n_hits = calloc((size_t)nq, sizeof *n_hits);
    if (rc == EXIT_OK && (!q || !hits || !n_hits)) {
        fprintf(stderr, "tessera search: out of memory\n");
        rc = EXIT_RUNTIME;
    }
    if (rc == EXIT_OK && vectors) {
        memcpy(q, vec, sizeof(float) * (size_t)nq * dim);
    } else if (rc == EXIT_OK) {
        int audio_model = tsr_model_audio_rate(m) > 0;
        tsr_status st;
        if ((image && audio_model) || (audio && !audio_model))
            st = tsr_error_set(&err, TSR_ERR_UNSUPPORTED, "%s holds a %s model's embeddings; %s",
                               pos[0], tsr_model_family(m),
                               audio_model ? "search it with --text or --audio"
                                           : "--audio needs an audio-text (CLAP) index");
        else if (audio)
            st = tsr_session_embed_audio_file(s, audio, TSR_AUDIO_WINDOW_MEAN, q, &err);
        else
            st = image ? tsr_session_embed_image_files(s, &image, 1, 1, q, &err)
                       : tsr_session_embed_texts(s, queries, nq, 1, q, NULL, &err);
        if (st != TSR_OK) {
            cli_error("search", &err);
            rc = EXIT_RUNTIME;
        }
    }
    tsr_search_info info = {0};
    if (rc == EXIT_OK && tsr_index_search(ix, ctx, q, nq, &sp, hits, n_hits, &info, &err) != TSR_OK) {
        cli_error("search", &err);
        rc = EXIT_RUNTIME;
    }
    if (rc == EXIT_OK && info.ann_problem[0])
        fprintf(stderr, "tessera search: the approximate index cannot be used (%s); searched "
                        "exactly\n", info.ann_problem);
    if (rc == EXIT_OK && info.ann_stale && !exact && !json)
        fprintf(stderr, "tessera search: the approximate index is older than the items; searched "
                        "exactly (rebuild it with `tessera index build-ann`)\n");
    for (int i = 0; rc == EXIT_OK && i < nq; i++) {
        const tsr_hit *h = hits + (size_t)i * sp.k;
        if (json) {
            cJSON *o = cJSON_CreateObject(), *res = cJSON_CreateArray();
            if (vectors)
                cJSON_AddNumberToObject(o, "query", i);
            else if (image || audio)
                add_path(o, queries[i]), cJSON_AddItemToObject(o, "query", cJSON_DetachItemFromObject(o, "path"));
            else
                cJSON_AddStringToObject(o, "query", queries[i]);
            cJSON_AddStringToObject(o, "kind", vectors ? "vector" : image ? "image" : audio ? "audio"
                                                                                        : "text");
            for (int j = 0; j < n_hits[i]; j++) {
                cJSON *r = cJSON_CreateObject();
                add_path(r, h[j].path ? h[j].path : "");
                cJSON_AddNumberToObject(r, "score", h[j].score);
                cJSON_AddNumberToObject(r, "id", (double)h[j].id);
                cJSON_AddItemToArray(res, r);
            }
            cJSON_AddItemToObject(o, "results", res);
            cJSON_AddBoolToObject(o, "approximate", info.used_ann);
            cJSON_AddNumberToObject(o, "searched", (double)info.searched);
            cJSON_AddNumberToObject(o, "load_seconds", info.load_s);
            cJSON_AddNumberToObject(o, "search_seconds", info.search_s);
            cli_print_json(o);
        } else {
            if (nq > 1 && vectors)
                printf("%s# %d\n", i ? "\n" : "", i);
            else if (nq > 1)
                printf("%s# %s\n", i ? "\n" : "", queries[i]);
            for (int j = 0; j < n_hits[i]; j++) {
                printf("%.4f\t", h[j].score);
                for (const char *c = h[j].path ? h[j].path : ""; *c; c++) /* one line each */
                    putchar((unsigned char)*c < 0x20 ? '?' : *c);
                putchar('\n');
            }
        }
    }
    if (hits)
        tsr_hits_free(hits, nq * sp.k);
    free(hits);
    free(n_hits);
    free(q);
    tsr_session_free(s);
    tsr_model_free(m);
    tsr_index_close(ix);
    tsr_ctx_free(ctx);
    free(queries);
    free(lines_buf);
    free(vec);
    free(pos);
    return rc;
}
