/* The tessera CLI as a user runs it: help, exit codes, messages for bad
 * input, zero-shot output against the reference, embeddings, tokens, and the
 * kernel cache across processes. */
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

static char tmp[64];
static char out_path[128], err_path[128];
static char *out_text, *err_text;

/* Runs `tessera ARGS` with an optional environment prefix; returns the exit code. */
static int run(const char *env, const char *args)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s %s >%s 2>%s </dev/null", env ? env : "", TSR_CLI, args,
             out_path, err_path);
    int st = system(cmd);
    free(out_text);
    free(err_text);
    out_text = slurp(out_path);
    err_text = slurp(err_path);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void expect(const char *args, int code, const char *in_stderr, const char *what)
{
    int rc = run(NULL, args);
    int ok = rc == code && (!in_stderr || strstr(err_text, in_stderr));
    check(ok, "%s: exit %d (want %d)%s%s", what, rc, code, ok ? "" : ", stderr: ",
          ok ? "" : err_text);
}

#define A TSR_FIXTURES "/models/clip-tiny-a"
#define IMG TSR_FIXTURES "/images/"

static void write_text(const char *name, const char *content, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", tmp, name);
    FILE *f = fopen(path, "wb");
    fputs(content, f);
    fclose(f);
}

static void test_usage(void)
{
    check(run(NULL, "--help") == 0 && strstr(out_text, "classify"), "tessera --help");
    const char *cmds[] = {"classify", "embed", "tokenize", "devices", "tune", "bench",
                          "index", "search", "index add", "index sync", "index export",
                          "caption", "eval"};
    for (int i = 0; i < 13; i++) {
        char args[64], want[64];
        snprintf(args, sizeof args, "%s --help", cmds[i]);
        snprintf(want, sizeof want, "usage: tessera %.*s", (int)strcspn(cmds[i], " "), cmds[i]);
        check(run(NULL, args) == 0 && strstr(out_text, want) && strstr(out_text, "Exit codes"),
              "tessera %s --help", cmds[i]);
    }
    expect("", 2, "usage: tessera", "no command");
    expect("frobnicate", 2, "unknown command 'frobnicate'", "unknown command");
    expect("classify --labels a,b " IMG "chelsea.jpg", 2, "--model DIR is required",
           "classify without --model");
    expect("classify --model " A " " IMG "chelsea.jpg", 2, "--labels", "classify without labels");
    expect("classify --model " A " --labels a --bogus " IMG "chelsea.jpg", 2,
           "unknown option '--bogus'", "unknown option");
    expect("classify --model " A " --labels a --top-k zero " IMG "chelsea.jpg", 2, "--top-k",
           "bad --top-k");
    expect("classify --model " A " --labels a --template nothing-here " IMG "chelsea.jpg", 2,
           "needs {}", "template without {}");
    expect("classify --model " A " --labels \"$(printf 'ok,bad\\377')\" " IMG "chelsea.jpg", 2,
           "not valid UTF-8", "invalid UTF-8 in --labels");
    expect("tokenize --model " A " \"$(printf 'caf\\303')\"", 1, "not valid UTF-8", "invalid UTF-8 text");
    expect("embed --model " A " --text --image x", 2, "exactly one of", "embed mode clash");
    expect("tune --trials many", 2, "--trials", "tune: bad --trials");
    expect("tune --arch ViT-Q-99", 2, "unknown architecture", "tune: unknown architecture");
    expect("tune --shapes 10x20", 2, "--shapes", "tune: a shape without K");
    expect("tune --arch ViT-B-32 --shapes 1x2x3", 2, "one of", "tune: --arch and --shapes");
    expect("tune --batches 1,2,3,4,5,6,7,8,9", 2, "at most 8", "tune: nine batch sizes");
    expect("bench --batches 1,x", 2, "--batches", "bench: bad --batches");
}

static void test_tokenize(void)
{
    cJSON *j = load_json(A "/expected/texts.json");
    const cJSON *ids = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "ids"), 0);
    char want[512] = "";
    for (int i = 0; i < cJSON_GetArraySize(ids); i++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%d", i ? " " : "",
                 (int)cJSON_GetArrayItem(ids, i)->valuedouble);
    int rc = run(NULL, "tokenize --model " A " 'a photo of a cat.'");
    check(rc == 0 && strncmp(out_text, want, strlen(want)) == 0,
          "tokenize matches the reference ids [%s]", want);
    rc = run(NULL, "tokenize --model " TSR_FIXTURES "/models/clip-tiny-b --pad --json 'a cat'");
    int commas = 0;
    for (char *c = out_text; *c; c++)
        commas += *c == ',';
    check(rc == 0 && out_text[0] == '[' && commas == 23 && strstr(out_text, "1513, 1513]"),
          "tokenize --pad fills the 24 positions with the pad token: %s", out_text);
    /* the tokenizer mode follows the layout: a directory of vocab.json and merges.txt
     * alone encodes as CLIPTokenizerFast (tokenizer_corpus.jsonl), an open_clip one as
     * open_clip (openclip_tokenizer_corpus.jsonl) */
    rc = run(NULL, "tokenize --model " TSR_FIXTURES "/clip-tokenizer '\305\223uvre \357\274\220\357\274\221\357\274\222'");
    check(rc == 0 && strncmp(out_text, "49406 129 241 84 17501 171 120 494 171 120 495 171 120 496 49407", 64) == 0,
          "a tokenizer-only directory tokenizes as transformers: %s", out_text);
    rc = run(NULL, "tokenize --model " TSR_FIXTURES "/models/openclip-tiny-a 'Tom &amp; Jerry &lt;3'");
    check(rc == 0 && strncmp(out_text, "1412 580 332 261 73 517 913 283 274 1413", 40) == 0,
          "an open_clip directory tokenizes as open_clip: %s", out_text);
    cJSON_Delete(j);
}

