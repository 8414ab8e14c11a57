/* PNG (libpng) and JPEG (libjpeg-turbo) decoding to 8-bit RGB, converted the
 * way PIL's Image.convert("RGB") converts each mode. */
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

#include "tsr_cl_internal.h"
#include "tsr_vision.h"

#define MAX_FILE_BYTES (1u << 30)

void tsr_image_free(tsr_image *img)
{
    if (img) {
        free(img->rgb);
        free(img);
    }
}

static tsr_status check_dims(const char *name, unsigned long w, unsigned long h, tsr_error *err)
{
    if (w == 0 || h == 0)
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: image has zero size (%lux%lu)", name, w, h);
    if (w > TSR_IMAGE_MAX_SIDE || h > TSR_IMAGE_MAX_SIDE ||
        (unsigned long long)w * h > TSR_IMAGE_MAX_PIXELS)
        return tsr_error_set(err, TSR_ERR_TOO_LARGE,
                             "%s: image declares %lux%lu pixels, above the limit of %u per side "
                             "and %u in total",
                             name, w, h, TSR_IMAGE_MAX_SIDE, TSR_IMAGE_MAX_PIXELS);
    return TSR_OK;
}

static tsr_image *image_new(int w, int h)
{
    tsr_image *img = calloc(1, sizeof *img);
    if (!img)
        return NULL;
    img->width = w;
    img->height = h;
    img->rgb = malloc((size_t)w * h * 3);
    if (!img->rgb) {
        free(img);
        return NULL;
    }
    return img;
}

/* ---- PNG ---- */

typedef struct {
    const unsigned char *data;
    size_t n, pos;
} mem_reader;

typedef struct {
    jmp_buf jb;
    char msg[200];
} png_errctx;

static void png_read_mem(png_structp png, png_bytep out, png_size_t len)
{
    mem_reader *r = png_get_io_ptr(png);
    if (len > r->n - r->pos)
        png_error(png, "file is truncated");
    memcpy(out, r->data + r->pos, len);
    r->pos += len;
}

static void png_on_error(png_structp png, png_const_charp msg)
{
    png_errctx *e = png_get_error_ptr(png);
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    longjmp(e->jb, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) {}

static tsr_status decode_png(const unsigned char *data, size_t n, const char *name,
                             tsr_image **out, tsr_error *err)
{
    png_errctx ectx = {0};
    mem_reader rd = {data, n, 0};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ectx, png_on_error,
                                             png_on_warning);
    if (!png)
        return tsr_error_set(err, TSR_ERR_NOMEM, "%s: out of memory", name);
    png_infop info = png_create_info_struct(png);
    /* volatile: modified between setjmp and a possible longjmp */
    unsigned char *volatile row = NULL;
    png_bytep *volatile rows = NULL;
    tsr_image *volatile img = NULL;
    if (!info || setjmp(ectx.jb)) {
        tsr_status rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s: corrupt PNG: %s", name,
                                      ectx.msg[0] ? ectx.msg : "cannot decode");
        png_destroy_read_struct(&png, info ? &info : NULL, NULL);
        free(row);
        free(rows);
        tsr_image_free(img);
        return rc;
    }
    png_set_read_fn(png, &rd, png_read_mem);
    png_set_user_limits(png, TSR_IMAGE_MAX_SIDE, TSR_IMAGE_MAX_SIDE);
    png_read_info(png, info);
    png_uint_32 w, h;
    int depth, ctype, interlace;
    png_get_IHDR(png, info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
    tsr_status rc = check_dims(name, w, h, err);
    if (rc != TSR_OK) {
        png_destroy_read_struct(&png, &info, NULL);
        return rc;
    }
    /* PIL opens 16-bit grey as "I;16" and convert("RGB") clips each value at 255. */
    int grey16 = depth == 16 && ctype == PNG_COLOR_TYPE_GRAY;
    if (ctype == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16 && !grey16)
        png_set_strip_16(png); /* keeps the high byte, as PIL's ";16B" raw modes */
    if (grey16)
        png_set_swap(png); /* host order for the clip below */
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int ch = png_get_channels(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    img = image_new((int)w, (int)h);
    if (!img) {
        png_destroy_read_struct(&png, &info, NULL);
        return tsr_error_set(err, TSR_ERR_NOMEM, "%s: out of memory for %ux%u image", name, w, h);
    }
    (void)interlace;
    /* Decode the whole frame (interlaced images need it), then convert. */
    unsigned char *buf = malloc(rowbytes * h);
    row = buf;
    rows = malloc(sizeof(png_bytep) * h);
    if (!buf || !rows)
        png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < h; y++)
        rows[y] = buf + rowbytes * y;
    png_read_image(png, rows);
    free(rows);
    rows = NULL;
    png_read_end(png, NULL);
    for (png_uint_32 y = 0; y < h; y++) {
        const unsigned char *s = buf + rowbytes * y;
        unsigned char *d = img->rgb + (size_t)y * w * 3;
        for (png_uint_32 x = 0; x < w; x++, d += 3) {
            if (grey16) {
                unsigned v;
                v = ((const unsigned short *)(const void *)s)[x];
                d[0] = d[1] = d[2] = (unsigned char)(v > 255 ? 255 : v);
            } else if (ch <= 2) {
                d[0] = d[1] = d[2] = s[x * ch];
            } else {
                memcpy(d, s + x * ch, 3);
            }
        }
    }
    png_destroy_read_struct(&png, &info, NULL);
    free(buf);
    *out = img;
    return TSR_OK;
}

