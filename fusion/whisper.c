/* Whisper: a CTranslate2 directory (model.bin, faster-whisper's format) or a
 * HF WhisperForConditionalGeneration directory, each through its tensor
 * table; the audio encoder and the decoder stack on the compute layer;
 * decoding through the generation module with CTranslate2's processors
 * (suppression, timestamp rules, no-speech probability); long-form
 * transcription as faster-whisper 1.2.1's generate_segments does it, over
 * audio streamed window by window; language detection. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include <zlib.h>

#include "tsr_audio.h"
#include "tsr_cfg.h"
#include "tsr_generate.h"
#include "tsr_model.h"
#include "tsr_st.h"
#include "tsr_wenc.h"
#include "tsr_wtable.h"

#define MAX_SUPPRESS 512
#define TSR_MAX_LANGS 128

typedef struct {
    int ct2; /* 1: CTranslate2 layout */
    tsr_wenc_cfg enc;
    tsr_wenc_w enc_w;
    tsr_decoder_cfg dec;
    tsr_decoder_w dec_w;
    tsr_bytelevel *tok;
    int eot, sot, no_ts, transcribe, translate, sot_prev, sot_lm, no_speech, ts_begin;
    int multilingual;
    int lang_id[TSR_MAX_LANGS], n_langs; /* the language tokens */
    char lang_code[TSR_MAX_LANGS][8];    /* "en", ... */
    int suppress[MAX_SUPPRESS], n_suppress;
    int suppress_begin[8], n_suppress_begin;
} whisper_model;

typedef struct {
    int want_beams, plan_beams;
    tsr_wenc_io enc;
    tsr_decoder_io dec;
    int encoded; /* enc.enc.x holds an encoding */
} whisper_session;

#define WHISPER(m) ((whisper_model *)(m)->data)

/* ---- the tensor tables ---- */

enum { OBJ_ENC, OBJ_ENC_L, OBJ_DEC, OBJ_DEC_L };
/* symbolic dimensions */
enum { D = 1, D2, D3, EF, DF, NM, K3, ECTX, V, TCTX };

static int64_t whisper_dim(const void *cfg, int code)
{
    const whisper_model *w = cfg;
    int d = w->enc.enc.layer.dim;
    switch (code) {
    case D: return d;
    case D2: return 2 * d;
    case D3: return 3 * d;
    case EF: return w->enc.enc.layer.ffn;
    case DF: return w->dec.layer.ffn;
    case NM: return w->enc.n_mels;
    case K3: return 3;
    case ECTX: return w->enc.n_ctx;
    case V: return w->dec.vocab;
    case TCTX: return w->dec.n_ctx;
    }
    return -1;
}

#define EW(f) offsetof(tsr_wenc_w, f)
#define DW(f) offsetof(tsr_decoder_w, f)
#define LIN TSR_W_LINEAR
#define OPT TSR_W_OPTIONAL

/* CTranslate2: self-attention (fused qkv in linear_0) and MLP of a layer
 * whose weights are a T, under the prefix pf ("encoder/layer_%d/") */
#define CT2_BLOCK(pf, obj, T, F)                                                           \
    {pf "self_attention/layer_norm/gamma", NULL, obj, offsetof(T, ln1_g), 0, 0, {D}, 0},   \
    {pf "self_attention/layer_norm/beta", NULL, obj, offsetof(T, ln1_b), 0, 0, {D}, 0},    \
    {pf "self_attention/linear_0/weight", NULL, obj, offsetof(T, qkv_w), 0, 0, {D3, D}, LIN}, \
    {pf "self_attention/linear_0/bias", NULL, obj, offsetof(T, qkv_b), 0, 0, {D3}, 0},     \
    {pf "self_attention/linear_1/weight", NULL, obj, offsetof(T, o_w), 0, 0, {D, D}, LIN}, \
    {pf "self_attention/linear_1/bias", NULL, obj, offsetof(T, o_b), 0, 0, {D}, 0},        \
    {pf "ffn/layer_norm/gamma", NULL, obj, offsetof(T, ln2_g), 0, 0, {D}, 0},              \
    {pf "ffn/layer_norm/beta", NULL, obj, offsetof(T, ln2_b), 0, 0, {D}, 0},               \
    {pf "ffn/linear_0/weight", NULL, obj, offsetof(T, fc1_w), 0, 0, {F, D}, LIN},          \
    {pf "ffn/linear_0/bias", NULL, obj, offsetof(T, fc1_b), 0, 0, {F}, 0},                 \
    {pf "ffn/linear_1/weight", NULL, obj, offsetof(T, fc2_w), 0, 0, {D, F}, LIN},          \
    {pf "ffn/linear_1/bias", NULL, obj, offsetof(T, fc2_b), 0, 0, {D}, 0}

static const tsr_wrow ct2_table[] = {
    {"encoder/conv1/weight", NULL, OBJ_ENC, EW(conv1_w), 0, 0, {D, NM, K3}, LIN},
    {"encoder/conv1/bias", NULL, OBJ_ENC, EW(conv1_b), 0, 0, {D}, 0},
    {"encoder/conv2/weight", NULL, OBJ_ENC, EW(conv2_w), 0, 0, {D, D, K3}, LIN},
    {"encoder/conv2/bias", NULL, OBJ_ENC, EW(conv2_b), 0, 0, {D}, 0},
    {"encoder/position_encodings/encodings", NULL, OBJ_ENC, EW(pos), 0, 0, {ECTX, D}, 0},
    {"encoder/layer_norm/gamma", NULL, OBJ_ENC, EW(enc.fin_g), 0, 0, {D}, 0},
    {"encoder/layer_norm/beta", NULL, OBJ_ENC, EW(enc.fin_b), 0, 0, {D}, 0},
    CT2_BLOCK("encoder/layer_%d/", OBJ_ENC_L, tsr_enc_weights, EF),
    {"decoder/embeddings/weight", NULL, OBJ_DEC, DW(tok), 0, 0, {V, D}, 0},
    {"decoder/position_encodings/encodings", NULL, OBJ_DEC, DW(pos), 0, 0, {TCTX, D}, 0},
    {"decoder/layer_norm/gamma", NULL, OBJ_DEC, DW(fin_g), 0, 0, {D}, 0},
    {"decoder/layer_norm/beta", NULL, OBJ_DEC, DW(fin_b), 0, 0, {D}, 0},
    {"decoder/projection/weight", "decoder/embeddings/weight", OBJ_DEC, DW(proj), 0, 0, {V, D}, LIN},
    CT2_BLOCK("decoder/layer_%d/", OBJ_DEC_L, tsr_dec_weights, DF),
#define X(f) offsetof(tsr_dec_weights, f)
    {"decoder/layer_%d/attention/layer_norm/gamma", NULL, OBJ_DEC_L, X(lnx_g), 0, 0, {D}, 0},
    {"decoder/layer_%d/attention/layer_norm/beta", NULL, OBJ_DEC_L, X(lnx_b), 0, 0, {D}, 0},
    {"decoder/layer_%d/attention/linear_0/weight", NULL, OBJ_DEC_L, X(xq_w), 0, 0, {D, D}, LIN},
    {"decoder/layer_%d/attention/linear_0/bias", NULL, OBJ_DEC_L, X(xq_b), 0, 0, {D}, 0},
    {"decoder/layer_%d/attention/linear_1/weight", NULL, OBJ_DEC_L, X(xkv_w), 0, 0, {D2, D}, LIN},
    {"decoder/layer_%d/attention/linear_1/bias", NULL, OBJ_DEC_L, X(xkv_b), 0, 0, {D2}, 0},
    {"decoder/layer_%d/attention/linear_2/weight", NULL, OBJ_DEC_L, X(xo_w), 0, 0, {D, D}, LIN},
    {"decoder/layer_%d/attention/linear_2/bias", NULL, OBJ_DEC_L, X(xo_b), 0, 0, {D}, 0},
};

/* HF: self-attention (separate q, k, v; k has no bias) and MLP of a layer
 * whose weights are a T, under the prefix pf ("model.encoder.layers.%d.") */
#define HF_BLOCK(pf, obj, T, F)                                                            \
    {pf "self_attn_layer_norm.weight", NULL, obj, offsetof(T, ln1_g), 0, 0, {D}, 0},       \
    {pf "self_attn_layer_norm.bias", NULL, obj, offsetof(T, ln1_b), 0, 0, {D}, 0},         \
    {pf "self_attn.q_proj.weight", NULL, obj, offsetof(T, qkv_w), 0, 3, {D, D}, LIN},      \
    {pf "self_attn.k_proj.weight", NULL, obj, offsetof(T, qkv_w), 1, 3, {D, D}, LIN},      \
    {pf "self_attn.v_proj.weight", NULL, obj, offsetof(T, qkv_w), 2, 3, {D, D}, LIN},      \
    {pf "self_attn.q_proj.bias", NULL, obj, offsetof(T, qkv_b), 0, 3, {D}, 0},             \
    {pf "self_attn.k_proj.bias", NULL, obj, offsetof(T, qkv_b), 1, 3, {D}, OPT},           \
    {pf "self_attn.v_proj.bias", NULL, obj, offsetof(T, qkv_b), 2, 3, {D}, 0},             \
    {pf "self_attn.out_proj.weight", NULL, obj, offsetof(T, o_w), 0, 0, {D, D}, LIN},      \
    {pf "self_attn.out_proj.bias", NULL, obj, offsetof(T, o_b), 0, 0, {D}, 0},             \
    {pf "final_layer_norm.weight", NULL, obj, offsetof(T, ln2_g), 0, 0, {D}, 0},           \
    {pf "final_layer_norm.bias", NULL, obj, offsetof(T, ln2_b), 0, 0, {D}, 0},             \
    {pf "fc1.weight", NULL, obj, offsetof(T, fc1_w), 0, 0, {F, D}, LIN},                   \
    {pf "fc1.bias", NULL, obj, offsetof(T, fc1_b), 0, 0, {F}, 0},                          \
    {pf "fc2.weight", NULL, obj, offsetof(T, fc2_w), 0, 0, {D, F}, LIN},                   \
    {pf "fc2.bias", NULL, obj, offsetof(T, fc2_b), 0, 0, {D}, 0}