static void test_classify(void)
{
    cJSON *ref = load_json(A "/expected/classify_imagenet.json");
    const cJSON *labels = cJSON_GetObjectItem(ref, "labels");
    char labels_path[256], content[512] = "";
    for (int i = 0; i < cJSON_GetArraySize(labels); i++)
        snprintf(content + strlen(content), sizeof content - strlen(content), "%s\n",
                 cJSON_GetArrayItem(labels, i)->valuestring);
    write_text("labels.txt", content, labels_path, sizeof labels_path);
    char args[2048];
    snprintf(args, sizeof args,
             "classify --model " A " --labels-file %s --templates imagenet --top-k 10 --json "
             IMG "chelsea.jpg " IMG "coffee.png " IMG "grey.png",
             labels_path);
    int rc = run(NULL, args);
    check(rc == 0, "classify --json with 80 templates: exit %d %s", rc, rc ? err_text : "");
    double worst = 0;
    int lines = 0, ok = 1;
    for (char *line = out_text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        cJSON *o = cJSON_Parse(line);
        const cJSON *preds = cJSON_GetObjectItem(o, "predictions");
        const cJSON *probs = cJSON_GetArrayItem(cJSON_GetObjectItem(ref, "probs"), lines);
        ok &= cJSON_GetArraySize(preds) == cJSON_GetArraySize(labels);
        for (const cJSON *p = preds ? preds->child : NULL; p; p = p->next) {
            const char *lab = cJSON_GetObjectItem(p, "label")->valuestring;
            double v = cJSON_GetObjectItem(p, "probability")->valuedouble;
            for (int i = 0; i < cJSON_GetArraySize(labels); i++)
                if (strcmp(cJSON_GetArrayItem(labels, i)->valuestring, lab) == 0) {
                    double d = fabs(v - cJSON_GetArrayItem(probs, i)->valuedouble);
                    worst = d > worst ? d : worst;
                }
        }
        cJSON_Delete(o);
        lines++;
    }
    check(ok && lines == 3 && worst <= 1e-4,
          "classify probabilities match transformers + open_clip templates: max error %.3g", worst);
    cJSON_Delete(ref);

    /* plain text output, top-k */
    rc = run(NULL, "classify --model " A " --labels cat,dog,car --top-k 2 " IMG "chelsea.jpg");
    int shown = count_str(out_text, "\n  0.");
    check(rc == 0 && strstr(out_text, "chelsea.jpg") && shown == 2,
          "text output lists the top 2 labels");

    /* a bad image among good ones: the good ones are still classified */
    char bad[256];
    write_text("not-an-image.jpg", "plain text", bad, sizeof bad);
    snprintf(args, sizeof args, "classify --model " A " --labels cat,dog %s " IMG "coffee.png " IMG
             "../bad/huge.png", bad);
    rc = run(NULL, args);
    check(rc == 1 && strstr(err_text, "not-an-image.jpg: not a PNG, JPEG, WebP, GIF, TIFF or BMP") &&
              strstr(err_text, "huge.png: image declares 60000x60000") &&
              strstr(out_text, "coffee.png"),
          "bad images reported by name, exit 1, good image still classified");
    snprintf(args, sizeof args, "classify --model " A " --labels cat --json %s", bad);
    run(NULL, args);
    check(strstr(out_text, "\"error\"") != NULL, "--json reports a failed image as an error object");

    /* a 16-bit grey PNG clipped as Pillow clips it: decoded, classified, and warned about.
     * make_clip_fixtures.py writes linspace(0, 600, 37 * 53) as uint16 */
    int over = 0;
    for (int i = 0; i < 37 * 53; i++)
        over += (int)(600.0 * i / (37 * 53 - 1)) > 255;
    char want16[160];
    snprintf(want16, sizeof want16, "grey16.png: a 16-bit greyscale image; %d of its %d pixels",
             over, 37 * 53);
    rc = run(NULL, "classify --model " A " --labels cat,dog " IMG "grey16.png " IMG "chelsea.jpg");
    check(rc == 0 && strstr(err_text, want16) && count_str(err_text, "warning") == 1 &&
              strstr(out_text, "grey16.png"),
          "16-bit grey PNG classified with one warning naming it (%d pixels clipped): %s", over,
          err_text);
    rc = run(NULL, "embed --model " A " --image " IMG "grey16.png");
    check(rc == 0 && strstr(err_text, want16), "embed warns about it too: %s", err_text);

    char badlabels[256];
    write_text("bad-labels.txt", "cat\ndog\xff\n", badlabels, sizeof badlabels);
    snprintf(args, sizeof args, "classify --model " A " --labels-file %s " IMG "coffee.png", badlabels);
    rc = run(NULL, args);
    check(rc == 1 && strstr(err_text, "bad-labels.txt: line 2 is not valid UTF-8"),
          "invalid UTF-8 in a labels file named with its line: exit %d", rc);
    expect("classify --model /no/such/model --labels a " IMG "coffee.png", 1,
           "/no/such/model: model directory not found", "missing model directory");
    expect("classify --model " A " --labels a --device 99 " IMG "coffee.png", 1,
           "device 99 does not exist", "device index out of range");
    expect("classify --model " A " --labels a --device no-such-gpu " IMG "coffee.png", 1,
           "no OpenCL device matches", "device name without a match");
    rc = run(NULL, "classify --model " TSR_FIXTURES "/models/clip-tiny-b --labels \"$(printf 'x %.0s' $(seq 40))\" "
                   IMG "coffee.png");
    check(rc == 0 && strstr(err_text, "truncated"), "long prompt truncated with a warning");
}

