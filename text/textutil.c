/* Helpers shared by the tokenizers. */
#include <cjson/cJSON.h>
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

void tsr_bytes_to_unicode(int32_t cp[256])
{
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        cp[b] = printable ? b : 256 + n++;
    }
}

/* ---- BPE merges ---- */

static uint64_t pair_key(int a, int b)
{
    return (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
}

static size_t pair_slot(const tsr_pair_map *m, uint64_t k)
{
    uint64_t x = k;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    size_t i = x & (m->cap - 1);
    while (m->keys[i] && m->keys[i] != k)
        i = (i + 1) & (m->cap - 1);
    return i;
}

int tsr_pmap_init(tsr_pair_map *m, size_t n)
{
    m->cap = 1024;
    while (m->cap < n * 2)
        m->cap <<= 1;
    m->keys = calloc(m->cap, sizeof(uint64_t));
    m->rank = calloc(m->cap, sizeof(int));
    m->merged = calloc(m->cap, sizeof(int));
    return m->keys && m->rank && m->merged;
}

int tsr_pmap_get(const tsr_pair_map *m, int a, int b, int *merged)
{
    size_t i = pair_slot(m, pair_key(a, b));
    if (!m->keys[i])
        return -1;
    *merged = m->merged[i];
    return m->rank[i];
}

void tsr_pmap_free(tsr_pair_map *m)
{
    free(m->keys);
    free(m->rank);
    free(m->merged);
    m->keys = NULL;
    m->rank = m->merged = NULL;
}

tsr_status tsr_merge_add(tsr_pair_map *m, const tsr_str_map *vocab, const char *a, const char *b,
                         int rank, int keep_first, const char *src, tsr_error *err)
{
    size_t la = strlen(a), lb = strlen(b);
    char buf[256], *ab = la + lb < sizeof buf ? buf : malloc(la + lb + 1);
    if (!ab)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    memcpy(ab, a, la);
    memcpy(ab + la, b, lb + 1);
    int ia = tsr_smap_get(vocab, a), ib = tsr_smap_get(vocab, b), im = tsr_smap_get(vocab, ab);
    if (ab != buf)
        free(ab);
    if (ia < 0 || ib < 0 || im < 0)
        return tsr_error_set(err, TSR_ERR_FORMAT,
                             "%s: merge %d (\"%s\" \"%s\") uses a token missing from the "
                             "vocabulary",
                             src, rank + 1, a, b);
    uint64_t k = pair_key(ia, ib);
    size_t i = pair_slot(m, k);
    if (m->keys[i] && keep_first)
        return TSR_OK;
    m->keys[i] = k;
    m->rank[i] = rank;
    m->merged[i] = im;
    return TSR_OK;
}

tsr_status tsr_merges_load_json(tsr_pair_map *m, const cJSON *merges, const tsr_str_map *vocab,
                                int keep_first, const char *src, tsr_error *err)
{
    if (!cJSON_IsArray(merges))
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: model.merges is not an array", src);
    if (!tsr_pmap_init(m, (size_t)cJSON_GetArraySize(merges) + 1))
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    tsr_status rc = TSR_OK;
    int rank = 0, strings = merges->child && cJSON_IsString(merges->child);
    for (const cJSON *it = merges->child; it && rc == TSR_OK; it = it->next, rank++) {
        const cJSON *a = cJSON_GetArrayItem(it, 0), *b = cJSON_GetArrayItem(it, 1);
        if (strings && cJSON_IsString(it)) { /* "a b" */
            size_t len = strlen(it->valuestring);
            char buf[256], *s = len < sizeof buf ? buf : malloc(len + 1), *sp;
            if (!s)
                return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
            memcpy(s, it->valuestring, len + 1);
            if (!(sp = strchr(s, ' ')))
                rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s: merge %d is malformed", src,
                                   rank + 1);
            else {
                *sp = 0;
                rc = tsr_merge_add(m, vocab, s, sp + 1, rank, keep_first, src, err);
            }
            if (s != buf)
                free(s);
        } else if (!strings && cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 &&
                   cJSON_IsString(a) && cJSON_IsString(b)) {
            rc = tsr_merge_add(m, vocab, a->valuestring, b->valuestring, rank, keep_first, src,
                               err);
        } else {
            rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s: merge %d is malformed", src, rank + 1);
        }
    }
    return rc;
}

/* A possible merge of the symbol at pos with the next one. */
struct tsr_bpe_cand {
    int rank, pos, merged;
};

static int cand_before(const tsr_bpe_cand *a, const tsr_bpe_cand *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(tsr_bpe_cand *h, int *n, tsr_bpe_cand c)
{
    int i = (*n)++;
    while (i > 0 && cand_before(&c, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = c;
}

static tsr_bpe_cand heap_pop(tsr_bpe_cand *h, int *n)
{
    tsr_bpe_cand top = h[0], last = h[--*n];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && cand_before(&h[c + 1], &h[c]))
            c++;
        if (!cand_before(&h[c], &last))
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = last;
    return top;
}

/* Queues the merge of the symbol at pos with its next one, if there is one. */
static void push_pair(const tsr_pair_map *m, const int *sym, const int *next, int pos,
                      tsr_bpe_cand *h, int *nh)
{
    tsr_bpe_cand c = {0, pos, 0};
    if (pos >= 0 && next[pos] >= 0 &&
        (c.rank = tsr_pmap_get(m, sym[pos], sym[next[pos]], &c.merged)) >= 0)
        heap_push(h, nh, c);
}

int tsr_bpe_merge(const tsr_pair_map *m, int *sym, int n, tsr_bpe_work *w)
{
    if (n < 2)
        return n;
    if ((size_t)n > w->cap) {
        size_t cap = (size_t)n * 2;
        int *next = realloc(w->next, cap * sizeof(int));
        if (next)
            w->next = next;
        int *prev = realloc(w->prev, cap * sizeof(int));
        if (prev)
            w->prev = prev;
        tsr_bpe_cand *heap = realloc(w->heap, 3 * cap * sizeof(tsr_bpe_cand));
        if (heap)
            w->heap = heap;
        if (!next || !prev || !heap)
            return -1;
        w->cap = cap;
    }
    int *next = w->next, *prev = w->prev, nh = 0;
    for (int i = 0; i < n; i++) {
        next[i] = i + 1 < n ? i + 1 : -1;
        prev[i] = i - 1;
    }
    for (int i = 0; i + 1 < n; i++)
        push_pair(m, sym, next, i, w->heap, &nh);
    /* Each merge queues at most two pairs, so the heap never holds more
     * than 3n. A queued pair is stale when its left symbol was merged away,
     * or when the pair there no longer makes the same token. */
    while (nh > 0) {
        tsr_bpe_cand c = heap_pop(w->heap, &nh);
        int p = c.pos, q = next[p], merged;
        if (sym[p] < 0 || q < 0 || tsr_pmap_get(m, sym[p], sym[q], &merged) < 0 ||
            merged != c.merged)
            continue;
        sym[p] = merged;
        sym[q] = -1;
        next[p] = next[q];
        if (next[p] >= 0)
            prev[next[p]] = p;
        push_pair(m, sym, next, prev[p], w->heap, &nh);
        push_pair(m, sym, next, p, w->heap, &nh);
    }
    int k = 0;
    for (int i = 0; i >= 0; i = next[i])
        sym[k++] = sym[i];
    return k;
}

void tsr_bpe_work_free(tsr_bpe_work *w)
{
    free(w->next);
    free(w->prev);
    free(w->heap);
    memset(w, 0, sizeof *w);
}
