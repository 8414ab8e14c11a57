/* Internal: memory-mapped safetensors checkpoints (one file or a sharded set).
 *
 *   tsr_st *st = NULL;
 *   if (tsr_st_open_dir("path/to/model", &st, &err) != TSR_OK) ...
 *   const tsr_st_tensor *t = tsr_st_find(st, "logit_scale");
 *   float v; tsr_st_to_f32(t, &v);
 *   tsr_st_close(st);
 */
#ifndef TSR_ST_H
#define TSR_ST_H

#include <stdint.h>

#include "tsr_opencl.h"

#define TSR_ST_MAX_DIMS 8

typedef enum {
    TSR_DT_F32, TSR_DT_F16, TSR_DT_BF16, TSR_DT_I64, TSR_DT_I32, TSR_DT_I16, TSR_DT_I8,
    TSR_DT_OTHER
} tsr_dtype;

typedef struct tsr_st_tensor {
    char *name;
    tsr_dtype dtype;
    int ndim;
    int64_t shape[TSR_ST_MAX_DIMS];
    uint64_t numel;
    const unsigned char *data; /* inside the mapping */
    uint64_t nbytes;
    const char *file;          /* the file it came from, for messages */
    int mapped;                /* data lies in a read-only mapping of that file */
    const struct tsr_st_tensor *scale; /* int8 weights: per-row scales (CTranslate2) */
} tsr_st_tensor;

typedef struct tsr_st tsr_st;

/* Opens one .safetensors file. */
tsr_status tsr_st_open_file(const char *path, tsr_st **out, tsr_error *err);
/* Opens DIR/model.safetensors, or the shards listed in DIR/model.safetensors.index.json. */
tsr_status tsr_st_open_dir(const char *dir, tsr_st **out, tsr_error *err);
struct tsr_source_s;
/* Opens model.safetensors, or the shards listed in model.safetensors.index.json,
 * of a source (a directory or files in memory). */
tsr_status tsr_st_open_source(const struct tsr_source_s *src, tsr_st **out, tsr_error *err);
tsr_status tsr_st_open_ct2_source(const struct tsr_source_s *src, const char *name, tsr_st **out,
                                  tsr_error *err);
/* Opens a CTranslate2 model.bin (format version 6) as the same kind of
 * tensor set: variables keep their names ("encoder/conv1/weight"), aliases
 * become extra names, int8 variables get their "<name>_scale". */
tsr_status tsr_st_open_ct2(const char *path, tsr_st **out, tsr_error *err);
/* The value of an integer scalar (CTranslate2's num_heads, activation, ...). */
tsr_status tsr_st_scalar_int(const tsr_st_tensor *t, long *v, tsr_error *err);
void tsr_st_close(tsr_st *st);
const tsr_st_tensor *tsr_st_find(const tsr_st *st, const char *name);
int tsr_st_count(const tsr_st *st);
const tsr_st_tensor *tsr_st_get(const tsr_st *st, int i);
/* Converts a F32/F16/BF16 (or scaled int8) tensor to float32 (dst holds numel floats). */
tsr_status tsr_st_to_f32(const tsr_st_tensor *t, float *dst, tsr_error *err);
/* Gives the file pages that hold only t's data back to the kernel, once its
 * values have been copied: they count as the process's memory while mapped,
 * and a later read maps them in again from the file. Nothing for tensors
 * that are not in a file mapping. */
void tsr_st_release(const tsr_st_tensor *t);
/* Finds name, checks that its shape is shape[0..ndim) and converts it to
 * float32 into *buf, which grows (realloc) to *cap floats as needed. where
 * names the checkpoint in messages. */
tsr_status tsr_st_load(const tsr_st *st, const char *where, const char *name, int ndim,
                       const int64_t *shape, float **buf, size_t *cap, tsr_error *err);
/* Formats a shape as "[a,b,c]". */
void tsr_st_shape_str(const int64_t *shape, int ndim, char *buf, size_t cap);

#endif