/* Probabilities of one classify --json line, in the order of labels. */
static int json_probs(const char *line, const char *const *labels, int L, double *p)
{
    cJSON *o = cJSON_Parse(line);
    int n = 0;
    for (const cJSON *e = cJSON_GetObjectItem(o, "predictions") ? cJSON_GetObjectItem(o, "predictions")->child
                                                                 : NULL;
         e; e = e->next)
        for (int l = 0; l < L; l++)
            if (strcmp(cJSON_GetObjectItem(e, "label")->valuestring, labels[l]) == 0) {
                p[l] = cJSON_GetObjectItem(e, "probability")->valuedouble;
                n++;
            }
    cJSON_Delete(o);
    return n == L;
}

/* classify --temperature, and tessera eval on a small ImageFolder: its
 * accuracy, ECE and fitted temperature against what classify prints for the
 * same images, the reliability PNG, corruptions, and the usage errors. */
static void test_eval(void)
{
    /* classify --temperature T: p_T proportional to p_1^(1/T) */
    const char *lab3[3] = {"cat", "coffee cup", "grey thing"};
    double p1[3], p2[3];
    int rc = run(NULL, "classify --model " A " --labels 'cat,coffee cup,grey thing' --json " IMG "chelsea.jpg");
    int ok = rc == 0 && json_probs(out_text, lab3, 3, p1);
    rc = run(NULL, "classify --model " A " --labels 'cat,coffee cup,grey thing' --json --temperature 2.5 "
                   IMG "chelsea.jpg");
    ok = ok && rc == 0 && json_probs(out_text, lab3, 3, p2);
    double s = 0, maxe = 0;
    for (int l = 0; l < 3; l++)
        s += pow(p1[l], 1 / 2.5);
    for (int l = 0; ok && l < 3; l++)
        maxe = fmax(maxe, fabs(p2[l] - pow(p1[l], 1 / 2.5) / s));
    check(ok && maxe < 1e-5, "classify --temperature 2.5 = softmax(logits / 2.5): max error %.2e", maxe);
    expect("classify --model " A " --labels a --temperature 0 " IMG "coffee.png", 2, "--temperature",
           "classify --temperature 0");

    /* an ImageFolder: 3 classes, 7 images and one corrupt file; a held-out set */
    const char *cls[3] = {"cat", "coffee_cup", "grey_thing"};
    const char *files[3][3] = {{"chelsea.jpg", "astronaut.jpg", "tall.jpg"},
                               {"coffee.png", "small.png", NULL},
                               {"grey.png", "grey.jpg", NULL}};
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/ev %s/ho", tmp, tmp);
    ok = system(cmd) == 0;
    for (int c = 0; c < 3; c++) {
        snprintf(cmd, sizeof cmd, "mkdir -p %s/ev/%s %s/ho/%s", tmp, cls[c], tmp, cls[c]);
        ok &= system(cmd) == 0;
        for (int i = 0; i < 3 && files[c][i]; i++) {
            snprintf(cmd, sizeof cmd, "cp %s%s %s/ev/%s/ && cp %s%s %s/ho/%s/h%d_%s", IMG, files[c][i],
                     tmp, cls[c], IMG, files[c][i], tmp, cls[c], i, files[c][i]);
            ok &= system(cmd) == 0;
        }
    }
    /* the held-out set differs: noise images as cats */
    snprintf(cmd, sizeof cmd, "cp %snoise_80x73.png %snoise_73x80.png %s/ho/cat/ && "
                              "printf '\\377\\330\\377\\340 cut short' > %s/ev/cat/zz_broken.jpg",
             IMG, IMG, tmp, tmp);
    ok &= system(cmd) == 0;
    check(ok, "ImageFolder layout written under %s", tmp);
    char args[2048];
    snprintf(args, sizeof args, "eval --model " A " --labels-from-folders %s/ev --calibrate %s/ho "
                                "--corruptions --reliability %s/rel.png --json --bins 10", tmp, tmp, tmp);
    rc = run(NULL, args);
    cJSON *o = cJSON_Parse(out_text ? out_text : "");
    check(rc == 1 && o && strstr(err_text, "zz_broken.jpg: corrupt JPEG"),
          "eval --json: exit 1 for the corrupt file, named on stderr (exit %d): %s", rc, err_text);
    int n = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(o, "images"));
    double top1 = cJSON_GetNumberValue(cJSON_GetObjectItem(o, "top1"));
    const cJSON *cal = cJSON_GetObjectItem(o, "calibration");
    const cJSON *calib = cJSON_GetObjectItem(o, "calibrated");
    double ece = cJSON_GetNumberValue(cJSON_GetObjectItem(cal, "ece"));
    double T = cJSON_GetNumberValue(cJSON_GetObjectItem(calib, "temperature"));
    double nll_after = cJSON_GetNumberValue(
        cJSON_GetObjectItem(cJSON_GetObjectItem(calib, "heldout_after"), "nll"));
    check(n == 7 && cJSON_GetNumberValue(cJSON_GetObjectItem(o, "failed")) == 1 &&
              cJSON_GetArraySize(cJSON_GetObjectItem(o, "confusion")) == 3 &&
              cJSON_GetArraySize(cJSON_GetObjectItem(o, "corruptions")) == 9 &&
              cJSON_GetArraySize(cJSON_GetObjectItem(cal, "bins")) == 10,
          "eval: 7 images, 1 failed, a 3x3 confusion matrix, 10 bins, 9 corrupted runs");

    /* the same numbers from classify's probabilities */
    const char *labs[3] = {"cat", "coffee cup", "grey thing"};
    int right = 0, seen = 0, bcount[10] = {0}, bright[10] = {0};
    double bconf[10] = {0};
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 3 && files[c][i]; i++) {
            snprintf(args, sizeof args, "classify --model " A " --labels 'cat,coffee cup,grey thing' "
                                        "--json %s/ev/%s/%s", tmp, cls[c], files[c][i]);
            double p[3];
            if (run(NULL, args) != 0 || !json_probs(out_text, labs, 3, p))
                continue;
            int best = 0;
            for (int l = 1; l < 3; l++)
                best = p[l] > p[best] ? l : best;
            int b = (int)ceil(p[best] * 10) - 1;
            b = b < 0 ? 0 : b > 9 ? 9 : b;
            bcount[b]++;
            bconf[b] += p[best];
            bright[b] += best == c;
            right += best == c;
            seen++;
        }
    double e2 = 0;
    for (int b = 0; b < 10; b++)
        if (bcount[b])
            e2 += fabs((double)bright[b] / bcount[b] - bconf[b] / bcount[b]) * bcount[b] / seen;
    check(seen == 7 && fabs(top1 - (double)right / seen) < 1e-12 && fabs(ece - e2) < 1e-5,
          "eval's top-1 %.4f and ECE %.6f equal classify's (%d/%d, ECE %.6f)", top1, ece, right, seen, e2);

    /* the fitted temperature minimises the held-out NLL that classify --temperature gives */
    double nll[3] = {0};
    const double f[3] = {1, 0.9, 1.1};
    const char *hcls[3][5] = {{"h0_chelsea.jpg", "h1_astronaut.jpg", "h2_tall.jpg", "noise_80x73.png",
                               "noise_73x80.png"},
                              {"h0_coffee.png", "h1_small.png"},
                              {"h0_grey.png", "h1_grey.jpg"}};
    int hn = 0;
    for (int k = 0; k < 3; k++)
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < 5 && hcls[c][i]; i++) {
                snprintf(args, sizeof args, "classify --model " A " --labels 'cat,coffee cup,grey thing' "
                                            "--json --temperature %.17g %s/ho/%s/%s", T * f[k], tmp, cls[c],
                         hcls[c][i]);
                double p[3];
                if (run(NULL, args) == 0 && json_probs(out_text, labs, 3, p)) {
                    nll[k] -= log(p[c]);
                    hn += k == 0;
                }
            }
    nll[0] /= hn, nll[1] /= hn, nll[2] /= hn;
    check(hn == 9 && fabs(nll[0] - nll_after) < 1e-5 && nll[0] < nll[1] && nll[0] < nll[2],
          "fitted T %.4f: held-out NLL %.6f through classify --temperature (eval: %.6f), %.6f at 0.9 T, "
          "%.6f at 1.1 T", T, nll[0], nll_after, nll[1], nll[2]);
    cJSON_Delete(o);

    char png[512];
    snprintf(png, sizeof png, "%s/rel.png", tmp);
    snprintf(args, sizeof args, "embed --model " A " --image %s", png);
    rc = run(NULL, args);
    FILE *pf = fopen(png, "rb");
    unsigned char head[24] = {0};
    size_t got = pf ? fread(head, 1, 24, pf) : 0;
    if (pf)
        fclose(pf);
    int w = got == 24 ? head[16] << 24 | head[17] << 16 | head[18] << 8 | head[19] : 0;
    check(rc == 0 && w == 920, "the reliability PNG decodes (two panels, %d px wide)", w);

    /* text output */
    snprintf(args, sizeof args, "eval --model " A " --labels-from-folders %s/ev --template 'a {}'", tmp);
    rc = run(NULL, args);
    check(rc == 1 && strstr(out_text, "top-1 accuracy") && strstr(out_text, "ECE") &&
              strstr(out_text, "confusion matrix") && strstr(out_text, "coffee_cup"),
          "eval prints accuracy, calibration, per-class accuracy and the matrix");

    /* errors */
    expect("eval --model " A, 2, "--labels-from-folders", "eval without a folder");
    snprintf(args, sizeof args, "eval --model " A " --labels-from-folders %s/ev --bins 0", tmp);
    expect(args, 2, "--bins", "eval --bins 0");
    snprintf(args, sizeof args, "eval --model " A " --labels-from-folders %s/ev --calibrate %s/ho "
                                "--temperature 2", tmp, tmp);
    expect(args, 2, "not both", "eval --calibrate with --temperature");
    snprintf(args, sizeof args, "eval --model " A " --labels-from-folders %s/ev/cat", tmp);
    expect(args, 1, "has no class folders", "eval on a folder without class folders");
    snprintf(cmd, sizeof cmd, "mkdir -p %s/ho2/dog && cp %schelsea.jpg %s/ho2/dog/", tmp, IMG, tmp);
    if (system(cmd) == 0) {
        snprintf(args, sizeof args, "eval --model " A " --labels-from-folders %s/ev --calibrate %s/ho2",
                 tmp, tmp);
        expect(args, 1, "ho2/dog: not one of the 3 classes", "a held-out class the set does not have");
    }
}

