/* The table-driven weight loader shared by every family. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsr_wtable.h"

typedef struct {
    const tsr_wtable *t;
    tsr_queue *q;
    const tsr_st *st;
    const char *where;
    uint64_t *rng;
    float *stage, *stack;
    size_t stage_cap, stack_cap;
} loader;

static int ndims(const tsr_wrow *r)
{
    int n = 0;
    while (n < 4 && r->dims[n])
        n++;
    return n;
}

static cl_mem *slot_of(const tsr_wtable *t, const tsr_wrow *r, int layer)
{
    const tsr_wobj *o = &t->obj[r->obj];
    return (cl_mem *)((char *)o->base + (size_t)layer * o->stride + r->off);
}

/* The shape the config expects, and its element count; 0 on a bad value. */
static uint64_t want_shape(const tsr_wtable *t, const tsr_wrow *r, int64_t *shape)
{
    uint64_t n = 1;
    for (int d = 0; d < ndims(r); d++) {
        shape[d] = t->dim(t->cfg, r->dims[d]);
        if (shape[d] < 1 || shape[d] > (1 << 24) || n > ((uint64_t)1 << 40) / (uint64_t)shape[d])
            return 0;
        n *= (uint64_t)shape[d];
    }
    return n;
}

/* The rows [from, from + len) of dim 0 that a sliced row keeps. */
static void slice_of(const tsr_wtable *t, const tsr_wrow *r, const int64_t *shape, int64_t *from,
                     int64_t *len)
{
    *from = 0;
    *len = shape[0];
    if (!r->slice_len)
        return;
    *from = r->slice_from ? t->dim(t->cfg, r->slice_from) : 0;
    *len = t->dim(t->cfg, r->slice_len);
}

/* Bytes of the slot a row fills (all of its parts); linear layers' weights
 * are stored as wdt, everything else as float32. */
static size_t slot_bytes(const tsr_wtable *t, const tsr_wrow *r, uint64_t numel,
                         const int64_t *shape, int wdt)
{
    uint64_t n = r->flags & TSR_W_ROW0 ? numel / (uint64_t)shape[0] : numel;
    if (r->flags & TSR_W_PLACE)
        n = (ndims(r) > 1 ? numel / (uint64_t)shape[0] : numel) *
            (uint64_t)t->dim(t->cfg, r->slice_len);
    else if (r->slice_len) {
        int64_t from, len;
        slice_of(t, r, shape, &from, &len);
        n = numel / (uint64_t)shape[0] * (uint64_t)len;
    }
    size_t parts = (size_t)(r->parts > 1 ? r->parts : 1);
    if (r->flags & TSR_W_LINEAR) { /* (N, K) after any transposition */
        size_t K = (r->flags & TSR_W_T) && ndims(r) == 2 ? (size_t)shape[0]
                                                         : (size_t)(numel / (uint64_t)shape[0]);
        return tsr_linear_weight_bytes(wdt, (int)((size_t)n * parts / K), (int)K);
    }
    return sizeof(float) * (size_t)n * parts;
}

/* Random weights for benchmarks: uniform with variance 1/fan_in for
 * matrices, ones for layernorm scales, zeros for other vectors. */
static void random_fill(const char *name, const int64_t *shape, int ndim, float *dst,
                        uint64_t *state)
{
    size_t n = 1, fan_in = 1;
    for (int d = 0; d < ndim; d++) {
        n *= (size_t)shape[d];
        if (d > 0)
            fan_in *= (size_t)shape[d];
    }
    int is_ln = strstr(name, "norm") != NULL;
    size_t len = strlen(name);
    int weight = len > 6 && strcmp(name + len - 6, "weight") == 0;
    float a = sqrtf(3.0f / (float)fan_in);
    for (size_t i = 0; i < n; i++) {
        if (ndim < 2) {
            dst[i] = is_ln && weight ? 1.0f : 0.0f;
            continue;
        }
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        dst[i] = a * (2.0f * (float)(*state >> 40) / 16777216.0f - 1.0f);
    }
}

