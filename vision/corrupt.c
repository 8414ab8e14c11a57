/* Image encoding (PNG to a file, JPEG to memory) and the ImageNet-C style
 * corruptions that robustness evaluation applies: Gaussian noise, Gaussian
 * blur and JPEG re-compression. */
#include <math.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>

#include "tsr_cl_internal.h"
#include "tsr_vision.h"

/* ---- PNG ---- */

typedef struct {
    unsigned char *buf;
    size_t n, cap;
    int oom;
} membuf;

static void png_write_mem(png_structp png, png_bytep data, png_size_t len)
{
    membuf *m = png_get_io_ptr(png);
    if (m->oom)
        return;
    if (m->n + len > m->cap) {
        size_t cap = m->cap ? m->cap : 4096;
        while (cap < m->n + len)
            cap *= 2;
        unsigned char *nb = realloc(m->buf, cap);
        if (!nb) {
            m->oom = 1;
            return;
        }
        m->buf = nb;
        m->cap = cap;
    }
    memcpy(m->buf + m->n, data, len);
    m->n += len;
}

static void png_flush_mem(png_structp png) { (void)png; }

static void png_write_error(png_structp png, png_const_charp msg)
{
    (void)msg;
    png_longjmp(png, 1);
}

tsr_status tsr_image_save_png(const tsr_image *img, const char *path, tsr_error *err)
{
    if (!img || !img->rgb || img->width < 1 || img->height < 1)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "%s: no image to write", path);
    membuf m = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, png_write_error, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return tsr_error_set(err, TSR_ERR_NOMEM, "%s: out of host memory", path);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(m.buf);
        return tsr_error_set(err, TSR_ERR_NOMEM, "%s: PNG encoding failed", path);
    }
    png_set_write_fn(png, &m, png_write_mem, png_flush_mem);
    png_set_IHDR(png, info, (png_uint_32)img->width, (png_uint_32)img->height, 8,
                 PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < img->height; y++)
        png_write_row(png, img->rgb + (size_t)y * img->width * 3);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    if (m.oom) {
        free(m.buf);
        return tsr_error_set(err, TSR_ERR_NOMEM, "%s: out of host memory", path);
    }
    int ok = tsr_write_atomic(path, m.buf, m.n);
    free(m.buf);
    return ok ? TSR_OK : tsr_error_set(err, TSR_ERR_IO, "%s: cannot write the file", path);
}

/* ---- JPEG ---- */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
} jpeg_wctx;

static void jpeg_write_error(j_common_ptr cinfo)
{
    longjmp(((jpeg_wctx *)cinfo->err)->jump, 1);
}

tsr_status tsr_image_encode_jpeg(const tsr_image *img, int quality, unsigned char **data,
                                 size_t *n, tsr_error *err)
{
    if (quality < 1 || quality > 100)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "JPEG quality must be 1..100, not %d",
                             quality);
    struct jpeg_compress_struct c;
    jpeg_wctx jerr;
    unsigned char *buf = NULL;
    unsigned long len = 0;
    c.err = jpeg_std_error(&jerr.pub);
    jerr.pub.error_exit = jpeg_write_error;
    if (setjmp(jerr.jump)) {
        jpeg_destroy_compress(&c);
        free(buf);
        return tsr_error_set(err, TSR_ERR_NOMEM, "JPEG encoding failed");
    }
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &buf, &len);
    c.image_width = (JDIMENSION)img->width;
    c.image_height = (JDIMENSION)img->height;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, quality, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = img->rgb + (size_t)c.next_scanline * img->width * 3;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    *data = buf;
    *n = len;
    return TSR_OK;
}

/* ---- corruptions ---- */

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A standard normal deviate (Box-Muller on two 53-bit uniforms). */
static double normal(uint64_t *s)
{
    double u = ((splitmix(s) >> 11) + 1.0) / 9007199254740993.0; /* (0, 1] */
    double v = (splitmix(s) >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static unsigned char to_u8(double v)
{
    v = floor(v + 0.5);
    return (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
}

static void add_noise(const tsr_image *src, tsr_image *dst, double sigma, uint64_t seed)
{
    uint64_t s = seed ^ 0x6e6f697365ull;
    size_t n = (size_t)src->width * src->height * 3;
    for (size_t i = 0; i < n; i++)
        dst->rgb[i] = to_u8(src->rgb[i] + 255.0 * sigma * normal(&s));
}

/* Separable Gaussian blur, edges repeated; tmp holds (h, w, 3) floats. */
static void blur(const tsr_image *src, tsr_image *dst, double sigma, float *tmp)
{
    int w = src->width, h = src->height, r = (int)ceil(4.0 * sigma);
    double k[1024 + 1], sum = 0;
    if (r > 1024)
        r = 1024;
    for (int i = -r; i <= r; i++)
        sum += k[i + r] = exp(-0.5 * i * i / (sigma * sigma));
    for (int i = 0; i <= 2 * r; i++)
        k[i] /= sum;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) {
                double a = 0;
                for (int i = -r; i <= r; i++) {
                    int xx = x + i < 0 ? 0 : x + i >= w ? w - 1 : x + i;
                    a += k[i + r] * src->rgb[((size_t)y * w + xx) * 3 + c];
                }
                tmp[((size_t)y * w + x) * 3 + c] = (float)a;
            }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) {
                double a = 0;
                for (int i = -r; i <= r; i++) {
                    int yy = y + i < 0 ? 0 : y + i >= h ? h - 1 : y + i;
                    a += k[i + r] * tmp[((size_t)yy * w + x) * 3 + c];
                }
                dst->rgb[((size_t)y * w + x) * 3 + c] = to_u8(a);
            }
}

tsr_status tsr_image_corrupt(const tsr_image *img, tsr_corruption kind, int severity,
                             unsigned long long seed, tsr_image **out, tsr_error *err)
{
    static const double noise[5] = {0.08, 0.12, 0.18, 0.26, 0.38};
    static const double sigma224[5] = {1, 2, 3, 4, 6};
    static const int quality[5] = {25, 18, 15, 10, 7};
    *out = NULL;
    if (severity < 1 || severity > 5)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "corruption severity must be 1..5, not %d",
                             severity);
    if (kind == TSR_CORRUPT_JPEG) {
        unsigned char *data = NULL;
        size_t n = 0;
        tsr_status rc = tsr_image_encode_jpeg(img, quality[severity - 1], &data, &n, err);
        if (rc == TSR_OK)
            rc = tsr_image_load_memory(data, n, "JPEG re-compression", out, err);
        free(data);
        return rc;
    }
    if (kind != TSR_CORRUPT_NOISE && kind != TSR_CORRUPT_BLUR)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "unknown corruption %d", (int)kind);
    tsr_image *dst = tsr_image_create(img->width, img->height);
    if (!dst)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory for a %dx%d image",
                             img->width, img->height);
    if (kind == TSR_CORRUPT_NOISE) {
        add_noise(img, dst, noise[severity - 1], seed);
    } else {
        int side = img->width < img->height ? img->width : img->height;
        float *tmp = malloc(sizeof(float) * (size_t)img->width * img->height * 3);
        if (!tmp) {
            tsr_image_free(dst);
            return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory for a %dx%d image",
                                 img->width, img->height);
        }
        blur(img, dst, sigma224[severity - 1] * side / 224.0, tmp);
        free(tmp);
    }
    *out = dst;
    return TSR_OK;
}
