/* The CLIP tokenizer against HF CLIPTokenizerFast: the real vocabulary on a
 * corpus of 2,100 varied strings, and the tiny models' tokenizers from both
 * file layouts (tokenizer.json, vocab.json + merges.txt). */
#include "testutil.h"
#include "tsr_text.h"

static int compare_ids(const tsr_tokenizer *tok, const char *text, const cJSON *ids, int max_len,
                       int verbose)
{
    int got[512], n = 0, cut = 0;
    tsr_error err = {0};
    if (tsr_tokenizer_encode(tok, text, max_len, got, &n, &cut, &err) != TSR_OK) {
        printf("FAIL encode \"%s\": %s\n", text, err.msg);
        return 0;
    }
    int m = cJSON_GetArraySize(ids), ok = m == n;
    for (int i = 0; ok && i < n; i++)
        ok = got[i] == (int)cJSON_GetArrayItem(ids, i)->valuedouble;
    if (!ok && verbose) {
        printf("  mismatch for \"%s\"\n  got:", text);
        for (int i = 0; i < n; i++)
            printf(" %d", got[i]);
        printf("\n  ref:");
        for (int i = 0; i < m; i++)
            printf(" %d", (int)cJSON_GetArrayItem(ids, i)->valuedouble);
        printf("\n");
    }
    return ok;
}

/* Lines {"text", "ids"} of a JSON-lines file that encode to their ids
 * (max length 77); *total: how many lines there were. The first five
 * mismatches are printed. */
static int corpus_match_skip(const tsr_tokenizer *tok, const char *path, int *total,
                             const char *skip_key, int *skipped, int *skipped_match);

static int corpus_match(const tsr_tokenizer *tok, const char *path, int *total)
{
    return corpus_match_skip(tok, path, total, NULL, NULL, NULL);
}

/* The same, counting apart the lines with skip_key true. */
static int corpus_match_skip(const tsr_tokenizer *tok, const char *path, int *total,
                             const char *skip_key, int *skipped, int *skipped_match)
{
    FILE *f = fopen(path, "rb");
    char *line = NULL;
    size_t cap = 0;
    int match = 0, shown = 0;
    *total = 0;
    while (f && getline(&line, &cap, f) > 0) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *text = cJSON_GetObjectItem(j, "text"), *ids = cJSON_GetObjectItem(j, "ids");
        if (skip_key && cJSON_IsTrue(cJSON_GetObjectItem(j, skip_key))) {
            (*skipped)++;
            *skipped_match += compare_ids(tok, text->valuestring, ids, 77, 0);
        } else if (cJSON_IsString(text) && cJSON_IsArray(ids)) {
            (*total)++;
            int ok = compare_ids(tok, text->valuestring, ids, 77, shown < 5);
            match += ok;
            shown += !ok;
        }
        cJSON_Delete(j);
    }
    free(line);
    if (f)
        fclose(f);
    return match;
}

