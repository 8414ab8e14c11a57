/* CoCa captions (open_clip's CoCa.generate): the image tower and its
 * attentional pooler give the image tokens (the pooler's rows after the
 * first); each step runs the new token through the text tower's layers and
 * the multimodal decoder's self- and cross-attention blocks, one decoder
 * stack with a KV cache; the search follows open_clip's semantics
 * (fusion/tsr_generate.h). */
#include <stdlib.h>
#include <string.h>

#include "tsr_clip.h"
#include "tsr_generate.h"

/* open_clip 3.3's generate() defaults: beam search with num_beams 6 in 3
 * groups, seq_len 30 (the start token included), min_seq_len 5; sampling
 * as its "top_p" type (top_p 0.1; its "top_k" type keeps top_k 1). */
tsr_caption_params tsr_coca_default_params(const clip_model *c)
{
    int limit = c->dec.n_ctx + 1;
    return (tsr_caption_params){.max_length = 30 < limit ? 30 : limit,
                                .min_length = 5,
                                .beams = 6,
                                .beam_groups = 3,
                                .length_penalty = 1.0f,
                                .repetition_penalty = 1.0f,
                                .temperature = 1.0f,
                                .top_k = 0,  /* sampling: the "top_p" type */
                                .top_p = 0.1f,
                                .num_captions = 1};
}

/* Plans the decoder and the image tokens for cs->want_cap_* (the image
 * tower is planned by clip_plan, for at least as many images). */
tsr_status tsr_coca_plan(tsr_session *s, size_t scratch[TSR_SCRATCH_N], tsr_error *err)
{
    clip_model *c = CLIP(s->m);
    clip_session *cs = s->data;
    int N = cs->want_cap_img, R = cs->want_cap_rows, T = c->vit.pool_queries - 1;
    float *px = realloc(cs->cap_px, sizeof(float) * (size_t)N * c->vit.channels *
                                        c->vit.image_size * c->vit.image_size);
    if (!px)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    cs->cap_px = px;
    cs->cap_dcfg = c->dec;
    cs->cap_dcfg.n_ctx = cs->want_cap_len;
    tsr_arena_reserve(&s->arena, &cs->cap_tokens, sizeof(float) * (size_t)N * T * c->proj_dim);
    tsr_arena_reserve(&s->arena, &cs->cap_idx, sizeof(cl_int) * (size_t)N * T);
    return tsr_decoder_plan(s->q, &cs->cap_dcfg, N * R, cs->want_cap_len, N, T, &s->arena,
                            &cs->cap_dec, scratch, err);
}

void tsr_coca_session_free(clip_session *cs)
{
    tsr_decoder_io_free(&cs->cap_dec);
    free(cs->cap_px);
    cs->cap_px = NULL;
}

static tsr_status check_params(const clip_model *c, const tsr_caption_params *p, tsr_error *err)
{
    int limit = c->dec.n_ctx + 1, groups = p->beam_groups > 0 ? p->beam_groups : 1;
    if (p->max_length < 0 || p->max_length > limit)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "max_length %d outside 2..%d (the start token and %d tokens: the "
                             "model's text positions)",
                             p->max_length, limit, limit - 1);
    if (p->max_new_tokens < 0 || p->max_new_tokens > limit - 1)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "max_new_tokens %d outside 1..%d (the model's text positions)",
                             p->max_new_tokens, limit - 1);
    if (p->beams < 1 || p->beams > TSR_GEN_MAX_BEAMS || (p->beams > 1 && p->beams % groups))
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "beams %d: 1 to %d, and a multiple of the %d beam groups",
                             p->beams, TSR_GEN_MAX_BEAMS, groups);
    if (p->min_length < 0 || p->no_repeat_ngram < 0 || !(p->repetition_penalty >= 0.01f) ||
        !(p->repetition_penalty <= 100) || !(p->length_penalty >= -100) ||
        !(p->length_penalty <= 100))
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "min_length and no_repeat_ngram must be >= 0, repetition_penalty "
                             "0.01..100, length_penalty -100..100");
    if (p->num_captions < 1 || p->num_captions > TSR_GEN_MAX_BEAMS ||
        (!p->do_sample && p->beams > 1 && p->num_captions > p->beams / groups) ||
        (!p->do_sample && p->beams == 1 && p->num_captions > 1))
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "%d captions per image: 1 to %d, and at most the %d beams of a "
                             "group without sampling",
                             p->num_captions, TSR_GEN_MAX_BEAMS, p->beams / groups);
    if (p->do_sample && (p->beams > 1 || !(p->temperature >= 0.01f) || !(p->temperature <= 100) ||
                         p->top_k < 0 || !(p->top_p > 0 && p->top_p <= 1)))
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "sampling takes beams 1, a temperature 0.01..100, top_k >= 0 and "
                             "top_p in (0, 1]");
    return TSR_OK;
}

