/* PNG (libpng), JPEG (libjpeg-turbo), WebP (libwebp), GIF (giflib, the
 * first frame), TIFF (libtiff) and BMP decoding to 8-bit RGB, converted the
 * way PIL's Image.convert("RGB") converts each mode (alpha is dropped, not
 * composited). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gif_lib.h>
#include <jpeglib.h>
#include <jerror.h>
#include <png.h>
#include <tiffio.h>
#include <webp/decode.h>

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

tsr_image *tsr_image_create(int w, int h)
{
    if (w < 1 || h < 1 || w > TSR_IMAGE_MAX_SIDE || h > TSR_IMAGE_MAX_SIDE)
        return NULL;
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
    img = tsr_image_create((int)w, (int)h);
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
                img->clipped16 += v > 255;
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
    img = tsr_image_create(w, h);
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

/* ---- WebP ---- */

static tsr_status decode_webp(const unsigned char *data, size_t n, const char *name,
                              tsr_image **out, tsr_error *err)
{
    int w = 0, h = 0;
    if (!WebPGetInfo(data, n, &w, &h))
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: corrupt WebP (unreadable header)", name);
    tsr_status rc = check_dims(name, (unsigned long)w, (unsigned long)h, err);
    if (rc != TSR_OK)
        return rc;
    tsr_image *img = tsr_image_create(w, h);
    if (!img)
        return tsr_error_set(err, TSR_ERR_NOMEM, "%s: out of memory for %dx%d image", name, w, h);
    if (!WebPDecodeRGBInto(data, n, img->rgb, (size_t)w * h * 3, w * 3)) {
        tsr_image_free(img);
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: corrupt WebP (cannot decode the image)",
                             name);
    }
    *out = img;
    return TSR_OK;
}

/* ---- GIF: the first frame ---- */

static int gif_read_mem(GifFileType *g, GifByteType *buf, int len)
{
    mem_reader *r = g->UserData;
    size_t k = r->n - r->pos < (size_t)len ? r->n - r->pos : (size_t)len;
    memcpy(buf, r->data + r->pos, k);
    r->pos += k;
    return (int)k;
}

