/* Measured quality of the demo models on their held-out sets: zero-shot
 * accuracy of `tessera classify` (and `tessera eval`) on 150 single shapes
 * over 30 colour+shape labels for shapes-clip and shapes-coca; shapes-clip on
 * 50 two-shape scenes against three distractors each (relation reversed,
 * colours swapped, another shape); shapes-coca's captions of 200 held-out
 * scenes of one or two shapes (tests/fixtures/shapes-captions). */
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tsr_fusion.h"
#include "testutil.h"

#define SHAPES TSR_FIXTURES "/shapes"
#define MODEL TSR_SOURCE_DIR "/assets/models/shapes-clip"
#define COCA TSR_SOURCE_DIR "/assets/models/shapes-coca"
#define CAPTIONS TSR_FIXTURES "/shapes-captions"
/* The captioner's bars: the (exact captions 90%, zero-shot on single
 * shapes no lower than shapes-clip's 95%). */
#define MIN_CAPTION_EXACT 0.90
/* Thresholds sit a little under the accuracy measured when the model was
 * trained (see the README); they catch a broken pipeline, not noise. */
#define MIN_SINGLE 0.95
#define MIN_IMAGENET 0.90
/* Relations are not learned (measured 0.18, chance 0.25): the pairs are
 * reported, not held to a bar. */

typedef struct {
    char file[64], kind[16], label[128], distract[512];
} row;

static int load_rows(row *rows, int max)
{
    FILE *f = fopen(SHAPES "/labels.csv", "r");
    char line[1024];
    int n = 0;
    if (!f || !fgets(line, sizeof line, f))
        return 0;
    while (n < max && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        char *a = strtok(line, ","), *b = strtok(NULL, ","), *c = strtok(NULL, ","),
             *d = strtok(NULL, ",");
        if (!a || !b || !c)
            continue;
        snprintf(rows[n].file, sizeof rows[n].file, "%s", a);
        snprintf(rows[n].kind, sizeof rows[n].kind, "%s", b);
        snprintf(rows[n].label, sizeof rows[n].label, "%s", c);
        snprintf(rows[n].distract, sizeof rows[n].distract, "%s", d ? d : "");
        n++;
    }
    fclose(f);
    return n;
}

/* Runs tessera classify on the single-shape images; returns the accuracy. */
static double classify_singles(const char *model, const row *rows, int n, const char *labels_file,
                               const char *tmpl)
{
    char tmp[] = "/tmp/tessera-shapes-XXXXXX";
    int fd = mkstemp(tmp);
    if (fd < 0)
        return -1;
    close(fd);
    size_t cap = 64 * 1024;
    char *cmd = malloc(cap);
    size_t len = (size_t)snprintf(cmd, cap, "%s classify --model %s --labels-file %s %s --top-k 1 --json",
                                  TSR_CLI, model, labels_file, tmpl);
    int total = 0;
    for (int i = 0; i < n; i++)
        if (strcmp(rows[i].kind, "single") == 0) {
            len += (size_t)snprintf(cmd + len, cap - len, " %s/%s", SHAPES, rows[i].file);
            total++;
        }
    snprintf(cmd + len, cap - len, " > %s", tmp);
    int st = system(cmd);
    free(cmd);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        printf("tessera classify failed\n");
        return -1;
    }
    FILE *f = fopen(tmp, "r");
    char line[4096];
    int correct = 0, seen = 0;
    while (f && fgets(line, sizeof line, f)) {
        cJSON *o = cJSON_Parse(line);
        const char *img = cJSON_GetObjectItem(o, "image")->valuestring;
        const char *top = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "predictions"), 0),
                                              "label")->valuestring;
        for (int i = 0; i < n; i++)
            if (strstr(img, rows[i].file))
                correct += strcmp(rows[i].label, top) == 0;
        seen++;
        cJSON_Delete(o);
    }
    if (f)
        fclose(f);
    unlink(tmp);
    return seen == total ? (double)correct / total : -1;
}

/* tessera eval over the single shapes laid out as an ImageFolder (symbolic
 * links, one folder per label); returns its top-1 accuracy and ECE. */
