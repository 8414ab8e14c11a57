/* GPT-2 style byte-level BPE (Whisper): encoding text to ids exactly as HF
 * tokenizers' Tokenizer.encode(text, add_special_tokens=False) does, and
 * decoding ids back to UTF-8 text. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tsr_text.h"
#include "tsr_textutil.h"

#define MAX_ID (1 << 22)
#define MAX_TEXT (1u << 28) /* bytes one encode call takes (ids stay below INT_MAX) */

/* A token of tokenizer.json's added_tokens, matched in the text before the
 * pre-tokenizer runs (HF's AddedVocabulary). */
typedef struct {
    char *content;
    size_t len;
    int id;
    unsigned char single_word, lstrip, rstrip, normalized;
} added_token;

struct tsr_bytelevel {
    char *name;             /* the file, for messages */
    char **tok;             /* id -> token string (NULL: unused id) */
    unsigned char *special; /* id -> 1 for special tokens, which decode skips */
    int size;
    tsr_str_map vocab;      /* model.vocab: token -> id */
    added_token *added;     /* HF's matching order: the special ones first */
    int n_added;
    unsigned char starts[2][256]; /* [normalized][byte]: an added token starts with it */
    tsr_pair_map merges;
    int byte_id[256];       /* each byte's token, -1 when the vocabulary lacks it */
    char byte_char[256][3]; /* each byte's character in the vocabulary, UTF-8 */
    int unicode_to_byte[324];
    int add_prefix_space, use_regex, ignore_merges;
    char no_encode[320];    /* why encoding is refused; "" when it is not */
};

/* ---- loading ---- */

/* A token id below size from a JSON number, or -1. */
static int json_id(const cJSON *v, int size)
{
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble < size) ||
        v->valuedouble != (double)(int)v->valuedouble)
        return -1;
    return (int)v->valuedouble;
}

static tsr_status set_tok(tsr_bytelevel *b, const char *s, const cJSON *jid, const char *path,
                          tsr_error *err)
{
    int id = json_id(jid, b->size);
    if (id < 0)
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: token \"%s\" has a bad id", path, s);
    char *c = strdup(s);
    if (!c)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    free(b->tok[id]);
    b->tok[id] = c;
    return TSR_OK;
}

static int json_flag(const cJSON *o, const char *key, int dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

/* Registers the added tokens with the given special flag, in file order. */
static tsr_status load_added(tsr_bytelevel *b, const cJSON *added, int special, const char *path,
                             tsr_error *err)
{
    tsr_status rc = TSR_OK;
    const cJSON *it;
    cJSON_ArrayForEach(it, added)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (!cJSON_IsNumber(id) || !cJSON_IsString(c) || json_flag(it, "special", 0) != special)
            continue;
        if ((rc = set_tok(b, c->valuestring, id, path, err)) != TSR_OK)
            return rc;
        b->special[(int)id->valuedouble] |= (unsigned char)special;
        int dup = 0; /* HF skips empty and repeated tokens */
        for (int i = 0; i < b->n_added && !dup; i++)
            dup = strcmp(b->added[i].content, c->valuestring) == 0;
        if (!c->valuestring[0] || dup)
            continue;
        added_token *a = &b->added[b->n_added];
        if (!(a->content = strdup(c->valuestring)))
            return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
        b->n_added++;
        a->len = strlen(a->content);
        a->id = (int)id->valuedouble;
        a->single_word = (unsigned char)json_flag(it, "single_word", 0);
        a->lstrip = (unsigned char)json_flag(it, "lstrip", 0);
        a->rstrip = (unsigned char)json_flag(it, "rstrip", 0);
        a->normalized = (unsigned char)json_flag(it, "normalized", 1);
        b->starts[a->normalized][(unsigned char)a->content[0]] = 1;
    }
    return TSR_OK;
}

/* Refuses encoding (not loading: decoding still works) with a reason. */
static void no_encode(tsr_bytelevel *b, const char *why, const char *what)
{
    if (!b->no_encode[0])
        snprintf(b->no_encode, sizeof b->no_encode, "%s: cannot encode: %s%s", b->name, why,
                 what);
}

