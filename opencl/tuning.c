/* The tuning file of a device: where it lives, reading it (any problem is
 * reported, never fatal) and writing the result of `tessera tune`. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsr_cl_internal.h"

#define TUNING_FORMAT "tessera-gemm-tuning"
#define TUNING_VERSION 1

void tsr_tuning_path(const tsr_ctx *ctx, char *out, size_t cap)
{
    uint64_t h = 1469598103934665603ULL;
    h = tsr_fnv1a(h, ctx->info.name, strlen(ctx->info.name) + 1);
    h = tsr_fnv1a(h, ctx->info.platform, strlen(ctx->info.platform) + 1);
    h = tsr_fnv1a(h, ctx->info.driver, strlen(ctx->info.driver) + 1);
    if (!ctx->cache_dir[0]) {
        snprintf(out, cap, "%s", "");
        return;
    }
    snprintf(out, cap, "%s/tuning/%016llx.json", ctx->cache_dir, (unsigned long long)h);
}

/* An Xgemm parameter string: only NAME=NUMBER words, at most 400 bytes. */
static int xgemm_ok(const char *s)
{
    if (strlen(s) >= 400)
        return 0;
    for (const char *p = s; *p;) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        const char *q = p;
        while ((*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9' && q > p) || *q == '_')
            q++;
        if (q == p || *q != '=')
            return 0;
        q++;
        if (*q < '0' || *q > '9')
            return 0;
        while (*q >= '0' && *q <= '9')
            q++;
        if (*q && *q != ' ')
            return 0;
        p = q;
    }
    return 1;
}

int tsr_tuning_read(const char *path, const tsr_device_info *info, tsr_gemm_choice *c, char *why,
                    size_t cap)
{
    size_t len = 0;
    FILE *probe = fopen(path, "rb");
    if (!probe)
        return 0;
    fclose(probe);
    tsr_error e = {0};
    char *text = (char *)tsr_read_file(path, 1 << 16, &len, &e);
    if (!text || len == 0) {
        free(text);
        snprintf(why, cap, "cannot be read, or is empty or over 64 KiB");
        return -1;
    }
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        snprintf(why, cap, "not valid JSON");
        return -1;
    }
    int ok = 0;
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(j, "format");
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(j, "version");
    const cJSON *dev = cJSON_GetObjectItemCaseSensitive(j, "device");
    const cJSON *gemm = cJSON_GetObjectItemCaseSensitive(j, "gemm");
    const cJSON *strips = cJSON_GetObjectItemCaseSensitive(j, "own_strips");
    const cJSON *xg = cJSON_GetObjectItemCaseSensitive(j, "xgemm");
    const cJSON *mi = cJSON_GetObjectItemCaseSensitive(j, "min_indirect");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, TUNING_FORMAT) != 0)
        snprintf(why, cap, "\"format\" is not \"%s\"", TUNING_FORMAT);
    else if (!cJSON_IsNumber(ver) || ver->valuedouble != TUNING_VERSION)
        snprintf(why, cap, "\"version\" is not %d", TUNING_VERSION);
    else if (!cJSON_IsString(dev) || strcmp(dev->valuestring, info->name) != 0)
        snprintf(why, cap, "it was made for another device");
    else if (!cJSON_IsString(gemm) ||
             (strcmp(gemm->valuestring, "own") != 0 && strcmp(gemm->valuestring, "clblast") != 0))
        snprintf(why, cap, "\"gemm\" is not \"own\" or \"clblast\"");
    else if (!cJSON_IsNumber(strips) ||
             (strips->valuedouble != 1 && strips->valuedouble != 2 && strips->valuedouble != 4 &&
              strips->valuedouble != 8))
        snprintf(why, cap, "\"own_strips\" is not 1, 2, 4 or 8");
    else if (!cJSON_IsString(xg) || !xgemm_ok(xg->valuestring))
        snprintf(why, cap, "\"xgemm\" is not a list of NAME=NUMBER");
    else if (!cJSON_IsNumber(mi) || mi->valuedouble < -1 ||
             mi->valuedouble > (double)TSR_ALWAYS_DIRECT ||
             mi->valuedouble != floor(mi->valuedouble))
        snprintf(why, cap, "\"min_indirect\" is not an integer from -1 to 2^40");
    else {
        c->own_gemm = strcmp(gemm->valuestring, "own") == 0;
        c->strips = (int)strips->valuedouble;
        snprintf(c->xgemm, sizeof c->xgemm, "%s", xg->valuestring);
        c->min_indirect = (long)mi->valuedouble;
        ok = 1;
    }
    cJSON_Delete(j);
    return ok ? 1 : -1;
}

tsr_status tsr_tune_save(tsr_ctx *ctx, tsr_tune_result *r, tsr_error *err)
{
    if (r->best < 0 || r->best >= r->n)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "no tuning result to save");
    tsr_tuning_path(ctx, r->path, sizeof r->path);
    if (!r->path[0])
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "the context has no cache directory to keep the tuning file in");
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    cJSON_AddStringToObject(o, "format", TUNING_FORMAT);
    cJSON_AddNumberToObject(o, "version", TUNING_VERSION);
    cJSON_AddStringToObject(o, "device", ctx->info.name);
    cJSON_AddStringToObject(o, "platform", ctx->info.platform);
    cJSON_AddStringToObject(o, "driver", ctx->info.driver);
    cJSON_AddStringToObject(o, "gemm", r->own_gemm ? "own" : "clblast");
    cJSON_AddNumberToObject(o, "own_strips", r->strips);
    cJSON_AddStringToObject(o, "xgemm", r->xgemm);
    cJSON_AddNumberToObject(o, "min_indirect", (double)r->min_indirect);
    cJSON_AddNumberToObject(o, "score_seconds", r->cand[r->best].score);
    if (r->baseline >= 0)
        cJSON_AddNumberToObject(o, "untuned_score_seconds", r->cand[r->baseline].score);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    if (!text)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", r->path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    tsr_mkdirs(dir);
    int ok = tsr_write_atomic(r->path, text, strlen(text));
    free(text);
    return ok ? TSR_OK
              : tsr_error_set(err, TSR_ERR_IO, "%s: cannot write the tuning file", r->path);
}
