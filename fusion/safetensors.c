/* safetensors reader: mmap, a bounded header, overflow-checked offsets. */
#define _DEFAULT_SOURCE /* madvise */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tsr_cl_internal.h" /* tsr_f16_to_f32 */
#include "tsr_source.h"
#include "tsr_st.h"

#define MAX_HEADER (100u << 20) /* 100 MiB of JSON is far beyond any real model */
#define MAX_FILES 256

typedef struct {
    char *path;               /* for messages */
    const unsigned char *map;
    size_t size;
    tsr_mapping m;
} st_file;

struct tsr_st {
    st_file files[MAX_FILES];
    int nfiles;
    tsr_st_tensor *tensors;
    int ntensors, cap;
};

static int dtype_of(const char *s, tsr_dtype *dt, int *size)
{
    static const struct {
        const char *name;
        tsr_dtype dt;
        int size;
    } tab[] = {{"F32", TSR_DT_F32, 4},   {"F16", TSR_DT_F16, 2},   {"BF16", TSR_DT_BF16, 2},
               {"I64", TSR_DT_I64, 8},   {"I32", TSR_DT_I32, 4},   {"F64", TSR_DT_OTHER, 8},
               {"I16", TSR_DT_OTHER, 2}, {"I8", TSR_DT_OTHER, 1},  {"U8", TSR_DT_OTHER, 1},
               {"BOOL", TSR_DT_OTHER, 1}, {"U16", TSR_DT_OTHER, 2}, {"U32", TSR_DT_OTHER, 4},
               {"U64", TSR_DT_OTHER, 8}, {"F8_E4M3", TSR_DT_OTHER, 1}, {"F8_E5M2", TSR_DT_OTHER, 1}};
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (strcmp(s, tab[i].name) == 0) {
            *dt = tab[i].dt;
            *size = tab[i].size;
            return 1;
        }
    return 0;
}

void tsr_st_shape_str(const int64_t *shape, int ndim, char *buf, size_t cap)
{
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
}

/* Appends a tensor named name (copied). */
static tsr_status push_tensor(tsr_st *st, tsr_st_tensor *t, const char *name, tsr_error *err)
{
    t->name = strdup(name);
    if (st->ntensors == st->cap) {
        int nc = st->cap ? st->cap * 2 : 256;
        tsr_st_tensor *nt = t->name ? realloc(st->tensors, sizeof *nt * (size_t)nc) : NULL;
        if (!nt) {
            free(t->name);
            return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
        }
        st->tensors = nt;
        st->cap = nc;
    }
    if (!t->name)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    st->tensors[st->ntensors++] = *t;
    return TSR_OK;
}