#define HD "model.decoder.layers.%d."
static const tsr_wrow hf_table[] = {
    {"model.encoder.conv1.weight", NULL, OBJ_ENC, EW(conv1_w), 0, 0, {D, NM, K3}, LIN},
    {"model.encoder.conv1.bias", NULL, OBJ_ENC, EW(conv1_b), 0, 0, {D}, 0},
    {"model.encoder.conv2.weight", NULL, OBJ_ENC, EW(conv2_w), 0, 0, {D, D, K3}, LIN},
    {"model.encoder.conv2.bias", NULL, OBJ_ENC, EW(conv2_b), 0, 0, {D}, 0},
    {"model.encoder.embed_positions.weight", NULL, OBJ_ENC, EW(pos), 0, 0, {ECTX, D}, 0},
    {"model.encoder.layer_norm.weight", NULL, OBJ_ENC, EW(enc.fin_g), 0, 0, {D}, 0},
    {"model.encoder.layer_norm.bias", NULL, OBJ_ENC, EW(enc.fin_b), 0, 0, {D}, 0},
    HF_BLOCK("model.encoder.layers.%d.", OBJ_ENC_L, tsr_enc_weights, EF),
    {"model.decoder.embed_tokens.weight", NULL, OBJ_DEC, DW(tok), 0, 0, {V, D}, 0},
    {"model.decoder.embed_positions.weight", NULL, OBJ_DEC, DW(pos), 0, 0, {TCTX, D}, 0},
    {"model.decoder.layer_norm.weight", NULL, OBJ_DEC, DW(fin_g), 0, 0, {D}, 0},
    {"model.decoder.layer_norm.bias", NULL, OBJ_DEC, DW(fin_b), 0, 0, {D}, 0},
    {"proj_out.weight", "model.decoder.embed_tokens.weight", OBJ_DEC, DW(proj), 0, 0, {V, D}, LIN},
    HF_BLOCK(HD, OBJ_DEC_L, tsr_dec_weights, DF),
    {HD "encoder_attn_layer_norm.weight", NULL, OBJ_DEC_L, X(lnx_g), 0, 0, {D}, 0},
    {HD "encoder_attn_layer_norm.bias", NULL, OBJ_DEC_L, X(lnx_b), 0, 0, {D}, 0},
    {HD "encoder_attn.q_proj.weight", NULL, OBJ_DEC_L, X(xq_w), 0, 0, {D, D}, LIN},
    {HD "encoder_attn.q_proj.bias", NULL, OBJ_DEC_L, X(xq_b), 0, 0, {D}, 0},
    {HD "encoder_attn.k_proj.weight", NULL, OBJ_DEC_L, X(xkv_w), 0, 2, {D, D}, LIN},
    {HD "encoder_attn.v_proj.weight", NULL, OBJ_DEC_L, X(xkv_w), 1, 2, {D, D}, LIN},
    {HD "encoder_attn.k_proj.bias", NULL, OBJ_DEC_L, X(xkv_b), 0, 2, {D}, OPT},
    {HD "encoder_attn.v_proj.bias", NULL, OBJ_DEC_L, X(xkv_b), 1, 2, {D}, 0},
    {HD "encoder_attn.out_proj.weight", NULL, OBJ_DEC_L, X(xo_w), 0, 0, {D, D}, LIN},
    {HD "encoder_attn.out_proj.bias", NULL, OBJ_DEC_L, X(xo_b), 0, 0, {D}, 0},
#undef X
};

/* ---- sizes ---- */

static tsr_status shape_of(const tsr_st *st, const char *dir, const char *name, int ndim,
                           int64_t *shape, tsr_error *err)
{
    const tsr_st_tensor *t = tsr_st_find(st, name);
    if (!t)
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: missing tensor '%s'", dir, name);
    if (t->ndim != ndim)
        return tsr_error_set(err, TSR_ERR_SHAPE, "%s: tensor '%s' has %d dimensions, expected %d",
                             t->file, name, t->ndim, ndim);
    for (int d = 0; d < ndim; d++) {
        if (t->shape[d] < 1 || t->shape[d] > 1 << 20)
            return tsr_error_set(err, TSR_ERR_SHAPE, "%s: tensor '%s' has dimension %lld",
                                 t->file, name, (long long)t->shape[d]);
        shape[d] = t->shape[d];
    }
    return TSR_OK;
}

/* Counts "fmt" % i names present. */
static int count_layers(const tsr_st *st, const char *fmt)
{
    char name[160];
    int n = 0;
    for (;; n++) {
        snprintf(name, sizeof name, fmt, n);
        if (!tsr_st_find(st, name) || n > 256)
            return n;
    }
}

/* The towers' configurations from their sizes. */
static void build(whisper_model *w, int n_mels, int dim, int e_heads, int e_ffn, int e_layers,
                  int n_ctx, int d_heads, int d_ffn, int d_layers, int vocab, int text_ctx)
{
    const float eps = 1e-5f;
    w->enc.n_mels = n_mels;
    w->enc.n_ctx = n_ctx;
    w->enc.enc = (tsr_encoder_cfg){{dim, e_heads, e_ffn, eps, TSR_ACT_GELU, 0, 0}, e_layers, 0,
                                   TSR_LN_ALL, 0, 0, 0};
    w->dec = (tsr_decoder_cfg){{dim, d_heads, d_ffn, eps, TSR_ACT_GELU, 0, dim}, d_layers, vocab,
                               text_ctx, 1, 0, TSR_ACT_NONE};
}

/* Sizes from the CTranslate2 variables themselves. */
static tsr_status ct2_sizes(tsr_model *m, const tsr_st *st, tsr_error *err)
{
    int64_t c1[3], pe[2], de[2], dp[2], f1[2];
    tsr_status rc = shape_of(st, m->name, "encoder/conv1/weight", 3, c1, err);
    TSR_TRY(rc, shape_of(st, m->name, "encoder/position_encodings/encodings", 2, pe, err));
    TSR_TRY(rc, shape_of(st, m->name, "decoder/embeddings/weight", 2, de, err));
    TSR_TRY(rc, shape_of(st, m->name, "decoder/position_encodings/encodings", 2, dp, err));
    TSR_TRY(rc, shape_of(st, m->name, "encoder/layer_0/ffn/linear_0/weight", 2, f1, err));
    long eh = 0, dh = 0;
    const tsr_st_tensor *t;
    if (rc == TSR_OK && (t = tsr_st_find(st, "encoder/num_heads")))
        rc = tsr_st_scalar_int(t, &eh, err);
    if (rc == TSR_OK && (t = tsr_st_find(st, "decoder/num_heads")))
        rc = tsr_st_scalar_int(t, &dh, err);
    if (rc != TSR_OK)
        return rc;
    if (c1[2] != 3)
        return tsr_error_set(err, TSR_ERR_SHAPE, "%s: encoder/conv1/weight has kernel size %lld, "
                             "expected 3", m->name, (long long)c1[2]);
    int dim = (int)c1[0];
    if (eh < 1 || dh < 1 || dim % eh || dim % dh)
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: num_heads (%ld, %ld) must divide %d",
                             m->name, eh, dh, dim);
    if (de[1] != dim || dp[1] != dim || pe[1] != dim)
        return tsr_error_set(err, TSR_ERR_SHAPE, "%s: embedding widths do not match d_model %d",
                             m->name, dim);
    if (dp[0] < 8) /* the start of a transcript and a few tokens must fit */
        return tsr_error_set(err, TSR_ERR_SHAPE, "%s: decoder/position_encodings has %lld "
                             "positions; a Whisper decoder needs at least 8", m->name,
                             (long long)dp[0]);
    build(WHISPER(m), (int)c1[1], dim, (int)eh, (int)f1[0],
          count_layers(st, "encoder/layer_%d/ffn/linear_0/weight"), (int)pe[0], (int)dh,
          (int)f1[0], count_layers(st, "decoder/layer_%d/ffn/linear_0/weight"), (int)de[0],
          (int)dp[0]);
    return TSR_OK;
}

