/* CLIPImageProcessor, step for step: Pillow's bicubic resize of the shorter
 * side (8-bit fixed point, two passes, horizontal first, antialiased when
 * downscaling), centre crop with zero padding, rescale, normalise. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsr_cl_internal.h"
#include "tsr_vision.h"

#define PRECISION_BITS (32 - 8 - 2)

static double bicubic(double x)
{
    const double a = -0.5;
    if (x < 0.0)
        x = -x;
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0)
        return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

/* Filter taps for one axis: for each output index, the first input index,
 * the tap count and ksize fixed-point weights. */
typedef struct {
    int ksize;
    int *bounds; /* (out, 2): first, count */
    int *k;      /* (out, ksize) */
} taps;

static int taps_make(int in_size, int out_size, taps *t)
{
    double scale = (double)in_size / out_size, filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 2.0 * filterscale;
    t->ksize = (int)ceil(support) * 2 + 1;
    t->bounds = malloc(sizeof(int) * 2 * (size_t)out_size);
    t->k = malloc(sizeof(int) * (size_t)t->ksize * out_size);
    double *w = malloc(sizeof(double) * (size_t)t->ksize);
    if (!t->bounds || !t->k || !w) {
        free(w);
        return 0;
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0)
            xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size)
            xmax = in_size;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) {
            w[x] = bicubic((x + xmin - center + 0.5) * ss);
            ww += w[x];
        }
        int *k = t->k + (size_t)xx * t->ksize;
        for (int x = 0; x < t->ksize; x++) {
            double v = x < xmax ? (ww != 0.0 ? w[x] / ww : w[x]) : 0.0;
            k[x] = v < 0 ? (int)(-0.5 + v * (1 << PRECISION_BITS))
                         : (int)(0.5 + v * (1 << PRECISION_BITS));
        }
        t->bounds[2 * xx] = xmin;
        t->bounds[2 * xx + 1] = xmax;
    }
    free(w);
    return 1;
}

static void taps_free(taps *t)
{
    free(t->bounds);
    free(t->k);
}