static tsr_status parse_header(tsr_st *st, st_file *f, tsr_error *err)
{
    if (f->size < 8)
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: file is %zu bytes, too short for a "
                             "safetensors header", f->path, f->size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | f->map[i];
    if (hlen > MAX_HEADER || hlen > f->size - 8)
        return tsr_error_set(err, TSR_ERR_FORMAT,
                             "%s: bad header length %llu (file is %zu bytes; the limit is %u)",
                             f->path, (unsigned long long)hlen, f->size, MAX_HEADER);
    const unsigned char *data = f->map + 8 + hlen;
    uint64_t dsize = f->size - 8 - hlen;
    cJSON *root = cJSON_ParseWithLength((const char *)f->map + 8, (size_t)hlen);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: header is not a JSON object", f->path);
    }
    tsr_status rc = TSR_OK;
    for (cJSON *it = root->child; it; it = it->next) {
        if (strcmp(it->string, "__metadata__") == 0)
            continue;
        cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
        cJSON *sh = cJSON_GetObjectItemCaseSensitive(it, "shape");
        cJSON *off = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
        tsr_st_tensor t = {0};
        int esize = 0;
        if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(off) ||
            cJSON_GetArraySize(off) != 2) {
            rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s: tensor '%s' has a malformed entry",
                               f->path, it->string);
            break;
        }
        if (!dtype_of(dt->valuestring, &t.dtype, &esize)) {
            rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s: tensor '%s' has unknown dtype '%s'",
                               f->path, it->string, dt->valuestring);
            break;
        }
        t.ndim = cJSON_GetArraySize(sh);
        if (t.ndim > TSR_ST_MAX_DIMS) {
            rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s: tensor '%s' has %d dimensions",
                               f->path, it->string, t.ndim);
            break;
        }
        uint64_t numel = 1;
        int bad = 0;
        for (int d = 0; d < t.ndim; d++) {
            cJSON *v = cJSON_GetArrayItem(sh, d);
            double x = cJSON_IsNumber(v) ? v->valuedouble : -1;
            if (x < 0 || x > 9.0e15 || x != (double)(int64_t)x) {
                bad = 1;
                break;
            }
            t.shape[d] = (int64_t)x;
            if (t.shape[d] && numel > UINT64_MAX / (uint64_t)t.shape[d] / 8) {
                bad = 1;
                break;
            }
            numel *= (uint64_t)t.shape[d];
        }
        double b0 = cJSON_IsNumber(cJSON_GetArrayItem(off, 0)) ? cJSON_GetArrayItem(off, 0)->valuedouble : -1;
        double b1 = cJSON_IsNumber(cJSON_GetArrayItem(off, 1)) ? cJSON_GetArrayItem(off, 1)->valuedouble : -1;
        if (bad || b0 < 0 || b1 < b0 || b1 > (double)dsize) {
            rc = tsr_error_set(err, TSR_ERR_FORMAT,
                               "%s: tensor '%s' has out-of-range offsets [%.0f, %.0f] or shape "
                               "(data section is %llu bytes)",
                               f->path, it->string, b0, b1, (unsigned long long)dsize);
            break;
        }
        t.numel = numel;
        t.nbytes = (uint64_t)b1 - (uint64_t)b0;
        if (t.nbytes != numel * (uint64_t)esize) {
            char s[128];
            tsr_st_shape_str(t.shape, t.ndim, s, sizeof s);
            rc = tsr_error_set(err, TSR_ERR_FORMAT,
                               "%s: tensor '%s' spans %llu bytes, but %s %s needs %llu", f->path,
                               it->string, (unsigned long long)t.nbytes, dt->valuestring, s,
                               (unsigned long long)(numel * (uint64_t)esize));
            break;
        }
        t.data = data + (uint64_t)b0;
        t.file = f->path;
        t.mapped = f->m.mapped;
        if ((rc = push_tensor(st, &t, it->string, err)) != TSR_OK)
            break;
    }
    cJSON_Delete(root);
    return rc;
}

/* Maps name of src as the next file of st. */
static tsr_status map_file(tsr_st *st, const tsr_source *src, const char *name, st_file **out,
                           tsr_error *err)
{
    char path[4200];
    tsr_src_path(src, name, path, sizeof path);
    if (st->nfiles == MAX_FILES)
        return tsr_error_set(err, TSR_ERR_TOO_LARGE, "%s: more than %d shards", path, MAX_FILES);
    st_file *f = &st->files[st->nfiles];
    tsr_status rc = tsr_src_map(src, name, &f->m, err);
    if (rc != TSR_OK)
        return rc;
    f->map = f->m.data;
    f->size = f->m.size;
    f->path = strdup(path);
    st->nfiles++;
    if (!f->path)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    *out = f;
    return TSR_OK;
}

static tsr_status add_file(tsr_st *st, const tsr_source *src, const char *name, tsr_error *err)
{
    char path[4200];
    tsr_src_path(src, name, path, sizeof path);
    for (int i = 0; i < st->nfiles; i++)
        if (strcmp(st->files[i].path, path) == 0)
            return TSR_OK;
    st_file *f = NULL;
    tsr_status rc = map_file(st, src, name, &f, err);
    return rc == TSR_OK ? parse_header(st, f, err) : rc;
}

/* Splits path into a directory source and the file's name. */
static const char *file_source(const char *path, tsr_source *src, char *dir, size_t cap)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(dir, cap, ".");
        tsr_source_dir(src, dir);
        return path;
    }
    snprintf(dir, cap, "%.*s", (int)(slash - path), path);
    tsr_source_dir(src, slash == path ? "/" : dir);
    if (slash == path)
        snprintf(src->label, sizeof src->label, "%s", "");
    return slash + 1;
}

