/* BLIP captioning against transformers on a tiny random
 * BlipForConditionalGeneration (tests/reference/make_blip_fixtures.py: a
 * 30-pixel image with 6-pixel patches, widths 36 and 44, 3 and 4 heads, a
 * 421-token WordPiece vocabulary): BlipImageProcessor's pixels, the image
 * tower, teacher-forced decoder logits, generate()'s token sequences with
 * greedy and beam search in 15 settings, the decoded captions, and
 * tokenizer.decode() on random ids. Then the errors. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tsr_fusion.h"
#include "testutil.h"

#define SRC TSR_FIXTURES "/models/blip-tiny"

static void copy_file(const char *src, const char *dst)
{
    FILE *i = fopen(src, "rb"), *o = fopen(dst, "wb");
    char buf[65536];
    size_t n;
    while (i && o && (n = fread(buf, 1, sizeof buf, i)) > 0)
        fwrite(buf, 1, n, o);
    if (i)
        fclose(i);
    if (o)
        fclose(o);
}

static void test_decode(const tsr_wordpiece *tok)
{
    cJSON *cases = load_json(SRC "/expected/decode.json");
    check(cases != NULL, "decode.json read");
    int n = 0, bad = 0, bad_special = 0, bad_clean = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases)
    {
        int ids[64];
        int k = json_int_array(cJSON_GetObjectItem(c, "ids"), ids, 64);
        const char *want[3] = {cJSON_GetObjectItem(c, "text")->valuestring,
                               cJSON_GetObjectItem(c, "text_special")->valuestring,
                               cJSON_GetObjectItem(c, "text_clean")->valuestring};
        int *bads[3] = {&bad, &bad_special, &bad_clean};
        for (int v = 0; v < 3; v++) {
            char *got = NULL;
            tsr_error err = {0};
            tsr_status st = tsr_wordpiece_decode(tok, ids, k, v != 1, v == 2, &got, &err);
            if (st != TSR_OK || strcmp(got, want[v]) != 0) {
                if (*bads[v] < 3)
                    printf("     case %d (%d): got \"%s\", want \"%s\" %s\n", n, v,
                           got ? got : "", want[v], err.msg);
                (*bads[v])++;
            }
            free(got);
        }
        n++;
    }
    check(n == 300 && bad == 0, "decode, special tokens skipped: %d of %d differ from "
          "BertTokenizerFast.decode", bad, n);
    check(bad_special == 0, "decode, special tokens kept: %d of %d differ", bad_special, n);
    check(bad_clean == 0, "decode with clean_up_tokenization_spaces: %d of %d differ", bad_clean,
          n);
    cJSON_Delete(cases);
}

/* pixels from files vs BlipImageProcessor, in 8-bit levels */
static void test_pixels(const tsr_model *m, const cJSON *images, const float *ref, int S)
{
    const tsr_preprocess_cfg *pp = NULL;
    (void)m;
    tsr_preprocess_cfg cfg;
    tsr_error err = {0};
    check(tsr_preprocess_cfg_load(SRC "/preprocessor_config.json", &cfg, &err) == TSR_OK,
          "BlipImageProcessor config (size {height, width}) read %s", err.msg);
    pp = &cfg;
    int i = 0;
    const cJSON *it;
    size_t per = 3 * (size_t)S * S;
    float *px = malloc(sizeof(float) * per);
    cJSON_ArrayForEach(it, images)
    {
        char p[512];
        snprintf(p, sizeof p, TSR_FIXTURES "/images/%s", it->valuestring);
        tsr_image *img = NULL;
        tsr_status st = tsr_image_load_file(p, &img, &err);
        if (st == TSR_OK)
            st = tsr_image_preprocess(img, pp, px, &err);
        double e = 0, levels;
        if (st == TSR_OK)
            close_enough(px, ref + per * i, per, 0, 0, &e);
        levels = e * 0.26 * 255; /* the smallest std */
        check(st == TSR_OK && levels <= 1.0 + 1e-3,
              "pixels of %s vs BlipImageProcessor: max error %.3g (%.2f 8-bit levels) %s",
              it->valuestring, e, levels, err.msg);
        tsr_image_free(img);
        i++;
    }
    free(px);
}

