/* The model families tessera loads. A directory goes to the first family
 * whose detect() accepts its config.json; adding a family adds a row here. */
#include <stddef.h>

#include "tsr_model.h"

const tsr_family *const tsr_families[] = {&tsr_family_clip, &tsr_family_bert,
                                          &tsr_family_whisper, &tsr_family_blip,
                                          &tsr_family_clap,   NULL};
