/* BLIP captioning (HF BlipForConditionalGeneration): the config, the
 * tensor-name table, the ViT (every token out, post-layernorm) and the BERT
 * text decoder (post-LN, causal self-attention, cross-attention to the
 * image, the prediction head), and captions with the generation module in
 * transformers' semantics. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsr_cfg.h"
#include "tsr_clip.h"
#include "tsr_generate.h"
#include "tsr_model.h"
#include "tsr_st.h"
#include "tsr_vit.h"
#include "tsr_wtable.h"

typedef struct {
    tsr_vit_cfg vit;
    tsr_vit_w vit_w;
    tsr_decoder_cfg dec;
    tsr_decoder_w dec_w;
    tsr_enc_weights *vlayers;
    tsr_dec_weights *dlayers;
    tsr_wordpiece *tok;
    int clean_up;            /* tokenizer_config.json's clean_up_tokenization_spaces */
    tsr_preprocess_cfg pp;
    int bos, sep, pad;       /* text_config: [DEC], the end token ([SEP]), [PAD] */
    tsr_caption_params gen;  /* text_config's generation settings */
    int max_length;          /* text_config's max_length (20) */
} blip_model;

typedef struct {
    int want_images, want_rows, want_cap; /* asked for */
    int plan_images, plan_rows, plan_cap; /* what the arena holds: images per batch, decoder
                                           * rows per image (beams or samples), positions */
    tsr_decoder_cfg dcfg;     /* the model's decoder with n_ctx = plan_cap */
    tsr_vit_io vit;
    tsr_decoder_io dec;
    float *px;                /* one preprocessed image */
    int encoded;              /* cross-attention keys and values are set */
} blip_session;

#define BLIP(m) ((blip_model *)(m)->data)

/* ---- configuration ---- */

/* text_config's generation settings (what the text decoder's
 * GenerationConfig takes from it), with transformers' defaults. */
static void read_generation(blip_model *b, tsr_cfg_reader *r, const cJSON *tc)
{
    tsr_caption_params *g = &b->gen;
    b->max_length = tsr_cfg_int(r, "max_length", 20, 1, 1 << 16);
    g->max_length = 0; /* resolved per prompt: see total_length */
    g->min_length = tsr_cfg_int(r, "min_length", 0, 0, 1 << 16);
    g->beams = tsr_cfg_int(r, "num_beams", 1, 1, TSR_GEN_MAX_BEAMS);
    g->no_repeat_ngram = tsr_cfg_int(r, "no_repeat_ngram_size", 0, 0, 1 << 16);
    g->length_penalty = 1.0f;
    g->repetition_penalty = 1.0f;
    g->temperature = 1.0f;
    g->top_k = tsr_cfg_int(r, "top_k", 50, 0, 1 << 22);
    g->top_p = 1.0f;
    g->num_captions = tsr_cfg_int(r, "num_return_sequences", 1, 1, TSR_GEN_MAX_BEAMS);
    g->do_sample = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(tc, "do_sample"));
    const cJSON *tt = cJSON_GetObjectItemCaseSensitive(tc, "temperature");
    if (cJSON_IsNumber(tt) && tt->valuedouble > 0)
        g->temperature = (float)tt->valuedouble;
    const cJSON *tp = cJSON_GetObjectItemCaseSensitive(tc, "top_p");
    if (cJSON_IsNumber(tp) && tp->valuedouble > 0 && tp->valuedouble <= 1)
        g->top_p = (float)tp->valuedouble;
    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(tc, "length_penalty");
    if (cJSON_IsNumber(lp))
        g->length_penalty = (float)lp->valuedouble;
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(tc, "repetition_penalty");
    if (cJSON_IsNumber(rp) && rp->valuedouble > 0)
        g->repetition_penalty = (float)rp->valuedouble;
    const cJSON *es = cJSON_GetObjectItemCaseSensitive(tc, "early_stopping");
    g->early_stopping = cJSON_IsTrue(es) ? 1
                        : cJSON_IsString(es) && strcmp(es->valuestring, "never") == 0 ? 2
                                                                                       : 0;
}

/* Defaults are transformers' BlipTextConfig / BlipVisionConfig defaults,
 * since save_pretrained omits values equal to them. */