#define BLIP TSR_FIXTURES "/models/blip-tiny"
#define COCA TSR_FIXTURES "/models/coca-tiny-a"

/* CoCa captions through the CLI: open_clip generate()'s defaults and the
 * model card's decoding, then the settings it refuses. */
static void test_caption_coca(void)
{
    cJSON *ref = load_json(COCA "/expected/captions.json");
    const cJSON *images = cJSON_GetObjectItem(ref, "images"), *text = cJSON_GetObjectItem(ref, "beam_text");
    char args[4096], want[4096];
    int n = snprintf(args, sizeof args, "caption --model " COCA), w = 0;
    for (int i = 0; i < cJSON_GetArraySize(images); i++) {
        n += snprintf(args + n, sizeof args - (size_t)n, " %s/%s", TSR_FIXTURES,
                      cJSON_GetArrayItem(images, i)->valuestring);
        w += snprintf(want + w, sizeof want - (size_t)w, "%s/%s\t%s\n", TSR_FIXTURES,
                      cJSON_GetArrayItem(images, i)->valuestring,
                      cJSON_GetArrayItem(text, i)->valuestring);
    }
    int rc = run(NULL, args);
    check(rc == 0 && strcmp(out_text, want) == 0,
          "caption with a CoCa: open_clip generate()'s captions, decoded as its model card does "
          "%s", rc ? err_text : "");
    cJSON_Delete(ref);
    expect("caption --model " COCA " --beams 4 --beam-groups 3 " IMG "coffee.png", 2, "groups",
           "CoCa: 4 beams in 3 groups");
    expect("caption --model " COCA " --max-length 34 " IMG "coffee.png", 2, "positions",
           "CoCa: --max-length past the text positions");
    expect("caption --model " BLIP " --beam-groups 2 " IMG "coffee.png", 2, "CoCa",
           "--beam-groups with BLIP");
    expect("caption --model " COCA " --early-stopping true " IMG "coffee.png", 2, "BLIP",
           "CoCa: --early-stopping refused");
    expect("caption --model " COCA " --min-length 30 " IMG "coffee.png", 2, "min_length",
           "CoCa: --min-length at the length limit (open_clip asserts)");
    expect("caption --model " COCA " --beams 1 --prompt 'wow!!!!!!' " IMG "coffee.png", 1,
           "token 0", "CoCa: a prompt holding token 0");
    rc = run(NULL, "classify --model " COCA " --labels cat,dog " IMG "coffee.png");
    check(rc == 0 && strstr(out_text, "cat"), "classify with a CoCa %s", rc ? err_text : "");
}

