/* CLIP byte-level BPE, matching HF CLIPTokenizerFast token for token. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tsr_text.h"
#include "tsr_textutil.h"

#define MAX_VOCAB (1 << 22)

/* ---- tokenizer ---- */

struct tsr_tokenizer {
    tsr_str_map vocab;
    tsr_pair_map merges;
    int byte_id[256], byte_eow_id[256];
    int bos, eos, pad, vocab_size;
    int openclip; /* tsr_tokenizer_set_openclip */
    const char **id_str; /* (id_cap) the vocabulary's strings by id, for decoding */
    int id_cap;
};

static tsr_status finish_load(tsr_tokenizer *t, const char *src, tsr_error *err)
{
    int32_t cp[256];
    tsr_bytes_to_unicode(cp);
    for (int b = 0; b < 256; b++) {
        char s[16];
        int len = (int)utf8proc_encode_char(cp[b], (utf8proc_uint8_t *)s);
        s[len] = 0;
        t->byte_id[b] = tsr_smap_get(&t->vocab, s);
        strcpy(s + len, "</w>");
        t->byte_eow_id[b] = tsr_smap_get(&t->vocab, s);
        if (t->byte_id[b] < 0 || t->byte_eow_id[b] < 0)
            return tsr_error_set(err, TSR_ERR_FORMAT,
                                 "%s: vocabulary lacks the byte token for 0x%02x; not a CLIP "
                                 "byte-level BPE vocabulary",
                                 src, b);
    }
    t->bos = tsr_smap_get(&t->vocab, "<|startoftext|>");
    t->eos = tsr_smap_get(&t->vocab, "<|endoftext|>");
    t->pad = t->eos;
    int top = -1;
    for (size_t i = 0; i < t->vocab.cap; i++)
        if (t->vocab.keys[i] && t->vocab.vals[i] > top)
            top = t->vocab.vals[i];
    t->id_cap = top + 1;
    if (!(t->id_str = calloc((size_t)t->id_cap + 1, sizeof *t->id_str)))
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    for (size_t i = 0; i < t->vocab.cap; i++)
        if (t->vocab.keys[i] && t->vocab.vals[i] >= 0)
            t->id_str[t->vocab.vals[i]] = t->vocab.keys[i];
    if (t->bos < 0 || t->eos < 0)
        return tsr_error_set(err, TSR_ERR_FORMAT,
                             "%s: vocabulary lacks <|startoftext|> or <|endoftext|>", src);
    return TSR_OK;
}

static tsr_status load_vocab_obj(tsr_tokenizer *t, const cJSON *v, const char *src, tsr_error *err)
{
    if (!cJSON_IsObject(v))
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: vocabulary is not a JSON object", src);
    int n = cJSON_GetArraySize(v);
    if (n <= 0 || n > MAX_VOCAB)
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: vocabulary has %d entries", src, n);
    if (!tsr_smap_init(&t->vocab, (size_t)n))
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    for (const cJSON *it = v->child; it; it = it->next) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= MAX_VOCAB)
            return tsr_error_set(err, TSR_ERR_FORMAT, "%s: token \"%s\" has a bad id", src,
                                 it->string);
        int id = (int)it->valuedouble;
        if (!tsr_smap_put(&t->vocab, it->string, id))
            return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
        if (id + 1 > t->vocab_size)
            t->vocab_size = id + 1;
    }
    return TSR_OK;
}

