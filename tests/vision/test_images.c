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
    check(fm && nf >= 16 && same == nf, "%d of %d WebP, GIF, TIFF and BMP images decode as Pillow's",
          same, nf);
    cJSON_Delete(fm);

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
    return finish();
}