static tsr_status decode_gif(const unsigned char *data, size_t n, const char *name,
                             tsr_image **out, tsr_error *err)
{
    mem_reader rd = {data, n, 0};
    int e = 0;
    GifFileType *g = DGifOpen(&rd, gif_read_mem, &e);
    if (!g)
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: corrupt GIF: %s", name, GifErrorString(e));
    tsr_status rc = check_dims(name, (unsigned long)(g->SWidth > 0 ? g->SWidth : 0),
                               (unsigned long)(g->SHeight > 0 ? g->SHeight : 0), err);
    /* the first image descriptor */
    GifRecordType rt = UNDEFINED_RECORD_TYPE;
    int transparent = -1;
    while (rc == TSR_OK) {
        if (DGifGetRecordType(g, &rt) == GIF_ERROR) {
            rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s: corrupt GIF: %s", name,
                               GifErrorString(g->Error));
            break;
        }
        if (rt == IMAGE_DESC_RECORD_TYPE || rt == TERMINATE_RECORD_TYPE)
            break;
        if (rt == EXTENSION_RECORD_TYPE) {
            int code = 0;
            GifByteType *ext = NULL;
            if (DGifGetExtension(g, &code, &ext) == GIF_ERROR) {
                rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s: corrupt GIF: %s", name,
                                   GifErrorString(g->Error));
                break;
            }
            if (code == GRAPHICS_EXT_FUNC_CODE && ext && ext[0] >= 4 && (ext[1] & 1))
                transparent = ext[4];
            while (ext && rc == TSR_OK) {
                if (DGifGetExtensionNext(g, &ext) == GIF_ERROR)
                    rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s: corrupt GIF: %s", name,
                                       GifErrorString(g->Error));
            }
        }
    }
    if (rc == TSR_OK && rt != IMAGE_DESC_RECORD_TYPE)
        rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s: GIF without an image", name);
    if (rc == TSR_OK && DGifGetImageDesc(g) == GIF_ERROR)
        rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s: corrupt GIF: %s", name,
                           GifErrorString(g->Error));
    tsr_image *img = NULL;
    unsigned char *idx = NULL;
    if (rc == TSR_OK) {
        int W = g->SWidth, H = g->SHeight;
        GifImageDesc *d = &g->Image;
        ColorMapObject *cm = d->ColorMap ? d->ColorMap : g->SColorMap;
        if (!cm || d->Width <= 0 || d->Height <= 0 || d->Left < 0 || d->Top < 0 ||
            d->Left + d->Width > W || d->Top + d->Height > H)
            rc = tsr_error_set(err, TSR_ERR_FORMAT,
                               "%s: GIF frame without colours or outside the screen", name);
        img = rc == TSR_OK ? tsr_image_create(W, H) : NULL;
        idx = rc == TSR_OK ? malloc((size_t)d->Width * d->Height) : NULL;
        if (rc == TSR_OK && (!img || !idx))
            rc = tsr_error_set(err, TSR_ERR_NOMEM, "%s: out of memory for %dx%d image", name, W,
                               H);
        /* rows in file order; interlaced frames store them in four passes */
        static const int start[4] = {0, 4, 2, 1}, step[4] = {8, 8, 4, 2};
        int passes = d->Interlace ? 4 : 1;
        for (int p = 0; p < passes && rc == TSR_OK; p++)
            for (int y = d->Interlace ? start[p] : 0; y < d->Height && rc == TSR_OK;
                 y += d->Interlace ? step[p] : 1)
                if (DGifGetLine(g, idx + (size_t)y * d->Width, d->Width) == GIF_ERROR)
                    rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s: corrupt GIF: %s", name,
                                       GifErrorString(g->Error));
        if (rc == TSR_OK) {
            /* outside the frame: PIL fills the screen of the first frame with the
             * transparent index when there is one, else with index 0 (not the
             * background colour), and convert("RGB") keeps that index's colour */
            int bg = transparent >= 0 ? transparent : 0;
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    int in = x >= d->Left && x < d->Left + d->Width && y >= d->Top &&
                             y < d->Top + d->Height;
                    int c = in ? idx[(size_t)(y - d->Top) * d->Width + (x - d->Left)] : bg;
                    if (c >= cm->ColorCount)
                        c = 0;
                    unsigned char *o = img->rgb + ((size_t)y * W + x) * 3;
                    o[0] = cm->Colors[c].Red;
                    o[1] = cm->Colors[c].Green;
                    o[2] = cm->Colors[c].Blue;
                }
        }
    }
    DGifCloseFile(g, &e);
    free(idx);
    if (rc != TSR_OK) {
        tsr_image_free(img);
        return rc;
    }
    *out = img;
    return TSR_OK;
}

/* ---- TIFF ---- */

typedef struct {
    const unsigned char *data;
    tmsize_t n, pos;
} tiff_mem;

static tmsize_t tiff_read(thandle_t h, void *buf, tmsize_t len)
{
    tiff_mem *m = h;
    tmsize_t k = m->n - m->pos < len ? m->n - m->pos : len;
    if (k < 0)
        k = 0;
    memcpy(buf, m->data + m->pos, (size_t)k);
    m->pos += k;
    return k;
}

static tmsize_t tiff_write(thandle_t h, void *buf, tmsize_t len)
{
    (void)h;
    (void)buf;
    (void)len;
    return -1;
}

static toff_t tiff_seek(thandle_t h, toff_t off, int whence)
{
    tiff_mem *m = h;
    long long base = whence == SEEK_CUR ? m->pos : whence == SEEK_END ? m->n : 0;
    long long np = base + (long long)off;
    if (np < 0)
        return (toff_t)-1;
    m->pos = (tmsize_t)np;
    return (toff_t)np;
}

static int tiff_close(thandle_t h)
{
    (void)h;
    return 0;
}

static toff_t tiff_size(thandle_t h) { return (toff_t)((tiff_mem *)h)->n; }

static int tiff_map(thandle_t h, void **base, toff_t *size)
{
    (void)h;
    (void)base;
    (void)size;
    return 0;
}

static void tiff_unmap(thandle_t h, void *base, toff_t size)
{
    (void)h;
    (void)base;
    (void)size;
}

static _Thread_local char tiff_msg[256];

static void tiff_on_error(const char *module, const char *fmt, va_list ap);
static void tiff_on_warning(const char *module, const char *fmt, va_list ap);
static void tiff_handlers(void)
{
    TIFFSetErrorHandler(tiff_on_error);
    TIFFSetWarningHandler(tiff_on_warning);
}

static void tiff_on_error(const char *module, const char *fmt, va_list ap)
{
    (void)module;
    vsnprintf(tiff_msg, sizeof tiff_msg, fmt, ap);
}

