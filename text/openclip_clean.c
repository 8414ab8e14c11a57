/* open_clip's text clean-up before its SimpleTokenizer splits a text:
 *   whitespace_clean(basic_clean(text)).lower(), where basic_clean is
 *   ftfy.fix_text, then html.unescape twice, then strip.
 * Of ftfy.fix_text this does every default step but fix_encoding (the
 * repair of mojibake such as "cafÃ©", which rests on ftfy's statistical
 * badness heuristic): HTML entities while no line so far held '<', C1
 * controls read as Windows-1252, Latin ligatures, full- and half-width
 * forms, curly quotes, line breaks, terminal escapes, control characters,
 * then NFC, repeated until nothing changes, line by line. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tsr_text.h"
#include "tsr_textutil.h"

typedef struct {
    const char *name, *text;
    int flags; /* 1: ftfy's unescape_html decodes &name, 2: html.unescape does */
} entity;

static const entity entities[] = {
#include "html_entities.inc"
};
#define N_ENTITIES (sizeof entities / sizeof entities[0])

typedef struct {
    int32_t *v;
    size_t n, cap;
    int oom;
} cps;

static void put(cps *b, int32_t c)
{
    if (b->oom)
        return;
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 64;
        int32_t *v = realloc(b->v, sizeof(int32_t) * cap);
        if (!v) {
            b->oom = 1;
            return;
        }
        b->v = v;
        b->cap = cap;
    }
    b->v[b->n++] = c;
}

static void put_utf8(cps *b, const char *s)
{
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate(p + i, (utf8proc_ssize_t)(n - i), &c);
        if (k <= 0)
            break;
        put(b, c);
        i += (size_t)k;
    }
}

static char *to_utf8(const int32_t *v, size_t n)
{
    char *s = malloc(4 * n + 1);
    if (!s)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += (size_t)utf8proc_encode_char(v[i], (utf8proc_uint8_t *)s + k);
    s[k] = 0;
    return s;
}

/* Windows-1252 for 0x80..0x9f, its five undefined bytes kept as they are
 * (ftfy's sloppy-windows-1252, and html.unescape's _invalid_charrefs). */
static const uint16_t cp1252[32] = {
    0x20ac, 0x81,   0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160,
    0x2039, 0x0152, 0x8d,   0x017d, 0x8f,   0x90,   0x2018, 0x2019, 0x201c, 0x201d, 0x2022,
    0x2013, 0x2014, 0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0x9d,   0x017e, 0x0178};

