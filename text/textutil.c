/* Helpers shared by the tokenizers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsr_textutil.h"

uint64_t tsr_hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

int tsr_smap_init(tsr_str_map *m, size_t n)
{
    m->cap = 1024;
    while (m->cap < n * 2)
        m->cap <<= 1;
    m->keys = calloc(m->cap, sizeof(char *));
    m->vals = calloc(m->cap, sizeof(int));
    return m->keys && m->vals;
}

int tsr_smap_get(const tsr_str_map *m, const char *k)
{
    for (size_t i = tsr_hash_str(k) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->keys[i])
            return -1;
        if (strcmp(m->keys[i], k) == 0)
            return m->vals[i];
    }
}

int tsr_smap_put(tsr_str_map *m, const char *k, int v)
{
    size_t i = tsr_hash_str(k) & (m->cap - 1);
    while (m->keys[i] && strcmp(m->keys[i], k) != 0)
        i = (i + 1) & (m->cap - 1);
    if (!m->keys[i] && !(m->keys[i] = strdup(k)))
        return 0;
    m->vals[i] = v;
    return 1;
}

void tsr_smap_free(tsr_str_map *m)
{
    if (m->keys)
        for (size_t i = 0; i < m->cap; i++)
            free(m->keys[i]);
    free(m->keys);
    free(m->vals);
    m->keys = NULL;
    m->vals = NULL;
}

char *tsr_text_copy(const char *s, size_t n, const char *name, tsr_error *err)
{
    if (n > TSR_MAX_TOKENIZER_FILE) {
        tsr_error_set(err, TSR_ERR_TOO_LARGE, "%s: larger than %u bytes", name,
                      TSR_MAX_TOKENIZER_FILE);
        return NULL;
    }
    char *c = malloc(n + 1);
    if (!c) {
        tsr_error_set(err, TSR_ERR_NOMEM, "%s: out of host memory", name);
        return NULL;
    }
    memcpy(c, s, n);
    c[n] = 0;
    return c;
}

int tsr_is_ws(int32_t c)
{
    return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
           c == 0x205f || c == 0x3000;
}

tsr_status tsr_text_check_batch(const int *ids, const int *lens, int B, int S, int max_pos,
                                int vocab, tsr_error *err)
{
    if (S < 1 || S > max_pos)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "sequence length %d outside 1..%d (max_position_embeddings)", S,
                             max_pos);
    for (size_t i = 0; i < (size_t)B * S; i++)
        if (ids[i] < 0 || ids[i] >= vocab)
            return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                                 "token id %d outside the model's vocabulary of %d", ids[i], vocab);
    for (int i = 0; i < B; i++)
        if (lens[i] < 1 || lens[i] > S)
            return tsr_error_set(err, TSR_ERR_INVALID_ARG, "length %d outside 1..%d", lens[i], S);
    return TSR_OK;
}