/* What encoding needs besides the vocabulary: the merges and the settings of
 * the model, normalizer and pre-tokenizer. Settings tessera does not
 * implement leave the tokenizer able to decode only. */
static tsr_status load_encoding(tsr_bytelevel *b, const cJSON *root, const char *path,
                                tsr_error *err)
{
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    const char *affix[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    if (type && !(cJSON_IsString(type) && strcmp(type->valuestring, "BPE") == 0))
        no_encode(b, "model.type is not BPE", "");
    if (norm && !cJSON_IsNull(norm)) {
        const cJSON *nt = cJSON_GetObjectItemCaseSensitive(norm, "type");
        no_encode(b, "normalizer ", cJSON_IsString(nt) ? nt->valuestring : "(unnamed)");
    }
    if (dropout && !cJSON_IsNull(dropout) &&
        !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0))
        no_encode(b, "BPE dropout is random", "");
    for (int i = 0; i < 2; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(model, affix[i]);
        if (v && !cJSON_IsNull(v) && !(cJSON_IsString(v) && !v->valuestring[0]))
            no_encode(b, "model.", affix[i]);
    }
    if (!cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(pre, "add_prefix_space")))
        no_encode(b, "the ByteLevel pre-tokenizer lacks add_prefix_space", "");
    b->add_prefix_space = json_flag(pre, "add_prefix_space", 1);
    b->use_regex = json_flag(pre, "use_regex", 1);
    b->ignore_merges = json_flag(model, "ignore_merges", 0);
    if (!merges) {
        no_encode(b, "no model.merges", "");
        if (!tsr_pmap_init(&b->merges, 0))
            return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
        return TSR_OK;
    }
    /* HF tokenizers keeps the last rank of a pair listed twice */
    tsr_status rc = tsr_merges_load_json(&b->merges, merges, &b->vocab, 0, path, err);
    for (int c = 0; c < 256 && rc == TSR_OK; c++)
        b->byte_id[c] = tsr_smap_get(&b->vocab, b->byte_char[c]);
    return rc;
}

/* tokenizer.json text, taken over. */
static tsr_status load_json(char *text, const char *path, tsr_bytelevel **out, tsr_error *err)
{
    *out = NULL;
    cJSON *root = cJSON_Parse(text);
    free(text);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(pre, "type");
    if (!cJSON_IsObject(vocab)) {
        cJSON_Delete(root);
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: not a tokenizer.json with a model.vocab",
                             path);
    }
    if (!cJSON_IsString(pt) || strcmp(pt->valuestring, "ByteLevel") != 0) {
        tsr_status rc = tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                                      "%s: not a byte-level BPE tokenizer (pre_tokenizer %s)",
                                      path, cJSON_IsString(pt) ? pt->valuestring : "(missing)");
        cJSON_Delete(root);
        return rc;
    }
    tsr_bytelevel *b = calloc(1, sizeof *b);
    tsr_status rc = b ? TSR_OK : tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    int max_id = -1;
    const cJSON *it;
    for (it = vocab->child; it; it = it->next)
        if (cJSON_IsNumber(it) && it->valuedouble > max_id && it->valuedouble < MAX_ID)
            max_id = (int)it->valuedouble;
    cJSON_ArrayForEach(it, added)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        if (cJSON_IsNumber(id) && id->valuedouble > max_id && id->valuedouble < MAX_ID)
            max_id = (int)id->valuedouble;
    }
    if (rc == TSR_OK) {
        for (int i = 0; i < 324; i++)
            b->unicode_to_byte[i] = -1;
        int32_t cp[256];
        tsr_bytes_to_unicode(cp);
        for (int c = 0; c < 256; c++) {
            b->unicode_to_byte[cp[c]] = c;
            b->byte_char[c][utf8proc_encode_char(cp[c], (utf8proc_uint8_t *)b->byte_char[c])] = 0;
        }
        b->size = max_id + 1;
        b->name = strdup(path);
        b->tok = calloc((size_t)b->size + 1, sizeof(char *));
        b->special = calloc((size_t)b->size + 1, 1);
        b->added = calloc((size_t)cJSON_GetArraySize(added) + 1, sizeof(added_token));
        if (!b->name || !b->tok || !b->special || !b->added ||
            !tsr_smap_init(&b->vocab, (size_t)b->size))
            rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    }
    for (it = vocab->child; it && rc == TSR_OK; it = it->next)
        if ((rc = set_tok(b, it->string, it, path, err)) == TSR_OK &&
            !tsr_smap_put(&b->vocab, it->string, (int)it->valuedouble))
            rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    if (rc == TSR_OK) /* HF matches the special ones first */
        rc = load_added(b, added, 1, path, err);
    if (rc == TSR_OK)
        rc = load_added(b, added, 0, path, err);
    if (rc == TSR_OK)
        rc = load_encoding(b, root, path, err);
    cJSON_Delete(root);
    if (rc != TSR_OK) {
        tsr_bytelevel_free(b);
        return rc;
    }
    *out = b;
    return TSR_OK;
}