tsr_status tsr_st_open_file(const char *path, tsr_st **out, tsr_error *err)
{
    *out = NULL;
    tsr_st *st = calloc(1, sizeof *st);
    if (!st)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    tsr_source src;
    char dir[4096];
    const char *name = file_source(path, &src, dir, sizeof dir);
    tsr_status rc = add_file(st, &src, name, err);
    if (rc != TSR_OK) {
        tsr_st_close(st);
        return rc;
    }
    *out = st;
    return TSR_OK;
}

tsr_status tsr_st_open_dir(const char *dir, tsr_st **out, tsr_error *err)
{
    tsr_source src;
    tsr_source_dir(&src, dir);
    return tsr_st_open_source(&src, out, err);
}

tsr_status tsr_st_open_source(const tsr_source *src, tsr_st **out, tsr_error *err)
{
    *out = NULL;
    char path[4200];
    tsr_src_path(src, "model.safetensors.index.json", path, sizeof path);
    /* one file: transformers' name, else open_clip's (a directory with both
     * layouts, as LAION's, has a config.json and loads the first) */
    const char *single = tsr_src_exists(src, "model.safetensors") ? "model.safetensors"
                         : !tsr_src_exists(src, "model.safetensors.index.json") &&
                                 tsr_src_exists(src, "open_clip_model.safetensors")
                             ? "open_clip_model.safetensors"
                             : NULL;
    if (single) {
        tsr_st *st = calloc(1, sizeof *st);
        if (!st)
            return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
        tsr_status rc = add_file(st, src, single, err);
        if (rc != TSR_OK) {
            tsr_st_close(st);
            return rc;
        }
        *out = st;
        return TSR_OK;
    }
    if (!tsr_src_exists(src, "model.safetensors.index.json")) {
        char bin[4200];
        tsr_src_path(src, "pytorch_model.bin", bin, sizeof bin);
        if (tsr_src_exists(src, "open_clip_pytorch_model.bin")) {
            tsr_src_path(src, "open_clip_pytorch_model.bin", bin, sizeof bin);
            return tsr_error_set(
                err, TSR_ERR_UNSUPPORTED,
                "%s: PyTorch pickle checkpoints are refused, because loading a pickle can run "
                "arbitrary code. Convert it once with Python: import torch, safetensors.torch; "
                "safetensors.torch.save_file(torch.load(F, weights_only=True), "
                "DIR + '/open_clip_model.safetensors')",
                bin);
        }
        if (tsr_src_exists(src, "pytorch_model.bin"))
            return tsr_error_set(
                err, TSR_ERR_UNSUPPORTED,
                "%s: PyTorch pickle checkpoints are refused, because loading a pickle can run "
                "arbitrary code. Convert it once with Python: "
                "model = transformers.AutoModel.from_pretrained(DIR); "
                "model.save_pretrained(DIR, safe_serialization=True)",
                bin);
        return tsr_error_set(err, TSR_ERR_IO, "%s: no model.safetensors (or sharded index) found",
                             src->label);
    }
    cJSON *root = tsr_src_json(src, "model.safetensors.index.json", 16u << 20, err);
    if (!root)
        return err ? err->code : TSR_ERR_FORMAT;
    cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(map)) {
        cJSON_Delete(root);
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: no \"weight_map\" object", path);
    }
    tsr_st *st = calloc(1, sizeof *st);
    tsr_status rc = st ? TSR_OK : tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    for (cJSON *it = map->child; it && rc == TSR_OK; it = it->next) {
        if (!cJSON_IsString(it) || strchr(it->valuestring, '/') || it->valuestring[0] == '.') {
            rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s: bad shard name for '%s'", path,
                               it->string);
            break;
        }
        rc = add_file(st, src, it->valuestring, err);
    }
    cJSON_Delete(root);
    if (rc != TSR_OK) {
        tsr_st_close(st);
        return rc;
    }
    *out = st;
    return TSR_OK;
}

void tsr_st_close(tsr_st *st)
{
    if (!st)
        return;
    for (int i = 0; i < st->ntensors; i++)
        free(st->tensors[i].name);
    free(st->tensors);
    for (int i = 0; i < st->nfiles; i++) {
        tsr_src_unmap(&st->files[i].m);
        free(st->files[i].path);
    }
    free(st);
}