static void test_towers(tsr_session *s, const float *px, const cJSON *gen)
{
    int nd;
    long dims[4];
    float *ref = load_npy(SRC "/expected/image_embeds.npy", &nd, dims);
    size_t per = ref ? (size_t)dims[1] * dims[2] : 0;
    float *emb = malloc(sizeof(float) * (per ? per : 1));
    tsr_error err = {0};
    double worst = 0;
    int ok = ref != NULL;
    for (long b = 0; ref && b < dims[0]; b++) {
        double e = 0;
        tsr_status st = tsr_session_caption_encode(s, px + 3 * 30 * 30 * b, emb, &err);
        ok &= st == TSR_OK && close_enough(emb, ref + per * b, per, 1e-4, 1e-4, &e);
        worst = fmax(worst, e);
        if (b == 0)
            print_head("image embeds", emb, per);
    }
    check(ok, "image tower (%ld images, %ld tokens x %ld) vs vision_model(...)[0]: max error "
          "%.2e (atol 1e-4 + rtol 1e-4) %s", ref ? dims[0] : 0L, ref ? dims[1] : 0L,
          ref ? dims[2] : 0L, worst, err.msg);
    free(ref);
    free(emb);

    /* teacher-forced logits of image 0 */
    ref = load_npy(SRC "/expected/logits.npy", &nd, dims);
    int V = ref ? (int)dims[1] : 1, ids[64];
    int n = json_int_array(cJSON_GetObjectItem(gen, "logits_ids"), ids, 64);
    float *lg = malloc(sizeof(float) * (size_t)n * V);
    tsr_status st = tsr_session_caption_encode(s, px, NULL, &err);
    if (st == TSR_OK)
        st = tsr_session_caption_logits(s, ids, n, lg, &err);
    double e = 0;
    ok = ref && st == TSR_OK && dims[0] == n && dims[1] == V &&
         close_enough(lg, ref, (size_t)n * V, 1e-4, 1e-4, &e);
    if (st == TSR_OK)
        print_head("logits", lg, (size_t)V);
    check(ok, "text decoder logits of %d teacher-forced tokens vs text_decoder(...): max error "
          "%.2e (atol 1e-4 + rtol 1e-4) %s", n, e, err.msg);
    free(ref);
    free(lg);
}

static tsr_caption_params params_of(const tsr_model *m, const cJSON *set)
{
    tsr_caption_params p = tsr_caption_default_params(m);
    const cJSON *v;
    if ((v = cJSON_GetObjectItem(set, "max_length")))
        p.max_length = v->valueint;
    if ((v = cJSON_GetObjectItem(set, "min_length")))
        p.min_length = v->valueint;
    if ((v = cJSON_GetObjectItem(set, "num_beams")))
        p.beams = v->valueint;
    if ((v = cJSON_GetObjectItem(set, "length_penalty")))
        p.length_penalty = (float)v->valuedouble;
    if ((v = cJSON_GetObjectItem(set, "repetition_penalty")))
        p.repetition_penalty = (float)v->valuedouble;
    if ((v = cJSON_GetObjectItem(set, "no_repeat_ngram_size")))
        p.no_repeat_ngram = v->valueint;
    if ((v = cJSON_GetObjectItem(set, "early_stopping")))
        p.early_stopping = cJSON_IsString(v) ? 2 : cJSON_IsTrue(v);
    if ((v = cJSON_GetObjectItem(set, "prompt")))
        p.prompt = v->valuestring;
    if ((v = cJSON_GetObjectItem(set, "num_return_sequences")))
        p.num_captions = v->valueint;
    return p;
}

/* Captions in batches of 2 images (2, 2, 1) are those of one batch of 5,
 * for every setting, and sampled ones too. */