/* vocab.json + merges.txt, both taken over (freed here). */
static tsr_status load_vocab_merges(char *vtext, const char *vname, char *mtext,
                                    const char *mname, tsr_tokenizer **out, tsr_error *err)
{
    *out = NULL;
    tsr_tokenizer *t = calloc(1, sizeof *t);
    tsr_status rc = t ? TSR_OK : tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    cJSON *v = NULL;
    if (rc == TSR_OK) {
        v = cJSON_Parse(vtext);
        rc = load_vocab_obj(t, v, vname, err);
    }
    if (rc == TSR_OK) {
        size_t lines = 1;
        for (const char *c = mtext; *c; c++)
            lines += *c == '\n';
        if (!tsr_pmap_init(&t->merges, lines))
            rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
        int rank = 0;
        for (char *line = mtext; rc == TSR_OK && line && *line;) {
            char *nl = strchr(line, '\n');
            if (nl)
                *nl = 0;
            size_t len = strlen(line);
            if (len && line[len - 1] == '\r')
                line[--len] = 0;
            if (len && strncmp(line, "#version", 8) != 0) {
                char *sp = strchr(line, ' ');
                if (!sp || strchr(sp + 1, ' '))
                    rc = tsr_error_set(err, TSR_ERR_FORMAT,
                                       "%s: line %d is not a merge \"a b\"", mname, rank + 1);
                else {
                    *sp = 0;
                    rc = tsr_merge_add(&t->merges, &t->vocab, line, sp + 1, rank++, 1, mname,
                                       err);
                }
            }
            line = nl ? nl + 1 : NULL;
        }
    }
    cJSON_Delete(v);
    free(vtext);
    free(mtext);
    if (rc == TSR_OK)
        rc = finish_load(t, vname, err);
    if (rc != TSR_OK) {
        tsr_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return TSR_OK;
}

tsr_status tsr_tokenizer_load_files(const char *vocab_json, const char *merges_txt,
                                    tsr_tokenizer **out, tsr_error *err)
{
    *out = NULL;
    char *v = (char *)tsr_read_file(vocab_json, TSR_MAX_TOKENIZER_FILE, NULL, err);
    char *m = v ? (char *)tsr_read_file(merges_txt, TSR_MAX_TOKENIZER_FILE, NULL, err) : NULL;
    if (!m) {
        free(v);
        return err ? err->code : TSR_ERR_IO;
    }
    return load_vocab_merges(v, vocab_json, m, merges_txt, out, err);
}

tsr_status tsr_tokenizer_load_vocab_merges(const char *vocab_json, size_t vocab_len,
                                           const char *vocab_name, const char *merges_txt,
                                           size_t merges_len, const char *merges_name,
                                           tsr_tokenizer **out, tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    *out = NULL;
    char *v = tsr_text_copy(vocab_json, vocab_len, vocab_name, err);
    char *m = v ? tsr_text_copy(merges_txt, merges_len, merges_name, err) : NULL;
    if (!m) {
        free(v);
        return err->code;
    }
    return load_vocab_merges(v, vocab_name, m, merges_name, out, err);
}

/* tokenizer.json text, taken over. */
static tsr_status load_tokenizer_json(char *text, const char *path, tsr_tokenizer **out,
                                      tsr_error *err)
{
    *out = NULL;
    cJSON *root = cJSON_Parse(text);
    free(text);
    tsr_tokenizer *t = calloc(1, sizeof *t);
    tsr_status rc = t ? TSR_OK : tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *suffix = cJSON_GetObjectItemCaseSensitive(model, "end_of_word_suffix");
    if (rc == TSR_OK && (!cJSON_IsObject(root) || !cJSON_IsArray(merges) ||
                         !cJSON_IsString(type) || strcmp(type->valuestring, "BPE") != 0))
        rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s: not a BPE tokenizer.json", path);
    if (rc == TSR_OK && (!cJSON_IsString(suffix) || strcmp(suffix->valuestring, "</w>") != 0))
        rc = tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                           "%s: only CLIP-style BPE (end_of_word_suffix \"</w>\") is supported",
                           path);
    if (rc == TSR_OK)
        rc = load_vocab_obj(t, cJSON_GetObjectItemCaseSensitive(model, "vocab"), path, err);
    if (rc == TSR_OK)
        rc = tsr_merges_load_json(&t->merges, merges, &t->vocab, 1, path, err);
    /* added tokens may extend the vocabulary */
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    for (const cJSON *a = added ? added->child : NULL; a && rc == TSR_OK; a = a->next) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(a, "content");
        if (cJSON_IsNumber(id) && cJSON_IsString(content) && id->valuedouble >= 0 &&
            id->valuedouble < MAX_VOCAB && tsr_smap_get(&t->vocab, content->valuestring) < 0)
            rc = tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                               "%s: added token \"%s\" outside the BPE vocabulary is not "
                               "supported", path, content->valuestring);
    }
    cJSON_Delete(root);
    if (rc == TSR_OK)
        rc = finish_load(t, path, err);
    if (rc != TSR_OK) {
        tsr_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return TSR_OK;
}

tsr_status tsr_tokenizer_load_json(const char *json, size_t len, const char *name,
                                   tsr_tokenizer **out, tsr_error *err)
{
    *out = NULL;
    char *text = tsr_text_copy(json, len, name, err);
    return text ? load_tokenizer_json(text, name, out, err) : (err ? err->code : TSR_ERR_NOMEM);
}

tsr_status tsr_tokenizer_load_dir(const char *dir, tsr_tokenizer **out, tsr_error *err)
{
    char a[4096], b[4096];
    *out = NULL;
    snprintf(a, sizeof a, "%s/tokenizer.json", dir);
    FILE *f = fopen(a, "rb");
    if (f) {
        fclose(f);
        char *text = (char *)tsr_read_file(a, TSR_MAX_TOKENIZER_FILE, NULL, err);
        return text ? load_tokenizer_json(text, a, out, err) : (err ? err->code : TSR_ERR_IO);
    }
    snprintf(a, sizeof a, "%s/vocab.json", dir);
    snprintf(b, sizeof b, "%s/merges.txt", dir);
    return tsr_tokenizer_load_files(a, b, out, err);
}