tsr_status tsr_bytelevel_load(const char *path, tsr_bytelevel **out, tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    *out = NULL;
    char *text = (char *)tsr_read_file(path, TSR_MAX_TOKENIZER_FILE, NULL, err);
    return text ? load_json(text, path, out, err) : err->code;
}

tsr_status tsr_bytelevel_load_json(const char *json, size_t len, const char *name,
                                   tsr_bytelevel **out, tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    *out = NULL;
    char *text = tsr_text_copy(json, len, name, err);
    return text ? load_json(text, name, out, err) : err->code;
}

void tsr_bytelevel_free(tsr_bytelevel *b)
{
    if (!b)
        return;
    if (b->tok)
        for (int i = 0; i < b->size; i++)
            free(b->tok[i]);
    for (int i = 0; i < b->n_added; i++)
        free(b->added[i].content);
    free(b->added);
    free(b->tok);
    free(b->special);
    free(b->name);
    tsr_smap_free(&b->vocab);
    tsr_pmap_free(&b->merges);
    free(b);
}

int tsr_bytelevel_size(const tsr_bytelevel *b) { return b->size; }

int tsr_bytelevel_id(const tsr_bytelevel *b, const char *token)
{
    for (int i = 0; i < b->n_added; i++)
        if (strcmp(b->added[i].content, token) == 0)
            return b->added[i].id;
    return tsr_smap_get(&b->vocab, token);
}

/* ---- encoding ---- */

enum { C_SPACE, C_LETTER, C_NUMBER, C_OTHER };

/* The class of a code point in the pre-tokenizer's regex: \s, \p{L}, \p{N}
 * or none of them. */
static int cp_class(int32_t c)
{
    if (tsr_is_ws(c))
        return C_SPACE;
    utf8proc_category_t k = utf8proc_category(c);
    if (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO)
        return C_LETTER;
    if (k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO)
        return C_NUMBER;
    return C_OTHER;
}

/* The class of the code point at s[0..n) (valid UTF-8); *len its bytes. */
static int next_class(const unsigned char *s, size_t n, size_t *len)
{
    utf8proc_int32_t c = s[0];
    *len = 1;
    if (c >= 0x80)
        *len = (size_t)utf8proc_iterate(s, (utf8proc_ssize_t)n, &c);
    return cp_class(c);
}

/* The length of the first match of GPT-2's pre-tokenizer regex (Oniguruma,
 * leftmost alternative first) in s[0..n), n > 0:
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * Every code point is in one of the classes, so the matches tile s. */
static size_t gpt2_piece(const unsigned char *s, size_t n)
{
    if (s[0] == '\'' && n >= 2) {
        unsigned char d = s[1], e = n >= 3 ? s[2] : 0;
        if (d == 's' || d == 't' || d == 'm' || d == 'd')
            return 2;
        if ((d == 'r' && e == 'e') || (d == 'v' && e == 'e') || (d == 'l' && e == 'l'))
            return 3;
    }
    size_t i = 0, k, k2;
    int c = next_class(s, n, &k);
    if (s[0] == ' ' && n > 1) { /* " ?X+": a space then a run of one class */
        int c2 = next_class(s + 1, n - 1, &k2);
        if (c2 != C_SPACE) {
            c = c2;
            i = 1;
            k = k2;
        }
    }
    if (c != C_SPACE) {
        for (i += k; i < n && next_class(s + i, n - i, &k) == c;)
            i += k;
        return i;
    }
    /* White space: a run up to the end of s, or up to its last code point
     * before something else (\s+(?!\S)), or one alone (\s+). */
    size_t last = 0;
    for (i = k; i < n && next_class(s + i, n - i, &k) == C_SPACE; i += k)
        last = i;
    return i == n || last == 0 ? i : last;
}

