/* Test helper: writes safetensors files (whole or as shards) from tensors
 * read with tsr_st, and crafted files with any header. */
#ifndef TSR_ST_WRITE_H
#define TSR_ST_WRITE_H

#include "testutil.h"
#include "tsr_st.h"

static const char *dtype_name(tsr_dtype d)
{
    return d == TSR_DT_F32 ? "F32" : d == TSR_DT_F16 ? "F16" : d == TSR_DT_BF16 ? "BF16"
           : d == TSR_DT_I64 ? "I64" : "I32";
}

/* Writes a raw file: 8-byte length (hlen_override if nonzero), header, data. */
static void write_raw_st(const char *path, const char *header, uint64_t hlen_override,
                         const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    uint64_t hl = hlen_override ? hlen_override : strlen(header);
    unsigned char le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)(hl >> (8 * i));
    fwrite(le, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    if (n)
        fwrite(data, 1, n, f);
    fclose(f);
}

/* Writes the tensors of st whose index i satisfies i % parts == part. */
TSR_UNUSED static void write_shard(const char *path, const tsr_st *st, int part, int parts)
{
    cJSON *h = cJSON_CreateObject();
    uint64_t off = 0;
    for (int i = 0; i < tsr_st_count(st); i++) {
        const tsr_st_tensor *t = tsr_st_get(st, i);
        if (i % parts != part)
            continue;
        cJSON *e = cJSON_AddObjectToObject(h, t->name);
        cJSON_AddStringToObject(e, "dtype", dtype_name(t->dtype));
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < t->ndim; d++)
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[d]));
        cJSON *o = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)(off + t->nbytes)));
        off += t->nbytes;
    }
    char *js = cJSON_PrintUnformatted(h);
    size_t len = strlen(js), padded = (len + 7) / 8 * 8;
    char *hdr = calloc(1, padded + 1);
    memcpy(hdr, js, len);
    memset(hdr + len, ' ', padded - len);
    unsigned char *data = malloc(off ? off : 1);
    off = 0;
    for (int i = 0; i < tsr_st_count(st); i++) {
        const tsr_st_tensor *t = tsr_st_get(st, i);
        if (i % parts != part)
            continue;
        memcpy(data + off, t->data, t->nbytes);
        off += t->nbytes;
    }
    write_raw_st(path, hdr, 0, data, off);
    free(js);
    free(hdr);
    free(data);
    cJSON_Delete(h);
}

#endif