void tsr_tokenizer_free(tsr_tokenizer *t)
{
    if (!t)
        return;
    tsr_smap_free(&t->vocab);
    tsr_pmap_free(&t->merges);
    free(t->id_str);
    free(t);
}

tsr_status tsr_tokenizer_decode(const tsr_tokenizer *t, const int *ids, int n, char **out,
                                tsr_error *err)
{
    *out = NULL;
    int32_t cp[256], inv[512];
    tsr_bytes_to_unicode(cp);
    for (int i = 0; i < 512; i++)
        inv[i] = -1;
    for (int b = 0; b < 256; b++)
        inv[cp[b]] = b;
    size_t cap = 1;
    for (int i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < t->id_cap && t->id_str[ids[i]])
            cap += strlen(t->id_str[ids[i]]) + 16;
    char *bytes = malloc(cap), *text = NULL;
    if (!bytes)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    size_t nb = 0;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->id_cap || !t->id_str[ids[i]])
            continue;
        const char *s = t->id_str[ids[i]];
        if (t->openclip && ids[i] == t->bos)
            s = "<start_of_text>";
        else if (t->openclip && ids[i] == t->eos)
            s = "<end_of_text>";
        size_t len = strlen(s);
        for (size_t k = 0; k < len;) { /* each character back to its byte */
            utf8proc_int32_t c;
            utf8proc_ssize_t m = utf8proc_iterate((const utf8proc_uint8_t *)s + k,
                                                  (utf8proc_ssize_t)(len - k), &c);
            if (m <= 0)
                break;
            k += (size_t)m;
            if (c >= 0 && c < 512 && inv[c] >= 0)
                bytes[nb++] = (char)inv[c];
        }
    }
    /* '</w>' ends a word: a space, after the bytes are text again */
    size_t w = 0;
    for (size_t i = 0; i < nb;) {
        if (nb - i >= 4 && memcmp(bytes + i, "</w>", 4) == 0) {
            bytes[w++] = ' ';
            i += 4;
        } else {
            bytes[w++] = bytes[i++];
        }
    }
    text = tsr_utf8_lossy(bytes, w);
    free(bytes);
    if (!text)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    *out = text;
    return TSR_OK;
}

int tsr_tokenizer_bos(const tsr_tokenizer *t) { return t->bos; }
int tsr_tokenizer_eos(const tsr_tokenizer *t) { return t->eos; }
int tsr_tokenizer_pad(const tsr_tokenizer *t) { return t->pad; }
int tsr_tokenizer_vocab_size(const tsr_tokenizer *t) { return t->vocab_size; }
void tsr_tokenizer_set_openclip(tsr_tokenizer *t, int on) { t->openclip = on; }

/* ---- encoding ---- */

int tsr_utf8_valid(const char *s, size_t n, size_t *bad_offset)
{
    const utf8proc_uint8_t *u = (const utf8proc_uint8_t *)s;
    for (size_t i = 0; i < n;) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate(u + i, (utf8proc_ssize_t)(n - i), &c);
        if (k < 0) {
            if (bad_offset)
                *bad_offset = i;
            return 0;
        }
        i += (size_t)k;
    }
    return 1;
}

static int is_letter(int32_t c)
{
    utf8proc_category_t k = utf8proc_category(c);
    return k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO;
}

static int is_number(int32_t c)
{
    utf8proc_category_t k = utf8proc_category(c);
    return k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO;
}