/* Rust regex's \w: Alphabetic, marks, decimal digits, connector punctuation
 * and the joiners (what HF's single_word test looks at). */
static int is_word_char(int32_t c)
{
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_PC:
        return 1;
    default: /* Other_Alphabetic symbols: circled and squared Latin letters */
        return c == 0x200C || c == 0x200D || (c >= 0x24B6 && c <= 0x24E9) ||
               (c >= 0x1F130 && c <= 0x1F149) || (c >= 0x1F150 && c <= 0x1F169) ||
               (c >= 0x1F170 && c <= 0x1F189);
    }
}

/* The code point that starts at s[i] (valid UTF-8, i < n); *len its bytes. */
static int32_t cp_at(const char *s, size_t i, size_t n, size_t *len)
{
    utf8proc_int32_t c;
    *len = (size_t)utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i),
                                    &c);
    return c;
}

/* Where the code point that ends at s[i] starts (i > 0). */
static size_t cp_before(const char *s, size_t i)
{
    do
        i--;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80);
    return i;
}

typedef struct {
    const tsr_bytelevel *b;
    int *ids, cap, n;   /* n counts every id; ids takes the first cap */
    int *sym;           /* (len + 1) a word's token ids */
    char *word;         /* (len + 2) a piece with its prefix space */
    char *mapped;       /* (2 * len + 3) a word as vocabulary characters */
    tsr_bpe_work work;
    tsr_error *err;
} encoder;

static void emit(encoder *e, int id)
{
    if (e->n < e->cap)
        e->ids[e->n] = id;
    e->n++;
}

/* One pre-token: its bytes merged by rank (the whole word when ignore_merges
 * finds it in the vocabulary, as HF does). */
static tsr_status encode_word(encoder *e, const unsigned char *s, size_t n)
{
    const tsr_bytelevel *b = e->b;
    if (b->ignore_merges) {
        size_t w = 0;
        for (size_t i = 0; i < n; i++)
            for (const char *c = b->byte_char[s[i]]; *c; c++)
                e->mapped[w++] = *c;
        e->mapped[w] = 0;
        int id = tsr_smap_get(&b->vocab, e->mapped);
        if (id >= 0) {
            emit(e, id);
            return TSR_OK;
        }
    }
    for (size_t i = 0; i < n; i++)
        if ((e->sym[i] = b->byte_id[s[i]]) < 0)
            return tsr_error_set(e->err, TSR_ERR_FORMAT,
                                 "%s: the vocabulary has no token for the byte 0x%02x", b->name,
                                 s[i]);
    int m = tsr_bpe_merge(&b->merges, e->sym, (int)n, &e->work);
    if (m < 0)
        return tsr_error_set(e->err, TSR_ERR_NOMEM, "out of memory tokenizing text");
    for (int i = 0; i < m; i++)
        emit(e, e->sym[i]);
    return TSR_OK;
}

/* Text between added tokens: the ByteLevel pre-tokenizer (prefix space,
 * regex split), then BPE on each piece. */
static tsr_status encode_plain(encoder *e, const char *text, size_t n)
{
    const unsigned char *s = (const unsigned char *)text;
    if (n == 0)
        return TSR_OK;
    if (e->b->add_prefix_space && s[0] != ' ') {
        e->word[0] = ' ';
        memcpy(e->word + 1, s, n);
        s = (const unsigned char *)e->word;
        n++;
    }
    if (!e->b->use_regex)
        return encode_word(e, s, n);
    tsr_status rc = TSR_OK;
    for (size_t i = 0, k; i < n && rc == TSR_OK; i += k) {
        k = gpt2_piece(s + i, n - i);
        rc = encode_word(e, s + i, k);
    }
    return rc;
}