static tsr_status grow(float **buf, size_t *cap, size_t n, tsr_error *err)
{
    if (n <= *cap)
        return TSR_OK;
    float *nb = realloc(*buf, sizeof(float) * n);
    if (!nb)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory loading weights");
    *buf = nb;
    *cap = n;
    return TSR_OK;
}

/* The tensor a row names at a layer, its name for messages, or NULL. */
static const tsr_st_tensor *find(loader *l, const tsr_wrow *r, int layer, char *name, size_t cap)
{
    char base[256];
    snprintf(base, sizeof base, r->name, layer);
    snprintf(name, cap, "%s%s", l->t->prefix ? l->t->prefix : "", base);
    const tsr_st_tensor *ten = tsr_st_find(l->st, name);
    if (!ten && r->alt) {
        char alt[300];
        snprintf(base, sizeof base, r->alt, layer);
        snprintf(alt, sizeof alt, "%s%s", l->t->prefix ? l->t->prefix : "", base);
        ten = tsr_st_find(l->st, alt);
    }
    return ten;
}

/* Weights with NaN or Inf would give NaN scores: refused, naming the tensor. */
static tsr_status check_finite(const tsr_st_tensor *t, const float *v, size_t n, tsr_error *err)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, v + i, 4);
        bad += (b & 0x7f800000u) == 0x7f800000u;
    }
    if (!bad)
        return TSR_OK;
    size_t nan = 0, first = n;
    for (size_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, v + i, 4);
        if ((b & 0x7f800000u) == 0x7f800000u) {
            nan += (b & 0x007fffffu) != 0;
            if (first == n)
                first = i;
        }
    }
    return tsr_error_set(err, TSR_ERR_FORMAT,
                         "%s: tensor '%s' holds %zu NaN and %zu infinite values of %zu (the first "
                         "at element %zu); the checkpoint is damaged, or was saved after training "
                         "diverged",
                         t->file, t->name, nan, bad - nan, n, first);
}

/* Weights stored as IEEE half must fit its range (|v| < 65520 rounds to at
 * most 65504); bfloat16 has float32's range. */
static tsr_status check_half_range(const tsr_st_tensor *t, const float *v, size_t n,
                                   tsr_error *err)
{
    size_t bad = 0, first = n;
    float big = 0.0f;
    for (size_t i = 0; i < n; i++)
        if (fabsf(v[i]) >= 65520.0f) {
            if (first == n)
                first = i;
            bad++;
            big = fabsf(v[i]) > big ? fabsf(v[i]) : big;
        }
    if (!bad)
        return TSR_OK;
    return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                         "%s: tensor '%s' holds %zu values beyond float16's range (the first at "
                         "element %zu, the largest %g); load it with the weight type f32 or "
                         "bf16", t->file, t->name, bad, first, (double)big);
}

static tsr_status upload_row(loader *l, const tsr_wrow *r, int layer, const float *src,
                             const int64_t *want, uint64_t numel, tsr_error *err);

