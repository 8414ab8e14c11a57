/* Internal: typed reads from a model's config.json with range checks.
 *
 *   tsr_cfg_reader r = {root, "dir/config.json", "text_config", &err, 0};
 *   int dim = tsr_cfg_int(&r, "hidden_size", 512, 1, 16384);
 *   if (r.bad) ... // err names the file, the key and the allowed range
 */
#ifndef TSR_CFG_H
#define TSR_CFG_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "tsr_cl_internal.h"

typedef struct {
    const cJSON *obj;
    const char *path, *section;
    tsr_error *err;
    int bad;
} tsr_cfg_reader;

/* key's integer value in lo..hi, def when absent. */
int tsr_cfg_int(tsr_cfg_reader *r, const char *key, int def, int lo, int hi);
/* key's value in (0, 1), def when absent (layer norm epsilons). */
float tsr_cfg_float(tsr_cfg_reader *r, const char *key, float def);
/* "hidden_act" (or def when absent) as a tsr_act. */
tsr_act tsr_cfg_act(tsr_cfg_reader *r, const char *def);
#endif
