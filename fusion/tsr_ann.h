/* Internal: approximate search through FAISS (placeholder until the FAISS
 * wrapper lands: every call reports that this build has no FAISS). */
#ifndef TSR_ANN_H
#define TSR_ANN_H

#include <stdint.h>

#include "tsr_opencl.h"

typedef struct tsr_ann tsr_ann;
int tsr_ann_available(void);
tsr_status tsr_ann_build(const char *kind, const float *x, const int64_t *ids, int64_t n, int d,
                         tsr_ann **out, tsr_error *err);
tsr_status tsr_ann_write(const tsr_ann *a, const char *path, tsr_error *err);
tsr_status tsr_ann_read(const char *path, tsr_ann **out, tsr_error *err);
tsr_status tsr_ann_search(const tsr_ann *a, const float *q, int nq, int k, float *scores,
                          int64_t *ids, tsr_error *err);
int64_t tsr_ann_count(const tsr_ann *a);
int tsr_ann_dim(const tsr_ann *a);
const char *tsr_ann_kind(const tsr_ann *a);
void tsr_ann_free(tsr_ann *a);
tsr_status tsr_ann_write_flat(const char *path, const float *x, int64_t n, int d, tsr_error *err);

#endif
