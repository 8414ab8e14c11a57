/* Reading model config files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsr_cfg.h"


int tsr_cfg_int(tsr_cfg_reader *r, const char *key, int def, int lo, int hi)
{
    if (r->bad)
        return def;
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(r->obj, key);
    if (!it)
        return def;
    if (!cJSON_IsNumber(it) || it->valuedouble != (double)(long long)it->valuedouble ||
        it->valuedouble < lo || it->valuedouble > hi) {
        tsr_error_set(r->err, TSR_ERR_FORMAT, "%s: %s.%s must be an integer in %d..%d", r->path,
                      r->section, key, lo, hi);
        r->bad = 1;
        return def;
    }
    return (int)it->valuedouble;
}

float tsr_cfg_float(tsr_cfg_reader *r, const char *key, float def)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(r->obj, key);
    if (r->bad || !it)
        return def;
    if (!cJSON_IsNumber(it) || !(it->valuedouble > 0 && it->valuedouble < 1)) {
        tsr_error_set(r->err, TSR_ERR_FORMAT, "%s: %s.%s must be a number in (0, 1)", r->path,
                      r->section, key);
        r->bad = 1;
        return def;
    }
    return (float)it->valuedouble;
}

tsr_act tsr_cfg_act(tsr_cfg_reader *r, const char *def)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(r->obj, "hidden_act");
    const char *s = cJSON_IsString(it) ? it->valuestring : def;
    if (strcmp(s, "quick_gelu") == 0)
        return TSR_ACT_QUICK_GELU;
    if (strcmp(s, "gelu") == 0)
        return TSR_ACT_GELU;
    if (strcmp(s, "gelu_new") == 0 || strcmp(s, "gelu_pytorch_tanh") == 0)
        return TSR_ACT_GELU_TANH;
    if (!r->bad)
        tsr_error_set(r->err, TSR_ERR_UNSUPPORTED, "%s: %s.hidden_act \"%s\" is not supported",
                      r->path, r->section, s);
    r->bad = 1;
    return TSR_ACT_NONE;
}