static tsr_status hf_sizes(tsr_model *m, const tsr_source *src, tsr_error *err)
{
    whisper_model *w = WHISPER(m);
    char path[4200];
    tsr_src_path(src, "config.json", path, sizeof path);
    cJSON *root = tsr_src_json(src, "config.json", 8 << 20, err);
    if (!root)
        return err->code;
    tsr_cfg_reader r = {root, path, "config", err, 0};
    int vocab = tsr_cfg_int(&r, "vocab_size", 51865, 1, 1 << 20);
    int n_mels = tsr_cfg_int(&r, "num_mel_bins", 80, 1, 512);
    int dim = tsr_cfg_int(&r, "d_model", 384, 1, 16384);
    int e_layers = tsr_cfg_int(&r, "encoder_layers", 4, 0, 256);
    int e_heads = tsr_cfg_int(&r, "encoder_attention_heads", 6, 1, 1024);
    int e_ffn = tsr_cfg_int(&r, "encoder_ffn_dim", 1536, 1, 65536);
    int d_layers = tsr_cfg_int(&r, "decoder_layers", 4, 0, 256);
    int d_heads = tsr_cfg_int(&r, "decoder_attention_heads", 6, 1, 1024);
    int d_ffn = tsr_cfg_int(&r, "decoder_ffn_dim", 1536, 1, 65536);
    int n_ctx = tsr_cfg_int(&r, "max_source_positions", 1500, 1, 1 << 16);
    int text_ctx = tsr_cfg_int(&r, "max_target_positions", 448, 8, 1 << 16);
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "activation_function");
    if (!r.bad && cJSON_IsString(act) && strcmp(act->valuestring, "gelu") != 0)
        r.bad = tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                              "%s: activation_function \"%s\" is not supported", path,
                              act->valuestring) != TSR_OK;
    /* HF keeps the suppression lists in generation_config.json or config.json */
    const cJSON *sup = cJSON_GetObjectItemCaseSensitive(root, "suppress_tokens");
    const cJSON *beg = cJSON_GetObjectItemCaseSensitive(root, "begin_suppress_tokens");
    const cJSON *it;
    cJSON_ArrayForEach(it, sup) if (cJSON_IsNumber(it) && w->n_suppress < MAX_SUPPRESS)
        w->suppress[w->n_suppress++] = (int)it->valuedouble;
    cJSON_ArrayForEach(it, beg) if (cJSON_IsNumber(it) && w->n_suppress_begin < 8)
        w->suppress_begin[w->n_suppress_begin++] = (int)it->valuedouble;
    cJSON_Delete(root);
    if (r.bad)
        return err->code;
    if (dim % e_heads || dim % d_heads)
        return tsr_error_set(err, TSR_ERR_FORMAT,
                             "%s: d_model must be a multiple of the attention heads", path);
    build(w, n_mels, dim, e_heads, e_ffn, e_layers, n_ctx, d_heads, d_ffn, d_layers, vocab,
          text_ctx);
    return TSR_OK;
}

/* CTranslate2's config.json (suppress_ids, suppress_ids_begin, lang_ids), or
 * HF's generation_config.json (the suppression lists when config.json had
 * none, is_multilingual, lang_to_id). The language ids go to lang_id as a
 * filter for special_ids. */
static tsr_status read_generation(tsr_model *m, const tsr_source *src, tsr_error *err)
{
    whisper_model *w = WHISPER(m);
    const char *file = w->ct2 ? "config.json" : "generation_config.json";
    const char *k1 = w->ct2 ? "suppress_ids" : "suppress_tokens";
    const char *k2 = w->ct2 ? "suppress_ids_begin" : "begin_suppress_tokens";
    if (!tsr_src_exists(src, file))
        return TSR_OK;
    cJSON *root = tsr_src_json(src, file, 8 << 20, err);
    if (!root)
        return err->code;
    const cJSON *it;
    if (w->ct2 || !w->n_suppress) {
        w->n_suppress = w->n_suppress_begin = 0;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(root, k1))
            if (cJSON_IsNumber(it) && w->n_suppress < MAX_SUPPRESS)
                w->suppress[w->n_suppress++] = (int)it->valuedouble;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(root, k2))
            if (cJSON_IsNumber(it) && w->n_suppress_begin < 8)
                w->suppress_begin[w->n_suppress_begin++] = (int)it->valuedouble;
    }
    const cJSON *langs = cJSON_GetObjectItemCaseSensitive(root, w->ct2 ? "lang_ids" : "lang_to_id");
    w->n_langs = -1; /* no list: every language token counts */
    if (cJSON_IsArray(langs) || cJSON_IsObject(langs)) {
        w->n_langs = 0;
        cJSON_ArrayForEach(it, langs) if (cJSON_IsNumber(it) && w->n_langs < TSR_MAX_LANGS)
            w->lang_id[w->n_langs++] = (int)it->valuedouble;
    }
    if (!w->ct2) {
        const cJSON *ml = cJSON_GetObjectItemCaseSensitive(root, "is_multilingual");
        if (cJSON_IsBool(ml))
            w->multilingual = cJSON_IsTrue(ml) ? 1 : 0;
    }
    cJSON_Delete(root);
    return TSR_OK;
}

/* Whisper's language codes, in its token order. */
static const char *const whisper_langs[] = {
    "en", "zh", "de", "es", "ru", "ko", "fr", "ja", "pt", "tr", "pl", "ca", "nl", "ar", "sv",
    "it", "id", "hi", "fi", "vi", "he", "uk", "el", "ms", "cs", "ro", "da", "hu", "ta", "no",
    "th", "ur", "hr", "bg", "lt", "la", "mi", "ml", "cy", "sk", "te", "fa", "lv", "bn", "sr",
    "az", "sl", "kn", "et", "mk", "br", "eu", "is", "hy", "ne", "mn", "bs", "kk", "sq", "sw",
    "gl", "mr", "pa", "si", "km", "sn", "yo", "so", "af", "oc", "ka", "be", "tg", "sd", "gu",
    "am", "yi", "lo", "uz", "fo", "ht", "ps", "tk", "nn", "mt", "sa", "lb", "my", "bo", "tl",
    "mg", "as", "tt", "haw", "ln", "ha", "ba", "jw", "su", "yue"};

/* The language tokens the tokenizer has (and the configuration lists). */
static void find_languages(whisper_model *w)
{
    int listed[TSR_MAX_LANGS], n_listed = w->n_langs;
    memcpy(listed, w->lang_id, sizeof listed);
    w->n_langs = 0;
    for (size_t i = 0; i < sizeof whisper_langs / sizeof whisper_langs[0]; i++) {
        char tk[16];
        snprintf(tk, sizeof tk, "<|%s|>", whisper_langs[i]);
        int id = tsr_bytelevel_id(w->tok, tk), ok = id >= 0 && id < w->dec.vocab;
        if (ok && n_listed >= 0) {
            ok = 0;
            for (int k = 0; k < n_listed; k++)
                ok |= listed[k] == id;
        }
        if (!ok || w->n_langs == TSR_MAX_LANGS)
            continue;
        w->lang_id[w->n_langs] = id;
        snprintf(w->lang_code[w->n_langs++], sizeof w->lang_code[0], "%s", whisper_langs[i]);
    }
}

static tsr_status special_ids(tsr_model *m, tsr_error *err)
{
    whisper_model *w = WHISPER(m);
    int V = w->dec.vocab;
    struct {
        const char *name;
        int *slot, required;
    } sp[] = {{"<|endoftext|>", &w->eot, 1},         {"<|startoftranscript|>", &w->sot, 1},
              {"<|notimestamps|>", &w->no_ts, 1},    {"<|transcribe|>", &w->transcribe, 0},
              {"<|translate|>", &w->translate, 0},   {"<|startofprev|>", &w->sot_prev, 0},
              {"<|startoflm|>", &w->sot_lm, 0},      {"<|nospeech|>", &w->no_speech, 0},
              {"<|0.00|>", &w->ts_begin, 0}};
    for (size_t i = 0; i < sizeof sp / sizeof sp[0]; i++) {
        *sp[i].slot = tsr_bytelevel_id(w->tok, sp[i].name);
        if (*sp[i].slot >= V)
            *sp[i].slot = -1;
        if (*sp[i].slot < 0 && sp[i].required)
            return tsr_error_set(err, TSR_ERR_FORMAT, "%s/tokenizer.json: no '%s' token below %d",
                                 m->name, sp[i].name, V);
    }
    if (w->no_speech < 0)
        w->no_speech = tsr_bytelevel_id(w->tok, "<|nocaptions|>");
    if (w->ts_begin < 0)
        w->ts_begin = w->no_ts + 1;
    /* multilingual vocabularies have 51865 entries or more; English-only 51864 */
    if (w->ct2 || w->multilingual < 0)
        w->multilingual = V >= 51865;
    find_languages(w);
    /* as faster-whisper's get_suppressed_tokens: the special tokens too */
    int extra[6] = {w->transcribe, w->translate, w->sot, w->sot_prev, w->sot_lm, w->no_speech};
    for (int i = 0; i < 6; i++)
        if (extra[i] >= 0 && w->n_suppress < MAX_SUPPRESS)
            w->suppress[w->n_suppress++] = extra[i];
    for (int i = 0; i < w->n_suppress; i++)
        if (w->suppress[i] < 0 || w->suppress[i] >= V)
            w->suppress[i--] = w->suppress[--w->n_suppress];
    if (w->n_suppress_begin == 0) { /* " " and end of text, as Whisper does */
        int sp_id = tsr_bytelevel_id(w->tok, "\xC4\xA0"); /* "Ġ" */
        if (sp_id >= 0)
            w->suppress_begin[w->n_suppress_begin++] = sp_id;
        w->suppress_begin[w->n_suppress_begin++] = w->eot;
    }
    return TSR_OK;
}