/* Captions through the CLI against generate(): the JSON ids and the text
 * lines, a bad image among good ones, and settings the model refuses. */
static void test_caption(void)
{
    cJSON *ref = load_json(BLIP "/expected/generate.json");
    const cJSON *sets = cJSON_GetObjectItem(ref, "settings"), *beam = NULL, *greedy = NULL;
    for (const cJSON *st = sets ? sets->child : NULL; st; st = st->next) {
        const char *name = cJSON_GetObjectItem(st, "name")->valuestring;
        if (strcmp(name, "beam3-prompt") == 0)
            beam = st;
        if (strcmp(name, "greedy-long") == 0)
            greedy = st;
    }
    const cJSON *images = cJSON_GetObjectItem(ref, "images");
    char args[4096];
    int n = snprintf(args, sizeof args, "caption --model " BLIP " --beams 3 --prompt 'a picture "
                     "of' --json");
    for (int i = 0; i < cJSON_GetArraySize(images); i++)
        n += snprintf(args + n, sizeof args - (size_t)n, " " IMG "%s",
                      cJSON_GetArrayItem(images, i)->valuestring);
    int rc = run(NULL, args), lines = 0, same = 0;
    for (char *line = out_text; line && *line;
         line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        cJSON *o = cJSON_Parse(line);
        const cJSON *want = cJSON_GetArrayItem(cJSON_GetObjectItem(beam, "results"), lines);
        char *a = cJSON_PrintUnformatted(cJSON_GetObjectItem(o, "ids"));
        char *b = cJSON_PrintUnformatted(cJSON_GetObjectItem(want, "ids"));
        same += a && b && strcmp(a, b) == 0 &&
                strcmp(cJSON_GetObjectItem(o, "caption")->valuestring,
                       cJSON_GetObjectItem(want, "caption")->valuestring) == 0;
        free(a), free(b);
        cJSON_Delete(o);
        lines++;
    }
    check(rc == 0 && lines == 5 && same == 5,
          "caption --beams 3 --prompt --json: %d of %d lines as generate() %s", same, lines,
          rc ? err_text : "");
    snprintf(args, sizeof args, "caption --model " BLIP " --max-length 40 " IMG "%s " IMG "%s",
             cJSON_GetArrayItem(images, 2)->valuestring, cJSON_GetArrayItem(images, 3)->valuestring);
    rc = run(NULL, args);
    char want[1024];
    snprintf(want, sizeof want, IMG "%s\t%s\n" IMG "%s\t%s\n",
             cJSON_GetArrayItem(images, 2)->valuestring,
             cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(greedy, "results"), 2),
                                 "caption")->valuestring,
             cJSON_GetArrayItem(images, 3)->valuestring,
             cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(greedy, "results"), 3),
                                 "caption")->valuestring);
    check(rc == 0 && strcmp(out_text, want) == 0, "caption text lines (greedy, --max-length 40) "
          "as generate(): \"%s\"", out_text);
    cJSON_Delete(ref);

    char bad[256];
    write_text("not-an-image.png", "plain text", bad, sizeof bad);
    snprintf(args, sizeof args, "caption --model " BLIP " --json %s " IMG "coffee.png", bad);
    rc = run(NULL, args);
    check(rc == 1 && strstr(err_text, "not-an-image.png: not a PNG, JPEG, WebP, GIF, TIFF or BMP") &&
              strstr(out_text, "\"error\"") && strstr(out_text, "coffee.png\",\"caption\""),
          "a bad image reported by name, exit 1, the good one still captioned");
    expect("caption --model " BLIP " --prompt \"$(printf 'x %.0s' $(seq 60))\" " IMG "coffee.png",
           2, "the prompt has more than", "a prompt longer than the model's positions");
    expect("caption --model " BLIP " --sample --temperature 1e-45 " IMG "coffee.png", 2,
           "--temperature", "a temperature that would overflow the scores");
    expect("caption --model " BLIP " --sample --seed 18446744073709551616 " IMG "coffee.png", 2,
           "--seed", "a seed past 64 bits");
    expect("bench --model " BLIP " --seconds nan", 2, "--seconds", "bench --seconds nan");
    expect("bench --model " BLIP " --tower bogus", 2, "--tower", "bench --tower bogus");
    char odd[256];
    snprintf(odd, sizeof odd, "%s/bad\377name.png", tmp);
    snprintf(args, sizeof args, "cp " IMG "coffee.png '%s'", odd);
    if (system(args) == 0) {
        snprintf(args, sizeof args, "caption --model " BLIP " --json '%s'", odd);
        rc = run(NULL, args);
        cJSON *jo = cJSON_Parse(out_text);
        const cJSON *im = cJSON_GetObjectItem(jo, "image");
        check(rc == 0 && cJSON_IsString(im) && strstr(im->valuestring, "bad\xef\xbf\xbdname"),
              "--json with a non-UTF-8 file name: valid JSON, U+FFFD in the name");
        cJSON_Delete(jo);
    }
    expect("caption --model " BLIP " --max-length 99 " IMG "coffee.png", 2, "max_length 99",
           "--max-length past the position table");
    expect("caption --model " BLIP " --beams 17 " IMG "coffee.png", 2, "--beams", "--beams 17");
    expect("caption --model " BLIP " --early-stopping maybe " IMG "coffee.png", 2,
           "--early-stopping", "--early-stopping maybe");
    expect("caption --model " BLIP " --prompt \"$(printf 'a\377')\" " IMG "coffee.png", 2,
           "not valid UTF-8", "an invalid UTF-8 prompt");
    expect("caption --model " A " " IMG "coffee.png", 2, "needs a BLIP", "caption with CLIP");
    expect("caption --model " BLIP " --sample --top-p 1.5 " IMG "coffee.png", 2, "--top-p",
           "--top-p 1.5");
    expect("caption --model " BLIP " --top-k 5 " IMG "coffee.png", 2, "need --sample",
           "--top-k without --sample");
    expect("caption --model " BLIP " --num-captions 3 " IMG "coffee.png", 2, "--beams",
           "--num-captions past the beams");
    rc = run(NULL, "caption --model " BLIP " --sample --seed 42 --num-captions 4 " IMG "coffee.png");
    char *first = strdup(out_text);
    int rc2 = run(NULL, "caption --model " BLIP " --sample --seed 42 --num-captions 4 " IMG
                        "coffee.png");
    int nl = 0;
    for (const char *q = first; *q; q++)
        nl += *q == '\n';
    check(rc == 0 && rc2 == 0 && nl == 4 && strcmp(first, out_text) == 0,
          "--sample --seed 42 --num-captions 4: 4 lines, the same in a second process");
    free(first);
    rc = run(NULL, "caption --model " BLIP " --beams 4 --num-captions 3 --json " IMG "coffee.png");
    cJSON *o = cJSON_Parse(out_text);
    check(rc == 0 && cJSON_GetArraySize(cJSON_GetObjectItem(o, "captions")) == 3,
          "--beams 4 --num-captions 3 --json: three captions with their scores");
    cJSON_Delete(o);
    expect("classify --model " BLIP " --labels a " IMG "coffee.png", 2, "needs a CLIP",
           "classify with BLIP");
}

