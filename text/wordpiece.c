/* BERT WordPiece, matching HF BertTokenizerFast (tokenizers' BertNormalizer,
 * BertPreTokenizer and WordPiece) token for token. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tsr_text.h"
#include "tsr_textutil.h"

#define MAX_SPECIAL 16

struct tsr_wordpiece {
    tsr_str_map vocab;
    int vocab_size;
    int unk, cls, sep, pad;
    int lowercase, strip_accents, clean_text, chinese;
    int max_word_chars;
    char prefix[16];               /* "##" */
    char *special[MAX_SPECIAL];    /* added tokens, matched in the raw text */
    int special_id[MAX_SPECIAL];
    int special_flag[MAX_SPECIAL]; /* "special": true (skipped when decoding) */
    int n_special;
    char **token;                  /* (n_token) id -> vocabulary string, or NULL */
    int n_token;
    int dec_cleanup;               /* the WordPiece decoder's cleanup */
    char dec_prefix[16];
};

/* ---- loading ---- */

static tsr_status set_ids(tsr_wordpiece *w, const char *src, const char *unk, tsr_error *err)
{
    const char *names[4] = {unk, "[CLS]", "[SEP]", "[PAD]"};
    int *slots[4] = {&w->unk, &w->cls, &w->sep, &w->pad};
    for (int i = 0; i < 4; i++) {
        *slots[i] = tsr_smap_get(&w->vocab, names[i]);
        if (*slots[i] < 0)
            return tsr_error_set(err, TSR_ERR_FORMAT, "%s: the vocabulary has no '%s' token", src,
                                 names[i]);
    }
    return TSR_OK;
}

/* The string of id, for decoding (the table grows as ids come). */
static int set_token(tsr_wordpiece *w, int id, const char *tok)
{
    if (id >= w->n_token) {
        int n = w->n_token ? w->n_token : 256;
        while (n <= id)
            n *= 2;
        char **t = realloc(w->token, sizeof *t * (size_t)n);
        if (!t)
            return 0;
        memset(t + w->n_token, 0, sizeof *t * (size_t)(n - w->n_token));
        w->token = t;
        w->n_token = n;
    }
    char *c = strdup(tok);
    if (!c)
        return 0;
    free(w->token[id]);
    w->token[id] = c;
    return 1;
}

static tsr_status add_vocab(tsr_wordpiece *w, const char *tok, int id, const char *src,
                            tsr_error *err)
{
    if (id < 0 || id >= (1 << 22))
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: token id %d out of range", src, id);
    if (!tsr_smap_put(&w->vocab, tok, id) || !set_token(w, id, tok))
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    if (id + 1 > w->vocab_size)
        w->vocab_size = id + 1;
    return TSR_OK;
}

static int json_bool(const cJSON *o, const char *key, int def)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(it) ? cJSON_IsTrue(it) : def;
}

