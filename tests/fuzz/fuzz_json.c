/* Fuzz target: the JSON readers of a model directory, fed the same bytes as
 * preprocessor_config.json and as tokenizer.json (CLIP BPE, WordPiece and
 * byte-level BPE readers, the last with its merges, added tokens and
 * settings, then encoding). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tsr_text.h"
#include "tsr_vision.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char dir[64], path[128];
    snprintf(dir, sizeof dir, "/tmp/tessera-fuzz-json-%ld", (long)getpid());
    mkdir(dir, 0700);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    tsr_error err = {0};
    tsr_preprocess_cfg cfg;
    tsr_preprocess_cfg_load(path, &cfg, &err);
    tsr_tokenizer *tok = NULL;
    if (tsr_tokenizer_load_dir(dir, &tok, &err) == TSR_OK) {
        int ids[16], n, cut;
        tsr_tokenizer_encode(tok, "a photo of a cat", 16, ids, &n, &cut, &err);
        tsr_tokenizer_free(tok);
    }
    tsr_wordpiece *wp = NULL;
    if (tsr_wordpiece_load_dir(dir, &wp, &err) == TSR_OK) {
        int ids[16], n, cut;
        tsr_wordpiece_encode(wp, "a [MASK] of a cat", 16, ids, &n, &cut, &err);
        tsr_wordpiece_free(wp);
    }
    tsr_bytelevel *bl = NULL;
    if (tsr_bytelevel_load(path, &bl, &err) == TSR_OK) {
        int ids[64] = {0, 1, 256, 100000}, n;
        char *text = NULL;
        tsr_bytelevel_decode(bl, ids, 4, &text, &err);
        free(text);
        tsr_bytelevel_encode(bl, " Hello<|endoftext|> wor\xC3\xA9ld's 42  \n<mask> [NAME]lol", ids,
                             64, &n, &err);
        tsr_bytelevel_free(bl);
    }
    unlink(path);
    rmdir(dir);
    return 0;
}