/* The longest added token of one matching pass (normalized or not) that
 * starts at s[0..n), or -1 (aho-corasick's leftmost-longest, as HF). */
static int match_added(const tsr_bytelevel *b, int normalized, const char *s, size_t n)
{
    int best = -1;
    for (int i = 0; i < b->n_added; i++) {
        const added_token *a = &b->added[i];
        if (a->normalized == normalized && a->len <= n &&
            (best < 0 || a->len > b->added[best].len) && memcmp(a->content, s, a->len) == 0)
            best = i;
    }
    return best;
}

/* HF's AddedVocabulary: the tokens that are not normalized are found in the
 * whole text (pass 0), the normalized ones in what lies between (pass 1;
 * no normalizer runs, since encoding refuses those), each with its
 * single_word, lstrip and rstrip rules; the rest goes to encode_plain. */
static tsr_status split_added(encoder *e, const char *s, size_t n, int pass)
{
    const tsr_bytelevel *b = e->b;
    tsr_status rc = TSR_OK;
    size_t done = 0; /* what is encoded: up to the end of the last token */
    for (size_t p = 0; p < n && rc == TSR_OK;) {
        int t = b->starts[pass][(unsigned char)s[p]] ? match_added(b, pass, s + p, n - p) : -1;
        if (t < 0) {
            p++;
            continue;
        }
        const added_token *a = &b->added[t];
        size_t start = p, stop = p + a->len, k;
        p = stop; /* the search goes on after the match, whatever the rules make of it */
        if (a->single_word && ((start > 0 && is_word_char(cp_at(s, cp_before(s, start), n, &k))) ||
                               (stop < n && is_word_char(cp_at(s, stop, n, &k)))))
            continue;
        if (a->lstrip) { /* back over white space, not into the previous token */
            size_t ns = start;
            while (ns > 0 && tsr_is_ws(cp_at(s, cp_before(s, ns), n, &k)))
                ns = cp_before(s, ns);
            start = ns > done ? ns : done;
        }
        while (a->rstrip && stop < n && tsr_is_ws(cp_at(s, stop, n, &k)))
            stop += k;
        if (done < start)
            rc = pass == 0 ? split_added(e, s + done, start - done, 1)
                           : encode_plain(e, s + done, start - done);
        emit(e, a->id);
        done = stop;
    }
    if (rc == TSR_OK && done < n)
        rc = pass == 0 ? split_added(e, s + done, n - done, 1)
                       : encode_plain(e, s + done, n - done);
    return rc;
}

tsr_status tsr_bytelevel_encode(const tsr_bytelevel *b, const char *text, int *ids, int cap,
                                int *n, tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    *n = 0;
    if (b->no_encode[0])
        return tsr_error_set(err, TSR_ERR_UNSUPPORTED, "%s", b->no_encode);
    if (ids && cap < 0)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "room for %d ids", cap);
    size_t len = strlen(text), bad = 0;
    if (len > MAX_TEXT)
        return tsr_error_set(err, TSR_ERR_TOO_LARGE, "text of %zu bytes is over %u", len,
                             MAX_TEXT);
    if (!tsr_utf8_valid(text, len, &bad))
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "text is not valid UTF-8 (bad byte 0x%02x at offset %zu)",
                             (unsigned char)text[bad], bad);
    encoder e = {b, ids, ids ? cap : 0, 0, NULL, NULL, NULL, {0}, err};
    e.sym = malloc(sizeof(int) * (len + 1));
    e.word = malloc(len + 2);
    e.mapped = malloc(2 * len + 3);
    tsr_status rc = e.sym && e.word && e.mapped
                        ? split_added(&e, text, len, 0)
                        : tsr_error_set(err, TSR_ERR_NOMEM, "out of memory tokenizing text");
    free(e.sym);
    free(e.word);
    free(e.mapped);
    tsr_bpe_work_free(&e.work);
    if (rc != TSR_OK)
        return rc;
    *n = e.n;
    if (ids && e.n > cap)
        return tsr_error_set(err, TSR_ERR_TOO_LARGE,
                             "text needs %d tokens, more than the %d there is room for", e.n, cap);
    return TSR_OK;
}