static tsr_status load_weights(tsr_model *m, const tsr_st *st, tsr_error *err)
{
    whisper_model *w = WHISPER(m);
    int el = w->enc.enc.n_layers, dl = w->dec.n_layers;
    w->enc_w.enc.layers = calloc((size_t)el + 1, sizeof(tsr_enc_weights));
    w->dec_w.layers = calloc((size_t)dl + 1, sizeof(tsr_dec_weights));
    if (!w->enc_w.enc.layers || !w->dec_w.layers)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    tsr_wtable t = {w->ct2 ? ct2_table : hf_table,
                    w->ct2 ? (int)(sizeof ct2_table / sizeof ct2_table[0])
                           : (int)(sizeof hf_table / sizeof hf_table[0]),
                    {{&w->enc_w, 0, 1},
                     {w->enc_w.enc.layers, sizeof(tsr_enc_weights), el},
                     {&w->dec_w, 0, 1},
                     {w->dec_w.layers, sizeof(tsr_dec_weights), dl}},
                    "",
                    whisper_dim,
                    w};
    return tsr_model_load_table(m, &t, st, NULL, err);
}

static int whisper_detect(const tsr_source *src, const cJSON *config)
{
    /* or a CTranslate2 directory: model.bin next to a config without model_type */
    return tsr_model_type_is(config, "whisper") ||
           (!cJSON_GetObjectItemCaseSensitive(config, "model_type") &&
            tsr_src_exists(src, "model.bin"));
}

static tsr_status whisper_load(tsr_model *m, const tsr_source *src, tsr_error *err)
{
    if (!(m->data = calloc(1, sizeof(whisper_model))))
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    whisper_model *w = WHISPER(m);
    w->ct2 = tsr_src_exists(src, "model.bin");
    w->multilingual = w->n_langs = -1; /* unknown until the configuration says */
    tsr_st *st = NULL;
    tsr_status rc = w->ct2 ? tsr_st_open_ct2_source(src, "model.bin", &st, err)
                           : hf_sizes(m, src, err);
    if (rc == TSR_OK && w->ct2)
        rc = ct2_sizes(m, st, err);
    if (rc == TSR_OK && !w->ct2)
        rc = tsr_st_open_source(src, &st, err);
    if (rc == TSR_OK) {
        tsr_enc_cfg dc = tsr_dec_enc_cfg(&w->dec.layer);
        rc = tsr_enc_cfg_check(&w->enc.enc.layer, m->name, err);
        TSR_TRY(rc, tsr_enc_cfg_check(&dc, m->name, err));
    }
    if (rc == TSR_OK) { /* tokenizer.json only */
        tsr_tok_files f;
        rc = tsr_src_tokenizer(src, "tokenizer.json", NULL, 1, &f, err);
        TSR_TRY(rc, tsr_bytelevel_load_json(f.text[0], f.len[0], f.path[0], &w->tok, err));
        tsr_tok_files_free(&f);
    }
    TSR_TRY(rc, read_generation(m, src, err));
    TSR_TRY(rc, special_ids(m, err));
    TSR_TRY(rc, load_weights(m, st, err));
    tsr_st_close(st);
    return rc;
}

static void whisper_free(tsr_model *m)
{
    whisper_model *w = WHISPER(m);
    free(w->enc_w.enc.layers);
    free(w->dec_w.layers);
    tsr_bytelevel_free(w->tok);
    free(w);
    m->data = NULL;
}

static void whisper_session_free(tsr_session *s)
{
    whisper_session *ws = s->data;
    tsr_encoder_io_free(&ws->enc.enc);
    tsr_decoder_io_free(&ws->dec);
}

const tsr_family tsr_family_whisper = {"whisper",    whisper_detect, whisper_load, whisper_free,
                                       whisper_session_free, NULL, NULL, NULL};

#define IF_WHISPER(m, expr) ((m)->fam == &tsr_family_whisper ? (expr) : 0)
int tsr_model_n_mels(const tsr_model *m) { return IF_WHISPER(m, WHISPER(m)->enc.n_mels); }
int tsr_model_vocab_size(const tsr_model *m) { return IF_WHISPER(m, WHISPER(m)->dec.vocab); }
int tsr_model_dim(const tsr_model *m) { return IF_WHISPER(m, WHISPER(m)->dec.layer.dim); }
int tsr_model_audio_ctx(const tsr_model *m) { return IF_WHISPER(m, WHISPER(m)->enc.n_ctx); }
int tsr_model_text_ctx(const tsr_model *m) { return IF_WHISPER(m, WHISPER(m)->dec.n_ctx); }
const tsr_bytelevel *tsr_model_bytelevel(const tsr_model *m)
{
    return m->fam == &tsr_family_whisper ? WHISPER(m)->tok : tsr_clap_tokenizer(m);
}

/* ---- running ---- */

static tsr_status whisper_plan(tsr_session *s, size_t scratch[TSR_SCRATCH_N], tsr_error *err)
{
    whisper_model *w = WHISPER(s->m);
    whisper_session *ws = s->data;
    ws->plan_beams = 0;
    ws->encoded = 0;
    tsr_status rc = tsr_wenc_plan(s->q, &w->enc, &s->arena, &ws->enc, scratch, err);
    TSR_TRY(rc, tsr_decoder_plan(s->q, &w->dec, ws->want_beams, w->dec.n_ctx, 1, w->enc.n_ctx,
                                 &s->arena, &ws->dec, scratch, err));
    return rc;
}

/* The session planned for at least B decoder sequences. */
static tsr_status whisper_ready(tsr_session *s, int B, tsr_error *err)
{
    tsr_status rc = tsr_session_need(s, &tsr_family_whisper, "transcribe speech", err);
    whisper_session *ws = rc == TSR_OK ? tsr_session_data(s, sizeof *ws, err) : NULL;
    if (!ws)
        return rc != TSR_OK ? rc : TSR_ERR_NOMEM;
    if (ws->plan_beams >= B)
        return TSR_OK;
    ws->want_beams = B;
    rc = tsr_session_plan(s, whisper_plan, err);
    if (rc == TSR_OK)
        ws->plan_beams = B;
    return rc;
}

static tsr_status encode(tsr_session *s, const float *mel, float *out, tsr_error *err)
{
    whisper_model *w = WHISPER(s->m);
    whisper_session *ws = s->data;
    ws->encoded = 0;
    tsr_status rc = tsr_wenc_forward(s->q, &w->enc, &w->enc_w, &ws->enc, &s->scratch, mel, err);
    if (out)
        TSR_TRY(rc, tsr_buf_read(s->q, ws->enc.enc.x, out,
                                 sizeof(float) * (size_t)w->enc.n_ctx * w->enc.enc.layer.dim,
                                 err));
    ws->encoded = rc == TSR_OK;
    return rc;
}

tsr_status tsr_session_whisper_encode(tsr_session *s, const float *mel, float *out,
                                      tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    tsr_status rc = whisper_ready(s, 1, err);
    TSR_TRY(rc, encode(s, mel, out, err));
    if (rc == TSR_OK && !out) /* the caller's mel may be freed once this returns */
        rc = tsr_queue_finish(s->q, err);
    return tsr_session_fail(s, rc, err);
}

/* Clears the caches for new sequences over the current encoding. */
static tsr_status start_decoding(tsr_session *s, tsr_error *err)
{
    whisper_model *w = WHISPER(s->m);
    whisper_session *ws = s->data;
    if (!ws->encoded)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "no audio has been encoded");
    return tsr_decoder_cross(s->q, &w->dec, &w->dec_w, &ws->dec, ws->enc.enc.x, err);
}

/* Runs Sq tokens of each of the B sequences at positions past..; logits (B, V)
 * of each sequence's last token when wanted. */
static tsr_status run_tokens(tsr_session *s, const int *tokens, int B, int Sq, int past,
                             float *logits, tsr_error *err)
{
    whisper_model *w = WHISPER(s->m);
    whisper_session *ws = s->data;
    return tsr_decoder_step(s->q, &w->dec, &w->dec_w, &ws->dec, &s->scratch, tokens, B, Sq, past,
                            logits, err);
}

tsr_status tsr_session_whisper_logits(tsr_session *s, const int *tokens, int n, float *logits,
                                      tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    tsr_status rc = tsr_session_need(s, &tsr_family_whisper, "transcribe speech", err);
    if (rc == TSR_OK && (!s->data || ((whisper_session *)s->data)->plan_beams < 1))
        rc = tsr_error_set(err, TSR_ERR_INVALID_ARG, "no audio has been encoded");
    TSR_TRY(rc, start_decoding(s, err));
    int V = WHISPER(s->m)->dec.vocab;
    for (int i = 0; i < n && rc == TSR_OK; i++)
        rc = run_tokens(s, tokens + i, 1, 1, i, logits + (size_t)i * V, err);
    return tsr_session_fail(s, rc, err);
}

/* ---- decoding one window: CTranslate2's Whisper generate ---- */

typedef struct {
    tsr_session *s;
    const whisper_model *w;
    const tsr_transcribe_params *p;
    int timestamps;     /* the timestamp rules apply */
    int max_initial;    /* the latest timestamp token allowed first */
    int want_no_speech; /* <|startoftranscript|> is the start token: step 0 gives it */
    double no_speech;
    float *tmp;         /* (V) log-probabilities for the timestamp rule */
} decode_ctx;

