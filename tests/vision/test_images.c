/* Decoding and preprocessing against CLIPImageProcessor (Pillow): real
 * photographs and synthetic edge cases, under three configurations, within
 * one 8-bit level. Then bad images: each must fail with a message naming the
 * file. */
#include <unistd.h>

#include "testutil.h"
#include "tsr_vision.h"

static void expect_bad(const char *path, tsr_status want, const char *needle)
{
    tsr_image *img = NULL;
    tsr_error err = {0};
    tsr_status st = tsr_image_load_file(path, &img, &err);
    check(st == want && img == NULL && strstr(err.msg, path) && strstr(err.msg, needle),
          "%s refused (status %d): %s", strrchr(path, '/') + 1, (int)st, err.msg);
    tsr_image_free(img);
}

/* Corruptions (vision/corrupt.c): JPEG re-compression against Pillow's, the
 * blur against a direct 2-D convolution, the noise's statistics and seeds,
 * and the PNG writer's round trip. */
static void test_corruptions(void)
{
    tsr_error err = {0};
    tsr_image *src = NULL;
    if (tsr_image_load_file(TSR_FIXTURES "/images/corrupt/source.png", &src, &err) != TSR_OK) {
        check(0, "corruption source: %s", err.msg);
        return;
    }
    static const int sev[3] = {1, 3, 5}, qual[3] = {25, 15, 7};
    for (int k = 0; k < 3; k++) {
        char p[512];
        snprintf(p, sizeof p, "%s/images/corrupt/jpeg_q%d.expected.png", TSR_FIXTURES, qual[k]);
        tsr_image *ref = NULL, *got = NULL;
        int ok = tsr_image_load_file(p, &ref, &err) == TSR_OK &&
                 tsr_image_corrupt(src, TSR_CORRUPT_JPEG, sev[k], 0, &got, &err) == TSR_OK &&
                 got->width == ref->width && got->height == ref->height;
        int maxd = 0;
        size_t diff = 0;
        for (size_t i = 0; ok && i < (size_t)ref->width * ref->height * 3; i++) {
            int d = abs((int)got->rgb[i] - ref->rgb[i]);
            maxd = d > maxd ? d : maxd;
            diff += d != 0;
        }
        check(ok && maxd <= 1, "JPEG re-compression at severity %d (quality %d) against Pillow's: "
                               "%zu bytes differ, by at most %d (tolerance 1: libjpeg versions)",
              sev[k], qual[k], diff, maxd);
        tsr_image_free(ref);
        tsr_image_free(got);
    }
    /* blur: separable, against the direct 2-D sum with edges repeated */
    for (int s = 1; s <= 5; s += 2) {
        tsr_image *got = NULL;
        check(tsr_image_corrupt(src, TSR_CORRUPT_BLUR, s, 0, &got, &err) == TSR_OK, "blur %d", s);
        if (!got)
            continue;
        static const double sig224[5] = {1, 2, 3, 4, 6};
        int w = src->width, h = src->height, side = w < h ? w : h;
        double sigma = sig224[s - 1] * side / 224.0;
        int r = (int)ceil(4 * sigma), maxd = 0;
        double ksum = 0;
        for (int i = -r; i <= r; i++)
            ksum += exp(-0.5 * i * i / (sigma * sigma));
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int c = 0; c < 3; c++) {
                    double a = 0;
                    for (int dy = -r; dy <= r; dy++)
                        for (int dx = -r; dx <= r; dx++) {
                            int yy = y + dy < 0 ? 0 : y + dy >= h ? h - 1 : y + dy;
                            int xx = x + dx < 0 ? 0 : x + dx >= w ? w - 1 : x + dx;
                            a += exp(-0.5 * (dx * dx + dy * dy) / (sigma * sigma)) *
                                 src->rgb[((size_t)yy * w + xx) * 3 + c];
                        }
                    int want = (int)floor(a / (ksum * ksum) + 0.5);
                    int d = abs(want - got->rgb[((size_t)y * w + x) * 3 + c]);
                    maxd = d > maxd ? d : maxd;
                }
        check(maxd <= 1, "blur at severity %d (sigma %.3f px on %dx%d) against the direct 2-D "
                         "convolution: max difference %d level(s) (tolerance 1: rounding)",
              s, sigma, w, h, maxd);
        tsr_image_free(got);
    }
    /* noise on mid-grey: mean 0 and sigma 0.08 * 255, per seed */
    tsr_image *grey = tsr_image_create(200, 150), *n1 = NULL, *n2 = NULL, *n3 = NULL;
    memset(grey->rgb, 128, (size_t)200 * 150 * 3);
    tsr_image_corrupt(grey, TSR_CORRUPT_NOISE, 1, 7, &n1, &err);
    tsr_image_corrupt(grey, TSR_CORRUPT_NOISE, 1, 7, &n2, &err);
    tsr_image_corrupt(grey, TSR_CORRUPT_NOISE, 1, 8, &n3, &err);
    double m = 0, v = 0;
    size_t N = (size_t)200 * 150 * 3, same12 = 0, same13 = 0;
    for (size_t i = 0; n1 && n2 && n3 && i < N; i++) {
        double d = n1->rgb[i] - 128.0;
        m += d;
        v += d * d;
        same12 += n1->rgb[i] == n2->rgb[i];
        same13 += n1->rgb[i] == n3->rgb[i];
    }
    m /= N;
    double sd = sqrt(v / N - m * m);
    check(n1 && fabs(m) < 0.3 && fabs(sd - 0.08 * 255) < 0.3,
          "noise at severity 1 on mid-grey: mean %+.3f, sd %.3f (want 0 and %.3f, +-0.3)", m, sd,
          0.08 * 255);
    check(same12 == N && same13 < N / 2, "noise: the same seed gives the same pixels (%zu of %zu), "
                                         "another seed others (%zu equal)", same12, N, same13);
    tsr_image *bad = NULL;
    check(tsr_image_corrupt(grey, TSR_CORRUPT_NOISE, 6, 0, &bad, &err) == TSR_ERR_INVALID_ARG && !bad,
          "severity 6 is refused: %s", err.msg);
    tsr_image_free(n1);
    tsr_image_free(n2);
    tsr_image_free(n3);
    tsr_image_free(grey);
    /* PNG writer: what it writes decodes to the same pixels */
    char png[] = "/tmp/tessera-png-XXXXXX";
    int fd = mkstemp(png);
    close(fd);
    tsr_image *back = NULL;
    err.msg[0] = 0;
    int ok = tsr_image_save_png(src, png, &err) == TSR_OK &&
             tsr_image_load_file(png, &back, &err) == TSR_OK && back->width == src->width &&
             back->height == src->height &&
             memcmp(back->rgb, src->rgb, (size_t)src->width * src->height * 3) == 0;
    check(ok, "PNG written and read back: every byte equal (%s)", err.msg);
    check(tsr_image_save_png(src, "/nonexistent-dir/x.png", &err) == TSR_ERR_IO &&
              strstr(err.msg, "/nonexistent-dir/x.png"),
          "PNG into a missing folder: %s", err.msg);
    unlink(png);
    tsr_image_free(back);
    tsr_image_free(src);
}