/* ---- decoding ---- */

/* Appends s[0..n) as UTF-8, each maximal invalid sequence replaced by U+FFFD
 * (as Rust's String::from_utf8_lossy, which tokenizers uses). */
static size_t lossy(const unsigned char *s, size_t n, char *o)
{
    size_t w = 0;
    for (size_t i = 0; i < n;) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate(s + i, (utf8proc_ssize_t)(n - i), &c);
        if (k > 0) {
            memcpy(o + w, s + i, (size_t)k);
            w += (size_t)k;
            i += (size_t)k;
            continue;
        }
        /* skip the lead byte and the continuation bytes that fit its pattern */
        size_t need = s[i] >= 0xF0 && s[i] <= 0xF4 ? 3 : s[i] >= 0xE0 && s[i] <= 0xEF ? 2
                      : s[i] >= 0xC2 && s[i] <= 0xDF                         ? 1 : 0;
        i++;
        while (need-- && i < n && (s[i] & 0xC0) == 0x80)
            i++;
        memcpy(o + w, "\xEF\xBF\xBD", 3);
        w += 3;
    }
    return w;
}

char *tsr_utf8_lossy(const char *s, size_t n)
{
    char *o = malloc(3 * n + 1);
    if (o)
        o[lossy((const unsigned char *)s, n, o)] = 0;
    return o;
}

tsr_status tsr_bytelevel_decode(const tsr_bytelevel *b, const int *ids, int n, char **out,
                                tsr_error *err)
{
    *out = NULL;
    size_t cap = 1;
    for (int i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < b->size && b->tok[ids[i]])
            cap += strlen(b->tok[ids[i]]);
    unsigned char *bytes = malloc(cap);
    char *text = malloc(cap * 3 + 1);
    if (!bytes || !text) {
        free(bytes);
        free(text);
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    }
    size_t nb = 0;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= b->size || !b->tok[ids[i]] || b->special[ids[i]])
            continue;
        const unsigned char *t = (const unsigned char *)b->tok[ids[i]];
        size_t tl = strlen((const char *)t), start = nb, j = 0;
        while (j < tl) {
            utf8proc_int32_t c;
            utf8proc_ssize_t k = utf8proc_iterate(t + j, (utf8proc_ssize_t)(tl - j), &c);
            if (k <= 0 || c >= 324 || b->unicode_to_byte[c] < 0)
                break;
            j += (size_t)k;
            bytes[nb++] = (unsigned char)b->unicode_to_byte[c];
        }
        if (j < tl) { /* not byte characters (an added token): its own bytes, as HF */
            memcpy(bytes + start, t, tl);
            nb = start + tl;
        }
    }
    size_t w = lossy(bytes, nb, text);
    text[w] = 0;
    free(bytes);
    *out = text;
    return TSR_OK;
}

tsr_status tsr_roberta_encode(const tsr_bytelevel *b, const char *text, int max_len, int *ids,
                              int *n, int *truncated, tsr_error *err)
{
    int bos = tsr_bytelevel_id(b, "<s>"), eos = tsr_bytelevel_id(b, "</s>"), need = 0;
    *n = 0;
    *truncated = 0;
    if (bos < 0 || eos < 0 || max_len < 2)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             bos < 0 || eos < 0 ? "the tokenizer has no <s> or </s> token"
                                                : "room for %d tokens, fewer than <s> and </s>",
                             max_len);
    tsr_status rc = tsr_bytelevel_encode(b, text, NULL, 0, &need, err);
    if (rc != TSR_OK && rc != TSR_ERR_TOO_LARGE)
        return rc;
    int *all = malloc(sizeof(int) * (size_t)(need + 1));
    if (!all)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    rc = tsr_bytelevel_encode(b, text, all, need + 1, &need, err);
    if (rc == TSR_OK) {
        int keep = need < max_len - 2 ? need : max_len - 2;
        *truncated = need > keep;
        ids[0] = bos;
        memcpy(ids + 1, all, sizeof(int) * (size_t)keep);
        ids[keep + 1] = eos;
        *n = keep + 2;
    }
    free(all);
    return rc;
}
