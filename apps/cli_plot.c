/* Reliability diagrams as PNG: for each confidence bin, a bar of the accuracy
 * of its predictions and the gap to their mean confidence, the diagonal of
 * perfect calibration, and the number of predictions per bin below. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* 5x7 glyphs, one byte per row, bit 4 leftmost. */
static const struct {
    char c;
    unsigned char rows[7];
} font[] = {
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}}, {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}}, {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}}, {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}}, {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}}, {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'A', {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}}, {'B', {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}},
    {'C', {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}}, {'D', {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C}},
    {'E', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}}, {'F', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}},
    {'G', {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}}, {'H', {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'I', {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}}, {'J', {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}},
    {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}}, {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}},
    {'M', {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}}, {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}},
    {'O', {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}}, {'P', {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}},
    {'Q', {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D}}, {'R', {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}},
    {'S', {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}}, {'T', {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}}, {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04}},
    {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}}, {'X', {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11}},
    {'Y', {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04}}, {'Z', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F}},
    {'.', {0, 0, 0, 0, 0, 0x0C, 0x0C}},                {',', {0, 0, 0, 0, 0x0C, 0x04, 0x08}},
    {':', {0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0}},          {'=', {0, 0, 0x1F, 0, 0x1F, 0, 0}},
    {'-', {0, 0, 0, 0x1F, 0, 0, 0}},                   {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}},
    {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}}, {'%', {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03}},
    {'/', {0, 0x01, 0x02, 0x04, 0x08, 0x10, 0}},
};

typedef struct {
    tsr_image *im;
} canvas;

static void px(canvas *c, int x, int y, const unsigned char rgb[3], double alpha)
{
    if (x < 0 || y < 0 || x >= c->im->width || y >= c->im->height)
        return;
    unsigned char *p = c->im->rgb + ((size_t)y * c->im->width + x) * 3;
    for (int k = 0; k < 3; k++)
        p[k] = (unsigned char)lround(p[k] * (1 - alpha) + rgb[k] * alpha);
}

static void rect(canvas *c, int x0, int y0, int x1, int y1, const unsigned char rgb[3], double a)
{
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++)
            px(c, x, y, rgb, a);
}

/* Diagonal hatching with an outline. */
static void hatch(canvas *c, int x0, int y0, int x1, int y1, const unsigned char rgb[3])
{
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++)
            if ((x + y) % 5 < 2 || x == x0 || x == x1 - 1 || y == y0 || y == y1 - 1)
                px(c, x, y, rgb, 0.9);
}

/* Text in capitals, scale s, top-left at (x, y); returns its width. */
static int text(canvas *c, int x, int y, int s, const char *str, const unsigned char rgb[3])
{
    int x0 = x;
    for (const char *p = str; *p; p++, x += 6 * s) {
        char ch = *p >= 'a' && *p <= 'z' ? (char)(*p - 32) : *p;
        for (size_t g = 0; g < sizeof font / sizeof font[0]; g++) {
            if (font[g].c != ch)
                continue;
            for (int r = 0; r < 7; r++)
                for (int b = 0; b < 5; b++)
                    if (font[g].rows[r] >> (4 - b) & 1)
                        rect(c, x + b * s, y + r * s, x + (b + 1) * s, y + (r + 1) * s, rgb, 1);
        }
    }
    return x - x0;
}

static int text_width(const char *s, int scale) { return (int)strlen(s) * 6 * scale; }

enum { PW = 460, PH = 530, OX = 70, OY = 50, SZ = 360, HIST = 50 };