/* ---- JPEG ---- */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
} jpeg_errctx;

static void jpeg_on_error(j_common_ptr cinfo)
{
    jpeg_errctx *e = (jpeg_errctx *)cinfo->err;
    longjmp(e->jb, 1);
}

/* A truncated stream is only a warning to libjpeg (it pads with grey); PIL
 * refuses such files, and so do we. */
static void jpeg_on_message(j_common_ptr cinfo, int level)
{
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF)
        cinfo->err->error_exit(cinfo);
}

/* PIL reads every 4-component JPEG as inverted CMYK ("CMYK;I"), then
 * converts with r = clip(nk - nk*c/255), nk = 255 - k, in integer arithmetic. */
static unsigned char cmyk_channel(unsigned char stored_c, unsigned char stored_k)
{
    int c = 255 - stored_c, nk = stored_k; /* nk = 255 - (255 - stored_k) */
    int t = c * nk + 128;
    int v = nk - (((t >> 8) + t) >> 8);
    return (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
}

static tsr_status decode_jpeg(const unsigned char *data, size_t n, const char *name,
                              tsr_image **out, tsr_error *err)
{
    struct jpeg_decompress_struct cinfo;
    jpeg_errctx jerr;
    tsr_image *volatile img = NULL;
    unsigned char *volatile row = NULL;
    cinfo.err = jpeg_std_error(&jerr.pub);
    jerr.pub.error_exit = jpeg_on_error;
    jerr.pub.emit_message = jpeg_on_message;
    if (setjmp(jerr.jb)) {
        char msg[JMSG_LENGTH_MAX] = {0};
        jerr.pub.format_message((j_common_ptr)&cinfo, msg);
        jpeg_destroy_decompress(&cinfo);
        tsr_image_free(img);
        free(row);
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: corrupt JPEG: %s", name, msg);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)n);
    jpeg_read_header(&cinfo, TRUE);
    tsr_status rc = check_dims(name, cinfo.image_width, cinfo.image_height, err);
    if (rc != TSR_OK) {
        jpeg_destroy_decompress(&cinfo);
        return rc;
    }
    int cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    if (cmyk)
        cinfo.out_color_space = JCS_CMYK;
    else if (cinfo.num_components == 1)
        cinfo.out_color_space = JCS_GRAYSCALE;
    else
        cinfo.out_color_space = JCS_RGB;
    jpeg_start_decompress(&cinfo);
    int w = (int)cinfo.output_width, h = (int)cinfo.output_height, ch = cinfo.output_components;
    img = image_new(w, h);
    row = malloc((size_t)w * ch);
    if (!img || !row) {
        jpeg_destroy_decompress(&cinfo);
        tsr_image_free(img);
        free(row);
        return tsr_error_set(err, TSR_ERR_NOMEM, "%s: out of memory for %dx%d image", name, w, h);
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        int y = (int)cinfo.output_scanline;
        JSAMPROW rp = row;
        jpeg_read_scanlines(&cinfo, &rp, 1);
        unsigned char *d = img->rgb + (size_t)y * w * 3;
        for (int x = 0; x < w; x++, d += 3) {
            const unsigned char *s = row + (size_t)x * ch;
            if (cmyk) {
                for (int c = 0; c < 3; c++)
                    d[c] = cmyk_channel(s[c], s[3]);
            } else if (ch == 1) {
                d[0] = d[1] = d[2] = s[0];
            } else {
                memcpy(d, s, 3);
            }
        }
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(row);
    *out = img;
    return TSR_OK;
}

tsr_status tsr_image_load_memory(const unsigned char *data, size_t n, const char *name,
                                 tsr_image **out, tsr_error *err)
{
    *out = NULL;
    static const unsigned char png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n >= 8 && memcmp(data, png_sig, 8) == 0)
        return decode_png(data, n, name, out, err);
    if (n >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff)
        return decode_jpeg(data, n, name, out, err);
    if (n == 0)
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: file is empty", name);
    return tsr_error_set(err, TSR_ERR_FORMAT,
                         "%s: not a PNG or JPEG image (unrecognised signature)", name);
}

tsr_status tsr_image_load_file(const char *path, tsr_image **out, tsr_error *err)
{
    *out = NULL;
    TSR_ERR_LOCAL(err);
    size_t n = 0;
    unsigned char *buf = tsr_read_file(path, MAX_FILE_BYTES, &n, err);
    if (!buf)
        return err->code;
    tsr_status rc = tsr_image_load_memory(buf, n, path, out, err);
    free(buf);
    return rc;
}