static void test_batches(tsr_model *m, tsr_session *s, const cJSON *gen, tsr_image **imgs,
                         int n_img)
{
    tsr_session_params sp = tsr_session_default_params();
    sp.image_batch = 2;
    tsr_session *s2 = NULL;
    tsr_error err = {0};
    if (tsr_session_create(m, &sp, &s2, &err) != TSR_OK) {
        check(0, "a session of image_batch 2: %s", err.msg);
        return;
    }
    const cJSON *set;
    int settings = 0, same = 0;
    for (set = cJSON_GetObjectItem(gen, "settings")->child; set; set = set->next) {
        tsr_caption_params p = params_of(m, set);
        int K = p.num_captions;
        tsr_caption a[8 * 4], b[8 * 4];
        tsr_status sa = tsr_session_caption_images(s, (const tsr_image *const *)imgs, n_img, &p,
                                                   a, &err);
        tsr_status sb = tsr_session_caption_images(s2, (const tsr_image *const *)imgs, n_img, &p,
                                                   b, &err);
        int ok = sa == TSR_OK && sb == TSR_OK;
        for (int i = 0; ok && i < n_img * K; i++)
            ok = a[i].n_ids == b[i].n_ids &&
                 memcmp(a[i].ids, b[i].ids, sizeof(int) * (size_t)a[i].n_ids) == 0;
        for (int i = 0; sa == TSR_OK && i < n_img * K; i++)
            tsr_caption_free(&a[i]);
        for (int i = 0; sb == TSR_OK && i < n_img * K; i++)
            tsr_caption_free(&b[i]);
        settings++;
        same += ok;
    }
    tsr_caption_params p = tsr_caption_default_params(m);
    p.do_sample = 1;
    p.num_captions = 3;
    p.seed = 99;
    p.top_p = 0.9f;
    tsr_caption a[8 * 3], b[8 * 3];
    tsr_status sa = tsr_session_caption_images(s, (const tsr_image *const *)imgs, n_img, &p, a,
                                               &err);
    tsr_status sb = tsr_session_caption_images(s2, (const tsr_image *const *)imgs, n_img, &p, b,
                                               &err);
    int sampled = sa == TSR_OK && sb == TSR_OK;
    for (int i = 0; sampled && i < n_img * 3; i++)
        sampled = a[i].n_ids == b[i].n_ids &&
                  memcmp(a[i].ids, b[i].ids, sizeof(int) * (size_t)a[i].n_ids) == 0;
    for (int i = 0; sa == TSR_OK && i < n_img * 3; i++)
        tsr_caption_free(&a[i]);
    for (int i = 0; sb == TSR_OK && i < n_img * 3; i++)
        tsr_caption_free(&b[i]);
    check(same == settings && sampled,
          "batches of 2 images give the captions of one batch of %d in %d of %d settings; "
          "sampled captions (seed 99, 3 per image) %s %s", n_img, same, settings,
          sampled ? "identical" : "DIFFER", err.msg);
    tsr_session_free(s2);
}

static void test_generate(tsr_model *m, tsr_session *s, const cJSON *gen, tsr_image **imgs,
                          int n_img, const float *px)
{
    const cJSON *set;
    int ended = 0, cut = 0;
    cJSON_ArrayForEach(set, cJSON_GetObjectItem(gen, "settings"))
    {
        tsr_caption_params p = params_of(m, set);
        const cJSON *res = cJSON_GetObjectItem(set, "results");
        int K = p.num_captions;
        tsr_caption caps[8 * 4];
        tsr_error err = {0};
        tsr_status st = tsr_session_caption_images(s, (const tsr_image *const *)imgs, n_img, &p,
                                                   caps, &err);
        int same_ids = 0, same_text = 0, same_more = 0;
        for (int i = 0; i < n_img && st == TSR_OK; i++) {
            const cJSON *r = cJSON_GetArrayItem(res, i);
            int want[128];
            int nw = json_int_array(cJSON_GetObjectItem(r, "ids"), want, 128);
            const char *wt = cJSON_GetObjectItem(r, "caption")->valuestring;
            for (int k = 1; k < K; k++) { /* the n-best list */
                const cJSON *a = cJSON_GetArrayItem(cJSON_GetObjectItem(r, "all"), k);
                int na = json_int_array(cJSON_GetObjectItem(a, "ids"), want, 128);
                same_more += na == caps[i * K + k].n_ids &&
                             memcmp(want, caps[i * K + k].ids, sizeof(int) * (size_t)na) == 0 &&
                             strcmp(cJSON_GetObjectItem(a, "caption")->valuestring,
                                    caps[i * K + k].text) == 0;
            }
            nw = json_int_array(cJSON_GetObjectItem(r, "ids"), want, 128);
            tsr_caption *c = &caps[i * K];
            int ids_ok = nw == c->n_ids && memcmp(want, c->ids, sizeof(int) * (size_t)nw) == 0;
            int text_ok = strcmp(wt, c->text) == 0;
            same_ids += ids_ok;
            same_text += text_ok;
            ended += c->finished;
            cut += !c->finished;
            if (!ids_ok || !text_ok) {
                printf("     image %d: got %d ids \"%s\", want %d ids \"%s\"\n     got ", i,
                       c->n_ids, c->text, nw, wt);
                for (int k = 0; k < c->n_ids; k++)
                    printf(" %d", c->ids[k]);
                printf("\n     want");
                for (int k = 0; k < nw; k++)
                    printf(" %d", want[k]);
                printf("\n");
            }
        }
        check(st == TSR_OK && same_ids == n_img && same_text == n_img &&
                  same_more == n_img * (K - 1),
              "%-20s %d of %d token sequences and %d captions as generate() (\"%s\")%s %s",
              cJSON_GetObjectItem(set, "name")->valuestring, same_ids, n_img, same_text,
              st == TSR_OK ? caps[0].text : "", K > 1 ? ", and the n-best lists" : "", err.msg);
        for (int i = 0; i < n_img * K && st == TSR_OK; i++)
            tsr_caption_free(&caps[i]);
    }
    check(ended > 10 && cut > 5, "the fixtures cover both ends: %d captions ended with [SEP], "
          "%d were cut at max_length", ended, cut);

    /* from preprocessed pixels: the same as from the images */
    tsr_caption_params p = tsr_caption_default_params(m);
    p.beams = 3;
    tsr_caption caps[8];
    tsr_error err = {0};
    tsr_status st = tsr_session_caption_pixels(s, px, n_img, &p, caps, &err);
    const cJSON *b3 = cJSON_GetObjectItem(gen, "batched_beam3");
    int same = 0;
    for (int i = 0; i < n_img && st == TSR_OK; i++) {
        same += strcmp(caps[i].text, cJSON_GetArrayItem(b3, i)->valuestring) == 0;
        tsr_caption_free(&caps[i]);
    }
    check(st == TSR_OK && same == n_img,
          "beam 3 from reference pixels: %d of %d captions as one batched generate() %s", same,
          n_img, err.msg);
}