int main(void)
{
    tsr_error err = {0};
    tsr_tokenizer *tok = NULL;
    tsr_status st = tsr_tokenizer_load_files(TSR_FIXTURES "/clip-tokenizer/vocab.json",
                                             TSR_FIXTURES "/clip-tokenizer/merges.txt", &tok, &err);
    check(st == TSR_OK, "load the real CLIP vocabulary %s", st == TSR_OK ? "" : err.msg);
    if (st != TSR_OK)
        return finish();
    check(tsr_tokenizer_vocab_size(tok) == 49408 && tsr_tokenizer_bos(tok) == 49406 &&
              tsr_tokenizer_eos(tok) == 49407,
          "vocabulary of 49408 with <|startoftext|>=49406, <|endoftext|>=49407");
    int total = 0, match = corpus_match(tok, TSR_FIXTURES "/tokenizer_corpus.jsonl", &total);
    check(total >= 2000 && match == total, "corpus: %d of %d strings match token for token",
          match, total);

    /* special tokens typed inside texts (transformers' added-token matching) */
    match = corpus_match(tok, TSR_FIXTURES "/clip-tokenizer/typed_special.jsonl", &total);
    check(total >= 300 && match == total,
          "<|startoftext|> and <|endoftext|> typed in texts: %d of %d strings match "
          "CLIPTokenizerFast token for token",
          match, total);

    /* open_clip's SimpleTokenizer: ftfy, html.unescape twice, Python's lower() */
    tsr_tokenizer_set_openclip(tok, 1);
    int moji = 0, moji_match = 0;
    match = corpus_match_skip(tok, TSR_FIXTURES "/openclip_tokenizer_corpus.jsonl", &total,
                              "mojibake", &moji, &moji_match);
    check(total >= 2100 && match == total,
          "open_clip mode: %d of %d strings match open_clip's tokenizer token for token (%d of "
          "%d more that ftfy's mojibake repair changes, which tessera leaves out)",
          match, total, moji_match, moji);
    check(moji > 0 && moji < 10, "the corpus marks %d strings as mojibake (ftfy fix_encoding)",
          moji);
    tsr_tokenizer_set_openclip(tok, 0);

    /* truncation: content is cut to max_len - 2 and the flag is set */
    int ids[77], n = 0, cut = 0;
    char longtext[2000] = "";
    for (int i = 0; i < 200; i++)
        strcat(longtext, "cat ");
    tsr_tokenizer_encode(tok, longtext, 77, ids, &n, &cut, &err);
    check(n == 77 && cut == 1 && ids[76] == 49407, "long text truncated to 77 with the flag set");
    tsr_tokenizer_encode(tok, "", 77, ids, &n, &cut, &err);
    check(n == 2 && cut == 0 && ids[0] == 49406 && ids[1] == 49407, "empty text is [bos, eos]");
    st = tsr_tokenizer_encode(tok, "bad \xff\xfe utf8", 77, ids, &n, &cut, &err);
    check(st == TSR_ERR_INVALID_ARG && strstr(err.msg, "UTF-8"), "invalid UTF-8 refused: %s",
          err.msg);
    st = tsr_tokenizer_encode(tok, "overlong \xc0\xaf", 77, ids, &n, &cut, &err);
    check(st == TSR_ERR_INVALID_ARG, "overlong UTF-8 encoding refused");
    st = tsr_tokenizer_encode(tok, "surrogate \xed\xa0\x80", 77, ids, &n, &cut, &err);
    check(st == TSR_ERR_INVALID_ARG, "encoded surrogate refused");
    tsr_tokenizer_free(tok);

    /* the tiny models' tokenizers, one per file layout */
    const char *models[] = {"clip-tiny-a", "clip-tiny-b"};
    const int max_len[] = {77, 24};
    for (int mi = 0; mi < 2; mi++) {
        char dir[1024], path[1100];
        snprintf(dir, sizeof dir, "%s/models/%s", TSR_FIXTURES, models[mi]);
        st = tsr_tokenizer_load_dir(dir, &tok, &err);
        check(st == TSR_OK, "%s: load tokenizer %s", models[mi], st == TSR_OK ? "" : err.msg);
        if (st != TSR_OK)
            continue;
        snprintf(path, sizeof path, "%s/expected/texts.json", dir);
        cJSON *j = load_json(path);
        const cJSON *texts = cJSON_GetObjectItem(j, "texts"), *exp = cJSON_GetObjectItem(j, "ids");
        int nt = cJSON_GetArraySize(texts), ok = nt > 0;
        for (int i = 0; i < nt; i++)
            ok &= compare_ids(tok, cJSON_GetArrayItem(texts, i)->valuestring,
                              cJSON_GetArrayItem(exp, i), max_len[mi], 1);
        check(ok, "%s: %d texts match", models[mi], nt);
        cJSON_Delete(j);
        tsr_tokenizer_free(tok);
    }

    /* bad tokenizer files */
    st = tsr_tokenizer_load_dir(TSR_FIXTURES "/images", &tok, &err);
    check(st != TSR_OK && strstr(err.msg, "vocab.json"), "missing tokenizer named: %s", err.msg);
    st = tsr_tokenizer_load_files(TSR_FIXTURES "/images/chelsea.jpg",
                                  TSR_FIXTURES "/clip-tokenizer/merges.txt", &tok, &err);
    check(st == TSR_ERR_FORMAT && strstr(err.msg, "chelsea.jpg"), "corrupt vocab named: %s",
          err.msg);
    /* from memory: each text is named by its own name */
    const char vocab[] = "{\"a\": 0, \"b\": 1, \"ab\": 2}", merges[] = "#version: 0.2\na b c\n";
    st = tsr_tokenizer_load_vocab_merges(vocab, sizeof vocab - 1, "mem/vocab.json", merges,
                                         sizeof merges - 1, "mem/merges.txt", &tok, NULL);
    check(st == TSR_ERR_FORMAT && !tok, "a bad merges text is refused with err = NULL");
    st = tsr_tokenizer_load_vocab_merges(vocab, sizeof vocab - 1, "mem/vocab.json", merges,
                                         sizeof merges - 1, "mem/merges.txt", &tok, &err);
    check(st == TSR_ERR_FORMAT && strstr(err.msg, "mem/merges.txt") &&
              !strstr(err.msg, "mem/vocab.json"),
          "a bad merges text is named as the merges: %s", err.msg);
    tsr_wordpiece *wp = NULL;
    const char wvocab[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n", wcfg[] = "{not json";
    st = tsr_wordpiece_load_vocab(wvocab, sizeof wvocab - 1, "mem/vocab.txt", wcfg,
                                  sizeof wcfg - 1, "mem/tokenizer_config.json", &wp, &err);
    check(st == TSR_ERR_FORMAT && !wp && strstr(err.msg, "mem/tokenizer_config.json"),
          "a bad tokenizer config is named as the config: %s", err.msg);
    return finish();
}