static tsr_status step_hook(void *user, const int *tokens, int B, int pos, float *logits,
                            tsr_error *err)
{
    decode_ctx *d = user;
    return run_tokens(d->s, tokens, B, 1, pos, logits, err);
}

static tsr_status reorder_hook(void *user, const int *src, int B, int len, tsr_error *err)
{
    decode_ctx *d = user;
    whisper_session *ws = d->s->data;
    return tsr_decoder_reorder(d->s->q, &d->w->dec, &ws->dec, src, B, len, err);
}

/* softmax(lg)[id], in double. */
static double softmax_at(const float *lg, int V, int id)
{
    if (id < 0 || id >= V)
        return 0;
    float mx = -INFINITY;
    for (int k = 0; k < V; k++)
        mx = fmaxf(mx, lg[k]);
    double sum = 0;
    for (int k = 0; k < V; k++)
        sum += exp((double)(lg[k] - mx));
    return exp((double)(lg[id] - mx)) / sum;
}

static void raw_hook(void *user, int step, const float *lg, int B)
{
    decode_ctx *d = user;
    (void)B;
    if (step == 0 && d->want_no_speech) /* the first row: every beam's is the same */
        d->no_speech = softmax_at(lg, d->w->dec.vocab, d->w->no_speech);
}

static void disable(float *lg, int from, int to)
{
    for (int i = from < 0 ? 0 : from; i < to; i++)
        lg[i] = -INFINITY;
}

/* CTranslate2's processors after the shared ones: SuppressTokens,
 * SuppressTokensBegin, then ApplyTimestampRules. */
static void process_hook(void *user, int step, const int *seq, int len, float *lg)
{
    decode_ctx *d = user;
    const whisper_model *w = d->w;
    int V = w->dec.vocab;
    for (int i = 0; i < w->n_suppress; i++)
        lg[w->suppress[i]] = -INFINITY;
    if (step == 0 && d->p->suppress_blank)
        for (int i = 0; i < w->n_suppress_begin; i++)
            if (w->suppress_begin[i] >= 0 && w->suppress_begin[i] < V)
                lg[w->suppress_begin[i]] = -INFINITY;
    if (!d->timestamps)
        return;
    int tb = w->ts_begin, te = V - 1, check = 0;
    lg[w->no_ts] = -INFINITY;
    if (step == 0) { /* a timestamp first, and not after max_initial */
        disable(lg, 0, tb);
        disable(lg, d->max_initial + 1, te + 1);
        return;
    }
    int last = seq[len - 1];
    if (last >= tb) { /* timestamps come in pairs, except before the end */
        int before = len > 1 ? seq[len - 2] : last;
        if (before >= tb) {
            disable(lg, tb, te + 1);
        } else {
            disable(lg, 0, w->eot);
            check = 1;
        }
    } else {
        check = 1;
    }
    for (int t = len - 1; t >= 0; t--) /* and never decrease */
        if (seq[t] >= tb) {
            disable(lg, tb, seq[t]);
            break;
        }
    if (!check)
        return;
    /* a timestamp is forced when their total probability beats every text token's */
    memcpy(d->tmp, lg, sizeof(float) * (size_t)V);
    tsr_log_softmax(d->tmp, V);
    float text_max = -INFINITY, ts_max = -INFINITY;
    for (int i = 0; i < tb; i++)
        text_max = fmaxf(text_max, d->tmp[i]);
    for (int i = tb; i <= te; i++)
        ts_max = fmaxf(ts_max, d->tmp[i]);
    float lse = -INFINITY;
    if (ts_max > -INFINITY) {
        float sum = 0;
        for (int i = tb; i <= te; i++)
            sum += expf(d->tmp[i] - ts_max);
        lse = ts_max + logf(sum);
    }
    if (lse > text_max)
        disable(lg, 0, tb);
}

/* One decoding of the current encoding: tokens without eos and the scores
 * faster-whisper derives. */
typedef struct {
    int *tokens, n;
    double avg_logprob, compression_ratio, no_speech_prob, temperature;
} attempt;

/* Python's str.strip(): the white space at both ends of UTF-8 text. */
static void strip_span(const char *t, size_t n, size_t *a, size_t *b)
{
    *a = 0;
    *b = n;
    for (int end = 0; end < 2; end++)
        for (;;) {
            size_t from = end ? *b : *a;
            if ((end && from <= *a) || (!end && from >= *b))
                break;
            /* the code point at the edge */
            size_t at = from, len = 1;
            if (end) {
                at = from - 1;
                while (at > *a && ((unsigned char)t[at] & 0xC0) == 0x80)
                    at--;
                len = from - at;
            } else {
                while (at + len < *b && ((unsigned char)t[at + len] & 0xC0) == 0x80)
                    len++;
            }
            utf8proc_int32_t c = -1;
            utf8proc_iterate((const utf8proc_uint8_t *)t + at, (utf8proc_ssize_t)len, &c);
            int space = c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F) ||
                        c == 0x85 ||
                        (c > 0x7F && (utf8proc_category(c) == UTF8PROC_CATEGORY_ZS ||
                                      utf8proc_category(c) == UTF8PROC_CATEGORY_ZL ||
                                      utf8proc_category(c) == UTF8PROC_CATEGORY_ZP));
            if (!space)
                break;
            if (end)
                *b = at;
            else
                *a = at + len;
        }
}

/* The text of tokens below <|endoftext|> (timestamps and specials dropped). */
static tsr_status decode_text(const whisper_model *w, const int *tokens, int n, char **out,
                              tsr_error *err)
{
    int *t = malloc(sizeof(int) * (size_t)(n + 1)), k = 0;
    if (!t)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    for (int i = 0; i < n; i++)
        if (tokens[i] < w->eot)
            t[k++] = tokens[i];
    tsr_status rc = tsr_bytelevel_decode(w->tok, t, k, out, err);
    free(t);
    return rc;
}

/* len(text) / len(zlib.compress(text)) of the stripped text, as faster-whisper. */
static tsr_status compression_ratio(const char *text, double *out, tsr_error *err)
{
    size_t a, b;
    strip_span(text, strlen(text), &a, &b);
    uLong n = (uLong)(b - a), cap = compressBound(n);
    unsigned char *z = malloc(cap);
    if (!z)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    uLongf zn = cap;
    int e = compress2(z, &zn, (const Bytef *)text + a, n, Z_DEFAULT_COMPRESSION);
    free(z);
    if (e != Z_OK)
        return tsr_error_set(err, TSR_ERR_NOMEM, "zlib failed (%d)", e);
    *out = (double)n / (double)zn;
    return TSR_OK;
}

/* Decodes the encoded window once at temperature T from prompt (previous
 * text, the start-of-transcript sequence, maybe <|notimestamps|>). */
static tsr_status generate_once(tsr_session *s, const tsr_transcribe_params *p, const int *prompt,
                                int np, double T, uint64_t seed, float *lg, float *tmp,
                                attempt *a, tsr_error *err)
{
    const whisper_model *w = WHISPER(s->m);
    int V = w->dec.vocab, sot_index = 0;
    memset(a, 0, sizeof *a);
    while (sot_index < np && prompt[sot_index] != w->sot)
        sot_index++;
    if (sot_index == np)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "the prompt has no <|startoftranscript|>");
    /* the start-of-transcript sequence: <|startoftranscript|> up to <|notimestamps|> */
    int plen = sot_index;
    while (plen < np && prompt[plen] >= w->sot && prompt[plen] <= w->no_ts)
        plen++;
    int start_step = plen - 1; /* tokens run before decoding starts */
    decode_ctx dc = {s, w, p, prompt[plen - 1] != w->no_ts, 0, sot_index == plen - 1, 0, tmp};
    dc.max_initial = w->ts_begin + (int)rint(p->max_initial_timestamp / 0.02);
    tsr_status rc = start_decoding(s, err);
    if (rc == TSR_OK && sot_index < start_step) {
        /* the prompt up to <|startoftranscript|>, whose logits give the
         * no-speech probability, then the rest of the sequence */
        rc = run_tokens(s, prompt, 1, sot_index + 1, 0, lg, err);
        dc.no_speech = rc == TSR_OK ? softmax_at(lg, V, w->no_speech) : 0;
        if (rc == TSR_OK && start_step > sot_index + 1)
            rc = run_tokens(s, prompt + sot_index + 1, 1, start_step - sot_index - 1,
                            sot_index + 1, NULL, err);
    } else if (rc == TSR_OK && start_step > 0) {
        rc = run_tokens(s, prompt, 1, start_step, 0, NULL, err);
    }
    if (rc != TSR_OK)
        return rc;
    int total = w->dec.n_ctx;
    if (p->max_new_tokens > 0) { /* faster-whisper's max_length = prompt + max_new_tokens */
        if (np + (long)p->max_new_tokens > total)
            return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                                 "the prompt (%d tokens) and max_new_tokens (%d) exceed the "
                                 "decoder's %d positions", np, p->max_new_tokens, total);
        total = np + p->max_new_tokens;
    }
    tsr_gen_params gp = tsr_gen_default_params(V, w->eot);
    gp.start = prompt[plen - 1];
    gp.pos0 = start_step;
    gp.max_len = total / 2 < total - start_step ? total / 2 : total - start_step;
    gp.beams = T > 0 ? 1 : p->beam_size;
    gp.samples = T > 0 ? p->best_of : 1;
    gp.temperature = (float)T; /* CTranslate2 takes its options in float32 */
    gp.seed = seed;
    gp.patience = (float)p->patience;
    gp.length_penalty = (float)p->length_penalty;
    gp.repetition_penalty = (float)p->repetition_penalty;
    gp.no_repeat_ngram = p->no_repeat_ngram_size;
    tsr_gen_hooks hooks = {step_hook, reorder_hook, process_hook, raw_hook, &dc};
    tsr_gen_result gr = {0};
    rc = tsr_generate(&gp, &hooks, &gr, err);
    if (rc != TSR_OK)
        return rc;
    a->tokens = gr.tokens;
    a->n = gr.n;
    a->temperature = T;
    a->no_speech_prob = w->no_speech >= 0 ? dc.no_speech : 0;
    /* faster-whisper recovers the sum of log-probabilities from the score */
    double cum = (double)gr.score * pow((double)gr.n, p->length_penalty);
    a->avg_logprob = cum / (gr.n + 1);
    char *text = NULL;
    rc = decode_text(w, gr.tokens, gr.n, &text, err);
    TSR_TRY(rc, compression_ratio(text, &a->compression_ratio, err));
    free(text);
    if (rc != TSR_OK) {
        free(a->tokens);
        a->tokens = NULL;
    }
    return rc;
}