static tsr_status load_row(loader *l, const tsr_wrow *r, int layer, tsr_error *err)
{
    int64_t want[4];
    uint64_t numel = want_shape(l->t, r, want);
    int nd = ndims(r);
    char name[300];
    snprintf(name, sizeof name, r->name, layer);
    /* src: the tensor's float32 values, in the stage buffer or, for aligned
     * float32 tensors, read straight from the file mapping (no copy) */
    const float *src = l->stage;
    const tsr_st_tensor *t = l->st ? find(l, r, layer, name, sizeof name) : NULL;
    tsr_status rc = TSR_OK;
    if (!l->st || !t) {
        if (l->st && !(r->flags & TSR_W_OPTIONAL))
            return tsr_error_set(err, TSR_ERR_FORMAT, "%s: missing tensor '%s'", l->where, name);
        if ((rc = grow(&l->stage, &l->stage_cap, (size_t)numel, err)) != TSR_OK)
            return rc;
        src = l->stage; /* grow may have moved it */
        if (!l->st)
            random_fill(name, want, nd, l->stage, l->rng);
        else
            memset(l->stage, 0, sizeof(float) * (size_t)numel);
    } else {
        int ok = t->ndim == nd;
        for (int d = 0; d < nd && ok; d++)
            ok = t->shape[d] == want[d];
        if (!ok) {
            char got[128], exp[128];
            tsr_st_shape_str(t->shape, t->ndim, got, sizeof got);
            tsr_st_shape_str(want, nd, exp, sizeof exp);
            return tsr_error_set(err, TSR_ERR_SHAPE,
                                 "%s: tensor '%s' has shape %s, config expects %s", t->file,
                                 t->name, got, exp);
        }
        if (t->dtype == TSR_DT_F32 && (uintptr_t)t->data % sizeof(float) == 0) {
            src = (const float *)(const void *)t->data;
        } else {
            if ((rc = grow(&l->stage, &l->stage_cap, (size_t)numel, err)) != TSR_OK)
                return rc;
            if ((rc = tsr_st_to_f32(t, l->stage, err)) != TSR_OK)
                return rc;
            tsr_st_release(t);
            src = l->stage;
        }
        if ((rc = check_finite(t, src, (size_t)numel, err)) != TSR_OK)
            return rc;
        if ((r->flags & TSR_W_LINEAR) && l->q->wdt == TSR_WDT_F16 &&
            (rc = check_half_range(t, src, (size_t)numel, err)) != TSR_OK)
            return rc;
    }
    rc = upload_row(l, r, layer, src, want, numel, err);
    if (t && src != l->stage)
        tsr_st_release(t); /* uploaded: the file's pages may go */
    return rc;
}

/* Uploads the values src of row r (shape want) to its slot. */
static tsr_status upload_row(loader *l, const tsr_wrow *r, int layer, const float *src,
                             const int64_t *want, uint64_t numel, tsr_error *err)
{
    int nd = ndims(r);
    tsr_status rc = TSR_OK;
    size_t rows = (size_t)want[0], cols = (size_t)numel / rows;
    if ((r->flags & TSR_W_T) && nd == 2) { /* (K, N) to (N, K), through the stack buffer */
        if ((rc = grow(&l->stack, &l->stack_cap, (size_t)numel, err)) != TSR_OK ||
            (rc = grow(&l->stage, &l->stage_cap, (size_t)numel, err)) != TSR_OK)
            return rc;
        for (size_t i = 0; i < rows; i++)
            for (size_t j = 0; j < cols; j++)
                l->stack[j * rows + i] = src[i * cols + j];
        memcpy(l->stage, l->stack, sizeof(float) * (size_t)numel);
        src = l->stage;
        size_t t = rows;
        rows = cols;
        cols = t;
    }
    const float *data = src;
    if (r->flags & TSR_W_ROW0)
        numel = cols, rows = 1;
    if (r->flags & TSR_W_PLACE) {
        size_t at = r->slice_from ? (size_t)l->t->dim(l->t->cfg, r->slice_from) : 0;
        size_t per = nd > 1 ? cols : (size_t)numel;
        return tsr_buf_write_async(l->q, *slot_of(l->t, r, layer), sizeof(float) * at * per,
                                   src, sizeof(float) * (size_t)numel, err) == TSR_OK
                   ? tsr_queue_finish(l->q, err)
                   : err->code;
    }
    if (r->slice_len) {
        int64_t from, len;
        slice_of(l->t, r, want, &from, &len);
        data = src + (size_t)from * cols;
        rows = (size_t)len;
        numel = rows * cols;
    }
    int parts = r->parts > 1 ? r->parts : 1;
    if (parts > 1) { /* gather the parts on the host, upload with the last */
        if ((rc = grow(&l->stack, &l->stack_cap, (size_t)numel * parts, err)) != TSR_OK)
            return rc;
        memcpy(l->stack + (size_t)r->part * numel, src, sizeof(float) * (size_t)numel);
        if (r->part < parts - 1)
            return TSR_OK;
        data = l->stack;
    }
    cl_mem slot = *slot_of(l->t, r, layer);
    if (r->flags & TSR_W_LINEAR)
        return tsr_linear_weight_write(l->q, slot, data, (int)(rows * parts), (int)cols, err);
    return tsr_buf_write(l->q, slot, data, sizeof(float) * (size_t)numel * parts, err);
}