static unsigned char clip8(int v)
{
    v >>= PRECISION_BITS; /* arithmetic shift: floor, as Pillow's lookup table */
    return (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Horizontal pass: rows [row0, row0 + rows) of in (w wide) to out (t's width). */
static void pass_h(const unsigned char *in, int w, int row0, int rows, const taps *t, int dw,
                   unsigned char *out)
{
    for (int y = 0; y < rows; y++) {
        const unsigned char *r = in + (size_t)(y + row0) * w * 3;
        unsigned char *o = out + (size_t)y * dw * 3;
        for (int xx = 0; xx < dw; xx++) {
            const int *k = t->k + (size_t)xx * t->ksize;
            int xmin = t->bounds[2 * xx], n = t->bounds[2 * xx + 1];
            int s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
            for (int x = 0; x < n; x++) {
                const unsigned char *p = r + (size_t)(x + xmin) * 3;
                s0 += p[0] * k[x];
                s1 += p[1] * k[x];
                s2 += p[2] * k[x];
            }
            o[3 * xx] = clip8(s0);
            o[3 * xx + 1] = clip8(s1);
            o[3 * xx + 2] = clip8(s2);
        }
    }
}

/* Vertical pass: in (w wide, its row 0 is source row row0) to out (dh rows). */
static void pass_v(const unsigned char *in, int w, int row0, const taps *t, int dh,
                   unsigned char *out)
{
    for (int yy = 0; yy < dh; yy++) {
        const int *k = t->k + (size_t)yy * t->ksize;
        int ymin = t->bounds[2 * yy] - row0, n = t->bounds[2 * yy + 1];
        unsigned char *o = out + (size_t)yy * w * 3;
        for (int xx = 0; xx < w; xx++) {
            int s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
            for (int y = 0; y < n; y++) {
                const unsigned char *p = in + ((size_t)(y + ymin) * w + xx) * 3;
                s0 += p[0] * k[y];
                s1 += p[1] * k[y];
                s2 += p[2] * k[y];
            }
            o[3 * xx] = clip8(s0);
            o[3 * xx + 1] = clip8(s1);
            o[3 * xx + 2] = clip8(s2);
        }
    }
}

/* The taps of output indices [first, first + n) of t, as a taps of n outputs. */
static taps taps_window(const taps *t, int first)
{
    taps w = {t->ksize, t->bounds + 2 * (size_t)first, t->k + (size_t)first * t->ksize};
    return w;
}

/* The window [x0, x0 + ww) x [y0, y0 + wh) of the dw x dh resize of src,
 * equal pixel for pixel to that part of the whole resize (each output
 * column and row depends on its own taps only), so that a very thin image
 * whose long side becomes 100,000 pixels costs only its centre crop. */
static tsr_status resize_window(const tsr_image *src, int dw, int dh, int x0, int y0, int ww,
                                int wh, tsr_image **out, tsr_error *err)
{
    *out = NULL;
    if (dw <= 0 || dh <= 0 || dw > TSR_RESIZE_MAX_SIDE || dh > TSR_RESIZE_MAX_SIDE || x0 < 0 ||
        y0 < 0 || ww <= 0 || wh <= 0 || x0 + ww > dw || y0 + wh > dh ||
        ww > TSR_IMAGE_MAX_SIDE || wh > TSR_IMAGE_MAX_SIDE)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "bad resize target %dx%d", dw, dh);
    int sw = src->width, sh = src->height;
    int need_h = dw != sw, need_v = dh != sh;
    taps th = {0}, tv = {0};
    unsigned char *tmp = NULL;
    tsr_image *dst = calloc(1, sizeof *dst);
    if (!dst || (need_h && !taps_make(sw, dw, &th)) || (need_v && !taps_make(sh, dh, &tv)))
        goto oom;
    dst->width = ww;
    dst->height = wh;
    dst->rgb = malloc((size_t)ww * wh * 3);
    if (!dst->rgb)
        goto oom;
    taps wh_t = need_h ? taps_window(&th, x0) : th, wv_t = need_v ? taps_window(&tv, y0) : tv;
    /* Pillow 13 (python-pillow/Pillow#9549) runs the vertical pass first
     * when the height shrinks by more than twice as many pixels as the
     * width; otherwise, as every Pillow before it, the horizontal pass
     * first, over only the rows the vertical pass reads. (The whole sizes
     * decide, not the window's.) */
    if (need_h && need_v && dh < sh && sh - dh > 2 * (sw - dw)) {
        if (!(tmp = malloc((size_t)sw * wh * 3)))
            goto oom;
        pass_v(src->rgb, sw, 0, &wv_t, wh, tmp);
        pass_h(tmp, sw, 0, wh, &wh_t, ww, dst->rgb);
    } else if (need_h && need_v) {
        int first = wv_t.bounds[0], last = wv_t.bounds[2 * (wh - 1)] + wv_t.bounds[2 * (wh - 1) + 1];
        if (!(tmp = malloc((size_t)ww * (last - first) * 3)))
            goto oom;
        pass_h(src->rgb, sw, first, last - first, &wh_t, ww, tmp);
        pass_v(tmp, ww, first, &wv_t, wh, dst->rgb);
    } else if (need_h) {
        pass_h(src->rgb, sw, y0, wh, &wh_t, ww, dst->rgb);
    } else if (need_v) {
        /* the columns [x0, x0 + ww) of each source row */
        if (!(tmp = malloc((size_t)ww * sh * 3)))
            goto oom;
        for (int y = 0; y < sh; y++)
            memcpy(tmp + (size_t)y * ww * 3, src->rgb + ((size_t)y * sw + x0) * 3, (size_t)ww * 3);
        pass_v(tmp, ww, 0, &wv_t, wh, dst->rgb);
    } else {
        for (int y = 0; y < wh; y++)
            memcpy(dst->rgb + (size_t)y * ww * 3, src->rgb + ((size_t)(y + y0) * sw + x0) * 3,
                   (size_t)ww * 3);
    }
    free(tmp);
    taps_free(&th);
    taps_free(&tv);
    *out = dst;
    return TSR_OK;
oom:
    free(tmp);
    taps_free(&th);
    taps_free(&tv);
    tsr_image_free(dst);
    return tsr_error_set(err, TSR_ERR_NOMEM, "out of memory resizing to %dx%d", dw, dh);
}

tsr_status tsr_image_resize_bicubic(const tsr_image *src, int dw, int dh, tsr_image **out,
                                    tsr_error *err)
{
    if (dw > TSR_IMAGE_MAX_SIDE || dh > TSR_IMAGE_MAX_SIDE) {
        *out = NULL;
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "bad resize target %dx%d", dw, dh);
    }
    return resize_window(src, dw, dh, 0, 0, dw, dh, out, err);
}

tsr_preprocess_cfg tsr_preprocess_cfg_default(int size)
{
    tsr_preprocess_cfg c = {
        .do_resize = 1, .shortest_edge = size, .do_center_crop = 1, .crop_h = size,
        .crop_w = size, .do_rescale = 1, .rescale_factor = 1.0 / 255.0, .do_normalize = 1,
        .mean = {0.48145466f, 0.4578275f, 0.40821073f},
        .std = {0.26862954f, 0.26130258f, 0.27577711f},
    };
    return c;
}

static int json_int(const cJSON *o, const char *key, int *v)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsNumber(it)) {
        *v = (int)it->valuedouble;
        return 1;
    }
    return 0;
}