static tsr_status parse_config(tsr_model *m, const tsr_source *src, tsr_error *err)
{
    blip_model *b = BLIP(m);
    char path[4200];
    tsr_src_path(src, "config.json", path, sizeof path);
    cJSON *root = tsr_src_json(src, "config.json", 1 << 20, err);
    if (!root)
        return err->code;
    const cJSON *arch = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    const cJSON *a0 = cJSON_GetArrayItem(arch, 0);
    if (cJSON_IsString(a0) && strcmp(a0->valuestring, "BlipForConditionalGeneration") != 0) {
        tsr_status rc = tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                                      "%s: %s is not supported; tessera captions with "
                                      "BlipForConditionalGeneration checkpoints",
                                      path, a0->valuestring);
        cJSON_Delete(root);
        return rc;
    }
    tsr_cfg_reader r = {cJSON_GetObjectItemCaseSensitive(root, "text_config"), path,
                        "text_config", err, 0};
    const cJSON *tc = r.obj;
    int vocab = tsr_cfg_int(&r, "vocab_size", 30524, 1, 1 << 22);
    int td = tsr_cfg_int(&r, "hidden_size", 768, 1, 16384);
    int xd = tsr_cfg_int(&r, "encoder_hidden_size", 768, 1, 16384);
    int tf = tsr_cfg_int(&r, "intermediate_size", 3072, 1, 65536);
    int th = tsr_cfg_int(&r, "num_attention_heads", 8, 1, 1024);
    int tl = tsr_cfg_int(&r, "num_hidden_layers", 12, 0, 256);
    int npos = tsr_cfg_int(&r, "max_position_embeddings", 512, 2, 1 << 16);
    float teps = tsr_cfg_float(&r, "layer_norm_eps", 1e-12f);
    tsr_act tact = tsr_cfg_act(&r, "gelu");
    b->bos = tsr_cfg_int(&r, "bos_token_id", 30522, 0, 1 << 22);
    b->sep = tsr_cfg_int(&r, "sep_token_id", 102, 0, 1 << 22);
    b->pad = tsr_cfg_int(&r, "pad_token_id", 0, 0, 1 << 22);
    read_generation(b, &r, tc);
    const cJSON *pet = cJSON_GetObjectItemCaseSensitive(tc, "position_embedding_type");
    int absolute = !pet || (cJSON_IsString(pet) && strcmp(pet->valuestring, "absolute") == 0);
    r.obj = cJSON_GetObjectItemCaseSensitive(root, "vision_config");
    r.section = "vision_config";
    int vd = tsr_cfg_int(&r, "hidden_size", 768, 1, 16384);
    int vf = tsr_cfg_int(&r, "intermediate_size", 3072, 1, 65536);
    int vh = tsr_cfg_int(&r, "num_attention_heads", 12, 1, 1024);
    int vl = tsr_cfg_int(&r, "num_hidden_layers", 12, 0, 256);
    int image = tsr_cfg_int(&r, "image_size", 384, 1, 4096);
    int patch = tsr_cfg_int(&r, "patch_size", 16, 1, 4096);
    float veps = tsr_cfg_float(&r, "layer_norm_eps", 1e-5f);
    tsr_act vact = tsr_cfg_act(&r, "gelu");
    cJSON_Delete(root);
    if (r.bad)
        return err->code;
    if (!absolute)
        return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                             "%s: text_config.position_embedding_type must be \"absolute\"", path);
    if (patch > image)
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: patch_size %d exceeds image_size %d", path,
                             patch, image);
    if (xd != vd)
        return tsr_error_set(err, TSR_ERR_FORMAT,
                             "%s: text_config.encoder_hidden_size %d is not the vision width %d",
                             path, xd, vd);
    if (b->bos >= vocab || b->sep >= vocab || b->pad >= vocab)
        return tsr_error_set(err, TSR_ERR_FORMAT,
                             "%s: bos, sep or pad token id outside the vocabulary of %d", path,
                             vocab);
    b->vit = (tsr_vit_cfg){image, patch, 3, 1,
                           {{vd, vh, vf, veps, vact, 0, 0}, vl, 0, TSR_LN_ALL, 0, 0, 0}};
    b->dec = (tsr_decoder_cfg){{td, th, tf, teps, tact, 1, xd}, tl, vocab, npos, 0, 1, tact};
    tsr_status rc = tsr_enc_cfg_check(&b->vit.enc.layer, path, err);
    tsr_enc_cfg dl = tsr_dec_enc_cfg(&b->dec.layer);
    TSR_TRY(rc, tsr_enc_cfg_check(&dl, path, err));
    return rc;
}

/* ---- the HF BlipForConditionalGeneration tensor table ---- */

enum { OBJ_VIT, OBJ_VIT_L, OBJ_DEC, OBJ_DEC_L };
enum { ONE = 1, VD, VD3, VF, VC, VP, VNP1, TD, TF, TV, TPOS };

static int64_t blip_dim(const void *cfg, int code)
{
    const blip_model *b = cfg;
    switch (code) {
    case ONE: return 1;
    case VD: return b->vit.enc.layer.dim;
    case VD3: return 3 * (int64_t)b->vit.enc.layer.dim;
    case VF: return b->vit.enc.layer.ffn;
    case VC: return b->vit.channels;
    case VP: return b->vit.patch;
    case VNP1: return tsr_vit_seq_len(&b->vit);
    case TD: return b->dec.layer.dim;
    case TF: return b->dec.layer.ffn;
    case TV: return b->dec.vocab;
    case TPOS: return b->dec.n_ctx;
    }
    return -1;
}