/* Sampling: top_k 1 is greedy search; a seed gives the same captions again;
 * and the first token's frequency over many draws matches the probabilities
 * after transformers' warpers (a chi-square test at p = 0.001). */
static void test_sampling(tsr_model *m, tsr_session *s, const cJSON *gen, tsr_image **imgs,
                          int n_img)
{
    const cJSON *greedy = cJSON_GetArrayItem(cJSON_GetObjectItem(gen, "settings"), 0);
    tsr_caption_params p = tsr_caption_default_params(m);
    p.do_sample = 1;
    p.top_k = 1;
    p.seed = 7;
    tsr_caption caps[16];
    tsr_error err = {0};
    int same = 0;
    tsr_status st = tsr_session_caption_images(s, (const tsr_image *const *)imgs, n_img, &p, caps,
                                               &err);
    for (int i = 0; i < n_img && st == TSR_OK; i++) {
        const cJSON *r = cJSON_GetArrayItem(cJSON_GetObjectItem(greedy, "results"), i);
        same += strcmp(cJSON_GetObjectItem(r, "caption")->valuestring, caps[i].text) == 0;
        tsr_caption_free(&caps[i]);
    }
    check(st == TSR_OK && same == n_img, "sampling with top_k 1: %d of %d captions are greedy "
          "search's %s", same, n_img, err.msg);

    /* the same seed, the same captions; another seed, others */
    p = tsr_caption_default_params(m);
    p.do_sample = 1;
    p.num_captions = 4;
    p.seed = 12345;
    tsr_caption a[16], b[16], c[16];
    tsr_session *s2 = new_session(m);
    st = tsr_session_caption_images(s, (const tsr_image *const *)imgs, 2, &p, a, &err);
    tsr_status st2 = tsr_session_caption_images(s2, (const tsr_image *const *)imgs, 2, &p, b, &err);
    p.seed = 54321;
    tsr_status st3 = tsr_session_caption_images(s, (const tsr_image *const *)imgs, 2, &p, c, &err);
    int again = 0, differ = 0, within = 0;
    for (int i = 0; i < 8 && st == TSR_OK && st2 == TSR_OK && st3 == TSR_OK; i++) {
        again += a[i].n_ids == b[i].n_ids &&
                 memcmp(a[i].ids, b[i].ids, sizeof(int) * (size_t)a[i].n_ids) == 0;
        differ += strcmp(a[i].text, c[i].text) != 0;
        within += i % 4 && strcmp(a[i].text, a[i - 1].text) != 0;
    }
    check(st == TSR_OK && st2 == TSR_OK && st3 == TSR_OK && again == 8 && differ >= 4 &&
              within >= 3,
          "seed 12345 twice, in two sessions: %d of 8 sampled captions identical; seed 54321: "
          "%d differ; draws of one image differ from each other %d times (\"%s\")", again,
          differ, within, st == TSR_OK ? a[0].text : err.msg);
    for (int i = 0; i < 8 && st == TSR_OK; i++)
        tsr_caption_free(&a[i]);
    for (int i = 0; i < 8 && st2 == TSR_OK; i++)
        tsr_caption_free(&b[i]);
    for (int i = 0; i < 8 && st3 == TSR_OK; i++)
        tsr_caption_free(&c[i]);
    tsr_session_free(s2);

    /* sample k has its own generator: asking for more keeps the first */
    p = tsr_caption_default_params(m);
    p.do_sample = 1;
    p.seed = 5;
    tsr_caption one, three[3];
    st = tsr_session_caption_images(s, (const tsr_image *const *)imgs, 1, &p, &one, &err);
    p.num_captions = 3;
    st2 = tsr_session_caption_images(s, (const tsr_image *const *)imgs, 1, &p, three, &err);
    check(st == TSR_OK && st2 == TSR_OK && strcmp(one.text, three[0].text) == 0,
          "the first of 3 samples is the one sample of --num-captions 1 (\"%s\") %s",
          st == TSR_OK ? one.text : "", err.msg);
    if (st == TSR_OK)
        tsr_caption_free(&one);
    for (int k = 0; k < 3 && st2 == TSR_OK; k++)
        tsr_caption_free(&three[k]);

    /* the first token's distribution */
    const cJSON *set;
    cJSON_ArrayForEach(set, cJSON_GetObjectItem(gen, "sampling"))
    {
        const cJSON *pj = cJSON_GetObjectItem(set, "probs");
        int V = cJSON_GetArraySize(pj);
        double *prob = calloc((size_t)V, sizeof(double));
        long *count = calloc((size_t)V, sizeof(long));
        for (int k = 0; k < V; k++)
            prob[k] = cJSON_GetArrayItem(pj, k)->valuedouble;
        p = tsr_caption_default_params(m);
        p.do_sample = 1;
        p.temperature = (float)cJSON_GetObjectItem(set, "temperature")->valuedouble;
        p.top_k = cJSON_GetObjectItem(set, "top_k")->valueint;
        p.top_p = (float)cJSON_GetObjectItem(set, "top_p")->valuedouble;
        p.max_new_tokens = 1;
        p.num_captions = 16;
        int N = 0, bad_id = 0;
        st = TSR_OK;
        for (int call = 0; call < 100 && st == TSR_OK; call++) {
            p.seed = (uint64_t)call * 7919 + 1;
            st = tsr_session_caption_images(s, (const tsr_image *const *)imgs, 1, &p, caps, &err);
            for (int k = 0; k < 16 && st == TSR_OK; k++) {
                int t = caps[k].ids[1];
                if (t >= 0 && t < V)
                    count[t]++;
                else
                    bad_id++;
                N++;
                tsr_caption_free(&caps[k]);
            }
        }
        /* bins with an expected count of at least 5; the rest pooled */
        double chi = 0, pool_e = 0, pool_o = 0, zero_mass_draws = 0;
        int bins = 0;
        for (int k = 0; k < V; k++) {
            double e = prob[k] * N;
            if (prob[k] == 0) {
                zero_mass_draws += (double)count[k];
            } else if (e >= 5) {
                chi += (count[k] - e) * (count[k] - e) / e;
                bins++;
            } else {
                pool_e += e;
                pool_o += (double)count[k];
            }
        }
        if (pool_e > 0) {
            chi += (pool_o - pool_e) * (pool_o - pool_e) / pool_e;
            bins++;
        }
        int dof = bins - 1;
        /* Wilson-Hilferty: the chi-square quantile at 1 - 0.001 */
        double crit = dof > 0 ? dof * pow(1 - 2.0 / (9 * dof) + 3.090 * sqrt(2.0 / (9 * dof)), 3)
                              : 0;
        check(st == TSR_OK && bad_id == 0 && zero_mass_draws == 0 && chi <= crit + 1e-9,
              "first token of %d draws (temperature %.1f, top_k %d, top_p %.1f) vs transformers' "
              "warped probabilities: chi-square %.1f on %d degrees of freedom (bound %.1f); "
              "%.0f draws of tokens the warpers remove %s",
              N, (double)p.temperature, p.top_k, (double)p.top_p, chi, dof, crit,
              zero_mass_draws, err.msg);
        free(prob);
        free(count);
    }
}