static void json_bool(const cJSON *o, const char *key, int *v)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsBool(it))
        *v = cJSON_IsTrue(it);
}

static int json_vec3(const cJSON *o, const char *key, float *v)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!it)
        return 1;
    if (cJSON_IsNumber(it)) {
        v[0] = v[1] = v[2] = (float)it->valuedouble;
        return 1;
    }
    if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) != 3)
        return 0;
    for (int i = 0; i < 3; i++) {
        const cJSON *e = cJSON_GetArrayItem(it, i);
        if (!cJSON_IsNumber(e))
            return 0;
        v[i] = (float)e->valuedouble;
    }
    return 1;
}

tsr_status tsr_preprocess_cfg_load(const char *path, tsr_preprocess_cfg *cfg, tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    size_t n = 0;
    char *text = (char *)tsr_read_file(path, 1 << 20, &n, err);
    if (!text)
        return err->code;
    tsr_status rc = tsr_preprocess_cfg_load_json(text, n, path, cfg, err);
    free(text);
    return rc;
}

tsr_status tsr_preprocess_cfg_load_json(const char *json, size_t len, const char *path,
                                        tsr_preprocess_cfg *cfg, tsr_error *err)
{
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: not a JSON object", path);
    }
    tsr_preprocess_cfg c = tsr_preprocess_cfg_default(224);
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(root, "size");
    int s;
    if (cJSON_IsNumber(size))
        c.shortest_edge = (int)size->valuedouble;
    else if (json_int(size, "shortest_edge", &s))
        c.shortest_edge = s;
    else if (json_int(size, "height", &c.resize_h) && json_int(size, "width", &c.resize_w))
        c.shortest_edge = 0;
    else if (size) {
        cJSON_Delete(root);
        return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                             "%s: only \"size\": {\"shortest_edge\": N} or {\"height\": H, "
                             "\"width\": W} is supported", path);
    }
    int exact = c.shortest_edge == 0;
    const cJSON *crop = cJSON_GetObjectItemCaseSensitive(root, "crop_size");
    if (cJSON_IsNumber(crop))
        c.crop_h = c.crop_w = (int)crop->valuedouble;
    else if (crop) {
        json_int(crop, "height", &c.crop_h);
        json_int(crop, "width", &c.crop_w);
    } else if (exact) {
        c.crop_h = c.resize_h;
        c.crop_w = c.resize_w;
    } else {
        c.crop_h = c.crop_w = c.shortest_edge;
    }
    json_bool(root, "do_resize", &c.do_resize);
    json_bool(root, "do_center_crop", &c.do_center_crop);
    if (exact && !c.do_center_crop) { /* BLIP: the resized image is the input */
        c.crop_h = c.resize_h;
        c.crop_w = c.resize_w;
    }
    json_bool(root, "do_rescale", &c.do_rescale);
    json_bool(root, "do_normalize", &c.do_normalize);
    const cJSON *rf = cJSON_GetObjectItemCaseSensitive(root, "rescale_factor");
    if (cJSON_IsNumber(rf))
        c.rescale_factor = rf->valuedouble;
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "resample");
    int resample = cJSON_IsNumber(rs) ? (int)rs->valuedouble : 3;
    int ok = json_vec3(root, "image_mean", c.mean) && json_vec3(root, "image_std", c.std);
    cJSON_Delete(root);
    if (!ok)
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: image_mean/image_std must be 3 numbers",
                             path);
    if (resample != 3)
        return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                             "%s: resample=%d; only bicubic (3) is supported", path, resample);
    int edge_ok = exact ? c.resize_w >= 1 && c.resize_w <= 8192 && c.resize_h >= 1 &&
                              c.resize_h <= 8192
                        : c.shortest_edge >= 1 && c.shortest_edge <= 8192;
    if (!edge_ok || c.crop_h < 1 || c.crop_h > 8192 ||
        c.crop_w < 1 || c.crop_w > 8192)
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: image sizes out of range", path);
    for (int i = 0; i < 3; i++)
        if (!(c.std[i] != 0.0f))
            return tsr_error_set(err, TSR_ERR_FORMAT, "%s: image_std has a zero", path);
    if (!c.do_center_crop && c.do_resize && !exact)
        return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                             "%s: do_center_crop=false is not supported", path);
    *cfg = c;
    return TSR_OK;
}

static int floordiv2(int v) { return v >= 0 ? v / 2 : -((-v + 1) / 2); }

/* Where a crop of the image starts: floor(d / 2), or Python's round(d / 2). */
static int crop_offset(int d, int half_even)
{
    if (!half_even || d < 0 || !(d & 1))
        return floordiv2(d);
    int k = d / 2;
    return k & 1 ? k + 1 : k;
}