/* Bad files through the CLI: the message names the file, the exit code is 1. */
static void test_bad_files(void)
{
    char args[2048], p[512], q[512];
    /* truncated and corrupt images */
    FILE *f = fopen(IMG "coffee.png", "rb");
    unsigned char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    snprintf(p, sizeof p, "%s/truncated.png", tmp);
    f = fopen(p, "wb");
    fwrite(buf, 1, n / 3, f);
    fclose(f);
    f = fopen(IMG "chelsea.jpg", "rb");
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    snprintf(q, sizeof q, "%s/truncated.jpg", tmp);
    f = fopen(q, "wb");
    fwrite(buf, 1, n / 2, f);
    fclose(f);
    snprintf(args, sizeof args, "classify --model " A " --labels a,b %s", p);
    int rc = run(NULL, args);
    check(rc == 1 && strstr(err_text, "truncated.png: corrupt PNG"), "truncated PNG: exit %d, %s",
          rc, err_text);
    snprintf(args, sizeof args, "classify --model " A " --labels a,b %s", q);
    rc = run(NULL, args);
    check(rc == 1 && strstr(err_text, "truncated.jpg: corrupt JPEG"), "truncated JPEG: exit %d, %s",
          rc, err_text);

    /* broken checkpoints in a copy of the model directory */
    char dir[256];
    snprintf(dir, sizeof dir, "%s/model", tmp);
    mkdir(dir, 0755);
    const char *files[] = {"tokenizer.json", "preprocessor_config.json", "config.json"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, A "/%s", files[i]);
        snprintf(q, sizeof q, "%s/%s", dir, files[i]);
        copy_text(p, q, NULL, NULL);
    }
    struct {
        const char *what, *header, *needle;
        unsigned long long hlen;
    } cases[] = {
        {"bad header length", "{}", "bad header length", 1ULL << 40},
        {"out-of-range offsets",
         "{\"logit_scale\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4000]}}",
         "out-of-range offsets", 0},
    };
    for (int c = 0; c < 2; c++) {
        snprintf(p, sizeof p, "%s/model.safetensors", dir);
        f = fopen(p, "wb");
        unsigned long long hl = cases[c].hlen ? cases[c].hlen : strlen(cases[c].header);
        for (int i = 0; i < 8; i++)
            fputc((int)((hl >> (8 * i)) & 0xff), f);
        fputs(cases[c].header, f);
        fputs("abcd", f);
        fclose(f);
        snprintf(args, sizeof args, "classify --model %s --labels a " IMG "coffee.png", dir);
        rc = run(NULL, args);
        check(rc == 1 && strstr(err_text, "model.safetensors") && strstr(err_text, cases[c].needle),
              "checkpoint with %s: exit %d, %s", cases[c].what, rc, err_text);
    }
    snprintf(args, sizeof args, "cp " A "/model.safetensors %s", p);
    if (system(args) != 0)
        printf("cp failed\n");
    snprintf(q, sizeof q, "%s/config.json", dir);
    copy_text(A "/config.json", q, "\"hidden_size\": 48", "\"hidden_size\": 52");
    snprintf(args, sizeof args, "classify --model %s --labels a " IMG "coffee.png", dir);
    rc = run(NULL, args);
    check(rc == 1 && strstr(err_text, "model.safetensors: tensor 'vision_model.") &&
              strstr(err_text, "config expects"),
          "tensor of the wrong shape: exit %d, %s", rc, err_text);
    /* legacy configs (eos_token_id 2) pool at the highest id, which is the end token here */
    copy_text(A "/config.json", q, "\"eos_token_id\": 1513", "\"eos_token_id\": 2");
    char npy[256];
    snprintf(npy, sizeof npy, "%s/legacy.npy", tmp);
    snprintf(args, sizeof args, "embed --model %s --text --out %s 'a photo of a cat.'", dir, npy);
    rc = run(NULL, args);
    int nd;
    long dims[4];
    float *got = rc == 0 ? load_npy(npy, &nd, dims) : NULL;
    float *ref = load_npy(A "/expected/text_embeds.npy", &nd, dims);
    double nrm = 0, worst = 0;
    for (int i = 0; ref && i < 24; i++)
        nrm += (double)ref[i] * ref[i];
    for (int i = 0; got && i < 24; i++) {
        double d = fabs(got[i] - ref[i] / sqrt(nrm));
        worst = d > worst ? d : worst;
    }
    check(got && worst <= 1e-4, "legacy eos_token_id=2 pooling gives the reference: max error %.3g",
          worst);
    free(got);
    free(ref);
    /* weights holding NaN and Inf are refused at load, naming the tensor */
    copy_text(A "/config.json", q, NULL, NULL);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    {
        size_t len = 0;
        unsigned char *st = read_bytes(p, &len);
        unsigned long long hl = 0;
        for (int i = 0; st && len > 8 && i < 8; i++)
            hl |= (unsigned long long)st[i] << (8 * i);
        char *h = st && hl < len ? strndup((char *)st + 8, (size_t)hl) : NULL;
        cJSON *hj = h ? cJSON_Parse(h) : NULL;
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(hj, "text_model.encoder.layers.0.mlp.fc1.weight");
        const cJSON *off = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
        size_t at = cJSON_IsArray(off) ? (size_t)cJSON_GetArrayItem(off, 0)->valuedouble : 0;
        if (st && cJSON_IsArray(off)) {
            const unsigned char nan[4] = {0, 0, 0xc0, 0x7f}, inf[4] = {0, 0, 0x80, 0xff};
            for (int k = 0; k < 3; k++)
                memcpy(st + 8 + hl + at + 4 * (size_t)(5 + k * 7), nan, 4);
            memcpy(st + 8 + hl + at + 4 * 40, inf, 4);
            FILE *w = fopen(p, "wb");
            fwrite(st, 1, len, w);
            fclose(w);
        }
        cJSON_Delete(hj);
        free(h);
        free(st);
        snprintf(args, sizeof args, "classify --model %s --labels a " IMG "coffee.png", dir);
        rc = run(NULL, args);
        check(rc == 1 && strstr(err_text, "model.safetensors: tensor 'text_model.encoder.layers.0.mlp.fc1.weight'") &&
                  strstr(err_text, "3 NaN and 1 infinite") && strstr(err_text, "element 5"),
              "weights with NaN and Inf: exit %d, %s", rc, err_text);
    }
    /* no preprocessor_config.json: images need --image-size, --mean and --std */
    snprintf(args, sizeof args, "cp " A "/model.safetensors %s && rm %s/preprocessor_config.json", p, dir);
    if (system(args) != 0)
        printf("cp failed\n");
    snprintf(args, sizeof args, "classify --json --model %s --labels a,b " IMG "coffee.png", dir);
    rc = run(NULL, args);
    check(rc == 1 && strstr(err_text, "preprocessor_config.json: missing") &&
              strstr(err_text, "--image-size"),
          "no preprocessor_config.json: exit %d, %s", rc, err_text);
    snprintf(args, sizeof args, "classify --json --model %s --labels a,b --image-size 32 " IMG "coffee.png", dir);
    rc = run(NULL, args);
    check(rc == 2 && strstr(err_text, "all of"), "only --image-size: exit %d, %s", rc, err_text);
    snprintf(args, sizeof args, "embed --text --model %s a", dir);
    rc = run(NULL, args);
    check(rc == 0, "texts need no preprocessor_config.json: exit %d", rc);
    {
        snprintf(args, sizeof args, "classify --json --model " A " --labels a,b " IMG "coffee.png");
        run(NULL, args);
        char *want = strdup(out_text);
        snprintf(args, sizeof args,
                 "classify --json --model %s --labels a,b --image-size 32 --mean "
                 "0.48145466,0.4578275,0.40821073 --std 0.26862954,0.26130258,0.27577711 " IMG
                 "coffee.png",
                 dir);
        rc = run(NULL, args);
        check(rc == 0 && strcmp(out_text, want) == 0,
              "--image-size 32 --mean ... --std ... (clip-tiny-a's values) give its output exactly");
        free(want);
        snprintf(args, sizeof args,
                 "classify --model %s --labels a --image-size 48 --mean 0.5,0.5,0.5 --std 0.5,0.5,0.5 " IMG "coffee.png", dir);
        rc = run(NULL, args);
        check(rc == 2 && strstr(err_text, "image size is 32"), "--image-size unlike the model's: %s", err_text);
    }
    snprintf(args, sizeof args, "cp " A "/preprocessor_config.json %s/", dir);
    if (system(args) != 0)
        printf("cp failed\n");
    /* TESSERA_DEVICE selects the device like --device */
    rc = run("TESSERA_DEVICE=42", "classify --model " A " --labels a " IMG "coffee.png");
    check(rc == 1 && strstr(err_text, "device 42 does not exist"), "TESSERA_DEVICE=42 honoured");
    rc = run("TESSERA_DEVICE=0", "classify --model " A " --labels a " IMG "coffee.png");
    check(rc == 0, "TESSERA_DEVICE=0 works");
}

