/* Zero-shot classification: prompt templates, class weights, scores. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tsr_model.h"

/* The 80 ImageNet prompts of the CLIP paper (Radford et al. 2021), in the
 * order of its prompt-engineering notebook. */
static const char *const imagenet_templates[] = {
    "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.",
    "a photo of the hard to see {}.", "a low resolution photo of the {}.", "a rendering of a {}.",
    "graffiti of a {}.", "a bad photo of the {}.", "a cropped photo of the {}.",
    "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
    "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.",
    "a dark photo of the {}.", "a drawing of a {}.", "a photo of my {}.", "the plastic {}.",
    "a photo of the cool {}.", "a close-up photo of a {}.", "a black and white photo of the {}.",
    "a painting of the {}.", "a painting of a {}.", "a pixelated photo of the {}.",
    "a sculpture of the {}.", "a bright photo of the {}.", "a cropped photo of a {}.",
    "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.",
    "a rendering of the {}.", "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.",
    "a close-up photo of the {}.", "a photo of a {}.", "the origami {}.",
    "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.", "a origami {}.",
    "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
    "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.",
    "a photo of a nice {}.", "a photo of a weird {}.", "a blurry photo of a {}.",
    "a cartoon {}.", "art of a {}.", "a sketch of the {}.", "a embroidered {}.",
    "a pixelated photo of a {}.", "itap of the {}.", "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.",
    "a photo of the small {}.", "a photo of the weird {}.", "the cartoon {}.", "art of the {}.",
    "a drawing of the {}.", "a photo of the large {}.", "a black and white photo of a {}.",
    "the plushie {}.", "a dark photo of a {}.", "itap of a {}.", "graffiti of the {}.",
    "a toy {}.", "itap of my {}.", "a photo of a cool {}.", "a photo of a small {}.",
    "a tattoo of the {}.",
};

int tsr_templates_imagenet(const char *const **out)
{
    *out = imagenet_templates;
    return (int)(sizeof imagenet_templates / sizeof imagenet_templates[0]);
}

/* Replaces every "{}" in tmpl with label; NULL on allocation failure. */
static char *fill_template(const char *tmpl, const char *label)
{
    size_t ll = strlen(label), n = 0;
    for (const char *p = tmpl; (p = strstr(p, "{}")); p += 2)
        n++;
    char *s = malloc(strlen(tmpl) + n * ll + 1), *d = s;
    if (!s)
        return NULL;
    for (const char *p = tmpl; *p;) {
        if (p[0] == '{' && p[1] == '}') {
            memcpy(d, label, ll);
            d += ll;
            p += 2;
        } else {
            *d++ = *p++;
        }
    }
    *d = 0;
    return s;
}

tsr_status tsr_session_zeroshot_weights(tsr_session *s, const char *const *labels, int L,
                                        const char *const *templates, int T, float *weights,
                                        int *n_truncated, tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    tsr_status need = s && s->m->fam == &tsr_family_clap
                          ? TSR_OK
                          : tsr_session_need(s, &tsr_family_clip, "score images against labels", err);
    if (need != TSR_OK)
        return tsr_session_fail(s, need, err);
    int P = tsr_model_embed_dim(s->m);
    if (T < 1 || L < 1)
        return tsr_session_fail(s, tsr_error_set(err, TSR_ERR_INVALID_ARG,
                                                 "need at least one label and template"), err);
    for (int t = 0; t < T; t++)
        if (!strstr(templates[t], "{}"))
            return tsr_session_fail(
                s, tsr_error_set(err, TSR_ERR_INVALID_ARG,
                                 "template \"%s\" has no {} for the label", templates[t]),
                err);
    char **texts = calloc((size_t)T, sizeof(char *));
    float *emb = malloc(sizeof(float) * (size_t)T * P);
    tsr_status rc = (texts && emb) ? TSR_OK
                                   : tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    if (n_truncated)
        *n_truncated = 0;
    for (int l = 0; l < L && rc == TSR_OK; l++) {
        for (int t = 0; t < T && rc == TSR_OK; t++) {
            free(texts[t]);
            texts[t] = fill_template(templates[t], labels[l]);
            if (!texts[t])
                rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
        }
        int cut = 0;
        if (rc == TSR_OK)
            rc = tsr_session_embed_texts(s, (const char *const *)texts, T, 1, emb, &cut, err);
        if (rc != TSR_OK) {
            tsr_error_prefix(err, "label \"%.*s\"", 64, labels[l]);
            break;
        }
        if (n_truncated)
            *n_truncated += cut;
        float *w = weights + (size_t)l * P;
        for (int i = 0; i < P; i++) {
            double s = 0;
            for (int t = 0; t < T; t++)
                s += emb[(size_t)t * P + i];
            w[i] = (float)(s / T);
        }
        tsr_l2_normalize(w, P);
    }
    if (texts)
        for (int t = 0; t < T; t++)
            free(texts[t]);
    free(texts);
    free(emb);
    return tsr_session_fail(s, rc, err);
}

void tsr_scores(float scale, const float *a, int N, const float *b, int L, int dim,
                float *logits)
{
    for (int n = 0; n < N; n++)
        for (int l = 0; l < L; l++) {
            double s = 0;
            for (int i = 0; i < dim; i++)
                s += (double)a[(size_t)n * dim + i] * b[(size_t)l * dim + i];
            logits[(size_t)n * L + l] = (float)(scale * s);
        }
}

void tsr_zeroshot_logits(const tsr_model *m, const float *img, int N, const float *weights, int L,
                         float *logits)
{
    tsr_scores(tsr_model_logit_scale(m), img, N, weights, L, tsr_model_embed_dim(m), logits);
}

void tsr_zeroshot_probs(const tsr_model *m, const float *img, int N, const float *weights, int L,
                        float *probs)
{
    tsr_zeroshot_logits(m, img, N, weights, L, probs);
    tsr_softmax_rows(probs, N, L, 1.0);
}
