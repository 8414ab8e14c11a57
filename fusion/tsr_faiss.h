/* Internal to fusion/ann.c: the C view of fusion/faiss.cpp, which holds
 * every FAISS call. ann.c checks the arguments and resolves the defaults
 * before it calls here, and owns the files: these functions read and write
 * through callbacks. No C++ exception leaves them.
 *
 *   tsr_faiss *f = NULL;
 *   tsr_faiss_build(&spec, x, ids, n, d, &f, err);     // spec: ann.c's resolved settings
 *   tsr_faiss_search(f, 0, q, nq, k, scores, ids, err);
 *   tsr_faiss_save(f, sink, file, err);                // sink: fwrite and checksum
 *   tsr_faiss_free(f);
 */
#ifndef TSR_FAISS_H
#define TSR_FAISS_H

#include <stddef.h>
#include <stdint.h>

#include "tsr_opencl.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { TSR_FAISS_FLAT, TSR_FAISS_HNSW, TSR_FAISS_IVFPQ };

/* Every setting resolved; 0 for ef_search, nprobe and k_factor: tune it. */
typedef struct {
    int kind;
    double target_recall;
    int threads;
    int hnsw_m, ef_construction, ef_search;
    int nlist, pq_m, pq_bits, nprobe, k_factor;
} tsr_faiss_spec;

typedef struct tsr_faiss tsr_faiss;

/* Writes n bytes; returns 1, or 0 on failure (and keeps its own errno). */
typedef int (*tsr_faiss_sink)(void *user, const void *data, size_t n);
/* Reads up to n bytes into data; returns how many (0 at the end). */
typedef size_t (*tsr_faiss_source)(void *user, void *data, size_t n);

tsr_status tsr_faiss_build(const tsr_faiss_spec *s, const float *x, const int64_t *ids, int64_t n,
                           int d, tsr_faiss **out, tsr_error *err);
/* k <= count. threads: OpenMP threads for this call (0: the default). */
tsr_status tsr_faiss_search(const tsr_faiss *f, int threads, const float *q, int64_t nq, int k,
                            float *scores, int64_t *ids, tsr_error *err);
tsr_status tsr_faiss_save(const tsr_faiss *f, tsr_faiss_sink sink, void *user, tsr_error *err);
/* Parses a tsr_faiss_save stream and checks its structure (kinds, sizes,
 * links and list entries in range). */
tsr_status tsr_faiss_load(tsr_faiss_source src, void *user, tsr_faiss **out, tsr_error *err);
/* The plain IndexFlatIP of x for export. */
tsr_status tsr_faiss_save_flat(const float *x, int64_t n, int d, tsr_faiss_sink sink, void *user,
                               tsr_error *err);
/* The settings in use (threads 0), the count and the dimension. */
void tsr_faiss_describe(const tsr_faiss *f, tsr_faiss_spec *s, int64_t *n, int *d);
void tsr_faiss_free(tsr_faiss *f);

#ifdef __cplusplus
}
#endif

#endif
