/* Fuzz target: PNG/JPEG decoding and CLIP preprocessing of arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "tsr_vision.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tsr_image *img = NULL;
    tsr_error err = {0};
    if (tsr_image_load_memory(data, size, "fuzz", &img, &err) == TSR_OK) {
        /* keep the work bounded: preprocess only modest images */
        if ((size_t)img->width * img->height <= 1u << 20) {
            tsr_preprocess_cfg cfg = tsr_preprocess_cfg_default(24);
            float *px = malloc(sizeof(float) * 3 * 24 * 24);
            if (px)
                tsr_image_preprocess(img, &cfg, px, &err);
            free(px);
        }
        tsr_image_free(img);
    }
    return 0;
}