/* tokenizer.json text, taken over. */
static tsr_status load_json(tsr_wordpiece *w, char *text, const char *path, tsr_error *err)
{
    cJSON *root = cJSON_Parse(text);
    free(text);
    tsr_status rc = TSR_OK;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(root) || !cJSON_IsObject(vocab)) {
        rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s: not a tokenizer.json with a model.vocab", path);
        goto out;
    }
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "WordPiece") != 0) {
        rc = tsr_error_set(err, TSR_ERR_UNSUPPORTED, "%s: model.type \"%s\" is not WordPiece", path,
                           cJSON_IsString(type) ? type->valuestring : "(missing)");
        goto out;
    }
    if (!tsr_smap_init(&w->vocab, (size_t)cJSON_GetArraySize(vocab))) {
        rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
        goto out;
    }
    for (const cJSON *it = vocab->child; it && rc == TSR_OK; it = it->next) {
        if (!cJSON_IsNumber(it) || it->valuedouble != (double)(int)it->valuedouble)
            rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s: vocabulary entry '%s' is not an integer",
                               path, it->string);
        else
            rc = add_vocab(w, it->string, (int)it->valuedouble, path, err);
    }
    const cJSON *pfx = cJSON_GetObjectItemCaseSensitive(model, "continuing_subword_prefix");
    if (cJSON_IsString(pfx) && strlen(pfx->valuestring) < sizeof w->prefix)
        snprintf(w->prefix, sizeof w->prefix, "%s", pfx->valuestring);
    const cJSON *mx = cJSON_GetObjectItemCaseSensitive(model, "max_input_chars_per_word");
    if (cJSON_IsNumber(mx) && mx->valuedouble >= 1 && mx->valuedouble < 1e6)
        w->max_word_chars = (int)mx->valuedouble;
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (cJSON_IsObject(norm)) {
        const cJSON *nt = cJSON_GetObjectItemCaseSensitive(norm, "type");
        if (!cJSON_IsString(nt) || strcmp(nt->valuestring, "BertNormalizer") != 0) {
            if (rc == TSR_OK)
                rc = tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                                   "%s: normalizer \"%s\" is not supported (expected BertNormalizer)",
                                   path, cJSON_IsString(nt) ? nt->valuestring : "(missing)");
        } else {
            w->lowercase = json_bool(norm, "lowercase", 1);
            w->clean_text = json_bool(norm, "clean_text", 1);
            w->chinese = json_bool(norm, "handle_chinese_chars", 1);
            w->strip_accents = json_bool(norm, "strip_accents", w->lowercase);
        }
    }
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    const cJSON *at;
    cJSON_ArrayForEach(at, added)
    {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(at, "content");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(at, "id");
        if (rc != TSR_OK || w->n_special >= MAX_SPECIAL || !cJSON_IsString(c) ||
            !cJSON_IsNumber(id) || !c->valuestring[0] || id->valuedouble < 0 ||
            id->valuedouble >= (1 << 22))
            continue;
        w->special[w->n_special] = strdup(c->valuestring);
        w->special_id[w->n_special] = (int)id->valuedouble;
        w->special_flag[w->n_special] = json_bool(at, "special", 0);
        if (!w->special[w->n_special] || !set_token(w, (int)id->valuedouble, c->valuestring))
            rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
        else
            w->n_special++;
    }
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    if (cJSON_IsObject(dec)) {
        w->dec_cleanup = json_bool(dec, "cleanup", 1);
        const cJSON *dp = cJSON_GetObjectItemCaseSensitive(dec, "prefix");
        if (cJSON_IsString(dp) && strlen(dp->valuestring) < sizeof w->dec_prefix)
            snprintf(w->dec_prefix, sizeof w->dec_prefix, "%s", dp->valuestring);
    }
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    if (rc == TSR_OK)
        rc = set_ids(w, path, cJSON_IsString(unk) ? unk->valuestring : "[UNK]", err);
out:
    cJSON_Delete(root);
    return rc;
}