static void tiff_on_warning(const char *module, const char *fmt, va_list ap)
{
    (void)module;
    (void)fmt;
    (void)ap;
}

/* 16-bit grey (clipped at 255, counted) or 8-bit RGBA (unassociated alpha
 * dropped, associated alpha divided out as Pillow's "RGBa" unpacker does:
 * c * 255 / a truncated), read scanline by scanline. */
static tsr_status tiff_read_raw(TIFF *t, tsr_image *img, int grey16, int assoc, const char *name,
                                tsr_error *err)
{
    int w = img->width;
    tmsize_t line = TIFFScanlineSize(t);
    unsigned char *buf = line >= (tmsize_t)w * (grey16 ? 2 : 4) ? malloc((size_t)line) : NULL;
    if (!buf)
        return tsr_error_set(err, line > 0 ? TSR_ERR_NOMEM : TSR_ERR_FORMAT,
                             "%s: corrupt TIFF: bad scanline size", name);
    tsr_status rc = TSR_OK;
    for (int y = 0; rc == TSR_OK && y < img->height; y++) {
        if (TIFFReadScanline(t, buf, (uint32_t)y, 0) < 0) {
            rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s: corrupt TIFF: %s", name,
                               tiff_msg[0] ? tiff_msg : "cannot decode the image");
            break;
        }
        unsigned char *o = img->rgb + (size_t)y * w * 3;
        for (int x = 0; x < w; x++, o += 3) {
            if (grey16) {
                uint16_t v;
                memcpy(&v, buf + 2 * (size_t)x, 2); /* libtiff swaps to host order */
                img->clipped16 += v > 255;
                o[0] = o[1] = o[2] = (unsigned char)(v > 255 ? 255 : v);
                continue;
            }
            const unsigned char *px = buf + 4 * (size_t)x;
            unsigned a = px[3];
            for (int c = 0; c < 3; c++) {
                unsigned v = px[c];
                if (assoc)
                    v = a == 0 ? 0 : a == 255 ? v : v * 255 / a > 255 ? 255 : v * 255 / a;
                o[c] = (unsigned char)v;
            }
        }
    }
    free(buf);
    return rc;
}

static tsr_status decode_tiff(const unsigned char *data, size_t n, const char *name,
                              tsr_image **out, tsr_error *err)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, tiff_handlers);
    tiff_msg[0] = 0;
    tiff_mem m = {data, (tmsize_t)n, 0};
    TIFF *t = TIFFClientOpen(name, "rm", &m, tiff_read, tiff_write, tiff_seek, tiff_close,
                             tiff_size, tiff_map, tiff_unmap);
    if (!t)
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: corrupt TIFF: %s", name,
                             tiff_msg[0] ? tiff_msg : "unreadable header");
    uint32_t w = 0, h = 0;
    TIFFGetField(t, TIFFTAG_IMAGEWIDTH, &w);
    TIFFGetField(t, TIFFTAG_IMAGELENGTH, &h);
    tsr_status rc = check_dims(name, w, h, err);
    /* Pillow reads samples as stored where TIFFRGBAImage would convert them:
     * 16-bit grey is clipped at 255 (as for 16-bit PNGs), unassociated alpha is
     * dropped as it is, associated alpha is divided out (c * 255 / a,
     * truncated). Those layouts are read here, strip by strip. */
    uint16_t spp = 1, bps = 1, photo = 0, planar = PLANARCONFIG_CONTIG, fmt = SAMPLEFORMAT_UINT;
    uint16_t nextra = 0, *extra = NULL;
    TIFFGetFieldDefaulted(t, TIFFTAG_SAMPLESPERPIXEL, &spp);
    TIFFGetFieldDefaulted(t, TIFFTAG_BITSPERSAMPLE, &bps);
    TIFFGetFieldDefaulted(t, TIFFTAG_PLANARCONFIG, &planar);
    TIFFGetFieldDefaulted(t, TIFFTAG_SAMPLEFORMAT, &fmt);
    TIFFGetField(t, TIFFTAG_PHOTOMETRIC, &photo);
    TIFFGetFieldDefaulted(t, TIFFTAG_EXTRASAMPLES, &nextra, &extra);
    int grey16 = photo == PHOTOMETRIC_MINISBLACK && spp == 1 && bps == 16;
    int rgba8 = photo == PHOTOMETRIC_RGB && spp == 4 && bps == 8 && nextra == 1 && extra;
    int raw = !TIFFIsTiled(t) && planar == PLANARCONFIG_CONTIG && fmt == SAMPLEFORMAT_UINT &&
              (grey16 || rgba8);
    tsr_image *img = rc == TSR_OK ? tsr_image_create((int)w, (int)h) : NULL;
    uint32_t *raster = rc == TSR_OK && !raw ? malloc(sizeof(uint32_t) * (size_t)w * h) : NULL;
    if (rc == TSR_OK && (!img || (!raw && !raster)))
        rc = tsr_error_set(err, TSR_ERR_NOMEM, "%s: out of memory for %ux%u image", name, w, h);
    if (rc == TSR_OK && raw)
        rc = tiff_read_raw(t, img, grey16, rgba8 && extra[0] == EXTRASAMPLE_ASSOCALPHA, name, err);
    char emsg[1024] = "";
    if (rc == TSR_OK && !raw && !TIFFRGBAImageOK(t, emsg))
        rc = tsr_error_set(err, TSR_ERR_UNSUPPORTED, "%s: unsupported TIFF: %s", name, emsg);
    if (rc == TSR_OK && !raw && !TIFFReadRGBAImageOriented(t, w, h, raster, ORIENTATION_TOPLEFT, 1))
        rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s: corrupt TIFF: %s", name,
                           tiff_msg[0] ? tiff_msg : "cannot decode the image");
    for (size_t i = 0; rc == TSR_OK && !raw && i < (size_t)w * h; i++) {
        img->rgb[3 * i] = (unsigned char)TIFFGetR(raster[i]);
        img->rgb[3 * i + 1] = (unsigned char)TIFFGetG(raster[i]);
        img->rgb[3 * i + 2] = (unsigned char)TIFFGetB(raster[i]);
    }
    free(raster);
    TIFFClose(t);
    if (rc != TSR_OK) {
        tsr_image_free(img);
        return rc;
    }
    *out = img;
    return TSR_OK;
}

