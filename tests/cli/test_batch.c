/* Batch runs over folders (issue 13): classify and embed walk folders and
 * find images by content, read --lines lists, report each bad file by name
 * and carry on (exit status 1, a count), stop at the first with --strict,
 * write embed's rows with an F.paths.txt sidecar that maps each row to its
 * file (each row equal to that file embedded alone), show a progress bar on
 * a terminal only, and give the same results with and without decoding
 * ahead. */
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#define A TSR_FIXTURES "/models/clip-tiny-a"
#define IMG TSR_FIXTURES "/images/"

static char tmp[64], out_path[128], err_path[128];
static char *out_text, *err_text;

static int run(const char *args)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s >%s 2>%s </dev/null", TSR_CLI, args, out_path, err_path);
    int st = system(cmd);
    free(out_text);
    free(err_text);
    out_text = slurp(out_path);
    err_text = slurp(err_path);
    if (!out_text)
        out_text = strdup("");
    if (!err_text)
        err_text = strdup("");
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void sh(const char *fmt, const char *a, const char *b)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, fmt, a, b);
    if (system(cmd) != 0)
        printf("command failed: %s\n", cmd);
}

/* The embedding of one JSON line {"image": ..., "embedding": [...]}. */
static int json_embedding(const char *line, float *v, int cap)
{
    cJSON *o = cJSON_Parse(line);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "embedding");
    int n = 0;
    for (const cJSON *x = cJSON_IsArray(e) ? e->child : NULL; x && n < cap; x = x->next)
        v[n++] = (float)x->valuedouble;
    cJSON_Delete(o);
    return n;
}

