/* Fuzz target: the CTranslate2 model.bin reader and its dtype conversion. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "tsr_st.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/tessera-fuzz-ct2-%ld", (long)getpid());
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    tsr_st *st = NULL;
    tsr_error err = {0};
    if (tsr_st_open_ct2(path, &st, &err) == TSR_OK) {
        for (int i = 0; i < tsr_st_count(st); i++) {
            const tsr_st_tensor *t = tsr_st_get(st, i);
            long v;
            tsr_st_scalar_int(t, &v, &err);
            if (t->numel <= (1u << 20)) {
                float *buf = malloc(sizeof(float) * (t->numel ? t->numel : 1));
                if (buf)
                    tsr_st_to_f32(t, buf, &err);
                free(buf);
            }
        }
        tsr_st_close(st);
    }
    unlink(path);
    return 0;
}