static void test_errors(tsr_ctx *ctx, tsr_model *m, tsr_session *s, tsr_image *img)
{
    tsr_caption cap;
    tsr_error err = {0};
    tsr_caption_params p = tsr_caption_default_params(m);
    check(p.max_length == 0 && p.beams == 1 && p.length_penalty == 1.0f && !p.prompt,
          "defaults: max_length %d (the model's), beams %d (transformers' for a config "
          "without them)", p.max_length, p.beams);
    p.prompt = "a picture of a picture of a picture of a picture of a picture of a picture of";
    tsr_status st = tsr_session_caption_images(s, (const tsr_image *const *)&img, 1, &p, &cap,
                                               &err);
    check(st == TSR_ERR_INVALID_ARG && strstr(err.msg, "the prompt has"),
          "a prompt longer than max_length refused: %s", err.msg);
    p.max_length = 60;
    st = tsr_session_caption_images(s, (const tsr_image *const *)&img, 1, &p, &cap, &err);
    check(st == TSR_ERR_INVALID_ARG, "the same with max_length 60: %s", err.msg);
    p = tsr_caption_default_params(m);
    p.max_length = 500;
    st = tsr_session_caption_images(s, (const tsr_image *const *)&img, 1, &p, &cap, &err);
    check(st == TSR_ERR_INVALID_ARG && strstr(err.msg, "positions"),
          "max_length past the position table refused: %s", err.msg);
    p = tsr_caption_default_params(m);
    p.prompt = "\xff\xfe";
    st = tsr_session_caption_images(s, (const tsr_image *const *)&img, 1, &p, &cap, &err);
    check(st == TSR_ERR_INVALID_ARG && strstr(err.msg, "UTF-8"), "invalid UTF-8 prompt refused: %s",
          err.msg);
    p = tsr_caption_default_params(m);
    p.beams = 99;
    st = tsr_session_caption_images(s, (const tsr_image *const *)&img, 1, &p, &cap, &err);
    check(st == TSR_ERR_INVALID_ARG, "99 beams refused: %s", err.msg);
    tsr_image *none[2] = {img, NULL};
    tsr_caption two[2];
    st = tsr_session_caption_images(s, (const tsr_image *const *)none, 2, NULL, two, &err);
    check(st == TSR_ERR_INVALID_ARG && !two[0].text && strstr(err.msg, "image 2"),
          "a NULL image: an error naming it, nothing kept: %s", err.msg);
    err = (tsr_error){0};
    st = tsr_session_caption_images(s, (const tsr_image *const *)&img, 1, NULL, &cap, &err);
    check(st == TSR_OK && cap.text, "the session still works after errors %s", err.msg);
    if (st == TSR_OK)
        tsr_caption_free(&cap);

    /* a CLIP model cannot caption; a BLIP model cannot embed */
    tsr_model *clip = NULL;
    st = tsr_model_load(ctx, TSR_FIXTURES "/models/clip-tiny-a", &clip, &err);
    tsr_session *cs = st == TSR_OK ? new_session(clip) : NULL;
    if (cs) {
        st = tsr_session_caption_images(cs, (const tsr_image *const *)&img, 1, NULL, &cap, &err);
        check(st == TSR_ERR_UNSUPPORTED && strstr(err.msg, "caption"),
              "a CLIP session asked for captions: %s", err.msg);
    }
    tsr_session_free(cs);
    tsr_model_free(clip);
    float emb[64];
    st = tsr_session_embed_image_files(s, (const char *[]){TSR_FIXTURES "/images/chelsea.jpg"}, 1,
                                       1, emb, &err);
    check(st == TSR_ERR_UNSUPPORTED, "a BLIP session asked for image embeddings: %s", err.msg);

    /* broken checkpoints */
    char dir[] = "/tmp/tsr_blip_XXXXXX";
    if (!mkdtemp(dir))
        return;
    const char *files[] = {"model.safetensors", "tokenizer.json", "tokenizer_config.json",
                           "preprocessor_config.json", "special_tokens_map.json", NULL};
    char a[600], b[600];
    for (int i = 0; files[i]; i++) {
        snprintf(a, sizeof a, SRC "/%s", files[i]);
        snprintf(b, sizeof b, "%s/%s", dir, files[i]);
        copy_file(a, b);
    }
    snprintf(b, sizeof b, "%s/config.json", dir);
    copy_text(SRC "/config.json", b, "BlipForConditionalGeneration", "BlipForQuestionAnswering");
    tsr_model *bad = NULL;
    st = tsr_model_load(ctx, dir, &bad, &err);
    check(st == TSR_ERR_UNSUPPORTED && !bad && strstr(err.msg, "BlipForQuestionAnswering"),
          "a BLIP VQA checkpoint refused by name: %s", err.msg);
    copy_text(SRC "/config.json", b, "\"hidden_size\": 44", "\"hidden_size\": 48");
    st = tsr_model_load(ctx, dir, &bad, &err);
    check(st == TSR_ERR_SHAPE && !bad && strstr(err.msg, "text_decoder"),
          "a config that does not match the weights: %s", err.msg);
    copy_text(SRC "/config.json", b, "\"encoder_hidden_size\": 36", "\"encoder_hidden_size\": 40");
    st = tsr_model_load(ctx, dir, &bad, &err);
    check(st == TSR_ERR_FORMAT && !bad && strstr(err.msg, "encoder_hidden_size"),
          "cross-attention width unlike the image tower's: %s", err.msg);
    copy_text(SRC "/config.json", b, NULL, NULL);
    snprintf(b, sizeof b, "%s/preprocessor_config.json", dir);
    copy_text(SRC "/preprocessor_config.json", b, "\"height\": 30", "\"height\": 32");
    st = tsr_model_load(ctx, dir, &bad, &err);
    check(st == TSR_ERR_FORMAT && !bad && strstr(err.msg, "image_size"),
          "a preprocessor size unlike the model's: %s", err.msg);
    check_load_without_err(ctx, dir, TSR_ERR_FORMAT, "the same");
    for (int i = 0; files[i]; i++) {
        snprintf(b, sizeof b, "%s/%s", dir, files[i]);
        remove(b);
    }
    snprintf(b, sizeof b, "%s/config.json", dir);
    remove(b);
    rmdir(dir);
}

