/* 16-bit and int8 weights (tsr_ctx_params.dtype f16, bf16, int8) end to end: the CLIP
 * fixtures (transformers' and open_clip's layouts, one F32 and one F16
 * checkpoint each) against the float32 reference outputs, with the
 * tolerances the README states:
 *   f16:  every row within 2e-3 of the reference relative to the row's norm,
 *         and cosine similarity at least 0.99999;
 *   bf16: within 1.6e-2 relative to the row's norm, cosine at least 0.9995;
 *   int8: within 6e-2, cosine at least 0.998.
 * (Half keeps 11 significant bits, bfloat16 8: one rounding of a weight is
 * off by at most 2^-11 and 2^-8 of it; int8 by half a step of its row's
 * largest magnitude / 127; the errors of independent weights partly cancel
 * in each dot product.) The float32 run of the same
 * models must stay within the usual 1e-4. Also: the weights take less
 * device memory, and a float32 checkpoint with a value beyond half's range
 * is refused under f16, naming the tensor, and loads under bf16. */
#include <sys/stat.h>
#include <unistd.h>

#include "tsr_fusion.h"
#include "testutil.h"

typedef struct {
    const char *name;
    double rel, cos; /* the tolerances above */
} dt_case;

static const dt_case dtypes[4] = {{"f32", 1e-4, 0.9999999}, {"f16", 2e-3, 0.99999},
                                  {"bf16", 1.6e-2, 0.9995}, {"int8", 6e-2, 0.998}};

static tsr_ctx *ctx_for(const char *dtype)
{
    tsr_ctx_params p = test_ctx_params();
    p.dtype = dtype;
    return ctx_with_or_skip(&p);
}

/* Worst row: error relative to the reference row's norm, and cosine. */
static void row_errors(const float *got, const float *ref, int rows, int dim, double *rel,
                       double *cos)
{
    *rel = 0;
    *cos = 1;
    for (int r = 0; r < rows; r++) {
        double d = 0, n = 0, g = 0, dot = 0;
        for (int i = 0; i < dim; i++) {
            double a = got[(size_t)r * dim + i], b = ref[(size_t)r * dim + i];
            d += (a - b) * (a - b);
            n += b * b;
            g += a * a;
            dot += a * b;
        }
        double e = sqrt(d / (n > 0 ? n : 1)), c = dot / sqrt((n > 0 ? n : 1) * (g > 0 ? g : 1));
        if (e > *rel || e != e)
            *rel = e;
        if (c < *cos || c != c)
            *cos = c;
    }
}

static void compare_rows(const char *what, const dt_case *dt, const float *got, const float *ref,
                         int rows, int dim)
{
    if (!ref) {
        check(0, "%s: reference missing", what);
        return;
    }
    double rel, cos;
    row_errors(got, ref, rows, dim, &rel, &cos);
    if (strcmp(dt->name, "f32") == 0) { /* the usual elementwise float32 tolerance */
        double e;
        int ok = close_enough(got, ref, (size_t)rows * dim, 1e-4, 1e-4, &e);
        check(ok, "%s (f32): max error %.3g, worst row relative %.3g, cosine %.9f", what, e, rel,
              cos);
        return;
    }
    check(rel <= dt->rel && cos >= dt->cos,
          "%s (%s): worst row relative error %.3g (<= %g), cosine %.9f (>= %g)", what, dt->name,
          rel, dt->rel, cos, dt->cos);
}

static void run_model(const char *name)
{
    char dir[1024], p[1200];
    snprintf(dir, sizeof dir, "%s/models/%s", TSR_FIXTURES, name);
    int nd;
    long dims[4];
    snprintf(p, sizeof p, "%s/expected/pixel_values.npy", dir);
    float *px = load_npy(p, &nd, dims);
    int B = (int)dims[0];
    snprintf(p, sizeof p, "%s/expected/image_embeds.npy", dir);
    float *ref_img = load_npy(p, &nd, dims);
    snprintf(p, sizeof p, "%s/expected/text_embeds.npy", dir);
    float *ref_txt = load_npy(p, &nd, dims);
    snprintf(p, sizeof p, "%s/expected/texts.json", dir);
    cJSON *tj = load_json(p);
    const cJSON *texts = cJSON_GetObjectItem(tj, "texts");
    int T = cJSON_GetArraySize(texts);
    const char *tv[16];
    for (int i = 0; i < T && i < 16; i++)
        tv[i] = cJSON_GetArrayItem(texts, i)->valuestring;
    size_t bytes[4] = {0};
    for (int d = 0; d < 4; d++) {
        tsr_ctx *ctx = ctx_for(dtypes[d].name);
        tsr_model *m = NULL;
        tsr_error err = {0};
        tsr_status st = tsr_model_load(ctx, dir, &m, &err);
        check(st == TSR_OK, "%s (%s): load %s", name, dtypes[d].name, st == TSR_OK ? "" : err.msg);
        if (st != TSR_OK) {
            tsr_ctx_free(ctx);
            continue;
        }
        bytes[d] = tsr_model_device_bytes(m);
        tsr_session *s = new_session(m);
        int P = tsr_model_embed_dim(m);
        float *img = malloc(sizeof(float) * B * P), *txt = malloc(sizeof(float) * T * P);
        char what[160];
        st = tsr_session_embed_pixels(s, px, B, 0, img, &err);
        snprintf(what, sizeof what, "%s image_embeds", name);
        if (st != TSR_OK)
            check(0, "%s: %s", what, err.msg);
        else
            compare_rows(what, &dtypes[d], img, ref_img, B, P);
        int cut = 0;
        st = tsr_session_embed_texts(s, tv, T, 0, txt, &cut, &err);
        snprintf(what, sizeof what, "%s text_embeds", name);
        if (st != TSR_OK)
            check(0, "%s: %s", what, err.msg);
        else
            compare_rows(what, &dtypes[d], txt, ref_txt, T, P);
        free(img);
        free(txt);
        tsr_session_free(s);
        tsr_model_free(m);
        tsr_ctx_free(ctx);
    }
    check(bytes[1] && bytes[1] < bytes[0] && bytes[2] == bytes[1] && bytes[3] < bytes[1],
          "%s: device bytes of the weights: f32 %zu, f16 %zu, bf16 %zu, int8 %zu", name, bytes[0],
          bytes[1], bytes[2], bytes[3]);
    cJSON_Delete(tj);
    free(px);
    free(ref_img);
    free(ref_txt);
}