#define LIN TSR_W_LINEAR
#define VW(f) offsetof(tsr_vit_w, f)
#define EL(f) offsetof(tsr_enc_weights, f)
#define DW(f) offsetof(tsr_decoder_w, f)
#define DL(f) offsetof(tsr_dec_weights, f)
#define VL "vision_model.encoder.layers.%d."
#define TL "text_decoder.bert.encoder.layer.%d."
/* a BERT attention block (self or cross) of the text decoder */
#define ATT(pfx, q_w, q_b, k_w, k_b, kparts, o_w, o_b, ln_g, ln_b, KD)                        \
    {TL pfx ".self.query.weight", NULL, OBJ_DEC_L, DL(q_w), 0, kparts == 3 ? 3 : 0, {TD, TD}, LIN}, \
    {TL pfx ".self.key.weight", NULL, OBJ_DEC_L, DL(k_w), kparts - 2, kparts, {TD, KD}, LIN},  \
    {TL pfx ".self.value.weight", NULL, OBJ_DEC_L, DL(k_w), kparts - 1, kparts, {TD, KD}, LIN}, \
    {TL pfx ".self.query.bias", NULL, OBJ_DEC_L, DL(q_b), 0, kparts == 3 ? 3 : 0, {TD}, 0},    \
    {TL pfx ".self.key.bias", NULL, OBJ_DEC_L, DL(k_b), kparts - 2, kparts, {TD}, 0},          \
    {TL pfx ".self.value.bias", NULL, OBJ_DEC_L, DL(k_b), kparts - 1, kparts, {TD}, 0},        \
    {TL pfx ".output.dense.weight", NULL, OBJ_DEC_L, DL(o_w), 0, 0, {TD, TD}, LIN},            \
    {TL pfx ".output.dense.bias", NULL, OBJ_DEC_L, DL(o_b), 0, 0, {TD}, 0},                    \
    {TL pfx ".output.LayerNorm.weight", NULL, OBJ_DEC_L, DL(ln_g), 0, 0, {TD}, 0},             \
    {TL pfx ".output.LayerNorm.bias", NULL, OBJ_DEC_L, DL(ln_b), 0, 0, {TD}, 0}

static const tsr_wrow blip_table[] = {
    {"vision_model.embeddings.class_embedding", NULL, OBJ_VIT, VW(cls), 0, 0, {ONE, ONE, VD}, 0},
    {"vision_model.embeddings.patch_embedding.weight", NULL, OBJ_VIT, VW(patch_w), 0, 0, {VD, VC, VP, VP}, LIN},
    {"vision_model.embeddings.patch_embedding.bias", NULL, OBJ_VIT, VW(patch_b), 0, 0, {VD}, 0},
    {"vision_model.embeddings.position_embedding", NULL, OBJ_VIT, VW(pos), 0, 0, {ONE, VNP1, VD}, 0},
    {VL "self_attn.qkv.weight", NULL, OBJ_VIT_L, EL(qkv_w), 0, 0, {VD3, VD}, LIN},
    {VL "self_attn.qkv.bias", NULL, OBJ_VIT_L, EL(qkv_b), 0, 0, {VD3}, 0},
    {VL "self_attn.projection.weight", NULL, OBJ_VIT_L, EL(o_w), 0, 0, {VD, VD}, LIN},
    {VL "self_attn.projection.bias", NULL, OBJ_VIT_L, EL(o_b), 0, 0, {VD}, 0},
    {VL "layer_norm1.weight", NULL, OBJ_VIT_L, EL(ln1_g), 0, 0, {VD}, 0},
    {VL "layer_norm1.bias", NULL, OBJ_VIT_L, EL(ln1_b), 0, 0, {VD}, 0},
    {VL "layer_norm2.weight", NULL, OBJ_VIT_L, EL(ln2_g), 0, 0, {VD}, 0},
    {VL "layer_norm2.bias", NULL, OBJ_VIT_L, EL(ln2_b), 0, 0, {VD}, 0},
    {VL "mlp.fc1.weight", NULL, OBJ_VIT_L, EL(fc1_w), 0, 0, {VF, VD}, LIN},
    {VL "mlp.fc1.bias", NULL, OBJ_VIT_L, EL(fc1_b), 0, 0, {VF}, 0},
    {VL "mlp.fc2.weight", NULL, OBJ_VIT_L, EL(fc2_w), 0, 0, {VD, VF}, LIN},
    {VL "mlp.fc2.bias", NULL, OBJ_VIT_L, EL(fc2_b), 0, 0, {VD}, 0},
    {"vision_model.post_layernorm.weight", NULL, OBJ_VIT, VW(enc.fin_g), 0, 0, {VD}, 0},
    {"vision_model.post_layernorm.bias", NULL, OBJ_VIT, VW(enc.fin_b), 0, 0, {VD}, 0},
    {"text_decoder.bert.embeddings.word_embeddings.weight", NULL, OBJ_DEC, DW(tok), 0, 0, {TV, TD}, 0},
    {"text_decoder.bert.embeddings.position_embeddings.weight", NULL, OBJ_DEC, DW(pos), 0, 0, {TPOS, TD}, 0},
    {"text_decoder.bert.embeddings.LayerNorm.weight", NULL, OBJ_DEC, DW(emb_g), 0, 0, {TD}, 0},
    {"text_decoder.bert.embeddings.LayerNorm.bias", NULL, OBJ_DEC, DW(emb_b), 0, 0, {TD}, 0},
    /* self-attention: query, key, value stacked in qkv */
    ATT("attention", qkv_w, qkv_b, qkv_w, qkv_b, 3, o_w, o_b, ln1_g, ln1_b, TD),
    /* cross-attention: key and value of the image stacked in xkv */
    ATT("crossattention", xq_w, xq_b, xkv_w, xkv_b, 2, xo_w, xo_b, lnx_g, lnx_b, VD),
    {TL "intermediate.dense.weight", NULL, OBJ_DEC_L, DL(fc1_w), 0, 0, {TF, TD}, LIN},
    {TL "intermediate.dense.bias", NULL, OBJ_DEC_L, DL(fc1_b), 0, 0, {TF}, 0},
    {TL "output.dense.weight", NULL, OBJ_DEC_L, DL(fc2_w), 0, 0, {TD, TF}, LIN},
    {TL "output.dense.bias", NULL, OBJ_DEC_L, DL(fc2_b), 0, 0, {TD}, 0},
    {TL "output.LayerNorm.weight", NULL, OBJ_DEC_L, DL(ln2_g), 0, 0, {TD}, 0},
    {TL "output.LayerNorm.bias", NULL, OBJ_DEC_L, DL(ln2_b), 0, 0, {TD}, 0},
    {"text_decoder.cls.predictions.transform.dense.weight", NULL, OBJ_DEC, DW(head_w), 0, 0, {TD, TD}, LIN},
    {"text_decoder.cls.predictions.transform.dense.bias", NULL, OBJ_DEC, DW(head_b), 0, 0, {TD}, 0},
    {"text_decoder.cls.predictions.transform.LayerNorm.weight", NULL, OBJ_DEC, DW(head_g), 0, 0, {TD}, 0},
    {"text_decoder.cls.predictions.transform.LayerNorm.bias", NULL, OBJ_DEC, DW(head_bt), 0, 0, {TD}, 0},
    /* tied to the word embeddings, which save_pretrained then stores once */
    {"text_decoder.cls.predictions.decoder.weight", "text_decoder.bert.embeddings.word_embeddings.weight", OBJ_DEC, DW(proj), 0, 0, {TV, TD}, LIN},
    {"text_decoder.cls.predictions.bias", "text_decoder.cls.predictions.decoder.bias", OBJ_DEC, DW(proj_b), 0, 0, {TV}, 0},
};