const tsr_st_tensor *tsr_st_find(const tsr_st *st, const char *name)
{
    for (int i = 0; i < st->ntensors; i++)
        if (strcmp(st->tensors[i].name, name) == 0)
            return &st->tensors[i];
    return NULL;
}

int tsr_st_count(const tsr_st *st) { return st->ntensors; }

const tsr_st_tensor *tsr_st_get(const tsr_st *st, int i)
{
    return i >= 0 && i < st->ntensors ? &st->tensors[i] : NULL;
}

void tsr_st_release(const tsr_st_tensor *t)
{
    if (!t->mapped || t->nbytes == 0)
        return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), a = (uintptr_t)t->data,
              b = a + (uintptr_t)t->nbytes;
    a = (a + page - 1) / page * page; /* whole pages only: neighbours may share the ends */
    b = b / page * page;
    if (b > a)
        madvise((void *)a, b - a, MADV_DONTNEED);
}

tsr_status tsr_st_to_f32(const tsr_st_tensor *t, float *dst, tsr_error *err)
{
    const unsigned char *p = t->data;
    switch (t->dtype) {
    case TSR_DT_F32:
        memcpy(dst, p, t->numel * 4);
        return TSR_OK;
    case TSR_DT_F16:
        for (uint64_t i = 0; i < t->numel; i++)
            dst[i] = tsr_f16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
        return TSR_OK;
    case TSR_DT_BF16:
        for (uint64_t i = 0; i < t->numel; i++) {
            uint32_t bits = (uint32_t)(p[2 * i] | (p[2 * i + 1] << 8)) << 16;
            memcpy(&dst[i], &bits, 4);
        }
        return TSR_OK;
    case TSR_DT_I8: /* CTranslate2 int8: q[r, c] / scale[r] */
        if (t->scale && t->ndim >= 1 && t->scale->dtype == TSR_DT_F32 &&
            t->scale->numel == (uint64_t)t->shape[0] && t->shape[0] > 0) {
            uint64_t per = t->numel / (uint64_t)t->shape[0];
            for (uint64_t i = 0; i < t->numel; i++) {
                float sc;
                memcpy(&sc, t->scale->data + 4 * (i / per), 4);
                dst[i] = (float)(signed char)p[i] / sc;
            }
            return TSR_OK;
        }
        break; /* int8 without a per-row scale */
    default:
        break;
    }
    return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                         "%s: tensor '%s' is not a floating-point tensor (F32, F16 or BF16, or "
                         "int8 with a per-row scale)",
                         t->file, t->name);
}

tsr_status tsr_st_load(const tsr_st *st, const char *where, const char *name, int ndim,
                       const int64_t *shape, float **buf, size_t *cap, tsr_error *err)
{
    const tsr_st_tensor *t = tsr_st_find(st, name);
    if (!t)
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: missing tensor '%s'", where, name);
    int ok = t->ndim == ndim;
    for (int d = 0; ok && d < ndim; d++)
        ok = t->shape[d] == shape[d];
    if (!ok) {
        char got[128], exp[128];
        tsr_st_shape_str(t->shape, t->ndim, got, sizeof got);
        tsr_st_shape_str(shape, ndim, exp, sizeof exp);
        return tsr_error_set(err, TSR_ERR_SHAPE, "%s: tensor '%s' has shape %s, config expects %s",
                             t->file, name, got, exp);
    }
    if (t->numel > *cap) {
        float *nb = realloc(*buf, sizeof(float) * t->numel);
        if (!nb)
            return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory loading '%s'", name);
        *buf = nb;
        *cap = t->numel;
    }
    return tsr_st_to_f32(t, *buf, err);
}

/* ---- CTranslate2 model.bin ----
 * u32 version (6), string spec name, u32 spec revision, u32 variable count;
 * per variable: string name, u8 rank, u32 dims[rank], u8 dtype (0 f32, 1 i8,
 * 2 i16, 3 i32, 4 f16, 5 bf16), u32 byte count, the bytes; then u32 alias
 * count and (alias, target) string pairs. Strings are u16 length (including a
 * final NUL) followed by the bytes. Little-endian throughout. */