static void panel(canvas *c, int x0, const tsr_calibration *cal, const char *title)
{
    static const unsigned char black[3] = {20, 20, 20}, grid[3] = {200, 200, 200},
                               blue[3] = {45, 95, 190}, red[3] = {215, 60, 50},
                               grey[3] = {110, 110, 110};
    char buf[128];
    int ox = x0 + OX, oy = OY, B = cal->bins;
    snprintf(buf, sizeof buf, "%s", title);
    text(c, ox, 12, 2, buf, black);
    snprintf(buf, sizeof buf, "ECE %.4f  N %d", cal->ece, cal->n);
    text(c, ox, 32, 1, buf, black);
    for (int k = 0; k <= 5; k++) { /* grid and ticks */
        int gx = ox + k * SZ / 5, gy = oy + SZ - k * SZ / 5;
        rect(c, gx, oy, gx + 1, oy + SZ, grid, 1);
        rect(c, ox, gy, ox + SZ, gy + 1, grid, 1);
        snprintf(buf, sizeof buf, k == 0 ? "0" : k == 5 ? "1" : "0.%d", 2 * k);
        text(c, gx - text_width(buf, 1) / 2, oy + SZ + 6, 1, buf, black);
        text(c, ox - 8 - text_width(buf, 1), gy - 3, 1, buf, black);
    }
    int maxc = 1;
    for (int b = 0; b < B; b++)
        maxc = cal->count[b] > maxc ? cal->count[b] : maxc;
    for (int b = 0; b < B; b++) {
        int bx0 = ox + b * SZ / B + 1, bx1 = ox + (b + 1) * SZ / B - 1;
        if (cal->count[b]) {
            int ya = oy + SZ - (int)lround(cal->acc[b] * SZ);
            int yc = oy + SZ - (int)lround(cal->conf[b] * SZ);
            rect(c, bx0, ya, bx1, oy + SZ, blue, 0.85);
            /* the gap between the accuracy and the mean confidence, hatched */
            hatch(c, bx0, ya < yc ? ya : yc, bx1, ya < yc ? yc : ya, red);
            rect(c, bx0, yc - 1, bx1, yc + 1, red, 1);
            int hh = (int)lround((double)cal->count[b] / maxc * HIST);
            rect(c, bx0, oy + SZ + 48 + HIST - hh, bx1, oy + SZ + 48 + HIST, grey, 1);
        }
    }
    for (int k = 0; k < SZ; k++) /* the diagonal, dashed */
        if ((k / 6) % 2 == 0)
            rect(c, ox + k, oy + SZ - k - 1, ox + k + 2, oy + SZ - k + 1, black, 0.8);
    rect(c, ox, oy, ox + 1, oy + SZ, black, 1); /* axes */
    rect(c, ox, oy + SZ, ox + SZ, oy + SZ + 1, black, 1);
    text(c, ox + SZ / 2 - text_width("CONFIDENCE", 1) / 2, oy + SZ + 20, 1, "CONFIDENCE", black);
    snprintf(buf, sizeof buf, "PREDICTIONS PER BIN (MAX %d)", maxc);
    text(c, ox, oy + SZ + 38, 1, buf, grey);
    rect(c, ox, oy + SZ + 48 + HIST, ox + SZ, oy + SZ + 49 + HIST, grey, 1);
    text(c, ox - 62, oy - 12, 1, "ACCURACY", black);
    /* legend */
    int ly = oy + 8, lx = ox + 10;
    rect(c, lx, ly, lx + 12, ly + 8, blue, 0.85);
    text(c, lx + 18, ly, 1, "ACCURACY", black);
    hatch(c, lx, ly + 14, lx + 12, ly + 22, red);
    rect(c, lx, ly + 14, lx + 12, ly + 16, red, 1);
    text(c, lx + 18, ly + 14, 1, "GAP TO MEAN CONFIDENCE", black);
}

int cli_reliability_png(const char *path, const tsr_calibration *cal, const char *const *titles,
                        int n, tsr_error *err)
{
    tsr_image *im = tsr_image_create(PW * n, PH);
    if (!im) {
        tsr_error_set(err, TSR_ERR_NOMEM, "%s: out of host memory", path);
        return EXIT_RUNTIME;
    }
    memset(im->rgb, 255, (size_t)im->width * im->height * 3);
    canvas c = {im};
    for (int i = 0; i < n; i++)
        panel(&c, i * PW, &cal[i], titles[i]);
    tsr_status rc = tsr_image_save_png(im, path, err);
    tsr_image_free(im);
    return rc == TSR_OK ? EXIT_OK : EXIT_RUNTIME;
}