static tsr_status load_weights(tsr_model *m, const tsr_st *st, uint64_t *rng, tsr_error *err)
{
    blip_model *b = BLIP(m);
    int vl = b->vit.enc.n_layers, tl = b->dec.n_layers;
    b->vlayers = calloc((size_t)vl + 1, sizeof *b->vlayers);
    b->dlayers = calloc((size_t)tl + 1, sizeof *b->dlayers);
    if (!b->vlayers || !b->dlayers)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    b->vit_w.enc.layers = b->vlayers;
    b->dec_w.layers = b->dlayers;
    tsr_wtable t = {blip_table,
                    (int)(sizeof blip_table / sizeof blip_table[0]),
                    {{&b->vit_w, 0, 1},
                     {b->vlayers, sizeof(tsr_enc_weights), vl},
                     {&b->dec_w, 0, 1},
                     {b->dlayers, sizeof(tsr_dec_weights), tl}},
                    "",
                    blip_dim,
                    b};
    return tsr_model_load_table(m, &t, st, rng, err);
}

static tsr_status load_tokenizer(tsr_model *m, const tsr_source *src, tsr_error *err)
{
    blip_model *b = BLIP(m);
    tsr_status rc = tsr_src_wordpiece(src, &b->tok, err);
    /* BertTokenizerFast's decode cleans up spaces only when asked */
    if (rc == TSR_OK && tsr_src_exists(src, "tokenizer_config.json")) {
        cJSON *tc = tsr_src_json(src, "tokenizer_config.json", 1 << 22, err);
        if (!tc)
            return err->code;
        b->clean_up = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(tc, "clean_up_tokenization_spaces"));
        cJSON_Delete(tc);
    }
    if (rc == TSR_OK && tsr_wordpiece_size(b->tok) > b->dec.vocab)
        rc = tsr_error_set(err, TSR_ERR_FORMAT,
                           "%s: the tokenizer has %d tokens but the model's vocab_size is %d",
                           m->name, tsr_wordpiece_size(b->tok), b->dec.vocab);
    return rc;
}

static int blip_detect(const tsr_source *src, const cJSON *config)
{
    return tsr_model_type_is(config, "blip");
}

static tsr_status blip_load(tsr_model *m, const tsr_source *src, tsr_error *err)
{
    if (!(m->data = calloc(1, sizeof(blip_model))))
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    tsr_st *st = NULL;
    tsr_status rc = parse_config(m, src, err);
    TSR_TRY(rc, load_tokenizer(m, src, err));
    TSR_TRY(rc, tsr_src_preprocess(src, BLIP(m)->vit.image_size, 1, &BLIP(m)->pp, err));
    TSR_TRY(rc, tsr_st_open_source(src, &st, err));
    TSR_TRY(rc, load_weights(m, st, NULL, err));
    tsr_st_close(st);
    return rc;
}

/* ---- full-size random models, for benchmarks ---- */

/* The configs of Salesforce/blip-image-captioning-base and -large. */
static const struct {
    const char *name;
    int v_dim, v_layers, v_heads;
} blip_archs[] = {{"blip-base", 768, 12, 12}, {"blip-large", 1024, 24, 16}};