typedef struct {
    const unsigned char *p, *end;
    const char *path;
    tsr_error *err;
    int bad;
} ct2_reader;

static int ct2_need(ct2_reader *r, size_t n, const char *what)
{
    if (r->bad)
        return 0;
    if ((size_t)(r->end - r->p) < n) {
        tsr_error_set(r->err, TSR_ERR_FORMAT, "%s: truncated while reading %s", r->path, what);
        r->bad = 1;
        return 0;
    }
    return 1;
}

static uint32_t ct2_u32(ct2_reader *r, const char *what)
{
    if (!ct2_need(r, 4, what))
        return 0;
    uint32_t v = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 |
                 (uint32_t)r->p[3] << 24;
    r->p += 4;
    return v;
}

static int ct2_u8(ct2_reader *r, const char *what)
{
    if (!ct2_need(r, 1, what))
        return 0;
    return *r->p++;
}

/* Copies a string into buf (cap bytes); returns 0 on error. */
static int ct2_str(ct2_reader *r, char *buf, size_t cap, const char *what)
{
    if (!ct2_need(r, 2, what))
        return 0;
    size_t n = (size_t)r->p[0] | (size_t)r->p[1] << 8;
    r->p += 2;
    if (!ct2_need(r, n, what))
        return 0;
    if (n == 0 || n > cap || r->p[n - 1] != 0 || memchr(r->p, 0, n - 1)) {
        tsr_error_set(r->err, TSR_ERR_FORMAT, "%s: malformed %s (length %zu)", r->path, what, n);
        r->bad = 1;
        return 0;
    }
    memcpy(buf, r->p, n);
    r->p += n;
    return 1;
}

tsr_status tsr_st_open_ct2(const char *path, tsr_st **out, tsr_error *err)
{
    tsr_source src;
    char dir[4096];
    const char *name = file_source(path, &src, dir, sizeof dir);
    return tsr_st_open_ct2_source(&src, name, out, err);
}

