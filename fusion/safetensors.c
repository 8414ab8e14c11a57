/* safetensors reader: mmap, a bounded header, overflow-checked offsets. */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tsr_st.h"

#define MAX_HEADER (100u << 20) /* 100 MiB of JSON is far beyond any real model */
#define MAX_FILES 256

typedef struct {
    char *path;
    unsigned char *map;
    size_t size;
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
        t.name = strdup(it->string);
        if (st->ntensors == st->cap) {
            int nc = st->cap ? st->cap * 2 : 256;
            tsr_st_tensor *nt = realloc(st->tensors, sizeof *nt * (size_t)nc);
            if (!nt || !t.name) {
                free(t.name);
                rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
                break;
            }
            st->tensors = nt;
            st->cap = nc;
        }
        st->tensors[st->ntensors++] = t;
    }
    cJSON_Delete(root);
    return rc;
}

static tsr_status add_file(tsr_st *st, const char *path, tsr_error *err)
{
    for (int i = 0; i < st->nfiles; i++)
        if (strcmp(st->files[i].path, path) == 0)
            return TSR_OK;
    if (st->nfiles == MAX_FILES)
        return tsr_error_set(err, TSR_ERR_TOO_LARGE, "%s: more than %d shards", path, MAX_FILES);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return tsr_error_set(err, TSR_ERR_IO, "%s: cannot open", path);
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return tsr_error_set(err, TSR_ERR_IO, "%s: not a regular file", path);
    }
    st_file *f = &st->files[st->nfiles];
    f->size = (size_t)sb.st_size;
    f->map = NULL;
    if (f->size > 0) {
        void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            close(fd);
            return tsr_error_set(err, TSR_ERR_IO, "%s: mmap failed", path);
        }
        f->map = m;
    }
    close(fd);
    f->path = strdup(path);
    st->nfiles++;
    if (!f->path)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    return parse_header(st, f, err);
}

tsr_status tsr_st_open_file(const char *path, tsr_st **out, tsr_error *err)
{
    *out = NULL;
    tsr_st *st = calloc(1, sizeof *st);
    if (!st)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    tsr_status rc = add_file(st, path, err);
    if (rc != TSR_OK) {
        tsr_st_close(st);
        return rc;
    }
    *out = st;
    return TSR_OK;
}

static int exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

tsr_status tsr_st_open_dir(const char *dir, tsr_st **out, tsr_error *err)
{
    char path[4096];
    *out = NULL;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (exists(path))
        return tsr_st_open_file(path, out, err);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    if (!exists(path)) {
        char bin[4096];
        snprintf(bin, sizeof bin, "%s/pytorch_model.bin", dir);
        if (exists(bin))
            return tsr_error_set(
                err, TSR_ERR_UNSUPPORTED,
                "%s: PyTorch pickle checkpoints are refused, because loading a pickle can run "
                "arbitrary code. Convert it once with Python: "
                "model = transformers.AutoModel.from_pretrained(DIR); "
                "model.save_pretrained(DIR, safe_serialization=True)",
                bin);
        return tsr_error_set(err, TSR_ERR_IO, "%s: no model.safetensors (or sharded index) found",
                             dir);
    }
    FILE *f = fopen(path, "rb");
    if (!f)
        return tsr_error_set(err, TSR_ERR_IO, "%s: cannot open", path);
    char *buf = malloc(1 << 24);
    size_t n = buf ? fread(buf, 1, (1 << 24) - 1, f) : 0;
    fclose(f);
    if (!buf)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    buf[n] = 0;
    cJSON *root = cJSON_Parse(buf);
    free(buf);
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
        char shard[4096];
        snprintf(shard, sizeof shard, "%s/%s", dir, it->valuestring);
        rc = add_file(st, shard, err);
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
        if (st->files[i].map)
            munmap(st->files[i].map, st->files[i].size);
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

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) {
                man <<= 1;
                exp--;
            }
            bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
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
            dst[i] = half_to_float((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
        return TSR_OK;
    case TSR_DT_BF16:
        for (uint64_t i = 0; i < t->numel; i++) {
            uint32_t bits = (uint32_t)(p[2 * i] | (p[2 * i + 1] << 8)) << 16;
            memcpy(&dst[i], &bits, 4);
        }
        return TSR_OK;
    default:
        return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                             "%s: tensor '%s' is not a floating-point tensor (F32, F16 or BF16)",
                             t->file, t->name);
    }
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