tsr_status tsr_blip_create_random(tsr_ctx *ctx, const char *arch, tsr_model **out,
                                  tsr_error *err)
{
    int a = -1;
    for (int i = 0; i < 2; i++)
        if (strcmp(arch, blip_archs[i].name) == 0)
            a = i;
    if (a < 0)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "unknown architecture '%s' (known: blip-base, blip-large)", arch);
    char config[1024];
    snprintf(config, sizeof config,
             "{\"model_type\": \"blip\", \"architectures\": [\"BlipForConditionalGeneration\"],"
             " \"text_config\": {\"num_attention_heads\": 12, \"encoder_hidden_size\": %d},"
             " \"vision_config\": {\"hidden_size\": %d, \"intermediate_size\": %d,"
             " \"num_hidden_layers\": %d, \"num_attention_heads\": %d}}",
             blip_archs[a].v_dim, blip_archs[a].v_dim, 4 * blip_archs[a].v_dim,
             blip_archs[a].v_layers, blip_archs[a].v_heads);
    const char *pp = "{\"size\": {\"height\": 384, \"width\": 384}, \"do_center_crop\": false}";
    /* a WordPiece vocabulary of the real size: the specials, then placeholders */
    size_t cap = 30522 * 8 + 64, n = 0;
    char *vocab = malloc(cap);
    if (!vocab)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    n += (size_t)snprintf(vocab, cap, "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n");
    for (int i = 5; i < 30522; i++)
        n += (size_t)snprintf(vocab + n, cap - n, "t%d\n", i);
    tsr_file files[3] = {{"config.json", config, strlen(config)},
                         {"preprocessor_config.json", pp, strlen(pp)},
                         {"vocab.txt", vocab, n}};
    tsr_source src;
    tsr_source_memory(&src, files, 3);
    tsr_model *m = calloc(1, sizeof *m);
    tsr_status rc = m && (m->data = calloc(1, sizeof(blip_model)))
                        ? TSR_OK
                        : tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    if (m) {
        m->ctx = tsr_ctx_retain(ctx);
        m->fam = &tsr_family_blip;
        tsr_arena_init(&m->weights, ctx);
        snprintf(m->name, sizeof m->name, "(random %s)", arch);
        snprintf(m->fingerprint, sizeof m->fingerprint, "random-%s", arch);
    }
    uint64_t rng = 0x9E3779B97F4A7C15ULL;
    TSR_TRY(rc, parse_config(m, &src, err));
    TSR_TRY(rc, load_tokenizer(m, &src, err));
    TSR_TRY(rc, tsr_src_preprocess(&src, BLIP(m)->vit.image_size, 1, &BLIP(m)->pp, err));
    TSR_TRY(rc, load_weights(m, NULL, &rng, err));
    free(vocab);
    if (rc != TSR_OK) {
        tsr_model_free(m);
        return rc;
    }
    *out = m;
    return TSR_OK;
}

static void blip_free(tsr_model *m)
{
    blip_model *b = BLIP(m);
    tsr_wordpiece_free(b->tok);
    free(b->vlayers);
    free(b->dlayers);
    free(b);
    m->data = NULL;
}

static void blip_session_free(tsr_session *s)
{
    blip_session *bs = s->data;
    tsr_vit_io_free(&bs->vit);
    tsr_decoder_io_free(&bs->dec);
    free(bs->px);
}

const tsr_family tsr_family_blip = {"blip",  blip_detect, blip_load, blip_free,
                                    blip_session_free, NULL, NULL, NULL};

tsr_caption_params tsr_caption_default_params(const tsr_model *m)
{
    if (m && m->fam == &tsr_family_blip)
        return BLIP(m)->gen;
    if (m && m->fam == &tsr_family_clip && CLIP(m)->coca)
        return tsr_coca_default_params(CLIP(m));
    return (tsr_caption_params){.beams = 1, .length_penalty = 1.0f, .repetition_penalty = 1.0f,
                                .temperature = 1.0f, .top_k = 50, .top_p = 1.0f,
                                .num_captions = 1};
}

/* The total length as generate() settles it for a prompt of np tokens:
 * max_new_tokens + np; or max_length as given; or, with the config's value
 * left at transformers' default 20, 20 new tokens within the position table. */
static int total_length(const blip_model *b, const tsr_caption_params *p, int np)
{
    if (p->max_new_tokens > 0)
        return p->max_new_tokens + np;
    if (p->max_length > 0)
        return p->max_length;
    if (b->max_length != 20)
        return b->max_length;
    return 20 + np < b->dec.n_ctx ? 20 + np : b->dec.n_ctx;
}

/* ---- sessions ---- */

static tsr_status blip_plan(tsr_session *s, size_t scratch[TSR_SCRATCH_N], tsr_error *err)
{
    blip_model *b = BLIP(s->m);
    blip_session *bs = s->data;
    bs->plan_images = bs->plan_rows = bs->plan_cap = 0;
    bs->encoded = 0;
    int N = bs->want_images, R = bs->want_rows;
    float *px = realloc(bs->px, sizeof(float) * 3 * (size_t)N * b->vit.image_size *
                                    b->vit.image_size);
    if (!px)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    bs->px = px;
    bs->dcfg = b->dec;
    bs->dcfg.n_ctx = bs->want_cap;
    /* image i's R rows are decoder rows i*R .. i*R + R - 1, reading encoding i */
    tsr_status rc = tsr_vit_plan(s->q, &b->vit, N, &s->arena, &bs->vit, scratch, err);
    TSR_TRY(rc, tsr_decoder_plan(s->q, &bs->dcfg, N * R, bs->want_cap, N,
                                 tsr_vit_seq_len(&b->vit), &s->arena, &bs->dec, scratch, err));
    return rc;
}

/* The session planned for batches of at least `images` images with exactly
 * `rows` decoder rows each, over at least `cap` positions. */