/* The start token and the prompt's tokens (without its end token); total:
 * the length limit (open_clip's seq_len). */
static tsr_status prompt_ids(const clip_model *c, const tsr_caption_params *p, int *ids, int *n,
                             int *total, tsr_error *err)
{
    int limit = c->dec.n_ctx + 1; /* ids holds limit + 1 */
    ids[0] = tsr_tokenizer_bos(c->tok);
    *n = 1;
    if (p->prompt) {
        int got = 0, cut = 0;
        tsr_status rc = tsr_tokenizer_encode(c->tok, p->prompt, limit + 1, ids, &got, &cut, err);
        if (rc != TSR_OK)
            return tsr_error_prefix(err, "prompt"), rc;
        *n = cut ? limit + 1 : got - 1; /* the end token dropped */
        for (int j = 1; j < *n && j < limit + 1; j++)
            if (ids[j] == 0)
                return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                                     "prompt: token 0 at position %d, which open_clip's CoCa "
                                     "masks as padding; tessera does not reproduce that mask "
                                     "(rewrite the prompt without \"!\" inside a run of "
                                     "punctuation)", j);
    }
    *total = p->max_new_tokens > 0 ? *n + p->max_new_tokens
             : p->max_length > 0  ? p->max_length
                                  : tsr_coca_default_params(c).max_length;
    if (*n >= *total)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "the prompt has %d tokens (the start token included): a max_length "
                             "of %d leaves no room for a caption",
                             *n, *total);
    if (*total > limit)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "the prompt's %d tokens and %d new ones need %d positions; the model "
                             "has %d (at most %d new tokens here)",
                             *n, *total - *n, *total - 1, limit - 1, limit - *n);
    if (p->min_length >= *total)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "min_length %d must be below the length limit %d (open_clip asserts "
                             "seq_len > min_seq_len)",
                             p->min_length, *total);
    return TSR_OK;
}

/* The session planned for `images` images with `rows` decoder rows each,
 * over `cap` positions. */
static tsr_status coca_ready(tsr_session *s, int images, int rows, int cap, tsr_error *err)
{
    clip_session *cs = tsr_session_data(s, sizeof *cs, err);
    if (!cs)
        return err->code;
    if (cs->plan_cap_img >= images && cs->plan_cap_rows == rows && cs->plan_cap_len >= cap)
        return TSR_OK;
    /* more images only for the same rows per image: a batch of many greedy
     * images must not become as many images of many beams */
    cs->want_cap_img = images > cs->plan_cap_img || cs->plan_cap_rows != rows
                           ? images : cs->plan_cap_img;
    cs->want_cap_rows = rows;
    cs->want_cap_len = cap > cs->plan_cap_len ? cap : cs->plan_cap_len;
    tsr_status rc = tsr_clip_replan(s, err);
    if (rc == TSR_OK) {
        cs->plan_cap_img = cs->want_cap_img;
        cs->plan_cap_rows = cs->want_cap_rows;
        cs->plan_cap_len = cs->want_cap_len;
    }
    return rc;
}

/* The image tower, the pooler's rows 1.. as the image tokens, and every
 * cross-attention block's keys and values. */
static tsr_status encode(tsr_session *s, const float *px, int N, tsr_error *err)
{
    clip_model *c = CLIP(s->m);
    clip_session *cs = s->data;
    int Q = c->vit.pool_queries, T = Q - 1;
    int *idx = malloc(sizeof(int) * (size_t)N * T);
    if (!idx)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    for (int i = 0; i < N; i++)
        for (int k = 0; k < T; k++)
            idx[(size_t)i * T + k] = i * Q + 1 + k;
    tsr_status rc = tsr_vit_forward(s->q, &c->vit, &c->vit_w, &cs->vit, &s->scratch, px, N, 0,
                                    NULL, err);
    TSR_TRY(rc, tsr_buf_write(s->q, cs->cap_idx, idx, sizeof(int) * (size_t)N * T, err));
    TSR_TRY(rc, tsr_k_gather_rows(s->q, cs->cap_tokens, cs->vit.post.x, cs->cap_idx, N * T,
                                  c->proj_dim, err));
    TSR_TRY(rc, tsr_decoder_cross_n(s->q, &cs->cap_dcfg, &c->dec_w, &cs->cap_dec, cs->cap_tokens,
                                    N, err));
    TSR_TRY(rc, tsr_queue_finish(s->q, err));
    free(idx);
    return rc;
}

