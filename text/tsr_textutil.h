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

/* GPT-2's reversible table from each byte to a printable code point. */
void tsr_bytes_to_unicode(int32_t cp[256]);

/* ---- BPE merges, shared by the CLIP and byte-level BPE tokenizers ---- */

/* (a, b) -> (rank, merged) over token ids, open addressing. */
typedef struct {
    uint64_t *keys; /* (a << 32 | b) + 1; 0 = empty */
    int *rank, *merged;
    size_t cap;     /* power of two, >= 2n */
} tsr_pair_map;

/* Sized for n pairs; returns 0 on allocation failure. */
int tsr_pmap_init(tsr_pair_map *m, size_t n);
/* The rank of merging a then b, with the merged token in *merged; -1 if none. */
int tsr_pmap_get(const tsr_pair_map *m, int a, int b, int *merged);
void tsr_pmap_free(tsr_pair_map *m);

/* Adds merge number rank (from 0) of tokens a and b, the ids taken from
 * vocab; a token missing from it is an error naming src and the merge. A
 * pair seen before keeps its first rank when keep_first, else takes this
 * one (HF tokenizers: the last wins). At most the n given to init. */
tsr_status tsr_merge_add(tsr_pair_map *m, const tsr_str_map *vocab, const char *a, const char *b,
                         int rank, int keep_first, const char *src, tsr_error *err);

struct cJSON;
/* Initialises m from a tokenizer.json's model.merges: "a b" strings, or
 * ["a", "b"] pairs as newer tokenizers versions write (one format per file,
 * as HF requires). m is freed by the caller, on error too. */
tsr_status tsr_merges_load_json(tsr_pair_map *m, const struct cJSON *merges,
                                const tsr_str_map *vocab, int keep_first, const char *src,
                                tsr_error *err);

/* Scratch memory for tsr_bpe_merge, grown as needed; zero-initialise it. */
typedef struct tsr_bpe_cand tsr_bpe_cand;
typedef struct {
    int *next, *prev;   /* (cap) the linked symbols */
    tsr_bpe_cand *heap; /* (3 * cap) candidate merges */
    size_t cap;
} tsr_bpe_work;

/* Merges the n token ids of sym in place as HF tokenizers' Word::merge_all
 * does: always the lowest-ranked pair, the leftmost among equal ranks, in
 * O(n log n). Returns the count of ids left, or -1 when out of memory. */
int tsr_bpe_merge(const tsr_pair_map *m, int *sym, int n, tsr_bpe_work *w);
void tsr_bpe_work_free(tsr_bpe_work *w);

/* open_clip's clean-up of a valid UTF-8 text (openclip_clean.c), as a new
 * string; NULL when out of memory. */
char *tsr_openclip_clean(const char *text);

#endif