static tsr_status blip_ready(tsr_session *s, int images, int rows, int cap, tsr_error *err)
{
    tsr_status rc = tsr_session_need(s, &tsr_family_blip, "write captions", err);
    blip_session *bs = rc == TSR_OK ? tsr_session_data(s, sizeof *bs, err) : NULL;
    if (!bs)
        return rc != TSR_OK ? rc : TSR_ERR_NOMEM;
    if (bs->plan_images >= images && bs->plan_rows == rows && bs->plan_cap >= cap)
        return TSR_OK;
    bs->want_images = images > bs->plan_images ? images : bs->plan_images;
    bs->want_rows = rows;
    bs->want_cap = cap > bs->plan_cap ? cap : bs->plan_cap;
    rc = tsr_session_plan(s, blip_plan, err);
    if (rc == TSR_OK) {
        bs->plan_images = bs->want_images;
        bs->plan_rows = bs->want_rows;
        bs->plan_cap = bs->want_cap;
    }
    return rc;
}

/* The image tower on N images' pixels, then every layer's cross-attention
 * keys and values of the N encodings. */
static tsr_status encode(tsr_session *s, const float *pixels, int N, float *embeds,
                         tsr_error *err)
{
    blip_model *b = BLIP(s->m);
    blip_session *bs = s->data;
    bs->encoded = 0;
    tsr_status rc = tsr_vit_forward(s->q, &b->vit, &b->vit_w, &bs->vit, &s->scratch, pixels, N, 0,
                                    NULL, err);
    if (embeds)
        TSR_TRY(rc, tsr_buf_read(s->q, bs->vit.enc.x, embeds,
                                 sizeof(float) * (size_t)N * tsr_vit_seq_len(&b->vit) *
                                     b->vit.enc.layer.dim,
                                 err));
    TSR_TRY(rc, tsr_decoder_cross_n(s->q, &bs->dcfg, &b->dec_w, &bs->dec, bs->vit.enc.x, N, err));
    TSR_TRY(rc, tsr_queue_finish(s->q, err)); /* the caller's pixels may go */
    bs->encoded = rc == TSR_OK;
    return rc;
}

static int is_coca(const tsr_session *s)
{
    return s->m->fam == &tsr_family_clip && CLIP(s->m)->coca;
}

tsr_status tsr_session_caption_encode(tsr_session *s, const float *pixels, float *embeds,
                                      tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    if (is_coca(s))
        return tsr_session_fail(s, embeds ? tsr_error_set(err, TSR_ERR_INVALID_ARG,
                                                          "CoCa: no image tokens out here")
                                          : tsr_coca_encode(s, pixels, err),
                                err);
    tsr_status rc = tsr_session_need(s, &tsr_family_blip, "write captions", err);
    blip_session *bs = rc == TSR_OK ? tsr_session_data(s, sizeof *bs, err) : NULL;
    if (rc == TSR_OK && !bs)
        rc = err->code;
    /* any prefix fits; the rows per image as planned already */
    TSR_TRY(rc, blip_ready(s, 1, bs->plan_rows > 0 ? bs->plan_rows : 1, BLIP(s->m)->dec.n_ctx,
                           err));
    TSR_TRY(rc, encode(s, pixels, 1, embeds, err));
    return tsr_session_fail(s, rc, err);
}

tsr_status tsr_session_caption_logits(tsr_session *s, const int *ids, int n, float *logits,
                                      tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    if (is_coca(s))
        return tsr_session_fail(s, tsr_coca_logits(s, ids, n, logits, err), err);
    tsr_status rc = tsr_session_need(s, &tsr_family_blip, "write captions", err);
    blip_session *bs = rc == TSR_OK ? s->data : NULL;
    if (rc == TSR_OK && (!bs || !bs->encoded))
        rc = tsr_error_set(err, TSR_ERR_INVALID_ARG, "no image has been encoded");
    if (rc == TSR_OK && (n < 1 || n > bs->plan_cap))
        rc = tsr_error_set(err, TSR_ERR_INVALID_ARG, "%d tokens: 1 to %d fit", n, bs->plan_cap);
    int V = BLIP(s->m)->dec.vocab, R = bs ? bs->plan_rows : 1;
    /* image 0's rows run together (they share its encoding); row 0 is read */
    int *tok = rc == TSR_OK ? malloc(sizeof(int) * (size_t)R) : NULL;
    float *lg = rc == TSR_OK ? malloc(sizeof(float) * (size_t)R * V) : NULL;
    if (rc == TSR_OK && (!tok || !lg))
        rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    for (int i = 0; i < n && rc == TSR_OK; i++) {
        for (int r = 0; r < R; r++)
            tok[r] = ids[i];
        rc = tsr_decoder_step(s->q, &bs->dcfg, &BLIP(s->m)->dec_w, &bs->dec, &s->scratch, tok, R,
                              1, i, lg, err);
        if (rc == TSR_OK)
            memcpy(logits + (size_t)i * V, lg, sizeof(float) * (size_t)V);
    }
    free(tok);
    free(lg);
    return tsr_session_fail(s, rc, err);
}

/* ---- captions ---- */

typedef struct {
    tsr_session *s;
    blip_model *b;
    blip_session *bs;
} gen_ctx;

static tsr_status step_hook(void *user, const int *tokens, int B, int pos, float *logits,
                            tsr_error *err)
{
    gen_ctx *g = user;
    return tsr_decoder_step(g->s->q, &g->bs->dcfg, &g->b->dec_w, &g->bs->dec, &g->s->scratch,
                            tokens, B, 1, pos, logits, err);
}

static tsr_status reorder_hook(void *user, const int *src, int B, int len, tsr_error *err)
{
    gen_ctx *g = user;
    return tsr_decoder_reorder(g->s->q, &g->bs->dcfg, &g->bs->dec, src, B, len, err);
}