/* ---- BMP (Windows bitmaps: 1, 4, 8, 24 and 32 bits, uncompressed or bit fields) ---- */

static unsigned rd16(const unsigned char *p) { return p[0] | (unsigned)p[1] << 8; }
static uint32_t rd32(const unsigned char *p)
{
    return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int mask_shift(uint32_t m, int *bits)
{
    int s = 0, b = 0;
    while (m && !(m & 1))
        m >>= 1, s++;
    while (m & 1)
        m >>= 1, b++;
    *bits = b;
    return s;
}

static unsigned char mask_get(uint32_t v, uint32_t m, int shift, int bits)
{
    if (!m || !bits)
        return 0;
    uint32_t x = (v & m) >> shift;
    return (unsigned char)(bits >= 8 ? x >> (bits - 8) : (x * 255 + ((1u << bits) - 1) / 2) / ((1u << bits) - 1));
}

/* RLE8 and RLE4 as Pillow's BmpRleDecoder reads them: codes fill a buffer
 * of palette indices in file row order (bottom row first); a run is cut at
 * the end of its row, end-of-line pads the row with index 0, a delta
 * skips pixels (index 0), an absolute run is not cut at the row's end and is
 * followed by a pad byte when the file position is odd. Data that ends
 * before the image is full is an error, as in Pillow ("not enough image
 * data"). */
static tsr_status decode_bmp_rle(const unsigned char *d, size_t n, uint32_t off, int w, int h,
                                 int rle4, const unsigned char *pal, uint32_t pal_n,
                                 const char *name, tsr_image **out, tsr_error *err)
{
    if (off > n)
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: corrupt BMP: pixel data cut short", name);
    size_t total = (size_t)w * h, len = 0, p = off;
    unsigned char *idx = calloc(total, 1);
    tsr_image *img = tsr_image_create(w, h);
    if (!idx || !img) {
        free(idx);
        tsr_image_free(img);
        return tsr_error_set(err, TSR_ERR_NOMEM, "%s: out of memory for %dx%d image", name, w, h);
    }
    long long x = 0;
    int cut = 0;
#define PUT(v) (len < total ? (void)(idx[len++] = (unsigned char)(v)) : (void)len++)
    while (len < total) {
        if (p + 2 > n) {
            cut = 1;
            break;
        }
        unsigned count = d[p], code = d[p + 1];
        p += 2;
        if (count) { /* a run */
            long long k = x + count > w ? (w - x > 0 ? w - x : 0) : count;
            for (long long i = 0; i < k; i++)
                PUT(rle4 ? (i % 2 ? code & 15 : code >> 4) : code);
            x += k;
        } else if (code == 0) { /* end of line */
            while (len % (size_t)w)
                PUT(0);
            x = 0;
        } else if (code == 1) { /* end of bitmap */
            break;
        } else if (code == 2) { /* delta: right, up */
            if (p + 2 > n) {
                cut = 1;
                break;
            }
            size_t skip = d[p] + (size_t)d[p + 1] * w;
            p += 2;
            for (size_t i = 0; i < skip && len < total; i++)
                PUT(0);
            x = (long long)(len % (size_t)w);
        } else { /* absolute: code pixels */
            size_t want = total - len < code ? total - len : code;
            size_t bytes = rle4 ? (want + 1) / 2 : want, have = n - p < bytes ? n - p : bytes;
            for (size_t i = 0; i < have; i++) {
                if (rle4) {
                    PUT(d[p + i] >> 4);
                    if (i * 2 + 1 < want)
                        PUT(d[p + i] & 15);
                } else {
                    PUT(d[p + i]);
                }
            }
            p += have;
            if (have < bytes || len >= total) {
                cut = have < bytes;
                break;
            }
            x += code;
            if (p % 2)
                p++;
        }
    }
#undef PUT
    if (len < total) { /* Pillow: "not enough image data" */
        free(idx);
        tsr_image_free(img);
        return tsr_error_set(err, TSR_ERR_FORMAT,
                             "%s: corrupt BMP: the RLE data %s after %zu of %zu pixels", name,
                             cut ? "is cut short" : "ends", len, total);
    }
    for (int y = 0; y < h; y++) {
        const unsigned char *row = idx + (size_t)(h - 1 - y) * w;
        unsigned char *o = img->rgb + (size_t)y * w * 3;
        for (int xx = 0; xx < w; xx++, o += 3) {
            unsigned v = row[xx] < pal_n ? row[xx] : 0;
            o[0] = pal[4 * v + 2], o[1] = pal[4 * v + 1], o[2] = pal[4 * v];
        }
    }
    free(idx);
    *out = img;
    return TSR_OK;
}

static tsr_status decode_bmp(const unsigned char *d, size_t n, const char *name, tsr_image **out,
                             tsr_error *err)
{
    if (n < 26)
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: corrupt BMP: file too short", name);
    uint32_t off = rd32(d + 10), hs = rd32(d + 14);
    if (hs < 40 || 14 + (size_t)hs > n)
        return tsr_error_set(err, TSR_ERR_UNSUPPORTED, "%s: unsupported BMP header (%u bytes)",
                             name, hs);
    int32_t w = (int32_t)rd32(d + 18), h = (int32_t)rd32(d + 22);
    unsigned bpp = rd16(d + 28);
    uint32_t comp = rd32(d + 30), ncol = rd32(d + 46);
    int top_down = h < 0;
    long long ah = h < 0 ? -(long long)h : h;
    tsr_status rc = check_dims(name, w > 0 ? (unsigned long)w : 0, (unsigned long)ah, err);
    if (rc != TSR_OK)
        return rc;
    int rle = (comp == 1 && bpp == 8) || (comp == 2 && bpp == 4);
    if (!(comp == 0 || rle || (comp == 3 && (bpp == 16 || bpp == 32))) ||
        !(bpp == 1 || bpp == 4 || bpp == 8 || bpp == 16 || bpp == 24 || bpp == 32))
        return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                             "%s: unsupported BMP (%u bits, compression %u)", name, bpp, comp);
    uint32_t rm = 0, gm = 0, bm = 0;
    if (comp == 3) {
        size_t mo = hs >= 52 ? 14 + 40 : 14 + hs; /* in the header (V4/V5), or after it */
        if (mo + 12 > n)
            return tsr_error_set(err, TSR_ERR_FORMAT, "%s: corrupt BMP: no bit masks", name);
        rm = rd32(d + mo), gm = rd32(d + mo + 4), bm = rd32(d + mo + 8);
    } else if (bpp == 16) {
        rm = 0x7c00, gm = 0x03e0, bm = 0x001f;
    }
    int rb, gb, bb, rs = mask_shift(rm, &rb), gs = mask_shift(gm, &gb), bs = mask_shift(bm, &bb);
    const unsigned char *pal = d + 14 + hs;
    uint32_t pal_n = bpp <= 8 ? (ncol ? ncol : 1u << bpp) : 0;
    if (pal_n > 256 || (size_t)(pal - d) + 4 * (size_t)pal_n > n)
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: corrupt BMP: bad palette", name);
    if (rle)
        return decode_bmp_rle(d, n, off, w, (int)ah, comp == 2, pal, pal_n, name, out, err);
    size_t stride = (((size_t)w * bpp + 31) / 32) * 4;
    if (off > n || stride * (size_t)ah > n - off)
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: corrupt BMP: pixel data cut short", name);
    tsr_image *img = tsr_image_create(w, (int)ah);
    if (!img)
        return tsr_error_set(err, TSR_ERR_NOMEM, "%s: out of memory for %dx%lld image", name, w,
                             ah);
    for (long long y = 0; y < ah; y++) {
        const unsigned char *row = d + off + stride * (size_t)(top_down ? y : ah - 1 - y);
        unsigned char *o = img->rgb + (size_t)y * w * 3;
        for (int x = 0; x < w; x++, o += 3) {
            if (bpp <= 8) {
                unsigned bit = (unsigned)x * bpp;
                unsigned v = (row[bit / 8] >> (8 - bpp - bit % 8)) & ((1u << bpp) - 1);
                if (v >= pal_n)
                    v = 0;
                o[0] = pal[4 * v + 2], o[1] = pal[4 * v + 1], o[2] = pal[4 * v];
            } else if (bpp == 24) {
                o[0] = row[3 * x + 2], o[1] = row[3 * x + 1], o[2] = row[3 * x];
            } else if (bpp == 32 && comp == 0) {
                o[0] = row[4 * x + 2], o[1] = row[4 * x + 1], o[2] = row[4 * x];
            } else {
                uint32_t v = bpp == 16 ? rd16(row + 2 * x) : rd32(row + 4 * x);
                o[0] = mask_get(v, rm, rs, rb), o[1] = mask_get(v, gm, gs, gb),
                o[2] = mask_get(v, bm, bs, bb);
            }
        }
    }
    *out = img;
    return TSR_OK;
}

