/* Fuzz target: audio decoding (our FFmpeg wrapper's error paths, whole and
 * streamed, and the spool), then the log-mel front end and the voice
 * activity detector on whatever decodes. */
#include <string.h>

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
    if (tsr_audio_load_file(path, 16000, &pcm, &n, &err) == TSR_OK && n < 16000 * 60) {
        tsr_whisper_logmel(pcm, n, 80, 160, &mel, &frames, &err);
        tsr_audio_pcm src = {pcm, n};
        tsr_vad_chunk *chunks = NULL;
        size_t n_chunks = 0;
        tsr_vad_detect(tsr_audio_pcm_read_cb, &src, n, NULL, &chunks, &n_chunks, &err);
        free(chunks);
    }
    /* the streaming reader, in odd pieces, gives the loader's samples */
    tsr_audio_reader *r = NULL;
    if (tsr_audio_open(path, 16000, &r, &err) == TSR_OK) {
        float buf[1021];
        size_t got = 0, total = 0;
        while (tsr_audio_read(r, buf, 1021, &got, &err) == TSR_OK && got && total < 16000 * 120) {
            if (pcm && (total + got > n || memcmp(buf, pcm + total, sizeof(float) * got) != 0))
                abort(); /* a bug: the two paths disagree */
            total += got;
        }
        tsr_audio_close(r);
    }
    tsr_audio_spool *sp = NULL;
    if (n < 16000 * 60 && tsr_audio_spool_open(path, NULL, NULL, NULL, &sp, &err) == TSR_OK) {
        float head[64];
        size_t k = tsr_audio_spool_samples(sp) < 64 ? tsr_audio_spool_samples(sp) : 64;
        tsr_audio_spool_read(sp, 0, k, head, &err);
        tsr_audio_spool_free(sp);
    }
    free(pcm);
    free(mel);
    unlink(path);
    return 0;
}