static tsr_status check_params(const tsr_model *m, const tsr_caption_params *p, tsr_error *err)
{
    int npos = BLIP(m)->dec.n_ctx;
    if (p->max_length < 0 || p->max_length > npos + 1)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "max_length %d outside 2..%d (the model has %d positions)",
                             p->max_length, npos + 1, npos);
    if (p->max_new_tokens < 0 || p->max_new_tokens > npos)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "max_new_tokens %d outside 1..%d (the model has %d positions)",
                             p->max_new_tokens, npos, npos);
    if (p->beams < 1 || p->beams > TSR_GEN_MAX_BEAMS)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "beams %d outside 1..%d", p->beams,
                             TSR_GEN_MAX_BEAMS);
    /* bounds that keep every score finite */
    if (p->min_length < 0 || p->no_repeat_ngram < 0 || !(p->repetition_penalty >= 0.01f) ||
        !(p->repetition_penalty <= 100) || !(p->length_penalty >= -100) ||
        !(p->length_penalty <= 100) || p->early_stopping < 0 || p->early_stopping > 2)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "min_length and no_repeat_ngram must be >= 0, repetition_penalty "
                             "0.01..100, length_penalty -100..100, early_stopping 0, 1 or 2");
    if (p->num_captions < 1 || p->num_captions > TSR_GEN_MAX_BEAMS ||
        (!p->do_sample && p->num_captions > p->beams))
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "%d captions per image: 1 to %d, and at most the %d beams without "
                             "sampling", p->num_captions, TSR_GEN_MAX_BEAMS, p->beams);
    if (p->do_sample && (p->beams > 1 || !(p->temperature >= 0.01f) || !(p->temperature <= 100) ||
                         p->top_k < 0 || !(p->top_p > 0 && p->top_p <= 1)))
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "sampling takes beams 1, a temperature 0.01..100, top_k >= 0 and "
                             "top_p in (0, 1]");
    return TSR_OK;
}

/* The prompt as BLIP's generate feeds it: [DEC] and the prompt's pieces
 * ([CLS] replaced, [SEP] dropped). */
static tsr_status prompt_ids(const blip_model *b, const tsr_caption_params *p, int *ids, int *n,
                             int *total, tsr_error *err)
{
    int cap = b->dec.n_ctx; /* ids holds cap + 1 */
    ids[0] = b->bos;
    *n = 1;
    if (p->prompt) {
        int got = 0, cut = 0;
        tsr_status rc = tsr_wordpiece_encode(b->tok, p->prompt, cap + 1, ids, &got, &cut, err);
        if (rc != TSR_OK)
            return tsr_error_prefix(err, "prompt"), rc;
        ids[0] = b->bos;
        *n = cut ? cap + 1 : got - 1;
    }
    *total = total_length(b, p, *n);
    if (*n > cap)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "the prompt has more than %d tokens, the model's positions", cap);
    if (*n >= *total)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "the prompt has %d tokens ([DEC] included): a max_length of %d "
                             "leaves no room for a caption", *n, *total);
    if (*total > cap + 1)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "the prompt's %d tokens and %d new ones need %d positions; the "
                             "model has %d (at most %d new tokens here)",
                             *n, *total - *n, *total - 1, cap, cap + 1 - *n);
    return TSR_OK;
}

/* One caption of the encoded image. */
/* A caption from one hypothesis: [DEC], the prompt, its tokens, [SEP] when it ended. */
static tsr_status make_caption(const blip_model *b, const int *prompt, int np, const int *toks,
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
        out->ids[out->n_ids - 1] = b->sep;
    out->score = score;
    out->finished = finished;
    out->n_prompt = np;
    return tsr_wordpiece_decode(b->tok, out->ids, out->n_ids, 1, b->clean_up, &out->text, err);
}

/* The captions (p->num_captions each) of the N encoded images into out. */
static tsr_status caption_batch(tsr_session *s, const tsr_caption_params *p, const int *prompt,
                                int np, int total, int N, tsr_caption *out, tsr_error *err)
{
    blip_model *b = BLIP(s->m);
    blip_session *bs = s->data;
    int R = bs->plan_rows, K = p->num_captions, rows = N * R;
    tsr_status rc = TSR_OK;
    if (np > 1) { /* the prompt before its last token, into every row */
        int *ids = malloc(sizeof(int) * (size_t)rows * (np - 1));
        if (!ids)
            return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
        for (int r = 0; r < rows; r++)
            memcpy(ids + (size_t)r * (np - 1), prompt, sizeof(int) * (size_t)(np - 1));
        rc = tsr_decoder_step(s->q, &bs->dcfg, &b->dec_w, &bs->dec, &s->scratch, ids, rows,
                              np - 1, 0, NULL, err);
        free(ids);
    }
    tsr_gen_params gp = tsr_gen_from_caption(p, b->dec.vocab, b->sep, prompt, np, total);
    gp.early_stopping = p->early_stopping;
    gen_ctx g = {s, b, bs};
    tsr_gen_hooks hooks = {step_hook, reorder_hook, NULL, NULL, &g};
    tsr_gen_result *r = calloc((size_t)N, sizeof *r);
    if (!r)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    TSR_TRY(rc, tsr_generate_batch(&gp, N, &hooks, r, err));
    for (int i = 0; i < N && rc == TSR_OK; i++)
        for (int k = 0; k < K && rc == TSR_OK; k++) {
            tsr_gen_hyp h = tsr_gen_result_hyp(&r[i], k);
            rc = make_caption(b, prompt, np, h.tokens, h.n, h.score, h.finished,
                              &out[(size_t)i * K + k], err);
        }
    for (int i = 0; i < N; i++)
        tsr_gen_result_free(&r[i]);
    free(r);
    return rc;
}

