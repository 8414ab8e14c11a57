/* Placeholder for the FAISS wrapper: every call says this build has none. */
#include "tsr_ann.h"

static tsr_status none(tsr_error *err)
{
    return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                         "this build of tessera has no FAISS (approximate search and .faiss files)");
}
int tsr_ann_available(void) { return 0; }
tsr_status tsr_ann_build(const char *kind, const float *x, const int64_t *ids, int64_t n, int d,
                         tsr_ann **out, tsr_error *err) { *out = NULL; return none(err); }
tsr_status tsr_ann_write(const tsr_ann *a, const char *path, tsr_error *err) { return none(err); }
tsr_status tsr_ann_read(const char *path, tsr_ann **out, tsr_error *err) { *out = NULL; return none(err); }
tsr_status tsr_ann_search(const tsr_ann *a, const float *q, int nq, int k, float *scores,
                          int64_t *ids, tsr_error *err) { return none(err); }
int64_t tsr_ann_count(const tsr_ann *a) { return 0; }
int tsr_ann_dim(const tsr_ann *a) { return 0; }
const char *tsr_ann_kind(const tsr_ann *a) { return ""; }
void tsr_ann_free(tsr_ann *a) { (void)a; }
tsr_status tsr_ann_write_flat(const char *path, const float *x, int64_t n, int d, tsr_error *err) { return none(err); }
