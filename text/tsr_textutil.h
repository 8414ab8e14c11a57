/* Internal to text/: a string-to-int hash map, file reading and Unicode
 * helpers shared by the tokenizers. */
#ifndef TSR_TEXTUTIL_H
#define TSR_TEXTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "tsr_cl_internal.h"

#define TSR_MAX_TOKENIZER_FILE (64u << 20)

typedef struct {
    char **keys;
    int *vals;
    size_t cap; /* power of two */
} tsr_str_map;

uint64_t tsr_hash_str(const char *s);
/* Sized for n keys; returns 0 on allocation failure. */
int tsr_smap_init(tsr_str_map *m, size_t n);
/* The value of k, or -1. */
int tsr_smap_get(const tsr_str_map *m, const char *k);
/* Returns 0 on allocation failure. The map never fills: capacity >= 2n. */
int tsr_smap_put(tsr_str_map *m, const char *k, int v);
void tsr_smap_free(tsr_str_map *m);

/* A NUL-terminated copy of n bytes (at most TSR_MAX_TOKENIZER_FILE), for
 * loaders that parse text in place; name is for messages. Files are read
 * with tsr_read_file (tsr_cl_internal.h). */
char *tsr_text_copy(const char *s, size_t n, const char *name, tsr_error *err);

/* Checks a batch for a text encoder: 1 <= S <= max_pos, every id of the
 * (B, S) ids in [0, vocab), every length of lens (B) in [1, S]. */
tsr_status tsr_text_check_batch(const int *ids, const int *lens, int B, int S, int max_pos,
                                int vocab, tsr_error *err);

/* Unicode White_Space (what Rust's char::is_whitespace and Oniguruma's \s match). */
int tsr_is_ws(int32_t c);

#endif