static const entity *find_entity(const char *name)
{
    size_t lo = 0, hi = N_ENTITIES;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(name, entities[mid].name);
        if (c == 0)
            return &entities[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

static int is_ascii_alnum(int32_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
static int is_digit(int32_t c) { return c >= '0' && c <= '9'; }
static int is_hex(int32_t c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* html.unescape's numeric character reference: what &#num; becomes
 * (-1: nothing). */
static int32_t charref(uint64_t num)
{
    if (num == 0)
        return 0xfffd;
    if (num == 0x0d)
        return 0x0d;
    if (num >= 0x80 && num <= 0x9f)
        return cp1252[num - 0x80];
    if ((num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff)
        return 0xfffd;
    if ((num >= 1 && num <= 8) || num == 0xb || (num >= 0xe && num <= 0x1f) || num == 0x7f ||
        (num >= 0xfdd0 && num <= 0xfdef) || (num & 0xfffe) == 0xfffe)
        return -1;
    return (int32_t)num;
}

/* Reads a numeric reference at v[i] == '&', v[i+1] == '#'; returns its
 * length (0: none), with *num capped past the Unicode range. */
static size_t numeric_ref(const int32_t *v, size_t n, size_t i, uint64_t *num, int *semi)
{
    size_t j = i + 2;
    int hex = j < n && (v[j] == 'x' || v[j] == 'X');
    if (hex)
        j++;
    size_t start = j;
    uint64_t x = 0;
    while (j < n && (hex ? is_hex(v[j]) : is_digit(v[j]))) {
        int d = is_digit(v[j]) ? v[j] - '0' : (v[j] | 0x20) - 'a' + 10;
        if (x < 0x1000000)
            x = x * (hex ? 16 : 10) + (uint64_t)d;
        j++;
    }
    if (j == start)
        return 0;
    *semi = j < n && v[j] == ';';
    *num = x;
    return j + (size_t)*semi - i;
}

/* ftfy's unescape_html: &#?[0-9A-Za-z]{1,24}; when it names an entity of
 * its table, or is a complete numeric reference whose character is not ';'. */
static void ftfy_unescape(const cps *in, cps *out)
{
    const int32_t *v = in->v;
    size_t n = in->n;
    for (size_t i = 0; i < n;) {
        size_t j = i + 1, len = 0;
        if (v[i] == '&') {
            if (j < n && v[j] == '#')
                j++;
            size_t k = j;
            while (k < n && k - j < 24 && is_ascii_alnum(v[k]))
                k++;
            if (k > j && k < n && v[k] == ';')
                len = k + 1 - i;
        }
        if (!len) {
            put(out, v[i++]);
            continue;
        }
        char name[32];
        for (size_t k = 0; k + 1 < len; k++)
            name[k] = (char)v[i + 1 + k];
        name[len - 1] = 0;
        const entity *e = find_entity(name);
        if (e && (e->flags & 1)) {
            put_utf8(out, e->text);
            i += len;
            continue;
        }
        uint64_t num;
        int semi;
        if (v[i + 1] == '#' && numeric_ref(v, n, i, &num, &semi) == len && semi) {
            int32_t c = charref(num);
            if (c != ';') { /* "&#59;" decodes to ';', and ftfy keeps such results */
                if (c >= 0)
                    put(out, c);
                i += len;
                continue;
            }
        }
        for (size_t k = 0; k < len; k++)
            put(out, v[i + k]);
        i += len;
    }
}

/* Python's html.unescape. */
static void html_unescape(const cps *in, cps *out)
{
    const int32_t *v = in->v;
    size_t n = in->n;
    for (size_t i = 0; i < n;) {
        if (v[i] != '&' || i + 1 >= n) {
            put(out, v[i++]);
            continue;
        }
        uint64_t num;
        int semi;
        size_t len = v[i + 1] == '#' ? numeric_ref(v, n, i, &num, &semi) : 0;
        if (len) {
            int32_t c = charref(num);
            if (c >= 0)
                put(out, c);
            i += len;
            continue;
        }
        /* [^\t\n\f <&#;]{1,32};? */
        size_t j = i + 1;
        while (j < n && j - i - 1 < 32 && v[j] != '\t' && v[j] != '\n' && v[j] != '\f' &&
               v[j] != ' ' && v[j] != '<' && v[j] != '&' && v[j] != '#' && v[j] != ';')
            j++;
        if (j == i + 1) {
            put(out, v[i++]);
            continue;
        }
        if (j < n && v[j] == ';')
            j++;
        /* the whole name, else its longest prefix of two or more characters */
        size_t best = 0;
        const entity *e = NULL;
        for (size_t x = j - i - 1; x >= 2 && !e; x--) {
            char name[40];
            size_t k = 0;
            int ascii = 1;
            for (; k < x; k++) {
                ascii &= v[i + 1 + k] < 0x80;
                name[k] = (char)v[i + 1 + k];
            }
            name[k] = 0;
            const entity *f = ascii ? find_entity(name) : NULL;
            if (f && (f->flags & 2)) {
                e = f;
                best = x;
            }
        }
        if (!e) {
            for (size_t k = i; k < j; k++)
                put(out, v[k]);
        } else {
            put_utf8(out, e->text);
            for (size_t k = i + 1 + best; k < j; k++)
                put(out, v[k]);
        }
        i = j;
    }
}

static int is_control(int32_t c)
{
    return c <= 0x08 || c == 0x0b || (c >= 0x0e && c <= 0x1f) || c == 0x7f ||
           (c >= 0x206a && c <= 0x206f) || c == 0xfeff || (c >= 0xfff9 && c <= 0xfffc);
}

/* The character-level steps of one ftfy pass, from fix_c1_controls to
 * remove_control_chars, in ftfy's order. */
static void ftfy_chars(const cps *in, cps *out)
{
    cps a = {0}, b = {0};
    for (size_t i = 0; i < in->n; i++) { /* C1 controls, ligatures, width, quotes */
        int32_t c = in->v[i];
        if (c >= 0x80 && c <= 0x9f)
            c = cp1252[c - 0x80];
        static const struct {
            int32_t c;
            const char *to;
        } lig[] = {{0x132, "IJ"},  {0x133, "ij"},  {0x149, "\312\274n"}, {0x1f1, "DZ"},
                   {0x1f2, "Dz"},  {0x1f3, "dz"},  {0x1c4, "D\305\275"}, {0x1c5, "D\305\276"},
                   {0x1c6, "d\305\276"}, {0x1c7, "LJ"}, {0x1c8, "Lj"}, {0x1c9, "lj"},
                   {0x1ca, "NJ"},  {0x1cb, "Nj"},  {0x1cc, "nj"},  {0xfb00, "ff"},
                   {0xfb01, "fi"}, {0xfb02, "fl"}, {0xfb03, "ffi"}, {0xfb04, "ffl"},
                   {0xfb05, "\305\277t"}, {0xfb06, "st"}};
        int done = 0;
        for (size_t k = 0; k < sizeof lig / sizeof lig[0] && !done; k++)
            if (lig[k].c == c) {
                put_utf8(&a, lig[k].to);
                done = 1;
            }
        if (done)
            continue;
        if (c == 0x3000) {
            put(&a, ' ');
            continue;
        }
        if (c >= 0xff01 && c <= 0xffef) { /* NFKC of the one character */
            char one[8];
            one[utf8proc_encode_char(c, (utf8proc_uint8_t *)one)] = 0;
            utf8proc_uint8_t *k = utf8proc_NFKC((utf8proc_uint8_t *)one);
            if (k)
                put_utf8(&a, (char *)k);
            else
                a.oom = 1;
            free(k);
            continue;
        }
        if (c == 0x2bc || (c >= 0x2018 && c <= 0x201b))
            c = '\'';
        else if (c >= 0x201c && c <= 0x201f)
            c = '"';
        put(&a, c);
    }
    for (size_t i = 0; i < a.n; i++) { /* line breaks */
        int32_t c = a.v[i];
        if (c == '\r' && i + 1 < a.n && a.v[i + 1] == '\n')
            continue;
        put(&b, c == '\r' || c == 0x2028 || c == 0x2029 || c == 0x85 ? '\n' : c);
    }
    for (size_t i = 0; i < b.n; i++) { /* terminal escapes, then control characters */
        if (b.v[i] == 0x1b && i + 1 < b.n && b.v[i + 1] == '[') {
            size_t j = i + 2;
            while (j < b.n && (b.v[j] == ';' || utf8proc_category(b.v[j]) == UTF8PROC_CATEGORY_ND))
                j++;
            if (j < b.n && b.v[j] < 0x80 && ((b.v[j] | 0x20) >= 'a' && (b.v[j] | 0x20) <= 'z')) {
                i = j;
                continue;
            }
        }
        if (!is_control(b.v[i]))
            put(out, b.v[i]);
    }
    out->oom |= a.oom | b.oom;
    free(a.v);
    free(b.v);
}

static void nfc(const cps *in, cps *out)
{
    char *s = to_utf8(in->v, in->n);
    utf8proc_uint8_t *r = s ? utf8proc_NFC((utf8proc_uint8_t *)s) : NULL;
    if (r)
        put_utf8(out, (char *)r);
    else
        out->oom = 1;
    free(s);
    free(r);
}

static int same(const cps *a, const cps *b)
{
    return a->n == b->n && (a->n == 0 || memcmp(a->v, b->v, sizeof(int32_t) * a->n) == 0);
}

/* ftfy's fix_and_explain on one segment (without fix_encoding). */
static void ftfy_segment(cps *seg, int html)
{
    /* until nothing changes, as ftfy loops (each pass that changes the text
     * unescapes or replaces something; the bound only guards termination) */
    for (size_t pass = 0; pass < seg->n + 16 && !seg->oom; pass++) {
        cps a = {0}, b = {0}, c = {0};
        if (html)
            ftfy_unescape(seg, &a);
        else
            for (size_t i = 0; i < seg->n; i++)
                put(&a, seg->v[i]);
        ftfy_chars(&a, &b);
        nfc(&b, &c);
        int stable = same(&c, seg);
        free(seg->v);
        *seg = c;
        seg->oom |= a.oom | b.oom;
        free(a.v);
        free(b.v);
        if (stable)
            break;
    }
}

static int py_isspace(int32_t c)
{
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
           c == 0x202f || c == 0x205f || c == 0x3000;
}

void tsr_text_strip(char *s)
{
    size_t n = strlen(s), a = 0, b = n;
    while (a < n) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + a,
                                              (utf8proc_ssize_t)(n - a), &c);
        if (k <= 0 || !py_isspace(c))
            break;
        a += (size_t)k;
    }
    while (b > a) {
        size_t st = b - 1;
        while (st > a && ((unsigned char)s[st] & 0xC0) == 0x80)
            st--;
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + st,
                                              (utf8proc_ssize_t)(b - st), &c);
        if (k <= 0 || !py_isspace(c))
            break;
        b = st;
    }
    memmove(s, s + a, b - a);
    s[b - a] = 0;
}

static int is_cased(int32_t c)
{
    utf8proc_category_t k = utf8proc_category(c);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT ||
           utf8proc_islower(c) || utf8proc_isupper(c);
}

static int is_case_ignorable(int32_t c)
{
    utf8proc_category_t k = utf8proc_category(c);
    return k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_ME || k == UTF8PROC_CATEGORY_CF ||
           k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_SK || c == '\'' || c == '.' ||
           c == ':' || c == 0xb7 || c == 0x387 || c == 0x55f || c == 0x5f4 || c == 0x2018 || c == 0x2019 ||
           c == 0x2024 || c == 0x2027 || c == 0xfe13 || c == 0xfe52 || c == 0xfe55 ||
           c == 0xff07 || c == 0xff0e || c == 0xff1a;
}

/* Python's str.lower: İ to i + U+0307, and capital sigma to final sigma
 * after a cased letter when no cased letter follows. */
static void py_lower(const cps *in, cps *out)
{
    for (size_t i = 0; i < in->n; i++) {
        int32_t c = in->v[i];
        if (c == 0x130) {
            put(out, 'i');
            put(out, 0x307);
            continue;
        }
        if (c == 0x3a3) {
            size_t j = i;
            while (j > 0 && is_case_ignorable(in->v[j - 1]))
                j--;
            int final = j > 0 && is_cased(in->v[j - 1]);
            size_t k = i + 1;
            while (final && k < in->n && is_case_ignorable(in->v[k]))
                k++;
            if (final && (k == in->n || !is_cased(in->v[k]))) {
                put(out, 0x3c2);
                continue;
            }
        }
        put(out, utf8proc_tolower(c));
    }
}

char *tsr_openclip_clean(const char *text)
{
    cps all = {0}, fixed = {0};
    put_utf8(&all, text);
    /* ftfy.fix_text: line by line; once a line holds '<', HTML entities are
     * left alone in it and in every line after it */
    int html = 1;
    for (size_t i = 0; i < all.n;) {
        /* a line, or ftfy's max_decode_length of 1,000,000 code points */
        size_t j = i;
        while (j < all.n && all.v[j] != '\n' && j - i < 1000000)
            j++;
        if (j < all.n && all.v[j] == '\n' && j - i < 1000000)
            j++;
        cps seg = {0};
        for (size_t k = i; k < j; k++) {
            put(&seg, all.v[k]);
            if (all.v[k] == '<')
                html = 0;
        }
        ftfy_segment(&seg, html);
        for (size_t k = 0; k < seg.n; k++)
            put(&fixed, seg.v[k]);
        fixed.oom |= seg.oom;
        free(seg.v);
        i = j;
    }
    cps u1 = {0}, u2 = {0}, ws = {0}, low = {0};
    html_unescape(&fixed, &u1);
    html_unescape(&u1, &u2);
    /* strip, and whitespace runs to one space */
    for (size_t i = 0; i < u2.n; i++) {
        if (py_isspace(u2.v[i]))
            continue;
        if (ws.n && py_isspace(u2.v[i - 1]))
            put(&ws, ' ');
        put(&ws, u2.v[i]);
    }
    py_lower(&ws, &low);
    int oom = all.oom | fixed.oom | u1.oom | u2.oom | ws.oom | low.oom;
    char *out = oom ? NULL : to_utf8(low.v, low.n);
    free(all.v);
    free(fixed.v);
    free(u1.v);
    free(u2.v);
    free(ws.v);
    free(low.v);
    return out;
}