static double eval_singles(const char *model, const row *rows, int n, double *ece)
{
    char dir[] = "/tmp/tessera-eval-XXXXXX";
    if (!mkdtemp(dir))
        return -1;
    for (int i = 0; i < n; i++) {
        if (strcmp(rows[i].kind, "single") != 0)
            continue;
        char sub[256], link[512], target[512];
        snprintf(sub, sizeof sub, "%s/%s", dir, rows[i].label);
        for (char *c = sub + strlen(dir); *c; c++)
            *c = *c == ' ' ? '_' : *c;
        mkdir(sub, 0755);
        snprintf(link, sizeof link, "%s/%s", sub, rows[i].file);
        snprintf(target, sizeof target, "%s/%s", SHAPES, rows[i].file);
        if (symlink(target, link) != 0)
            return -1;
    }
    char cmd[1024], out[] = "/tmp/tessera-eval-out-XXXXXX";
    int fd = mkstemp(out);
    close(fd);
    snprintf(cmd, sizeof cmd, "%s eval --model %s --labels-from-folders %s --template 'a photo of a {}.' "
                              "--json > %s; rm -rf %s", TSR_CLI, model, dir, out, dir);
    int st = system(cmd);
    char *text = slurp(out);
    unlink(out);
    cJSON *o = cJSON_Parse(text);
    free(text);
    double top1 = o && WIFEXITED(st) && WEXITSTATUS(st) == 0
                      ? cJSON_GetNumberValue(cJSON_GetObjectItem(o, "top1")) : -1;
    *ece = o ? cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "calibration"), "ece")) : -1;
    cJSON_Delete(o);
    return top1;
}

/* tessera caption with its defaults (open_clip's generate(): beam search)
 * on the captioner's 200 held-out scenes: exact-match and word accuracy. */
static void test_captions(const char *search, const char *args, int bar)
{
    FILE *f = fopen(CAPTIONS "/captions.csv", "r");
    static char files[256][64], want[256][128];
    char line[512];
    int n = 0;
    if (f && fgets(line, sizeof line, f))
        while (n < 256 && fgets(line, sizeof line, f)) {
            line[strcspn(line, "\r\n")] = 0;
            char *c = strchr(line, ',');
            if (!c)
                continue;
            *c = 0;
            snprintf(files[n], sizeof files[n], "%.63s", line);
            snprintf(want[n], sizeof want[n], "%.127s", c + 1);
            n++;
        }
    if (f)
        fclose(f);
    check(n >= 200, "held-out caption set of %d scenes", n);
    if (n == 0)
        return;
    size_t cap = 64 * 1024;
    char *cmd = malloc(cap), out[] = "/tmp/tessera-captions-XXXXXX";
    int fd = mkstemp(out);
    close(fd);
    size_t len = (size_t)snprintf(cmd, cap, "%s caption --model %s --json %s", TSR_CLI, COCA, args);
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(cmd + len, cap - len, " %s/%s", CAPTIONS, files[i]);
    snprintf(cmd + len, cap - len, " > %s", out);
    int st = system(cmd);
    free(cmd);
    FILE *o = fopen(out, "r");
    int exact = 0, seen = 0, words = 0, total_words = 0, pair_exact = 0, pairs = 0;
    char buf[4096];
    const char *shown = NULL;
    static char miss[3][256];
    int nmiss = 0;
    while (o && fgets(buf, sizeof buf, o)) {
        cJSON *j = cJSON_Parse(buf);
        const char *img = cJSON_GetStringValue(cJSON_GetObjectItem(j, "image"));
        const char *got = cJSON_GetStringValue(cJSON_GetObjectItem(j, "caption"));
        for (int i = 0; img && got && i < n; i++) {
            if (!strstr(img, files[i]))
                continue;
            seen++;
            int ok = strcmp(got, want[i]) == 0, pair = strncmp(files[i], "pair", 4) == 0;
            exact += ok;
            pairs += pair;
            pair_exact += pair && ok;
            if (!ok && nmiss < 3)
                snprintf(miss[nmiss++], sizeof miss[0], "\"%s\" for \"%s\"", got, want[i]);
            if (!shown && ok && pair)
                shown = want[i];
            /* word accuracy: the reference's words matched at their positions */
            char a[256], b[256];
            snprintf(a, sizeof a, "%s", got);
            snprintf(b, sizeof b, "%s", want[i]);
            char *sa = NULL, *sb = NULL, *wa = strtok_r(a, " ", &sa), *wb = strtok_r(b, " ", &sb);
            for (; wb; wb = strtok_r(NULL, " ", &sb), wa = wa ? strtok_r(NULL, " ", &sa) : NULL) {
                total_words++;
                words += wa && strcmp(wa, wb) == 0;
            }
            break;
        }
        cJSON_Delete(j);
    }
    if (o)
        fclose(o);
    unlink(out);
    double acc = seen ? (double)exact / seen : 0;
    check(WIFEXITED(st) && WEXITSTATUS(st) == 0 && seen == n && (!bar || acc >= MIN_CAPTION_EXACT),
          "shapes-coca: captions of %d held-out scenes (%s): exact %.3f (%s%.2f; two-shape scenes "
          "%d/%d), words %.3f; e.g. \"%s\"", seen, search, acc, bar ? "threshold " : "reported; ",
          bar ? MIN_CAPTION_EXACT : 0.0, pair_exact, pairs,
          total_words ? (double)words / total_words : 0, shown ? shown : "");
    for (int i = 0; i < nmiss; i++)
        printf("     missed: %s\n", miss[i]);
}

