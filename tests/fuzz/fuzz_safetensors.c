/* Fuzz target: the safetensors header parser and dtype conversion. */
#include "tsr_st.h"

#include "fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    if (!fuzz_temp_file(data, size, "st", path, sizeof path))
        return 0;
    tsr_st *st = NULL;
    tsr_error err = {0};
    if (tsr_st_open_file(path, &st, &err) == TSR_OK) {
        fuzz_convert_all(st);
        tsr_st_close(st);
    }
    unlink(path);
    return 0;
}