tsr_status tsr_st_open_ct2_source(const tsr_source *src, const char *file, tsr_st **out,
                                  tsr_error *err)
{
    *out = NULL;
    tsr_st *st = calloc(1, sizeof *st);
    if (!st)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    st_file *f = NULL;
    tsr_status rc = map_file(st, src, file, &f, err);
    if (rc != TSR_OK) {
        tsr_st_close(st);
        return rc;
    }
    const char *path = f->path;
    ct2_reader r = {f->map, f->map + f->size, f->path, err, 0};
    char name[1024];
    uint32_t version = ct2_u32(&r, "the format version");
    if (!r.bad && version != 6) {
        rc = tsr_error_set(err, version > 0 && version < 6 ? TSR_ERR_UNSUPPORTED : TSR_ERR_FORMAT,
                           "%s: not a CTranslate2 model.bin of format version 6 (found %u)", path,
                           version);
        r.bad = 2;
    }
    ct2_str(&r, name, sizeof name, "the model spec name");
    ct2_u32(&r, "the spec revision");
    uint32_t nvars = ct2_u32(&r, "the variable count");
    if (!r.bad && nvars > 1000000) {
        rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s: %u variables is not plausible", path, nvars);
        r.bad = 2;
    }
    static const struct {
        tsr_dtype dt;
        int size;
        const char *name;
    } types[6] = {{TSR_DT_F32, 4, "float32"}, {TSR_DT_I8, 1, "int8"}, {TSR_DT_I16, 2, "int16"},
                  {TSR_DT_I32, 4, "int32"},   {TSR_DT_F16, 2, "float16"}, {TSR_DT_BF16, 2, "bfloat16"}};
    for (uint32_t v = 0; v < nvars && !r.bad; v++) {
        tsr_st_tensor t = {0};
        if (!ct2_str(&r, name, sizeof name, "a variable name"))
            break;
        t.ndim = ct2_u8(&r, "a variable rank");
        if (!r.bad && t.ndim > TSR_ST_MAX_DIMS) {
            rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s: variable '%s' has %d dimensions", path,
                               name, t.ndim);
            r.bad = 2;
            break;
        }
        uint64_t numel = 1;
        for (int d = 0; d < t.ndim && !r.bad; d++) {
            t.shape[d] = ct2_u32(&r, "a variable shape");
            if (t.shape[d] && numel > (UINT64_MAX >> 8) / (uint64_t)t.shape[d]) {
                rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s: variable '%s' is too large", path,
                                   name);
                r.bad = 2;
            }
            numel *= (uint64_t)t.shape[d];
        }
        int type = ct2_u8(&r, "a variable dtype");
        uint32_t nbytes = ct2_u32(&r, "a variable size");
        if (r.bad)
            break;
        if (type > 5) {
            rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s: variable '%s' has unknown dtype %d", path,
                               name, type);
            r.bad = 2;
            break;
        }
        if ((uint64_t)nbytes != numel * (uint64_t)types[type].size) {
            char s[128];
            tsr_st_shape_str(t.shape, t.ndim, s, sizeof s);
            rc = tsr_error_set(err, TSR_ERR_FORMAT,
                               "%s: variable '%s' holds %u bytes, but %s %s needs %llu", path, name,
                               nbytes, types[type].name, s,
                               (unsigned long long)(numel * (uint64_t)types[type].size));
            r.bad = 2;
            break;
        }
        if (!ct2_need(&r, nbytes, "variable data"))
            break;
        t.dtype = types[type].dt;
        t.numel = numel;
        t.nbytes = nbytes;
        t.data = r.p;
        t.file = f->path;
        t.mapped = f->m.mapped;
        r.p += nbytes;
        if ((rc = push_tensor(st, &t, name, err)) != TSR_OK)
            r.bad = 2;
    }
    uint32_t naliases = ct2_u32(&r, "the alias count");
    int nreal = st->ntensors;
    int *target = NULL;
    if (!r.bad && naliases > 0 && naliases <= 1000000 &&
        !(target = malloc(sizeof(int) * naliases))) {
        rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
        r.bad = 2;
    }
    for (uint32_t a = 0; a < naliases && !r.bad; a++) {
        char tname[1024];
        if (!ct2_str(&r, name, sizeof name, "an alias") ||
            !ct2_str(&r, tname, sizeof tname, "an alias target"))
            break;
        const tsr_st_tensor *t = tsr_st_find(st, tname);
        if (!t || t - st->tensors >= nreal) {
            rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s: alias '%s' names unknown variable '%s'",
                               path, name, tname);
            r.bad = 2;
            break;
        }
        target[a] = (int)(t - st->tensors);
        tsr_st_tensor copy = *t;
        if ((rc = push_tensor(st, &copy, name, err)) != TSR_OK)
            r.bad = 2;
    }
    if (r.bad == 1)
        rc = err ? err->code : TSR_ERR_FORMAT;
    /* int8 weights carry a per-row "<name>_scale"; aliases share their target's */
    for (int i = 0; i < nreal && rc == TSR_OK; i++)
        if (st->tensors[i].dtype == TSR_DT_I8) {
            char sn[1100];
            snprintf(sn, sizeof sn, "%s_scale", st->tensors[i].name);
            st->tensors[i].scale = tsr_st_find(st, sn);
        }
    for (int i = nreal; i < st->ntensors && rc == TSR_OK && target; i++)
        st->tensors[i].scale = st->tensors[target[i - nreal]].scale;
    free(target);
    if (rc != TSR_OK) {
        tsr_st_close(st);
        return rc;
    }
    *out = st;
    return TSR_OK;
}

tsr_status tsr_st_scalar_int(const tsr_st_tensor *t, long *v, tsr_error *err)
{
    if (t->numel != 1)
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: '%s' is not a scalar", t->file, t->name);
    const unsigned char *p = t->data;
    switch (t->dtype) {
    case TSR_DT_I8: *v = (signed char)p[0]; return TSR_OK;
    case TSR_DT_I16: *v = (int16_t)(p[0] | p[1] << 8); return TSR_OK;
    case TSR_DT_I32: *v = (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24); return TSR_OK;
    default: return tsr_error_set(err, TSR_ERR_FORMAT, "%s: '%s' is not an integer", t->file, t->name);
    }
}