/* vocab.txt: one token per line, the id is the line number; text taken over. */
static tsr_status load_txt(tsr_wordpiece *w, char *text, const char *path, tsr_error *err)
{
    size_t lines = 1;
    for (char *p = text; *p; p++)
        lines += *p == '\n';
    tsr_status rc = TSR_OK;
    if (!tsr_smap_init(&w->vocab, lines))
        rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    int id = 0;
    for (char *p = text; *p && rc == TSR_OK; id++) {
        char *e = strchr(p, '\n');
        char *next = e ? e + 1 : p + strlen(p);
        if (e) {
            *e = 0;
            if (e > p && e[-1] == '\r')
                e[-1] = 0;
        }
        if (!tsr_utf8_valid(p, strlen(p), NULL))
            rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s: line %d is not valid UTF-8", path, id + 1);
        else
            rc = add_vocab(w, p, id, path, err);
        p = next;
    }
    free(text);
    if (rc == TSR_OK)
        rc = set_ids(w, path, "[UNK]", err);
    /* BERT's special tokens, as a vocab.txt tokenizer declares them */
    const char *names[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    for (int i = 0; i < 5 && rc == TSR_OK; i++) {
        int id = tsr_smap_get(&w->vocab, names[i]);
        if (id < 0 || w->n_special >= MAX_SPECIAL)
            continue;
        if (!(w->special[w->n_special] = strdup(names[i])))
            rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
        w->special_id[w->n_special] = id;
        w->special_flag[w->n_special++] = 1;
    }
    return rc;
}

static tsr_wordpiece *wordpiece_new(tsr_error *err)
{
    tsr_wordpiece *w = calloc(1, sizeof *w);
    if (!w) {
        tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
        return NULL;
    }
    w->lowercase = w->strip_accents = w->clean_text = w->chinese = 1;
    w->max_word_chars = 100;
    snprintf(w->prefix, sizeof w->prefix, "##");
    snprintf(w->dec_prefix, sizeof w->dec_prefix, "##");
    w->dec_cleanup = 1;
    return w;
}

static tsr_status wordpiece_done(tsr_wordpiece *w, tsr_status rc, tsr_wordpiece **out)
{
    if (rc != TSR_OK) {
        tsr_wordpiece_free(w);
        return rc;
    }
    *out = w;
    return TSR_OK;
}

/* tokenizer_config.json's do_lower_case for a vocab.txt tokenizer; text taken over. */
static tsr_status apply_config(tsr_wordpiece *w, char *text, const char *name, tsr_error *err)
{
    cJSON *root = cJSON_Parse(text);
    free(text);
    tsr_status rc = TSR_OK;
    if (!cJSON_IsObject(root))
        rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s: not valid JSON", name);
    else
        w->lowercase = w->strip_accents = json_bool(root, "do_lower_case", 1);
    cJSON_Delete(root);
    return rc;
}

tsr_status tsr_wordpiece_load_json(const char *json, size_t len, const char *name,
                                   tsr_wordpiece **out, tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    *out = NULL;
    tsr_wordpiece *w = wordpiece_new(err);
    if (!w)
        return err->code;
    char *text = tsr_text_copy(json, len, name, err);
    return wordpiece_done(w, text ? load_json(w, text, name, err) : err->code, out);
}

tsr_status tsr_wordpiece_load_vocab(const char *vocab_txt, size_t len, const char *vocab_name,
                                    const char *config_json, size_t config_len,
                                    const char *config_name, tsr_wordpiece **out,
                                    tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    *out = NULL;
    tsr_wordpiece *w = wordpiece_new(err);
    if (!w)
        return err->code;
    char *text = tsr_text_copy(vocab_txt, len, vocab_name, err);
    tsr_status rc = text ? load_txt(w, text, vocab_name, err) : err->code;
    if (rc == TSR_OK && config_json) {
        char *cfg = tsr_text_copy(config_json, config_len, config_name, err);
        rc = cfg ? apply_config(w, cfg, config_name, err) : err->code;
    }
    return wordpiece_done(w, rc, out);
}

tsr_status tsr_wordpiece_load_dir(const char *dir, tsr_wordpiece **out, tsr_error *err)
{
    *out = NULL;
    tsr_wordpiece *w = wordpiece_new(err);
    if (!w)
        return TSR_ERR_NOMEM;
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "rb");
    tsr_status rc;
    if (f) {
        fclose(f);
        char *text = (char *)tsr_read_file(path, TSR_MAX_TOKENIZER_FILE, NULL, err);
        rc = text ? load_json(w, text, path, err) : TSR_ERR_IO;
    } else {
        snprintf(path, sizeof path, "%s/vocab.txt", dir);
        char *text = (char *)tsr_read_file(path, TSR_MAX_TOKENIZER_FILE, NULL, err);
        rc = text ? load_txt(w, text, path, err) : TSR_ERR_IO;
        /* tokenizer_config.json's do_lower_case, when present */
        snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
        FILE *cf = fopen(path, "rb");
        if (cf) {
            fclose(cf);
            char *cfg = rc == TSR_OK ? (char *)tsr_read_file(path, 1 << 20, NULL, err) : NULL;
            if (rc == TSR_OK)
                rc = cfg ? apply_config(w, cfg, path, err) : TSR_ERR_IO;
        }
    }
    return wordpiece_done(w, rc, out);
}

void tsr_wordpiece_free(tsr_wordpiece *w)
{
    if (!w)
        return;
    tsr_smap_free(&w->vocab);
    for (int i = 0; i < w->n_special; i++)
        free(w->special[i]);
    for (int i = 0; i < w->n_token; i++)
        free(w->token[i]);
    free(w->token);
    free(w);
}

int tsr_wordpiece_vocab_size(const tsr_wordpiece *w) { return w->vocab_size; }
int tsr_wordpiece_pad(const tsr_wordpiece *w) { return w->pad; }

/* ---- normalisation and pre-tokenization ---- */

/* Cc, Cf, Co (tokenizers' is_control; unassigned code points are kept) */
static int is_other(int32_t c)
{
    utf8proc_category_t k = utf8proc_category(c);
    return k == UTF8PROC_CATEGORY_CC || k == UTF8PROC_CATEGORY_CF || k == UTF8PROC_CATEGORY_CO;
}

