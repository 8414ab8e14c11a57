/* Helpers for fuzz targets whose readers take a path. */
#ifndef TSR_FUZZ_FILE_H
#define TSR_FUZZ_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Writes the input to /tmp/tessera-fuzz-TAG-PID; returns 0 when it cannot. */
static int fuzz_temp_file(const uint8_t *data, size_t size, const char *tag, char *path,
                          size_t cap)
{
    snprintf(path, cap, "/tmp/tessera-fuzz-%s-%ld", tag, (long)getpid());
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    return 1;
}

#ifdef TSR_ST_H
/* Converts every tensor of up to 1M elements to float32 (and reads scalars). */
static void fuzz_convert_all(const tsr_st *st)
{
    tsr_error err = {0};
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
}
#endif

#endif