/* A copy of clip-tiny-a (float32) whose first fc1 weight of the vision
 * tower is 1e5: beyond half's largest value, 65504. */
static int write_out_of_range(char *dir, size_t cap)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, cap, "%s/tessera-dtype-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir))
        return 0;
    char src[1024], p[1200];
    snprintf(src, sizeof src, "%s/models/clip-tiny-a", TSR_FIXTURES);
    static const char *files[] = {"config.json", "preprocessor_config.json", "tokenizer.json",
                                  "tokenizer_config.json", "special_tokens_map.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char from[1200];
        snprintf(from, sizeof from, "%s/%s", src, files[i]);
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        if (symlink(from, p) != 0)
            return 0;
    }
    snprintf(p, sizeof p, "%s/model.safetensors", src);
    FILE *f = fopen(p, "rb");
    if (!f)
        return 0;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n);
    int ok = b && fread(b, 1, (size_t)n, f) == (size_t)n;
    fclose(f);
    uint64_t hl = 0;
    for (int i = 7; ok && i >= 0; i--)
        hl = hl << 8 | b[i];
    char *hdr = ok ? malloc(hl + 1) : NULL;
    cJSON *h = NULL;
    if (hdr) {
        memcpy(hdr, b + 8, hl);
        hdr[hl] = 0;
        h = cJSON_Parse(hdr);
    }
    const cJSON *t = cJSON_GetObjectItem(h, "vision_model.encoder.layers.0.mlp.fc1.weight");
    const cJSON *dt = cJSON_GetObjectItem(t, "dtype");
    const cJSON *off = cJSON_GetObjectItem(t, "data_offsets");
    ok = ok && cJSON_IsString(dt) && strcmp(dt->valuestring, "F32") == 0 && off;
    if (ok) {
        float big = 1e5f;
        memcpy(b + 8 + hl + (size_t)cJSON_GetArrayItem(off, 0)->valuedouble, &big, 4);
        snprintf(p, sizeof p, "%s/model.safetensors", dir);
        FILE *o = fopen(p, "wb");
        ok = o && fwrite(b, 1, (size_t)n, o) == (size_t)n;
        if (o)
            fclose(o);
    }
    cJSON_Delete(h);
    free(hdr);
    free(b);
    return ok;
}

static void remove_dir(const char *dir)
{
    static const char *files[] = {"config.json", "preprocessor_config.json", "tokenizer.json",
                                  "tokenizer_config.json", "special_tokens_map.json",
                                  "model.safetensors"};
    char p[1200];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

static void test_out_of_range(void)
{
    char dir[1024];
    if (!write_out_of_range(dir, sizeof dir)) {
        check(0, "writing a checkpoint with a value beyond half's range");
        return;
    }
    for (int d = 1; d < 3; d++) {
        tsr_ctx *ctx = ctx_for(dtypes[d].name);
        tsr_model *m = NULL;
        tsr_error err = {0};
        tsr_status st = tsr_model_load(ctx, dir, &m, &err);
        if (d == 1)
            check(st == TSR_ERR_UNSUPPORTED && !m &&
                      strstr(err.msg, "vision_model.encoder.layers.0.mlp.fc1.weight") &&
                      strstr(err.msg, "float16's range"),
                  "f16: a weight of 1e5 is refused: %s", err.msg);
        else
            check(st == TSR_OK, "bf16: the same checkpoint loads %s", st == TSR_OK ? "" : err.msg);
        tsr_model_free(m);
        tsr_ctx_free(ctx);
    }
    remove_dir(dir);
}

int main(void)
{
    tsr_ctx *probe = ctx_or_skip();
    tsr_ctx_free(probe);
    tsr_ctx_params p = test_ctx_params();
    p.dtype = "f8";
    tsr_ctx *bad = NULL;
    tsr_error err = {0};
    check(tsr_ctx_create(&p, &bad, &err) == TSR_ERR_INVALID_ARG && !bad &&
              strstr(err.msg, "\"f8\""),
          "an unknown weight type is refused: %s", err.msg);
    run_model("clip-tiny-a");
    run_model("clip-tiny-b");
    run_model("openclip-tiny-a");
    run_model("openclip-tiny-b");
    test_out_of_range();
    return finish();
}