int main(void)
{
    double worst = 0;
    /* thin_manifest.json: 3000x7, 7x3000, 4000x1 and 1x2500 images, whose
     * long side becomes up to 80,000 pixels before the centre crop */
    const char *manifests[2] = {TSR_FIXTURES "/pixels/manifest.json",
                                TSR_FIXTURES "/pixels/thin_manifest.json"};
    for (int mi = 0; mi < 2; mi++) {
        cJSON *man = load_json(manifests[mi]);
        check(man && cJSON_GetArraySize(man) >= (mi ? 8 : 40), "%s with %d cases", manifests[mi],
              man ? cJSON_GetArraySize(man) : 0);
        for (const cJSON *e = man ? man->child : NULL; e; e = e->next) {
            const char *cfgname = cJSON_GetObjectItem(e, "config")->valuestring;
            const char *image = cJSON_GetObjectItem(e, "image")->valuestring;
            const char *expected = cJSON_GetObjectItem(e, "expected")->valuestring;
            char p[1024];
            tsr_preprocess_cfg cfg;
            tsr_error err = {0};
            snprintf(p, sizeof p, "%s/pixels/%s/preprocessor_config.json", TSR_FIXTURES, cfgname);
            if (tsr_preprocess_cfg_load(p, &cfg, &err) != TSR_OK) {
                check(0, "%s: %s", cfgname, err.msg);
                continue;
            }
            snprintf(p, sizeof p, "%s/%s", TSR_FIXTURES, image);
            tsr_image *img = NULL;
            if (tsr_image_load_file(p, &img, &err) != TSR_OK) {
                check(0, "decode %s: %s", image, err.msg);
                continue;
            }
            snprintf(p, sizeof p, "%s/pixels/%s", TSR_FIXTURES, expected);
            int nd;
            long dims[4];
            float *ref = load_npy(p, &nd, dims);
            size_t n = (size_t)3 * cfg.crop_h * cfg.crop_w;
            float *got = malloc(sizeof(float) * n);
            int ok = ref && nd == 3 && dims[0] == 3 && dims[1] == cfg.crop_h && dims[2] == cfg.crop_w &&
                     tsr_image_preprocess(img, &cfg, got, &err) == TSR_OK;
            double levels = 0, maxd = 0;
            for (size_t i = 0; ok && i < n; i++) {
                int c = (int)(i / ((size_t)cfg.crop_h * cfg.crop_w));
                double d = fabs((double)got[i] - ref[i]);
                maxd = d > maxd ? d : maxd;
                double l = d * cfg.std[c] / cfg.rescale_factor;
                levels = l > levels ? l : levels;
            }
            worst = levels > worst ? levels : worst;
            check(ok && levels <= 1.0 + 1e-3, "%s %s (%dx%d): max error %.3g = %.3f 8-bit levels",
                  cfgname, image, img->width, img->height, maxd, levels);
            tsr_image_free(img);
            free(ref);
            free(got);
        }
        cJSON_Delete(man);
    }
    printf("worst case over all images: %.3f 8-bit levels\n", worst);

    /* WebP, GIF, TIFF and BMP against Pillow's convert("RGB"), byte for byte;
     * each cut in half is refused with the file's name */
    cJSON *fm = load_json(TSR_FIXTURES "/images/formats/manifest.json");
    /* and the edge cases (make_format_edge_fixtures.py): GIF frames inside a
     * larger screen, TIFF alpha, 16-bit and big-endian TIFF, RLE and top-down BMP */
    cJSON *edge = load_json(TSR_FIXTURES "/images/formats/edge_manifest.json");
    const cJSON *ec = cJSON_GetObjectItem(edge, "cases");
    check(fm && ec && cJSON_GetArraySize(ec) >= 14, "format fixtures: %d cases and %d edge cases",
          cJSON_GetArraySize(fm), cJSON_GetArraySize(ec));
    for (cJSON *e = ec ? ec->child : NULL; fm && e; e = e->next)
        cJSON_AddItemReferenceToArray(fm, e);
    int nf = 0, same = 0;
    char ftmpl[] = "/tmp/tessera-fmt-XXXXXX";
    char *fdir = mkdtemp(ftmpl);
    for (const cJSON *e = fm ? fm->child : NULL; e; e = e->next) {
        const char *image = cJSON_GetObjectItem(e, "image")->valuestring;
        const char *expected = cJSON_GetObjectItem(e, "expected")->valuestring;
        char p[1024], q[1024];
        snprintf(p, sizeof p, "%s/images/formats/%s", TSR_FIXTURES, image);
        snprintf(q, sizeof q, "%s/images/formats/%s", TSR_FIXTURES, expected);
        tsr_image *a = NULL, *b = NULL;
        tsr_error err = {0};
        int ok = tsr_image_load_file(p, &a, &err) == TSR_OK;
        ok = ok && tsr_image_load_file(q, &b, &err) == TSR_OK;
        size_t diff = 0;
        ok = ok && a->width == b->width && a->height == b->height;
        for (size_t i = 0; ok && i < (size_t)a->width * a->height * 3; i++)
            diff += a->rgb[i] != b->rgb[i];
        ok = ok && diff == 0;
        check(ok, "%s (Pillow mode %s): %s", image, cJSON_GetObjectItem(e, "mode")->valuestring,
              ok ? "every byte equal to Pillow's" : err.msg[0] ? err.msg : "pixels differ");
        nf++;
        same += ok;
        tsr_image_free(a);
        tsr_image_free(b);
        size_t n = 0;
        unsigned char *raw = read_bytes(p, &n);
        if (raw && fdir) {
            snprintf(q, sizeof q, "%s/cut-%s", fdir, image);
            write_bytes(q, raw, n / 2);
            tsr_image *c = NULL;
            tsr_status st = tsr_image_load_file(q, &c, &err);
            check(st != TSR_OK && !c && strstr(err.msg, q), "%s cut in half: refused: %s", image,
                  err.msg);
            tsr_image_free(c);
            remove(q);
        }
        free(raw);
    }
    if (fdir)
        rmdir(fdir);
    check(fm && nf >= 30 && same == nf, "%d of %d WebP, GIF, TIFF and BMP images decode as Pillow's",
          same, nf);
    cJSON_Delete(fm);
    cJSON_Delete(edge);

    /* bad inputs */
    char tmpl[] = "/tmp/tessera-img-XXXXXX";
    char *dir = mkdtemp(tmpl);
    char p[1024];
    size_t n = 0;
    unsigned char *png = read_bytes(TSR_FIXTURES "/images/coffee.png", &n);
    snprintf(p, sizeof p, "%s/truncated.png", dir);
    write_bytes(p, png, n / 2);
    expect_bad(p, TSR_ERR_FORMAT, "corrupt PNG");
    png[n / 2] ^= 0x55; /* flip bits inside the image data: CRC or zlib error */
    png[n / 2 + 1] ^= 0xAA;
    snprintf(p, sizeof p, "%s/corrupt.png", dir);
    write_bytes(p, png, n);
    expect_bad(p, TSR_ERR_FORMAT, "corrupt PNG");
    free(png);
    unsigned char *jpg = read_bytes(TSR_FIXTURES "/images/chelsea.jpg", &n);
    snprintf(p, sizeof p, "%s/truncated.jpg", dir);
    write_bytes(p, jpg, n / 2);
    expect_bad(p, TSR_ERR_FORMAT, "corrupt JPEG");
    snprintf(p, sizeof p, "%s/header_only.jpg", dir);
    write_bytes(p, jpg, 40);
    expect_bad(p, TSR_ERR_FORMAT, "corrupt JPEG");
    free(jpg);
    snprintf(p, sizeof p, "%s/notes.txt", dir);
    write_bytes(p, "hello, not an image\n", 20);
    expect_bad(p, TSR_ERR_FORMAT, "not a PNG, JPEG, WebP, GIF, TIFF or BMP");
    snprintf(p, sizeof p, "%s/empty.png", dir);
    write_bytes(p, "", 0);
    expect_bad(p, TSR_ERR_FORMAT, "empty");
    snprintf(p, sizeof p, "%s/missing.png", dir);
    expect_bad(p, TSR_ERR_IO, "cannot open");
    expect_bad(dir, TSR_ERR_IO, "");
    expect_bad(TSR_FIXTURES "/bad/huge.png", TSR_ERR_TOO_LARGE, "60000x60000");
    expect_bad(TSR_FIXTURES "/bad/huge.jpg", TSR_ERR_TOO_LARGE, "60000x60000");
    const char *names[] = {"truncated.png", "corrupt.png", "truncated.jpg", "header_only.jpg",
                           "notes.txt", "empty.png"};
    for (int i = 0; i < 6; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);

    /* preprocessor config errors */
    tsr_preprocess_cfg cfg;
    tsr_error err = {0};
    check(tsr_preprocess_cfg_load(TSR_FIXTURES "/images/chelsea.jpg", &cfg, &err) ==
                  TSR_ERR_FORMAT && strstr(err.msg, "chelsea.jpg"),
          "corrupt preprocessor config refused: %s", err.msg);
    test_corruptions();
    return finish();
}