void tsr_caption_free(tsr_caption *c)
{
    if (!c)
        return;
    free(c->text);
    free(c->ids);
    memset(c, 0, sizeof *c);
}

/* The pixels of images [i, i + N): the caller's as they are, or staged. */
typedef tsr_status (*pixels_fn)(const void *src, int i, int N, const blip_model *b, float *stage,
                                const float **px, tsr_error *err);

static tsr_status from_pixels(const void *src, int i, int N, const blip_model *b, float *stage,
                              const float **px, tsr_error *err)
{
    *px = (const float *)src + (size_t)i * 3 * b->vit.image_size * b->vit.image_size;
    return TSR_OK;
}

static tsr_status from_images(const void *src, int i, int N, const blip_model *b, float *stage,
                              const float **px, tsr_error *err)
{
    size_t per = 3 * (size_t)b->vit.image_size * b->vit.image_size;
    *px = stage;
    tsr_status rc = TSR_OK;
    for (int k = 0; k < N && rc == TSR_OK; k++) {
        const tsr_image *img = ((const tsr_image *const *)src)[i + k];
        rc = img ? tsr_image_preprocess(img, &b->pp, stage + per * k, err)
                 : tsr_error_set(err, TSR_ERR_INVALID_ARG, "image %d is NULL", i + k + 1);
        if (rc != TSR_OK && img)
            tsr_error_prefix(err, "image %d", i + k + 1);
    }
    return rc;
}

static tsr_status caption(tsr_session *s, int n, const tsr_caption_params *p, tsr_caption *out,
                          pixels_fn get, const void *src, tsr_error *err)
{
    tsr_status rc = tsr_session_need(s, &tsr_family_blip, "write captions", err);
    tsr_caption_params def;
    if (rc == TSR_OK && !p) {
        def = tsr_caption_default_params(s->m);
        p = &def;
    }
    int K = p && p->num_captions > 0 ? p->num_captions : 1;
    for (int i = 0; i < n * K; i++)
        memset(&out[i], 0, sizeof out[i]);
    TSR_TRY(rc, check_params(s->m, p, err));
    if (rc != TSR_OK)
        return tsr_session_fail(s, rc, err);
    blip_model *b = BLIP(s->m);
    int *prompt = malloc(sizeof(int) * ((size_t)b->dec.n_ctx + 2));
    int np = 0, total = 0;
    if (!prompt)
        rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    TSR_TRY(rc, prompt_ids(b, p, prompt, &np, &total, err));
    int cap = total < b->dec.n_ctx ? total : b->dec.n_ctx;
    int R = p->beams > 1 ? p->beams : p->do_sample ? K : 1;
    /* images per batch: the session's image_batch, as many decoder rows as
     * 64 images' beams at most */
    int G = s->p.image_batch > 0 ? s->p.image_batch : 16;
    if (G * R > 64)
        G = 64 / R > 0 ? 64 / R : 1;
    if (G > n)
        G = n > 0 ? n : 1;
    TSR_TRY(rc, blip_ready(s, G, R, cap, err));
    blip_session *bs = s->data;
    for (int i = 0; i < n && rc == TSR_OK; i += G) {
        int N = n - i < G ? n - i : G;
        const float *px = NULL;
        rc = get(src, i, N, b, bs->px, &px, err);
        TSR_TRY(rc, encode(s, px, N, NULL, err));
        TSR_TRY(rc, caption_batch(s, p, prompt, np, total, N, &out[(size_t)i * K], err));
    }
    if (rc != TSR_OK)
        for (int i = 0; i < n * K; i++)
            tsr_caption_free(&out[i]);
    free(prompt);
    return tsr_session_fail(s, rc, err);
}


tsr_status tsr_session_caption_pixels(tsr_session *s, const float *pixels, int n,
                                      const tsr_caption_params *p, tsr_caption *out,
                                      tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    if (is_coca(s))
        return tsr_session_fail(s, tsr_coca_caption(s, n, p, out, pixels, NULL, err), err);
    return caption(s, n, p, out, from_pixels, pixels, err);
}

tsr_status tsr_session_caption_images(tsr_session *s, const tsr_image *const *images, int n,
                                      const tsr_caption_params *p, tsr_caption *out,
                                      tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    if (is_coca(s))
        return tsr_session_fail(s, tsr_coca_caption(s, n, p, out, NULL, images, err), err);
    return caption(s, n, p, out, from_images, images, err);
}

/* ---- model information ---- */

const tsr_wordpiece *tsr_model_caption_tokenizer(const tsr_model *m)
{
    return m->fam == &tsr_family_blip ? BLIP(m)->tok : NULL;
}

int tsr_model_caption_image_size(const tsr_model *m)
{
    if (m->fam == &tsr_family_clip && CLIP(m)->coca)
        return CLIP(m)->vit.image_size;
    return m->fam == &tsr_family_blip ? BLIP(m)->vit.image_size : 0;
}

int tsr_model_can_caption(const tsr_model *m)
{
    return m->fam == &tsr_family_blip || (m->fam == &tsr_family_clip && CLIP(m)->coca);
}