static void test_embed(void)
{
    char npy[256], args[1024];
    snprintf(npy, sizeof npy, "%s/texts.npy", tmp);
    snprintf(args, sizeof args,
             "embed --model " A " --text --out %s 'a photo of a cat.' '' 'A PHOTO OF A DOG!!'", npy);
    int rc = run(NULL, args);
    int nd = 0;
    long dims[4] = {0};
    float *got = rc == 0 ? load_npy(npy, &nd, dims) : NULL;
    float *ref = load_npy(A "/expected/text_embeds.npy", &nd, dims + 2);
    int ok = got && dims[0] == 3 && dims[1] == 24;
    double worst = 0;
    for (int r = 0; ok && r < 3; r++) {
        double n = 0;
        for (int i = 0; i < 24; i++)
            n += (double)ref[r * 24 + i] * ref[r * 24 + i];
        for (int i = 0; i < 24; i++) {
            double d = fabs(got[r * 24 + i] - ref[r * 24 + i] / sqrt(n));
            worst = d > worst ? d : worst;
        }
    }
    check(ok && worst <= 1e-4, "embed --text --out .npy: shape (3, 24), max error %.3g", worst);
    free(got);
    free(ref);
    rc = run(NULL, "embed --model " A " --image " IMG "coffee.png " IMG "cmyk.jpg");
    int lines = 0;
    for (char *p = out_text; (p = strchr(p, '\n')); p++)
        lines++;
    check(rc == 0 && lines == 2 && strstr(out_text, "\"embedding\":["),
          "embed --image prints one JSON line per image");
    expect("embed --model " A " --image " IMG "../bad/huge.jpg", 1, "huge.jpg", "embed bad image");
}

