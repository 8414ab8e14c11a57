/* Internal: approximate nearest-neighbour search over embeddings by inner
 * product, through FAISS (fusion/faiss.cpp is the library's one C++ file).
 *
 *   tsr_ann_params p = tsr_ann_default_params();
 *   p.kind = "hnsw";                                  // "flat", "hnsw" or "ivf-pq"
 *   tsr_ann *a = NULL;
 *   if (tsr_ann_build(&p, x, ids, n, d, &a, &err) ||  // n rows of d floats, L2-normalised
 *       tsr_ann_write(a, "images.ann", &err))         // ids: NULL for row numbers
 *       return fprintf(stderr, "%s\n", err.msg), 1;
 *   float score[10];
 *   int64_t id[10];                                   // -1: fewer than 10 items
 *   tsr_ann_search(a, query, 1, 10, score, id, &err);
 *   tsr_ann_free(a);
 *
 * Kinds (FAISS's index in brackets, always inside an IndexIDMap2 that holds
 * the caller's int64 ids):
 *   flat    exact search (IndexFlatIP);
 *   hnsw    a graph (IndexHNSWFlat, inner product, M 32, efConstruction 80);
 *   ivf-pq  an inverted file of product-quantised codes (IndexIVFPQ, inner
 *           product, nlist about 4*sqrt(n)) whose candidates are re-ranked by
 *           the exact inner product (IndexRefineFlat): scores are exact, and
 *           the file holds the vectors as well as the codes.
 * The search settings left at 0 (ef_search; nprobe and k_factor) are tuned
 * when the index is built. Each is the smallest power of two at which
 * recall@10 against exact search reaches target_recall on two sets of
 * queries: up to 50 of the vectors (each left out of its own answers) and
 * 50 points drawn from a normal distribution fitted to the vectors
 * (standing for queries from outside the collection). It is then doubled,
 * as a margin. ivf-pq tunes k_factor with every list probed, then nprobe.
 * Random, structureless vectors drive them towards exhaustive search;
 * callers who know their queries may set them. They are stored in the file.
 *
 * Files: tsr_ann_write writes FAISS's own serialisation followed by a
 * 24-byte trailer (its length, a CRC-32 and a magic), to a temporary file
 * in the same directory, synced and renamed into place: after a crash the
 * path holds the old file or the new one. faiss.read_index opens it (FAISS
 * ignores the trailer). tsr_ann_read checks the trailer and the checksum
 * before FAISS parses a byte (so it reads the file twice), and the
 * structure after; it opens only files tsr_ann_write wrote. The checksum
 * catches damage, not forgery: FAISS's parser is not hardened against
 * crafted files, so an index file is trusted as the model files are. tsr_ann_write_flat exports plain FAISS (an
 * IndexFlatIP, rows in order) for other tools.
 *
 * Threads: a tsr_ann is read-only once built or read; tsr_ann_search may run
 * in any number of threads at once on one index. tsr_ann_set_threads and
 * tsr_ann_free: while no other thread uses the index. FAISS parallelises
 * each build and search with OpenMP; params.threads and tsr_ann_set_threads
 * bound that per call, in the calling thread only (0: OpenMP's default,
 * OMP_NUM_THREADS or every core). OpenMP's threads spin while they wait:
 * on cores busy with other work, threads = 1 (or OMP_WAIT_POLICY=passive)
 * can make k-means ten times faster.
 *
 * Built without FAISS (-DTESSERA_WITH_FAISS=OFF), tsr_ann_available()
 * returns 0 and every call that would need FAISS fails with
 * TSR_ERR_UNSUPPORTED, saying so.
 */
#ifndef TSR_ANN_H
#define TSR_ANN_H

#include <stdint.h>

#include "tsr_opencl.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tsr_ann tsr_ann;

/* Every number may be left 0 for the default shown. */
typedef struct {
    const char *kind;     /* "flat", "hnsw" (the default, also for NULL) or "ivf-pq" */
    double target_recall; /* 0.95: what the tuned settings aim for */
    int threads;          /* OpenMP threads for the build and the tuning; 0: OpenMP's default */
    /* hnsw */
    int hnsw_m;           /* 32: links per node (2*M on the bottom layer) */
    int ef_construction;  /* 80 */
    int ef_search;        /* tuned */
    /* ivf-pq */
    int nlist;            /* round(4*sqrt(n)), at most n/39 (39 training points a list) */
    int pq_m;             /* the divisor of d that gives sub-vectors nearest 4 floats */
    int pq_bits;          /* 8, fewer when n < 39*256 (39 training points a centroid) */
    int nprobe;           /* tuned */
    int k_factor;         /* tuned: k*k_factor candidates are re-ranked exactly */
} tsr_ann_params;

/* Any thread. */
tsr_ann_params tsr_ann_default_params(void);

/* 1 when tessera was built with FAISS, 0 otherwise. Any thread. */
int tsr_ann_available(void);

/* Builds an index of n rows of d floats (x, row-major; the caller keeps it).
 * ids: n ids >= 0 (-1 marks a missing result), or NULL for 0..n-1. p: NULL
 * for the defaults. ivf-pq needs n >= 624 (16 centroids of 39 points).
 * Takes seconds to minutes: FAISS's HNSW insertion and k-means dominate. */
tsr_status tsr_ann_build(const tsr_ann_params *p, const float *x, const int64_t *ids, int64_t n,
                         int d, tsr_ann **out, tsr_error *err);

/* The nq queries' k best items, best first: scores[nq*k] (inner products)
 * and ids[nq*k]. Where fewer than k items are found (k > count, or an
 * approximate index came short) the rest are id -1, score -INFINITY. */
tsr_status tsr_ann_search(const tsr_ann *a, const float *q, int nq, int k, float *scores,
                          int64_t *ids, tsr_error *err);

/* Atomic: a temporary file next to path, fsync, rename, fsync of the directory. */
tsr_status tsr_ann_write(const tsr_ann *a, const char *path, tsr_error *err);
/* A missing, unreadable, empty, truncated, damaged or foreign file is an
 * error whose message names path; nothing is printed and nothing aborts. */
tsr_status tsr_ann_read(const char *path, tsr_ann **out, tsr_error *err);

/* For export: a plain IndexFlatIP of x, rows in order (ids 0..n-1, no
 * IDMap, no trailer), as faiss.read_index, autofaiss and clip-retrieval
 * expect. Atomic as tsr_ann_write. FAISS copies x while it writes. */
tsr_status tsr_ann_write_flat(const char *path, const float *x, int64_t n, int d, tsr_error *err);

int64_t tsr_ann_count(const tsr_ann *a);
int tsr_ann_dim(const tsr_ann *a);
const char *tsr_ann_kind(const tsr_ann *a); /* "flat", "hnsw" or "ivf-pq" */
/* The settings in use, tuned ones included (threads: tsr_ann_set_threads's;
 * target_recall: 0 for an index read from a file). */
tsr_ann_params tsr_ann_settings(const tsr_ann *a);
/* OpenMP threads for each search of a (0: OpenMP's default). */
void tsr_ann_set_threads(tsr_ann *a, int threads);
void tsr_ann_free(tsr_ann *a);

#ifdef __cplusplus
}
#endif

#endif