int main(void)
{
    tsr_ctx *ctx = ctx_or_skip();
    tsr_model *m = NULL;
    tsr_error err = {0};
    tsr_status st = tsr_model_load(ctx, SRC, &m, &err);
    check(st == TSR_OK && strcmp(tsr_model_family(m), "blip") == 0, "load %s: %s %s", SRC,
          st == TSR_OK ? tsr_model_family(m) : "", err.msg);
    const char *kind = tsr_model_kind(SRC, &err);
    check(kind && strcmp(kind, "blip") == 0, "model kind: %s", kind ? kind : err.msg);
    if (st != TSR_OK)
        return finish();
    test_decode(tsr_model_caption_tokenizer(m));
    cJSON *gen = load_json(SRC "/expected/generate.json");
    int nd;
    long dims[4];
    float *px = load_npy(SRC "/expected/pixel_values.npy", &nd, dims);
    const cJSON *images = cJSON_GetObjectItem(gen, "images");
    int n_img = cJSON_GetArraySize(images);
    check(gen && px && n_img == dims[0] && n_img <= 8, "fixtures: %d images", n_img);
    if (!gen || !px)
        return finish();
    test_pixels(m, images, px, 30);
    tsr_session *s = new_session(m);
    test_towers(s, px, gen);
    tsr_image *imgs[8] = {0};
    for (int i = 0; i < n_img; i++) {
        char p[512];
        snprintf(p, sizeof p, TSR_FIXTURES "/images/%s", cJSON_GetArrayItem(images, i)->valuestring);
        if (tsr_image_load_file(p, &imgs[i], &err) != TSR_OK)
            printf("cannot load %s: %s\n", p, err.msg);
    }
    test_generate(m, s, gen, imgs, n_img, px);
    test_sampling(m, s, gen, imgs, n_img);
    test_batches(m, s, gen, imgs, n_img);
    test_errors(ctx, m, s, imgs[0]);
    for (int i = 0; i < n_img; i++)
        tsr_image_free(imgs[i]);
    free(px);
    cJSON_Delete(gen);
    tsr_session_free(s);
    tsr_model_free(m);
    tsr_ctx_free(ctx);
    return finish();
}