static int is_chinese(int32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

static int is_punct(int32_t c)
{
    if (c < 0x80)
        return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
               (c >= 123 && c <= 126);
    utf8proc_category_t k = utf8proc_category(c);
    return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

typedef struct {
    int32_t *cp;
    size_t n, cap;
} cps;

static int push(cps *v, int32_t c)
{
    if (v->n == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 64;
        int32_t *p = realloc(v->cp, nc * sizeof *p);
        if (!p)
            return 0;
        v->cp = p;
        v->cap = nc;
    }
    v->cp[v->n++] = c;
    return 1;
}

/* BertNormalizer over s[0..len) into out (code points). */
static int normalize(const tsr_wordpiece *w, const char *s, size_t len, cps *out)
{
    const utf8proc_uint8_t *u = (const utf8proc_uint8_t *)s;
    for (size_t i = 0; i < len;) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate(u + i, (utf8proc_ssize_t)(len - i), &c);
        if (k <= 0)
            return 0; /* validated before */
        i += (size_t)k;
        if (w->clean_text) {
            if (c == 0 || c == 0xFFFD || (c != '\t' && c != '\n' && c != '\r' && is_other(c)))
                continue;
            if (tsr_is_ws(c))
                c = ' ';
        }
        utf8proc_int32_t buf[8];
        utf8proc_ssize_t nd = 1;
        buf[0] = c;
        if (w->strip_accents) {
            int last = 0;
            nd = utf8proc_decompose_char(c, buf, 8, UTF8PROC_DECOMPOSE, &last);
            if (nd < 0 || nd > 8) {
                nd = 1;
                buf[0] = c;
            }
        }
        for (utf8proc_ssize_t j = 0; j < nd; j++) {
            int32_t d = buf[j];
            if (w->strip_accents && utf8proc_category(d) == UTF8PROC_CATEGORY_MN)
                continue;
            int pad = w->chinese && is_chinese(d);
            if (pad && !push(out, ' '))
                return 0;
            if (w->lowercase && d == 0x130) { /* the one multi-character lowercase mapping */
                if (!push(out, 'i') || !push(out, 0x307))
                    return 0;
            } else if (!push(out, w->lowercase ? utf8proc_tolower(d) : d)) {
                return 0;
            }
            if (pad && !push(out, ' '))
                return 0;
        }
    }
    return 1;
}

/* WordPiece over one word of n code points; appends ids (up to cap) and returns
 * how many it produced, or -1 on allocation failure. */
static int word_pieces(const tsr_wordpiece *w, const int32_t *cp, int n, int *ids, int cap,
                       int *count)
{
    if (n > w->max_word_chars) {
        if (*count < cap)
            ids[*count] = w->unk;
        (*count)++;
        return 1;
    }
    size_t plen = strlen(w->prefix);
    char *buf = malloc(plen + (size_t)n * 4 + 1);
    int *tmp = malloc(sizeof(int) * (size_t)n);
    if (!buf || !tmp) {
        free(buf);
        free(tmp);
        return -1;
    }
    int produced = 0, start = 0;
    while (start < n) {
        int end = n, found = -1;
        while (start < end) {
            size_t o = 0;
            if (start > 0) {
                memcpy(buf, w->prefix, plen);
                o = plen;
            }
            for (int i = start; i < end; i++)
                o += (size_t)utf8proc_encode_char(cp[i], (utf8proc_uint8_t *)buf + o);
            buf[o] = 0;
            found = tsr_smap_get(&w->vocab, buf);
            if (found >= 0)
                break;
            end--;
        }
        if (found < 0) {
            produced = -2;
            break;
        }
        tmp[produced++] = found;
        start = end;
    }
    if (produced == -2) { /* some piece is missing: the whole word is unknown */
        tmp[0] = w->unk;
        produced = 1;
    }
    for (int i = 0; i < produced; i++, (*count)++)
        if (*count < cap)
            ids[*count] = tmp[i];
    free(buf);
    free(tmp);
    return produced;
}

/* Normalises, pre-tokenizes and word-pieces s[0..len), appending to ids. */
static int encode_segment(const tsr_wordpiece *w, const char *s, size_t len, int *ids, int cap,
                          int *count)
{
    cps v = {0};
    if (!normalize(w, s, len, &v)) {
        free(v.cp);
        return 0;
    }
    int ok = 1;
    for (size_t i = 0; i < v.n && ok;) {
        if (tsr_is_ws(v.cp[i])) {
            i++;
            continue;
        }
        size_t j = i + 1;
        if (!is_punct(v.cp[i]))
            while (j < v.n && !tsr_is_ws(v.cp[j]) && !is_punct(v.cp[j]))
                j++;
        ok = word_pieces(w, v.cp + i, (int)(j - i), ids, cap, count) >= 0;
        i = j;
    }
    free(v.cp);
    return ok;
}

tsr_status tsr_wordpiece_encode(const tsr_wordpiece *w, const char *text, int max_len, int *ids,
                                int *n, int *truncated, tsr_error *err)
{
    *n = 0;
    if (truncated)
        *truncated = 0;
    if (max_len < 2)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "max_len %d is below 2", max_len);
    size_t len = strlen(text), bad = 0;
    if (!tsr_utf8_valid(text, len, &bad))
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "invalid UTF-8 at byte %zu", bad);
    int cap = max_len - 2, count = 0;
    int *body = ids + 1;
    size_t seg = 0;
    for (size_t i = 0; i <= len;) {
        int sp = -1;
        size_t sl = 0;
        for (int k = 0; i < len && k < w->n_special; k++) {
            size_t l = strlen(w->special[k]);
            if (l > sl && strncmp(text + i, w->special[k], l) == 0) {
                sp = k;
                sl = l;
            }
        }
        if (sp < 0 && i < len) {
            i++;
            continue;
        }
        if (!encode_segment(w, text + seg, i - seg, body, cap, &count))
            return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
        if (sp < 0)
            break;
        if (count < cap)
            body[count] = w->special_id[sp];
        count++;
        i += sl;
        seg = i;
    }
    if (truncated)
        *truncated = count > cap;
    if (count > cap)
        count = cap;
    ids[0] = w->cls;
    ids[count + 1] = w->sep;
    *n = count + 2;
    return TSR_OK;
}