/* The resized and centre-cropped image, 8-bit (crop_w x crop_h; zero where
 * the crop lies outside the resized image, as transformers pads). */
static tsr_status preprocess_crop(const tsr_image *img, const tsr_preprocess_cfg *cfg,
                                  tsr_image **out, tsr_error *err)
{
    tsr_image *resized = NULL;
    const tsr_image *cur = img;
    int off_x = 0, off_y = 0, full_w = img->width, full_h = img->height;
    *out = NULL;
    if (cfg->do_resize) {
        int w = img->width, h = img->height;
        int shorter = w <= h ? w : h, longer = w <= h ? h : w;
        int ns = cfg->shortest_edge;
        int nl = (int)((double)ns * longer / shorter);
        if (nl < 1)
            nl = 1;
        int nw = w <= h ? ns : nl, nh = w <= h ? nl : ns;
        if (ns == 0) { /* an exact size */
            nw = cfg->resize_w;
            nh = cfg->resize_h;
        }
        if (nw != w || nh != h) {
            /* only the part the centre crop keeps */
            int ch = cfg->crop_h, cw = cfg->crop_w;
            int top = crop_offset(nh - ch, cfg->crop_half_even),
                left = crop_offset(nw - cw, cfg->crop_half_even);
            int y0 = top > 0 ? top : 0, x0 = left > 0 ? left : 0;
            int y1 = top + ch < nh ? top + ch : nh, x1 = left + cw < nw ? left + cw : nw;
            tsr_status rc = resize_window(img, nw, nh, x0, y0, x1 - x0, y1 - y0, &resized, err);
            if (rc != TSR_OK)
                return rc;
            cur = resized;
            off_y = y0;
            off_x = x0;
            full_w = nw;
            full_h = nh;
        }
    }
    int ch = cfg->crop_h, cw = cfg->crop_w;
    tsr_image *crop = tsr_image_create(cw, ch);
    if (!crop) {
        tsr_image_free(resized);
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory for a %dx%d crop", cw, ch);
    }
    /* the crop's place in the whole resized image, then in the part computed */
    int top = crop_offset(full_h - ch, cfg->crop_half_even) - off_y,
        left = crop_offset(full_w - cw, cfg->crop_half_even) - off_x;
    for (int y = 0; y < ch; y++) {
        int sy = y + top;
        for (int x = 0; x < cw; x++) {
            int sx = x + left, in = sy >= 0 && sy < cur->height && sx >= 0 && sx < cur->width;
            for (int c = 0; c < 3; c++)
                crop->rgb[((size_t)y * cw + x) * 3 + c] =
                    in ? cur->rgb[((size_t)sy * cur->width + sx) * 3 + c] : 0;
        }
    }
    tsr_image_free(resized);
    *out = crop;
    return TSR_OK;
}

/* Rescale and normalise a crop into (3, crop_h, crop_w) floats. */
static void normalize(const tsr_image *crop, const tsr_preprocess_cfg *cfg, float *out)
{
    int ch = crop->height, cw = crop->width;
    for (int c = 0; c < 3; c++) {
        float mean = cfg->do_normalize ? cfg->mean[c] : 0.0f;
        float std = cfg->do_normalize ? cfg->std[c] : 1.0f;
        for (int y = 0; y < ch; y++)
            for (int x = 0; x < cw; x++) {
                int v = crop->rgb[((size_t)y * cw + x) * 3 + c];
                float f = cfg->do_rescale ? (float)(v * cfg->rescale_factor) : (float)v;
                out[((size_t)c * ch + y) * cw + x] = (f - mean) / std;
            }
    }
}

tsr_status tsr_image_preprocess(const tsr_image *img, const tsr_preprocess_cfg *cfg, float *out,
                                tsr_error *err)
{
    tsr_image *crop = NULL;
    tsr_status rc = preprocess_crop(img, cfg, &crop, err);
    if (rc == TSR_OK)
        normalize(crop, cfg, out);
    tsr_image_free(crop);
    return rc;
}

tsr_status tsr_image_preprocess_corrupted(const tsr_image *img, const tsr_preprocess_cfg *cfg,
                                          tsr_corruption kind, int severity,
                                          unsigned long long seed, float *out, tsr_error *err)
{
    tsr_image *crop = NULL, *bad = NULL;
    tsr_status rc = preprocess_crop(img, cfg, &crop, err);
    if (rc == TSR_OK)
        rc = tsr_image_corrupt(crop, kind, severity, seed, &bad, err);
    if (rc == TSR_OK)
        normalize(bad, cfg, out);
    tsr_image_free(crop);
    tsr_image_free(bad);
    return rc;
}
