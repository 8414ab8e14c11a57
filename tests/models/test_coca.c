/* CoCa against open_clip 3.3 on two tiny random CoCa models
 * (tests/reference/make_coca_fixtures.py): coca-tiny-a (GELU, a 44-wide
 * image tower whose pooler keeps q, k and v apart, 7 queries) and
 * coca-tiny-b (quick_gelu, float16, one in_proj, 5 queries, 3 decoder
 * layers). Image and text embeddings and logits (atol 1e-4 + rtol 1e-4),
 * then the token sequences of open_clip's generate(): its default beam
 * search (6 beams in 3 groups), greedy search with and without a prompt,
 * and 4 beams to 14 tokens; in one batch of 4 images and one image at a
 * time. Then the errors. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsr_fusion.h"
#include "testutil.h"

static void compare(const char *what, const float *got, const float *ref, size_t n)
{
    double err;
    int ok = close_enough(got, ref, n, 1e-4, 1e-4, &err);
    check(ok, "%s: max error %.3g (bound 1e-4 + 1e-4 relative)", what, err);
}

/* Captions of the 4 images in batches of `batch`, against the fixture's
 * rows (generated tokens, the end token included when one was made). */
static void captions(const char *name, tsr_session *s, int size, const float *px, int B,
                     int batch, const tsr_caption_params *p, const cJSON *want, const char *what)
{
    size_t per = 3 * (size_t)size * size;
    int same = 0, total = 0;
    for (int i = 0; i < B; i += batch) {
        int nb = B - i < batch ? B - i : batch;
        tsr_caption cap[8] = {{0}};
        tsr_error err = {0};
        tsr_status st = tsr_session_caption_pixels(s, px + per * i, nb, p, cap, &err);
        if (st != TSR_OK) {
            check(0, "%s %s: %s", name, what, err.msg);
            return;
        }
        for (int k = 0; k < nb; k++) {
            int ref[64], n = json_int_array(cJSON_GetArrayItem(want, i + k), ref, 64);
            const int *got = cap[k].ids + cap[k].n_prompt;
            int ng = cap[k].n_ids - cap[k].n_prompt;
            int eq = ng == n && memcmp(got, ref, sizeof(int) * (size_t)n) == 0;
            same += eq;
            total++;
            if (!eq) {
                printf("  %s %s image %d: %d tokens, the reference %d:", name, what, i + k, ng, n);
                for (int j = 0; j < ng && j < 40; j++)
                    printf(" %d%s", got[j], j < n && got[j] == ref[j] ? "" : "*");
                printf("\n");
            }
            tsr_caption_free(&cap[k]);
        }
    }
    check(same == total, "%s %s (batches of %d): %d of %d token sequences equal open_clip's",
          name, what, batch, same, total);
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
    check(strcmp(tsr_model_family(m), "clip") == 0 && tsr_model_can_caption(m),
          "%s: a contrastive model that captions", name);
    tsr_session *s = new_session(m);
    int P = tsr_model_embed_dim(m), nd;
    long dims[4];
    snprintf(p, sizeof p, "%s/expected/pixel_values.npy", dir);
    float *px = load_npy(p, &nd, dims);
    int B = px ? (int)dims[0] : 0;
    snprintf(p, sizeof p, "%s/expected/image_embeds.npy", dir);
    float *ref_img = load_npy(p, &nd, dims);
    snprintf(p, sizeof p, "%s/expected/text_embeds.npy", dir);
    float *ref_txt = load_npy(p, &nd, dims);
    int T = ref_txt ? (int)dims[0] : 0;
    snprintf(p, sizeof p, "%s/expected/logits_per_image.npy", dir);
    float *ref_lg = load_npy(p, &nd, dims);
    snprintf(p, sizeof p, "%s/expected/texts.json", dir);
    cJSON *tj = load_json(p);
    snprintf(p, sizeof p, "%s/expected/captions.json", dir);
    cJSON *cj = load_json(p);
    check(px && ref_img && ref_txt && ref_lg && tj && cj && B <= 8, "%s: fixtures", name);
    if (!(px && ref_img && ref_txt && ref_lg && tj && cj && B <= 8))
        goto out;

    float *img = malloc(sizeof(float) * B * P), *txt = malloc(sizeof(float) * T * P);
    st = tsr_session_embed_pixels(s, px, B, 0, img, &err);
    char what[160];
    snprintf(what, sizeof what, "%s image_embeds (attentional pooler)", name);
    if (st == TSR_OK)
        compare(what, img, ref_img, (size_t)B * P);
    else
        check(0, "%s: %s", what, err.msg);
    const cJSON *texts = cJSON_GetObjectItem(tj, "texts");
    const char *tv[16];
    for (int i = 0; i < T && i < 16; i++)
        tv[i] = cJSON_GetArrayItem(texts, i)->valuestring;
    st = tsr_session_embed_texts(s, tv, T, 0, txt, NULL, &err);
    snprintf(what, sizeof what, "%s text_embeds (class token, open_clip's mask)", name);
    if (st == TSR_OK)
        compare(what, txt, ref_txt, (size_t)T * P);
    else
        check(0, "%s: %s", what, err.msg);
    if (st == TSR_OK) { /* logits of the normalised embeddings */
        float *lg = malloc(sizeof(float) * B * T);
        for (int i = 0; i < B; i++)
            for (int j = 0; j < T; j++) {
                double a = 0, na = 0, nb = 0;
                for (int k = 0; k < P; k++) {
                    a += (double)img[i * P + k] * txt[j * P + k];
                    na += (double)img[i * P + k] * img[i * P + k];
                    nb += (double)txt[j * P + k] * txt[j * P + k];
                }
                lg[i * T + j] = (float)(tsr_model_logit_scale(m) * a / sqrt(na * nb));
            }
        snprintf(what, sizeof what, "%s logits_per_image", name);
        compare(what, lg, ref_lg, (size_t)B * T);
        free(lg);
    }
    free(img);
    free(txt);

    /* the decoder's logits for a fixed prefix, through the KV cache, against
     * open_clip's forward pass over the whole prefix */
    snprintf(p, sizeof p, "%s/expected/decoder_logits.npy", dir);
    float *ref_dec = load_npy(p, &nd, dims);
    const cJSON *pre = cJSON_GetObjectItem(cj, "prefix_ids");
    int pids[64], np = json_int_array(pre, pids, 64);
    if (ref_dec && np == dims[0] && np <= 64) {
        int V = (int)dims[1];
        float *lg = malloc(sizeof(float) * (size_t)np * V);
        tsr_session *s1 = new_session(m);
        st = tsr_session_caption_encode(s1, px, NULL, &err);
        if (st == TSR_OK)
            st = tsr_session_caption_logits(s1, pids, np, lg, &err);
        snprintf(what, sizeof what, "%s decoder logits of a %d-token prefix (KV cache)", name, np);
        if (st == TSR_OK)
            compare(what, lg, ref_dec, (size_t)np * V);
        else
            check(0, "%s: %s", what, err.msg);
        free(lg);
        tsr_session_free(s1);
    } else {
        check(0, "%s: decoder_logits.npy", name);
    }
    free(ref_dec);

    /* open_clip's generate() */
    tsr_caption_params def = tsr_caption_default_params(m);
    int isz = tsr_model_caption_image_size(m);
    check(def.beams == 6 && def.beam_groups == 3 && def.max_length == 30 && def.min_length == 5,
          "%s: open_clip's generate() defaults (6 beams in 3 groups, 30 tokens, at least 5)",
          name);
    const cJSON *beam = cJSON_GetObjectItem(cj, "beam");
    captions(name, s, isz, px, B, B, &def, beam, "beam search (defaults)");
    captions(name, s, isz, px, B, 1, NULL, beam, "beam search (defaults)");
    tsr_caption_params g = def;
    g.beams = 1;
    g.beam_groups = 1;
    captions(name, s, isz, px, B, B, &g, cJSON_GetObjectItem(cj, "greedy"), "greedy");
    captions(name, s, isz, px, B, 3, &g, cJSON_GetObjectItem(cj, "greedy"), "greedy");
    g.prompt = cJSON_GetObjectItem(cj, "prompt")->valuestring;
    captions(name, s, isz, px, B, B, &g, cJSON_GetObjectItem(cj, "greedy_prompt"), "greedy, prompted");
    tsr_caption_params b4 = def;
    b4.beams = 4;
    b4.beam_groups = 1;
    b4.max_length = 14;
    b4.min_length = 3;
    captions(name, s, isz, px, B, B, &b4, cJSON_GetObjectItem(cj, "beam4_len14_min3"),
             "4 beams, seq_len 14, min_seq_len 3");
    captions(name, s, isz, px, B, 2, &b4, cJSON_GetObjectItem(cj, "beam4_len14_min3"),
             "4 beams, seq_len 14, min_seq_len 3");

    tsr_caption_params g3 = def;
    g3.beams = 3;
    g3.beam_groups = 3; /* groups of one beam: still open_clip's beam search */
    g3.max_length = 12;
    captions(name, s, isz, px, B, B, &g3, cJSON_GetObjectItem(cj, "beam3_groups3_len12"),
             "3 beams in 3 groups, seq_len 12");

    /* the text of the default captions, as open_clip.decode and the model card give it */
    tsr_caption cap[8] = {{0}};
    st = tsr_session_caption_pixels(s, px, B, NULL, cap, &err);
    const cJSON *bt = cJSON_GetObjectItem(cj, "beam_text");
    int same = 0;
    for (int i = 0; i < B && st == TSR_OK; i++) {
        const char *want = cJSON_GetArrayItem(bt, i)->valuestring;
        same += strcmp(cap[i].text, want) == 0;
        if (strcmp(cap[i].text, want) != 0)
            printf("  caption %d: \"%s\", open_clip \"%s\"\n", i, cap[i].text, want);
        tsr_caption_free(&cap[i]);
    }
    check(st == TSR_OK && same == B, "%s: %d of %d caption texts equal open_clip.decode's", name,
          same, B);

    /* errors */
    tsr_caption c1[2] = {{0}};
    tsr_caption_params bad = def;
    bad.beams = 4; /* not a multiple of 3 groups */
    st = tsr_session_caption_pixels(s, px, 1, &bad, c1, &err);
    check(st == TSR_ERR_INVALID_ARG && strstr(err.msg, "groups"), "%s: 4 beams in 3 groups: %s",
          name, err.msg);
    bad = def;
    bad.max_length = 1000;
    st = tsr_session_caption_pixels(s, px, 1, &bad, c1, &err);
    check(st == TSR_ERR_INVALID_ARG && strstr(err.msg, "positions"),
          "%s: max_length past the positions: %s", name, err.msg);
    bad = def;
    bad.beams = 0;
    st = tsr_session_caption_pixels(s, px, 1, &bad, c1, &err);
    check(st == TSR_ERR_INVALID_ARG, "%s: 0 beams: %s", name, err.msg);
    const char *bang[] = {"wow!!!!!!!! a cat"};
    float e1[64];
    st = tsr_session_embed_texts(s, bang, 1, 1, e1, NULL, &err);
    int ids[64], n = 0, cut = 0;
    tsr_tokenizer_encode(tsr_model_tokenizer(m), bang[0], 64, ids, &n, &cut, &err);
    int has0 = 0;
    for (int i = 0; i < n; i++)
        has0 |= ids[i] == 0;
    check(has0 ? st == TSR_ERR_UNSUPPORTED && strstr(err.msg, "token 0") : st == TSR_OK,
          "%s: a text holding token 0 (open_clip masks it as padding) %s: %s", name,
          has0 ? "is refused" : "(none here) embeds", st == TSR_OK ? "" : err.msg);
out:
    free(px);
    free(ref_img);
    free(ref_txt);
    free(ref_lg);
    cJSON_Delete(tj);
    cJSON_Delete(cj);
    tsr_session_free(s);
    tsr_model_free(m);
}

int main(void)
{
    tsr_ctx *ctx = ctx_or_skip();
    run_model(ctx, "coca-tiny-a");
    run_model(ctx, "coca-tiny-b");
    tsr_ctx_free(ctx);
    return finish();
}