/* ---- decoding ---- */

int tsr_wordpiece_id(const tsr_wordpiece *w, const char *token)
{
    for (int k = 0; k < w->n_special; k++)
        if (strcmp(w->special[k], token) == 0)
            return w->special_id[k];
    return tsr_smap_get(&w->vocab, token);
}

int tsr_wordpiece_size(const tsr_wordpiece *w)
{
    int n = w->vocab_size;
    for (int k = 0; k < w->n_special; k++)
        if (w->special_id[k] + 1 > n)
            n = w->special_id[k] + 1;
    return n;
}

static int is_special(const tsr_wordpiece *w, int id)
{
    for (int k = 0; k < w->n_special; k++)
        if (w->special_id[k] == id && w->special_flag[k])
            return 1;
    return 0;
}

/* A growing string. */
typedef struct {
    char *s;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

/* tokenizers' WordPiece cleanup and transformers' clean_up_tokenization:
 * the same replacements, in order, each over the whole string. */
static const char *const cleanup_from[] = {" .", " ?", " !", " ,", " ' ", " n't", " 'm",
                                           " do not", " 's", " 've", " 're"};
static const char *const cleanup_to[] = {".", "?", "!", ",", "'", "n't", "'m",
                                         " don't", "'s", "'ve", "'re"};

/* Applies replacements [0, n) of the list to s in place (each makes it no longer). */
static void cleanup(char *s, int skip_do_not)
{
    for (size_t r = 0; r < sizeof cleanup_from / sizeof cleanup_from[0]; r++) {
        if (skip_do_not && r == 7)
            continue;
        const char *from = cleanup_from[r], *to = cleanup_to[r];
        size_t fl = strlen(from), tl = strlen(to);
        char *rd = s, *wr = s;
        while (*rd) {
            if (strncmp(rd, from, fl) == 0) {
                memmove(wr, to, tl);
                wr += tl;
                rd += fl;
            } else {
                *wr++ = *rd++;
            }
        }
        *wr = 0;
    }
}

tsr_status tsr_wordpiece_decode(const tsr_wordpiece *w, const int *ids, int n, int skip_special,
                                int clean_up_spaces, char **out, tsr_error *err)
{
    *out = NULL;
    sbuf b = {0};
    sb_put(&b, "", 0);
    size_t pl = strlen(w->dec_prefix);
    char *piece = NULL;
    size_t piece_cap = 0;
    int i = 0; /* tokens kept so far */
    for (int k = 0; k < n && !b.oom; k++) {
        int id = ids[k];
        if (id < 0 || id >= w->n_token || !w->token[id] || (skip_special && is_special(w, id)))
            continue;
        const char *t = w->token[id];
        size_t tl = strlen(t);
        if (tl + 2 > piece_cap) {
            char *p = realloc(piece, tl + 2);
            if (!p) {
                b.oom = 1;
                break;
            }
            piece = p;
            piece_cap = tl + 2;
        }
        if (i > 0 && pl > 0 && strncmp(t, w->dec_prefix, pl) == 0)
            memcpy(piece, t + pl, tl - pl + 1);
        else if (i > 0)
            piece[0] = ' ', memcpy(piece + 1, t, tl + 1);
        else
            memcpy(piece, t, tl + 1);
        if (w->dec_cleanup)
            cleanup(piece, 0);
        sb_put(&b, piece, strlen(piece));
        i++;
    }
    free(piece);
    if (!b.oom && clean_up_spaces)
        cleanup(b.s, 1);
    if (b.oom) {
        free(b.s);
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    }
    *out = b.s;
    return TSR_OK;
}
