/* Fuzz target: tokenizing arbitrary bytes (invalid UTF-8 included) with the
 * CLIP BPE (CLIPTokenizerFast's and open_clip's clean-up) and with a byte-level BPE that has added tokens of every kind. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tsr_text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static tsr_tokenizer *tok, *oc;
    static tsr_bytelevel *bl;
    if (!tok) {
        tsr_error err = {0};
        if (tsr_tokenizer_load_dir(TSR_FIXTURES "/models/clip-tiny-a", &tok, &err) != TSR_OK ||
            tsr_tokenizer_load_dir(TSR_FIXTURES "/models/openclip-tiny-a", &oc, &err) != TSR_OK ||
            tsr_bytelevel_load(TSR_FIXTURES "/whisper/bpe/small.json", &bl, &err) != TSR_OK)
            abort();
        tsr_tokenizer_set_openclip(oc, 1);
    }
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = 0;
    int ids[77], n = 0, cut = 0;
    tsr_error err = {0};
    tsr_tokenizer_encode(tok, text, 77, ids, &n, &cut, &err);
    tsr_tokenizer_encode(oc, text, 77, ids, &n, &cut, &err);
    tsr_bytelevel_encode(bl, text, ids, 77, &n, &err);
    free(text);
    return 0;
}