typedef struct {
    tsr_session *s;
    clip_model *c;
    clip_session *cs;
} gen_ctx;

static tsr_status step_hook(void *user, const int *tokens, int B, int pos, float *logits,
                            tsr_error *err)
{
    gen_ctx *g = user;
    return tsr_decoder_step(g->s->q, &g->cs->cap_dcfg, &g->c->dec_w, &g->cs->cap_dec,
                            &g->s->scratch, tokens, B, 1, pos, logits, err);
}

static tsr_status reorder_hook(void *user, const int *src, int B, int len, tsr_error *err)
{
    gen_ctx *g = user;
    return tsr_decoder_reorder(g->s->q, &g->cs->cap_dcfg, &g->cs->cap_dec, src, B, len, err);
}

/* A caption: the start token, the prompt, the tokens, the end token when it ended. */
static tsr_status make_caption(const clip_model *c, const int *prompt, int np, const int *toks,
                               int n, float score, int finished, tsr_caption *out,
                               tsr_error *err)
{
    out->n_ids = np + n + (finished ? 1 : 0);
    out->ids = malloc(sizeof(int) * (size_t)out->n_ids);
    if (!out->ids)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    memcpy(out->ids, prompt, sizeof(int) * (size_t)np);
    memcpy(out->ids + np, toks, sizeof(int) * (size_t)n);
    if (finished)
        out->ids[out->n_ids - 1] = tsr_tokenizer_eos(c->tok);
    out->score = score;
    out->finished = finished;
    out->n_prompt = np;
    /* open_clip.decode up to the end token, as the model card's
     * .split("<end_of_text>")[0].replace("<start_of_text>", "").strip() */
    tsr_status rc = tsr_tokenizer_decode(c->tok, out->ids, np + n, &out->text, err);
    if (rc == TSR_OK) {
        char *t = out->text, *w = t;
        const char *sot = "<start_of_text>";
        size_t sl = strlen(sot);
        for (const char *r = t; *r;) { /* every start token's text goes */
            if (strncmp(r, sot, sl) == 0)
                r += sl;
            else
                *w++ = *r++;
        }
        *w = 0;
        tsr_text_strip(t);
    }
    return rc;
}

static tsr_status caption_batch(tsr_session *s, const tsr_caption_params *p, const int *prompt,
                                int np, int total, int N, tsr_caption *out, tsr_error *err)
{
    clip_model *c = CLIP(s->m);
    clip_session *cs = s->data;
    int R = cs->plan_cap_rows, K = p->num_captions, rows = N * R;
    int groups = p->beam_groups > 0 ? p->beam_groups : 1;
    tsr_status rc = TSR_OK;
    if (np > 1) { /* the prompt before its last token, into every row */
        int *ids = malloc(sizeof(int) * (size_t)rows * (np - 1));
        if (!ids)
            return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
        for (int r = 0; r < rows; r++)
            memcpy(ids + (size_t)r * (np - 1), prompt, sizeof(int) * (size_t)(np - 1));
        rc = tsr_decoder_step(s->q, &cs->cap_dcfg, &c->dec_w, &cs->cap_dec, &s->scratch, ids,
                              rows, np - 1, 0, NULL, err);
        free(ids);
    }
    tsr_gen_params gp =
        tsr_gen_from_caption(p, c->vocab, tsr_tokenizer_eos(c->tok), prompt, np, total);
    gp.openclip = p->beams > 1 ? 2 : 1; /* a group of one beam is still beam search */
    gp.pad = 0;                         /* CoCa's pad_id */
    gp.beams = p->beams > 1 ? p->beams / groups : 1;
    gen_ctx g = {s, c, cs};
    tsr_gen_hooks hooks = {step_hook, reorder_hook, NULL, NULL, &g};
    tsr_gen_result *r = calloc((size_t)N, sizeof *r);
    if (!r)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    TSR_TRY(rc, tsr_generate_batch(&gp, N, &hooks, r, err));
    for (int i = 0; i < N && rc == TSR_OK; i++)
        for (int k = 0; k < K && rc == TSR_OK; k++) {
            tsr_gen_hyp h = tsr_gen_result_hyp(&r[i], k);
            rc = make_caption(c, prompt, np, h.tokens, h.n, h.score, h.finished,
                              &out[(size_t)i * K + k], err);
        }
    for (int i = 0; i < N; i++)
        tsr_gen_result_free(&r[i]);
    free(r);
    return rc;
}