/* Calls fn for every (row, layer) in loading order: single objects first,
 * then layer by layer so that a layer's parts arrive together. */
static tsr_status walk(const tsr_wtable *t, tsr_status (*fn)(void *, const tsr_wrow *, int,
                                                             tsr_error *),
                       void *user, tsr_error *err)
{
    int max_layers = 0;
    for (int i = 0; i < t->n_rows; i++) {
        const tsr_wobj *o = &t->obj[t->rows[i].obj];
        if (o->stride && o->count > max_layers)
            max_layers = o->count;
    }
    tsr_status rc = TSR_OK;
    for (int i = 0; i < t->n_rows && rc == TSR_OK; i++)
        if (!t->obj[t->rows[i].obj].stride)
            rc = fn(user, &t->rows[i], 0, err);
    for (int l = 0; l < max_layers && rc == TSR_OK; l++)
        for (int i = 0; i < t->n_rows && rc == TSR_OK; i++) {
            const tsr_wobj *o = &t->obj[t->rows[i].obj];
            if (o->stride && l < o->count)
                rc = fn(user, &t->rows[i], l, err);
        }
    return rc;
}

typedef struct {
    const tsr_wtable *t;
    tsr_arena *a;
    int next_part;
    int wdt; /* the loading queue's */
} measure;

static tsr_status measure_row(void *user, const tsr_wrow *r, int layer, tsr_error *err)
{
    measure *m = user;
    int64_t shape[4];
    uint64_t numel = want_shape(m->t, r, shape);
    if (!numel)
        return tsr_error_set(err, TSR_ERR_TOO_LARGE, "tensor '%s': a dimension of the config is "
                             "out of range", r->name);
    if ((r->flags & TSR_W_LINEAR) && (r->flags & (TSR_W_PLACE | TSR_W_ROW0)))
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "weight table: '%s' is a linear layer "
                             "placed in rows", r->name);
    if (r->flags & TSR_W_PLACE) {
        int64_t at = r->slice_from ? m->t->dim(m->t->cfg, r->slice_from) : 0;
        int64_t rows = ndims(r) > 1 ? shape[0] : 1, cap = m->t->dim(m->t->cfg, r->slice_len);
        if (at < 0 || at + rows > cap)
            return tsr_error_set(err, TSR_ERR_INVALID_ARG, "weight table: bad place of '%s'",
                                 r->name);
        if (at == 0)
            tsr_arena_reserve(m->a, slot_of(m->t, r, layer), slot_bytes(m->t, r, numel, shape, m->wdt));
        return TSR_OK;
    }
    if (r->slice_len) {
        int64_t from, len;
        slice_of(m->t, r, shape, &from, &len);
        if (from < 0 || len < 1 || from + len > shape[0])
            return tsr_error_set(err, TSR_ERR_INVALID_ARG, "weight table: bad slice of '%s'",
                                 r->name);
    }
    int part = r->parts > 1 ? r->part : 0;
    if (part != (r->parts > 1 ? m->next_part : 0))
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "weight table: '%s' is out of order",
                             r->name);
    m->next_part = r->parts > 1 && part < r->parts - 1 ? part + 1 : 0;
    if (part == 0)
        tsr_arena_reserve(m->a, slot_of(m->t, r, layer),
                          slot_bytes(m->t, r, numel, shape, m->wdt));
    return TSR_OK;
}

static tsr_status load_fn(void *user, const tsr_wrow *r, int layer, tsr_error *err)
{
    return load_row(user, r, layer, err);
}

tsr_status tsr_wtable_load(const tsr_wtable *t, tsr_queue *q, tsr_arena *a, const tsr_st *st,
                           const char *where, uint64_t *rng, tsr_error *err)
{
    measure m = {t, a, 0, q->wdt};
    tsr_status rc = walk(t, measure_row, &m, err);
    TSR_TRY(rc, tsr_arena_commit(a, err));
    if (rc != TSR_OK)
        return rc;
    loader l = {t, q, st, where, rng, NULL, NULL, 0, 0};
    rc = walk(t, load_fn, &l, err);
    free(l.stage);
    free(l.stack);
    return rc;
}