/* generate_with_fallback: temperatures in turn until the result is neither
 * too repetitive nor too improbable (or judged silent); otherwise the best
 * average log-probability among those under the compression threshold. */
static tsr_status generate_window(tsr_session *s, const tsr_transcribe_params *p,
                                  const int *prompt, int np, uint64_t seed, float *lg, float *tmp,
                                  attempt *out, tsr_error *err)
{
    attempt tried[TSR_MAX_TEMPERATURES];
    int below[TSR_MAX_TEMPERATURES], nb = 0, n = 0, chosen = -1;
    tsr_status rc = TSR_OK;
    for (int i = 0; i < p->n_temperatures && rc == TSR_OK; i++) {
        double T = p->temperatures[i];
        rc = generate_once(s, p, prompt, np, T, seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(i + 1)),
                           lg, tmp, &tried[n], err);
        if (rc != TSR_OK)
            break;
        attempt *a = &tried[n++];
        int fallback = 0;
        if (!isnan(p->compression_ratio_threshold)) {
            if (a->compression_ratio > p->compression_ratio_threshold)
                fallback = 1; /* too repetitive */
            else
                below[nb++] = n - 1;
        }
        if (!isnan(p->log_prob_threshold) && a->avg_logprob < p->log_prob_threshold)
            fallback = 1; /* too improbable */
        if (!isnan(p->no_speech_threshold) && a->no_speech_prob > p->no_speech_threshold &&
            !isnan(p->log_prob_threshold) && a->avg_logprob < p->log_prob_threshold)
            fallback = 0; /* silence */
        if (!fallback) {
            chosen = n - 1;
            break;
        }
    }
    if (rc == TSR_OK && chosen < 0) {
        int *from = nb ? below : NULL, m = nb ? nb : n;
        for (int k = 0; k < m; k++) {
            int i = from ? from[k] : k;
            if (chosen < 0 || tried[i].avg_logprob > tried[chosen].avg_logprob)
                chosen = i;
        }
        /* the last temperature tried decides the prompt reset */
        if (chosen >= 0)
            tried[chosen].temperature = p->temperatures[p->n_temperatures - 1];
    }
    for (int i = 0; i < n; i++)
        if (i != chosen || rc != TSR_OK)
            free(tried[i].tokens);
    if (rc == TSR_OK)
        *out = tried[chosen];
    return rc;
}

/* ---- the audio and its log-mel spectrogram ---- */

typedef struct {
    tsr_sample_fn read;
    void *user;
    size_t total; /* samples */
} audio_src;

#define MEL_PAD 160 /* faster-whisper's padding: the last frame is not content */

/* The maximum of the whole log-mel spectrogram, one window at a time. */
static tsr_status mel_max(tsr_logmel *lm, const audio_src *a, int n_mels, int W, float *buf,
                          float *gmax, tsr_error *err)
{
    size_t frames = (a->total + MEL_PAD) / 160;
    *gmax = -INFINITY;
    tsr_status rc = TSR_OK;
    for (size_t f = 0; f < frames && rc == TSR_OK; f += (size_t)W) {
        size_t nf = frames - f < (size_t)W ? frames - f : (size_t)W;
        float mx = -INFINITY;
        rc = tsr_logmel_frames(lm, a->read, a->user, a->total, MEL_PAD, f, nf, buf, (size_t)W,
                               &mx, err);
        *gmax = fmaxf(*gmax, mx);
    }
    (void)n_mels;
    return rc;
}

/* Frames [seek, seek + size) normalised, then zeros up to W. */
static tsr_status mel_window(tsr_logmel *lm, const audio_src *a, int n_mels, int W, size_t seek,
                             int size, float gmax, float *win, tsr_error *err)
{
    tsr_status rc = tsr_logmel_frames(lm, a->read, a->user, a->total, MEL_PAD, seek, (size_t)size,
                                      win, (size_t)W, NULL, err);
    for (int c = 0; c < n_mels && rc == TSR_OK; c++) {
        tsr_logmel_normalize(win + (size_t)c * W, (size_t)size, gmax);
        memset(win + (size_t)c * W + size, 0, sizeof(float) * (size_t)(W - size));
    }
    return rc;
}

/* ---- languages ---- */

int tsr_model_whisper_multilingual(const tsr_model *m)
{
    return IF_WHISPER(m, WHISPER(m)->multilingual);
}

/* Language probabilities from the logits after <|startoftranscript|>:
 * order[i] indexes w->langs, best first. */
