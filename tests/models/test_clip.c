/* Whole-model parity against transformers' CLIPModel on two tiny random
 * models of different shapes (one F32 with quick_gelu, one F16 with exact
 * GELU, a 30-pixel image with 7-pixel patches, 24 text positions):
 * image and text embeddings, logits_per_image, and zero-shot probabilities,
 * each within atol 1e-4 + rtol 1e-4 in float32. */
#include "testutil.h"
#include "tsr_fusion.h"

#define ATOL 1e-4
#define RTOL 1e-4

static void compare(const char *what, const float *got, const float *ref, size_t n)
{
    double e;
    if (!ref) {
        check(0, "%s: reference missing", what);
        return;
    }
    int ok = close_enough(got, ref, n, ATOL, RTOL, &e);
    check(ok, "%s: max error %.3g over %zu values", what, e, n);
    print_head("got", got, n);
    print_head("ref", ref, n);
}

static void normalize_rows(float *v, int rows, int dim)
{
    for (int r = 0; r < rows; r++) {
        double s = 0;
        for (int i = 0; i < dim; i++)
            s += (double)v[r * dim + i] * v[r * dim + i];
        for (int i = 0; i < dim; i++)
            v[r * dim + i] = (float)(v[r * dim + i] / sqrt(s));
    }
}

static void run_model(tsr_ctx *ctx, const char *name)
{
    char dir[1024], p[1200];
    snprintf(dir, sizeof dir, "%s/models/%s", TSR_FIXTURES, name);
    tsr_model *m = NULL;
    tsr_error err = {0};
    tsr_status st = tsr_model_load(ctx, dir, &m, &err);
    check(st == TSR_OK, "%s: load %s", name, st == TSR_OK ? "" : err.msg);
    if (st != TSR_OK)
        return;
    int P = tsr_model_embed_dim(m), nd;
    long dims[4];

    /* image tower from the reference pixel_values */
    snprintf(p, sizeof p, "%s/expected/pixel_values.npy", dir);
    float *px = load_npy(p, &nd, dims);
    int B = (int)dims[0];
    snprintf(p, sizeof p, "%s/expected/image_embeds.npy", dir);
    float *ref_img = load_npy(p, &nd, dims);
    float *img = malloc(sizeof(float) * B * P);
    st = tsr_model_embed_pixels(m, px, B, 0, img, &err);
    check(st == TSR_OK, "%s: embed %d images %s", name, B, st == TSR_OK ? "" : err.msg);
    char what[128];
    snprintf(what, sizeof what, "%s image_embeds", name);
    compare(what, img, ref_img, (size_t)B * P);

    /* the same images decoded and preprocessed by tessera */
    snprintf(p, sizeof p, "%s/expected/texts.json", dir);
    cJSON *tj = load_json(p);
    const cJSON *imgs = cJSON_GetObjectItem(tj, "images");
    const char *paths[8];
    char pbuf[8][1024];
    for (int i = 0; i < B; i++) {
        snprintf(pbuf[i], sizeof pbuf[i], "%s/%s", TSR_FIXTURES,
                 cJSON_GetArrayItem(imgs, i)->valuestring);
        paths[i] = pbuf[i];
    }
    float *img2 = malloc(sizeof(float) * B * P);
    st = tsr_model_embed_image_files(m, paths, B, 0, img2, &err);
    snprintf(what, sizeof what, "%s image_embeds from the image files", name);
    if (st != TSR_OK)
        check(0, "%s: %s", what, err.msg);
    else
        compare(what, img2, ref_img, (size_t)B * P);

    /* text tower from tessera's own tokenization */
    const cJSON *texts = cJSON_GetObjectItem(tj, "texts");
    int T = cJSON_GetArraySize(texts);
    const char *tv[16];
    for (int i = 0; i < T; i++)
        tv[i] = cJSON_GetArrayItem(texts, i)->valuestring;
    snprintf(p, sizeof p, "%s/expected/text_embeds.npy", dir);
    float *ref_txt = load_npy(p, &nd, dims);
    float *txt = malloc(sizeof(float) * T * P);
    int cut = 0;
    st = tsr_model_embed_texts(m, tv, T, 0, txt, &cut, &err);
    check(st == TSR_OK, "%s: embed %d texts (%d truncated) %s", name, T, cut,
          st == TSR_OK ? "" : err.msg);
    snprintf(what, sizeof what, "%s text_embeds", name);
    compare(what, txt, ref_txt, (size_t)T * P);

    /* logits_per_image = exp(logit_scale) * normalised image . normalised text */
    snprintf(p, sizeof p, "%s/expected/logits_per_image.npy", dir);
    float *ref_logits = load_npy(p, &nd, dims);
    float *logits = malloc(sizeof(float) * B * T);
    normalize_rows(img, B, P);
    normalize_rows(txt, T, P);
    tsr_scores(tsr_model_logit_scale(m), img, B, txt, T, P, logits);
    snprintf(what, sizeof what, "%s logits_per_image", name);
    compare(what, logits, ref_logits, (size_t)B * T);

    /* zero-shot probabilities with template averaging, end to end from files */
    snprintf(p, sizeof p, "%s/expected/classify.json", dir);
    cJSON *cj = load_json(p);
    const cJSON *labels = cJSON_GetObjectItem(cj, "labels"), *tmpls = cJSON_GetObjectItem(cj, "templates");
    int L = cJSON_GetArraySize(labels), NT = cJSON_GetArraySize(tmpls);
    const char *lv[16], *tmv[16];
    for (int i = 0; i < L; i++)
        lv[i] = cJSON_GetArrayItem(labels, i)->valuestring;
    for (int i = 0; i < NT; i++)
        tmv[i] = cJSON_GetArrayItem(tmpls, i)->valuestring;
    float *w = malloc(sizeof(float) * L * P), *probs = malloc(sizeof(float) * B * L);
    float *ref_probs = malloc(sizeof(float) * B * L);
    const cJSON *pr = cJSON_GetObjectItem(cj, "probs");
    for (int i = 0; i < B; i++)
        for (int l = 0; l < L; l++)
            ref_probs[i * L + l] =
                (float)cJSON_GetArrayItem(cJSON_GetArrayItem(pr, i), l)->valuedouble;
    st = tsr_zeroshot_weights(m, lv, L, tmv, NT, w, NULL, &err);
    if (st == TSR_OK)
        st = tsr_model_embed_image_files(m, paths, B, 1, img2, &err);
    if (st == TSR_OK)
        tsr_zeroshot_probs(m, img2, B, w, L, probs);
    snprintf(what, sizeof what, "%s zero-shot probabilities (%d labels x %d templates)", name, L,
             NT);
    if (st != TSR_OK)
        check(0, "%s: %s", what, err.msg);
    else
        compare(what, probs, ref_probs, (size_t)B * L);

    cJSON_Delete(tj);
    cJSON_Delete(cj);
    free(px), free(ref_img), free(img), free(img2), free(ref_txt), free(txt);
    free(ref_logits), free(logits), free(w), free(probs), free(ref_probs);
    tsr_model_free(m);
}

int main(void)
{
    tsr_ctx *ctx = ctx_or_skip();
    run_model(ctx, "clip-tiny-a");
    run_model(ctx, "clip-tiny-b");
    tsr_ctx_free(ctx);
    return finish();
}
