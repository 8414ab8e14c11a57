/* Decoding GPT-2 style byte-level BPE ids (Whisper) back to UTF-8 text. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tsr_text.h"
#include "tsr_textutil.h"

struct tsr_bytelevel {
    char **tok;       /* id -> token string (NULL: unused id) */
    unsigned char *special;
    int size;
    tsr_str_map map;  /* token -> id */
    int unicode_to_byte[324];
};

static void init_bytes(tsr_bytelevel *b)
{
    for (int i = 0; i < 324; i++)
        b->unicode_to_byte[i] = -1;
    int n = 0;
    for (int c = 0; c < 256; c++) {
        int printable = (c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174);
        int cp = printable ? c : 256 + n++;
        b->unicode_to_byte[cp] = c;
    }
}

static tsr_status put(tsr_bytelevel *b, const char *s, int id, int special, const char *path,
                      tsr_error *err)
{
    if (id < 0 || id >= b->size)
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: token id %d out of range", path, id);
    if (!b->tok[id] && !(b->tok[id] = strdup(s)))
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    b->special[id] |= (unsigned char)special;
    if (!tsr_smap_put(&b->map, s, id))
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    return TSR_OK;
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
        if (cJSON_IsNumber(it) && it->valuedouble > max_id && it->valuedouble < (1 << 22))
            max_id = (int)it->valuedouble;
    cJSON_ArrayForEach(it, added)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        if (cJSON_IsNumber(id) && id->valuedouble > max_id && id->valuedouble < (1 << 22))
            max_id = (int)id->valuedouble;
    }
    if (rc == TSR_OK) {
        init_bytes(b);
        b->size = max_id + 1;
        b->tok = calloc((size_t)b->size + 1, sizeof(char *));
        b->special = calloc((size_t)b->size + 1, 1);
        if (!b->tok || !b->special || !tsr_smap_init(&b->map, (size_t)b->size))
            rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    }
    for (it = vocab->child; it && rc == TSR_OK; it = it->next) {
        if (!cJSON_IsNumber(it) || it->valuedouble != (double)(int)it->valuedouble)
            rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s: vocabulary entry '%s' is not an integer",
                               path, it->string);
        else
            rc = put(b, it->string, (int)it->valuedouble, 0, path, err);
    }
    cJSON_ArrayForEach(it, added)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(it, "content");
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(it, "special");
        if (rc == TSR_OK && cJSON_IsNumber(id) && cJSON_IsString(c))
            rc = put(b, c->valuestring, (int)id->valuedouble, cJSON_IsTrue(sp), path, err);
    }
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
    *out = NULL;
    char *text = (char *)tsr_read_file(path, TSR_MAX_TOKENIZER_FILE, NULL, err);
    return text ? load_json(text, path, out, err) : TSR_ERR_IO;
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
    free(b->tok);
    free(b->special);
    tsr_smap_free(&b->map);
    free(b);
}

int tsr_bytelevel_size(const tsr_bytelevel *b) { return b->size; }

int tsr_bytelevel_id(const tsr_bytelevel *b, const char *token)
{
    return tsr_smap_get(&b->map, token);
}

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
        size_t tl = strlen((const char *)t);
        for (size_t j = 0; j < tl;) {
            utf8proc_int32_t c;
            utf8proc_ssize_t k = utf8proc_iterate(t + j, (utf8proc_ssize_t)(tl - j), &c);
            if (k <= 0)
                break;
            j += (size_t)k;
            if (c >= 0 && c < 324 && b->unicode_to_byte[c] >= 0)
                bytes[nb++] = (unsigned char)b->unicode_to_byte[c];
        }
    }
    size_t w = lossy(bytes, nb, text);
    text[w] = 0;
    free(bytes);
    *out = text;
    return TSR_OK;
}