int main(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/tessera-batch-XXXXXX");
    if (!mkdtemp(tmp))
        return 1;
    snprintf(out_path, sizeof out_path, "%s/stdout", tmp);
    snprintf(err_path, sizeof err_path, "%s/stderr", tmp);
    int rc = run("devices");
    if (rc == 1 && strstr(err_text, "no OpenCL platform")) {
        printf("skipped: no OpenCL platform\n");
        return TEST_SKIP;
    }
    /* photos/: good images two levels deep, a PNG that is cut short (found by
     * content, fails), a text file named .jpg and notes (not images: skipped),
     * a hidden image (skipped) */
    char dir[128], a[1024];
    snprintf(dir, sizeof dir, "%s/photos", tmp);
    sh("mkdir -p %s/cats/more %s/empty", dir, dir);
    sh("cp " IMG "chelsea.jpg %s/cats/1-chelsea.jpg && cp " IMG "coffee.png %s/cats/more/coffee.png",
       dir, dir);
    sh("cp " IMG "astronaut.jpg %s/2-astronaut.jpg && cp " IMG "coffee.png %s/.hidden.png", dir,
       dir);
    sh("head -c 300 " IMG "coffee.png > %s/3-cut.png && echo hello > %s/notes.txt", dir, dir);
    sh("echo 'not a picture' > %s/4-fake.jpg%s", dir, "");

    snprintf(a, sizeof a, "classify --json --model " A " --labels cat,dog,cup %s", dir);
    rc = run(a);
    const char *p1 = strstr(out_text, "2-astronaut.jpg"), *p2 = strstr(out_text, "3-cut.png"),
               *p3 = strstr(out_text, "cats/1-chelsea.jpg"),
               *p4 = strstr(out_text, "cats/more/coffee.png");
    check(rc == 1 && count_str(out_text, "\"predictions\"") == 3 && count_str(out_text, "\"error\"") == 1 &&
              p1 && p2 && p3 && p4 && p1 < p2 && p2 < p3 && p3 < p4,
          "classify FOLDER: 3 images classified in name order, the cut PNG reported in its place, "
          "exit %d",
          rc);
    check(!strstr(out_text, "fake") && !strstr(out_text, "notes") && !strstr(out_text, "hidden") &&
              !strstr(err_text, "fake") && !strstr(err_text, "notes"),
          "files that are not images by content, and hidden ones, are not taken from a folder");
    check(strstr(err_text, "3-cut.png") && strstr(err_text, "1 of 4 image(s) failed"),
          "the bad file is named with the reason, and the failures counted: %s", err_text);
    char *all = strdup(out_text);

    /* every format is found in a folder by its content */
    rc = run("classify --json --model " A " --labels cat,dog " IMG "formats");
    check(rc == 0 && count_str(out_text, "\"predictions\"") == 60 && strstr(out_text, "rgb24.bmp\"") &&
              strstr(out_text, "lzw.tiff\"") && strstr(out_text, "lossy.webp\"") &&
              strstr(out_text, "interlaced.gif\"") && strstr(out_text, "rle4.bmp\"") &&
              strstr(out_text, "grey16_big_endian.tiff\""),
          "a folder of WebP, GIF, TIFF, BMP and PNG files: all 60 found and classified (exit %d)",
          rc);

    /* --lines: the same images from a list, plus a missing file */
    char list[160];
    snprintf(list, sizeof list, "%s/list.txt", tmp);
    FILE *f = fopen(list, "w");
    fprintf(f, "%s/2-astronaut.jpg\n\n%s/3-cut.png\n%s/cats\n%s/missing.jpg\n", dir, dir, dir,
            dir);
    fclose(f);
    snprintf(a, sizeof a, "classify --json --model " A " --labels cat,dog,cup --lines %s", list);
    rc = run(a);
    check(rc == 1 && count_str(out_text, "\"predictions\"") == 3 && strstr(err_text, "missing.jpg") &&
              strstr(err_text, "2 of 5 image(s) failed"),
          "classify --lines (files and a folder, an empty line, a missing file): exit %d, %s", rc,
          err_text);
    snprintf(a, sizeof a, "classify --model " A " --labels cat --lines %s %s", list, dir);
    rc = run(a);
    check(rc == 2 && strstr(err_text, "either"), "images both as arguments and --lines: exit %d",
          rc);

    /* --strict */
    snprintf(a, sizeof a, "classify --json --strict --model " A " --labels cat,dog,cup %s", dir);
    rc = run(a);
    check(rc == 1 && count_str(out_text, "\"predictions\"") == 1 && strstr(out_text, "3-cut.png") &&
              !strstr(out_text, "chelsea") && strstr(err_text, "--strict"),
          "classify --strict stops at the first bad image: exit %d", rc);

    free(all);
    /* decoding ahead (a thread; used past one batch of 16): 45 images, a bad one among them,
     * the same bytes as decoding in the main thread */
    char many[160];
    snprintf(many, sizeof many, "%s/many", tmp);
    sh("mkdir -p %s && cd %s && for i in $(seq 10 24); do cp " IMG "chelsea.jpg c$i.jpg; "
       "cp " IMG "coffee.png d$i.png; cp " IMG "progressive.jpg e$i.jpg; done && "
       "head -c 200 " IMG "chelsea.jpg > e17.jpg",
       many, many);
    snprintf(a, sizeof a, "classify --json --model " A " --labels cat,dog,cup %s", many);
    rc = run(a);
    all = strdup(out_text);
    snprintf(a, sizeof a, "classify --json --no-decode-ahead --model " A " --labels cat,dog,cup %s",
             many);
    int rc2 = run(a);
    check(rc == 1 && rc2 == 1 && count_str(all, "\"predictions\"") == 44 &&
              count_str(all, "\"error\"") == 1 && strcmp(out_text, all) == 0,
          "45 images in 3 batches, decoded ahead by a thread: byte-identical to decoding in the "
          "main thread, with the bad one in its place");
    free(all);
    /* eval's progress bar over the same images as one class */
    if (system("command -v script >/dev/null 2>&1") == 0) {
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "mkdir -p %s/evalbar && ln -sfn %s %s/evalbar/things", tmp, many,
                 tmp);
        if (system(cmd) != 0)
            printf("command failed: %s\n", cmd);
        snprintf(cmd, sizeof cmd,
                 "script -qec \"%s eval --model " A " --labels-from-folders %s/evalbar >/dev/null\" "
                 "/dev/null >%s 2>&1", TSR_CLI, tmp, out_path);
        int st = system(cmd);
        char *tty = slurp(out_path);
        check(st != -1 && tty && strstr(tty, "eval [") && strstr(tty, "45/45") &&
                  strstr(tty, "1 failed") && strstr(tty, "e17.jpg"),
              "eval on a terminal: a progress bar with done/total and failures, the bad image "
              "named");
        free(tty);
    }

    /* embed: rows for the good images, the sidecar, each row as embedded alone */
    char npy[160], side[160];
    snprintf(npy, sizeof npy, "%s/emb.npy", tmp);
    snprintf(side, sizeof side, "%s/emb.paths.txt", tmp);
    snprintf(a, sizeof a, "embed --image --model " A " --out %s %s %s/nowhere.png", npy, dir, tmp);
    rc = run(a);
    long long rows = 0;
    int cols = 0;
    FILE *nf = fopen(npy, "rb");
    if (nf) { /* read the .npy header: shape (R, C) */
        char h[256] = {0};
        size_t got = fread(h, 1, sizeof h - 1, nf);
        fclose(nf);
        const char *s = got > 10 ? strstr(h + 10, "'shape': (") : NULL;
        if (s)
            sscanf(s + 10, "%lld, %d", &rows, &cols);
    }
    char *sidetext = slurp(side);
    check(rc == 1 && rows == 3 && cols > 0 && sidetext && count_str(sidetext, "\n") == 3 &&
              strstr(err_text, "nowhere.png") && strstr(err_text, "3-cut.png") &&
              strstr(err_text, "2 of 5 image(s) failed"),
          "embed --out over a folder with bad files: %lld rows of %d written, %s lists %d files, "
          "exit %d",
          rows, cols, side, sidetext ? count_str(sidetext, "\n") : -1, rc);
    /* each row equals that file embedded alone */
    size_t nbytes = 0;
    unsigned char *raw = NULL;
    nf = fopen(npy, "rb");
    if (nf) {
        fseek(nf, 0, SEEK_END);
        nbytes = (size_t)ftell(nf);
        fseek(nf, 0, SEEK_SET);
        raw = malloc(nbytes);
        if (fread(raw, 1, nbytes, nf) != nbytes)
            nbytes = 0;
        fclose(nf);
    }
    double worst = 0;
    int matched = 0;
    char *line = sidetext;
    for (int r = 0; line && r < rows && raw && cols > 0 && cols <= 4096; r++) {
        char *nl = strchr(line, '\n');
        if (!nl)
            break;
        *nl = 0;
        snprintf(a, sizeof a, "embed --image --model " A " '%s'", line);
        if (run(a) == 0) {
            float v[4096];
            int n = json_embedding(out_text, v, 4096);
            const float *row = (const float *)(raw + nbytes - (size_t)(rows - r) * cols * 4);
            double err_max = 0;
            int ok = n == cols && close_enough(row, v, (size_t)cols, 1e-5, 1e-5, &err_max);
            matched += ok;
            if (err_max > worst)
                worst = err_max;
        }
        line = nl + 1;
    }
    check(matched == rows && rows == 3,
          "each row is the embedding of the file the sidecar names on that line (%d of %lld; max "
          "abs error %.3g, bound 1e-5)",
          matched, rows, worst);
    free(raw);
    free(sidetext);

    snprintf(npy, sizeof npy, "%s/strict.npy", tmp);
    snprintf(a, sizeof a, "embed --image --strict --model " A " --out %s %s", npy, dir);
    rc = run(a);
    struct stat sb;
    snprintf(side, sizeof side, "%s/strict.paths.txt", tmp);
    check(rc == 1 && stat(npy, &sb) != 0 && stat(side, &sb) != 0 && strstr(err_text, "nothing written"),
          "embed --strict: exit %d, nothing written", rc);
    snprintf(a, sizeof a, "embed --image --model " A " %s/empty", dir);
    rc = run(a);
    check(rc == 2 && strstr(err_text, "no images found") && strstr(err_text, "no images (PNG"),
          "a folder without images: exit %d, %s", rc, err_text);
    snprintf(a, sizeof a, "embed --image --model " A " %s/3-cut.png", dir);
    rc = run(a);
    check(rc == 1 && strstr(out_text, "\"error\""), "embed of only bad images: exit %d", rc);

    /* the progress bar: on a terminal only, and not with --quiet */
    if (system("command -v script >/dev/null 2>&1") == 0) {
        char cmd[4096];
        snprintf(cmd, sizeof cmd,
                 "script -qec \"%s classify --model " A " --labels cat %s >/dev/null\" /dev/null "
                 ">%s 2>&1",
                 TSR_CLI, dir, out_path);
        int st = system(cmd);
        char *tty = slurp(out_path);
        check(st != -1 && tty && strstr(tty, "classify [") && strstr(tty, "4/4") &&
                  strstr(tty, "/s") && strstr(tty, "1 failed"),
              "on a terminal: a progress bar with done/total, rate and failures");
        free(tty);
        snprintf(cmd, sizeof cmd,
                 "script -qec \"%s classify --quiet --model " A " --labels cat %s >/dev/null\" "
                 "/dev/null >%s 2>&1",
                 TSR_CLI, dir, out_path);
        st = system(cmd);
        tty = slurp(out_path);
        check(st != -1 && tty && !strstr(tty, "classify ["), "--quiet: no bar on a terminal");
        free(tty);
    } else {
        printf("skipped: the terminal checks (no `script` command)\n");
    }
    snprintf(a, sizeof a, "classify --model " A " --labels cat %s", dir);
    rc = run(a);
    check(!strstr(err_text, "classify ["), "no bar when stderr is not a terminal");

    free(out_text);
    free(err_text);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0)
        printf("could not remove %s\n", tmp);
    return finish();
}