static tsr_status language_probs(tsr_session *s, float *lg, double *probs, int *order,
                                 tsr_error *err)
{
    const whisper_model *w = WHISPER(s->m);
    tsr_status rc = start_decoding(s, err);
    int sot = w->sot;
    TSR_TRY(rc, run_tokens(s, &sot, 1, 1, 0, lg, err));
    if (rc != TSR_OK)
        return rc;
    float mx = -INFINITY;
    for (int i = 0; i < w->n_langs; i++)
        mx = fmaxf(mx, lg[w->lang_id[i]]);
    double sum = 0;
    for (int i = 0; i < w->n_langs; i++)
        sum += probs[i] = exp((double)(lg[w->lang_id[i]] - mx));
    for (int i = 0; i < w->n_langs; i++) {
        probs[i] /= sum;
        int j = i;
        while (j > 0 && probs[order[j - 1]] < probs[i]) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
    return TSR_OK;
}

tsr_status tsr_session_whisper_detect_language(tsr_session *s, const float *mel,
                                               const char **codes, float *probs, int cap,
                                               int *n, tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    *n = 0;
    tsr_status rc = whisper_ready(s, 1, err);
    const whisper_model *w = rc == TSR_OK ? WHISPER(s->m) : NULL;
    if (rc == TSR_OK && (!w->multilingual || w->n_langs == 0))
        rc = tsr_error_set(err, TSR_ERR_INVALID_ARG,
                           "%s is an English-only model: it has no language detection",
                           s->m->name);
    float *lg = rc == TSR_OK ? malloc(sizeof(float) * (size_t)w->dec.vocab) : NULL;
    if (rc == TSR_OK && !lg)
        rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    double p[TSR_MAX_LANGS];
    int order[TSR_MAX_LANGS];
    TSR_TRY(rc, encode(s, mel, NULL, err));
    TSR_TRY(rc, language_probs(s, lg, p, order, err));
    for (int i = 0; rc == TSR_OK && i < w->n_langs && i < cap; i++) {
        codes[i] = w->lang_code[order[i]];
        probs[i] = (float)p[order[i]];
    }
    if (rc == TSR_OK)
        *n = w->n_langs;
    free(lg);
    return tsr_session_fail(s, rc, err);
}

/* ---- long-form transcription: faster-whisper's generate_segments ---- */

tsr_transcribe_params tsr_transcribe_default_params(void)
{
    return (tsr_transcribe_params){.beam_size = 5,
                                   .best_of = 5,
                                   .patience = 1.0,
                                   .length_penalty = 1.0,
                                   .repetition_penalty = 1.0,
                                   .temperatures = {0.0, 0.2, 0.4, 0.6, 0.8, 1.0},
                                   .n_temperatures = 6,
                                   .compression_ratio_threshold = 2.4,
                                   .log_prob_threshold = -1.0,
                                   .no_speech_threshold = 0.6,
                                   .condition_on_previous_text = 1,
                                   .prompt_reset_on_temperature = 0.5,
                                   .suppress_blank = 1,
                                   .max_initial_timestamp = 1.0};
}

void tsr_transcript_free(tsr_transcript *t)
{
    if (!t)
        return;
    for (int i = 0; i < t->n_segments; i++) {
        free(t->segments[i].text);
        free(t->segments[i].tokens);
    }
    free(t->segments);
    free(t->text);
    free(t->tokens);
    memset(t, 0, sizeof *t);
}

/* A growing array of ints. */
typedef struct {
    int *v;
    size_t n, cap;
} ints;

static int ints_add(ints *a, const int *v, size_t n)
{
    if (a->n + n > a->cap) {
        size_t nc = a->cap ? a->cap : 256;
        while (nc < a->n + n)
            nc *= 2;
        int *nv = realloc(a->v, sizeof(int) * nc);
        if (!nv)
            return 0;
        a->v = nv;
        a->cap = nc;
    }
    if (n)
        memcpy(a->v + a->n, v, sizeof(int) * n);
    a->n += n;
    return 1;
}

/* One segment cut from a window's tokens. */
typedef struct {
    double start, end;
    int from, to; /* token range */
} cut;

/* _split_segments_by_timestamps: the segments between consecutive
 * timestamps, and where the next window starts. */
static int split_segments(const whisper_model *w, const int *tok, int n, double time_offset,
                          int segment_size, double segment_duration, int *seek, cut *cuts)
{
    int tb = w->ts_begin, nc = 0;
    int single_end = n >= 2 && tok[n - 2] < tb && tok[n - 1] >= tb;
    int any_pair = 0;
    for (int i = 1; i < n; i++)
        any_pair |= tok[i] >= tb && tok[i - 1] >= tb;
    if (any_pair) {
        int last_slice = 0;
        for (int i = 1; i <= n; i++) {
            int is_slice = i < n ? tok[i] >= tb && tok[i - 1] >= tb : single_end;
            if (!is_slice)
                continue;
            cut *c = &cuts[nc++];
            c->from = last_slice;
            c->to = i;
            c->start = time_offset + (tok[last_slice] - tb) * 0.02;
            c->end = time_offset + (tok[i - 1] - tb) * 0.02;
            last_slice = i;
        }
        if (single_end)
            *seek += segment_size; /* no speech after the last timestamp */
        else /* the unfinished segment waits for the next window */
            *seek += (tok[last_slice - 1] - tb) * 2;
    } else {
        double duration = segment_duration;
        int last_ts = -1;
        for (int i = 0; i < n; i++)
            if (tok[i] >= tb)
                last_ts = tok[i];
        if (last_ts >= 0 && last_ts != tb)
            duration = (last_ts - tb) * 0.02;
        cuts[nc++] = (cut){time_offset, time_offset + duration, 0, n};
        *seek += segment_size;
    }
    return nc;
}

typedef struct {
    tsr_transcript *t;
    const tsr_vad_chunk *chunks; /* with the VAD: times map back through these */
    size_t n_chunks;
    int seg_cap;
    ints all;   /* every emitted token: the previous text */
    char *text; /* the joined texts */
    size_t text_len, text_cap;
} collector;

static tsr_status emit(collector *c, const tsr_transcribe_params *p, tsr_segment *sg,
                       tsr_error *err)
{
    tsr_transcript *t = c->t;
    if (t->n_segments == c->seg_cap) {
        int nc = c->seg_cap ? c->seg_cap * 2 : 16;
        tsr_segment *ns = realloc(t->segments, sizeof *ns * (size_t)nc);
        if (!ns)
            return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
        t->segments = ns;
        c->seg_cap = nc;
    }
    size_t tl = strlen(sg->text);
    if (c->text_len + tl + 1 > c->text_cap) {
        size_t nc = c->text_cap ? c->text_cap : 1024;
        while (nc < c->text_len + tl + 1)
            nc *= 2;
        char *nt = realloc(c->text, nc);
        if (!nt)
            return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
        c->text = nt;
        c->text_cap = nc;
    }
    memcpy(c->text + c->text_len, sg->text, tl + 1);
    c->text_len += tl;
    if (!ints_add(&c->all, sg->tokens, (size_t)sg->n_tokens))
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    if (c->chunks) {
        sg->start = tsr_vad_original_time(c->chunks, c->n_chunks, sg->start, 0);
        sg->end = tsr_vad_original_time(c->chunks, c->n_chunks, sg->end, 1);
    }
    sg->id = t->n_segments + 1;
    t->segments[t->n_segments++] = *sg;
    if (p->on_segment)
        p->on_segment(p->user, sg);
    return TSR_OK;
}

/* The language and start-of-transcript sequence; detection on the first
 * window of multilingual models when none is given. */
static tsr_status choose_language(tsr_session *s, const tsr_transcribe_params *p,
                                  const float *win, float *lg, tsr_transcript *t, int *sot_seq,
                                  int *n_sot, tsr_error *err)
{
    const whisper_model *w = WHISPER(s->m);
    const char *task = p->task ? p->task : "transcribe";
    int translate = strcmp(task, "translate") == 0;
    if (!translate && strcmp(task, "transcribe") != 0)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "task \"%s\" is not \"transcribe\" or \"translate\"", task);
    *n_sot = 0;
    sot_seq[(*n_sot)++] = w->sot;
    t->language_probability = 1;
    if (!w->multilingual) {
        if (p->language && strcmp(p->language, "en") != 0)
            return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                                 "%s is an English-only model: it cannot transcribe language "
                                 "'%s' (use a multilingual model, or --language en)",
                                 s->m->name, p->language);
        if (translate)
            return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                                 "%s is an English-only model: it cannot translate", s->m->name);
        snprintf(t->language, sizeof t->language, "en");
        return TSR_OK;
    }
    int lang = -1;
    if (p->language && *p->language) {
        for (int i = 0; i < w->n_langs; i++)
            if (strcmp(w->lang_code[i], p->language) == 0)
                lang = i;
        if (lang < 0)
            return tsr_error_set(err, TSR_ERR_INVALID_ARG, "%s has no language '%s'", s->m->name,
                                 p->language);
    } else if (w->n_langs > 0) {
        double probs[TSR_MAX_LANGS];
        int order[TSR_MAX_LANGS];
        tsr_status rc = encode(s, win, NULL, err);
        TSR_TRY(rc, language_probs(s, lg, probs, order, err));
        if (rc != TSR_OK)
            return rc;
        lang = order[0];
        t->language_probability = probs[lang];
    }
    if (lang >= 0) {
        snprintf(t->language, sizeof t->language, "%s", w->lang_code[lang]);
        sot_seq[(*n_sot)++] = w->lang_id[lang];
    }
    int task_id = translate ? w->translate : w->transcribe;
    if (task_id >= 0)
        sot_seq[(*n_sot)++] = task_id;
    return TSR_OK;
}

static tsr_status check_params(const tsr_transcribe_params *p, tsr_error *err)
{
    if (p->beam_size < 1 || p->beam_size > TSR_GEN_MAX_BEAMS)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "beam size %d outside 1..%d",
                             p->beam_size, TSR_GEN_MAX_BEAMS);
    if (p->best_of < 1 || p->best_of > TSR_GEN_MAX_BEAMS)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "best_of %d outside 1..%d", p->best_of,
                             TSR_GEN_MAX_BEAMS);
    if (p->n_temperatures < 1 || p->n_temperatures > TSR_MAX_TEMPERATURES)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "%d temperatures: give 1 to %d",
                             p->n_temperatures, TSR_MAX_TEMPERATURES);
    for (int i = 0; i < p->n_temperatures; i++)
        if (!(p->temperatures[i] >= 0 && p->temperatures[i] <= 100))
            return tsr_error_set(err, TSR_ERR_INVALID_ARG, "temperature %g outside 0..100",
                                 (double)p->temperatures[i]);
    if (!(p->patience > 0) || !(p->repetition_penalty > 0) || !isfinite(p->length_penalty) ||
        p->no_repeat_ngram_size < 0 || p->max_new_tokens < 0 ||
        !(p->max_initial_timestamp >= 0 && p->max_initial_timestamp <= 30))
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "patience and repetition penalty must be > 0, max_new_tokens and "
                             "the n-gram size >= 0, max_initial_timestamp within 0..30 s");
    return TSR_OK;
}

/* The decoding batch the parameters need. */
static int batch_of(const tsr_transcribe_params *p)
{
    int B = p->beam_size;
    for (int i = 0; i < p->n_temperatures; i++)
        if (p->temperatures[i] > 0 && p->best_of > B)
            B = p->best_of;
    return B;
}