tsr_status tsr_coca_caption(tsr_session *s, int n, const tsr_caption_params *p,
                            tsr_caption *out, const float *pixels, const tsr_image *const *images,
                            tsr_error *err)
{
    clip_model *c = CLIP(s->m);
    tsr_caption_params def;
    if (!p) {
        def = tsr_coca_default_params(c);
        p = &def;
    }
    int K = p->num_captions > 0 ? p->num_captions : 1;
    for (int i = 0; i < n * K; i++)
        memset(&out[i], 0, sizeof out[i]);
    tsr_status rc = check_params(c, p, err);
    if (rc != TSR_OK)
        return rc;
    int *prompt = malloc(sizeof(int) * ((size_t)c->dec.n_ctx + 3));
    int np = 0, total = 0;
    if (!prompt)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    rc = prompt_ids(c, p, prompt, &np, &total, err);
    int groups = p->beam_groups > 0 ? p->beam_groups : 1;
    int R = p->beams > 1 ? p->beams / groups : p->do_sample ? K : 1;
    int G = s->p.image_batch > 0 ? s->p.image_batch : 16;
    if (G * R > 64)
        G = 64 / R > 0 ? 64 / R : 1;
    if (G > n)
        G = n > 0 ? n : 1;
    int cap = total - 1; /* the last token is never fed */
    TSR_TRY(rc, coca_ready(s, G, R, cap < 1 ? 1 : cap, err));
    clip_session *cs = s->data;
    size_t per = (size_t)c->vit.channels * c->vit.image_size * c->vit.image_size;
    for (int i = 0; i < n && rc == TSR_OK; i += G) {
        int N = n - i < G ? n - i : G;
        const float *px = pixels ? pixels + per * i : cs->cap_px;
        for (int k = 0; !pixels && k < N && rc == TSR_OK; k++) {
            rc = images[i + k] ? tsr_image_preprocess(images[i + k], &c->pp, cs->cap_px + per * k,
                                                      err)
                               : tsr_error_set(err, TSR_ERR_INVALID_ARG, "image %d is NULL",
                                               i + k + 1);
            if (rc != TSR_OK && images[i + k])
                tsr_error_prefix(err, "image %d", i + k + 1);
        }
        TSR_TRY(rc, encode(s, px, N, err));
        TSR_TRY(rc, caption_batch(s, p, prompt, np, total, N, &out[(size_t)i * K], err));
    }
    if (rc != TSR_OK)
        for (int i = 0; i < n * K; i++)
            tsr_caption_free(&out[i]);
    free(prompt);
    return rc;
}

/* Lower level, for tests: one image encoded, then the logits of n
 * teacher-forced ids (ids[0]: the start token) through the KV cache. */
tsr_status tsr_coca_encode(tsr_session *s, const float *pixels, tsr_error *err)
{
    clip_model *c = CLIP(s->m);
    tsr_status rc = coca_ready(s, 1, 1, c->dec.n_ctx, err);
    clip_session *cs = s->data;
    if (rc == TSR_OK && cs->plan_cap_rows != 1)
        rc = tsr_error_set(err, TSR_ERR_INVALID_ARG, "the session is planned for beams");
    TSR_TRY(rc, encode(s, pixels, 1, err));
    return rc;
}

tsr_status tsr_coca_logits(tsr_session *s, const int *ids, int n, float *logits, tsr_error *err)
{
    clip_model *c = CLIP(s->m);
    clip_session *cs = s->data;
    if (!cs || cs->plan_cap_img < 1)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "no image has been encoded");
    if (n < 1 || n > cs->plan_cap_len)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "%d tokens: 1 to %d fit", n,
                             cs->plan_cap_len);
    tsr_status rc = TSR_OK;
    for (int i = 0; i < n && rc == TSR_OK; i++)
        rc = tsr_decoder_step(s->q, &cs->cap_dcfg, &c->dec_w, &cs->cap_dec, &s->scratch, ids + i,
                              1, 1, i, logits + (size_t)i * c->vocab, err);
    return rc;
}