tsr_status tsr_tokenizer_encode(const tsr_tokenizer *t, const char *text, int max_len, int *ids,
                                int *n_out, int *truncated, tsr_error *err)
{
    *n_out = 0;
    if (truncated)
        *truncated = 0;
    if (max_len < 2)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "max_len %d is below 2", max_len);
    /* Validate, then NFC. */
    const utf8proc_uint8_t *s = (const utf8proc_uint8_t *)text;
    size_t bad = 0;
    if (!tsr_utf8_valid(text, strlen(text), &bad))
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "text is not valid UTF-8 (bad byte 0x%02x at offset %zu)",
                             s[bad], bad);
    utf8proc_uint8_t *nfc =
        t->openclip ? (utf8proc_uint8_t *)tsr_openclip_clean(text) : utf8proc_NFC(s);
    if (!nfc)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of memory normalising text");
    size_t nlen = strlen((char *)nfc);
    /* Code points after whitespace folding and lowercasing (at most 2 per input). */
    int32_t *cps = malloc(sizeof(int32_t) * (2 * nlen + 1));
    unsigned char *buf = malloc(4 * (2 * nlen + 1));
    int *sym = malloc(sizeof(int) * (4 * (2 * nlen + 1)));
    if (!cps || !buf || !sym) {
        free(nfc);
        free(cps);
        free(buf);
        free(sym);
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of memory tokenizing text");
    }
    size_t nc = 0;
    for (size_t i = 0; i < nlen;) {
        utf8proc_int32_t c;
        i += (size_t)utf8proc_iterate(nfc + i, (utf8proc_ssize_t)(nlen - i), &c);
        if (tsr_is_ws(c)) { /* a run of whitespace becomes one space */
            if (nc == 0 || cps[nc - 1] != ' ')
                cps[nc++] = ' ';
            continue;
        }
        if (c == 0x130) { /* İ lowercases to i + combining dot */
            cps[nc++] = 'i';
            cps[nc++] = 0x307;
            continue;
        }
        cps[nc++] = utf8proc_tolower(c);
    }
    free(nfc);
    /* The special tokens typed in the text: transformers matches these added
     * tokens in the normalised (lowercased) text and splits around them. */
    unsigned char *sp = calloc(nc + 1, 1); /* 1: <|startoftext|> starts here, 2: <|endoftext|> */
    if (!sp) {
        free(cps);
        free(buf);
        free(sym);
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of memory tokenizing text");
    }
    static const char *const hf_special[2] = {"<|startoftext|>", "<|endoftext|>"};
    static const char *const oc_special[2] = {"<start_of_text>", "<end_of_text>"};
    const char *const *special = t->openclip ? oc_special : hf_special;
    for (size_t i = 0; i + 13 <= nc; i++) { /* both spellings are 15 and 13 long */
        if (cps[i] != '<')
            continue;
        for (int k = 0; k < 2 && !sp[i]; k++) {
            size_t L = strlen(special[k]), q = 0;
            while (q < L && i + q < nc && cps[i + q] == (unsigned char)special[k][q])
                q++;
            if (q == L)
                sp[i] = (unsigned char)(k + 1);
        }
    }
    int n = 0, limit = max_len - 1;
    ids[n++] = t->bos;
    int cut = 0, oom = 0;
    tsr_bpe_work work = {0};
    for (size_t i = 0; i < nc && !cut && !oom;) {
        int32_t c = cps[i];
        size_t j = i;
        if (tsr_is_ws(c)) {
            i++;
            continue;
        }
        if (sp[i]) {
            if (n == limit) {
                cut = 1;
                break;
            }
            ids[n++] = sp[i] == 1 ? t->bos : t->eos;
            i += sp[i] == 1 ? 15 : 13;
            continue;
        }
        if (c == '\'' && i + 1 < nc) {
            int32_t d = cps[i + 1];
            int32_t e = i + 2 < nc ? cps[i + 2] : 0;
            if (d == 's' || d == 't' || d == 'm' || d == 'd')
                j = i + 2;
            else if ((d == 'r' && e == 'e') || (d == 'v' && e == 'e') || (d == 'l' && e == 'l'))
                j = i + 3;
        }
        if (j == i) {
            if (is_letter(c)) {
                while (j < nc && is_letter(cps[j]))
                    j++;
            } else if (is_number(c)) {
                j = i + 1;
            } else {
                while (j < nc && !tsr_is_ws(cps[j]) && !is_letter(cps[j]) && !is_number(cps[j]) &&
                       (j == i || t->openclip || !sp[j]))
                    j++;
            }
        }
        int nb = 0;
        for (size_t k = i; k < j; k++)
            nb += (int)utf8proc_encode_char(cps[k], buf + nb);
        for (int k = 0; k < nb; k++) /* the last byte carries the word end */
            sym[k] = k == nb - 1 ? t->byte_eow_id[buf[k]] : t->byte_id[buf[k]];
        int m = tsr_bpe_merge(&t->merges, sym, nb, &work);
        if (m < 0) {
            oom = 1;
            break;
        }
        for (int k = 0; k < m; k++) {
            if (n == limit) {
                cut = 1;
                break;
            }
            ids[n++] = sym[k];
        }
        i = j;
    }
    ids[n++] = t->eos;
    free(sp);
    free(cps);
    free(buf);
    free(sym);
    tsr_bpe_work_free(&work);
    if (oom)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of memory tokenizing text");
    if (truncated)
        *truncated = cut;
    *n_out = n;
    return TSR_OK;
}