typedef enum { FMT_NONE, FMT_PNG, FMT_JPEG, FMT_WEBP, FMT_GIF, FMT_TIFF, FMT_BMP } image_format;

/* The format from the first bytes. */
static image_format format_of(const unsigned char *b, size_t n)
{
    if (n >= 8 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0)
        return FMT_PNG;
    if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff)
        return FMT_JPEG;
    if (n >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WEBP", 4) == 0)
        return FMT_WEBP;
    if (n >= 6 && (memcmp(b, "GIF87a", 6) == 0 || memcmp(b, "GIF89a", 6) == 0))
        return FMT_GIF;
    if (n >= 4 && (memcmp(b, "II*\0", 4) == 0 || memcmp(b, "MM\0*", 4) == 0))
        return FMT_TIFF;
    if (n >= 2 && b[0] == 'B' && b[1] == 'M')
        return FMT_BMP;
    return FMT_NONE;
}

int tsr_image_sniff(const unsigned char *b, size_t n)
{
    image_format f = format_of(b, n);
    if (f != FMT_BMP)
        return f != FMT_NONE;
    if (n < 18)
        return 0;
    uint32_t hs = rd32(b + 14); /* "BM" alone is weak: also a known DIB header size */
    return hs == 40 || hs == 52 || hs == 56 || hs == 108 || hs == 124;
}

tsr_status tsr_image_load_memory(const unsigned char *data, size_t n, const char *name,
                                 tsr_image **out, tsr_error *err)
{
    *out = NULL;
    switch (format_of(data, n)) {
    case FMT_PNG:
        return decode_png(data, n, name, out, err);
    case FMT_JPEG:
        return decode_jpeg(data, n, name, out, err);
    case FMT_WEBP:
        return decode_webp(data, n, name, out, err);
    case FMT_GIF:
        return decode_gif(data, n, name, out, err);
    case FMT_TIFF:
        return decode_tiff(data, n, name, out, err);
    case FMT_BMP:
        return decode_bmp(data, n, name, out, err);
    case FMT_NONE:
        break;
    }
    if (n == 0)
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: file is empty", name);
    return tsr_error_set(err, TSR_ERR_FORMAT,
                         "%s: not a PNG, JPEG, WebP, GIF, TIFF or BMP image (unrecognised "
                         "signature)",
                         name);
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