/* tessera tune writes the device's tuning file; later commands apply it, and
 * warn about (and survive) a broken one. */
static void test_tune(void)
{
    char env[512], d[256];
    snprintf(d, sizeof d, "%s/tcache", tmp);
    snprintf(env, sizeof env, "TESSERA_CACHE_DIR=%s", d);
    int rc = run(env, "tune --shapes 40x70x50,7x96x33 --trials 0 --seconds 0.01 --json");
    cJSON *j = rc == 0 ? cJSON_Parse(out_text) : NULL;
    const cJSON *file = cJSON_GetObjectItemCaseSensitive(j, "tuning_file");
    const cJSON *best = cJSON_GetObjectItemCaseSensitive(j, "best");
    const cJSON *cands = cJSON_GetObjectItemCaseSensitive(j, "candidates");
    char path[1024] = "";
    if (cJSON_IsString(file))
        snprintf(path, sizeof path, "%s", file->valuestring);
    FILE *f = *path ? fopen(path, "rb") : NULL;
    check(rc == 0 && cJSON_IsString(best) && cJSON_GetArraySize(cands) >= 3 && f &&
              strncmp(path, d, strlen(d)) == 0,
          "tune --json reports %d candidates and writes %s", cJSON_GetArraySize(cands), path);
    if (f)
        fclose(f);
    char want[600];
    snprintf(want, sizeof want, "GEMM tuning file %s: %s", path,
             cJSON_IsString(best) ? best->valuestring : "?");
    cJSON_Delete(j);
    rc = run(env, "embed --verbose --model " A " --text hello");
    check(rc == 0 && strstr(err_text, want), "a later command applies it (%s)", want);
    if (*path) {
        f = fopen(path, "wb");
        if (f) {
            fputs("{\"format\": 3", f);
            fclose(f);
        }
        rc = run(env, "embed --verbose --model " A " --text hello");
        check(rc == 0 && strstr(err_text, "warning: ignoring the tuning file") &&
                  strstr(err_text, path) && strstr(err_text, "GEMM built-in table"),
              "a broken tuning file gives a warning and the built-in settings");
    }
    rc = run(env, "tune --shapes 8x8x8 --trials 0 --seconds 0.01 --dry-run --quiet");
    check(rc == 0 && strstr(out_text, "--dry-run: nothing written") && !*err_text,
          "tune --dry-run --quiet");
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", d);
    if (system(cmd) != 0)
        printf("could not remove %s\n", d);
}

static void test_cache(void)
{
    char env[512], args[512], d[256];
    snprintf(d, sizeof d, "%s/kcache", tmp);
    snprintf(env, sizeof env, "TESSERA_CACHE_DIR=%s", d);
    snprintf(args, sizeof args, "classify --verbose --model " A " --labels a,b " IMG "coffee.png");
    int rc1 = run(env, args);
    int compiled = strstr(err_text, "kernels compiled") != NULL;
    int rc2 = run(env, args);
    int cached = strstr(err_text, "kernels loaded from") != NULL;
    check(rc1 == 0 && rc2 == 0 && compiled && cached,
          "first process compiles kernels, the second loads them from the disk cache");
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", d);
    if (system(cmd) != 0)
        printf("could not remove %s\n", d);
}

int main(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/tessera-cli-XXXXXX");
    if (!mkdtemp(tmp))
        return 1;
    snprintf(out_path, sizeof out_path, "%s/stdout", tmp);
    snprintf(err_path, sizeof err_path, "%s/stderr", tmp);
    test_usage();
    test_tokenize();
    int rc = run(NULL, "devices");
    int skipped = 0;
    if (rc == 1 && strstr(err_text, "no OpenCL platform")) {
        printf("skipped: no OpenCL platform; the device-dependent CLI tests did not run\n");
        skipped = 1;
    } else {
        check(rc == 0 && strstr(out_text, "0: "), "devices lists device 0");
        test_classify();
        test_eval();
        test_caption();
    test_caption_coca();
        test_embed();
        test_bad_files();
        test_cache();
        test_tune();
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0)
        printf("could not remove %s\n", tmp);
    int r = finish();
    return r ? r : skipped ? TEST_SKIP : 0;
}
