/* Approximate search through FAISS (fusion/tsr_ann.h) against a brute-force
 * C reference, on random unit vectors of 77 and 512 floats: flat search is
 * exact (same ids, scores within 1e-5), hnsw and ivf-pq reach recall@10 >=
 * 0.95 on perturbed data points and on random points, a file written and
 * read back answers identically, custom int64 ids come back, k beyond the
 * count gives -1, damaged and foreign files are errors that name the file,
 * a writer killed mid-write leaves a readable file, and the library built
 * without FAISS says so (test_ann_nofaiss). No OpenCL.
 *
 * Debian's FAISS is built for any x86-64 (no AVX) over the reference BLAS,
 * so its HNSW insertion and k-means are slow: by default hnsw and ivf-pq
 * run on fewer vectors than flat. TSR_ANN_FULL=1 runs all three on 20000
 * (minutes on two cores). */
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"
#include "tsr_ann.h"

#define NQ 100 /* queries: NQ/2 perturbed data points, NQ/2 random points */
#define K 10
#define ID0 5000000000LL /* custom ids: ID0 + 7*row, beyond 32 bits */

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t next_u64(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double uniform(void)
{
    return ((next_u64() >> 11) + 0.5) * 0x1.0p-53;
}

static float gauss(void)
{
    return (float)(sqrt(-2 * log(uniform())) * cos(6.283185307179586 * uniform()));
}

static void normalise(float *v, int d)
{
    double s = 0;
    for (int j = 0; j < d; j++)
        s += (double)v[j] * v[j];
    for (int j = 0; j < d; j++)
        v[j] = (float)(v[j] / sqrt(s));
}

static float *random_units(int64_t n, int d)
{
    float *x = malloc(sizeof(float) * (size_t)n * d);
    for (int64_t i = 0; i < n * d; i++)
        x[i] = gauss();
    for (int64_t i = 0; i < n; i++)
        normalise(x + i * d, d);
    return x;
}

/* Unit vectors around c random centres (cosine about 0.7 to their centre),
 * closer to what embeddings look like than random_units. */
static float *clustered_units(int64_t n, int d, int c)
{
    float *centre = random_units(c, d), *x = random_units(n, d);
    for (int64_t i = 0; i < n; i++) {
        const float *m = centre + (int64_t)(next_u64() % (uint64_t)c) * d;
        for (int j = 0; j < d; j++)
            x[i * d + j] = m[j] + x[i * d + j];
        normalise(x + i * d, d);
    }
    free(centre);
    return x;
}

/* NQ/2 data points among the first n with noise of norm about 0.3, then NQ/2 random points. */
static float *queries(const float *x, int64_t n, int d)
{
    float *q = random_units(NQ, d);
    for (int i = 0; i < NQ / 2; i++) {
        const float *row = x + (int64_t)(next_u64() % (uint64_t)n) * d;
        for (int j = 0; j < d; j++)
            q[i * d + j] = row[j] + 0.3f * q[i * d + j];
        normalise(q + i * d, d);
    }
    return q;
}

/* The k best rows by inner product (in double), best first; -1 past n. */
static void brute(const float *x, int64_t n, int d, const float *q, int nq, int k, float *score,
                  int64_t *id)
{
    for (int i = 0; i < nq; i++) {
        float *s = score + (int64_t)i * k;
        int64_t *r = id + (int64_t)i * k;
        for (int j = 0; j < k; j++)
            s[j] = -INFINITY, r[j] = -1;
        for (int64_t row = 0; row < n; row++) {
            double dot = 0;
            for (int j = 0; j < d; j++)
                dot += (double)q[i * d + j] * x[row * d + j];
            if (r[k - 1] >= 0 && dot <= s[k - 1])
                continue;
            int at = k - 1;
            while (at > 0 && (r[at - 1] < 0 || dot > s[at - 1])) {
                s[at] = s[at - 1], r[at] = r[at - 1];
                at--;
            }
            s[at] = (float)dot, r[at] = row;
        }
    }
}

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* Shares of want's rows found in got, over queries [from, to). */
static double recall(const int64_t *got, const int64_t *want, int from, int to)
{
    int hit = 0;
    for (int i = from; i < to; i++)
        for (int a = 0; a < K; a++)
            for (int b = 0; b < K; b++)
                hit += got[i * K + a] >= 0 && got[i * K + a] == want[i * K + b];
    return (double)hit / ((to - from) * K);
}

static int has(const char *msg, const char *what)
{
    return strstr(msg, what) != NULL;
}

static char tmpdir[256];

/* Files for tests/reference/check_faiss_files.py: each index with its
 * queries and tessera's answers next to it (INDEX.queries, .ids, .scores). */
static char *py_files[16];
static int n_py_files;

static void save_raw(const char *path, const char *ext, const void *data, size_t n)
{
    char p[600];
    snprintf(p, sizeof p, "%s%s", path, ext);
    FILE *f = fopen(p, "wb");
    if (f) {
        fwrite(data, 1, n, f);
        fclose(f);
    }
}

static void keep_for_python(const char *path, const float *q, int d, const float *s,
                            const int64_t *id)
{
    save_raw(path, ".queries", q, sizeof(float) * NQ * d);
    save_raw(path, ".scores", s, sizeof(float) * NQ * K);
    save_raw(path, ".ids", id, sizeof(int64_t) * NQ * K);
    if (n_py_files < 16)
        py_files[n_py_files++] = strdup(path);
}

/* FAISS's own reader (Python's) on the files kept: the same answers. */
static void check_with_python(void)
{
#ifdef TSR_PY_FAISS
    char cmd[8192];
    int at = snprintf(cmd, sizeof cmd, "%s %s", TSR_PY_FAISS, TSR_CHECK_FAISS);
    for (int i = 0; i < n_py_files; i++)
        at += snprintf(cmd + at, sizeof cmd - at, " %s", py_files[i]);
    fflush(stdout);
    int rc = system(cmd);
    rc = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    if (rc == 77)
        printf("skipped: Python's faiss module went missing since configuring\n");
    else
        check(rc == 0, "Python's faiss.read_index opens the %d files and answers the same",
              n_py_files);
#else
    printf("skipped: no Python faiss module at configure time (pip install faiss-cpu numpy), "
           "so tests/reference/check_faiss_files.py does not run\n");
#endif
    for (int i = 0; i < n_py_files; i++) {
        static const char *const ext[] = {"", ".queries", ".ids", ".scores"};
        for (int e = 0; e < 4; e++) {
            char p[600];
            snprintf(p, sizeof p, "%s%s", py_files[i], ext[e]);
            remove(p);
        }
        free(py_files[i]);
    }
}

/* One kind on the first n rows of x: build with custom ids, search, compare
 * with the reference, write, read back, search again. */
static void run_kind(const char *kind, const float *x, int64_t n, int d, int threads,
                     const char *data)
{
    float *q = queries(x, n, d);
    float *ref_s = malloc(sizeof(float) * NQ * K), *s = malloc(sizeof(float) * NQ * K),
          *s2 = malloc(sizeof(float) * NQ * K);
    int64_t *ref = malloc(sizeof(int64_t) * NQ * K), *id = malloc(sizeof(int64_t) * NQ * K),
            *id2 = malloc(sizeof(int64_t) * NQ * K), *ids = malloc(sizeof(int64_t) * n);
    brute(x, n, d, q, NQ, K, ref_s, ref);
    for (int64_t i = 0; i < n; i++)
        ids[i] = ID0 + 7 * i;

    tsr_ann_params p = tsr_ann_default_params();
    p.kind = kind;
    p.threads = threads; /* 1: the same graph every run, and no OpenMP spinning on a busy machine */
    tsr_error err = {0};
    tsr_ann *a = NULL;
    double t0 = seconds();
    tsr_status st = tsr_ann_build(&p, x, ids, n, d, &a, &err);
    double t_build = seconds() - t0;
    check(st == TSR_OK && a, "%s d=%d n=%lld, %s: built in %.2f s (%d thread%s) %s", kind, d,
          (long long)n, data, t_build, threads, threads > 1 ? "s" : "", st ? err.msg : "");
    if (!a)
        goto out;
    tsr_ann_params got = tsr_ann_settings(a);
    printf("     settings: M %d efConstruction %d efSearch %d | nlist %d pq %dx%d bits nprobe %d "
           "k_factor %d\n",
           got.hnsw_m, got.ef_construction, got.ef_search, got.nlist, got.pq_m, got.pq_bits,
           got.nprobe, got.k_factor);
    tsr_ann_set_threads(a, threads);
    check(tsr_ann_count(a) == n && tsr_ann_dim(a) == d && strcmp(tsr_ann_kind(a), kind) == 0,
          "%s d=%d: count %lld, dim %d, kind %s", kind, d, (long long)tsr_ann_count(a),
          tsr_ann_dim(a), tsr_ann_kind(a));

    t0 = seconds();
    st = tsr_ann_search(a, q, NQ, K, s, id, &err);
    double t_search = seconds() - t0;
    memcpy(id2, id, sizeof(int64_t) * NQ * K); /* the custom ids, for Python */
    int ids_ok = st == TSR_OK;
    for (int i = 0; ids_ok && i < NQ * K; i++) /* custom ids back to rows */
        if (id[i] >= 0) {
            ids_ok = id[i] >= ID0 && (id[i] - ID0) % 7 == 0 && (id[i] - ID0) / 7 < n;
            id[i] = (id[i] - ID0) / 7;
        }
    check(ids_ok, "%s d=%d: %d queries in %.3f s, every id one of the custom ids %s", kind, d, NQ,
          t_search, st ? err.msg : "");
    if (strcmp(kind, "flat") == 0) {
        double max_err = 0;
        int same = memcmp(id, ref, sizeof(int64_t) * NQ * K) == 0;
        int close = close_enough(s, ref_s, NQ * K, 1e-5, 0, &max_err);
        check(same && close, "flat d=%d: ids identical to brute force, max score error %.2g", d,
              max_err);
    } else {
        double r_pert = recall(id, ref, 0, NQ / 2), r_rand = recall(id, ref, NQ / 2, NQ);
        double r = recall(id, ref, 0, NQ);
        check(r >= 0.95 && r_pert >= 0.95 && r_rand >= 0.95,
              "%s d=%d n=%lld, %s: recall@10 %.3f (perturbed data points %.3f, random points "
              "%.3f)",
              kind, d, (long long)n, data, r, r_pert, r_rand);
        if (strcmp(data, "clustered") == 0) /* the tuning found lighter settings than exhaustive */
            check(strcmp(kind, "hnsw") == 0 ? got.ef_search < n / 8 : got.nprobe < got.nlist,
                  "%s d=%d, clustered: tuned below an exhaustive search", kind, d);
        /* hits are scored exactly: the reference's score for the same row */
        double worst = 0;
        for (int i = 0; i < NQ; i++)
            for (int a2 = 0; a2 < K; a2++)
                for (int b = 0; b < K; b++)
                    if (id[i * K + a2] >= 0 && id[i * K + a2] == ref[i * K + b])
                        worst = fmax(worst, fabs(s[i * K + a2] - ref_s[i * K + b]));
        check(worst <= 1e-5, "%s d=%d: scores of the hits within 1e-5 of the reference (%.2g)",
              kind, d, worst);
    }

    char path[512];
    snprintf(path, sizeof path, "%s/%s-%d-%s.ann", tmpdir, kind, d, data);
    tsr_ann *b = NULL;
    st = tsr_ann_write(a, path, &err);
    if (st == TSR_OK)
        keep_for_python(path, q, d, s, id2);
    if (st == TSR_OK)
        st = tsr_ann_read(path, &b, &err);
    check(st == TSR_OK && b, "%s d=%d: written and read back %s", kind, d, st ? err.msg : "");
    if (b) {
        tsr_ann_params again = tsr_ann_settings(b);
        st = tsr_ann_search(b, q, NQ, K, s2, id2, &err);
        for (int i = 0; i < NQ * K; i++)
            if (id2[i] >= 0)
                id2[i] = (id2[i] - ID0) / 7;
        check(st == TSR_OK && memcmp(id, id2, sizeof(int64_t) * NQ * K) == 0 &&
                  memcmp(s, s2, sizeof(float) * NQ * K) == 0 && tsr_ann_count(b) == n &&
                  tsr_ann_dim(b) == d && strcmp(tsr_ann_kind(b), kind) == 0 &&
                  again.ef_search == got.ef_search && again.nprobe == got.nprobe &&
                  again.k_factor == got.k_factor && again.nlist == got.nlist,
              "%s d=%d: the file read back answers identically", kind, d);
        tsr_ann_free(b);
    }
    tsr_ann_free(a);
out:
    free(q), free(ref_s), free(s), free(s2), free(ref), free(id), free(id2), free(ids);
}

struct searcher {
    const tsr_ann *a;
    const float *q;
    const int64_t *want;
    int same;
};

static void *search_many(void *arg)
{
    struct searcher *t = arg;
    float s[NQ * K];
    int64_t id[NQ * K];
    t->same = 1;
    for (int round = 0; round < 10; round++) {
        tsr_error err = {0};
        t->same &= tsr_ann_search(t->a, t->q, NQ, K, s, id, &err) == TSR_OK &&
                   memcmp(id, t->want, sizeof id) == 0;
    }
    return NULL;
}

/* One index searched from four threads at once answers as from one. */
static void test_concurrent_search(const float *x, int d)
{
    const char *kinds[] = {"hnsw", "ivf-pq"};
    for (int c = 0; c < 2; c++) {
        tsr_ann_params p = tsr_ann_default_params();
        p.kind = kinds[c];
        p.threads = 1;
        tsr_ann *a = NULL;
        tsr_error err = {0};
        float *q = queries(x, 3000, d), s[NQ * K];
        int64_t want[NQ * K];
        tsr_status st = tsr_ann_build(&p, x, NULL, 3000, d, &a, &err);
        if (st == TSR_OK) {
            tsr_ann_set_threads(a, 1);
            st = tsr_ann_search(a, q, NQ, K, s, want, &err);
        }
        struct searcher t[4];
        pthread_t th[4];
        int same = st == TSR_OK, started = 0;
        for (; same && started < 4; started++) {
            t[started] = (struct searcher){a, q, want, 0};
            if (pthread_create(&th[started], NULL, search_many, &t[started]) != 0)
                break;
        }
        same &= started == 4;
        for (int i = 0; i < started; i++) {
            pthread_join(th[i], NULL);
            same &= t[i].same;
        }
        check(same, "%s: 4 threads searching one index at once, 10 times each: the same answers %s",
              kinds[c], st ? err.msg : "");
        tsr_ann_free(a);
        free(q);
    }
}

/* k beyond what the index holds: the rest is id -1, score -INFINITY. */
static void test_k_beyond(const float *x, int d)
{
    struct {
        const char *kind;
        int64_t n;
        int k;
    } cases[] = {{"flat", 5, 8}, {"hnsw", 5, 8}, {"ivf-pq", 700, 750}};
    for (int c = 0; c < 3; c++) {
        tsr_ann_params p = tsr_ann_default_params();
        p.kind = cases[c].kind;
        p.threads = 1;
        tsr_error err = {0};
        tsr_ann *a = NULL;
        int k = cases[c].k;
        int64_t n = cases[c].n;
        float *s = malloc(sizeof(float) * 2 * k);
        int64_t *id = malloc(sizeof(int64_t) * 2 * k);
        tsr_status st = tsr_ann_build(&p, x, NULL, n, d, &a, &err);
        if (st == TSR_OK)
            st = tsr_ann_search(a, x + d, 2, k, s, id, &err);
        int ok = st == TSR_OK, found = 0;
        for (int i = 0; ok && i < 2; i++) {
            int j = 0;
            for (; j < k && id[i * k + j] >= 0; j++) { /* distinct rows, best first */
                ok &= id[i * k + j] < n && (j == 0 || s[i * k + j] <= s[i * k + j - 1]);
                for (int m = 0; m < j; m++)
                    ok &= id[i * k + m] != id[i * k + j];
            }
            found += j;
            for (; j < k; j++)
                ok &= id[i * k + j] == -1 && s[i * k + j] == -INFINITY;
            ok &= id[i * k] == i + 1; /* the queries are rows 1 and 2 */
        }
        check(ok && found <= 2 * n && found >= (n < 100 ? 2 * n : 2),
              "%s n=%lld, k=%d: %d found, the rest -1 and -inf %s", cases[c].kind, (long long)n, k,
              found, st ? err.msg : "");
        tsr_ann_free(a);
        free(s), free(id);
    }
}

static void expect_read_error(const char *path, const char *what, const char *msg_part)
{
    tsr_error err = {0};
    tsr_ann *a = (tsr_ann *)&err; /* must come back NULL */
    tsr_status st = tsr_ann_read(path, &a, &err);
    check(st != TSR_OK && !a && has(err.msg, path) && (!msg_part || has(err.msg, msg_part)),
          "%s: refused, naming the file: %s", what, err.msg);
    tsr_ann *b = NULL;
    check(tsr_ann_read(path, &b, NULL) == st && !b, "%s, with err = NULL: the same status", what);
}

/* Damaged, foreign and missing files. */
static void test_bad_files(const float *x, int d)
{
    tsr_error err = {0};
    tsr_ann_params p = tsr_ann_default_params();
    p.kind = "flat";
    tsr_ann *a = NULL;
    char good[512], bad[512];
    snprintf(good, sizeof good, "%s/good.ann", tmpdir);
    snprintf(bad, sizeof bad, "%s/bad.ann", tmpdir);
    if (tsr_ann_build(&p, x, NULL, 300, d, &a, &err) || tsr_ann_write(a, good, &err)) {
        check(0, "a file to damage: %s", err.msg);
        tsr_ann_free(a);
        return;
    }
    tsr_ann_free(a);
    char *bytes = NULL;
    size_t n = 0;
    {
        FILE *f = fopen(good, "rb");
        fseek(f, 0, SEEK_END);
        n = (size_t)ftell(f);
        fseek(f, 0, SEEK_SET);
        bytes = malloc(n + 64);
        n = fread(bytes, 1, n, f);
        fclose(f);
    }
    unsigned char noise[4096];
    for (size_t i = 0; i < sizeof noise; i++)
        noise[i] = (unsigned char)next_u64();
    write_bytes(bad, noise, sizeof noise);
    expect_read_error(bad, "random bytes", "not a tessera ANN index");
    write_bytes(bad, bytes, n / 2);
    expect_read_error(bad, "a valid file cut in half", "truncated");
    write_bytes(bad, bytes, n - 1);
    expect_read_error(bad, "a valid file less its last byte", NULL);
    write_bytes(bad, bytes + 1, n - 1);
    expect_read_error(bad, "a valid file less its first byte", "damaged");
    memcpy(bytes + n, bytes + n - 24, 24); /* the trailer twice */
    write_bytes(bad, bytes, n + 24);
    expect_read_error(bad, "a valid file with 24 bytes more", "damaged");
    bytes[n / 2] ^= 0x10;
    write_bytes(bad, bytes, n);
    expect_read_error(bad, "a valid file with one bit flipped", "checksum");
    bytes[n / 2] ^= 0x10;
    write_bytes(bad, "", 0);
    expect_read_error(bad, "an empty file", "empty");
    expect_read_error(tmpdir, "a directory", "directory");
    char missing[512];
    snprintf(missing, sizeof missing, "%s/no-such.ann", tmpdir);
    expect_read_error(missing, "a missing path", "cannot open");
    check(tsr_ann_write_flat(bad, x, 300, d, &err) == TSR_OK, "a plain FAISS flat index written %s",
          err.msg);
    expect_read_error(bad, "a plain FAISS file (no tessera trailer)", "not a tessera ANN index");
    /* the export is FAISS's IndexFlatIP: fourcc, d, n, two dummies, trained, metric, size, rows */
    {
        FILE *f = fopen(bad, "rb");
        fseek(f, 0, SEEK_END);
        long len = ftell(f);
        fseek(f, 0, SEEK_SET);
        char head[4] = {0};
        int32_t dd = 0;
        int64_t nn = 0;
        if (fread(head, 1, 4, f) != 4 || fread(&dd, 4, 1, f) != 1 || fread(&nn, 8, 1, f) != 1)
            nn = -1;
        fclose(f);
        long want = 4 + 4 + 8 + 16 + 1 + 4 + 8 + 4L * 300 * d;
        check(memcmp(head, "IxFI", 4) == 0 && dd == d && nn == 300 && len == want,
              "the export is an IndexFlatIP of 300 x %d (%ld bytes, %ld expected)", d, len, want);
    }
    remove(bad);
    remove(good);
    free(bytes);

    /* writing where it cannot */
    snprintf(missing, sizeof missing, "%s/no-such-dir/x.ann", tmpdir);
    {
        tsr_status st = tsr_ann_write_flat(missing, x, 10, d, &err);
        check(st == TSR_ERR_IO && has(err.msg, missing), "writing into a missing directory: %s",
              err.msg);
        st = tsr_ann_write_flat(tmpdir, x, 10, d, &err);
        check(st == TSR_ERR_IO && has(err.msg, tmpdir), "writing onto a directory: %s", err.msg);
    }
}

/* A writer killed with SIGKILL at any moment leaves the old file or the new
 * one at the path, never a torn one. */
static void test_killed_writer(const float *x, int d)
{
    tsr_ann_params p = tsr_ann_default_params();
    p.kind = "flat";
    tsr_ann *small = NULL, *large = NULL;
    tsr_error err = {0};
    char path[512];
    snprintf(path, sizeof path, "%s/killed.ann", tmpdir);
    if (tsr_ann_build(&p, x, NULL, 1000, d, &small, &err) ||
        tsr_ann_build(&p, x, NULL, 20000, d, &large, &err) || tsr_ann_write(small, path, &err)) {
        check(0, "indexes for the writer: %s", err.msg);
        tsr_ann_free(small), tsr_ann_free(large);
        return;
    }
    int ok = 1, saw_large = 0;
    for (int trial = 0; trial < 6; trial++) {
        pid_t pid = fork();
        if (pid == 0) {
            for (int i = 0;; i++)
                tsr_ann_write(i % 2 ? small : large, path, NULL);
        }
        struct timespec ts = {0, (1 + 4 * trial) * 1000 * 1000};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        tsr_ann *r = NULL;
        tsr_status st = tsr_ann_read(path, &r, &err);
        ok &= st == TSR_OK && (tsr_ann_count(r) == 1000 || tsr_ann_count(r) == 20000);
        saw_large |= tsr_ann_count(r) == 20000;
        if (st)
            printf("     after kill %d: %s\n", trial, err.msg);
        tsr_ann_free(r);
    }
    check(ok, "a writer killed 6 times mid-write: the path always reads (the new file seen: %s)",
          saw_large ? "yes" : "no");
    DIR *dir = opendir(tmpdir); /* the killed writer's temporary files */
    struct dirent *e;
    char tmp[1024];
    while (dir && (e = readdir(dir)))
        if (strncmp(e->d_name, "killed.ann.", 11) == 0) {
            snprintf(tmp, sizeof tmp, "%s/%s", tmpdir, e->d_name);
            remove(tmp);
        }
    if (dir)
        closedir(dir);
    remove(path);
    tsr_ann_free(small), tsr_ann_free(large);
}

static void test_bad_arguments(float *x, int d)
{
    tsr_error err = {0};
    tsr_ann *a = NULL;
    tsr_ann_params p = tsr_ann_default_params();
    p.kind = "lsh";
    check(tsr_ann_build(&p, x, NULL, 100, d, &a, &err) == TSR_ERR_INVALID_ARG && !a &&
              has(err.msg, "lsh"),
          "an unknown kind: %s", err.msg);
    p.kind = "ivf-pq";
    check(tsr_ann_build(&p, x, NULL, 600, d, &a, &err) == TSR_ERR_INVALID_ARG && !a &&
              has(err.msg, "624"),
          "ivf-pq on too few vectors: %s", err.msg);
    p.kind = "ivf-pq";
    p.pq_m = 5;
    check(tsr_ann_build(&p, x, NULL, 1000, d, &a, &err) == TSR_ERR_INVALID_ARG && !a,
          "pq_m not dividing d: %s", err.msg);
    p = tsr_ann_default_params();
    int64_t ids[3] = {1, -1, 2};
    check(tsr_ann_build(&p, x, ids, 3, d, &a, &err) == TSR_ERR_INVALID_ARG && !a,
          "a negative id: %s", err.msg);
    float keep = x[d + 3];
    x[d + 3] = NAN;
    check(tsr_ann_build(&p, x, NULL, 3, d, &a, &err) == TSR_ERR_INVALID_ARG && !a &&
              has(err.msg, "row 1"),
          "a NaN: %s", err.msg);
    x[d + 3] = keep;
    check(tsr_ann_build(&p, x, NULL, 0, d, &a, NULL) == TSR_ERR_INVALID_ARG && !a,
          "no rows, err = NULL");
    p.kind = "flat";
    if (tsr_ann_build(&p, x, NULL, 10, d, &a, &err) == TSR_OK) {
        float s[4];
        int64_t id[4];
        check(tsr_ann_search(a, x, 1, 0, s, id, &err) == TSR_ERR_INVALID_ARG, "k = 0: %s",
              err.msg);
        check(tsr_ann_search(a, x, 0, 4, NULL, NULL, &err) == TSR_OK, "no queries");
        keep = x[2];
        x[2] = INFINITY;
        check(tsr_ann_search(a, x, 1, 4, s, id, &err) == TSR_ERR_INVALID_ARG, "an infinite query: %s",
              err.msg);
        x[2] = keep;
    }
    tsr_ann_free(a);
}

/* The answers of a build without FAISS (test_ann_nofaiss). */
static int test_without_faiss(void)
{
    tsr_error err = {0};
    tsr_ann *a = NULL;
    float x[4] = {1, 0, 0, 0};
    check(tsr_ann_build(NULL, x, NULL, 1, 4, &a, &err) == TSR_ERR_UNSUPPORTED && !a &&
              has(err.msg, "without FAISS"),
          "build: %s", err.msg);
    check(tsr_ann_read("/", &a, &err) == TSR_ERR_UNSUPPORTED && !a && has(err.msg, "without FAISS"),
          "read: %s", err.msg);
    check(tsr_ann_write_flat("/tmp/never.ann", x, 1, 4, &err) == TSR_ERR_UNSUPPORTED &&
              has(err.msg, "without FAISS") && access("/tmp/never.ann", F_OK) != 0,
          "export: %s", err.msg);
    return finish();
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!tsr_ann_available()) {
        printf("built without FAISS\n");
        return test_without_faiss();
    }
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tessera-ann-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        printf("FAIL: no temporary directory\n");
        return 1;
    }
    const char *full_env = getenv("TSR_ANN_FULL");
    int full = full_env && *full_env && strcmp(full_env, "0") != 0;
    struct {
        int d;
        const char *kind;
        int64_t n, n_full;
        int threads;
    } cases[] = {
        {77, "flat", 20000, 20000, 1},  {77, "hnsw", 5000, 20000, 2},
        {77, "ivf-pq", 5000, 20000, 1}, {512, "flat", 20000, 20000, 1},
        {512, "hnsw", 2000, 20000, 1},  {512, "ivf-pq", 2500, 20000, 1},
    };
    float *x77 = random_units(20000, 77), *x512 = random_units(20000, 512);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        run_kind(cases[c].kind, cases[c].d == 77 ? x77 : x512,
                 full ? cases[c].n_full : cases[c].n, cases[c].d, cases[c].threads, "uniform");
    /* random data has no structure, so the tuning ends near exhaustive search there */
    float *xc = clustered_units(full ? 20000 : 5000, 77, 100);
    run_kind("hnsw", xc, full ? 20000 : 5000, 77, 1, "clustered");
    run_kind("ivf-pq", xc, full ? 20000 : 5000, 77, 1, "clustered");
    free(xc);
    /* the export for other tools: a plain IndexFlatIP, answering as tessera's flat index */
    {
        tsr_ann_params p = tsr_ann_default_params();
        p.kind = "flat";
        tsr_ann *a = NULL;
        tsr_error err = {0};
        float *q = queries(x77, 20000, 77), s[NQ * K];
        int64_t id[NQ * K];
        char path[512];
        snprintf(path, sizeof path, "%s/export-77.faiss", tmpdir);
        tsr_status st = tsr_ann_build(&p, x77, NULL, 20000, 77, &a, &err);
        if (st == TSR_OK)
            st = tsr_ann_search(a, q, NQ, K, s, id, &err);
        if (st == TSR_OK)
            st = tsr_ann_write_flat(path, x77, 20000, 77, &err);
        check(st == TSR_OK, "the flat export of 20000 x 77 written %s", st ? err.msg : "");
        if (st == TSR_OK)
            keep_for_python(path, q, 77, s, id);
        tsr_ann_free(a);
        free(q);
    }
    check_with_python();
    test_concurrent_search(x77, 77);
    test_k_beyond(x77, 77);
    test_bad_files(x77, 77);
    test_killed_writer(x77, 77);
    test_bad_arguments(x77, 77);
    free(x77), free(x512);
    rmdir(tmpdir);
    return finish();
}