int main(void)
{
    static row rows[256];
    int n = load_rows(rows, 256);
    check(n == 200, "held-out set of %d images", n);
    tsr_ctx *ctx = ctx_or_skip();

    /* the 30 single-shape labels */
    char labels_file[] = "/tmp/tessera-labels-XXXXXX";
    int fd = mkstemp(labels_file);
    FILE *lf = fdopen(fd, "w");
    const char *seen[64];
    int nl = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(rows[i].kind, "single") != 0)
            continue;
        int dup = 0;
        for (int k = 0; k < nl; k++)
            dup |= strcmp(seen[k], rows[i].label) == 0;
        if (!dup) {
            seen[nl++] = rows[i].label;
            fprintf(lf, "%s\n", rows[i].label);
        }
    }
    fclose(lf);
    const char *models[2] = {MODEL, COCA}, *names[2] = {"shapes-clip", "shapes-coca"};
    for (int k = 0; k < 2; k++) {
        double acc = classify_singles(models[k], rows, n, labels_file, "--template 'a photo of a {}.'");
        check(acc >= MIN_SINGLE, "%s: single shapes, %d labels, \"a photo of a {}.\": accuracy %.3f "
                                 "(threshold %.2f)", names[k], nl, acc, MIN_SINGLE);
        double ece = 0, eacc = eval_singles(models[k], rows, n, &ece);
        check(eacc == acc, "%s: tessera eval on the same images as an ImageFolder: top-1 %.4f "
                           "(classify: %.4f), ECE %.4f", names[k], eacc, acc, ece);
        double acc80 = classify_singles(models[k], rows, n, labels_file, "--templates imagenet");
        check(acc80 >= MIN_IMAGENET, "%s: single shapes with the 80 ImageNet templates: accuracy %.3f "
                                     "(threshold %.2f)", names[k], acc80, MIN_IMAGENET);
    }
    unlink(labels_file);
    /* greedy search is held to the bar; open_clip's default beam search sums
     * raw logits, which favours longer captions: it lengthens some
     * one-shape captions into two-shape ones, and is reported */
    test_captions("greedy search, --beams 1", "--beams 1", 1);
    test_captions("open_clip's default beam search", "", 0);

    /* compositional scenes, through the library */
    tsr_model *m = NULL;
    tsr_error err = {0};
    if (tsr_model_load(ctx, MODEL, &m, &err) != TSR_OK) {
        check(0, "load %s: %s", MODEL, err.msg);
        return finish();
    }
    tsr_session *s = new_session(m);
    int P = tsr_model_embed_dim(m), pairs = 0, correct = 0;
    float *w = malloc(sizeof(float) * 4 * P), img[1024], probs[4];
    const char *tmpl[] = {"a photo of a {}."};
    for (int i = 0; i < n; i++) {
        if (strcmp(rows[i].kind, "pair") != 0)
            continue;
        char buf[512];
        snprintf(buf, sizeof buf, "%s", rows[i].distract);
        const char *cand[4] = {rows[i].label, strtok(buf, "|"), strtok(NULL, "|"), strtok(NULL, "|")};
        char path[512];
        snprintf(path, sizeof path, "%s/%s", SHAPES, rows[i].file);
        const char *paths[1] = {path};
        if (!cand[3] || tsr_session_zeroshot_weights(s, cand, 4, tmpl, 1, w, NULL, &err) != TSR_OK ||
            tsr_session_embed_image_files(s, paths, 1, 1, img, &err) != TSR_OK) {
            check(0, "pair %s: %s", rows[i].file, err.msg);
            continue;
        }
        tsr_zeroshot_probs(m, img, 1, w, 4, probs);
        int best = 0;
        for (int k = 1; k < 4; k++)
            best = probs[k] > probs[best] ? k : best;
        correct += best == 0;
        pairs++;
    }
    double pacc = pairs ? (double)correct / pairs : 0;
    check(pairs == 50, "two-shape scenes against 3 distractors: %d scored, accuracy %.3f (chance "
                       "0.25; reported only)", pairs, pacc);
    free(w);
    tsr_session_free(s);
    tsr_model_free(m);
    tsr_ctx_free(ctx);
    return finish();
}
