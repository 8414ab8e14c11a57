/* What the audio module's files share and the public header does not show. */
#ifndef TSR_AUDIO_INTERNAL_H
#define TSR_AUDIO_INTERNAL_H

#include <stdint.h>
#include <string.h>

#include "tsr_audio.h"

/* tsr_audio_read's samples as FFmpeg gives them: signed 16-bit, before the
 * division by 32768 (the spool stores these). */
tsr_status tsr_audio_read_s16(tsr_audio_reader *r, int16_t *buf, size_t cap, size_t *got,
                              tsr_error *err);

/* How a path appears in messages: "-" is "standard input". */
static inline const char *shown(const char *path)
{
    return strcmp(path, "-") == 0 ? "standard input" : path;
}

#endif