static tsr_status transcribe(tsr_session *s, const audio_src *a, const tsr_transcribe_params *p,
                             const tsr_vad_chunk *chunks, size_t n_chunks, tsr_transcript *t,
                             tsr_error *err)
{
    const whisper_model *w = WHISPER(s->m);
    int n_mels = w->enc.n_mels, W = 2 * w->enc.n_ctx, V = w->dec.vocab, n_ctx = w->dec.n_ctx;
    tsr_status rc = check_params(p, err);
    TSR_TRY(rc, whisper_ready(s, batch_of(p), err));
    if (rc != TSR_OK)
        return rc;
    size_t content = (a->total + MEL_PAD) / 160 - 1; /* faster-whisper's content_frames */
    tsr_logmel *lm = NULL;
    float *win = malloc(sizeof(float) * (size_t)n_mels * W);
    float *lg = malloc(sizeof(float) * (size_t)V * TSR_GEN_MAX_BEAMS);
    float *tmp = malloc(sizeof(float) * (size_t)V);
    int *prompt = malloc(sizeof(int) * (size_t)(n_ctx + 8));
    collector c = {t, chunks, n_chunks, 0, {0}, NULL, 0, 0};
    if (!win || !lg || !tmp || !prompt)
        rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    TSR_TRY(rc, tsr_logmel_new(n_mels, &lm, err));
    float gmax = 0;
    TSR_TRY(rc, mel_max(lm, a, n_mels, W, win, &gmax, err));
    /* the first window, for language detection: faster-whisper's
     * features[..., :3000], the padding frame included */
    int first = content + 1 < (size_t)W ? (int)content + 1 : W;
    int sot_seq[4], n_sot = 0;
    TSR_TRY(rc, mel_window(lm, a, n_mels, W, 0, first, gmax, win, err));
    TSR_TRY(rc, choose_language(s, p, win, lg, t, sot_seq, &n_sot, err));
    if (rc == TSR_OK && p->initial_prompt) {
        /* " " + initial_prompt.strip(), encoded */
        size_t pl = strlen(p->initial_prompt), x, y;
        strip_span(p->initial_prompt, pl, &x, &y);
        char *text = malloc(y - x + 2);
        int *ids = malloc(sizeof(int) * (y - x + 2)), n = 0;
        if (!text || !ids) {
            rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
        } else {
            text[0] = ' ';
            memcpy(text + 1, p->initial_prompt + x, y - x);
            text[y - x + 1] = 0;
            rc = tsr_bytelevel_encode(w->tok, text, ids, (int)(y - x + 2), &n, err);
            if (rc == TSR_OK && !ints_add(&c.all, ids, (size_t)n))
                rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
        }
        free(text), free(ids);
        if (rc != TSR_OK)
            tsr_error_prefix(err, "the initial prompt");
    }
    size_t reset_since = 0, seek = 0;
    uint64_t window = 0;
    while (rc == TSR_OK && seek < content) {
        double time_offset = (double)seek * 0.01;
        int size = content - seek < (size_t)W ? (int)(content - seek) : W;
        double duration = size * 0.01;
        rc = mel_window(lm, a, n_mels, W, seek, size, gmax, win, err);
        TSR_TRY(rc, encode(s, win, NULL, err));
        /* the prompt: previous text, start of transcript, maybe <|notimestamps|> */
        int np = 0;
        size_t prev = c.all.n - reset_since, keep = n_ctx / 2 > 1 ? (size_t)(n_ctx / 2 - 1) : 0;
        if (prev > 0 && w->sot_prev >= 0) {
            prompt[np++] = w->sot_prev;
            size_t from = prev > keep ? c.all.n - keep : reset_since;
            for (size_t i = from; i < c.all.n; i++)
                prompt[np++] = c.all.v[i];
        }
        for (int i = 0; i < n_sot; i++)
            prompt[np++] = sot_seq[i];
        if (p->without_timestamps)
            prompt[np++] = w->no_ts;
        attempt r = {0};
        TSR_TRY(rc, generate_window(s, p, prompt, np, p->seed + 0x632BE59BD9B4E019ull * ++window,
                                    lg, tmp, &r, err));
        if (rc != TSR_OK)
            break;
        if (!isnan(p->no_speech_threshold) && r.no_speech_prob > p->no_speech_threshold &&
            !(!isnan(p->log_prob_threshold) && r.avg_logprob > p->log_prob_threshold)) {
            free(r.tokens); /* silence: on to the next window */
            seek += (size_t)size;
            if (p->progress)
                p->progress(p->user, (double)(seek < content ? seek : content) * 0.01,
                            (double)content * 0.01);
            continue;
        }
        size_t previous_seek = seek;
        int new_seek = (int)seek;
        cut *cuts = malloc(sizeof(cut) * (size_t)(r.n + 1));
        int nc = cuts ? split_segments(w, r.tokens, r.n, time_offset, size, duration, &new_seek,
                                       cuts)
                      : 0;
        if (!cuts)
            rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
        /* a window whose last complete segment ends at <|0.00|> would decode
         * again forever (faster-whisper hangs there): move past it */
        seek = new_seek > (int)previous_seek ? (size_t)new_seek : previous_seek + (size_t)size;
        for (int i = 0; i < nc && rc == TSR_OK; i++) {
            tsr_segment sg = {0, (int)previous_seek, cuts[i].start, cuts[i].end, NULL, NULL,
                              cuts[i].to - cuts[i].from, r.avg_logprob, r.compression_ratio,
                              r.no_speech_prob, r.temperature};
            rc = decode_text(w, r.tokens + cuts[i].from, sg.n_tokens, &sg.text, err);
            if (rc != TSR_OK)
                break;
            size_t x, y;
            strip_span(sg.text, strlen(sg.text), &x, &y);
            if (sg.start == sg.end || x == y) {
                free(sg.text);
                continue;
            }
            sg.tokens = malloc(sizeof(int) * (size_t)(sg.n_tokens + 1));
            if (!sg.tokens) {
                free(sg.text);
                rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
                break;
            }
            memcpy(sg.tokens, r.tokens + cuts[i].from, sizeof(int) * (size_t)sg.n_tokens);
            if ((rc = emit(&c, p, &sg, err)) != TSR_OK) {
                free(sg.text), free(sg.tokens);
                break;
            }
        }
        free(cuts);
        free(r.tokens);
        if (!p->condition_on_previous_text || r.temperature > p->prompt_reset_on_temperature)
            reset_since = c.all.n;
        if (p->progress)
            p->progress(p->user, (double)(seek < content ? seek : content) * 0.01,
                        (double)content * 0.01);
    }
    tsr_logmel_free(lm);
    free(win), free(lg), free(tmp), free(prompt);
    if (rc == TSR_OK) {
        size_t x, y;
        strip_span(c.text ? c.text : "", c.text_len, &x, &y);
        t->text = malloc(y - x + 1);
        if (t->text) {
            memcpy(t->text, c.text ? c.text + x : "", y - x);
            t->text[y - x] = 0;
        }
        double sum = 0;
        for (int i = 0; i < t->n_segments; i++)
            sum += t->segments[i].avg_logprob;
        t->avg_logprob = t->n_segments ? sum / t->n_segments : 0;
        /* every segment's tokens (the initial prompt is not one) */
        ints all = {0};
        int ok = t->text != NULL;
        for (int i = 0; i < t->n_segments && ok; i++)
            ok = ints_add(&all, t->segments[i].tokens, (size_t)t->segments[i].n_tokens);
        if (ok && !all.v)
            ok = (all.v = malloc(sizeof(int))) != NULL;
        if (!ok) {
            free(all.v);
            all.v = NULL;
        }
        t->tokens = all.v;
        t->n_tokens = (int)all.n;
        if (!t->text || !t->tokens)
            rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    }
    free(c.text);
    free(c.all.v);
    return rc;
}

/* Runs transcribe over the audio or, with the VAD, over its speech only,
 * with times mapped back. */
static tsr_status transcribe_source(tsr_session *s, const audio_src *a,
                                    const tsr_transcribe_params *p, tsr_transcript *out,
                                    tsr_error *err)
{
    out->duration = out->duration_after_vad = (double)a->total / 16000.0;
    if (!p->vad)
        return transcribe(s, a, p, NULL, 0, out, err);
    tsr_vad_chunk *chunks = NULL;
    size_t n = 0;
    tsr_status rc = tsr_vad_detect(a->read, a->user, a->total, NULL, &chunks, &n, err);
    if (rc != TSR_OK)
        return rc;
    tsr_vad_collected vc = {chunks, n, a->read, a->user};
    audio_src speech = {tsr_vad_collected_read, &vc, tsr_vad_collected_samples(chunks, n)};
    out->duration_after_vad = (double)speech.total / 16000.0;
    /* segments reach the caller with their original times */
    rc = transcribe(s, &speech, p, chunks, n, out, err);
    free(chunks);
    return rc;
}

tsr_status tsr_session_transcribe_pcm(tsr_session *s, const float *pcm, size_t n,
                                      const tsr_transcribe_params *p, tsr_transcript *out,
                                      tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    memset(out, 0, sizeof *out);
    tsr_transcribe_params def = tsr_transcribe_default_params();
    if (!p)
        p = &def;
    tsr_status rc = tsr_session_need(s, &tsr_family_whisper, "transcribe speech", err);
    if (rc == TSR_OK && n > 0 && !pcm)
        rc = tsr_error_set(err, TSR_ERR_INVALID_ARG, "no samples given");
    tsr_audio_pcm mem = {pcm, n};
    audio_src a = {tsr_audio_pcm_read_cb, &mem, n};
    TSR_TRY(rc, transcribe_source(s, &a, p, out, err));
    if (rc != TSR_OK)
        tsr_transcript_free(out);
    return tsr_session_fail(s, rc, err);
}

tsr_status tsr_session_transcribe_file(tsr_session *s, const char *path,
                                       const tsr_transcribe_params *p, tsr_transcript *out,
                                       tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    memset(out, 0, sizeof *out);
    tsr_transcribe_params def = tsr_transcribe_default_params();
    if (!p)
        p = &def;
    tsr_status rc = tsr_session_need(s, &tsr_family_whisper, "transcribe speech", err);
    tsr_audio_spool *sp = NULL;
    TSR_TRY(rc, tsr_audio_spool_open(path, p->tmpdir, NULL, NULL, &sp, err));
    /* the audio module's errors name the file; those of transcription get it */
    audio_src a = {tsr_audio_spool_read_cb, sp, sp ? tsr_audio_spool_samples(sp) : 0};
    if (rc == TSR_OK && (rc = transcribe_source(s, &a, p, out, err)) != TSR_OK)
        tsr_error_prefix(err, "%s", strcmp(path, "-") == 0 ? "standard input" : path);
    if (rc != TSR_OK)
        tsr_transcript_free(out);
    tsr_audio_spool_free(sp);
    return tsr_session_fail(s, rc, err);
}
