/* Fuzz target: audio decoding (our FFmpeg wrapper's error paths) and the
 * log-mel front end on whatever decodes. */
#include "tsr_audio.h"

#include "fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    if (!fuzz_temp_file(data, size, "audio", path, sizeof path))
        return 0;
    float *pcm = NULL, *mel = NULL;
    size_t n = 0;
    int frames = 0;
    tsr_error err = {0};
    if (tsr_audio_load_file(path, 16000, &pcm, &n, &err) == TSR_OK && n < 16000 * 60)
        tsr_whisper_logmel(pcm, n, 80, 160, &mel, &frames, &err);
    free(pcm);
    free(mel);
    unlink(path);
    return 0;
}
