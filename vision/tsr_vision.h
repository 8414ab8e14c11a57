/* tessera vision: image decoding and CLIP preprocessing.
 *
 *   tsr_error err = {0};
 *   tsr_image *img = NULL;
 *   tsr_preprocess_cfg pp = tsr_preprocess_cfg_default(224);
 *   if (tsr_image_load_file(image_path, &img, &err) != TSR_OK)
 *       return fprintf(stderr, "%s\n", err.msg), 1;
 *   float *px = malloc(sizeof(float) * 3 * pp.crop_h * pp.crop_w);
 *   tsr_image_preprocess(img, &pp, px, &err);  // (3, crop_h, crop_w), normalised
 *   printf("%dx%d image, first value %.4f\n", img->width, img->height, px[0]);
 *   free(px);
 *   tsr_image_free(img);
 *
 * Decoding converts to 8-bit RGB exactly as PIL's Image.convert("RGB").
 * Threads: every function may run in any number of threads at once; an
 * image is freed by one thread once nobody else reads it.
 */
#ifndef TSR_VISION_H
#define TSR_VISION_H

#include <stddef.h>

#include "tsr_opencl.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TSR_IMAGE_MAX_SIDE 65535
/* The longest side a resize target may have when only a crop of it is
 * computed (a 1-pixel-thin image resized to 224 on its short side). */
#define TSR_RESIZE_MAX_SIDE (1 << 26)
#define TSR_IMAGE_MAX_PIXELS (100u * 1000u * 1000u) /* checked before any allocation */

typedef struct {
    int width, height;
    unsigned char *rgb; /* (height, width, 3) */
    /* 16-bit greyscale PNGs and TIFFs: how many pixels were above 255. Pillow
     * opens such images as "I;16" and convert("RGB") clips each value at 255, so
     * they come out mostly white; this decoder does the same, to match the
     * reference, and counts them so that a caller can warn. 0 otherwise. */
    size_t clipped16;
} tsr_image;

/* PNG, JPEG, WebP, GIF (the first frame), TIFF or BMP, detected from the
 * content, as 8-bit RGB equal to Pillow's Image.open(f).convert("RGB").
 * Errors name the file. */
tsr_status tsr_image_load_file(const char *path, tsr_image **out, tsr_error *err);
tsr_status tsr_image_load_memory(const unsigned char *data, size_t n, const char *name,
                                 tsr_image **out, tsr_error *err);
void tsr_image_free(tsr_image *img);
/* A w x h image with uninitialised pixels; NULL when out of memory or the
 * size is out of range. */
tsr_image *tsr_image_create(int w, int h);
/* Writes img as an 8-bit RGB PNG, atomically (a temporary file renamed over
 * path, so that a killed run leaves the old file or the new one). */
tsr_status tsr_image_save_png(const tsr_image *img, const char *path, tsr_error *err);
/* img encoded as baseline JPEG at quality 1..100 (libjpeg's defaults, as
 * Pillow's save(quality=q)); *data is malloc'd. */
tsr_status tsr_image_encode_jpeg(const tsr_image *img, int quality, unsigned char **data,
                                 size_t *n, tsr_error *err);

/* Corruptions for robustness evaluation, after ImageNet-C (Hendrycks and
 * Dietterich, 2019), severity 1..5 with its parameters:
 *   TSR_CORRUPT_NOISE  Gaussian noise, sigma 0.08, 0.12, 0.18, 0.26, 0.38 of
 *                      the 0..1 range, per channel, from a seeded generator;
 *   TSR_CORRUPT_BLUR   Gaussian blur, sigma 1, 2, 3, 4, 6 pixels at 224 px,
 *                      scaled to the image's shorter side (kernel radius 4
 *                      sigma, edges repeated);
 *   TSR_CORRUPT_JPEG   JPEG re-compression at quality 25, 18, 15, 10, 7.
 * The same (image, kind, severity, seed) gives the same pixels everywhere.
 * The blur's sigma scales with the image, so that a severity means what it
 * means at 224 px; robustness evaluation corrupts the image the model sees
 * (tsr_image_preprocess_corrupted), as ImageNet-C corrupts 224 px crops. */
typedef enum { TSR_CORRUPT_NOISE, TSR_CORRUPT_BLUR, TSR_CORRUPT_JPEG } tsr_corruption;
tsr_status tsr_image_corrupt(const tsr_image *img, tsr_corruption kind, int severity,
                             unsigned long long seed, tsr_image **out, tsr_error *err);
/* 1 when the first bytes (32 are enough) are those of a format above. */
int tsr_image_sniff(const unsigned char *head, size_t n);

/* CLIPImageProcessor settings (preprocessor_config.json); BlipImageProcessor's
 * "size": {"height": H, "width": W} resizes to exactly W x H instead (then
 * shortest_edge is 0, and with do_center_crop false the crop is that size). */
typedef struct {
    int do_resize, shortest_edge;      /* resize the shorter side, Pillow bicubic */
    int resize_w, resize_h;            /* or to exactly this size (shortest_edge 0) */
    int do_center_crop, crop_h, crop_w;
    int crop_half_even;                /* torchvision's CenterCrop: the offset (d / 2) rounded
                                          half to even, where transformers floors it */
    int do_rescale;
    double rescale_factor;
    int do_normalize;
    float mean[3], std[3];
} tsr_preprocess_cfg;

/* Defaults of CLIPImageProcessor at the given size. */
tsr_preprocess_cfg tsr_preprocess_cfg_default(int size);
tsr_status tsr_preprocess_cfg_load(const char *path, tsr_preprocess_cfg *cfg, tsr_error *err);
/* From the bytes of a preprocessor_config.json; name is for messages. */
tsr_status tsr_preprocess_cfg_load_json(const char *json, size_t len, const char *name,
                                        tsr_preprocess_cfg *cfg, tsr_error *err);

/* Pillow-exact bicubic resize of 8-bit RGB (with its antialiasing). dst: (dh, dw, 3). */
tsr_status tsr_image_resize_bicubic(const tsr_image *src, int dw, int dh, tsr_image **out,
                                    tsr_error *err);

/* Resize, centre crop, rescale and normalise; out: (3, crop_h, crop_w) float. */
tsr_status tsr_image_preprocess(const tsr_image *img, const tsr_preprocess_cfg *cfg, float *out,
                                tsr_error *err);
/* The same, with a corruption (tsr_image_corrupt) applied to the 8-bit
 * resized and cropped image before it is rescaled and normalised. */
tsr_status tsr_image_preprocess_corrupted(const tsr_image *img, const tsr_preprocess_cfg *cfg,
                                          tsr_corruption kind, int severity,
                                          unsigned long long seed, float *out, tsr_error *err);

#ifdef __cplusplus
}
#endif
#endif
